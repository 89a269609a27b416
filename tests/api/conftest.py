"""Markers of the API tests."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "etcd: runs a real etcd (Debian's etcd-server) to compare behaviour"
    )
