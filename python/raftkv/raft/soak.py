"""Soak the Raft core with the deterministic simulation over many seeds.

Usage (from the repository root)::

    PYTHONPATH=python python -m raftkv.raft.soak --seeds 20000 [--start 0] [--members 3|5|both]
        [--jobs 2] [-v]

Each seed is one fully deterministic run of ``raftkv.raft.sim`` (faults, then healing, then
liveness checks). A failing seed prints its error and the exact command that replays it; ``-v``
(with a single seed) prints the event trace too. Exit status is 1 if any seed failed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time

from .sim import SimFailure, replay_command, run_seed


def _one(job: tuple[int, int, bool]) -> tuple[int, int, str | None]:
    seed, members, trace = job
    try:
        run_seed(seed, members, trace=trace)
    except SimFailure as e:
        return seed, members, str(e)
    except Exception as e:  # a crash of the core itself is a failure too
        return (
            seed,
            members,
            (
                f"seed {seed} ({members} members): {type(e).__name__}: {e}\n"
                f"  replay: {replay_command(seed, members)}"
            ),
        )
    return seed, members, None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m raftkv.raft.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--members", choices=["3", "5", "both"], default="both")
    ap.add_argument("--jobs", type=int, default=multiprocessing.cpu_count())
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    sizes = [3, 5] if args.members == "both" else [int(args.members)]
    jobs = [
        (s, sizes[i % len(sizes)] if len(sizes) > 1 else sizes[0], args.verbose)
        for i, s in enumerate(range(args.start, args.start + args.seeds))
    ]
    t0 = time.monotonic()
    failures = 0
    done = 0
    if args.jobs > 1 and len(jobs) > 1:
        with multiprocessing.Pool(args.jobs) as pool:
            results = pool.imap_unordered(_one, jobs, chunksize=8)
            for _seed, _members, err in results:
                done += 1
                if err is not None:
                    failures += 1
                    print(f"FAIL {err}", flush=True)
                if done % 1000 == 0:
                    print(
                        f"... {done} seeds, {failures} failures, {time.monotonic() - t0:.0f}s",
                        flush=True,
                    )
    else:
        for job in jobs:
            _seed, _members, err = _one(job)
            done += 1
            if err is not None:
                failures += 1
                print(f"FAIL {err}", flush=True)
    dt = time.monotonic() - t0
    print(
        f"{done} seeds ({'/'.join(map(str, sizes))} members) from {args.start}: "
        f"{failures} failed in {dt:.1f}s"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
