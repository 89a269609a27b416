"""A server with an empty Put handler, behind the native front or behind grpcio.

Usage: python -m benchmarks.front_server native|grpcio PORT

Prints ``ready <address>`` once serving, then serves until stdin closes. Used by
benchmarks/test_front_bench.py to compare the two fronts under the same load.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2

PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"
EMPTY_PUT_RESPONSE: bytes = rpc_pb2.PutResponse().SerializeToString()
EMPTY_RANGE_RESPONSE: bytes = rpc_pb2.RangeResponse().SerializeToString()


async def put(request: bytes, meta: dict[str, str] | None) -> bytes:
    return EMPTY_PUT_RESPONSE


async def range_(request: bytes, meta: dict[str, str] | None) -> bytes:
    """Answers the load generator's connection probe."""
    return EMPTY_RANGE_RESPONSE


async def wait_for_stdin_eof() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def serve_native(port: int) -> None:
    from raftkv._native import Front
    from raftkv.front import FrontServer

    server = FrontServer(Front([f"127.0.0.1:{port}"]), {PUT: put, RANGE: range_})
    print(f"ready {server.addresses[0]}", flush=True)
    await wait_for_stdin_eof()
    await server.close()


async def serve_grpcio(port: int) -> None:
    import grpc

    async def handler(request: bytes, context: object) -> bytes:
        return EMPTY_PUT_RESPONSE

    async def range_handler(request: bytes, context: object) -> bytes:
        return EMPTY_RANGE_RESPONSE

    server = grpc.aio.server()
    generic = grpc.method_handlers_generic_handler(
        "etcdserverpb.KV",
        {
            "Put": grpc.unary_unary_rpc_method_handler(handler),
            "Range": grpc.unary_unary_rpc_method_handler(range_handler),
        },
    )
    server.add_generic_rpc_handlers((generic,))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"ready 127.0.0.1:{bound}", flush=True)
    await wait_for_stdin_eof()
    await server.stop(None)


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    serve = {"native": serve_native, "grpcio": serve_grpcio}[kind]
    uvloop.run(serve(port))


if __name__ == "__main__":
    main()
