"""One raftkv member: the node loop that drives the Raft core over the native WAL, peer
transport and client front, and applies committed entries to MVCC storage."""
