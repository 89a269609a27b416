"""Start and stop a real etcd (Debian's etcd-server) for tests, on free loopback ports."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

READY_DEADLINE_S = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Etcd:
    """One running single-member etcd."""

    proc: subprocess.Popen[bytes]
    endpoint: str
    ports: tuple[int, int]
    data_dir: Path
    log_path: Path
    tls: ClientTls | None = None

    def ctl(self, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        """Run etcdctl against this member (v3 API); raises on a non-zero exit."""
        etcdctl = shutil.which("etcdctl") or "etcdctl"
        tls_args: list[str] = []
        if self.tls is not None:
            # etcdctl 3.4 speaks plaintext unless told otherwise when given no TLS files.
            tls_args = ["--insecure-transport=false", "--insecure-skip-tls-verify"]
            if self.tls.trusted_ca_file is not None:
                # The server checks client certificates: present the server's own pair
                # (issued for both server and client use).
                tls_args += [f"--cert={self.tls.cert_file}", f"--key={self.tls.key_file}"]
        scheme = "https" if self.tls is not None else "http"
        return subprocess.run(
            [
                etcdctl,
                f"--endpoints={scheme}://{self.endpoint}",
                "--command-timeout=5s",
                *tls_args,
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
            # etcdctl 3.4 refuses ETCDCTL_ENDPOINTS together with --endpoints: pass a clean env.
            env={"ETCDCTL_API": "3"},
        )

    def count(self, prefix: str) -> int:
        """How many keys start with ``prefix`` (a linearizable range)."""
        out = self.ctl("get", prefix, "--prefix", "--limit=1", "-w", "json").stdout
        n: int = json.loads(out).get("count", 0)  # etcdctl omits a zero count
        return n

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@dataclass(frozen=True)
class ClientTls:
    """TLS for etcd's client URLs: certificate, key and (for client-certificate checks)
    the trusted CA, as files. (etcd's ``--auto-tls`` makes a P-521 key, which rustls's
    ring provider does not support, so tests bring their own certificates.)"""

    cert_file: Path
    key_file: Path
    trusted_ca_file: Path | None = None

    def flags(self) -> list[str]:
        out = [f"--cert-file={self.cert_file}", f"--key-file={self.key_file}"]
        if self.trusted_ca_file is not None:
            out += [f"--trusted-ca-file={self.trusted_ca_file}", "--client-cert-auth"]
        return out


def start_etcd(
    base: Path, ports: tuple[int, int] | None = None, tls: ClientTls | None = None
) -> Etcd:
    """Start etcd in ``base`` (reusing its data if any) on ``ports`` (client, peer; default:
    free ones), with TLS on the client URL if asked, and wait (bounded) until it commits a
    proposal."""
    etcd = shutil.which("etcd")
    if etcd is None or shutil.which("etcdctl") is None:
        raise RuntimeError("etcd/etcdctl not found (apt-get install etcd-server etcd-client)")
    client, peer = ports or (free_port(), free_port())
    data_dir = base / "etcd-data"
    log_path = base / "etcd.log"
    endpoint = f"127.0.0.1:{client}"
    scheme = "https" if tls else "http"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                etcd,
                "--name=t1",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={scheme}://{endpoint}",
                f"--advertise-client-urls={scheme}://{endpoint}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=t1=http://127.0.0.1:{peer}",
                "--initial-cluster-state=new",
                *(tls.flags() if tls else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    e = Etcd(proc, endpoint, (client, peer), data_dir, log_path, tls)
    deadline = time.monotonic() + READY_DEADLINE_S
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"etcd exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}"
            )
        try:
            # `endpoint health` succeeds only once the member has a leader and commits.
            e.ctl("endpoint", "health", "--dial-timeout=1s", timeout=5)
            return e
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
            last = str(getattr(err, "stderr", "") or err)
        time.sleep(0.05)  # poll interval, not synchronisation: readiness is the health check
    e.stop()
    raise RuntimeError(f"etcd not healthy within {READY_DEADLINE_S}s: {last}")
