"""Reading one per-file store for the merge: where it is, what the schema expects, what it holds.

`read_part` runs in a worker (a local process or a Dask worker): it opens one store or
archive through `OptStorage`, checks each array against the merge plan, casts it to the
declared dtype when that keeps every value, flattens face-pair matrices, and returns the
arrays with the file's metadata, or the reason the file cannot be merged.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from holdall._core.locations import parse_location
from holdall.errors import InvalidValueError, SchemaError
from holdall.schema._rules import check_rules
from holdall.storage.base import SCHEMA_METADATA_KEY
from holdall.storage.zarr import OptStorage

__all__ = [
    "ARCHIVE_SUFFIX",
    "ArrayPlan",
    "GroupPlan",
    "PartResult",
    "cast_keeping_values",
    "file_stem",
    "infer_plan",
    "open_part",
    "plan_from_schema",
    "read_part",
    "store_path",
]

ARCHIVE_SUFFIX = ".data"


def store_path(source: str | os.PathLike[str]) -> str:
    """The `OptStorage` path of `source`: ``x.zarr.data`` (an archive) opens store ``x.zarr``."""
    text = os.fspath(source).rstrip("/")
    return text[: -len(ARCHIVE_SUFFIX)] if text.endswith(ARCHIVE_SUFFIX) else text


def file_stem(source: str | os.PathLike[str]) -> str:
    """The file's name without folders and store suffixes: ``a/part_01.zarr.data`` -> ``part_01``."""
    name = store_path(source).rsplit("/", 1)[-1]
    return name.removesuffix(".zarr")


@dataclass(frozen=True, slots=True)
class ArrayPlan:
    """How one array of a group is merged."""

    name: str
    """Array name inside the group (``face_areas``)."""
    dims: tuple[str, ...] | None
    """Declared dimension names, or None when inferred from the data."""
    dtype: str | None
    """Declared dtype, or None (keep the stored one)."""
    rules: dict[str, Any] = field(default_factory=dict)
    """Declared rules (``min_value``...)."""


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """How one schema group is merged: its arrays and their concatenation dimension."""

    name: str
    """Group name (``faces``)."""
    primary_dimension: str
    """The dimension its arrays concatenate along."""
    arrays: tuple[ArrayPlan, ...]
    """Its arrays."""
    flatten: bool = False
    """True for ``special_processing="matrix_flattening"``: (n, n, ...) becomes (n*n, ...)."""

    def leading_dimension(self, array: ArrayPlan) -> str:
        """The dimension `array` is concatenated along."""
        if self.flatten or not array.dims:
            return self.primary_dimension
        return array.dims[0]


def plan_from_schema(schema: dict[str, Any]) -> list[GroupPlan]:
    """The merge plan of a schema dict (`SchemaBuilder.build` output)."""
    plans = []
    for name, group in schema.get("groups", {}).items():
        _check_node_name(name, "group")
        arrays = []
        for array, spec in group.get("arrays", {}).items():
            _check_node_name(array, f"array of group {name!r}")
            dims = spec.get("dims", spec.get("dimensions"))
            rules = {k: spec[k] for k in ("min_value", "max_value", "values") if k in spec}
            arrays.append(
                ArrayPlan(
                    array, tuple(dims) if dims is not None else None, spec.get("dtype"), rules
                )
            )
        plans.append(
            GroupPlan(
                name,
                str(group.get("primary_dimension", name)),
                tuple(arrays),
                group.get("special_processing") == "matrix_flattening",
            )
        )
    return plans


def _check_node_name(name: object, what: str) -> None:
    """Refuse a schema name that is not one path segment (it becomes a Zarr node name)."""
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or any(c in name for c in "/\\\x00")
        or name.startswith("__")
    ):
        raise SchemaError(
            f"schema {what} name {name!r} cannot name a dataset node: use one segment without "
            "'/', '\\', NUL or a leading '__', and not '.' or '..'",
            key=str(name),
            got=name,
        )


