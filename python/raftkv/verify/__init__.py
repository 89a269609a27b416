"""Checkers for client histories recorded against an etcd-compatible cluster (issue 7's
instrument): linearizability of each key's register history and monotonic revisions;
``report.check_history`` runs them all and explains failures."""
