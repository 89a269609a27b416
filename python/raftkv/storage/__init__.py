"""MVCC storage on RocksDB: revisions, the in-memory key index, compaction and hashes.

``mvcc.MvccStore`` is the store; its parts: ``keyindex`` (key -> generations of revisions),
``revision`` (revision packing and on-disk keys), ``kvrules`` (etcd's rules that need no
store), ``encoding`` (hand-made encodings of the hottest responses).
"""
