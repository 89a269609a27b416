"""A 3-member raftkv cluster per test module (processes on loopback)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.harness import Cluster


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        raise RuntimeError(f"{tool} not found: ci/test.sh installs it (etcd-client)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    _require("etcdctl")
    base: Path = tmp_path_factory.mktemp("cluster")
    c = Cluster(base).start()
    try:
        yield c
    finally:
        c.stop()
