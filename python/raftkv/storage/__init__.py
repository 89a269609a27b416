"""MVCC storage on RocksDB: revisions, the in-memory key index, compaction and hashes.

``mvcc.MvccStore`` is the store; ``keyindex`` and ``revision`` are its parts.
"""
