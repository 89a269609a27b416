"""raftkv: a Raft-replicated, strongly consistent key-value store speaking etcd's v3 API.

The native core (``raftkv._native``, Rust through PyO3) owns bytes, files and threads: the
entry codec and the write-ahead log. Python modules orchestrate on top of it.
"""

from raftkv._native import __version__

__all__ = ["__version__"]
