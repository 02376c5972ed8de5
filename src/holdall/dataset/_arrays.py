"""Zarr v3 arrays in a local folder that grow along their first axis, one whole chunk at a time.

The merge appends thousands of small per-file blocks to each output array. zarr-python
rewrites an array's ``zarr.json`` on every resize and costs milliseconds per call, so the
merge writes the arrays itself with holdall's encoder (`holdall.storage._zarr_codecs`):
rows wait in a buffer until they fill a chunk, each full chunk is compressed and written in
the codec threads, and ``zarr.json`` is written once, when the array is finished. What comes
out is plain Zarr v3 (Blosc-LZ4 and CRC-32C) that zarr-python, xarray and tensorstore open.

Files that exist are never written into: a chunk or document is replaced by a new file, so a
dataset copied as hard links (the merge's append mode) keeps its own bytes until the new one
is renamed into place.
"""

from __future__ import annotations

import json
from collections import deque
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np

from holdall._core.atomic import atomic_write_bytes
from holdall.errors import CorruptedFileError
from holdall.storage._zarr_codecs import (
    ArraySpec,
    array_documents,
    choose_layout,
    codec_pool,
    component_order,
    decode_array,
    dumps_document,
    group_documents,
    parse_array_document,
)

__all__ = ["GrowingArray", "write_group"]

#: Chunk writes in flight per array before `append` waits for the oldest.
_IN_FLIGHT = 4


