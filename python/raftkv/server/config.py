"""A member's configuration, with etcd's flag names and defaults."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A configuration that cannot work, with the reason."""


def host_port(url: str) -> str:
    """``http://127.0.0.1:2379`` -> ``127.0.0.1:2379`` (what sockets bind and dial)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https", "unix", "unixs") or not parts.hostname:
        raise ConfigError(f"invalid URL {url!r}")
    if parts.port is None:
        raise ConfigError(f"URL {url!r} has no port")
    host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
    return f"{host}:{parts.port}"


def parse_initial_cluster(text: str) -> dict[str, list[str]]:
    """``a=http://h:1,b=http://h:2`` -> ``{"a": [...], "b": [...]}`` (a name may repeat)."""
    members: dict[str, list[str]] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise ConfigError(f"invalid --initial-cluster entry {item!r} (want name=peer-url)")
        host_port(url)
        members.setdefault(name, []).append(url)
    return members


def member_id(peer_urls: list[str], token: str) -> int:
    """A member's id from its peer URLs and the cluster token, as etcd derives it."""
    digest = hashlib.sha1(("".join(sorted(peer_urls)) + token).encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


def cluster_id(member_ids: list[int]) -> int:
    data = b"".join(i.to_bytes(8, "big") for i in sorted(member_ids))
    return int.from_bytes(hashlib.sha1(data).digest()[:8], "big") or 1


@dataclass
class MemberConfig:
    name: str = "default"
    data_dir: Path = Path("default.etcd")
    listen_client_urls: list[str] = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    advertise_client_urls: list[str] = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    listen_peer_urls: list[str] = field(default_factory=lambda: ["http://127.0.0.1:2380"])
    initial_advertise_peer_urls: list[str] = field(
        default_factory=lambda: ["http://127.0.0.1:2380"]
    )
    initial_cluster: dict[str, list[str]] = field(default_factory=dict)
    initial_cluster_state: str = "new"
    initial_cluster_token: str = "etcd-cluster"
    heartbeat_interval_ms: int = 100
    election_timeout_ms: int = 1000
    snapshot_count: int = 100_000
    max_request_bytes: int = 1536 * 1024
    max_txn_ops: int = 128
    quota_backend_bytes: int = 2 * 1024**3
    # client TLS (etcd's --cert-file, --key-file, --trusted-ca-file, --client-cert-auth)
    cert_file: str | None = None
    key_file: str | None = None
    trusted_ca_file: str | None = None
    client_cert_auth: bool = False
    # peer TLS (etcd's --peer-* flags)
    peer_cert_file: str | None = None
    peer_key_file: str | None = None
    peer_trusted_ca_file: str | None = None
    peer_client_cert_auth: bool = False

    def validate(self) -> None:
        if not self.initial_cluster:
            self.initial_cluster = {self.name: list(self.initial_advertise_peer_urls)}
        if self.name not in self.initial_cluster:
            raise ConfigError(
                f"--initial-cluster has no member named {self.name!r} (--name); "
                f"it names {', '.join(sorted(self.initial_cluster))}"
            )
        if sorted(self.initial_cluster[self.name]) != sorted(self.initial_advertise_peer_urls):
            raise ConfigError(
                f"--initial-cluster must include {self.name}="
                f"{','.join(self.initial_advertise_peer_urls)} (--initial-advertise-peer-urls)"
            )
        if self.initial_cluster_state not in ("new", "existing"):
            raise ConfigError("--initial-cluster-state must be 'new' or 'existing'")
        if self.heartbeat_interval_ms <= 0:
            raise ConfigError("--heartbeat-interval must be positive")
        if self.election_timeout_ms < 5 * self.heartbeat_interval_ms:
            raise ConfigError(
                "--election-timeout must be at least 5 times --heartbeat-interval "
                f"({self.election_timeout_ms} < 5 * {self.heartbeat_interval_ms})"
            )
        if self.max_txn_ops <= 0 or self.max_request_bytes <= 0:
            raise ConfigError("--max-txn-ops and --max-request-bytes must be positive")
        for url in [*self.listen_client_urls, *self.listen_peer_urls, *self.advertise_client_urls]:
            host_port(url)

    @property
    def election_ticks(self) -> int:
        return self.election_timeout_ms // self.heartbeat_interval_ms

    def member_ids(self) -> dict[str, int]:
        return {
            name: member_id(urls, self.initial_cluster_token)
            for name, urls in self.initial_cluster.items()
        }
