"""Hand-made protobuf encodings for the hottest responses (byte-identical to protobuf's)."""

from __future__ import annotations


def varint(n: int) -> bytes:
    """Protobuf varint of a non-negative int."""
    if n < 0x4000:  # most lengths and counts
        return bytes((n,)) if n < 0x80 else bytes((n & 0x7F | 0x80, n >> 7))
    if n < 0x10000000:
        if n < 0x200000:
            return bytes((n & 0x7F | 0x80, (n >> 7) & 0x7F | 0x80, n >> 14))
        return bytes((n & 0x7F | 0x80, (n >> 7) & 0x7F | 0x80, (n >> 14) & 0x7F | 0x80, n >> 21))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def revision_only(revision: int) -> bytes:
    """A serialized response holding only ``header.revision`` (PutResponse's common case)."""
    v = varint(revision)
    return b"\x0a" + bytes((len(v) + 1,)) + b"\x18" + v
