"""Run one member: storage, Raft node, client front; stop cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from raftkv._native import Front
from raftkv.front import FrontServer
from raftkv.server import memreport
from raftkv.server.config import MemberConfig, host_port
from raftkv.server.gcpolicy import GcPolicy
from raftkv.server.member import Member
from raftkv.server.services import Services
from raftkv.storage.mvcc import MvccStore

log = logging.getLogger("raftkv")


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


async def serve(config: MemberConfig) -> None:
    config.validate()
    (config.data_dir / "member").mkdir(parents=True, exist_ok=True)
    store = MvccStore(config.data_dir / "member" / "kv")
    # The key index holds many long-lived objects: keep them out of the collector's full
    # passes (see gcpolicy).
    gc_policy = GcPolicy(asyncio.get_running_loop())
    gc_policy.install()
    member = Member(config, store)
    services = Services(member, store)
    memreport.install(
        {
            "store": store.memory_usage,
            "raft_log": lambda: {
                "window_entries": len(member.raftlog.window),
                "window_bytes": member.raftlog.window.byte_size,
                "wal_first": member.raftlog.wal.first_index,
                "wal_last": member.raftlog.wal.last_index,
                "applied": store.applied_index,
            },
            "wal": member.raftlog.wal.stats,
            "gc": gc_policy.stats,
        }
    )
    front = Front(
        [host_port(u) for u in config.listen_client_urls],
        cert_pem=_read(config.cert_file),
        key_pem=_read(config.key_file),
        client_ca_pem=_read(config.trusted_ca_file) if config.client_cert_auth else None,
        max_recv_bytes=config.max_request_bytes + 512 * 1024,
    )
    server = FrontServer(front, services.unary_handlers())
    member.on_apply.append(lambda _index: server.flush_soon())
    server.after_events = member.run_pending
    log.info(
        "member %s (%x) of cluster %x serving clients on %s, peers on %s",
        config.name,
        member.id,
        member.cluster_id,
        ", ".join(front.addresses),
        ", ".join(config.listen_peer_urls),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    publish = loop.create_task(member.publish())
    try:
        await stop.wait()
    finally:
        log.info("member %s stopping", config.name)
        publish.cancel()
        await server.close()
        await member.stop()
        store.close()
        gc_policy.uninstall()
