"""Run a robustness scenario: a cluster (started here in network namespaces, or given as
endpoints), recording clients, a seeded nemesis loop; then heal, let the members converge,
read every key one last time, check the history and report.

The seed decides the nemesis schedule and every client's choices; timing still varies from
run to run, so a replay repeats the schedule, not the exact interleaving.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2
from raftkv.verify import checks
from raftkv.verify.client import (
    CAS,
    GET,
    KINDS,
    SGET,
    Mix,
    Record,
    WorkerConfig,
    Workers,
    final_reads,
)
from raftkv.verify.cluster import Endpoints, NetnsCluster
from raftkv.verify.nemesis import API_NEMESES, NEMESES, Event

CONVERGE_DEADLINE_S = 60.0
HEAL_DEADLINE_S = 20.0


@dataclass(frozen=True)
class Scenario:
    name: str
    nemeses: list[str]
    about: str
    size: int = 3
    mix: Mix = field(default_factory=Mix)
    # fault held for a random time in this range (seconds), then a quiet gap in quiet_s
    hold_s: tuple[float, float] = (0.5, 3.0)
    quiet_s: tuple[float, float] = (0.5, 1.5)
    overlap: int = 1  # at most this many faults at the same time


WRITE_HEAVY = Mix(put=6, get=2, sget=0.5, delete=0.5, cas=2)
READ_HEAVY = Mix(put=2, get=6, sget=1, delete=0.3, cas=1)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "leader-crash-under-load",
            ["kill-leader"],
            "SIGKILL and restart the leader under a high write load; afterwards every member "
            "has the same revision and HashKV",
            mix=WRITE_HEAVY,
        ),
        Scenario(
            "single-member-crash",
            ["kill-member"],
            "1-member cluster SIGKILLed right after acknowledged writes: none may be lost",
            size=1,
            mix=WRITE_HEAVY,
            hold_s=(0.1, 0.5),
        ),
        Scenario(
            "partition-old-leader",
            ["partition-leader"],
            "isolate the leader from its peers while clients keep reading through it: no "
            "stale linearizable read once a new leader serves",
            mix=READ_HEAVY,
            hold_s=(1.5, 3.0),
        ),
        Scenario(
            "cluster-crash",
            ["kill-all"],
            "SIGKILL every member at once under write load, restart them: nothing "
            "acknowledged is lost, members agree afterwards",
            mix=WRITE_HEAVY,
            hold_s=(0.1, 1.0),
        ),
        Scenario("follower-kill", ["kill-follower"], "SIGKILL and restart a follower"),
        Scenario("pause", ["pause-leader", "pause-follower"], "SIGSTOP/SIGCONT a member"),
        Scenario(
            "partitions",
            ["partition-minority", "partition-bridge", "partition-leader"],
            "majority/minority, bridge and isolated-leader partitions of the peer links",
        ),
        Scenario("move-leader", ["move-leader"], "leadership transfers under load"),
        Scenario(
            "compaction-during-load",
            ["compact"],
            "compaction to recent revisions while clients run",
            hold_s=(0.2, 1.0),
        ),
        Scenario("mixed", sorted(NEMESES), "every nemesis at random, up to two at once", overlap=2),
    ]
}


@dataclass
class RunConfig:
    seconds: float = 20.0
    clients: int = 6
    keys: int = 8
    seed: int = 0
    call_timeout: float = 1.5
    mislabel_serializable: bool = False  # test hook, see WorkerConfig


@dataclass
class RunResult:
    scenario: str
    target: str
    seed: int
    seconds: float
    records: list[Record]
    final: list[Record]
    events: list[Event]
    anomalies: list[str]
    detail: str
    convergence: str
    replay: str

    @property
    def ok(self) -> bool:
        return not self.anomalies

    def counts(self) -> dict[str, tuple[int, int]]:
        """kind -> (completed, indeterminate)."""
        done: Counter[str] = Counter()
        unknown: Counter[str] = Counter()
        for r in self.records:
            (unknown if r.complete is None else done)[r.kind] += 1
        return {k: (done[k], unknown[k]) for k in KINDS}

    def isolated_reads(self) -> tuple[int, int]:
        """(answered, failed) linearizable reads sent to a member while it was cut off by a
        partition: the reads that a stale old leader would get wrong."""
        answered = failed = 0
        heals = [e.time for e in self.events if e.action == "heal"]
        for inj in self.events:
            if inj.action != "inject" or not inj.nemesis.startswith("partition"):
                continue
            end = min((t for t in heals if t > inj.time), default=inj.time)
            for r in self.records:
                if r.kind == GET and r.endpoint in inj.victims and inj.time < r.invoke < end:
                    if r.complete is None:
                        failed += 1
                    else:
                        answered += 1
        return answered, failed

    def render(self) -> str:
        faults = Counter(e.nemesis for e in self.events if e.action == "inject")
        cas_ok = sum(1 for r in self.records if r.kind == CAS and r.result is True)
        lines = [
            f"scenario {self.scenario} on {self.target}, seed {self.seed}, "
            f"{self.seconds:.0f}s of load",
            "operations: "
            + ", ".join(
                f"{k} {d} ok/{u} {'failed' if k in (GET, SGET) else 'unknown'}"
                for k, (d, u) in self.counts().items()
            )
            + f" (cas succeeded {cas_ok}); final reads {len(self.final)}",
            "faults: " + (", ".join(f"{n} x{c}" for n, c in sorted(faults.items())) or "none"),
            f"convergence: {self.convergence}",
        ]
        if any(e.nemesis.startswith("partition") for e in self.events):
            ok, failed = self.isolated_reads()
            lines.append(
                f"linearizable reads at partitioned members: {ok} answered, {failed} failed"
            )
        if self.anomalies:
            lines.append(f"ANOMALIES ({len(self.anomalies)}):")
            lines.extend(f"  - {a}" for a in self.anomalies[:50])
            if len(self.anomalies) > 50:
                lines.append(f"  ... and {len(self.anomalies) - 50} more")
            if self.detail:
                lines.append(self.detail)
        else:
            lines.append("anomalies: none")
        lines.append(f"replay: {self.replay}")
        return "\n".join(lines)


def _converge(target: Endpoints) -> tuple[str, list[str]]:
    """Wait until every member reports the same revision (no load runs now), then compare
    their HashKV at it. Returns (summary, anomalies)."""
    deadline = time.monotonic() + CONVERGE_DEADLINE_S
    revs: dict[str, int] = {}
    while time.monotonic() < deadline:
        revs = {}
        for m in target.members:
            try:
                req = rpc_pb2.RangeRequest(key=b"\x00", serializable=True, count_only=True)
                revs[m.name] = m.kv().Range(req, timeout=1).header.revision
            except grpc.RpcError:
                pass
        if len(revs) == len(target.members) and len(set(revs.values())) == 1:
            break
        time.sleep(0.1)  # poll interval
    else:
        return f"members did not converge: {revs}", [
            f"members disagree on the revision {CONVERGE_DEADLINE_S:.0f}s after healing: {revs}"
        ]
    rev = next(iter(revs.values()))
    hashes: dict[str, int] = {}
    for m in target.members:
        try:
            hashes[m.name] = m.hash_kv(rev).hash
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                return f"all {len(revs)} members at revision {rev} (no HashKV)", []
            return f"all at revision {rev}; HashKV failed at {m.name}: {e.details()}", [
                f"HashKV at revision {rev} failed at {m.name} after healing: {e.details()}"
            ]
    if len(set(hashes.values())) != 1:
        return f"revision {rev}, hashes differ: {hashes}", [
            f"members at revision {rev} have different HashKV: {hashes}"
        ]
    return f"all {len(revs)} members at revision {rev}, HashKV {next(iter(hashes.values()))}", []


def _wait_healthy(target: Endpoints, deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if target.leader() is not None:
            return True
        time.sleep(0.05)  # poll interval
    return False


def run(
    target: Endpoints,
    scenario: Scenario,
    cfg: RunConfig,
    target_name: str,
    replay: str,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Run ``scenario`` against an already started ``target`` and check the history."""
    rng = random.Random(cfg.seed)
    # a fresh prefix each run, even a replay: the keys must start absent
    prefix = f"/raftkv-verify/{cfg.seed}-{uuid.uuid4().hex[:8]}/"
    keys = [f"{prefix}k{i:02d}".encode() for i in range(cfg.keys)]
    nemeses = [NEMESES[n]() for n in scenario.nemeses]
    if not target.controls_processes:
        nemeses = [n for n in nemeses if not n.needs_processes]
    configs = [
        WorkerConfig(
            client=i + 1,
            endpoints=target.endpoints,
            keys=keys,
            seed=cfg.seed * 1000 + i,
            mix=scenario.mix,
            call_timeout=cfg.call_timeout,
            max_seconds=cfg.seconds + 120,  # a bound in case the stop signal is lost
            mislabel_serializable=cfg.mislabel_serializable,
        )
        for i in range(cfg.clients)
    ]
    workers = Workers(configs)
    events: list[Event] = []
    quiet = threading.Event()  # never set: waits on it are the nemesis's timed holds
    workers.start()
    started = time.monotonic()
    end = started + cfg.seconds
    last_progress = started
    records: list[Record] = []
    try:
        while time.monotonic() < end:
            workers.check()
            if nemeses:
                # one fault, or several at once; healed in reverse order
                active = rng.sample(nemeses, min(len(nemeses), rng.randint(1, scenario.overlap)))
                for nem in active:
                    events.append(nem.inject(target, rng))
                quiet.wait(min(rng.uniform(*scenario.hold_s), max(0.0, end - time.monotonic())))
                for nem in reversed(active):
                    healed = nem.heal(target)
                    if healed is not None:
                        events.append(healed)
                _wait_healthy(target, HEAL_DEADLINE_S)
            quiet.wait(min(rng.uniform(*scenario.quiet_s), max(0.0, end - time.monotonic())))
            now = time.monotonic()
            if now - last_progress >= 10:
                last_progress = now
                done = f"{now - started:.0f}/{cfg.seconds:.0f}s"
                faults = sum(1 for e in events if e.action == "inject")
                log(f"  {scenario.name}: {done}, {workers.ops():,} ops, {faults} faults")
    finally:
        records = workers.stop()
        if isinstance(target, NetnsCluster):
            target.heal_all()
    if not _wait_healthy(target, CONVERGE_DEADLINE_S):
        raise RuntimeError("no leader after healing everything")
    convergence, anomalies = _converge(target)
    final = final_reads(target.endpoints, keys, client=0)
    kills: dict[str, list[float]] = {}
    for e in events:
        for ep in e.killed:
            kills.setdefault(ep, []).append(e.time)
    ops = checks.to_ops([*records, *final])
    lin = checks.check_linearizable(ops)
    anomalies += lin.anomalies
    anomalies += checks.check_serializable(records, kills)
    anomalies += checks.lost_writes(records, final)
    anomalies += checks.revision_agreement([*records, *final])
    return RunResult(
        scenario.name,
        target_name,
        cfg.seed,
        cfg.seconds,
        records,
        final,
        events,
        anomalies,
        lin.detail,
        convergence,
        replay,
    )


