"""holdall: one library for the data ML and scientific pipelines produce and consume.

>>> import numpy as np
>>> from holdall import MemoryStorage
>>> store = MemoryStorage()
>>> store.save_data("faces/areas", np.array([1.5, 2.5], dtype=np.float32))
>>> store.load_data("faces")
{'areas': array([1.5, 2.5], dtype=float32)}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from holdall.storage import (
    DataStorage,
    JsonStorageHandler,
    MemoryStorage,
    OptStorage,
    StoreGroup,
    convert_storage,
)

if TYPE_CHECKING:
    from holdall.objects import DataStore, DataStoreIO

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`DataStore` and `DataStoreIO` import holdall.objects (DuckDB, polars) on first use, so
    that ``import holdall`` for storage alone stays fast (0.4 s of a 0.5 s import)."""
    if name in ("DataStore", "DataStoreIO"):
        from holdall import objects

        return getattr(objects, name)
    raise AttributeError(f"module 'holdall' has no attribute {name!r}")


__all__ = [
    "DataStore",
    "DataStoreIO",
    "DataStorage",
    "JsonStorageHandler",
    "MemoryStorage",
    "OptStorage",
    "StoreGroup",
    "__version__",
    "convert_storage",
]
