"""Deterministic simulation of 3- and 5-member clusters over many seeds (see raftkv.raft.sim).

CI runs SEEDS_PER_SIZE seeds for each cluster size, in chunks. A failure message contains the
command that replays the failing seed; ``python -m raftkv.raft.soak`` runs any number of seeds.
"""

from __future__ import annotations

import pytest

from raftkv.raft import core as core_mod
from raftkv.raft.messages import Message, MessageType
from raftkv.raft.sim import SimFailure, run_seed

SEEDS_PER_SIZE = 400
CHUNK = 25


@pytest.mark.parametrize("members", [3, 5])
@pytest.mark.parametrize("start", range(0, SEEDS_PER_SIZE, CHUNK))
def test_simulation(members: int, start: int) -> None:
    for seed in range(start, start + CHUNK):
        run_seed(seed, members)


def test_simulation_is_deterministic() -> None:
    a = run_seed(7, 5, trace=True)
    b = run_seed(7, 5, trace=True)
    assert a.trace_log == b.trace_log
    assert a.applied_reg == b.applied_reg
    assert a.n_props > 50 and len(a.committed_data) == a.n_props


def test_simulation_exercises_faults() -> None:
    crashes = snapshots = leaders = conf = reads = 0
    for seed in range(20):
        sim = run_seed(seed, 3 + 2 * (seed % 2), trace=True)
        crashes += sum("crash" in x for x in sim.trace_log)
        snapshots += sum("installs snapshot" in x for x in sim.trace_log)
        conf += sum("conf change" in x for x in sim.trace_log)
        leaders += len(sim.leader_of_term)
        reads += sim.reads_released
    assert crashes > 20 and snapshots > 5 and conf > 5 and leaders > 40 and reads > 100


def test_simulation_catches_a_broken_vote_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker is not vacuous: grant votes without the log up-to-date check and it fails."""

    def careless_vote(self: core_mod.RaftCore, m: Message) -> None:
        resp = MessageType.VOTE_RESP if m.type == MessageType.VOTE else MessageType.PRE_VOTE_RESP
        self._send(Message(resp, m.frm, self.id, term=m.term))
        if m.type == MessageType.VOTE:
            self.vote = m.frm

    monkeypatch.setattr(core_mod.RaftCore, "_handle_vote_request", careless_vote)
    failures = 0
    for seed in range(40):
        try:
            run_seed(seed, 3)
        except SimFailure as e:
            assert "replay:" in str(e)
            failures += 1
    assert failures > 0


def test_simulation_catches_unconfirmed_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serve reads without the heartbeat round and stale reads get caught."""

    def eager_read(self: core_mod.RaftCore, ctx: bytes, frm: int) -> None:
        self._release_read(self.log.committed, ctx, frm)

    monkeypatch.setattr(core_mod.RaftCore, "_leader_read", eager_read)
    failures = 0
    for seed in range(100):
        try:
            run_seed(seed, 3)
        except SimFailure as e:
            assert "read" in str(e)
            failures += 1
    assert failures > 0
