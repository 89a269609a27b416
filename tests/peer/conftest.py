"""Every peer test runs twice: inbound links read by the native runtime, and handed over to
the event loop (what members use)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.peer.helpers import MODE


@pytest.fixture(autouse=True, params=[False, True], ids=["native-read", "loop-read"])
def inbound_handoff(request: pytest.FixtureRequest) -> Iterator[bool]:
    MODE["inbound_handoff"] = request.param
    try:
        yield request.param
    finally:
        MODE["inbound_handoff"] = False
