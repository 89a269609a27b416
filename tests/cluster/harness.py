"""Run a 3-member cluster of raftkv (or of etcd, for side-by-side checks) as processes on
loopback with free ports; stop, kill and restart members; talk to it with etcdctl.

Readiness is polled with a bounded deadline (``endpoint status``), never slept for.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2
from raftkv.verify.cluster import EndpointClient, member_command, terminate

ROOT = Path(__file__).resolve().parents[2]
READY_DEADLINE_S = 30.0


class CtlError(subprocess.CalledProcessError):
    """etcdctl failed; the message carries what it printed."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.stdout}\nstderr: {self.stderr}"


# Listening ports come from below the kernel's ephemeral range (32768-60999 here): a port
# picked from that range can be taken, before the member binds it, as the source port of
# some outgoing connection (etcdctl, peers), which made members fail with EADDRINUSE.
_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that are free now and not handed out before by this
    process."""
    rng = random.Random()
    ports: list[int] = []
    for _ in range(100 * n):
        if len(ports) == n:
            break
        port = rng.randrange(*_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        ports.append(port)
    if len(ports) != n:
        raise RuntimeError("no free loopback ports")
    return ports


@dataclass
class Node(EndpointClient):
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _channel: grpc.Channel | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def revision(self, timeout: float = 5.0) -> int:
        """This member's current revision (a serializable read: no quorum needed)."""
        req = rpc_pb2.RangeRequest(key=b"\x00", serializable=True, count_only=True)
        rev: int = self.kv().Range(req, timeout=timeout).header.revision
        return rev

    def hash_kv(self, revision: int, timeout: float = 10.0) -> int:
        """This member's HashKV at ``revision``."""
        h: int = (
            self.maintenance()
            .HashKV(rpc_pb2.HashKVRequest(revision=revision), timeout=timeout)
            .hash
        )
        return h

    def items(self, prefix: bytes, serializable: bool = True) -> dict[bytes, bytes]:
        """key -> value of every key under ``prefix`` on this member."""
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        req = rpc_pb2.RangeRequest(key=prefix, range_end=end, serializable=serializable)
        resp = self.kv().Range(req, timeout=20)
        return {kv.key: kv.value for kv in resp.kvs}

    def status(self, timeout: float = 2.0) -> rpc_pb2.StatusResponse:
        return super().status(timeout)


