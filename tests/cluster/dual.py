"""Run the same etcdctl commands against an etcd cluster and a raftkv cluster and compare.

Outputs are normalized only where the two legitimately differ: member and cluster ids, ports,
raft terms and indexes, database sizes, versions, hashes and timings. Everything else (keys,
values, revisions, versions of keys, counts, error codes and messages, exit codes) must be
byte for byte what etcd prints.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2
from tests.cluster.harness import Cluster


@dataclass(frozen=True)
class Outcome:
    """What an etcdctl run printed, normalized."""

    rc: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"rc={self.rc}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


# etcdctl's client logs a JSON line per failed attempt; keep only the gRPC error it carries.
_CLIENT_LOG = re.compile(r'^\{"level":"(?:warn|error|info)".*$')
_TOOK = re.compile(r"took = [0-9.]+(?:ns|µs|us|ms|s)")
_TOOK_JSON = re.compile(r'"took":"[^"]*"')
_FIELD_NUMS = re.compile(
    r'"(RaftTerm|RaftIndex|RaftAppliedIndex|DBSize|DBSizeInUse|Hash|raft_term|raftTerm|'
    r'raftIndex|raftAppliedIndex|dbSize|dbSizeInUse|hash)"(\s*:\s*)\d+'
)
_FIELD_VERSION = re.compile(r'"(Version|version)"(\s*:\s*)"[^"]*"')


class Normalizer:
    """Turns one cluster's ids and ports into placeholders named after member names."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.subs: list[tuple[str, str]] = []
        for node in cluster.nodes:
            self.subs.append((f"127.0.0.1:{node.client_port}", f"<client:{node.name}>"))
            self.subs.append((f"127.0.0.1:{node.peer_port}", f"<peer:{node.name}>"))
        self.ids: dict[int, str] = {}
        self.cluster_id = 0

    def learn_ids(self) -> None:
        """Read member and cluster ids from ``member list`` (after the cluster is up)."""
        doc = json.loads(self.cluster.ctl("member", "list", "-w", "json").stdout)
        self.cluster_id = int(doc["header"]["cluster_id"])
        for m in doc["members"]:
            self.ids[int(m["ID"])] = str(m["name"])
        # Longest first: a decimal id never contains another, but be safe about it.
        pairs = [(str(i), f"<id:{n}>") for i, n in self.ids.items()]
        pairs += [(f"{i:x}", f"<id:{n}>") for i, n in self.ids.items()]
        pairs += [(str(self.cluster_id), "<cluster>"), (f"{self.cluster_id:x}", "<cluster>")]
        self.subs = sorted({*self.subs, *pairs}, key=lambda p: -len(p[0]))

    def text(self, s: str) -> str:
        for old, new in self.subs:
            s = re.sub(rf"(?<![0-9a-f]){re.escape(old)}(?![0-9a-f])", new, s)
        s = _TOOK.sub("took = <t>", s)
        s = _TOOK_JSON.sub('"took":"<t>"', s)
        s = _FIELD_NUMS.sub(r'"\1"\2<n>', s)
        return _FIELD_VERSION.sub(r'"\1"\2"<version>"', s)

    def stderr(self, s: str) -> str:
        out: list[str] = []
        for line in s.splitlines():
            m = _CLIENT_LOG.match(line)
            if m:
                try:
                    err = json.loads(line).get("error")
                except ValueError:
                    err = None
                line = f"<client log: {err}>" if err else ""
            if line and (not out or out[-1] != line):
                out.append(line)
        return "".join(f"{line}\n" for line in out)


def _sort_lines(s: str) -> str:
    return "".join(f"{line}\n" for line in sorted(s.splitlines()))


def normalize_status_line(line: str) -> str:
    """``endpoint status`` simple format: endpoint, id, version, db size, is leader,
    is learner, raft term, raft index, raft applied index, errors."""
    cols = line.split(", ")
    if len(cols) >= 9:
        cols[2] = "<version>"
        cols[3] = "<db size>"
        cols[4] = "<is leader>"
        cols[6] = cols[7] = cols[8] = "<n>"
    return ", ".join(cols)


def normalize_json_status(s: str) -> str:
    """``endpoint status -w json``: the leader differs between clusters; say only which
    members agree."""
    return re.sub(r'"(leader|Leader)"(\s*:\s*)<id:m\d+>', r'"\1"\2<leader>', s)


