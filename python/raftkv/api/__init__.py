"""etcd's v3 service semantics over protobuf messages, independent of the transport.

Submodules: ``errors`` (etcd's gRPC errors), ``kv`` (KV request checks and read helpers).
"""
