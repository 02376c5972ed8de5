"""Import path of seed code: ``from hoops_ai.storage.datastorage import DataStorage``.

An alias of `holdall.storage`'s backends, so switching is a one-word edit of the import.
"""

from __future__ import annotations

from holdall.storage.base import DataStorage
from holdall.storage.json import JsonStorageHandler
from holdall.storage.memory import MemoryStorage
from holdall.storage.zarr import OptStorage

__all__ = ["DataStorage", "JsonStorageHandler", "MemoryStorage", "OptStorage"]