def infer_plan(storage: OptStorage) -> list[GroupPlan]:
    """A plan from a store without a schema: each top-level group of arrays is a group.

    Arrays sharing the group's most common leading length are concatenated along
    ``<group>_row``; others along ``<array>_row``; scalars become one row per file. Arrays
    saved at the top level form the group ``data``.
    """
    groups: dict[str, dict[str, np.ndarray[Any, Any]]] = {}
    for key in storage.get_keys():
        value = storage.load_data(key)
        if isinstance(value, dict):
            members = {n: np.asarray(v) for n, v in value.items() if _is_numeric(v)}
            if members:
                groups[key] = members
        elif _is_numeric(value):
            groups.setdefault("data", {})[key] = np.asarray(value)
    plans = []
    for name, members in groups.items():
        lengths = Counter(a.shape[0] for a in members.values() if a.ndim)
        common = lengths.most_common(1)[0][0] if lengths else None
        primary = f"{name}_row"
        arrays = []
        for array_name, array in members.items():
            if array.ndim == 0:
                dims: tuple[str, ...] = (f"{name}_file",)
            else:
                lead = primary if array.shape[0] == common else f"{array_name}_row"
                dims = (lead, *(f"{array_name}_dim_{i}" for i in range(1, array.ndim)))
            arrays.append(ArrayPlan(array_name, dims, None))
        plans.append(GroupPlan(name, primary, tuple(arrays)))
    return plans


def _is_numeric(value: Any) -> bool:
    if isinstance(value, bool | int | float | np.generic):
        return True
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"


@dataclass(slots=True)
class PartResult:
    """What reading one file gave: its arrays and metadata, or why it was skipped."""

    index: int
    """Position of the file in the merge's input list."""
    source: str
    """The input as given."""
    stem: str
    """Its stem (the key of `file_id_codes`)."""
    arrays: dict[tuple[str, str], np.ndarray[Any, Any]] = field(default_factory=dict)
    """(group, array) -> data ready to append (cast and flattened)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """The store's metadata."""
    schema: dict[str, Any] = field(default_factory=dict)
    """The schema stored with the file (``{}`` when none)."""
    error: str | None = None
    """Why the file is not merged, or None."""
    nbytes: int = 0
    """Bytes of the arrays returned."""
    seconds: float = 0.0
    """Time spent reading it."""


def read_part(
    index: int,
    source: str,
    plan: list[GroupPlan] | None,
    storage_options: dict[str, Any] | None = None,
) -> PartResult:
    """Read file `source` following `plan` (the file's own schema, or inferred, when None).

    Never raises for a bad file: the error is returned in `PartResult.error` so that the
    merge can record it and go on.
    """
    began = time.perf_counter()
    result = PartResult(index, source, file_stem(source))
    try:
        with open_part(source, storage_options) as storage:
            result.metadata = storage.load_metadata()
            schema = result.metadata.get(SCHEMA_METADATA_KEY)
            result.schema = schema if isinstance(schema, dict) else {}
            if plan is None:
                plan = plan_from_schema(result.schema) if result.schema else infer_plan(storage)
            top_level = set(storage.get_keys())
            for group in plan:
                _read_group(storage, group, result, top_level)
            if plan and not result.arrays:
                raise InvalidValueError(
                    f"{source} holds none of the arrays of the groups {[g.name for g in plan]} "
                    f"(its keys: {storage.get_keys()[:10]})",
                    key=source,
                )
    except Exception as err:  # any failure of one file is recorded; the merge goes on
        result.arrays.clear()
        result.error = f"{type(err).__name__}: {err}"
    result.nbytes = sum(a.nbytes for a in result.arrays.values())
    result.seconds = time.perf_counter() - began
    return result


def open_part(source: str, storage_options: dict[str, Any] | None = None) -> OptStorage:
    """Open merge input `source` (an archive or a directory store), refusing one that is absent.

    Raises
    ------
    FileNotFoundError
        Neither the archive nor the store exists (`OptStorage` would create a new store).
    """
    path = store_path(source)
    location = parse_location(path, storage_options=storage_options)
    archive = location.sibling(location.name + ARCHIVE_SUFFIX)
    if not location.is_dir() and not archive.exists():
        raise FileNotFoundError(f"{source}: no such archive or store")
    return OptStorage(path, storage_options=storage_options)


