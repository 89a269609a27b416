"""`raftkv bench` over TLS against a real etcd (client URL on https)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from raftkv._native import run_bench
from raftkv.cli import main
from tests.bench.etcd import ClientTls, Etcd, start_etcd
from tests.tls_certs import CertAuthority


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server/client pair it signs, and a second CA that signs nothing we use."""
    d = tmp_path_factory.mktemp("pki")
    ca = CertAuthority()
    pair = ca.issue("etcd")
    files = {
        "ca": ca.cert_pem,
        "cert": pair.cert_pem,
        "key": pair.key_pem,
        "other_ca": CertAuthority("someone else").cert_pem,
    }
    out = {}
    for name, pem in files.items():
        (d / f"{name}.pem").write_bytes(pem)
        out[name] = d / f"{name}.pem"
    return out


@pytest.fixture(scope="module")
def etcd_mtls(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]) -> Iterator[Etcd]:
    """etcd serving clients on https and requiring a client certificate from our CA."""
    tls = ClientTls(cert_file=pki["cert"], key_file=pki["key"], trusted_ca_file=pki["ca"])
    e = start_etcd(tmp_path_factory.mktemp("etcd-mtls"), tls=tls)
    try:
        yield e
    finally:
        e.stop()


def test_put_over_verified_mutual_tls(etcd_mtls: Etcd, pki: dict[str, Path]) -> None:
    report = run_bench(
        [f"https://{etcd_mtls.endpoint}"],
        conns=2,
        clients=8,
        total=300,
        sequential=True,
        key_prefix="tls/",
        key_size=9,
        cacert=str(pki["ca"]),
        cert=str(pki["cert"]),
        key=str(pki["key"]),
    )
    assert (report["ok"], report["errors"]) == (300, 0)
    assert etcd_mtls.count("tls/") == 300
    assert report["options"]["endpoints"] == [f"https://{etcd_mtls.endpoint}"]


def test_wrong_ca_fails_fast_with_the_reason(etcd_mtls: Etcd, pki: dict[str, Path]) -> None:
    with pytest.raises(ConnectionError, match="TLS handshake"):
        run_bench(
            [f"https://{etcd_mtls.endpoint}"],
            total=10,
            cacert=str(pki["other_ca"]),
            cert=str(pki["cert"]),
            key=str(pki["key"]),
        )


def test_missing_client_certificate_is_reported(etcd_mtls: Etcd, pki: dict[str, Path]) -> None:
    # TLS 1.3: the server rejects the (absent) client certificate after the handshake, so
    # this shows up on the probe call rather than in the handshake.
    with pytest.raises(ConnectionError, match=f"https://{etcd_mtls.endpoint}"):
        run_bench([f"https://{etcd_mtls.endpoint}"], total=10, cacert=str(pki["ca"]))


def test_skip_verify_accepts_an_unverifiable_server(tmp_path: Path, pki: dict[str, Path]) -> None:
    # No CA given at all, and no client certificate asked for: only skip-verify connects.
    e = start_etcd(tmp_path, tls=ClientTls(cert_file=pki["cert"], key_file=pki["key"]))
    try:
        report = run_bench(
            [f"https://{e.endpoint}"],
            clients=4,
            total=200,
            workload="range:1,put:1",
            insecure_skip_tls_verify=True,
        )
    finally:
        e.stop()
    assert (report["ok"], report["errors"]) == (200, 0)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--endpoints=https://127.0.0.1:1"], "need --cacert FILE"),
        (
            ["--endpoints=https://127.0.0.1:1", "--transport=tonic", "--insecure-skip-tls-verify"],
            "https endpoints need the h2 transport",
        ),
        (["--endpoints=127.0.0.1:1", "--cacert=/x"], "no endpoint is https://"),
        (
            ["--endpoints=https://127.0.0.1:1", "--cacert=/nonexistent/ca.pem"],
            "CA file /nonexistent/ca.pem: cannot read",
        ),
        (
            ["--endpoints=https://127.0.0.1:1", "--insecure-skip-tls-verify", "--cert=/x"],
            "both --cert and --key",
        ),
    ],
)
def test_bad_tls_options(capsys: pytest.CaptureFixture[str], args: list[str], needle: str) -> None:
    rc = main(["bench", *args, "--total=1", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err, err
