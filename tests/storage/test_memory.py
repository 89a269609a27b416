"""Bounded memory check: applying puts keeps no per-put memory outside RocksDB's memtables.

A reused upb message once kept every stored value in its arena (about 300 bytes per put,
never freed). Here 4,000 puts of 16 KiB values (64 MiB) go through ``MvccStore.apply``; the
glibc heap may grow by what RocksDB reports for its memtables plus a small allowance, not by
the values' total size.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2
from raftkv.server.memreport import malloc_info
from raftkv.storage.mvcc import PUT, MvccStore

PUTS = 4_000
VALUE = 16 << 10


def _in_use() -> int:
    info = malloc_info()
    return info["in_use_bytes"] + info["mmap_bytes"]


@pytest.mark.skipif(not malloc_info(), reason="needs glibc's mallinfo2")
def test_puts_leave_no_memory_behind(tmp_path: Path) -> None:
    store = MvccStore(tmp_path / "kv")
    try:
        value = b"v" * VALUE
        reqs = [
            rpc_pb2.PutRequest(key=b"k%04d" % (i % 100), value=value).SerializeToString()
            for i in range(PUTS)
        ]
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        before = _in_use()
        for i in range(0, PUTS, 50):
            store.apply(i // 50 + 1, [(PUT, r) for r in reqs[i : i + 50]])
        grown = _in_use() - before
        memtables = store.memory_usage()["rocksdb.cur-size-all-mem-tables"]
        leak = grown - memtables
        assert leak < 16 << 20, (grown, memtables)  # the values were 64 MiB
    finally:
        store.close()
