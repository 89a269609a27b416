"""Revisions: (main, sub) pairs packed into one int in memory and 16/17 bytes on disk.

In memory a revision is ``main << 32 | sub`` so that ordinary integer comparison orders
revisions like etcd does (by main, then sub). On disk (the ``kv`` column family) a revision is
``main`` and ``sub`` as big-endian unsigned 64-bit integers, so RocksDB's bytewise order is the
revision order; a deletion (tombstone) has one extra byte, ``b"t"``.
"""

from __future__ import annotations

import struct

SUB_BITS = 32
SUB_MASK = (1 << SUB_BITS) - 1
TOMBSTONE_MARK = b"t"
REV_KEY_LEN = 16

_pack = struct.Struct(">QQ").pack
_unpack = struct.Struct(">QQ").unpack_from


def pack(main: int, sub: int) -> int:
    """The in-memory revision for (main, sub)."""
    return main << SUB_BITS | sub


def main_of(rev: int) -> int:
    return rev >> SUB_BITS


def sub_of(rev: int) -> int:
    return rev & SUB_MASK


def rev_key(rev: int) -> bytes:
    """The on-disk key of a revision holding a value."""
    return _pack(rev >> SUB_BITS, rev & SUB_MASK)


def tombstone_key(rev: int) -> bytes:
    """The on-disk key of a revision recording a deletion."""
    return _pack(rev >> SUB_BITS, rev & SUB_MASK) + TOMBSTONE_MARK


def parse_key(key: bytes) -> tuple[int, bool]:
    """(revision, is_tombstone) of an on-disk key."""
    main, sub = _unpack(key)
    return main << SUB_BITS | sub, len(key) > REV_KEY_LEN


def main_prefix(main: int) -> bytes:
    """The smallest on-disk key of revision ``main`` (sub 0)."""
    return _pack(main, 0)
