"""``raftkv serve`` (one member, etcd's flags) and ``raftkv cluster`` (a local 3-member
cluster in the foreground, on etcd's local-cluster ports)."""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

from raftkv.server.config import ConfigError, MemberConfig, parse_initial_cluster


def _urls(text: str) -> list[str]:
    return [u.strip() for u in text.split(",") if u.strip()]


def add_serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run one member (etcd's flags)")
    p.add_argument("--config-file", help="YAML or JSON file with the flags below as keys")
    p.add_argument("--name", default="default")
    p.add_argument("--data-dir", help="default: ${name}.etcd")
    p.add_argument("--listen-client-urls", default="http://127.0.0.1:2379")
    p.add_argument("--advertise-client-urls", default="http://127.0.0.1:2379")
    p.add_argument("--listen-peer-urls", default="http://127.0.0.1:2380")
    p.add_argument("--initial-advertise-peer-urls", default="http://127.0.0.1:2380")
    p.add_argument("--initial-cluster", default="")
    p.add_argument("--initial-cluster-state", default="new", choices=["new", "existing"])
    p.add_argument("--initial-cluster-token", default="etcd-cluster")
    p.add_argument("--heartbeat-interval", type=int, default=100, help="milliseconds")
    p.add_argument("--election-timeout", type=int, default=1000, help="milliseconds")
    p.add_argument("--snapshot-count", type=int, default=100_000)
    p.add_argument("--quota-backend-bytes", type=int, default=2 * 1024**3)
    p.add_argument("--max-request-bytes", type=int, default=1536 * 1024)
    p.add_argument("--max-txn-ops", type=int, default=128)
    p.add_argument("--cert-file")
    p.add_argument("--key-file")
    p.add_argument("--client-cert-auth", action="store_true")
    p.add_argument("--trusted-ca-file")
    p.add_argument("--peer-cert-file")
    p.add_argument("--peer-key-file")
    p.add_argument("--peer-client-cert-auth", action="store_true")
    p.add_argument("--peer-trusted-ca-file")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warn", "error"])


def _apply_config_file(args: argparse.Namespace) -> None:
    import json

    path = Path(args.config_file)
    text = path.read_text()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = {}
        for line in text.splitlines():  # flat "key: value" YAML, as etcd's sample config
            line = line.split("#", 1)[0].strip()
            if ":" in line:
                key, _, value = line.partition(":")
                doc[key.strip()] = value.strip().strip("'\"")
    for key, value in doc.items():
        attr = key.replace("-", "_")
        if not hasattr(args, attr):
            raise ConfigError(f"{path}: unknown key {key!r}")
        setattr(args, attr, value)


def config_from_args(args: argparse.Namespace) -> MemberConfig:
    if args.config_file:
        _apply_config_file(args)
    initial_cluster = (
        parse_initial_cluster(args.initial_cluster)
        if args.initial_cluster
        else {args.name: _urls(args.initial_advertise_peer_urls)}
    )
    return MemberConfig(
        name=args.name,
        data_dir=Path(args.data_dir or f"{args.name}.etcd"),
        listen_client_urls=_urls(args.listen_client_urls),
        advertise_client_urls=_urls(args.advertise_client_urls),
        listen_peer_urls=_urls(args.listen_peer_urls),
        initial_advertise_peer_urls=_urls(args.initial_advertise_peer_urls),
        initial_cluster=initial_cluster,
        initial_cluster_state=args.initial_cluster_state,
        initial_cluster_token=args.initial_cluster_token,
        heartbeat_interval_ms=int(args.heartbeat_interval),
        election_timeout_ms=int(args.election_timeout),
        snapshot_count=int(args.snapshot_count),
        max_request_bytes=int(args.max_request_bytes),
        max_txn_ops=int(args.max_txn_ops),
        quota_backend_bytes=int(args.quota_backend_bytes),
        cert_file=args.cert_file,
        key_file=args.key_file,
        trusted_ca_file=args.trusted_ca_file,
        client_cert_auth=_flag(args.client_cert_auth),
        peer_cert_file=args.peer_cert_file,
        peer_key_file=args.peer_key_file,
        peer_trusted_ca_file=args.peer_trusted_ca_file,
        peer_client_cert_auth=_flag(args.peer_client_cert_auth),
    )


def _flag(value: object) -> bool:
    """A boolean flag, also from a config file ("true"/"false")."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def run_serve(args: argparse.Namespace) -> int:
    from raftkv.server.main import serve

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper().replace("WARN", "WARNING")),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = config_from_args(args)
        config.validate()
    except ConfigError as exc:
        print(f"raftkv serve: {exc}", file=sys.stderr)
        return 2
    try:
        uvloop.run(serve(config))
    except ConfigError as exc:
        print(f"raftkv serve: {exc}", file=sys.stderr)
        return 2
    return 0


# --- raftkv cluster ---------------------------------------------------------------------

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
LOCAL_CLIENT_PORTS = (2379, 22379, 32379)


def block_stop_signals() -> None:
    """The cluster runner waits for Ctrl-C with sigtimedwait, so it blocks those signals."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def _unblock_signals() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


LOCAL_PEER_PORTS = (12380, 22380, 32380)


def add_cluster_parser(sub: Any) -> None:
    p = sub.add_parser("cluster", help="run a local 3-member cluster in the foreground")
    p.add_argument("--data-dir", default="raftkv-cluster", help="members' data go below it")
    p.add_argument("--client-ports", default=",".join(map(str, LOCAL_CLIENT_PORTS)))
    p.add_argument("--peer-ports", default=",".join(map(str, LOCAL_PEER_PORTS)))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for a leader")


def _status(endpoint: str, timeout: float) -> tuple[int, int] | None:
    """(member id, leader id) from Maintenance.Status, or None."""
    import grpc

    from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2

    try:
        with grpc.insecure_channel(endpoint) as channel:
            call = channel.unary_unary("/etcdserverpb.Maintenance/Status")
            raw = call(rpc_pb2.StatusRequest().SerializeToString(), timeout=timeout)
    except grpc.RpcError:
        return None
    resp = rpc_pb2.StatusResponse.FromString(raw)
    return resp.header.member_id, resp.leader


def _member_exited(procs: list[subprocess.Popen[bytes]], names: list[str], base: Path) -> bool:
    """Report a member that exited (with where its log is)."""
    for proc, name in zip(procs, names, strict=True):
        if proc.poll() is not None:
            print(
                f"member {name} exited ({proc.returncode}); see {base}/{name}.log", file=sys.stderr
            )
            return True
    return False


def run_cluster(args: argparse.Namespace) -> int:
    client_ports = [int(p) for p in args.client_ports.split(",")]
    peer_ports = [int(p) for p in args.peer_ports.split(",")]
    if len(client_ports) != 3 or len(peer_ports) != 3:
        print("raftkv cluster: give three client ports and three peer ports", file=sys.stderr)
        return 2
    host = args.host
    names = [f"infra{i}" for i in range(1, 4)]
    initial = ",".join(f"{n}=http://{host}:{p}" for n, p in zip(names, peer_ports, strict=True))
    base = Path(args.data_dir)
    base.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    endpoints = [f"{host}:{p}" for p in client_ports]
    try:
        for name, cport, pport in zip(names, client_ports, peer_ports, strict=True):
            cmd = [
                sys.executable,
                "-m",
                "raftkv",
                "serve",
                "--name",
                name,
                "--data-dir",
                str(base / f"{name}.etcd"),
                "--listen-client-urls",
                f"http://{host}:{cport}",
                "--advertise-client-urls",
                f"http://{host}:{cport}",
                "--listen-peer-urls",
                f"http://{host}:{pport}",
                "--initial-advertise-peer-urls",
                f"http://{host}:{pport}",
                "--initial-cluster",
                initial,
                "--initial-cluster-token",
                "raftkv-local-cluster",
                "--initial-cluster-state",
                "new",
            ]
            log_file = open(base / f"{name}.log", "ab")  # noqa: SIM115 (lives with the child)
            procs.append(
                subprocess.Popen(
                    cmd, stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=_unblock_signals
                )
            )
        print(f"raftkv cluster: 3 members, data and logs under {base}/")
        deadline = time.monotonic() + args.wait
        leader = 0
        ids: dict[int, str] = {}
        while time.monotonic() < deadline and not leader:
            if _member_exited(procs, names, base):
                return 1
            statuses = [_status(e, 1.0) for e in endpoints]
            leaders = {s[1] for s in statuses if s is not None and s[1]}
            if len(leaders) == 1 and all(s is not None for s in statuses):
                leader = leaders.pop()
                ids = {s[0]: e for s, e in zip(statuses, endpoints, strict=True) if s}
            else:
                time.sleep(0.1)  # poll interval while the members start
        if not leader:
            print(f"no leader within {args.wait:.0f}s; see {base}/*.log", file=sys.stderr)
            return 1
        print("endpoints: " + ",".join(endpoints))
        print(f"leader:    {leader:x} at {ids.get(leader, '?')}")
        print(
            "try:       ETCDCTL_API=3 etcdctl --endpoints="
            + ",".join(endpoints)
            + " put greeting hello"
        )
        print(
            "           ETCDCTL_API=3 etcdctl --endpoints="
            + ",".join(endpoints)
            + " endpoint status -w table"
        )
        print("Ctrl-C stops the cluster.", flush=True)
        while signal.sigtimedwait(STOP_SIGNALS, 1.0) is None:
            if _member_exited(procs, names, base):
                return 1
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        print("raftkv cluster: stopped", file=sys.stderr)
