"""MVCC key-value store on RocksDB (rocksdict) with etcd's KV semantics.

Layout (column families):

- ``kv``: revision key (``revision.rev_key`` / ``tombstone_key``) -> serialized
  ``mvccpb.KeyValue`` (key, create_revision, mod_revision, version, value, lease); a tombstone
  stores a KeyValue holding only the key.
- ``meta``: ``applied_index``, ``revision`` (current main revision) and ``compact_revision``.
- further families (leases, auth, members, alarms) are for later; ``column_family()`` opens or
  creates one by name, and the dispatch table of ``apply`` can take more request kinds.

Writes come only through ``apply(raft_index, requests)``: every request of the call and the new
applied index go into one RocksDB WriteBatch, so a crash leaves either all of the entry or none
of it, and ``apply`` skips entries at or below the stored applied index. Reads use the
in-memory key index (``keyindex.TreeIndex``, rebuilt from ``kv`` on open) and fetch values
from RocksDB, or from the batch being built while inside ``apply``.

Semantics follow etcd 3.4/3.5 (server/etcdserver/apply.go, mvcc/kvstore_txn.go): revisions start
at 1; a put always makes a new revision; a delete that deletes nothing does not; a txn is one
revision whose changes take sub revisions 0, 1, ...; compaction is physical and immediate.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple, TypeAlias, cast

from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from rocksdict import (
    BlockBasedOptions,
    Cache,
    Checkpoint,
    Options,
    Rdict,
    WriteBatch,
    WriteOptions,
)

from raftkv.api import errors
from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2
from raftkv.pb.etcd.api.mvccpb import kv_pb2
from raftkv.status import GrpcError
from raftkv.storage.encoding import revision_only, varint
from raftkv.storage.keyindex import KeyIndex, TreeIndex
from raftkv.storage.kvrules import (
    CMP_VALUE,
    SORT_ASCEND,
    SORT_DESCEND,
    SORT_NONE,
    TARGET_CREATE,
    TARGET_KEY,
    TARGET_MOD,
    TARGET_VALUE,
    TARGET_VERSION,
    compare_fields,
    compare_result,
    gte_end,
    is_plain_range,
    txn_is_readonly,
)
from raftkv.storage.revision import (
    SUB_BITS,
    SUB_MASK,
    main_prefix,
    parse_key,
    rev_key,
    tombstone_key,
)

__all__ = [
    "COMPACTION",
    "DELETE_RANGE",
    "PUT",
    "TXN",
    "ApplyResult",
    "HashKV",
    "MvccStore",
    "StoreBrokenError",
    "txn_is_readonly",
]

# Request kinds accepted by ``MvccStore.apply``.
PUT = 1
DELETE_RANGE = 2
TXN = 3
COMPACTION = 4

ApplyResult: TypeAlias = bytes | GrpcError
"""A serialized response (header.revision set) or the error to answer with."""

Handler: TypeAlias = Callable[[bytes], ApplyResult]

KV_CF = "kv"
META_CF = "meta"
KV_MEMTABLE_BYTES = 32 << 20
META_MEMTABLE_BYTES = 4 << 20
_APPLIED_KEY = b"applied_index"
_REVISION_KEY = b"revision"
_COMPACT_KEY = b"compact_revision"

_pack_rev = struct.Struct(">QQ").pack
_KeyValue = kv_pb2.KeyValue
_PutRequest = rpc_pb2.PutRequest
_PutResponse = rpc_pb2.PutResponse
_DeleteRangeRequest = rpc_pb2.DeleteRangeRequest
_DeleteRangeResponse = rpc_pb2.DeleteRangeResponse
_TxnRequest = rpc_pb2.TxnRequest
_TxnResponse = rpc_pb2.TxnResponse
_RangeResponse = rpc_pb2.RangeResponse
_CompactionRequest = rpc_pb2.CompactionRequest
_CompactionResponse = rpc_pb2.CompactionResponse

# A matching key: (revision, create main revision, version, key index).
_Row: TypeAlias = tuple[int, int, int, KeyIndex]
# The branch a txn takes, and the same for each nested txn of that branch, in order.
_Path: TypeAlias = tuple[bool, list["_Path"]]


class HashKV(NamedTuple):
    hash: int
    compact_revision: int
    hash_revision: int


class StoreBrokenError(RuntimeError):
    """A write failed halfway; the in-memory state is no longer trusted. Reopen the store."""


def _items(cf: Rdict) -> Iterator[tuple[bytes, bytes]]:
    """All (key, value) pairs of a raw-mode column family, in key order."""
    return cast(Iterator[tuple[bytes, bytes]], iter(cf.items()))


def _items_from(cf: Rdict, start: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs of a raw-mode column family from ``start`` on, in key order."""
    return cast(Iterator[tuple[bytes, bytes]], iter(cf.items(from_key=start)))


