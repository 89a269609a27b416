"""Majority math: the commit index of a voter set and the outcome of a vote. Nothing else."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from enum import IntEnum


class VoteResult(IntEnum):
    PENDING = 0
    WON = 1
    LOST = 2


def majority(n: int) -> int:
    return n // 2 + 1


def committed_index(voters: Collection[int], match_of: Callable[[int], int]) -> int:
    """The largest index that a majority of ``voters`` has matched (0 for no voters)."""
    n = len(voters)
    if n == 0:
        return 0
    if n == 1:
        for v in voters:
            return match_of(v)
    matches = sorted((match_of(v) for v in voters), reverse=True)
    return matches[n // 2]


def vote_result(voters: Collection[int], votes: Mapping[int, bool]) -> VoteResult:
    granted = rejected = 0
    for v in voters:
        r = votes.get(v)
        if r is None:
            continue
        if r:
            granted += 1
        else:
            rejected += 1
    need = majority(len(voters))
    if granted >= need:
        return VoteResult.WON
    if len(voters) - rejected < need:
        return VoteResult.LOST
    return VoteResult.PENDING


def has_quorum(voters: Collection[int], active: Callable[[int], bool]) -> bool:
    return sum(1 for v in voters if active(v)) >= majority(len(voters))
