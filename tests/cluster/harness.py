"""Run a 3-member cluster of raftkv (or of etcd, for side-by-side checks) as processes on
loopback with free ports; stop, kill and restart members; talk to it with etcdctl.

Readiness is polled with a bounded deadline (``endpoint status``), never slept for.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READY_DEADLINE_S = 30.0


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Node:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Cluster:
    base: Path
    kind: str = "raftkv"  # or "etcd"
    size: int = 3
    heartbeat_ms: int = 50
    election_ms: int = 500
    extra_args: list[str] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        ports = free_ports(2 * self.size)
        for i in range(self.size):
            name = f"m{i + 1}"
            self.nodes.append(
                Node(name, ports[i], ports[self.size + i], self.base / f"{name}.data",
                     self.base / f"{name}.log")
            )

    @property
    def endpoints(self) -> str:
        return ",".join(n.endpoint for n in self.nodes)

    def _command(self, node: Node) -> list[str]:
        initial = ",".join(f"{n.name}=http://127.0.0.1:{n.peer_port}" for n in self.nodes)
        flags = [
            f"--name={node.name}",
            f"--data-dir={node.data_dir}",
            f"--listen-client-urls=http://{node.endpoint}",
            f"--advertise-client-urls=http://{node.endpoint}",
            f"--listen-peer-urls=http://127.0.0.1:{node.peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{node.peer_port}",
            f"--initial-cluster={initial}",
            "--initial-cluster-token=test-cluster",
            "--initial-cluster-state=new",
            f"--heartbeat-interval={self.heartbeat_ms}",
            f"--election-timeout={self.election_ms}",
            *self.extra_args,
        ]
        if self.kind == "etcd":
            etcd = shutil.which("etcd")
            if etcd is None:
                raise RuntimeError("etcd not found (apt-get install etcd-server)")
            return [etcd, *flags]
        return [sys.executable, "-m", "raftkv", "serve", *flags]

    def start_node(self, node: Node) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = f"{ROOT / 'python'}{os.pathsep}{env.get('PYTHONPATH', '')}"
        with open(node.log_path, "ab") as log:
            node.proc = subprocess.Popen(
                self._command(node), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.base
            )

    def start(self) -> Cluster:
        self.base.mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            self.start_node(node)
        self.wait_ready()
        return self

    def kill(self, node: Node, sig: int = signal.SIGKILL) -> None:
        assert node.proc is not None
        node.proc.send_signal(sig)
        node.proc.wait(timeout=30)

    def restart(self, node: Node) -> None:
        if node.alive:
            self.kill(node, signal.SIGTERM)
        self.start_node(node)

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive:
                assert node.proc is not None
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait(timeout=15)

    # --- etcdctl -------------------------------------------------------------------------

    def ctl(self, *args: str, endpoints: str | None = None, input: str | None = None,
            check: bool = True, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["etcdctl", f"--endpoints={endpoints or self.endpoints}",
             "--command-timeout=10s", *args],
            capture_output=True, text=True, timeout=timeout, check=check, input=input,
            env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
        )

    def statuses(self, nodes: list[Node] | None = None) -> dict[str, dict[str, object]]:
        """endpoint -> status (json fields), for the members that answer."""
        out: dict[str, dict[str, object]] = {}
        for node in nodes or [n for n in self.nodes if n.alive]:
            r = self.ctl("endpoint", "status", "-w", "json", endpoints=node.endpoint,
                         check=False, timeout=10)
            if r.returncode == 0:
                doc = json.loads(r.stdout)
                out[node.endpoint] = doc[0]["Status"]
        return out

    def leader(self, nodes: list[Node] | None = None) -> Node | None:
        """The member every answering member agrees leads, if any."""
        nodes = nodes or [n for n in self.nodes if n.alive]
        st = self.statuses(nodes)
        if len(st) != len(nodes):
            return None
        leaders = {s.get("leader", 0) for s in st.values()}  # json omits zero fields
        if len(leaders) != 1 or 0 in leaders:
            return None
        lead = leaders.pop()
        for node in nodes:
            header = st[node.endpoint]["header"]
            assert isinstance(header, dict)
            if header["member_id"] == lead:
                return node
        return None

    def wait_leader(self, nodes: list[Node] | None = None,
                    deadline_s: float = READY_DEADLINE_S) -> Node:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.proc is not None and node.proc.poll() is not None and (
                    nodes is None or node in nodes
                ):
                    raise RuntimeError(
                        f"{node.name} exited ({node.proc.returncode}):\n"
                        + node.log_path.read_text()[-3000:]
                    )
            lead = self.leader(nodes)
            if lead is not None:
                return lead
        raise TimeoutError(f"no leader within {deadline_s}s")

    def wait_ready(self) -> Node:
        lead = self.wait_leader()
        deadline = time.monotonic() + READY_DEADLINE_S
        while time.monotonic() < deadline:
            if self.ctl("put", "__ready", "1", check=False).returncode == 0:
                self.ctl("del", "__ready")
                return lead
        raise TimeoutError("cluster does not commit writes")