def _no_leases(lease: int) -> bool:
    return False


def _i64(value: int) -> bytes:
    return value.to_bytes(8, "big", signed=True)


def _read_i64(raw: bytes | None, default: int) -> int:
    return default if raw is None else int.from_bytes(raw, "big", signed=True)


class MvccStore:
    """etcd's MVCC key-value store over one RocksDB database."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lease_exists: Callable[[int], bool] | None = None,
        cache_bytes: int = 128 << 20,
    ) -> None:
        """Open (or create) the store at ``path`` and rebuild the key index.

        ``lease_exists(lease_id)`` answers whether a lease is granted (default: no lease is);
        ``cache_bytes`` sizes RocksDB's block cache for the ``kv`` family.
        """
        self.path = os.fspath(path)
        self.lease_exists: Callable[[int], bool] = lease_exists or _no_leases
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.create_missing_column_families(True)
        kv_opts = Options(raw_mode=True)
        table = BlockBasedOptions()
        table.set_block_cache(Cache(cache_bytes))
        table.set_bloom_filter(10, False)
        kv_opts.set_block_based_table_factory(table)
        # Memtables are resident memory: RocksDB's 64 MiB default (up to two of them while
        # one flushes) was the largest single item in a member's RSS under puts.
        kv_opts.set_write_buffer_size(KV_MEMTABLE_BYTES)
        meta_opts = Options(raw_mode=True)
        meta_opts.set_write_buffer_size(META_MEMTABLE_BYTES)  # a few keys, rewritten per apply
        families = {KV_CF: kv_opts, META_CF: meta_opts}
        if os.path.exists(os.path.join(self.path, "CURRENT")):
            for name in Rdict.list_cf(self.path):
                if name != "default":
                    families.setdefault(name, Options(raw_mode=True))
        self._db = Rdict(self.path, opts, column_families=families)
        self._kv = self._db.get_column_family(KV_CF)
        self._meta = self._db.get_column_family(META_CF)
        self._kv_h = self._db.get_column_family_handle(KV_CF)
        self._meta_h = self._db.get_column_family_handle(META_CF)
        self._wopts = WriteOptions()
        self._wb: WriteBatch | None = None
        self._pending: dict[bytes, bytes] = {}
        self._broken = False
        self._closed = False
        self._index = TreeIndex()
        self._get_ki: Callable[[bytes], KeyIndex | None] = self._index.lookup()
        self._handlers: dict[int, Handler] = {
            PUT: self._apply_put,
            DELETE_RANGE: self._apply_delete_range,
            TXN: self._apply_txn,
            COMPACTION: self._apply_compaction,
        }
        # Inside a write txn: base revision and number of changes so far.
        self._base = 0
        self._changes = 0
        self._applied = _read_i64(self._meta.get(_APPLIED_KEY), 0)
        self._compact_rev = _read_i64(self._meta.get(_COMPACT_KEY), -1)
        self._rev = max(1, _read_i64(self._meta.get(_REVISION_KEY), 1), self._compact_rev)
        self._restore_index()

    # ------------------------------------------------------------------ lifecycle

    def _restore_index(self) -> None:
        keys: dict[bytes, KeyIndex] = {}
        parse = _KeyValue.FromString
        top = 0
        for k, v in _items(self._kv):
            rev, tomb = parse_key(k)
            kv = parse(v)
            key = kv.key
            ki = keys.get(key)
            if ki is None:
                ki = keys[key] = KeyIndex(key)
            if tomb:
                ki.tombstone(rev)
            else:
                ki.restore(rev, kv.create_revision, kv.version, kv.lease)
            top = rev
        self._index.bulk_load(keys)
        self._get_ki = self._index.lookup()
        self._rev = max(self._rev, top >> SUB_BITS)

    def close(self) -> None:
        """Flush and close; the store cannot be used afterwards."""
        if self._closed:
            return
        self._closed = True
        db = self._db
        del self._kv, self._meta, self._kv_h, self._meta_h
        db.close()
        del self._db

    def __enter__(self) -> MvccStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sync(self) -> None:
        """Make every applied write durable (fsync RocksDB's WAL).

        Apply does not fsync: the Raft log is the durable record and entries above the stored
        applied index are applied again after a crash. Call this before releasing Raft log
        entries (log compaction) up to ``applied_index``.
        """
        self._db.flush_wal(True)

    def checkpoint(self, dest: str | os.PathLike[str]) -> int:
        """Write a consistent copy of the whole store into the new directory ``dest``.

        A RocksDB checkpoint (hard links to immutable files where possible), for Raft
        snapshots: stream the directory's files; the receiver installs them with
        ``install_checkpoint`` and opens an MvccStore on them. Returns the applied index the
        copy holds (it includes every column family, so leases etc. travel with it).
        """
        if self._wb is not None:
            raise RuntimeError("checkpoint during apply")
        cp = Checkpoint(self._db)
        try:
            cp.create_checkpoint(os.fspath(dest))
        finally:
            del cp
        return self._applied

    @staticmethod
    def install_checkpoint(
        path: str | os.PathLike[str], checkpoint: str | os.PathLike[str]
    ) -> None:
        """Make the checkpoint directory the store at ``path`` (whose store must be closed).

        The old directory is renamed aside first and removed last; a crash in between leaves
        either the old store or none at ``path`` (an empty store then catches up by Raft).
        """
        path = os.fspath(path)
        old = path + ".replaced"
        if os.path.exists(old):
            shutil.rmtree(old)
        if os.path.exists(path):
            os.rename(path, old)
        os.rename(os.fspath(checkpoint), path)
        if os.path.exists(old):
            shutil.rmtree(old)

    def column_family(self, name: str) -> Rdict:
        """The column family ``name``, created if missing (for leases, auth, members...)."""
        try:
            return self._db.get_column_family(name)
        except Exception:
            return self._db.create_column_family(name, Options(raw_mode=True))

    # ------------------------------------------------------------------ state

    @property
    def applied_index(self) -> int:
        """The last Raft index whose requests are in the store."""
        return self._applied

    @property
    def revision(self) -> int:
        """The current (latest) main revision; 1 for an empty store, like etcd."""
        return self._rev

    @property
    def compact_revision(self) -> int:
        """The revision of the last compaction, -1 if never compacted (like etcd)."""
        return self._compact_rev

    @property
    def write_batch(self) -> WriteBatch:
        """The batch being built; only valid inside a handler called by ``apply``."""
        if self._wb is None:
            raise RuntimeError("no apply in progress")
        return self._wb

    def __len__(self) -> int:
        """Number of keys that exist now."""
        return sum(1 for ki in self._index if ki.rev)

    def _property(self, name: str) -> int:
        """A RocksDB integer property summed over the column families."""
        return sum(cf.property_int_value(name) or 0 for cf in (self._kv, self._meta))

    def db_size(self) -> int:
        """Approximate bytes used by the database (SST files and memtables, all families)."""
        return self._property("rocksdb.total-sst-files-size") + self._property(
            "rocksdb.size-all-mem-tables"
        )

    def memory_usage(self) -> dict[str, int]:
        """RocksDB's memory (bytes, all families) and the size of the key index."""
        out = {
            name: self._property(name)
            for name in (
                "rocksdb.cur-size-all-mem-tables",
                "rocksdb.size-all-mem-tables",
                "rocksdb.estimate-table-readers-mem",
                "rocksdb.block-cache-usage",
                "rocksdb.block-cache-pinned-usage",
            )
        }
        out["index_keys"] = len(self._index)
        out["index_revisions"] = sum(
            len(ki.revs) + sum(len(g.revs) for g in ki.closed) for ki in self._index
        )
        return out

    def add_handler(self, kind: int, handler: Handler) -> None:
        """Let ``apply`` accept another request kind (leases, auth...); it writes through
        ``write_batch`` and returns the serialized response or a GrpcError."""
        if kind in self._handlers:
            raise ValueError(f"request kind {kind} already handled")
        self._handlers[kind] = handler

    # ------------------------------------------------------------------ apply (writes)

    def apply(self, raft_index: int, requests: Sequence[tuple[int, bytes]]) -> list[ApplyResult]:
        """Apply the requests of one committed Raft entry (or several, under the last index).

        Returns one result per request, in order; returns ``[]`` without doing anything when
        ``raft_index`` is not above ``applied_index`` (already applied). All writes of the call
        and the new applied index are written in one atomic batch. If writing fails the store
        raises StoreBrokenError from then on and must be reopened.
        """
        if self._broken:
            raise StoreBrokenError("store must be reopened after a failed write")
        if raft_index <= self._applied:
            return []
        wb = WriteBatch(raw_mode=True)
        self._wb = wb
        results: list[ApplyResult] = []
        append = results.append
        handlers = self._handlers
        rev0, compact0 = self._rev, self._compact_rev
        try:
            for kind, payload in requests:
                handler = handlers.get(kind)
                if handler is None:
                    append(errors.MALFORMED_REQUEST.exc())
                    continue
                try:
                    append(handler(payload))
                except DecodeError:
                    append(errors.MALFORMED_REQUEST.exc())
                except GrpcError as err:
                    err.__traceback__ = None  # keep no frames (and store handles) alive
                    append(err)
            wb.put(_APPLIED_KEY, _i64(raft_index), self._meta_h)
            if self._rev != rev0:
                wb.put(_REVISION_KEY, _i64(self._rev), self._meta_h)
            if self._compact_rev != compact0:
                wb.put(_COMPACT_KEY, _i64(self._compact_rev), self._meta_h)
            self._db.write(wb, self._wopts)
        except BaseException as exc:
            self._broken = True
            raise StoreBrokenError("apply failed; reopen the store") from exc
        finally:
            self._wb = None
            self._pending.clear()
        self._applied = raft_index
        return results

    def _write_put(self, ki: KeyIndex, value: bytes, lease: int, rev: int) -> None:
        ki.put(rev, lease)
        # A fresh message each time: a reused upb message keeps every value ever assigned
        # to it in its arena (about 300 bytes per put, never freed); a new one costs the same.
        m = _KeyValue()
        m.key = ki.key
        m.create_revision = ki.created
        m.mod_revision = rev >> SUB_BITS
        m.version = ki.ver
        m.value = value
        m.lease = lease
        kvb: bytes = m.SerializeToString()
        k = _pack_rev(rev >> SUB_BITS, rev & SUB_MASK)
        self._wb.put(k, kvb, self._kv_h)  # type: ignore[union-attr]
        self._pending[k] = kvb

    def _write_delete(self, ki: KeyIndex, rev: int) -> None:
        ki.tombstone(rev)
        kvb = _KeyValue(key=ki.key).SerializeToString()
        self._wb.put(tombstone_key(rev), kvb, self._kv_h)  # type: ignore[union-attr]

    def _apply_put(self, payload: bytes) -> ApplyResult:
        req = _PutRequest.FromString(payload)
        lease = req.lease
        if lease and not self.lease_exists(lease):
            return errors.LEASE_NOT_FOUND.exc()
        key = req.key
        ki = self._get_ki(key)
        value = req.value
        prev: bytes | None = None
        if req.ignore_value or req.ignore_lease or req.prev_kv:
            if ki is not None and ki.rev:
                prev = self._value(ki.rev)
            if req.ignore_value or req.ignore_lease:
                if prev is None or ki is None:
                    return errors.KEY_NOT_FOUND.exc()
                if req.ignore_value:
                    value = _KeyValue.FromString(prev).value
                if req.ignore_lease:
                    lease = ki.lease
        if ki is None:
            ki = self._index.create(key)
        main = self._rev + 1
        self._write_put(ki, value, lease, main << SUB_BITS)
        self._rev = main
        if prev is not None and req.prev_kv:
            resp = _PutResponse()
            resp.header.revision = main
            resp.prev_kv.MergeFromString(prev)
            out: bytes = resp.SerializeToString()
            return out
        return revision_only(main)

    def _apply_delete_range(self, payload: bytes) -> ApplyResult:
        req = _DeleteRangeRequest.FromString(payload)
        self._base = self._rev
        self._changes = 0
        resp = _DeleteRangeResponse()
        self._delete_range(req, resp)
        if self._changes:
            self._rev += 1
        out: bytes = resp.SerializeToString()
        return out

    def _apply_txn(self, payload: bytes) -> ApplyResult:
        req = _TxnRequest.FromString(payload)
        out: bytes = self._txn(req, write=True).SerializeToString()
        return out

    def _apply_compaction(self, payload: bytes) -> ApplyResult:
        req = _CompactionRequest.FromString(payload)
        rev = req.revision
        if rev <= self._compact_rev:
            return errors.COMPACTED.exc()
        if rev > self._rev:
            return errors.FUTURE_REV.exc()
        self._compact(rev)
        resp = _CompactionResponse()
        resp.header.revision = self._rev
        out: bytes = resp.SerializeToString()
        return out

    def _compact(self, at_main: int) -> None:
        drop: list[int] = []
        tombs: list[int] = []
        index = self._index
        gone = [ki.key for ki in index if ki.compact(at_main, drop, tombs)]
        for key in gone:
            index.remove(key)
        wb = self._wb
        assert wb is not None
        kv_h = self._kv_h
        pending = self._pending
        for rev in drop:
            k = rev_key(rev)
            wb.delete(k, kv_h)
            pending.pop(k, None)
        for rev in tombs:
            wb.delete(tombstone_key(rev), kv_h)
        self._compact_rev = at_main

    # ------------------------------------------------------------------ reads

    def _value(self, rev: int) -> bytes:
        """The stored KeyValue of a put revision."""
        k = rev_key(rev)
        v = self._pending.get(k)
        if v is None:
            return cast(bytes, self._kv[k])
        return v

    def _values(self, revs: list[int]) -> list[bytes]:
        if len(revs) == 1:
            return [self._value(revs[0])]
        keys = [rev_key(r) for r in revs]
        pending = self._pending
        kv = self._kv
        if not pending:
            return cast(list[bytes], kv.get(cast(list[str | int | float | bytes | bool], keys)))
        return [pending[k] if k in pending else cast(bytes, kv[k]) for k in keys]

    def _kis(self, key: bytes, range_end: bytes) -> list[KeyIndex]:
        """Key indexes of keys matching (key, range_end), deleted ones included."""
        if range_end:
            return self._index.range(key, gte_end(range_end))
        one = self._get_ki(key)
        return [] if one is None else [one]

    def _rows(self, key: bytes, range_end: bytes, at: int, cur: int) -> list[_Row]:
        """Keys matching (key, range_end) that exist at main revision ``at``."""
        kis = self._kis(key, range_end)
        rows: list[_Row] = []
        append = rows.append
        if at >= cur:
            for ki in kis:
                rev = ki.rev
                if rev:
                    append((rev, ki.created, ki.ver, ki))
        else:
            for ki in kis:
                got = ki.get(at)
                if got is not None:
                    append((got[0], got[1], got[2], ki))
        return rows

    def range(self, req: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
        """Serve a Range (already validated) from the current state.

        Raises GrpcError for a future or compacted revision. The header carries only the
        revision; the caller fills cluster_id, member_id and raft_term.
        """
        resp = _RangeResponse()
        self._range(req, self._rev, resp)
        return resp

    def range_serialized(self, req: rpc_pb2.RangeRequest) -> bytes:
        """``range(req)`` serialized; built from the stored bytes without parsing them."""
        cur = self._rev
        if req.keys_only:
            resp = _RangeResponse()
            self._range(req, cur, resp)
            out: bytes = resp.SerializeToString()
            return out
        count, more, kvbs = self._select(req, cur)
        parts = [revision_only(cur)]
        for b in kvbs:
            parts.append(b"\x12" + varint(len(b)))
            parts.append(b)
        if more:
            parts.append(b"\x18\x01")
        if count:
            parts.append(b"\x20" + varint(count))
        return b"".join(parts)

    def _range(self, req: rpc_pb2.RangeRequest, cur: int, resp: rpc_pb2.RangeResponse) -> None:
        count, more, kvbs = self._select(req, cur)
        resp.header.revision = cur
        resp.count = count
        if more:
            resp.more = True
        kvs = resp.kvs
        if req.keys_only:
            for b in kvbs:
                kv = kvs.add()
                kv.MergeFromString(b)
                kv.ClearField("value")
        else:
            for b in kvbs:
                kvs.add().MergeFromString(b)

    def _select(self, req: rpc_pb2.RangeRequest, cur: int) -> tuple[int, bool, list[bytes]]:
        """etcd's Range at view revision ``cur``: (count, more, stored KeyValues to return)."""
        at = req.revision
        if at > cur:
            raise errors.FUTURE_REV.exc()
        if at <= 0:
            at = cur
        if at < self._compact_rev:
            raise errors.COMPACTED.exc()
        if at >= cur and (req.count_only or is_plain_range(req)):
            # The common cases (counting; a limited page in key order) at the current
            # revision: no per-key tuples, values read only for the page.
            live = [ki for ki in self._kis(req.key, req.range_end) if ki.rev]
            count = len(live)
            if req.count_only:
                return count, False, []
            limit = req.limit
            more = 0 < limit < count
            if more:
                live = live[:limit]
            return count, more, self._values([ki.rev for ki in live])
        rows = self._rows(req.key, req.range_end, at, cur)
        count = len(rows)
        if req.count_only or not rows:
            return count, False, []
        if req.max_mod_revision:
            hi = (req.max_mod_revision + 1) << SUB_BITS
            rows = [r for r in rows if r[0] < hi]
        if req.min_mod_revision:
            lo = req.min_mod_revision << SUB_BITS
            rows = [r for r in rows if r[0] >= lo]
        if req.max_create_revision:
            mx = req.max_create_revision
            rows = [r for r in rows if r[1] <= mx]
        if req.min_create_revision:
            mn = req.min_create_revision
            rows = [r for r in rows if r[1] >= mn]
        order = req.sort_order
        target = req.sort_target
        if target != TARGET_KEY and order == SORT_NONE:
            order = SORT_ASCEND
        kvbs: list[bytes] | None = None
        if order != SORT_NONE and not (target == TARGET_KEY and order == SORT_ASCEND):
            desc = order == SORT_DESCEND
            if target == TARGET_KEY:
                rows.reverse()  # keys are unique and already ascending
            elif target == TARGET_VERSION:
                rows.sort(key=lambda r: r[2], reverse=desc)
            elif target == TARGET_CREATE:
                rows.sort(key=lambda r: r[1], reverse=desc)
            elif target == TARGET_MOD:
                rows.sort(key=lambda r: r[0] >> SUB_BITS, reverse=desc)
            elif target == TARGET_VALUE:
                vals = self._values([r[0] for r in rows])
                pairs = sorted(
                    zip(vals, rows, strict=True),
                    key=lambda p: _KeyValue.FromString(p[0]).value,
                    reverse=desc,
                )
                kvbs = [p[0] for p in pairs]
                rows = [p[1] for p in pairs]
        more = False
        limit = req.limit
        if limit > 0 and len(rows) > limit:
            rows = rows[:limit]
            if kvbs is not None:
                kvbs = kvbs[:limit]
            more = True
        if kvbs is None:
            kvbs = self._values([r[0] for r in rows])
        return count, more, kvbs

    # ------------------------------------------------------------------ txn

    def txn_read(self, req: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        """Serve a read-only Txn (``txn_is_readonly``) from the current state, outside Raft."""
        if not txn_is_readonly(req):
            raise ValueError("txn writes; it must go through apply")
        return self._txn(req, write=False)

    def _txn(self, req: rpc_pb2.TxnRequest, write: bool) -> rpc_pb2.TxnResponse:
        path = self._path(req)
        is_write = write and not txn_is_readonly(req)
        if is_write:
            self._check(req, path, self._check_put)
        self._check(req, path, self._check_range)
        resp = _TxnResponse()
        self._base = self._rev
        self._changes = 0
        self._exec(req, path, resp)
        rev = self._base + 1 if self._changes else self._base
        self._rev = rev
        resp.header.revision = rev
        return resp

    def _path(self, req: rpc_pb2.TxnRequest) -> _Path:
        ok = True
        for c in req.compare:
            if not self._compare(c):
                ok = False
                break
        ops = req.success if ok else req.failure
        return ok, [self._path(op.request_txn) for op in ops if op.HasField("request_txn")]

    def _compare(self, c: rpc_pb2.Compare) -> bool:
        rows = self._rows(c.key, c.range_end, self._rev, self._rev)
        target = c.target
        if not rows:
            if target == CMP_VALUE:
                return False
            return compare_result(c.result, compare_fields(c, 0, 0, 0, 0))
        which = c.WhichOneof("target_union")
        result = c.result
        for rev, created, ver, ki in rows:
            if target == CMP_VALUE:
                value = _KeyValue.FromString(self._value(rev)).value
                want = c.value if which == "value" else b""
                res = (value > want) - (value < want)
            else:
                res = compare_fields(c, created, rev >> SUB_BITS, ver, ki.lease)
            if not compare_result(result, res):
                return False
        return True

    def _check(
        self,
        req: rpc_pb2.TxnRequest,
        path: _Path,
        check: Callable[[rpc_pb2.RequestOp], None],
    ) -> None:
        ok, children = path
        child = iter(children)
        for op in req.success if ok else req.failure:
            if op.HasField("request_txn"):
                self._check(op.request_txn, next(child), check)
            else:
                check(op)

    def _check_put(self, op: rpc_pb2.RequestOp) -> None:
        if not op.HasField("request_put"):
            return
        p = op.request_put
        if p.ignore_value or p.ignore_lease:
            ki = self._get_ki(p.key)
            if ki is None or not ki.rev:
                raise errors.KEY_NOT_FOUND.exc()
        if p.lease and not self.lease_exists(p.lease):
            raise errors.LEASE_NOT_FOUND.exc()

    def _check_range(self, op: rpc_pb2.RequestOp) -> None:
        if not op.HasField("request_range"):
            return
        rev = op.request_range.revision
        if rev == 0:
            return
        if rev > self._rev:
            raise errors.FUTURE_REV.exc()
        if rev < self._compact_rev:
            raise errors.COMPACTED.exc()

    def _exec(self, req: rpc_pb2.TxnRequest, path: _Path, resp: rpc_pb2.TxnResponse) -> None:
        ok, children = path
        child = iter(children)
        resp.succeeded = ok
        responses = resp.responses
        for op in req.success if ok else req.failure:
            which = op.WhichOneof("request")
            out = responses.add()
            if which == "request_range":
                cur = self._base + 1 if self._changes else self._base
                self._range(op.request_range, cur, out.response_range)
            elif which == "request_put":
                self._txn_put(op.request_put, out.response_put)
            elif which == "request_delete_range":
                self._delete_range(op.request_delete_range, out.response_delete_range)
            elif which == "request_txn":
                sub = out.response_txn
                sub.header.SetInParent()
                self._exec(op.request_txn, next(child), sub)

    def _txn_put(self, p: rpc_pb2.PutRequest, out: rpc_pb2.PutResponse) -> None:
        key = p.key
        ki = self._get_ki(key)
        value = p.value
        lease = p.lease
        prev: bytes | None = None
        if p.ignore_value or p.ignore_lease or p.prev_kv:
            if ki is not None and ki.rev:
                prev = self._value(ki.rev)
            if prev is not None and ki is not None:
                if p.ignore_value:
                    value = _KeyValue.FromString(prev).value
                if p.ignore_lease:
                    lease = ki.lease
        if ki is None:
            ki = self._index.create(key)
        main = self._base + 1
        self._write_put(ki, value, lease, main << SUB_BITS | self._changes)
        self._changes += 1
        out.header.revision = main
        if prev is not None and p.prev_kv:
            out.prev_kv.MergeFromString(prev)

    def _delete_range(
        self, req: rpc_pb2.DeleteRangeRequest, out: rpc_pb2.DeleteRangeResponse
    ) -> None:
        cur = self._base + 1 if self._changes else self._base
        rows = self._rows(req.key, req.range_end, cur, cur)
        if req.prev_kv and rows:
            prev_kvs = out.prev_kvs
            for b in self._values([r[0] for r in rows]):
                prev_kvs.add().MergeFromString(b)
        main = self._base + 1
        for row in rows:
            self._write_delete(row[3], main << SUB_BITS | self._changes)
            self._changes += 1
        out.deleted = len(rows)
        out.header.revision = main if self._changes else self._base

    def history(self, start: int, end: int = 0) -> Iterator[tuple[int, bool, bytes]]:
        """Stored changes with main revision in [start, end) (end 0: to the latest), in
        revision order: (packed revision, is_deletion, serialized KeyValue). A deletion's
        KeyValue holds only the key. For watch replay; ``start`` must be above
        ``compact_revision`` (older changes may be gone)."""
        if start <= self._compact_rev:
            raise errors.COMPACTED.exc()
        upper = main_prefix(end) if end > 0 else None
        for k, v in _items_from(self._kv, main_prefix(max(start, 0))):
            if upper is not None and k >= upper:
                break
            rev, tomb = parse_key(k)
            yield rev, tomb, v

    # ------------------------------------------------------------------ hashes

    def hash_kv(self, revision: int = 0) -> HashKV:
        """CRC-32 of the stored revisions up to ``revision`` (0 = current), like etcd's HashKV.

        Equal on members that applied the same log. Raises GrpcError for a compacted (at or
        below the compact revision) or future revision.
        """
        compact, cur = self._compact_rev, self._rev
        if revision > 0 and revision <= compact:
            raise errors.COMPACTED.exc()
        if revision > 0 and revision > cur:
            raise errors.FUTURE_REV.exc()
        if revision == 0:
            revision = cur
        h = zlib.crc32(KV_CF.encode())
        if revision >= 0:
            upper = main_prefix(revision + 1)
            crc = zlib.crc32
            for k, v in _items(self._kv):
                if k >= upper:
                    break
                h = crc(v, crc(k, h))
        return HashKV(h, compact, revision)

    def hash(self) -> int:
        """CRC-32 of everything stored (revisions and metadata, applied index included)."""
        crc = zlib.crc32
        h = 0
        for name, cf in ((KV_CF, self._kv), (META_CF, self._meta)):
            h = crc(name.encode(), h)
            for k, v in _items(cf):
                h = crc(v, crc(k, h))
        return h
