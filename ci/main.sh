#!/usr/bin/env bash
# The main job. Until the cluster lands this is the durable WAL throughput demo;
# extra arguments go to `raftkv demo` (see `raftkv demo --help`).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
python_setup
log "raftkv demo"
exec raftkv demo "$@"