def _read_group(
    storage: OptStorage, group: GroupPlan, result: PartResult, top_level: set[str]
) -> None:
    """Read `group`'s arrays: ``<group>/<array>`` (the whole group in one call) or ``<array>``."""
    stored = storage.load_data(group.name) if group.name in top_level else {}
    members = stored if isinstance(stored, dict) else {}
    found: dict[str, tuple[str, Any]] = {}
    for array in group.arrays:
        if array.name in members:
            found[array.name] = (f"{group.name}/{array.name}", members[array.name])
        elif array.name in top_level:
            found[array.name] = (array.name, storage.load_data(array.name))
    if not found:
        return  # the file has no data for this group: it contributes no rows
    lengths: dict[str, tuple[str, int]] = {}
    for array in group.arrays:
        if array.name not in found:
            raise InvalidValueError(
                f"{result.source}: group {group.name!r} has no array {array.name!r} "
                f"(looked for {group.name}/{array.name} and {array.name})",
                key=f"{group.name}/{array.name}",
            )
        key, value = found[array.name]
        data = _prepare(np.asarray(value), group, array, key)
        lead = group.leading_dimension(array)
        if lead in lengths and lengths[lead][1] != data.shape[0]:
            other, rows = lengths[lead]
            raise InvalidValueError(
                f"{key!r} has {data.shape[0]} rows along {lead!r} but {other!r} has {rows}",
                key=key,
            )
        lengths.setdefault(lead, (key, data.shape[0]))
        result.arrays[(group.name, array.name)] = data


def _prepare(
    data: np.ndarray[Any, Any], group: GroupPlan, array: ArrayPlan, key: str
) -> np.ndarray[Any, Any]:
    """`data` checked against `array`'s declaration, cast, flattened and at least 1-d."""
    if data.dtype.kind not in "biuf":
        raise InvalidValueError(
            f"{key!r} holds {data.dtype} values; the merge takes numbers", key=key
        )
    declared = len(array.dims) if array.dims is not None else None
    if data.ndim == 0 and declared in (None, 1):
        data = data.reshape(1)
    elif declared is not None and data.ndim != declared:
        raise InvalidValueError(
            f"{key!r} has {data.ndim} dimension(s) (shape {data.shape}); the schema declares "
            f"{declared} {list(array.dims or ())}",
            key=key,
            expected=declared,
            got=data.ndim,
        )
    if group.flatten:
        if data.ndim < 2 or data.shape[0] != data.shape[1]:
            raise InvalidValueError(
                f"{key!r} has shape {data.shape}; group {group.name!r} flattens n x n x ... matrices",
                key=key,
            )
        data = data.reshape(data.shape[0] * data.shape[1], *data.shape[2:])
    if array.dtype is not None:
        data = cast_keeping_values(data, np.dtype(array.dtype), key)
    broken = check_rules(array.rules, data)
    if broken is not None:
        raise InvalidValueError(f"{key!r} breaks its schema rules: {broken}", key=key)
    return data


def cast_keeping_values(
    data: np.ndarray[Any, Any], want: np.dtype[Any], key: str
) -> np.ndarray[Any, Any]:
    """`data` as `want` when the cast keeps every value (int64 -> int32 in range passes).

    Safe casts always pass; integers narrow when every value fits; floats narrow when no
    finite value overflows; integers become floats when every value is exact there.
    """
    if data.dtype == want:
        return data
    if np.can_cast(data.dtype, want, casting="safe"):
        return data.astype(want)
    kinds = data.dtype.kind + want.kind
    fits = False
    if kinds in ("ii", "iu", "ui", "uu") and data.size:
        info = np.iinfo(want)
        fits = bool(info.min <= data.min() and data.max() <= info.max)
    elif kinds in ("ii", "iu", "ui", "uu"):
        fits = True
    elif kinds == "ff":
        with np.errstate(over="ignore"):
            cast = data.astype(want)
        fits = bool(np.array_equal(np.isfinite(cast), np.isfinite(data)))
        if fits:
            return cast
    elif kinds in ("if", "uf"):
        cast = data.astype(want)
        fits = bool(np.array_equal(cast.astype(data.dtype), data))
        if fits:
            return cast
    if not fits:
        raise InvalidValueError(
            f"{key!r} is {data.dtype}; the schema declares {want} and the values do not all "
            f"convert to it unchanged",
            key=key,
            expected=str(want),
            got=str(data.dtype),
        )
    return data.astype(want)
