"""Every backend runs the same `StorageTests`; each class only says how to make and reopen it."""

from __future__ import annotations

import json
import shutil
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from holdall import DataStorage, JsonStorageHandler, MemoryStorage, OptStorage
from holdall._core.values import Group, Leaf
from tests.conformance.suite import StorageTests


class _Tracked(StorageTests):
    """Closes every store a test opened, so no file handle outlives its test."""

    opened: list[DataStorage]

    @pytest.fixture(autouse=True)
    def _track(self, tmp_path: Path) -> Iterator[None]:
        self.tmp_path = tmp_path
        self.opened = []
        yield
        for store in self.opened:
            store.close()

    def _keep(self, store: DataStorage) -> DataStorage:
        self.opened.append(store)
        return store


class TestMemoryStorage(_Tracked):
    def make_store(self) -> DataStorage:
        return MemoryStorage()

    def reopen(self, store: DataStorage) -> DataStorage:
        return store

    def read_raw(self, store: DataStorage, key: str) -> Any:
        node: Any = store._root  # type: ignore[attr-defined]
        for part in key.split("/"):
            assert isinstance(node, Group)
            node = node.children[part]
        assert isinstance(node, Leaf)
        return node.array


class TestJsonStorageHandler(_Tracked):
    def make_store(self) -> DataStorage:
        return JsonStorageHandler(self.tmp_path / "json")

    def reopen(self, store: DataStorage) -> DataStorage:
        return self._keep(JsonStorageHandler(self.tmp_path / "json"))

    def read_raw(self, store: DataStorage, key: str) -> Any:
        document = json.loads((self.tmp_path / "json" / "data" / f"{key}.json").read_text())
        return np.array(document["data"], dtype=document["dtype"]).reshape(document["shape"])


class _ZarrDirectory(_Tracked):
    rejects_nan = True
    zarr_format: ClassVar[int] = 3

    def store_path(self) -> str:
        return str(self.tmp_path / "part.zarr")

    def options(self) -> dict[str, Any]:
        return {}

    def make_store(self) -> DataStorage:
        return OptStorage(
            self.store_path(), zarr_format=self.zarr_format, storage_options=self.options() or None
        )  # type: ignore[arg-type]

    def reopen(self, store: DataStorage) -> DataStorage:
        """Close the writer (one writer at a time holds a store's lock) and open it again."""
        assert isinstance(store, OptStorage)
        store.close()
        return self._keep(OptStorage(self.store_path(), storage_options=self.options() or None))

    def read_raw(self, store: DataStorage, key: str) -> Any:
        import zarr

        assert isinstance(store, OptStorage)
        store.flush()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr notes numcodecs codecs are outside the v3 spec
            return zarr.open_array(
                self.store_path(), path=key, mode="r", storage_options=self.options() or None
            )[...]


class TestOptStorageDirectory(_ZarrDirectory):
    pass


class TestOptStorageZarrV2(_ZarrDirectory):
    zarr_format = 2


class TestOptStorageArchive(_ZarrDirectory):
    """Packed with compress_store and reopened from the archive alone: read-only."""

    reopens_read_only = True

    def reopen(self, store: DataStorage) -> DataStorage:
        assert isinstance(store, OptStorage)
        store.compress_store()
        copy = self.tmp_path / uuid.uuid4().hex / "part.zarr"
        copy.parent.mkdir()
        shutil.copy(store.archive_path, f"{copy}.data")
        return self._keep(OptStorage(copy))


@pytest.mark.s3
class TestOptStorageS3(_ZarrDirectory):
    @pytest.fixture(autouse=True)
    def _s3(self, s3_prefix: str, s3_server: dict[str, Any]) -> None:
        self.prefix = s3_prefix
        self.s3_options = s3_server

    def store_path(self) -> str:
        return f"{self.prefix}/part.zarr"

    def options(self) -> dict[str, Any]:
        return self.s3_options


@pytest.mark.s3
class TestOptStorageS3Archive(TestOptStorageS3):
    reopens_read_only = True

    def reopen(self, store: DataStorage) -> DataStorage:
        import s3fs

        assert isinstance(store, OptStorage)
        store.compress_store()
        fs = s3fs.S3FileSystem(**self.s3_options, skip_instance_cache=True)
        copy = f"{self.prefix}/{uuid.uuid4().hex}/part.zarr"
        fs.copy(store.archive_path.removeprefix("s3://"), f"{copy}.data".removeprefix("s3://"))
        return self._keep(OptStorage(copy, storage_options=self.s3_options))
