"""holdall: one library for the data ML and scientific pipelines produce and consume.

>>> import numpy as np
>>> from holdall import MemoryStorage
>>> store = MemoryStorage()
>>> store.save_data("faces/areas", np.array([1.5, 2.5], dtype=np.float32))
>>> store.load_data("faces")
{'areas': array([1.5, 2.5], dtype=float32)}
"""

from __future__ import annotations

from holdall.objects import DataStore, DataStoreIO
from holdall.storage import (
    DataStorage,
    JsonStorageHandler,
    MemoryStorage,
    OptStorage,
    StoreGroup,
    convert_storage,
)

__version__ = "0.1.0"

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
