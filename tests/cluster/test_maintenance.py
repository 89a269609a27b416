"""Maintenance calls beyond status: move-leader and alarm list, through etcdctl."""

from __future__ import annotations

import grpc
import pytest

from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2
from tests.cluster.harness import Cluster


def test_move_leader_and_alarm_list(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    target = next(n for n in cluster.nodes if n is not leader)
    target_id = cluster.grpc_statuses([target])[target.endpoint].header.member_id
    # etcdctl finds the leader among the endpoints and asks it to hand over
    out = cluster.ctl("move-leader", f"{target_id:x}").stdout
    assert "Leadership transferred from" in out and f"{target_id:x}" in out
    assert cluster.wait_leader() is target
    # a follower refuses, with etcd's code and message
    with pytest.raises(grpc.RpcError) as err:
        leader.maintenance().MoveLeader(rpc_pb2.MoveLeaderRequest(targetID=target_id), timeout=10)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details() == "etcdserver: not leader"
    assert cluster.ctl("alarm", "list").stdout == ""
    assert cluster.ctl("put", "after-move", "1").stdout == "OK\n"
