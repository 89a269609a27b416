"""`raftkv bench` against a real etcd (Debian's etcd-server), a server we did not write."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from raftkv._native import run_bench
from raftkv.cli import main
from tests.bench.etcd import Etcd, free_port


def bench(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `raftkv bench ARGS` in-process; returns (exit status, stdout, stderr)."""
    rc = main(["bench", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def bench_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str
) -> tuple[int, dict[str, Any], str]:
    path = tmp_path / "report.json"
    rc, out, _ = bench(capsys, *args, "--json", str(path), "--no-progress")
    doc: dict[str, Any] = json.loads(path.read_text())
    return rc, doc, out


def test_put_writes_exactly_the_expected_keys(
    etcd: Etcd, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rc, doc, out = bench_json(
        capsys,
        tmp_path,
        "put",
        f"--endpoints={etcd.endpoint}",
        "--total=1000",
        "--clients=16",
        "--conns=2",
        "--sequential-keys",
        "--key-prefix=put1/",
        "--key-size=10",
        "--key-space=5000",
        "--val-size=100",
    )
    assert rc == 0, out
    assert (doc["ops"], doc["ok"], doc["errors"]) == (1000, 1000, 0)
    assert doc["per_op"] == {"put": {"ok": 1000, "errors": 0}}
    assert etcd.count("put1/") == 1000
    first = etcd.ctl("get", "put1/00000", "--print-value-only").stdout.strip()
    last = etcd.ctl("get", "put1/00999", "--print-value-only").stdout.strip()
    assert len(first) == 100 and len(last) == 100
    assert etcd.ctl("get", "put1/01000").stdout == ""
    assert "calls        1,000 (1,000 ok, 0 failed)" in out


def test_random_keys_stay_inside_the_key_space(
    etcd: Etcd, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rc, doc, _ = bench_json(
        capsys,
        tmp_path,
        f"--endpoints={etcd.endpoint}",
        "--total=500",
        "--clients=8",
        "--key-prefix=rnd/",
        "--key-size=6",
        "--key-space=20",
    )
    assert rc == 0 and doc["ok"] == 500
    n = etcd.count("rnd/")
    assert 1 <= n <= 20
    keys = etcd.ctl("get", "rnd/", "--prefix", "--keys-only").stdout.split()
    assert all(len(k) == 6 and k.startswith("rnd/") and int(k[4:]) < 20 for k in keys)


@pytest.mark.parametrize("consistency", ["l", "s"])
def test_range_workloads_run_without_errors(
    etcd: Etcd, capsys: pytest.CaptureFixture[str], tmp_path: Path, consistency: str
) -> None:
    rc, doc, out = bench_json(
        capsys,
        tmp_path,
        "range",
        f"--endpoints={etcd.endpoint}",
        f"--consistency={consistency}",
        "--total=400",
        "--clients=8",
        "--key-prefix=put1/",
        "--key-size=10",
        "--key-space=1000",
    )
    assert rc == 0, out
    assert doc["per_op"] == {"range": {"ok": 400, "errors": 0}}
    assert doc["options"]["consistency"] == consistency
    want = "serializable" if consistency == "s" else "linearizable"
    assert f"({want} ranges)" in out


def test_mix_with_txn(etcd: Etcd, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, doc, out = bench_json(
        capsys,
        tmp_path,
        "range:50,put:30,txn:20",
        f"--endpoints={etcd.endpoint}",
        "--total=600",
        "--clients=12",
        "--conns=3",
        "--key-prefix=mix/",
        "--key-size=8",
        "--key-space=100",
        "--seed=7",
    )
    assert rc == 0, out
    per_op = doc["per_op"]
    assert set(per_op) == {"range", "put", "txn"}
    assert sum(v["ok"] for v in per_op.values()) == 600
    assert all(v["ok"] > 0 and v["errors"] == 0 for v in per_op.values())
    assert doc["txn"] == {"succeeded": per_op["txn"]["ok"], "failed": 0}
    assert 1 <= etcd.count("mix/") <= 100


def test_json_has_the_documented_fields(
    etcd: Etcd, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rc, doc, _ = bench_json(
        capsys, tmp_path, f"--endpoints={etcd.endpoint}", "--total=200", "--clients=4"
    )
    assert rc == 0
    assert set(doc) == {
        "version",
        "options",
        "ops",
        "ok",
        "errors",
        "elapsed_s",
        "ops_per_s",
        "errors_by_code",
        "error_messages",
        "per_op",
        "latency_ms",
        "histogram",
        "cpu",
        "servers",
        "warmup_ops",
        "interrupted",
    }
    latency_fields = {"count", "mean", "stddev", "min", "p50", "p90", "p99", "p99_9", "max"}
    assert set(doc["latency_ms"]) == latency_fields
    lat = doc["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"]
    assert lat["count"] == 200
    assert 0 <= lat["stddev"] <= lat["max"] - lat["min"]
    assert set(doc["cpu"]) == {"user_s", "sys_s", "total_s", "us_per_op", "cores"}
    assert doc["cpu"]["total_s"] > 0 and doc["cpu"]["us_per_op"] > 0
    assert sum(row["count"] for row in doc["histogram"]) == 200
    assert doc["histogram"][-1]["le_ms"] >= lat["max"]
    assert doc["ops_per_s"] == pytest.approx(200 / doc["elapsed_s"])
    assert doc["options"]["endpoints"] == [f"http://{etcd.endpoint}"]
    assert doc["options"]["workload"] == "put"
    assert doc["errors_by_code"] == {} and doc["interrupted"] is False
    assert doc["servers"] == []


def test_server_cpu_is_reported(etcd: Etcd, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = bench(
        capsys,
        f"--endpoints={etcd.endpoint}",
        "--total=300",
        "--clients=8",
        f"--server-pids={etcd.proc.pid}",
        "--no-progress",
    )
    assert rc == 0
    assert f"server {etcd.proc.pid}" in out and "us CPU per call in all" in out
    report = run_bench([etcd.endpoint], total=300, clients=8, server_pids=[etcd.proc.pid])
    (srv,) = report["servers"]
    assert srv["pid"] == etcd.proc.pid
    assert srv["cpu_s"] is not None and srv["cpu_s"] > 0
    assert srv["us_per_op"] == pytest.approx(srv["cpu_s"] * 1e6 / 300)


def test_duration_bounds_the_run(etcd: Etcd, capsys: pytest.CaptureFixture[str]) -> None:
    began = time.monotonic()
    report = run_bench([etcd.endpoint], clients=4, duration=0.5, key_prefix="dur/", key_size=9)
    assert time.monotonic() - began < 10
    assert report["elapsed_s"] >= 0.5
    assert report["ok"] > 0 and report["errors"] == 0
    assert report["interrupted"] is False


def test_rate_limit_paces_calls(etcd: Etcd) -> None:
    # 100 calls at 200/s: the last one may start no earlier than 99/200 s after the first.
    report = run_bench([etcd.endpoint], clients=8, total=100, rate=200.0, workload="range")
    assert report["ok"] == 100
    assert report["elapsed_s"] >= 0.49


def test_warmup_is_left_out(etcd: Etcd) -> None:
    report = run_bench([etcd.endpoint], clients=4, total=100, warmup=0.2, workload="range")
    assert report["ops"] == 100
    assert report["warmup_ops"] > 0


def test_tonic_transport_matches(etcd: Etcd) -> None:
    report = run_bench(
        [etcd.endpoint, etcd.endpoint],
        conns=2,
        clients=4,
        total=300,
        transport="tonic",
        workload="put:1,txn:1",
        key_prefix="tn/",
    )
    assert report["ok"] == 300 and report["errors"] == 0
    assert report["options"]["transport"] == "tonic"


def test_json_on_stdout_keeps_the_summary_off_it(
    etcd: Etcd, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = bench(
        capsys, "range", f"--endpoints={etcd.endpoint}", "--total=50", "--json=-", "--no-progress"
    )
    assert rc == 0
    assert json.loads(out)["ok"] == 50
    assert "throughput" in err


def test_multi_threaded_runtime(etcd: Etcd) -> None:
    report = run_bench(
        [etcd.endpoint], threads=2, conns=2, clients=16, total=500, workload="range:1,put:1"
    )
    assert report["ok"] == 500 and report["options"]["threads"] == 2


def test_progress_callback_and_bar(etcd: Etcd, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple[int, int, float, bool]] = []
    run_bench(
        [etcd.endpoint],
        clients=2,
        total=50,
        workload="range",
        progress=lambda *a: seen.append(a),
    )
    assert seen and seen[-1][0] == 50 and seen[-1][3] is True
    assert [s[0] for s in seen] == sorted(s[0] for s in seen)
    rc, _, err = bench(capsys, "range", f"--endpoints={etcd.endpoint}", "--total=100")
    assert rc == 0
    assert "100%  100 calls" in err  # not a terminal: one line per 10%


def test_exception_in_progress_stops_the_run(etcd: Etcd) -> None:
    def boom(done: int, errors: int, elapsed: float, measuring: bool) -> None:
        raise RuntimeError("stop here")

    began = time.monotonic()
    with pytest.raises(RuntimeError, match="stop here"):
        run_bench([etcd.endpoint], clients=2, duration=60.0, workload="range", progress=boom)
    assert time.monotonic() - began < 10


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--clients=0"], "clients must be 1..=10000"),
        (["--conns=0"], "conns must be 1..=1024"),
        (["get"], 'unknown operation "get"'),
        (["put:x"], "weight must be a whole number"),
        (["--key-size=3"], "key size 3 is too small"),
        (["--endpoints=unix:/tmp/etcd.sock"], "unix sockets are not supported"),
        (["--endpoints=localhost"], "expected host:port"),
        (["--duration=0"], "duration must be more than 0"),
        (["--rate=-5"], "rate must be a positive number"),
        (["--total=0"], "total must be at least 1"),
        (["--timeout=0"], "timeout must be more than 0"),
        (["--server-pids=999999999"], "server pid 999999999: no such process"),
    ],
)
def test_bad_options_give_clear_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    rc, out, err = bench(capsys, *args, "--no-progress")
    assert rc == 2
    assert out == ""
    assert err.startswith("raftkv bench: error: ")
    assert needle in err, err


@pytest.mark.parametrize("args", [["--clients=-1"], ["--total=many"], ["--consistency=x"]])
def test_malformed_numbers_are_refused_by_the_parser(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", *args])
    assert exc.value.code == 2
    assert "raftkv bench: error: argument" in capsys.readouterr().err


def test_refused_endpoint_fails_fast(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens there
    began = time.monotonic()
    rc, out, err = bench(capsys, f"--endpoints=127.0.0.1:{port}", "--total=10", "--no-progress")
    assert time.monotonic() - began < 5
    assert rc == 1 and out == ""
    assert f"raftkv bench: cannot run: endpoint http://127.0.0.1:{port}:" in err
    assert "refused" in err.lower()


def test_silent_endpoint_fails_within_the_connect_timeout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A socket that listens but never answers: TCP connects, HTTP/2 never does.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        port = s.getsockname()[1]
        began = time.monotonic()
        rc, _, err = bench(
            capsys,
            f"--endpoints=127.0.0.1:{port}",
            "--total=10",
            "--connect-timeout=0.5",
            "--no-progress",
        )
        took = time.monotonic() - began
    assert rc == 1
    assert "cannot run" in err and "within" in err, err
    assert took < 5


def test_one_bad_endpoint_among_good_ones_fails(etcd: Etcd) -> None:
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:"):
        run_bench([etcd.endpoint, f"127.0.0.1:{free_port()}"], conns=2, total=10)


@pytest.mark.parametrize("transport", ["h2", "tonic"])
def test_member_restart_mid_run_gives_errors_then_recovers(tmp_path: Path, transport: str) -> None:
    """Kill etcd once calls flow, restart it on the same ports: calls fail (counted by
    code) while it is down, and the generator reconnects and succeeds again after."""
    from tests.bench.etcd import start_etcd

    e = start_etcd(tmp_path)
    state: dict[str, int] = {}

    def restart_once(done: int, errors: int, elapsed: float, measuring: bool) -> None:
        nonlocal e
        if done > 0 and "killed_at" not in state:
            state["killed_at"] = done
            e.proc.kill()
            e.proc.wait(timeout=10)
            e = start_etcd(tmp_path, e.ports)  # blocks until healthy; the run goes on
            state["restarted_ok"] = done - errors

    try:
        began = time.monotonic()
        report = run_bench(
            [e.endpoint],
            clients=4,
            duration=4.0,
            timeout=2.0,
            connect_timeout=1.0,
            workload="put",
            key_prefix="rs/",
            key_size=9,
            transport=transport,
            progress=restart_once,
        )
        assert time.monotonic() - began < 20
    finally:
        e.stop()
    assert "restarted_ok" in state, "the run ended before the restart"
    assert report["errors"] > 0
    # tonic reports a call cut by the connection loss as UNKNOWN ("transport error: ...").
    allowed = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL"} | (
        {"UNKNOWN"} if transport == "tonic" else set()
    )
    assert set(report["errors_by_code"]) <= allowed
    assert all(report["error_messages"][c] for c in report["errors_by_code"])
    assert report["ok"] > state["restarted_ok"], "no successful call after the restart"


def test_paused_member_gives_deadline_exceeded(tmp_path: Path) -> None:
    """SIGSTOP etcd while calls are in flight: they end as DEADLINE_EXCEEDED after the
    per-call timeout (not hang); after SIGCONT calls succeed again."""
    import os
    import signal

    from tests.bench.etcd import start_etcd

    e = start_etcd(tmp_path)
    state: dict[str, float] = {}

    def pause_then_resume(done: int, errors: int, elapsed: float, measuring: bool) -> None:
        if done > 0 and "paused_at" not in state:
            state["paused_at"] = elapsed
            os.kill(e.proc.pid, signal.SIGSTOP)
        elif "paused_at" in state and "resumed" not in state and errors > 0:
            os.kill(e.proc.pid, signal.SIGCONT)
            state["resumed"] = done - errors

    try:
        began = time.monotonic()
        report = run_bench(
            [e.endpoint],
            clients=4,
            duration=4.0,
            timeout=0.5,
            workload="range",
            progress=pause_then_resume,
        )
        took = time.monotonic() - began
    finally:
        os.kill(e.proc.pid, signal.SIGCONT)
        e.stop()
    assert took < 15
    assert "resumed" in state, "no call timed out while etcd was paused"
    assert report["errors_by_code"].get("DEADLINE_EXCEEDED", 0) >= 4
    assert "client-side timeout" in report["error_messages"]["DEADLINE_EXCEEDED"]
    assert report["ok"] > state["resumed"], "no successful call after SIGCONT"
