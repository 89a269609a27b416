"""etcdctl against a 3-member raftkv cluster: the basics end to end."""

from __future__ import annotations

import json

from tests.cluster.harness import Cluster


def test_put_get_on_any_member(cluster: Cluster) -> None:
    first, second, third = cluster.nodes
    assert cluster.ctl("put", "smoke/a", "1", endpoints=first.endpoint).stdout == "OK\n"
    assert cluster.ctl("put", "smoke/b", "2", endpoints=second.endpoint).stdout == "OK\n"
    out = cluster.ctl("get", "smoke/", "--prefix", endpoints=third.endpoint).stdout
    assert out == "smoke/a\n1\nsmoke/b\n2\n"
    doc = json.loads(cluster.ctl("get", "smoke/a", "-w", "json").stdout)
    assert doc["count"] == 1 and doc["kvs"][0]["version"] == 1


def test_endpoint_status_and_member_list(cluster: Cluster) -> None:
    st = cluster.statuses()
    assert len(st) == 3
    leaders = {s["leader"] for s in st.values()}
    assert len(leaders) == 1 and 0 not in leaders
    members = json.loads(cluster.ctl("member", "list", "-w", "json").stdout)["members"]
    assert sorted(m["name"] for m in members) == ["m1", "m2", "m3"]
    health = cluster.ctl("endpoint", "health")
    assert health.stderr.count("is healthy") == 3
