"""Clusters to verify: any etcd-compatible endpoints (``Endpoints``), or a raftkv/etcd cluster
this process starts with each member in its own network namespace (``NetnsCluster``), so that
peer links can be cut while clients (in the host namespace) still reach every member.

Layout of a netns cluster: a bridge ``rkvb<pid>`` in the host namespace holding 10.X.0.1/24,
one namespace ``rkv<pid>-m<i>`` per member with a veth into the bridge and address
10.X.0.1<i>. A partition between two members is a blackhole route to each other's address in
both namespaces: their peer traffic vanishes (as on a real network, no error comes back) while
client traffic from 10.X.0.1 is untouched. Names carry the owning pid so that a stale-namespace
sweep can tell leftovers of dead runs from namespaces of runs still going. Data directories
and member logs live in a temporary directory, deleted at the end unless RAFTKV_VERIFY_KEEP
is set.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc

READY_DEADLINE_S = 60.0
CLIENT_PORT = 2379
PEER_PORT = 2380
_NS_RE = re.compile(r"^rkv(\d+)-m\d+$")
_BRIDGE_RE = re.compile(r"^rkvb(\d+)$")


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be created here (not root, or no iproute2)."""


class EndpointClient:
    """gRPC access to one member's client endpoint (a cached plaintext channel), for
    classes that have an ``endpoint`` (``host:port``) and a ``_channel`` slot."""

    _channel: grpc.Channel | None

    if TYPE_CHECKING:  # supplied by the subclass (a field or a property)

        @property
        def endpoint(self) -> str: ...

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.endpoint)
        return self._channel

    def close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def kv(self) -> Any:
        return rpc_pb2_grpc.KVStub(self.channel())  # type: ignore[no-untyped-call]

    def maintenance(self) -> Any:
        return rpc_pb2_grpc.MaintenanceStub(self.channel())  # type: ignore[no-untyped-call]

    def status(self, timeout: float = 1.0) -> rpc_pb2.StatusResponse:
        out: rpc_pb2.StatusResponse = self.maintenance().Status(
            rpc_pb2.StatusRequest(), timeout=timeout
        )
        return out


@dataclass
class Member(EndpointClient):
    """One member as clients see it: an endpoint, and the member id learned from Status."""

    name: str
    endpoint: str
    member_id: int = 0
    _channel: grpc.Channel | None = field(default=None, repr=False)

    def hash_kv(self, revision: int, timeout: float = 10.0) -> rpc_pb2.HashKVResponse:
        out: rpc_pb2.HashKVResponse = self.maintenance().HashKV(
            rpc_pb2.HashKVRequest(revision=revision), timeout=timeout
        )
        return out


class Endpoints:
    """Members reachable over etcd's API only: what ``raftkv verify --endpoints`` gets.
    Nemeses that need processes or the network check ``controls_processes``."""

    controls_processes = False

    def __init__(self, endpoints: list[str]) -> None:
        self.members = [Member(f"e{i + 1}", ep) for i, ep in enumerate(endpoints)]

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def reachable(self, m: Member) -> bool:
        """Whether ``m`` can answer at all now (false while killed or paused)."""
        return True

    def learn_ids(self, deadline_s: float = READY_DEADLINE_S) -> None:
        """Fill in every member's id (Status header), polling until all answer."""
        deadline = time.monotonic() + deadline_s
        for m in self.members:
            while True:
                try:
                    m.member_id = m.status().header.member_id
                    break
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{m.endpoint} does not answer Status") from None
                    time.sleep(0.05)  # poll interval

    def statuses(self, timeout: float = 0.5) -> dict[str, rpc_pb2.StatusResponse]:
        out: dict[str, rpc_pb2.StatusResponse] = {}
        for m in self.members:
            if not self.reachable(m):
                continue
            try:
                out[m.name] = m.status(timeout)
            except grpc.RpcError:
                continue
        return out

    def leader(self) -> Member | None:
        """The member that the answering members with the highest term say leads, if they
        agree on one and it answers too."""
        st = self.statuses()
        if not st:
            return None
        term = max(s.raftTerm for s in st.values())
        leaders = {s.leader for s in st.values() if s.raftTerm == term and s.leader}
        if len(leaders) != 1:
            return None
        lead = leaders.pop()
        member = next((m for m in self.members if m.member_id == lead), None)
        # followers keep naming a dead or paused leader until they time out: only a leader
        # that answers and says so itself counts
        if member is None or member.name not in st or st[member.name].leader != lead:
            return None
        return member

    def wait_leader(self, deadline_s: float = READY_DEADLINE_S) -> Member:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            lead = self.leader()
            if lead is not None:
                return lead
            time.sleep(0.05)  # poll interval
        raise TimeoutError(f"no leader within {deadline_s:.0f}s")

    def close(self) -> None:
        for m in self.members:
            m.close_channel()