def run_scenario(
    kind: str, scenario: Scenario, cfg: RunConfig, log: Callable[[str], None] = print
) -> RunResult:
    """Start a ``kind`` cluster in network namespaces, run ``scenario`` on it, tear it down."""
    replay = (
        f"raftkv verify --cluster {kind} --scenario {scenario.name} --seconds {cfg.seconds:g} "
        f"--clients {cfg.clients} --keys {cfg.keys} --seed {cfg.seed}"
    )
    with NetnsCluster(kind, size=scenario.size) as cluster:
        log(f"{scenario.name}: {kind} cluster of {scenario.size} up at {cluster.endpoints}")
        try:
            return run(cluster, scenario, cfg, f"{kind}({scenario.size})", replay, log)
        except BaseException:
            log(cluster.logs_tail())
            raise


def run_endpoints(
    endpoints: list[str], cfg: RunConfig, log: Callable[[str], None] = print
) -> RunResult:
    """Clients and the API nemeses (leadership transfer, compaction) against any
    etcd-compatible endpoints."""
    target = Endpoints(endpoints)
    target.learn_ids()
    scenario = Scenario("endpoints", API_NEMESES, "API nemeses against given endpoints")
    replay = (
        f"raftkv verify --endpoints {','.join(endpoints)} --seconds {cfg.seconds:g} "
        f"--clients {cfg.clients} --keys {cfg.keys} --seed {cfg.seed}"
    )
    try:
        return run(target, scenario, cfg, ",".join(endpoints), replay, log)
    finally:
        target.close()
