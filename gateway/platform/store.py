"""The receiver's store, as it was imported before the engines were split (gateway/platform/stores/):
`Store(path)` is the embedded SQLite engine; `open_store(url)` chooses the engine from a URL."""

from gateway.platform.stores import Batch, StoreError, open_store
from gateway.platform.stores.sqlite import SqliteStore as Store

__all__ = ["Batch", "Store", "StoreError", "open_store"]