def member_command(
    kind: str,
    name: str,
    data_dir: Path,
    client_url: str,
    peer_url: str,
    initial_cluster: str,
    token: str,
    heartbeat_ms: int,
    election_ms: int,
    extra: list[str] | tuple[str, ...] = (),
) -> list[str]:
    """The command line that starts one member of a new cluster, raftkv or etcd (same flags)."""
    flags = [
        f"--name={name}",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster={initial_cluster}",
        f"--initial-cluster-token={token}",
        "--initial-cluster-state=new",
        f"--heartbeat-interval={heartbeat_ms}",
        f"--election-timeout={election_ms}",
        *extra,
    ]
    if kind == "etcd":
        etcd = shutil.which("etcd")
        if etcd is None:
            raise RuntimeError("etcd not found (apt-get install etcd-server)")
        return [etcd, *flags]
    return [sys.executable, "-m", "raftkv", "serve", *flags]


def terminate(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process still running, then wait for each (SIGKILL after 15 s)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a stopped process ignores SIGTERM
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale_netns() -> list[str]:
    """Delete the namespaces and bridges left by runs whose process is gone (a run killed
    hard cannot clean up after itself). Returns what was deleted."""
    removed: list[str] = []
    r = _ip("netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NS_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            # members still running in it would keep nothing alive but their own process
            for pid in _ip("netns", "pids", name, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", name, check=False)
            removed.append(name)
    r = _ip("-o", "link", "show", "type", "bridge", check=False)
    for line in r.stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip()
        m = _BRIDGE_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            _ip("link", "del", name, check=False)
            removed.append(name)
    return removed


def _free_subnet() -> int:
    """An X in 10.X.0.0/24 that no interface or route of this host uses."""
    used = _ip("-4", "route", "show", "table", "all", check=False).stdout
    used += _ip("-4", "-o", "addr", check=False).stdout
    start = os.getpid() % 50
    for i in range(50):
        x = 200 + (start + i) % 50
        if f"10.{x}." not in used:
            return x
    raise NetnsUnavailable("no free 10.X.0.0/24 subnet between 10.200 and 10.249")


@dataclass
class Proc:
    """A member's server process and its fault state."""

    ns: str
    ip: str
    data_dir: Path
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    paused: bool = False
    killed: bool = False  # down on purpose (a nemesis), not crashed

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


class NetnsCluster(Endpoints):
    """A 1- or 3-member raftkv or etcd cluster, one network namespace per member. Use as a
    context manager: leaving it kills the members and deletes the namespaces and bridge, also
    on errors and KeyboardInterrupt."""

    controls_processes = True

    def __init__(
        self,
        kind: str = "raftkv",
        size: int = 3,
        base: Path | None = None,
        heartbeat_ms: int = 50,
        election_ms: int = 500,
    ) -> None:
        if kind not in ("raftkv", "etcd"):
            raise ValueError(f"unknown cluster kind {kind!r}")
        self.kind = kind
        self.size = size
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self._own_base = base is None
        self.base = base or Path(tempfile.mkdtemp(prefix="raftkv-verify-"))
        pid = os.getpid()
        self.bridge = f"rkvb{pid}"
        self.subnet = 0
        self.procs: dict[str, Proc] = {}
        self.cuts: set[frozenset[str]] = set()
        self._ns_prefix = f"rkv{pid}"
        super().__init__([])

    # --- network -------------------------------------------------------------------------

    def _setup_network(self) -> None:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise NetnsUnavailable(
                "the robustness harness needs root and iproute2 to create network namespaces"
            )
        cleanup_stale_netns()
        self.subnet = _free_subnet()
        x = self.subnet
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
        except subprocess.CalledProcessError as e:
            raise NetnsUnavailable(f"cannot create a bridge: {e.stderr.strip()}") from e
        _ip("addr", "add", f"10.{x}.0.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i in range(self.size):
            name = f"m{i + 1}"
            ns = f"{self._ns_prefix}-{name}"
            veth = f"rkv{os.getpid()}{name}"[:15]
            ip = f"10.{x}.0.{11 + i}"
            _ip("netns", "add", ns)
            self.procs[name] = Proc(ns, ip, self.base / f"{name}.data", self.base / f"{name}.log")
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", self.bridge, "up")
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            self.members.append(Member(name, f"{ip}:{CLIENT_PORT}"))

    def _teardown_network(self) -> None:
        for p in self.procs.values():
            _ip("netns", "del", p.ns, check=False)  # also deletes the veth pair
        _ip("link", "del", self.bridge, check=False)

    def cut(self, a: Member, b: Member) -> None:
        """Drop all traffic between two members, both ways."""
        pair = frozenset((a.name, b.name))
        if pair in self.cuts:
            return
        pa, pb = self.procs[a.name], self.procs[b.name]
        _ip("-n", pa.ns, "route", "add", "blackhole", f"{pb.ip}/32")
        _ip("-n", pb.ns, "route", "add", "blackhole", f"{pa.ip}/32")
        self.cuts.add(pair)

    def heal_network(self) -> None:
        for pair in list(self.cuts):
            a, b = sorted(pair)
            pa, pb = self.procs[a], self.procs[b]
            _ip("-n", pa.ns, "route", "del", "blackhole", f"{pb.ip}/32", check=False)
            _ip("-n", pb.ns, "route", "del", "blackhole", f"{pa.ip}/32", check=False)
            self.cuts.discard(pair)

    # --- processes -----------------------------------------------------------------------

    def _command(self, name: str) -> list[str]:
        p = self.procs[name]
        initial = ",".join(f"{n}=http://{q.ip}:{PEER_PORT}" for n, q in self.procs.items())
        return member_command(
            self.kind,
            name,
            p.data_dir,
            f"http://{p.ip}:{CLIENT_PORT}",
            f"http://{p.ip}:{PEER_PORT}",
            initial,
            "raftkv-verify",
            self.heartbeat_ms,
            self.election_ms,
        )

    def _spawn(self, name: str) -> None:
        p = self.procs[name]
        env = dict(os.environ)
        # the server imports the same raftkv as this process, wherever that comes from
        pkg_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_root, env.get("PYTHONPATH")]))
        with open(p.log_path, "ab") as log:
            # ip netns exec execs the command: the pid is the server's own
            p.popen = subprocess.Popen(
                ["ip", "netns", "exec", p.ns, *self._command(name)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.base,
            )
        p.paused = p.killed = False

    def proc(self, m: Member) -> Proc:
        return self.procs[m.name]

    def reachable(self, m: Member) -> bool:
        p = self.procs[m.name]
        return p.alive and not p.paused

    def start(self) -> NetnsCluster:
        self.base.mkdir(parents=True, exist_ok=True)
        try:
            self._setup_network()
            for name in self.procs:
                self._spawn(name)
            self.learn_ids()
            self.wait_leader()
            self.wait_writable()
        except BaseException:
            self.stop()
            raise
        return self

    def check_exits(self) -> None:
        """Raise if a member that should be running exited on its own."""
        for name, p in self.procs.items():
            if not p.killed and p.popen is not None and p.popen.poll() is not None:
                tail = p.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited ({p.popen.returncode}):\n{tail}")

    def wait_leader(self, deadline_s: float = READY_DEADLINE_S) -> Member:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            self.check_exits()
            lead = self.leader()
            if lead is not None:
                return lead
            time.sleep(0.05)  # poll interval
        raise TimeoutError(f"no leader within {deadline_s:.0f}s")

    def wait_writable(self, deadline_s: float = READY_DEADLINE_S) -> None:
        """Poll until a put through every member succeeds (the cluster commits)."""
        deadline = time.monotonic() + deadline_s
        for m in self.members:
            while True:
                try:
                    m.kv().Put(rpc_pb2.PutRequest(key=b"__ready", value=b"1"), timeout=2)
                    break
                except grpc.RpcError:
                    self.check_exits()
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{m.name} does not commit writes") from None
                    time.sleep(0.05)  # poll interval

    def kill(self, m: Member) -> None:
        p = self.procs[m.name]
        if p.popen is not None and p.alive:
            p.popen.send_signal(signal.SIGKILL)
            p.popen.wait(timeout=30)
        p.paused = False
        p.killed = True
        m.close_channel()

    def restart(self, m: Member) -> None:
        if self.procs[m.name].alive:
            self.kill(m)
        self._spawn(m.name)

    def pause(self, m: Member) -> None:
        p = self.procs[m.name]
        if p.popen is not None and p.alive:
            p.popen.send_signal(signal.SIGSTOP)
            p.paused = True

    def resume(self, m: Member) -> None:
        p = self.procs[m.name]
        if p.popen is not None and p.alive:
            p.popen.send_signal(signal.SIGCONT)
        p.paused = False

    def heal_all(self) -> None:
        """Undo every fault: network cuts, pauses, dead members."""
        self.heal_network()
        for m in self.members:
            p = self.procs[m.name]
            if p.paused:
                self.resume(m)
            if not p.alive:
                self._spawn(m.name)

    def stop(self) -> None:
        self.close()
        terminate([p.popen for p in self.procs.values() if p.popen is not None])
        self._teardown_network()
        if self._own_base and not os.environ.get("RAFTKV_VERIFY_KEEP"):
            shutil.rmtree(self.base, ignore_errors=True)

    def logs_tail(self, chars: int = 2000) -> str:
        out = []
        for name, p in self.procs.items():
            if p.log_path.exists():
                out.append(f"--- {name} ---\n{p.log_path.read_text(errors='replace')[-chars:]}")
        return "\n".join(out)

    def __enter__(self) -> NetnsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
