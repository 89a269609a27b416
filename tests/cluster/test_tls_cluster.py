"""A cluster with TLS on the client port and mutual TLS on peer links; etcdctl over TLS."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.harness import Cluster
from tests.tls_certs import CertAuthority


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path]]:
    base = tmp_path_factory.mktemp("tls")
    ca = CertAuthority()
    member = ca.issue("member")
    client = ca.issue("root", server=False)
    files = {
        "ca.pem": ca.cert_pem,
        "member.pem": member.cert_pem,
        "member-key.pem": member.key_pem,
        "client.pem": client.cert_pem,
        "client-key.pem": client.key_pem,
    }
    for name, data in files.items():
        (base / name).write_bytes(data)
    cluster = Cluster(
        base / "c",
        extra_args=[
            f"--cert-file={base / 'member.pem'}",
            f"--key-file={base / 'member-key.pem'}",
            f"--trusted-ca-file={base / 'ca.pem'}",
            "--client-cert-auth",
            f"--peer-cert-file={base / 'member.pem'}",
            f"--peer-key-file={base / 'member-key.pem'}",
            f"--peer-trusted-ca-file={base / 'ca.pem'}",
            "--peer-client-cert-auth",
        ],
        ctl_args=[
            f"--cacert={base / 'ca.pem'}",
            f"--cert={base / 'client.pem'}",
            f"--key={base / 'client-key.pem'}",
        ],
    )
    cluster.base.mkdir(parents=True, exist_ok=True)
    for node in cluster.nodes:
        cluster.start_node(node)
    try:
        _wait_for_a_leader_over_tls(cluster)
        yield cluster, base
    finally:
        cluster.stop()


def _wait_for_a_leader_over_tls(cluster: Cluster, deadline_s: float = 30.0) -> None:
    """The harness polls over plain gRPC; here etcdctl (with TLS flags) does the polling."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        st = cluster.statuses()
        leaders = {s.get("leader", 0) for s in st.values()}
        if len(st) == len(cluster.nodes) and len(leaders) == 1 and 0 not in leaders:
            return
    raise TimeoutError(f"no leader over TLS within {deadline_s}s")


def test_etcdctl_over_tls_and_peers_over_mutual_tls(tls_cluster: tuple[Cluster, Path]) -> None:
    cluster, base = tls_cluster
    assert cluster.ctl("put", "secure", "yes").stdout == "OK\n"
    for node in cluster.nodes:  # replicated over TLS peer links to every member
        out = cluster.ctl("get", "secure", "--consistency=s", endpoints=node.endpoint).stdout
        assert out == "secure\nyes\n"
    # without a client certificate the member refuses the connection
    r = cluster.ctl(
        "get",
        "secure",
        ctl_args=[f"--cacert={base / 'ca.pem'}"],
        check=False,
        extra=["--dial-timeout=2s", "--command-timeout=3s"],
    )
    assert r.returncode != 0