@dataclass
class Cluster:
    base: Path
    kind: str = "raftkv"  # or "etcd"
    size: int = 3
    heartbeat_ms: int = 50
    election_ms: int = 500
    extra_args: list[str] = field(default_factory=list)
    ctl_args: list[str] = field(default_factory=list)  # e.g. TLS flags for etcdctl
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        ports = free_ports(2 * self.size)
        for i in range(self.size):
            name = f"m{i + 1}"
            self.nodes.append(
                Node(
                    name,
                    ports[i],
                    ports[self.size + i],
                    self.base / f"{name}.data",
                    self.base / f"{name}.log",
                )
            )

    @property
    def endpoints(self) -> str:
        return ",".join(n.endpoint for n in self.nodes)

    def _command(self, node: Node) -> list[str]:
        initial = ",".join(f"{n.name}=http://127.0.0.1:{n.peer_port}" for n in self.nodes)
        return member_command(
            self.kind,
            node.name,
            node.data_dir,
            f"http://{node.endpoint}",
            f"http://127.0.0.1:{node.peer_port}",
            initial,
            "test-cluster",
            self.heartbeat_ms,
            self.election_ms,
            self.extra_args,
        )

    def start_node(self, node: Node) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = f"{ROOT / 'python'}{os.pathsep}{env.get('PYTHONPATH', '')}"
        with open(node.log_path, "ab") as log:
            node.proc = subprocess.Popen(
                self._command(node), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.base
            )

    def start(self) -> Cluster:
        """Start every member and wait until the cluster commits writes; on failure, stop
        the members already started (no processes are left behind)."""
        self.base.mkdir(parents=True, exist_ok=True)
        try:
            for node in self.nodes:
                self.start_node(node)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, node: Node, sig: int = signal.SIGKILL) -> None:
        assert node.proc is not None
        node.proc.send_signal(sig)
        node.proc.wait(timeout=30)
        node.close_channel()

    def restart(self, node: Node) -> None:
        if node.alive:
            self.kill(node, signal.SIGTERM)
        self.start_node(node)

    def stop(self) -> None:
        for node in self.nodes:
            node.close_channel()
        terminate([node.proc for node in self.nodes if node.proc is not None])

    # --- etcdctl -------------------------------------------------------------------------

    def ctl(
        self,
        *args: str,
        endpoints: str | None = None,
        input: str | None = None,
        check: bool = True,
        timeout: float = 20.0,
        ctl_args: list[str] | None = None,
        extra: list[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        flags = self.ctl_args if ctl_args is None else ctl_args
        r = subprocess.run(
            [
                "etcdctl",
                f"--endpoints={endpoints or self.endpoints}",
                "--command-timeout=10s",
                *flags,
                *(extra or []),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=input,
            env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
        )
        if check and r.returncode != 0:
            raise CtlError(r.returncode, r.args, r.stdout, r.stderr)
        return r

    def statuses(self, nodes: list[Node] | None = None) -> dict[str, dict[str, object]]:
        """endpoint -> status (etcdctl's json fields), for the members that answer."""
        out: dict[str, dict[str, object]] = {}
        for node in nodes or [n for n in self.nodes if n.alive]:
            try:
                r = self.ctl(
                    "endpoint",
                    "status",
                    "-w",
                    "json",
                    "--dial-timeout=2s",
                    "--command-timeout=3s",
                    endpoints=node.endpoint,
                    check=False,
                    timeout=10,
                )
            except subprocess.TimeoutExpired:
                continue
            if r.returncode == 0:
                doc = json.loads(r.stdout)
                out[node.endpoint] = doc[0]["Status"]
        return out

    def grpc_statuses(
        self, nodes: list[Node] | None = None, timeout: float = 1.0
    ) -> dict[str, rpc_pb2.StatusResponse]:
        """endpoint -> Maintenance.Status over gRPC, for the members that answer (fast
        enough to poll)."""
        out: dict[str, rpc_pb2.StatusResponse] = {}
        for node in nodes or [n for n in self.nodes if n.alive]:
            try:
                out[node.endpoint] = node.status(timeout=timeout)
            except grpc.RpcError:
                continue
        return out

    def leader(self, nodes: list[Node] | None = None) -> Node | None:
        """The member every answering member of ``nodes`` (default: the live ones) agrees
        leads, if any and if it is among them."""
        nodes = nodes or [n for n in self.nodes if n.alive]
        st = self.grpc_statuses(nodes)
        if len(st) != len(nodes):
            return None
        leaders = {s.leader for s in st.values()}
        if len(leaders) != 1 or 0 in leaders:
            return None
        lead = leaders.pop()
        for node in nodes:
            if st[node.endpoint].header.member_id == lead:
                return node
        return None

    def wait_leader(
        self, nodes: list[Node] | None = None, deadline_s: float = READY_DEADLINE_S
    ) -> Node:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            for node in self.nodes:
                if (
                    node.proc is not None
                    and node.proc.poll() is not None
                    and (nodes is None or node in nodes)
                ):
                    raise RuntimeError(
                        f"{node.name} exited ({node.proc.returncode}):\n"
                        + node.log_path.read_text()[-3000:]
                    )
            lead = self.leader(nodes)
            if lead is not None:
                return lead
            time.sleep(0.02)  # a poll interval, not synchronisation
        raise TimeoutError(f"no leader within {deadline_s}s")

    def wait_ready(self) -> Node:
        lead = self.wait_leader()
        deadline = time.monotonic() + READY_DEADLINE_S
        while time.monotonic() < deadline:
            if self.ctl("put", "__ready", "1", check=False).returncode == 0:
                self.ctl("del", "__ready")
                return lead
        raise TimeoutError("cluster does not commit writes")
