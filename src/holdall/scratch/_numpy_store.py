"""`NumpyStore`: one raw array file per rank and key, no collectives.

The file (``<key>.rank<r>.soa``) is a small JSON index followed by each array's raw bytes,
64-byte aligned, so reading is one positioned read (or a memory map) per array, at disk
speed: no zip, no pickle. The index records each array's dtype in the ``.npy`` descr
notation (parsed with `ast.literal_eval`, never `eval`), its shape and offset.
"""

from __future__ import annotations

import ast
import json
import math
import os
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from holdall._core.atomic import atomic_output
from holdall.errors import CorruptedFileError, KeyNotFoundError, UnsupportedTypeError
from holdall.scratch._base import ScratchStore, SoA
from holdall.scratch._gio_io import pread_into

__all__ = ["NumpyStore", "read_soa", "write_soa"]

_MAGIC = b"HOLDSOA\x01"
_HEAD = len(_MAGIC) + 8  # magic, then the index length
_ALIGN = 64
_RETRIES = 3


class NumpyStore(ScratchStore):
    """A temporary dictionary of arrays per key, in memory or one file per MPI rank.

    Each value is a dictionary ``{name: array}`` whose arrays may have any shape, length and
    dtype (object arrays excepted: holdall never pickles). Every rank keeps its own data: only
    the constructor is collective (rank 0 names the shared folder), and ranks may then store
    different keys.

    Parameters
    ----------
    partition
        An `mpipartition.Partition`, an mpi4py communicator, or None (one process); it only
        names this rank's files.
    temporary_path
        Folder for spilled files (see `ScratchStore`); None keeps the arrays in memory,
        by reference, without copying them.
    mmap
        Memory-map spilled arrays on read (read-only arrays backed by the file).

    Examples
    --------
    >>> import numpy as np
    >>> with NumpyStore(None, getfixture("tmp_path")) as store:
    ...     store["pos_0"] = {"x": np.arange(3.0), "grid": np.zeros((2, 2))}
    ...     store.get_field("pos_0", "x")
    {'x': array([0., 1., 2.])}
    """

    def _prepare(self, key: str, data: Mapping[str, Any]) -> SoA:
        if not isinstance(data, Mapping):
            raise UnsupportedTypeError(
                f"the value for key {key!r} must be a mapping of field name to array, got "
                f"{type(data).__name__}",
                key=key,
                got=data,
            )
        prepared: SoA = {}
        for name, value in data.items():
            if not isinstance(name, str):
                raise UnsupportedTypeError(
                    f"field names must be str, got {type(name).__name__} {name!r} "
                    f"under key {key!r}",
                    key=key,
                    got=name,
                )
            array = np.asarray(value)
            if array.dtype.hasobject:
                raise UnsupportedTypeError(
                    f"field {name!r} of key {key!r} holds Python objects (dtype "
                    f"{array.dtype}); NumpyStore stores raw numeric, string and structured "
                    f"arrays only, never pickles",
                    key=key,
                    got=array.dtype,
                )
            prepared[name] = array
        return prepared

    def _file_for(self, key_path: Path) -> Path:
        return key_path.with_name(f"{key_path.name}.rank{self._group.rank}.soa")

    def _spill(self, path: Path, data: SoA) -> None:
        for attempt in range(_RETRIES):
            try:
                write_soa(path, data)
                return
            except FileNotFoundError:
                # Another rank pruned the (empty) folder between our mkdir and our file.
                if attempt == _RETRIES - 1:
                    raise

    def _load(self, path: Path, fields: list[str] | None) -> SoA:
        return read_soa(path, fields, mmap=self._mmap)

    def _delete(self, paths: Sequence[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)
        self._prune(paths)


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def write_soa(path: Path, data: Mapping[str, np.ndarray[Any, Any]]) -> None:
    """Write arrays to one raw file at `path`, atomically (temporary name, then rename)."""
    arrays = {
        name: array if array.flags.c_contiguous else array.copy(order="C")
        for name, array in data.items()
    }
    fields, offset = [], 0
    for name, array in arrays.items():
        descr = repr(np.lib.format.dtype_to_descr(array.dtype))
        fields.append({"name": name, "descr": descr, "shape": list(array.shape), "offset": offset})
        offset = _aligned(offset + array.nbytes)
    index = json.dumps({"fields": fields}).encode()
    start = _aligned(_HEAD + len(index))
    with atomic_output(path) as handle:
        handle.write(_MAGIC + struct.pack("<Q", len(index)) + index)
        position = _HEAD + len(index)
        for field, array in zip(fields, arrays.values(), strict=True):
            target = start + int(field["offset"])  # type: ignore[call-overload]
            handle.write(b"\x00" * (target - position))
            if array.nbytes:
                handle.flush()
                array.tofile(handle)  # fwrite from numpy: measured faster than file.write
            position = target + array.nbytes


def read_soa(path: Path, fields: list[str] | None, *, mmap: bool = False) -> SoA:
    """Read the named arrays (all when None) from a file written by `write_soa`.

    Everything the index says is checked before numpy sees it: the dtype holds no Python
    objects, shapes are non-negative integers, and every array lies inside the file.

    Raises
    ------
    KeyNotFoundError
        A field is not in the file.
    CorruptedFileError
        The file is not such a file, has a damaged index, or is truncated.
    """
    with open(path, "rb", buffering=0) as handle:
        fd = handle.fileno()
        size = os.fstat(fd).st_size
        head = os.pread(fd, _HEAD, 0)
        if len(head) < _HEAD or head[: len(_MAGIC)] != _MAGIC:
            raise CorruptedFileError(f"{path} is not a NumpyStore file", path=str(path))
        (length,) = struct.unpack_from("<Q", head, len(_MAGIC))
        if length > size - _HEAD:
            raise CorruptedFileError(
                f"{path} is truncated: its index needs {length} bytes after the first "
                f"{_HEAD}, the file has {size}",
                path=str(path),
            )
        start = _aligned(_HEAD + length)
        entries = _parse_index(path, os.pread(fd, length, _HEAD), start, size)
        wanted = list(entries) if fields is None else fields
        out: SoA = {}
        for name in wanted:
            if name not in entries:
                raise KeyNotFoundError(
                    f"{path} has no field {name!r}; it has {list(entries)}", key=name
                )
            dtype, shape, offset = entries[name]
            if mmap and dtype.itemsize and 0 not in shape:
                out[name] = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
                continue
            array = np.empty(shape, dtype=dtype)
            if array.nbytes:
                pread_into(fd, array.reshape(-1).view(np.uint8).data, offset, str(path))
            out[name] = array
    return out


def _parse_index(
    path: Path, raw: bytes, start: int, size: int
) -> dict[str, tuple[np.dtype[Any], tuple[int, ...], int]]:
    """Each field's dtype, shape and absolute offset, checked against the file's `size`."""
    where = str(path)
    try:
        index = json.loads(raw)
        items = index["fields"]
        if not isinstance(items, list):
            raise TypeError(f"'fields' is a {type(items).__name__}, not a list")
        entries = {}
        for item in items:
            name, descr = item["name"], item["descr"]
            shape, offset = item["shape"], item["offset"]
            if not isinstance(name, str) or not isinstance(descr, str):
                raise TypeError(f"field name and descr must be strings, got {name!r}, {descr!r}")
            if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
                raise TypeError(f"field {name!r} has shape {shape!r}")
            if not _is_count(offset):
                raise TypeError(f"field {name!r} has offset {offset!r}")
            dtype = np.lib.format.descr_to_dtype(ast.literal_eval(descr))
            entries[name] = (dtype, tuple(shape), start + offset)
    except (ValueError, KeyError, TypeError, SyntaxError, RecursionError, MemoryError) as err:
        raise CorruptedFileError(f"{path} has a damaged index: {err}", path=where) from err
    for name, (dtype, shape, offset) in entries.items():
        if dtype.hasobject:
            raise CorruptedFileError(
                f"{path}: field {name!r} declares dtype {dtype}, which holds Python objects; "
                f"NumpyStore never writes those, so the file is damaged or not holdall's",
                path=where,
            )
        if np.empty(0, dtype).dtype != dtype:  # "S0", "U0": numpy would widen to 1 char
            raise CorruptedFileError(
                f"{path}: field {name!r} declares dtype {dtype!r}, which no array has",
                path=where,
            )
        nbytes = dtype.itemsize * math.prod(shape)
        if offset + nbytes > size:
            raise CorruptedFileError(
                f"{path} is truncated: field {name!r} ({dtype}, shape {shape}) needs bytes "
                f"up to {offset + nbytes}, the file has {size}",
                path=where,
            )
    return entries


def _is_count(value: object) -> bool:
    """A non-negative JSON integer (not a bool, not a float)."""
    return type(value) is int and value >= 0
