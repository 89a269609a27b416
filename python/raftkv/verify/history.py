"""Operations as clients recorded them: what was asked, when, and what came back."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    PUT = "put"
    GET = "get"
    DELETE = "delete"
    CAS = "cas"  # a txn: if value == expect then put value


@dataclass(frozen=True, slots=True)
class Op:
    """One client operation on one key.

    ``complete`` is None when the outcome is unknown (the call timed out or the connection
    broke): such an operation may have taken effect at any time after ``invoke``, or never.
    ``result`` is the value a GET saw (None: no key) or whether a CAS succeeded.
    """

    client: int
    key: bytes
    kind: Kind
    invoke: float
    complete: float | None
    value: bytes | None = None
    expect: bytes | None = None
    result: bytes | bool | None = None
    revision: int = 0

    @property
    def indeterminate(self) -> bool:
        return self.complete is None

    @property
    def end(self) -> float:
        return math.inf if self.complete is None else self.complete

    def describe(self) -> str:
        done = "?" if self.complete is None else f"{self.complete:.6f}"
        what = {
            Kind.PUT: f"put {self.value!r}",
            Kind.GET: f"get -> {self.result!r}",
            Kind.DELETE: "delete",
            Kind.CAS: f"cas {self.expect!r}->{self.value!r} -> {self.result!r}",
        }[self.kind]
        return f"client {self.client} [{self.invoke:.6f}, {done}] {what}"
