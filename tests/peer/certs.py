"""Test certificates on disk for the peer transport's TLS options (file paths)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.tls_certs import CertAuthority


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


class Authority:
    """A throwaway CA whose certificate and issued member certificates are written to
    ``directory`` (members use theirs for both server and client authentication)."""

    def __init__(self, directory: Path, name: str) -> None:
        self.dir = directory
        self.name = name
        self.ca = CertAuthority(name)
        self.cert = self.ca.cert
        self.ca_file = directory / f"{name}-ca.pem"
        self.ca_file.write_bytes(self.ca.cert_pem)

    def issue(self, cn: str) -> Issued:
        pair = self.ca.issue(cn)
        issued = Issued(self.dir / f"{self.name}-{cn}.pem", self.dir / f"{self.name}-{cn}-key.pem")
        issued.cert.write_bytes(pair.cert_pem)
        issued.key.write_bytes(pair.key_pem)
        return issued
