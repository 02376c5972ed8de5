"""The DataStorage family: one contract, three backends, and a converter (seeds 000, 001)."""

from __future__ import annotations

from holdall.storage.base import DataStorage
from holdall.storage.convert import convert_storage
from holdall.storage.json import JsonStorageHandler
from holdall.storage.memory import MemoryStorage, StoreGroup
from holdall.storage.zarr import OptStorage

__all__ = [
    "DataStorage",
    "JsonStorageHandler",
    "MemoryStorage",
    "OptStorage",
    "StoreGroup",
    "convert_storage",
]
