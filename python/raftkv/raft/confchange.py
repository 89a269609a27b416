"""Membership changes: one voter at a time, plus learners (non-voting members) and promotion.

A change is proposed as an entry of type ``CONF_CHANGE`` whose data is this module's encoding
(the only payload the core decodes). It takes effect when applied (not when appended), and the
leader accepts a new change only once the previous one is applied.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from .messages import ConfState

_FMT = struct.Struct(">BQ")


class ConfChangeType(IntEnum):
    ADD_VOTER = 1  # add a voter, or promote a learner
    ADD_LEARNER = 2  # add a learner (a voter cannot be demoted this way)
    REMOVE = 3  # remove a voter or learner


@dataclass(slots=True, frozen=True)
class ConfChange:
    type: ConfChangeType
    node_id: int
    context: bytes = b""

    def encode(self) -> bytes:
        return _FMT.pack(self.type, self.node_id) + self.context

    @staticmethod
    def decode(data: bytes) -> ConfChange:
        t, node = _FMT.unpack_from(data)
        return ConfChange(ConfChangeType(t), node, bytes(data[_FMT.size :]))


class ConfChangeError(ValueError):
    pass


def validate(cs: ConfState, cc: ConfChange) -> None:
    """Raise ConfChangeError if ``cc`` cannot apply to ``cs``."""
    if cc.node_id <= 0:
        raise ConfChangeError("node id must be positive")
    if cc.type == ConfChangeType.ADD_LEARNER and cc.node_id in cs.voters:
        raise ConfChangeError("cannot demote a voter to a learner")
    if cc.type == ConfChangeType.REMOVE:
        if cc.node_id not in cs.voters and cc.node_id not in cs.learners:
            raise ConfChangeError("not a member")
        if cs.voters == {cc.node_id}:
            raise ConfChangeError("cannot remove the last voter")


def apply(cs: ConfState, cc: ConfChange) -> ConfState:
    """The membership after ``cc``. Invalid changes leave it unchanged (they were committed, so
    every member must treat them the same way: as no-ops)."""
    try:
        validate(cs, cc)
    except ConfChangeError:
        return cs
    n = cc.node_id
    if cc.type == ConfChangeType.ADD_VOTER:
        return ConfState(cs.voters | {n}, cs.learners - {n})
    if cc.type == ConfChangeType.ADD_LEARNER:
        return ConfState(cs.voters, cs.learners | {n})
    return ConfState(cs.voters - {n}, cs.learners - {n})
