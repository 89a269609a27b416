#!/usr/bin/env bash
# Install everything and run the whole suite: Rust tests and lints, Python lints and types,
# pytest. Benchmarks are separate: `pytest benchmarks --benchmark-only`.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

apt_install strace etcd-server etcd-client
python_setup

log "cargo fmt --check"
(cd native && cargo fmt --check)
log "cargo clippy"
(cd native && cargo clippy --all-targets -q -- -D warnings)
log "cargo test"
(cd native && cargo test -q 2>&1 | grep -E "^test result|FAILED|panicked|error" ; exit "${PIPESTATUS[0]}")

log "ruff"
python3 -m ruff check python tests benchmarks
python3 -m ruff format --check python tests benchmarks
log "mypy"
python3 -m mypy

log "pytest"
# the etcd-differential tests must run here (etcd-server is installed above), never skip
export RAFTKV_REQUIRE_ETCD=1
python3 -m pytest -q -p no:cacheprovider tests
