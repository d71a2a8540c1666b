"""pond.store: storage behind small interfaces (DESIGN.md section 5).

- ``DocStore``: TinyDB files for small, mostly-read documents, written atomically through
  ``AtomicJSONStorage`` (temp file + fsync + ``os.replace``, previous version in ``.bak``).
- ``SqlStore``: SQLAlchemy Core (SQLite WAL by default, any URL such as PostgreSQL with the
  same code) for events (write-behind), seen message ids and per-plugin key/values.
- ``Store``: what the App owns; ``Store.namespace(plugin)`` is what a plugin sees.

A file that cannot be read raises ``StoreCorrupt`` with instructions for the operator;
nothing is ever reset silently.

One writer: the store is used from the asyncio loop thread only and from one process per
data dir. This package imports nothing else from ``pond``.
"""

from .docs import AtomicJSONStorage, DocStore, validate_namespace
from .errors import StoreCorrupt, StoreError
from .lock import InstanceLock, InstanceLocked
from .sql import SqlStore, UTCDateTime
from .store import Namespace, Store

__all__ = [
    "AtomicJSONStorage",
    "DocStore",
    "InstanceLock",
    "InstanceLocked",
    "Namespace",
    "SqlStore",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "UTCDateTime",
    "validate_namespace",
]