def write_group(folder: Path, attributes: dict[str, Any]) -> None:
    """Write (or replace) the ``zarr.json`` of the group `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in group_documents(attributes, 3).items():
        atomic_write_bytes(folder / name, data)


class GrowingArray:
    """One output array of the merge: rows are appended, whole chunks written as they fill."""

    def __init__(self, folder: Path, spec: ArraySpec, dimension_names: list[str]) -> None:
        self.folder = folder
        self.spec = spec
        self.dimension_names = dimension_names
        self.chunk_rows = spec.chunks[0]
        self.written = 0
        self._pending: list[np.ndarray[Any, Any]] = []
        self._pending_rows = 0
        self._writes: deque[Future[None]] = deque()
        self._changed = False

    @classmethod
    def create(
        cls,
        folder: Path,
        *,
        trailing: tuple[int, ...],
        dtype: np.dtype[Any],
        chunk_rows: int,
        dimension_names: list[str],
        compress: bool,
        sample: np.ndarray[Any, Any] | None = None,
    ) -> GrowingArray:
        """A new empty array (its ``zarr.json`` is written at once, then again by `finish`).

        With a `sample` of its rows (the first file's), the array is compressed as the storage
        core compresses a large array (`choose_layout`: component-major when the last axis is
        small, the fastest codec reaching Zstd-12's ratio on the sample); without one, with
        Blosc-LZ4 (the offsets and file codes).
        """
        chunks = (chunk_rows, *trailing)
        transpose = None
        compressor: Any = None
        if compress and sample is not None and sample.size:
            order = component_order(chunks, chunks)  # only the trailing axes decide
            transpose, compressor = choose_layout(sample[:chunk_rows], (), order)
        elif compress:
            compressor = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
        spec = ArraySpec(
            shape=(0, *trailing),
            dtype=dtype,
            chunks=chunks,
            filters=(),
            compressor=compressor,
            zarr_format=3,
            fill_value=np.zeros((), dtype)[()],
            checksum=True,
            transpose=transpose,
        )
        array = cls(folder, spec, dimension_names)
        folder.mkdir(parents=True, exist_ok=True)
        array._write_document()
        array._changed = True
        return array

    @classmethod
    def open(cls, folder: Path) -> GrowingArray:
        """An existing array, to append to; its last, partial chunk is read back into the buffer.

        Raises
        ------
        CorruptedFileError
            Its ``zarr.json`` is missing, damaged, or describes a layout holdall does not write.
        """
        document_path = folder / "zarr.json"
        try:
            document = json.loads(document_path.read_bytes())
            spec = parse_array_document({"zarr.json": document})
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CorruptedFileError(
                f"{document_path} cannot be read as a Zarr array: {err}", path=str(document_path)
            ) from err
        if spec is None or not spec.shape or spec.zarr_format != 3:
            raise CorruptedFileError(
                f"{document_path} is not an array layout the merge appends to", path=str(folder)
            )
        array = cls(folder, spec, list(document.get("dimension_names") or []))
        rows = spec.shape[0]
        array.written = rows - rows % array.chunk_rows
        if array.written < rows:
            index = (array.written // array.chunk_rows,) + (0,) * (len(spec.shape) - 1)
            tail = spec.decode_chunk(
                (folder / spec.chunk_key(index)).read_bytes(), path=str(folder)
            )
            array._pending = [np.array(tail[: rows - array.written])]
            array._pending_rows = rows - array.written
        return array

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape with every appended row counted."""
        return (self.rows, *self.spec.shape[1:])

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.spec.dtype

    @property
    def rows(self) -> int:
        return self.written + self._pending_rows

    def read(self) -> np.ndarray[Any, Any]:
        """The whole array as written so far (for the small offset arrays of a dataset)."""
        self._wait(0)
        stored = replace(self.spec, shape=(self.written, *self.spec.shape[1:]))
        head = decode_array(stored, self._read_chunk, path=str(self.folder))
        return np.concatenate([head, *self._pending]) if self._pending else head

    def append(self, block: np.ndarray[Any, Any]) -> None:
        """Add rows; every chunk they complete is compressed and written (in the codec threads)."""
        if not len(block):
            return
        self._changed = True
        self._pending.append(block)
        self._pending_rows += len(block)
        if self._pending_rows >= self.chunk_rows:
            self._write_full_chunks(final=False)

    def replace_all(self, values: np.ndarray[Any, Any]) -> None:
        """Make the array hold exactly `values` (rewritten whole: offsets, file codes)."""
        self._wait(0)
        self.written, self._pending, self._pending_rows = 0, [values], len(values)
        self._changed = True

    def finish(self) -> None:
        """Write the buffered rows (a last, partial chunk) and ``zarr.json`` with the final shape.

        An array opened but never changed (an append that added nothing to it) is left as it is.
        """
        if not self._changed:
            return
        self._write_full_chunks(final=True)
        self._wait(0)
        self._write_document()

    def _write_full_chunks(self, *, final: bool) -> None:
        if not self._pending:
            return
        data = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        count = len(data) if final else len(data) - len(data) % self.chunk_rows
        for start in range(0, count, self.chunk_rows):
            index = ((self.written + start) // self.chunk_rows,) + (0,) * (data.ndim - 1)
            block = data[start : start + self.chunk_rows]
            self._wait(_IN_FLIGHT)
            self._writes.append(codec_pool().submit(self._write_chunk, index, block))
        rest = data[count:]
        self._pending = [rest] if len(rest) else []
        self._pending_rows = len(rest)
        self.written += count

    def _write_chunk(self, index: tuple[int, ...], block: np.ndarray[Any, Any]) -> None:
        path = self.folder.joinpath(*self.spec.chunk_key(index).split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # a hard-linked chunk of the dataset being appended to
        with path.open("xb") as file:
            file.writelines(self.spec.encode_chunk(block))

    def _read_chunk(self, key: str) -> bytes | None:
        try:
            return self.folder.joinpath(*key.split("/")).read_bytes()
        except FileNotFoundError:
            return None

    def _wait(self, in_flight: int) -> None:
        """Wait until at most `in_flight` chunk writes are running; raise the first failure."""
        while len(self._writes) > in_flight:
            self._writes.popleft().result()

    def _write_document(self) -> None:
        spec = replace(self.spec, shape=self.shape)
        documents = array_documents(spec, attributes={}, dimension_names=self.dimension_names)
        atomic_write_bytes(self.folder / "zarr.json", dumps_document(documents["zarr.json"]))
