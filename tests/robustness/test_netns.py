"""The network-namespace cluster itself: partitions cut peer links only, and nothing is left
behind (namespaces, bridge, processes) after a run, even one that fails."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from raftkv.verify.cluster import CLIENT_PORT, PEER_PORT, NetnsCluster, cleanup_stale_netns


def _netns() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def _connects_from(ns: str, ip: str, port: int) -> bool:
    """Whether a TCP connection from inside ``ns`` to ip:port succeeds within a second."""
    code = (
        "import socket,sys\n"
        f"s=socket.socket(); s.settimeout(1)\n"
        f"sys.exit(0 if s.connect_ex(('{ip}', {port})) == 0 else 1)\n"
    )
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], timeout=10)
    return r.returncode == 0


def _host_connects(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((ip, port)) == 0


def test_partition_cuts_peers_but_not_clients_and_everything_is_cleaned_up() -> None:
    prefix = f"rkv{os.getpid()}-"
    with pytest.raises(RuntimeError, match="boom"), NetnsCluster("raftkv") as c:
        a, b, z = c.members
        pa, pb = c.procs[a.name], c.procs[b.name]
        assert _connects_from(pa.ns, pb.ip, PEER_PORT)
        c.cut(a, b)
        assert not _connects_from(pa.ns, pb.ip, PEER_PORT)
        assert not _connects_from(pb.ns, pa.ip, PEER_PORT)
        assert _connects_from(pa.ns, c.procs[z.name].ip, PEER_PORT)
        # clients in the host namespace still reach both sides
        assert _host_connects(pa.ip, CLIENT_PORT) and _host_connects(pb.ip, CLIENT_PORT)
        c.heal_network()
        assert _connects_from(pa.ns, pb.ip, PEER_PORT)
        procs = [p.popen for p in c.procs.values()]
        raise RuntimeError("boom")  # a failing run must clean up too
    assert prefix not in _netns()
    assert (
        f"rkvb{os.getpid()}"
        not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    )
    assert all(p is not None and p.poll() is not None for p in procs)


def test_stale_namespaces_of_dead_runs_are_swept() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    ns, bridge = f"rkv{dead.pid}-m1", f"rkvb{dead.pid}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    mine = f"rkv{os.getpid()}-m9"  # a live run's namespace stays
    subprocess.run(["ip", "netns", "add", mine], check=True)
    try:
        removed = cleanup_stale_netns()
        assert ns in removed and bridge in removed
        assert mine not in removed and mine in _netns()
    finally:
        subprocess.run(["ip", "netns", "del", mine], check=False)
        subprocess.run(["ip", "netns", "del", ns], check=False)
        subprocess.run(["ip", "link", "del", bridge], check=False)
