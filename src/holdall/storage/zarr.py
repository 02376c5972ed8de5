"""`OptStorage`: the production backend, Zarr (format 3 by default, 2 on request) (seeds 000, 001).

Life of a store::

    OptStorage("part_001.zarr")     a directory store, writable
      save_data / save_metadata     small arrays are encoded and kept in memory, large ones
                                    stream chunk by chunk into the directory
      compress_store()              packs everything into part_001.zarr.data (atomic)
      close()                       writes companions (stream_cache/, files_summary/) and
                                    removes the directory once the archive holds everything
    OptStorage("part_001.zarr")     archive exists, directory does not: read-only

Arrays are encoded directly with numcodecs into standard Zarr documents and chunks
(`holdall.storage._zarr_codecs`), so a small store costs a few milliseconds instead of
zarr-python's ~5 ms per array. The root ``zarr.json`` carries consolidated metadata, so
opening an archive reads one document. `flush` makes everything durable in the directory;
`close` calls it when no archive was made.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from holdall._core.locations import parse_location
from holdall._core.values import Group, Leaf, Node, decode_node
from holdall.errors import (
    CorruptedFileError,
    HoldallWarning,
    InvalidKeyError,
    InvalidValueError,
    UnsupportedTypeError,
)
from holdall.storage._archive import ArchiveReader, read_blocks, write_archive
from holdall.storage._zarr_codecs import (
    DEFAULT_CHUNK_BYTES,
    ArraySpec,
    Compression,
    ZarrFormat,
    array_documents,
    decode_array,
    encode_array,
    group_documents,
    new_spec,
    parse_array_document,
)
from holdall.storage.base import DataStorage, LeafSizes, NodeKind

__all__ = ["OptStorage"]

METADATA_FILE = "metadata.json"
#: Names a key segment may not take: they are Zarr's or holdall's own files.
_RESERVED = frozenset({"zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata", METADATA_FILE})
_DOC_NAMES = ("zarr.json", ".zarray", ".zgroup", ".zattrs")
#: Arrays up to this many bytes are buffered in memory until flush/compress (one chunk each).
_BUFFER_ARRAY_BYTES = 1024 * 1024
#: Total buffered bytes before the buffer is flushed to the directory.
_BUFFER_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What `OptStorage.inspect` reports about one array or group."""

    path: str
    """Key of the node."""
    node_type: str
    """``"array"`` or ``"group"``."""
    kind: str
    """holdall value kind (``array``, ``int``, ``list``...) or ``group``."""
    shape: tuple[int, ...] | None = None
    """Array shape."""
    dtype: str | None = None
    """Array dtype."""
    codec: str = ""
    """Filters and compressor, for example ``delta>blosc(zstd:1,bitshuffle)``."""
    stored_bytes: int = 0
    """Bytes of its chunks and metadata documents as stored (`chunk_bytes` + `document_bytes`)."""
    nbytes: int = 0
    """Bytes of the data uncompressed."""
    chunk_bytes: int = 0
    """Bytes of its chunks as stored (what the compression ratio compares with `nbytes`)."""
    document_bytes: int = 0
    """Bytes of its Zarr metadata documents."""


@dataclass(slots=True)
class _Node:
    """One group or array of the hierarchy, with its metadata documents."""

    node_type: str
    """``"group"`` or ``"array"``."""
    documents: dict[str, bytes]
    """Serialized metadata files by name (``zarr.json`` or ``.zarray``/``.zattrs``/``.zgroup``)."""
    attributes: dict[str, Any] = field(default_factory=dict)
    """Node attributes; holdall's own live under ``"holdall"``."""
    spec: ArraySpec | None = None
    """The array layout, parsed on first read."""
    parsed_documents: dict[str, Any] | None = None
    """`documents` parsed, filled on first use (or at creation)."""

    @property
    def holdall(self) -> dict[str, Any]:
        """holdall's attributes (value kind, original dtype)."""
        value = self.attributes.get("holdall", {})
        return value if isinstance(value, dict) else {}

    def parsed(self) -> dict[str, Any]:
        """The parsed metadata documents (parsed once, then kept)."""
        if self.parsed_documents is None:
            self.parsed_documents = {
                name: json.loads(data) for name, data in self.documents.items()
            }
        return self.parsed_documents


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


