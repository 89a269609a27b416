"""Checks on recorded client histories beyond per-key linearizability, and the adapter to
the linearizability checker.

- serializable reads are not linearizable by definition: each must return a value some write
  produced (or no key), never a value written only after the read completed, and one client
  must not see a member's revision go backwards between two reads of that member, unless the
  member was killed and restarted in between;
- every acknowledged write that nothing later could have overwritten must be what the final
  read sees (linearizability implies it; stated on its own, it is the report a user wants);
- two acknowledged writes never share a revision, and a read that returns a value written by
  an acknowledged write sees that write's revision as the key's mod revision.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise

from raftkv.verify.client import CAS, DELETE, GET, PUT, SGET, Record
from raftkv.verify.history import Kind, Op
from raftkv.verify.report import check_history

_KINDS = {PUT: Kind.PUT, GET: Kind.GET, DELETE: Kind.DELETE, CAS: Kind.CAS}


def to_ops(records: Iterable[Record]) -> list[Op]:
    """The linearizable part of the history, as the checker's operations (serializable reads
    are left out: they may legitimately be stale; so are failed reads: no effect)."""
    return [
        Op(
            r.client,
            r.key,
            _KINDS[r.kind],
            r.invoke,
            r.complete,
            value=r.value,
            expect=r.expect,
            result=r.result,
            revision=r.revision,
        )
        for r in records
        if r.kind != SGET and not (r.kind == GET and r.complete is None)
    ]


@dataclass
class Outcome:
    ok: bool
    anomalies: list[str] = field(default_factory=list)
    detail: str = ""


LINEARIZABILITY_BUDGET_S = 120.0
"""Time allowed to check one run's history; a key not verified within it is a failure."""


def check_linearizable(ops: list[Op], budget_s: float = LINEARIZABILITY_BUDGET_S) -> Outcome:
    """Per-key linearizability, revisions never going back for a client and no lost
    acknowledged write (``report.check_history``), with the smallest failing sub-histories."""
    report = check_history(ops, budget_s=budget_s)
    return Outcome(report.ok, list(report.anomalies), report.render() if not report.ok else "")


def _describe(r: Record) -> str:
    done = "?" if r.complete is None else f"{r.complete:.3f}"
    what = {
        PUT: f"put {r.value!r}",
        GET: f"get -> {r.result!r}",
        SGET: f"serializable get -> {r.result!r}",
        DELETE: "delete",
        CAS: f"cas {r.expect!r}->{r.value!r} -> {r.result!r}",
    }[r.kind]
    return (
        f"client {r.client} @{r.endpoint} [{r.invoke:.3f}, {done}] {r.key!r} {what} "
        f"rev {r.revision}"
    )


def _writes(records: list[Record]) -> dict[bytes, Record]:
    """value -> the put or cas that wrote it (values are unique)."""
    return {r.value: r for r in records if r.kind in (PUT, CAS) and r.value is not None}


def check_serializable(
    records: list[Record], kills: dict[str, list[float]] | None = None
) -> list[str]:
    """Serializable reads: values that were written, not from the future; per client and
    member, revisions that do not go back (except across a kill of that member)."""
    kills = kills or {}
    writes = _writes(records)
    out: list[str] = []
    for r in records:
        if r.kind != SGET or r.result is None or isinstance(r.result, bool):
            continue
        w = writes.get(r.result)
        if w is None or w.key != r.key:
            out.append(f"serializable read of a value never written: {_describe(r)}")
        elif r.complete is not None and w.invoke > r.complete:
            out.append(
                f"serializable read of a value written after it: {_describe(r)} / {_describe(w)}"
            )
    seqs: dict[tuple[int, str], list[Record]] = defaultdict(list)
    for r in records:
        if r.kind == SGET and r.complete is not None:
            seqs[(r.client, r.endpoint)].append(r)
    for (_client, endpoint), rs in seqs.items():
        rs.sort(key=lambda r: r.invoke)
        for a, b in pairwise(rs):
            assert a.complete is not None
            restarted = any(a.complete <= t <= b.invoke for t in kills.get(endpoint, []))
            if b.revision < a.revision and not restarted:
                out.append(
                    f"serializable revision went back at {endpoint}: "
                    f"{_describe(a)} then {_describe(b)}"
                )
    return out


def lost_writes(records: list[Record], final: list[Record]) -> list[str]:
    """Acknowledged writes that the final read does not show although no other write on the
    key could have come after them."""
    last = {r.key: r.result for r in final}
    by_key: dict[bytes, list[Record]] = defaultdict(list)
    for r in records:
        if r.kind in (PUT, DELETE) or (r.kind == CAS and r.result is not False):
            by_key[r.key].append(r)
    out = []
    for key, ws in by_key.items():
        if key not in last:
            continue
        for w in ws:
            acked = w.complete is not None and (w.kind == PUT or w.result is True)
            if not acked or last[key] == w.value:
                continue
            # another write that ended after w began may be ordered after it
            if any(o is not w and (o.complete is None or o.complete > w.invoke) for o in ws):
                continue
            out.append(f"lost acknowledged write: {_describe(w)}; final value {last[key]!r}")
    return out


def revision_agreement(records: list[Record]) -> list[str]:
    """Distinct acknowledged writes never share a revision; a read of a value written by an
    acknowledged write sees that write's revision as its mod revision."""
    out = []
    by_rev: dict[int, Record] = {}
    for r in records:
        if r.complete is None or not (r.kind == PUT or (r.kind == CAS and r.result is True)):
            continue
        other = by_rev.get(r.revision)
        if other is not None:
            out.append(f"two writes at revision {r.revision}: {_describe(other)} / {_describe(r)}")
        by_rev[r.revision] = r
    writes = _writes(records)
    for r in records:
        if r.kind not in (GET, SGET) or r.result is None or isinstance(r.result, bool):
            continue
        w = writes.get(r.result)
        if w is not None and w.complete is not None and w.revision != r.mod_revision:
            out.append(
                f"read sees mod revision {r.mod_revision} for a write acknowledged at "
                f"{w.revision}: {_describe(r)} / {_describe(w)}"
            )
    return out
