#!/usr/bin/env bash
# The main job: a local 3-member raftkv cluster on loopback (etcd's local-cluster ports:
# clients 2379, 22379, 32379; peers 12380, 22380, 32380), ready for etcdctl. Ctrl-C stops it.
# Extra arguments go to `raftkv cluster` (see `raftkv cluster --help`).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
apt_install etcd-client
python_setup
log "raftkv cluster"
exec raftkv cluster "$@"