class OptStorage(DataStorage):
    """Zarr storage in a directory while writing, packed into one archive by `compress_store`.

    Parameters
    ----------
    store_path
        The Zarr directory: a local path or an fsspec URL (``s3://bucket/prefix/part.zarr``).
    compress_extension
        Suffix of the archive written next to it (``part.zarr.data``).
    zarr_format
        3 (default) or 2, for new stores; an existing store keeps its format.
    compression
        ``"default"`` (Blosc-Zstd with shuffle, delta on integers: chosen by measurement, see
        docs/benchmarks.md), ``"zstd12"`` (the seeds' Zstd level 12) or ``"none"``.
    chunk_bytes
        Target uncompressed size of a chunk.
    allow_nan
        Keep NaN in float arrays instead of raising `InvalidValueError`.
    fsync
        Flush files to stable storage before renaming them (power-loss durability; atomic
        replace is always on).
    storage_options
        fsspec options for remote URLs (credentials, ``client_kwargs={"endpoint_url": ...}``).
    """

    def __init__(
        self,
        store_path: str | os.PathLike[str],
        compress_extension: str = ".data",
        *,
        zarr_format: ZarrFormat = 3,
        compression: Compression = "default",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        allow_nan: bool = False,
        fsync: bool = False,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if zarr_format not in (2, 3):
            raise InvalidValueError(
                f"zarr_format must be 2 or 3, got {zarr_format!r}", expected=(2, 3), got=zarr_format
            )
        if compression not in ("default", "zstd12", "none"):
            raise InvalidValueError(
                f"compression must be 'default', 'zstd12' or 'none', got {compression!r}",
                got=compression,
            )
        if not isinstance(chunk_bytes, int) or chunk_bytes < 1:
            raise InvalidValueError(
                f"chunk_bytes must be a positive int, got {chunk_bytes!r}", got=chunk_bytes
            )
        self.rejects_nan = not allow_nan
        self._location = parse_location(store_path, storage_options=storage_options)
        self._archive_location = self._location.sibling(self._location.name + compress_extension)
        self._compression: Compression = compression
        self._chunk_target = chunk_bytes
        self._fsync = fsync
        self._zarr_format: ZarrFormat = zarr_format
        self._nodes: dict[str, _Node] = {}
        self._pending: dict[str, bytes] = {}
        self._pending_bytes = 0
        self._stale_documents: set[str] = set()
        self._archive: ArchiveReader | None = None
        self._generation = 0
        self._packed_generation: int | None = None
        self._open()

    # ----------------------------------------------------------------- opening

    def _open(self) -> None:
        directory_exists = self._location.is_dir()
        archive_exists = self._archive_location.exists()
        if archive_exists and (not directory_exists or not self._directory_complete()):
            if directory_exists:
                warnings.warn(
                    f"{self._location.url} is an unfinished working directory (the process that "
                    f"wrote it stopped before close()); opening the complete archive "
                    f"{self._archive_location.url} read-only instead",
                    HoldallWarning,
                    stacklevel=3,
                )
            self._read_only = True
            self._archive = ArchiveReader(self._archive_location)
            self._load_index(self._archive.names(), self._archive.read, consolidated=True)
            return
        if directory_exists:
            files = dict(self._location.list_files())
            if not self._directory_complete():
                warnings.warn(
                    f"{self._location.url} was not closed cleanly: values saved after its last "
                    "flush() may be missing",
                    HoldallWarning,
                    stacklevel=3,
                )
            self._load_index(set(files), self._read_directory_file, consolidated=False)
            return
        if self._location.is_local:
            os.makedirs(self._location.url, exist_ok=True)
        self._nodes[""] = self._group_node({})
        self._stale_documents.add("")

    def _directory_complete(self) -> bool:
        return any(self._location.child(name).exists() for name in ("zarr.json", ".zgroup"))

    def _read_directory_file(self, name: str) -> bytes | None:
        try:
            return self._location.child(name).read_bytes()
        except FileNotFoundError:
            return None

    def _load_index(self, names: set[str], read: Any, *, consolidated: bool) -> None:
        """Build the node index from file `names`, reading documents with `read`."""
        root_v3 = read("zarr.json") if "zarr.json" in names else None
        if root_v3 is None and (".zgroup" in names or ".zarray" in names):
            self._zarr_format = 2
        if consolidated and root_v3 is not None:
            root_doc = _parse_json(root_v3, "zarr.json", self._describe())
            inline = root_doc.get("consolidated_metadata") or {}
            if inline.get("kind") == "inline":
                self._nodes[""] = self._node_from_documents({"zarr.json": root_v3})
                for path, doc in inline.get("metadata", {}).items():
                    self._nodes[path] = self._node_from_documents(
                        {"zarr.json": json.dumps(doc).encode()}
                    )
                self._load_metadata_file(read)
                return
        for name in sorted(names):
            folder, _, base = name.rpartition("/")
            if base == "zarr.json" or base in (".zarray", ".zgroup"):
                if folder in self._nodes:
                    continue
                documents = {}
                for doc_name in _DOC_NAMES:
                    candidate = _join(folder, doc_name)
                    if candidate in names:
                        data = read(candidate)
                        if data is not None:
                            documents[doc_name] = data
                self._nodes[folder] = self._node_from_documents(documents)
        if "" not in self._nodes:
            if self._nodes or not consolidated:
                # A hierarchy with no root document (a working directory before its first
                # flush): the root is an implicit group.
                self._nodes[""] = self._group_node({})
                self._stale_documents.add("")
            else:
                raise CorruptedFileError(
                    f"{self._describe()} holds no Zarr hierarchy (no zarr.json or .zgroup at its root)",
                    path=self._describe(),
                )
        self._load_metadata_file(read)

    def _load_metadata_file(self, read: Any) -> None:
        data = read(METADATA_FILE)
        if data is None:
            return
        loaded = _parse_json(data, METADATA_FILE, self._describe())
        if not isinstance(loaded, dict):
            raise CorruptedFileError(
                f"{self._describe()}/{METADATA_FILE} is not a JSON object", path=self._describe()
            )
        self._metadata = loaded

    def _node_from_documents(self, documents: dict[str, bytes]) -> _Node:
        where = self._describe()
        if "zarr.json" in documents:
            doc = _parse_json(documents["zarr.json"], "zarr.json", where)
            node_type = doc.get("node_type")
            attributes = doc.get("attributes", {})
        else:
            node_type = "array" if ".zarray" in documents else "group"
            attributes = (
                _parse_json(documents[".zattrs"], ".zattrs", where)
                if ".zattrs" in documents
                else {}
            )
        if node_type not in ("array", "group"):
            raise CorruptedFileError(
                f"{where}: node with unknown node_type {node_type!r}", path=where
            )
        return _Node(node_type=node_type, documents=documents, attributes=attributes)

    def _group_node(self, attributes: dict[str, Any]) -> _Node:
        return _Node("group", group_documents(attributes, self._zarr_format), attributes)

    # ----------------------------------------------------------------- hooks

    def format(self) -> str:
        # docstring inherited
        return "zarr"

    @property
    def zarr_format(self) -> ZarrFormat:
        """The Zarr format of this store (2 or 3)."""
        return self._zarr_format

    @property
    def archive_path(self) -> str:
        """Where `compress_store` writes (or wrote) the archive."""
        return self._archive_location.url

    def _describe(self) -> str:
        if self._archive is not None:
            return self._archive_location.url
        return self._location.url

    def _kind_at(self, parts: tuple[str, ...]) -> NodeKind | None:
        node = self._nodes.get("/".join(parts))
        if node is None:
            return None
        if node.node_type == "group" and node.holdall.get("kind") is None:
            return "group"
        return "leaf"

    def _validate_segments(self, parts: tuple[str, ...], key: str) -> None:
        for part in parts:
            if part in _RESERVED or part.startswith("__"):
                raise InvalidKeyError(
                    f"key {key!r} uses the reserved name {part!r} (Zarr and holdall files, and "
                    "names starting with '__', cannot be data keys in OptStorage)",
                    key=key,
                )

    def _write_node(self, parts: tuple[str, ...], node: Node) -> LeafSizes:
        path = "/".join(parts)
        self._validate_segments(parts, path)
        if path in self._nodes:
            self._delete_node(parts)
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent not in self._nodes:
                self._nodes[parent] = self._group_node({})
                self._stale_documents.add(parent)
        sizes: LeafSizes = {}
        self._write_tree(path, node, (), sizes)
        self._generation += 1
        if self._pending_bytes > _BUFFER_LIMIT:
            self._flush_pending()
        return sizes

    def _write_tree(
        self, path: str, node: Node, relative: tuple[str, ...], sizes: LeafSizes
    ) -> None:
        if isinstance(node, Group):
            self._add_node(path, self._group_node({}))
            for name, child in node.children.items():
                self._validate_segments((name,), _join(path, name))
                self._write_tree(_join(path, name), child, (*relative, name), sizes)
            return
        sizes[relative] = self._write_leaf(path, node)

    def _write_leaf(self, path: str, leaf: Leaf) -> int:
        """Store one leaf value at `path` and return the bytes it takes."""
        marker: dict[str, Any] = {"holdall": {"kind": leaf.kind}}
        if leaf.array is None:
            group = self._group_node(marker)
            self._add_node(path, group)
            total = sum(len(d) for d in group.documents.values())
            for index, item in enumerate(leaf.items):
                item_sizes: LeafSizes = {}
                self._write_tree(_join(path, str(index)), item, (), item_sizes)
                total += sum(item_sizes.values())
            return total
        array = leaf.array
        holdall_attrs: dict[str, Any] = {}
        if leaf.kind != "array":
            holdall_attrs["kind"] = leaf.kind
        if array.dtype.kind in "UO":
            holdall_attrs["dtype"] = array.dtype.str
        attributes = {"holdall": holdall_attrs} if holdall_attrs else {}
        spec = new_spec(
            array,
            zarr_format=self._zarr_format,
            compression=self._compression,
            chunk_bytes=self._chunk_target,
        )
        stem = path.replace("/", "_")
        documents = array_documents(
            spec,
            attributes=attributes,
            dimension_names=[f"{stem}_dim_{i}" for i in range(array.ndim)],
        )
        self._add_node(path, _Node("array", documents, attributes, spec))
        total = sum(len(d) for d in documents.values())
        buffer = array.nbytes <= _BUFFER_ARRAY_BYTES
        for chunk_key, data in encode_array(spec, array):
            name = f"{path}/{chunk_key}"
            if buffer:
                self._pending[name] = data
                self._pending_bytes += len(data)
            else:
                self._location.child(name).write_bytes(data, fsync=self._fsync)
            total += len(data)
        return total

    def _add_node(self, path: str, node: _Node) -> None:
        self._nodes[path] = node
        self._stale_documents.add(path)

    def _read_node(self, parts: tuple[str, ...]) -> Any:
        return decode_node(self._load_tree("/".join(parts)), copy=False)

    def _children(self, path: str) -> list[str]:
        prefix = f"{path}/" if path else ""
        return [
            p[len(prefix) :]
            for p in self._nodes
            if p.startswith(prefix) and p and "/" not in p[len(prefix) :]
        ]

    def _load_tree(self, path: str) -> Node:
        """The node tree stored at `path`, arrays read and decoded."""
        node = self._nodes[path]
        kind = node.holdall.get("kind")
        if node.node_type == "group":
            if kind is None:
                return Group(
                    {
                        name: self._load_tree(_join(path, name))
                        for name in sorted(self._children(path))
                    }
                )
            if kind == "none":
                return Leaf("none")
            names = sorted(self._children(path), key=int)
            return Leaf(kind, items=tuple(self._load_tree(_join(path, name)) for name in names))
        array = self._read_array(path, node)
        dtype = node.holdall.get("dtype")
        if dtype is not None and array.dtype != np.dtype(dtype):
            array = array.astype(dtype)
        return Leaf(kind or "array", array)

    def _read_array(self, path: str, node: _Node) -> np.ndarray[Any, Any]:
        if node.spec is None:
            node.spec = parse_array_document(node.parsed())
        if node.spec is None:
            return self._read_with_zarr(path)
        return decode_array(
            node.spec,
            lambda key: self._chunk_bytes(f"{path}/{key}"),
            path=f"{self._describe()}/{path}",
        )

    def _chunk_bytes(self, name: str) -> bytes | None:
        if name in self._pending:
            return self._pending[name]
        if self._archive is not None:
            return self._archive.read(name)
        return self._read_directory_file(name)

    def _read_with_zarr(self, path: str) -> np.ndarray[Any, Any]:
        """Read an array whose codecs only zarr-python knows (sharding, transposes...)."""
        import zarr
        from zarr.storage import LocalStore, ZipStore

        if not self._location.is_local:
            raise UnsupportedTypeError(
                f"array {path!r} in {self._describe()} uses codecs holdall does not decode itself, "
                "and zarr-python can only read it from a local path; download the store first",
                key=path,
            )
        store: Any
        if self._archive is not None:
            store = ZipStore(self._archive_location.url, mode="r")
        else:
            self._flush_pending()
            store = LocalStore(self._location.url, read_only=True)
        try:
            return np.asarray(
                zarr.open_array(store=store, path=path, mode="r", zarr_format=self._zarr_format)[
                    ...
                ]
            )
        finally:
            store.close()

    def _delete_node(self, parts: tuple[str, ...]) -> None:
        path = "/".join(parts)
        prefix = path + "/"
        for name in [p for p in self._nodes if p == path or p.startswith(prefix)]:
            del self._nodes[name]
            self._stale_documents.discard(name)
        for name in [p for p in self._pending if p.startswith(prefix)]:
            self._pending_bytes -= len(self._pending.pop(name))
        if self._archive is None:
            self._location.child(path).remove()
        self._generation += 1

    def _top_level_names(self) -> list[str]:
        return self._children("")

    def _get_file_path(self, parts: tuple[str, ...]) -> str:
        key = "/".join(parts)
        if self._archive is not None:
            return (
                f"zip://{key}::{self._archive_location.url}" if key else self._archive_location.url
            )
        return self._location.child(key).url if key else self._location.url

    def _metadata_changed(self) -> None:
        self._generation += 1

    def inspect(self) -> list[NodeInfo]:
        """Every node of the hierarchy with its shape, dtype, codecs and stored size."""
        with self._lock:
            self._check_open()
            owned: dict[str, int] = {}
            for name, size in self._stored_file_sizes().items():
                if name.rsplit("/", 1)[-1] in _DOC_NAMES:
                    continue
                owner = self._owner(name)
                owned[owner] = owned.get(owner, 0) + size
            infos = []
            for path, node in sorted(self._nodes.items()):
                if not path:
                    continue
                documents = sum(len(d) for d in node.documents.values())
                if node.node_type == "group":
                    kind = node.holdall.get("kind", "group")
                    infos.append(
                        NodeInfo(
                            path,
                            "group",
                            kind,
                            stored_bytes=documents,
                            document_bytes=documents,
                        )
                    )
                    continue
                if node.spec is None:
                    node.spec = parse_array_document(node.parsed())
                spec = node.spec
                own = owned.get(path, 0)
                if spec is None:
                    infos.append(
                        NodeInfo(
                            path,
                            "array",
                            "array",
                            codec="(zarr-python only)",
                            stored_bytes=own + documents,
                            chunk_bytes=own,
                            document_bytes=documents,
                        )
                    )
                    continue
                dtype = node.holdall.get("dtype", "str" if spec.is_string else spec.dtype.str)
                itemsize = np.dtype(dtype).itemsize if dtype != "str" else 0
                infos.append(
                    NodeInfo(
                        path,
                        "array",
                        node.holdall.get("kind", "array"),
                        shape=spec.shape,
                        dtype=str(np.dtype(dtype)) if dtype != "str" else "str",
                        codec=_codec_label(spec),
                        stored_bytes=own + documents,
                        nbytes=int(np.prod(spec.shape)) * itemsize,
                        chunk_bytes=own,
                        document_bytes=documents,
                    )
                )
            return infos

    def _owner(self, file_name: str) -> str:
        """The node path that a stored file belongs to."""
        folder = file_name.rpartition("/")[0]
        while folder and folder not in self._nodes:
            folder = folder.rpartition("/")[0]
        return folder

    def _stored_file_sizes(self) -> dict[str, int]:
        if self._archive is not None:
            return self._archive.sizes()
        sizes = dict(self._location.list_files()) if self._location.exists() else {}
        sizes.update({name: len(data) for name, data in self._pending.items()})
        for path, node in self._nodes.items():
            for name, data in node.documents.items():
                sizes[_join(path, name)] = len(data)
        return sizes

    # ----------------------------------------------------------------- flush, compress, close

    def flush(self) -> None:
        """Write buffered arrays, node documents and metadata into the directory store.

        After `flush` the directory is a complete Zarr store that zarr-python and xarray open.
        """
        with self._lock:
            self._ensure_writable()
            self._flush_pending()
            for path in sorted(self._stale_documents - {""}):
                node = self._nodes.get(path)
                if node is not None:
                    for name, data in node.documents.items():
                        self._location.child(_join(path, name)).write_bytes(data, fsync=self._fsync)
            self._stale_documents.clear()
            self._location.child(METADATA_FILE).write_bytes(
                self._metadata_bytes(), fsync=self._fsync
            )
            for name, data in self._root_documents().items():
                self._location.child(name).write_bytes(data, fsync=self._fsync)

    def _flush_pending(self) -> None:
        for name, data in self._pending.items():
            self._location.child(name).write_bytes(data, fsync=self._fsync)
        self._pending.clear()
        self._pending_bytes = 0

    def _metadata_bytes(self) -> bytes:
        return json.dumps(self._metadata, indent=2, allow_nan=False).encode()

    def _root_documents(self) -> dict[str, bytes]:
        """Root group documents with consolidated metadata of every node."""
        if self._zarr_format == 3:
            inline = {
                path: node.parsed()["zarr.json"]
                for path, node in sorted(self._nodes.items())
                if path
            }
            root = dict(self._nodes[""].parsed()["zarr.json"])
            root["consolidated_metadata"] = {
                "kind": "inline",
                "must_understand": False,
                "metadata": inline,
            }
            return {"zarr.json": json.dumps(root, allow_nan=False).encode()}
        consolidated: dict[str, Any] = {}
        for path, node in sorted(self._nodes.items()):
            for name, document in node.parsed().items():
                consolidated[_join(path, name)] = document
        documents = dict(self._nodes[""].documents)
        documents[".zmetadata"] = json.dumps(
            {"zarr_consolidated_format": 1, "metadata": consolidated}
        ).encode()
        return documents

    def compress_store(self) -> int:
        """Pack the whole store into ``<store_path><compress_extension>`` and return its size.

        The archive is written under a temporary name and renamed, so a crash leaves the
        previous archive (or none), never a partial one. The directory stays until `close`.
        """
        with self._lock:
            self._ensure_writable()
            size = write_archive(self._archive_location, self._archive_entries(), fsync=self._fsync)
            self._packed_generation = self._generation
            return size

    def _archive_entries(self) -> Iterator[tuple[str, bytes | Iterator[bytes]]]:
        for path, node in sorted(self._nodes.items()):
            if not path:
                continue
            for name, data in node.documents.items():
                yield _join(path, name), data
            if node.node_type == "array":
                yield from self._array_chunks(path, node)
        yield METADATA_FILE, self._metadata_bytes()
        yield from self._root_documents().items()

    def _array_chunks(
        self, path: str, node: _Node
    ) -> Iterator[tuple[str, bytes | Iterator[bytes]]]:
        if node.spec is None:
            node.spec = parse_array_document(node.parsed())
        if node.spec is None:
            # Foreign layout: copy whatever files the directory holds for it.
            for name, _size in self._location.child(path).list_files():
                if name.rsplit("/", 1)[-1] not in _DOC_NAMES:
                    yield f"{path}/{name}", read_blocks(self._location.child(f"{path}/{name}"))
            return
        for index in node.spec.chunk_indices():
            name = f"{path}/{node.spec.chunk_key(index)}"
            if name in self._pending:
                yield name, self._pending[name]
            else:
                chunk = self._location.child(name)
                if chunk.exists():
                    yield name, read_blocks(chunk)

    def _close(self) -> None:
        if self._archive is not None:
            self._archive.close()
            return
        if self._packed_generation is not None and self._packed_generation != self._generation:
            # Written to after compress_store(): re-pack so the archive holds everything.
            self.compress_store()
        self._write_companions()
        if self._packed_generation is not None:
            self._location.remove()
        else:
            self.flush()

    def _write_companions(self) -> None:
        """Seed 001's close(): copy ``visu*`` files to stream_cache/, export files_summary/."""
        stem = self._location.name.removesuffix(".zarr")
        parent = self._location.parent()
        summary = parent.child(f"files_summary/{stem}.json")
        summary.write_bytes(
            json.dumps(self._metadata, indent=2, allow_nan=False).encode(), fsync=self._fsync
        )
        if self._location.is_dir():
            for name, _size in self._location.list_files():
                if "/" not in name and name.startswith("visu"):
                    data = self._location.child(name).read_bytes()
                    parent.child(f"stream_cache/{stem}/{name}").write_bytes(data, fsync=self._fsync)


def _codec_label(spec: ArraySpec) -> str:
    steps = [codec.codec_id for codec in spec.filters]
    if spec.compressor is not None:
        config = spec.compressor.get_config()
        if config["id"] == "blosc":
            shuffle = {0: "noshuffle", 1: "shuffle", 2: "bitshuffle"}.get(config["shuffle"], "?")
            steps.append(f"blosc({config['cname']}:{config['clevel']},{shuffle})")
        elif "level" in config:
            steps.append(f"{config['id']}({config['level']})")
        else:
            steps.append(config["id"])
    return ">".join(steps) or "none"


def _parse_json(data: bytes, name: str, where: str) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptedFileError(
            f"{where}/{name} is not valid JSON: {err}", path=f"{where}/{name}"
        ) from err
