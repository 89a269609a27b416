#!/usr/bin/env bash
# The side-by-side cluster benchmark (raftkv against Debian's etcd 3.4 on this machine), with
# its set-up. Arguments go to `python -m benchmarks.cluster_bench` (--smoke, --only, --rounds).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
apt_install etcd-server etcd-client
python_setup
log "benchmarks.cluster_bench $*"
exec python3 -m benchmarks.cluster_bench "$@"