def normalize_members_json(s: str) -> str:
    """``member list -w json``: members ordered by name (etcd orders them by id)."""
    try:
        doc: Any = json.loads(re.sub(r"(<[^<>\"]+>)(?=[,}\]])", r'"\1"', s))
    except ValueError:
        return s
    doc["members"].sort(key=lambda m: m.get("name", ""))
    return json.dumps(doc, sort_keys=True) + "\n"


class Dual:
    """An etcd cluster and a raftkv cluster driven in lock step."""

    def __init__(self, etcd: Cluster, raftkv: Cluster) -> None:
        self.etcd = etcd
        self.raftkv = raftkv
        self.norm = {id(etcd): Normalizer(etcd), id(raftkv): Normalizer(raftkv)}
        for n in self.norm.values():
            n.learn_ids()

    def run(
        self,
        cluster: Cluster,
        *args: str,
        stdin: str | None = None,
        node: int | None = 0,
        sort: bool = False,
        urls: bool = False,
    ) -> Outcome:
        """etcdctl ``args`` against one member (``node`` index) or all (None); ``urls``
        gives the endpoints as ``http://host:port``."""
        nodes = cluster.nodes if node is None else [cluster.nodes[node]]
        endpoints = ",".join(f"http://{n.endpoint}" if urls else n.endpoint for n in nodes)
        r = cluster.ctl(*args, endpoints=endpoints, input=stdin, check=False)
        n = self.norm[id(cluster)]
        out, err = n.text(r.stdout), n.stderr(n.text(r.stderr))
        if args[:2] == ("endpoint", "status"):
            out = "".join(f"{normalize_status_line(x)}\n" for x in out.splitlines())
            out = normalize_json_status(out)
        if args[:2] == ("endpoint", "hashkv"):
            # The hash itself is implementation-defined; members of one cluster must agree
            # (checked separately).
            out = re.sub(r"(?m)^(\S+), \d+$", r"\1, <hash>", out)
        if args[:2] == ("member", "list") and "json" in args:
            out = normalize_members_json(out)
        if sort:
            out, err = _sort_lines(out), _sort_lines(err)
        return Outcome(r.returncode, out, err)

    def both(
        self,
        *args: str,
        stdin: str | None = None,
        node: int | None = 0,
        sort: bool = False,
        urls: bool = False,
    ) -> Outcome:
        """Run on both clusters, assert the normalized outcomes are equal, return etcd's."""
        want = self.run(self.etcd, *args, stdin=stdin, node=node, sort=sort, urls=urls)
        got = self.run(self.raftkv, *args, stdin=stdin, node=node, sort=sort, urls=urls)
        shown = " ".join(a if len(a) <= 60 else f"{a[:20]}...({len(a)} chars)" for a in args)
        assert got == want, (
            f"etcdctl {shown}\n=== etcd printed:\n{want}\n=== raftkv printed:\n{got}"
        )
        return want

    def revision(self, cluster: Cluster) -> int:
        r = cluster.ctl("get", "__rev_probe", "-w", "json", endpoints=cluster.nodes[0].endpoint)
        return int(json.loads(r.stdout)["header"]["revision"])

    def align_revisions(self) -> int:
        """Pad the cluster that is behind with puts so both are at the same revision (so a
        failed test does not make every later comparison differ); the common revision."""
        for _ in range(3):
            a, b = self.revision(self.etcd), self.revision(self.raftkv)
            if a == b:
                return a
            lagging = self.etcd if a < b else self.raftkv
            kv = lagging.nodes[0].kv()
            for _ in range(min(abs(a - b), 1000)):
                kv.Put(rpc_pb2.PutRequest(key=b"__pad", value=b"x"), timeout=10)
        raise AssertionError("revisions of etcd and raftkv cannot be aligned")


def start_both(etcd: Cluster, raftkv: Cluster) -> Dual:
    """Start both clusters side by side (their members boot concurrently)."""
    try:
        for c in (etcd, raftkv):
            c.base.mkdir(parents=True, exist_ok=True)
            for node in c.nodes:
                c.start_node(node)
        etcd.wait_ready()
        raftkv.wait_ready()
        return Dual(etcd, raftkv)
    except BaseException:
        etcd.stop()
        raftkv.stop()
        raise
