"""The `DataStorage` contract (seeds 000 and 001) and the logic every backend shares.

The public methods validate their arguments once (keys, values, open/read-only state, the
schema) and then call a few private hooks that each backend implements: `_kind_at`,
`_write_node`, `_read_node`, `_delete_node`, `_top_level_names`, `_get_file_path`,
`_close`. Metadata lives in one nested dict held here, in its JSON form; backends persist it
in `_metadata_changed`.
"""

from __future__ import annotations

import copy
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np

from holdall._core.closing import Closing
from holdall._core.jsoncodec import TAG, from_json, to_json
from holdall._core.keys import parse_key
from holdall._core.values import Group, Leaf, Node, encode_value
from holdall.errors import (
    ClosedStorageError,
    InvalidKeyError,
    KeyNotFoundError,
    ReadOnlyStorageError,
    SchemaError,
)
from holdall.schema._rules import (
    check_rules,
    metadata_block,
    metadata_definition,
    metadata_problem,
    route_metadata,
)

__all__ = [
    "ROUTING_METADATA_KEY",
    "SCHEMA_METADATA_KEY",
    "SIZES_METADATA_KEY",
    "DataStorage",
    "LeafSizes",
]

#: Metadata key under which `set_schema` stores the schema (seed 001).
SCHEMA_METADATA_KEY = "_storage_schema"
#: Metadata section recording where each metadata field is routed (``file_level``/``categorical``).
ROUTING_METADATA_KEY = "_metadata_routing"
#: Metadata section where the stored size of every data key is tracked, in KiB (seed 001).
SIZES_METADATA_KEY = "file_sizes_KB"

#: Stored bytes of each leaf written by one save, by path relative to the saved key.
LeafSizes = dict[tuple[str, ...], int]

NodeKind = Literal["group", "leaf"]


