"""Fixtures for the load generator tests: one real etcd for the whole module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bench.etcd import Etcd, start_etcd


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    if shutil.which("etcd") is None:
        pytest.skip("etcd is not installed (apt-get install etcd-server etcd-client)")
    base: Path = tmp_path_factory.mktemp("etcd")
    e = start_etcd(base)
    try:
        yield e
    finally:
        e.stop()
