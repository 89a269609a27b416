"""Raft messages on peer links: a fixed header, then context, entries and snapshot.

Entries travel in the native codec's encoding (CRC-protected records), the same bytes the
WAL stores; everything else is a small struct.
"""

from __future__ import annotations

import struct

from raftkv._native import decode_entries, encode_entries
from raftkv.raft import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)

# type, to, frm, term, log_term, index, commit, reject, reject_hint,
# len(context), len(entries), has_snapshot
_HEADER = struct.Struct("<BQQQQQQBQIIB")
_SNAP_HEADER = struct.Struct("<QQIIQ")  # index, term, n_voters, n_learners, len(data)
_ETYPES = {int(t): t for t in EntryType}
_MTYPES = {int(t): t for t in MessageType}


class WireError(ValueError):
    """Bytes that are not a valid Raft message."""


# Encoded slices of the log by (first index, last index, last term). By Raft's log matching
# property that triple identifies the slice's contents, so an entry is encoded once and the
# same bytes go to the WAL and to every follower (and a follower persists what it received).
_encoded: dict[tuple[int, int, int], bytes] = {}
_ENCODED_MAX = 256


def _remember(key: tuple[int, int, int], data: bytes) -> None:
    if len(_encoded) >= _ENCODED_MAX:
        _encoded.clear()
    _encoded[key] = data


def _encode(entries: list[Entry]) -> bytes:
    return encode_entries([(e.index, e.term, int(e.entry_type), e.data) for e in entries])


def entries_to_records(entries: list[Entry]) -> bytes:
    first, last = entries[0], entries[-1]
    if first.index == 0 or last.term == 0:
        return _encode(entries)  # forwarded proposals: no index or term yet, never cached
    key = (first.index, last.index, last.term)
    data = _encoded.get(key)
    if data is None:
        data = _encode(entries)
        _remember(key, data)
    return data


def records_to_entries(data: bytes) -> list[Entry]:
    etypes = _ETYPES
    entries = [Entry(i, t, etypes[et], d) for i, t, et, d in decode_entries(data)]
    if entries and entries[0].index and entries[-1].term:
        last = entries[-1]
        _remember((entries[0].index, last.index, last.term), data)
    return entries


def encode_message(m: Message) -> bytes:
    ents = entries_to_records(m.entries) if m.entries else b""
    parts = [
        _HEADER.pack(
            int(m.type),
            m.to,
            m.frm,
            m.term,
            m.log_term,
            m.index,
            m.commit,
            1 if m.reject else 0,
            m.reject_hint,
            len(m.context),
            len(ents),
            0 if m.snapshot is None else 1,
        ),
        m.context,
        ents,
    ]
    if m.snapshot is not None:
        meta = m.snapshot.meta
        voters = sorted(meta.conf_state.voters)
        learners = sorted(meta.conf_state.learners)
        parts.append(
            _SNAP_HEADER.pack(
                meta.index, meta.term, len(voters), len(learners), len(m.snapshot.data)
            )
        )
        parts.append(struct.pack(f"<{len(voters) + len(learners)}Q", *voters, *learners))
        parts.append(m.snapshot.data)
    return b"".join(parts)


def decode_message(data: bytes) -> Message:
    try:
        (
            mtype,
            to,
            frm,
            term,
            log_term,
            index,
            commit,
            reject,
            reject_hint,
            n_ctx,
            n_ents,
            has_snap,
        ) = _HEADER.unpack_from(data, 0)
        pos = _HEADER.size
        context = data[pos : pos + n_ctx]
        pos += n_ctx
        ents_bytes = data[pos : pos + n_ents]
        pos += n_ents
        if len(context) != n_ctx or len(ents_bytes) != n_ents:
            raise WireError("message shorter than its header says")
        entries = records_to_entries(ents_bytes) if n_ents else []
        snapshot = None
        if has_snap:
            s_index, s_term, n_voters, n_learners, n_data = _SNAP_HEADER.unpack_from(data, pos)
            pos += _SNAP_HEADER.size
            ids = struct.unpack_from(f"<{n_voters + n_learners}Q", data, pos)
            pos += 8 * (n_voters + n_learners)
            snap_data = data[pos : pos + n_data]
            if len(snap_data) != n_data:
                raise WireError("snapshot shorter than its header says")
            conf = ConfState(frozenset(ids[:n_voters]), frozenset(ids[n_voters:]))
            snapshot = Snapshot(SnapshotMeta(s_index, s_term, conf), snap_data)
        return Message(
            _MTYPES[mtype],
            to,
            frm,
            term,
            log_term,
            index,
            entries,
            commit,
            bool(reject),
            reject_hint,
            snapshot,
            context,
        )
    except WireError:
        raise
    except (struct.error, KeyError, ValueError) as exc:
        raise WireError(f"invalid Raft message: {exc}") from exc
