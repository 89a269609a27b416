"""TLS on the client port, with and without client-certificate verification."""

from __future__ import annotations

import grpc
import pytest

from raftkv._native import Front
from raftkv.front import FrontServer
from tests.front.conftest import blocking
from tests.native.helpers import run
from tests.tls_certs import CertAuthority

RANGE = "/etcdserverpb.KV/Range"


def echo(request: bytes, meta: dict[str, str] | None) -> bytes:
    return b"tls:" + request


def test_tls_round_trip_and_client_cert_auth() -> None:
    ca = CertAuthority()
    server_cert = ca.issue("member-1")
    client_cert = ca.issue("alice", server=False)
    stranger = CertAuthority("another CA").issue("mallory", server=False)

    async def main() -> None:
        front = Front(
            ["127.0.0.1:0"],
            cert_pem=server_cert.cert_pem,
            key_pem=server_cert.key_pem,
            client_ca_pem=ca.cert_pem,
        )
        server = FrontServer(front, {RANGE: echo})
        target = server.addresses[0]
        try:
            good = grpc.ssl_channel_credentials(
                root_certificates=ca.cert_pem,
                private_key=client_cert.key_pem,
                certificate_chain=client_cert.cert_pem,
            )
            with grpc.secure_channel(target, good) as channel:
                assert await blocking(channel.unary_unary(RANGE), b"hi", timeout=10) == b"tls:hi"

            no_cert = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem)
            with grpc.secure_channel(target, no_cert) as channel:
                with pytest.raises(grpc.RpcError) as err:
                    await blocking(channel.unary_unary(RANGE), b"hi", timeout=10)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE

            wrong_ca = grpc.ssl_channel_credentials(
                root_certificates=ca.cert_pem,
                private_key=stranger.key_pem,
                certificate_chain=stranger.cert_pem,
            )
            with (
                grpc.secure_channel(target, wrong_ca) as channel,
                pytest.raises(grpc.RpcError),
            ):
                await blocking(channel.unary_unary(RANGE), b"hi", timeout=10)

            with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError):
                await blocking(channel.unary_unary(RANGE), b"hi", timeout=10)
            assert front.stats()["unary_calls"] == 1
        finally:
            await server.close()

    run(main())


def test_tls_settings_are_validated() -> None:
    ca = CertAuthority()
    with pytest.raises(ValueError, match="both a certificate and a key"):
        Front(["127.0.0.1:0"], cert_pem=ca.cert_pem)
    with pytest.raises(ValueError, match="invalid listen address"):
        Front(["not-an-address"])
