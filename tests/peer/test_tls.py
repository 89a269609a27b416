"""Peer links over TLS (rustls) with certificates made at test time."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from raftkv._native import PEER_FRAME_HEADER_LEN, PeerTransport, encode_peer_hello
from tests.native.helpers import run
from tests.peer.certs import Authority, Issued
from tests.peer.helpers import CLUSTER, TIMEOUT, Member, numbered


@dataclass(frozen=True)
class Pki:
    ca: Authority
    members: dict[int, Issued]
    rogue_ca: Authority
    rogue: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    d: Path = tmp_path_factory.mktemp("pki")
    ca = Authority(d, "cluster")
    rogue_ca = Authority(d, "rogue")
    yield Pki(ca, {i: ca.issue(f"member-{i}") for i in (1, 2, 3)}, rogue_ca, rogue_ca.issue("x"))


def tls(pki: Pki, issued: Issued, client_cert_auth: bool = True) -> dict[str, Any]:
    return {
        "cert_file": issued.cert,
        "key_file": issued.key,
        "trusted_ca_file": pki.ca.ca_file,
        "client_cert_auth": client_cert_auth,
    }


def test_tls_links_with_client_cert_auth_exchange_in_order(pki: Pki) -> None:
    async def main() -> None:
        a = Member.start(1, **tls(pki, pki.members[1]))
        b = Member.start(2, peers={1: a.addr}, **tls(pki, pki.members[2]))
        c = Member.start(3, peers={1: a.addr}, **tls(pki, pki.members[3]))
        a.native.add_peer(2, b.addr)
        for turn in range(10):
            b.t.send_many([(1, numbered(turn * 30 + i, 300)) for i in range(30)])
            c.t.send_many([(1, numbered(turn * 30 + i, 300)) for i in range(30)])
            a.t.send_many([(2, numbered(turn * 30 + i, 300)) for i in range(30)])
            await asyncio.sleep(0)
        await a.received_count(2, 300)
        await a.received_count(3, 300)
        await b.received_count(1, 300)
        assert a.from_peer(2) == list(range(300))
        assert a.from_peer(3) == list(range(300))
        assert b.from_peer(1) == list(range(300))
        assert a.native.stats()["rejected"] == 0
        for m in (a, b, c):
            await m.close()

    run(main())


def test_member_with_a_cert_from_another_ca_is_refused(pki: Pki) -> None:
    async def main() -> None:
        a = Member.start(1, **tls(pki, pki.members[1]))
        rogue = Member.start(
            2,
            peers={1: a.addr},
            cert_file=pki.rogue.cert,
            key_file=pki.rogue.key,
            trusted_ca_file=pki.ca.ca_file,
        )
        await a.wait_for("refusal", lambda: bool(a.events_of("rejected")))
        await rogue.wait_for("failure", lambda: bool(rogue.events_of("connect_failed", 1)))
        assert "TLS handshake" in a.events_of("rejected")[0][2]
        rogue.t.send(1, numbered(0))
        await rogue.wait_for("unreachable", lambda: 1 in rogue.unreachable)
        assert a.received == []
        await rogue.close()
        await a.close()

    run(main())


async def _python_tls_client(addr: str, ctx: ssl.SSLContext) -> bytes:
    """Handshake with Python's ssl, send a hello, return the answer (b"" if closed)."""
    host, port = addr.rsplit(":", 1)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, int(port), ssl=ctx, server_hostname="127.0.0.1"),
            TIMEOUT,
        )
    except (ssl.SSLError, ConnectionError):
        return b""
    try:
        writer.write(encode_peer_hello(CLUSTER, 42))
        await writer.drain()
        return await asyncio.wait_for(reader.read(PEER_FRAME_HEADER_LEN + 16), TIMEOUT)
    except (ssl.SSLError, ConnectionError):
        return b""
    finally:
        writer.close()


def _client_ctx(pki: Pki, cert: Issued | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca.ca_file))
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    return ctx


def test_client_without_a_cert_is_refused_when_client_cert_auth_is_on(pki: Pki) -> None:
    async def main() -> None:
        a = Member.start(1, **tls(pki, pki.members[1], client_cert_auth=True))
        assert await _python_tls_client(a.addr, _client_ctx(pki, None)) == b""
        await a.wait_for("refusal", lambda: bool(a.events_of("rejected")))
        reason = a.events_of("rejected")[0][2]
        assert "TLS handshake" in reason and "certificate" in reason.lower(), reason
        # The same client with a member certificate gets in.
        answer = await _python_tls_client(a.addr, _client_ctx(pki, pki.members[2]))
        assert answer[8] == 2, answer  # HelloOk
        await a.close()

    run(main())


def test_client_without_a_cert_is_served_when_client_cert_auth_is_off(pki: Pki) -> None:
    async def main() -> None:
        a = Member.start(1, **tls(pki, pki.members[1], client_cert_auth=False))
        answer = await _python_tls_client(a.addr, _client_ctx(pki, None))
        assert answer[8] == 2, answer
        await a.close()

    run(main())


def test_plaintext_dialer_is_refused_by_a_tls_listener(pki: Pki) -> None:
    async def main() -> None:
        a = Member.start(1, **tls(pki, pki.members[1]))
        plain = Member.start(2, peers={1: a.addr})
        await a.wait_for("refusal", lambda: bool(a.events_of("rejected")))
        await plain.wait_for("failure", lambda: bool(plain.events_of("connect_failed", 1)))
        assert "TLS handshake" in a.events_of("rejected")[0][2]
        await plain.close()
        await a.close()

    run(main())


def test_bad_tls_material_is_a_clear_error(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="together"):
        PeerTransport(1, CLUSTER, "127.0.0.1:0", cert_file=pki.members[1].cert)
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    with pytest.raises(ValueError, match="holds no certificate"):
        PeerTransport(
            1,
            CLUSTER,
            "127.0.0.1:0",
            cert_file=empty,
            key_file=pki.members[1].key,
            trusted_ca_file=pki.ca.ca_file,
        )