class DataStorage(Closing, ABC):
    """Abstract store of data (arrays, scalars, strings, lists, nested dicts) and metadata.

    Keys are ``/``-separated paths (``"faces/areas"``); a dict value becomes a group whose
    items are reachable as ``"key/item"``. Every value comes back exactly as saved: dtype,
    shape, byte order, and the Python type of scalars and lists. Metadata is a separate nested
    dict: ``save_metadata("a/b", v)`` merges into section ``a`` rather than replacing it.

    Missing keys raise `KeyNotFoundError` (also a `KeyError`); malformed keys
    `InvalidKeyError`; unsupported values `UnsupportedTypeError`; any use after `close`
    `ClosedStorageError`; writes to a read-only store `ReadOnlyStorageError`.
    """

    #: Whether float data holding NaN is refused (`InvalidValueError`) by this backend.
    rejects_nan: bool = False
    #: Whether the backend keeps saved arrays as they are (so they must be copied on save).
    keeps_arrays: bool = False
    #: Saved arrays above this many bytes are scanned for NaN by the backend itself while it
    #: encodes them (`encode_value`'s ``defer_nan_above``); None scans every value up front.
    nan_scan_deferred_above: int | None = None
    #: Whether writes that violate the schema are refused (``set_schema(..., strict=True)``).
    _schema_strict: bool = False

    def __init__(self, *, read_only: bool = False) -> None:
        self._read_only = read_only
        self._closed = False
        self._lock = threading.RLock()
        self._metadata: dict[str, Any] = {}

    # ----------------------------------------------------------------- lifecycle

    @property
    def read_only(self) -> bool:
        """True when writes raise `ReadOnlyStorageError` (for example an opened archive)."""
        return self._read_only

    @property
    def closed(self) -> bool:
        """True once `close` has run."""
        return self._closed

    def close(self) -> None:
        """Release the store. Idempotent and safe to call from several threads at once."""
        with self._lock:
            if self._closed:
                return
            try:
                self._close()
            finally:
                self._closed = True

    @abstractmethod
    def format(self) -> str:
        """The storage format identifier: ``"zarr"``, ``"memory"`` or ``"json"``."""

    def compress_store(self) -> int:
        """Pack the store into one compressed file and return its size in bytes.

        Backends without compression return 0 (seed 001).
        """
        self._check_open()
        return 0

    def get_file_path(self, data_key: str) -> str:
        """The path where `data_key` is (or would be) stored, or a description for memory."""
        self._check_open()
        if data_key == "":
            return self._get_file_path(())
        return self._get_file_path(parse_key(data_key))

    # ----------------------------------------------------------------- data

    def save_data(self, data_key: str, data: Any) -> None:
        """Store `data` under `data_key`, replacing what was there, and record its size.

        Raises
        ------
        InvalidKeyError
            The key is malformed, or a prefix of it holds a value rather than a group.
        UnsupportedTypeError
            `data` (or something inside it) is not a storable type.
        InvalidValueError
            NaN on a backend that refuses it, or an int beyond 64 bits.
        SchemaError
            A schema was set with ``strict=True`` and `data` violates it.
        """
        with self._lock:
            parts = self._writable_key(data_key)
            node = encode_value(
                data,
                key=data_key,
                reject_nan=self.rejects_nan,
                copy=self.keeps_arrays,
                defer_nan_above=self.nan_scan_deferred_above,
            )
            self._check_against_schema(data_key, node)
            for depth in range(1, len(parts)):
                if self._kind_at(parts[:depth]) == "leaf":
                    prefix = "/".join(parts[:depth])
                    raise InvalidKeyError(
                        f"cannot save {data_key!r}: {prefix!r} holds a value, not a group; "
                        f"delete {prefix!r} first or choose another key",
                        key=data_key,
                    )
            sizes = self._write_node(parts, node)
            self._set_sizes(parts, sizes)

    def load_data(self, data_key: str) -> Any:
        """Return the value stored under `data_key`; a group comes back as a nested dict."""
        with self._lock:
            self._check_open()
            parts = self._key(data_key)
            if self._kind_at(parts) is None:
                raise self._missing(data_key)
            return self._read_node(parts)

    def delete_data(self, data_key: str) -> None:
        """Remove `data_key` (and everything below it) and its size record."""
        with self._lock:
            parts = self._writable_key(data_key)
            if self._kind_at(parts) is None:
                raise self._missing(data_key)
            self._delete_node(parts)
            self._drop_metadata((SIZES_METADATA_KEY, *parts))

    def get_keys(self) -> list[str]:
        """The top-level data keys (arrays, values and groups), sorted."""
        with self._lock:
            self._check_open()
            return sorted(self._top_level_names())

    def __contains__(self, data_key: object) -> bool:
        with self._lock:
            self._check_open()
            return self._kind_at(self._key(data_key)) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.get_keys())

    def __len__(self) -> int:
        return len(self.get_keys())

    # ----------------------------------------------------------------- metadata

    def save_metadata(self, key: str, value: Any) -> None:
        """Set metadata `key` to `value`, merging dicts into existing sections.

        ``save_metadata("processing/duration", 12.5)`` creates or extends the section
        ``processing``. Values may be bool, int, float, str, None, bytes, lists, tuples, numpy
        arrays and scalars, and dicts of these.
        """
        with self._lock:
            parts = self._writable_key(key, what="metadata key")
            encoded = to_json(value, key=key)
            routes = self._route_metadata(key, value)
            section = self._metadata_section(parts[:-1], create=True, key=key)
            existing = section.get(parts[-1])
            if isinstance(existing, dict) and _is_section(existing) and _is_section(encoded):
                _deep_merge(existing, encoded)
            else:
                section[parts[-1]] = encoded
            if routes:
                self._metadata.setdefault(ROUTING_METADATA_KEY, {}).update(routes)
            self._metadata_changed()

    def load_metadata(self, key: str | None = None) -> Any:
        """Return metadata `key` (a value, or a dict for a section); all metadata when None."""
        with self._lock:
            self._check_open()
            if key is None:
                return from_json(copy.deepcopy(self._metadata))
            parts = self._key(key, what="metadata key")
            node: Any = self._metadata
            for depth, part in enumerate(parts):
                if not _is_section(node) or part not in node:
                    found = "/".join(parts[:depth]) or "the top level"
                    available = sorted(node) if _is_section(node) else []
                    raise KeyNotFoundError(
                        f"metadata key {key!r} not found in {self!r}: no {part!r} in "
                        f"{found} (available there: {available})",
                        key=key,
                    )
                node = node[part]
            return from_json(copy.deepcopy(node))

    # ----------------------------------------------------------------- schema

    def set_schema(self, schema: dict[str, Any], *, strict: bool = False) -> None:
        """Attach a schema dict (from `SchemaBuilder.build()`), kept in metadata ``_storage_schema``.

        From then on `save_metadata` routes each field to file-level or categorical (explicit
        definition, then case-insensitive pattern, then type default) and records the route
        under ``_metadata_routing``, for the merge. By default data and metadata are saved as
        given (seed 001: a store "may validate"; call `validate_data_against_schema` to check).
        With ``strict=True`` `save_data` and `save_metadata` refuse what violates the schema
        (`SchemaError`); strictness lasts while this object is open.
        """
        if not isinstance(schema, dict):
            raise SchemaError(
                f"schema must be a dict as built by SchemaBuilder.build(), got {type(schema).__name__}",
                expected="dict",
                got=type(schema),
            )
        groups = schema.get("groups", {})
        if not isinstance(groups, dict) or not all(
            isinstance(group, dict) and isinstance(group.get("arrays", {}), dict)
            for group in groups.values()
        ):
            raise SchemaError(
                "schema['groups'] must map group names to dicts with an 'arrays' dict",
                expected="{'groups': {name: {'arrays': {...}}}}",
                got=groups,
            )
        with self._lock:
            self._ensure_writable()
            self._metadata[SCHEMA_METADATA_KEY] = to_json(schema, key=SCHEMA_METADATA_KEY)
            self._schema_strict = bool(strict)
            self._metadata_changed()

    def get_schema(self) -> dict[str, Any]:
        """The schema set on this store, or ``{}`` when none is."""
        with self._lock:
            self._check_open()
            if SCHEMA_METADATA_KEY not in self._metadata:
                return {}
            schema: dict[str, Any] = from_json(copy.deepcopy(self._metadata[SCHEMA_METADATA_KEY]))
            return schema

    def get_group_for_array(self, array_name: str) -> str | None:
        """The schema group declaring `array_name`, or None when no group declares it."""
        found = self._array_spec(array_name)
        return found[0] if found else None

    def validate_data_against_schema(self, data_key: str, data: Any) -> bool:
        """True when `data` fits the schema's declaration of `data_key` (or nothing declares it).

        Checks the number of dimensions, the dtype (equal to the declared one or safely
        castable to it within the same kind: int16 to int32 passes, int32 to float32 does not,
        as the seed's own example expects) and the declared rules (``min_value``,
        ``max_value``, ``values``).
        """
        return self._schema_violation(data_key, data) is None

    # ----------------------------------------------------------------- shared helpers

    def _array_spec(self, data_key: str) -> tuple[str, dict[str, Any]] | None:
        """(group name, array spec) declaring `data_key` or its last segment, if any."""
        schema = self.get_schema()
        name = data_key.rsplit("/", 1)[-1]
        for group_name, group in schema.get("groups", {}).items():
            arrays = group.get("arrays", {})
            for candidate in (data_key, name):
                if candidate in arrays:
                    return group_name, arrays[candidate]
        return None

    def _schema_violation(self, data_key: str, data: Any) -> str | None:
        found = self._array_spec(data_key)
        if found is None:
            return None
        group_name, spec = found
        array = np.asarray(data)
        dims = spec.get("dims", spec.get("dimensions"))
        if dims is not None and array.ndim != len(dims):
            return (
                f"schema group {group_name!r} declares {data_key!r} with {len(dims)} dimension(s) "
                f"{list(dims)}, got an array with {array.ndim} (shape {array.shape})"
            )
        declared = spec.get("dtype")
        if declared is not None:
            want = np.dtype(declared)
            got = array.dtype
            same_kind = got.kind == want.kind or (got.kind == "b" and want.kind == "b")
            if got != want and not (same_kind and np.can_cast(got, want, casting="safe")):
                return (
                    f"schema group {group_name!r} declares {data_key!r} as {want}, "
                    f"got {got} which does not convert safely"
                )
        broken = check_rules(spec, array)
        if broken is not None:
            return f"schema group {group_name!r} declares rules for {data_key!r}: {broken}"
        return None

    def _check_against_schema(self, data_key: str, node: Node) -> None:
        if (
            not self._schema_strict
            or not isinstance(node, Leaf)
            or node.kind != "array"
            or SCHEMA_METADATA_KEY not in self._metadata
        ):
            return
        problem = self._schema_violation(data_key, node.array)
        if problem is not None:
            raise SchemaError(f"cannot save {data_key!r}: {problem}", key=data_key)

    def _route_metadata(self, key: str, value: Any) -> dict[str, str]:
        """The route of every field `value` sets; refuses violations in strict mode."""
        routes: dict[str, str] = {}
        if SCHEMA_METADATA_KEY not in self._metadata or key.split("/", 1)[0] in (
            SCHEMA_METADATA_KEY,
            ROUTING_METADATA_KEY,
            SIZES_METADATA_KEY,
        ):
            return routes
        block = metadata_block(self.get_schema())
        for name, leaf in _metadata_leaves(key, value):
            defined = metadata_definition(block, name)
            problem = None if defined is None else metadata_problem(defined[1], leaf)
            if problem is not None and self._schema_strict:
                raise SchemaError(f"cannot save metadata {name!r}: {problem}", key=name, got=leaf)
            routes[name] = route_metadata(block, name, leaf)
        return routes

    def _set_sizes(self, parts: tuple[str, ...], sizes: LeafSizes) -> None:
        """Replace the size record of `parts` with the stored KiB of each leaf written."""
        self._drop_metadata((SIZES_METADATA_KEY, *parts), notify=False)
        for relative, nbytes in sizes.items():
            full = (SIZES_METADATA_KEY, *parts, *relative)
            section = self._metadata_section(
                full[:-1], create=True, key="/".join(full), replace=True
            )
            section[full[-1]] = round(nbytes / 1024, 3)
        self._metadata_changed()

    def _drop_metadata(self, parts: tuple[str, ...], *, notify: bool = True) -> None:
        node: Any = self._metadata
        for part in parts[:-1]:
            if not _is_section(node) or part not in node:
                return
            node = node[part]
        if _is_section(node) and parts[-1] in node:
            del node[parts[-1]]
            if notify:
                self._metadata_changed()

    def _metadata_section(
        self, parts: tuple[str, ...], *, create: bool, key: str, replace: bool = False
    ) -> dict[str, Any]:
        node = self._metadata
        for depth, part in enumerate(parts):
            child: Any = node.get(part)
            if child is None and create:
                child = node[part] = {}
            elif not _is_section(child):
                if not replace:
                    holder = "/".join(parts[: depth + 1])
                    raise InvalidKeyError(
                        f"cannot set metadata {key!r}: {holder!r} holds a value, not a section",
                        key=key,
                    )
                child = node[part] = {}
            node = child
        return node

    def _key(self, key: object, *, what: str = "key") -> tuple[str, ...]:
        return parse_key(key, what=what)

    def _writable_key(self, key: object, *, what: str = "key") -> tuple[str, ...]:
        parts = self._key(key, what=what)
        self._ensure_writable()
        return parts

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedStorageError(f"{self!r} is closed; open it again to use it")

    def _ensure_writable(self) -> None:
        self._check_open()
        if self._read_only:
            raise ReadOnlyStorageError(
                f"{self!r} is read-only; writes, deletes and schema changes are refused",
                path=self._describe(),
            )

    def _missing(self, data_key: str) -> KeyNotFoundError:
        return KeyNotFoundError(
            f"data key {data_key!r} not found in {self!r} (top-level keys: {self.get_keys()[:20]})",
            key=data_key,
        )

    def __repr__(self) -> str:
        state = " closed" if self._closed else (" read-only" if self._read_only else "")
        return f"<{type(self).__name__} {self._describe()}{state}>"

    # ----------------------------------------------------------------- backend hooks

    @abstractmethod
    def _describe(self) -> str:
        """Where the store is, for messages and repr."""

    @abstractmethod
    def _kind_at(self, parts: tuple[str, ...]) -> NodeKind | None:
        """``"group"``, ``"leaf"`` or None (nothing) at `parts`."""

    @abstractmethod
    def _write_node(self, parts: tuple[str, ...], node: Node) -> LeafSizes:
        """Replace whatever is at `parts` by `node`, creating parent groups; return leaf sizes."""

    @abstractmethod
    def _read_node(self, parts: tuple[str, ...]) -> Any:
        """Rebuild the value at `parts` (known to exist)."""

    @abstractmethod
    def _delete_node(self, parts: tuple[str, ...]) -> None:
        """Remove what is at `parts` (known to exist)."""

    @abstractmethod
    def _top_level_names(self) -> list[str]:
        """Names of the root's children."""

    @abstractmethod
    def _get_file_path(self, parts: tuple[str, ...]) -> str:
        """`get_file_path` for validated `parts` (empty for the root)."""

    def _metadata_changed(self) -> None:
        """Called after every metadata change; persistent backends save or schedule a save."""

    def _close(self) -> None:
        """Release backend resources (called once, under the lock)."""


def _metadata_leaves(key: str, value: Any) -> Iterator[tuple[str, Any]]:
    """(``a/b`` name, value) of each leaf of a metadata value saved under `key`."""
    if isinstance(value, dict) and value:
        for name, item in value.items():
            yield from _metadata_leaves(f"{key}/{name}", item)
    else:
        yield key, value


def _is_section(value: Any) -> bool:
    """True for a metadata dict that is a section (not a tagged value)."""
    return isinstance(value, dict) and TAG not in value


def _deep_merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for name, value in new.items():
        if _is_section(into.get(name)) and _is_section(value):
            _deep_merge(into[name], value)
        else:
            into[name] = value


def leaf_sizes(node: Node, nbytes_of: Any, prefix: tuple[str, ...] = ()) -> LeafSizes:
    """Sizes of every leaf of `node` computed by ``nbytes_of(leaf)``, keyed by relative path."""
    if isinstance(node, Group):
        sizes: LeafSizes = {}
        for name, child in node.children.items():
            sizes.update(leaf_sizes(child, nbytes_of, (*prefix, name)))
        return sizes
    return {prefix: int(nbytes_of(node))}
