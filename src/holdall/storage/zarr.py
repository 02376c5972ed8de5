"""`OptStorage`: the production backend, Zarr (format 3 by default, 2 on request) (seeds 000, 001).

Life of a store::

    OptStorage("part_001.zarr")     a writer: it locks the folder part_001.zarr
      save_data / save_metadata     small arrays are encoded and kept in memory, large ones
                                    stream chunk by chunk into the private staging area
      flush()                       commits everything to the folder, crash-safely
      compress_store()              packs everything into part_001.zarr.data (atomic)
      close()                       commits or re-packs what is left, writes the companions
                                    (files_summary/, stream_cache/) and, after a compress,
                                    removes the files it wrote in the folder
    OptStorage("part_001.zarr")     the archive exists, the folder does not: read-only (seed)

Both the folder and the archive carry a generation number (in the root group's attributes),
raised by every commit and every pack, so after a crash the newest complete state wins.
Arrays are encoded directly with numcodecs into standard Zarr documents and chunks
(`holdall.storage._zarr_codecs`), each chunk with a CRC-32C; the root ``zarr.json`` carries
consolidated metadata, so opening an archive reads one document.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from holdall._core.closing import close_at_exit, close_quietly, forget_at_exit
from holdall._core.keys import check_name_lengths
from holdall._core.locations import parse_location
from holdall._core.owners import owner_tag
from holdall._core.values import Group, Leaf, Node, decode_node
from holdall.errors import (
    ArchiveExistsError,
    CorruptedFileError,
    HoldallWarning,
    InvalidKeyError,
    InvalidValueError,
    NotAStoreError,
    StoreNotFoundError,
    UnsupportedTypeError,
)
from holdall.storage._archive import ArchiveReader, EntryContent, write_archive
from holdall.storage._workdir import CONTROL, ROOT_STAGE, WorkingDirectory, safe_parent
from holdall.storage._zarr_codecs import (
    DEFAULT_CHUNK_BYTES,
    Compression,
    ZarrFormat,
    array_documents,
    decode_array,
    encode_array,
    group_documents,
    new_spec,
)
from holdall.storage._zarr_nodes import (
    DOC_NAMES,
    NodeInfo,
    Source,
    ZarrNode,
    describe,
    generation_of,
    join,
    load_index,
    parse_json,
    root_documents,
)
from holdall.storage.base import DataStorage, LeafSizes, NodeKind

__all__ = ["Mode", "NodeInfo", "OptStorage"]

#: How to open a store, as zarr and h5py users know it (see `OptStorage`).
Mode = Literal["r", "r+", "a", "w", "w-"]
METADATA_FILE = "metadata.json"
#: Names a key segment may not take: they are Zarr's or holdall's own files.
_RESERVED = frozenset(
    {"zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata", METADATA_FILE, CONTROL}
)
#: Arrays up to this many bytes are buffered in memory until a commit (one chunk each).
_BUFFER_ARRAY_BYTES = 1024 * 1024
#: Total buffered bytes before the buffer is moved to the staging area.
_BUFFER_LIMIT = 64 * 1024 * 1024
#: Bytes a path gains below a key (staging folder, chunk keys), checked with the key.
_PATH_MARGIN = len(f"/{CONTROL}/stage/") + 64
#: File names up to this many bytes fit every filesystem holdall runs on (NAME_MAX 255).
_SAFE_NAME_BYTES = 255
#: Paths up to this many bytes fit Linux's PATH_MAX (4096).
_SAFE_PATH_BYTES = 4096


class OptStorage(DataStorage):
    """Zarr storage in a folder while writing, packed into one archive by `compress_store`.

    Parameters
    ----------
    store_path
        The Zarr folder: a local path or an fsspec URL (``s3://bucket/prefix/part.zarr``).
    compress_extension
        Suffix of the archive written next to it (``part.zarr.data``).
    mode
        ``"a"`` (default, the seed's behaviour): open the folder to write, or create it; an
        archive without a folder opens read-only. ``"r"``: read only, the store must exist.
        ``"r+"``: write an existing store, an archive included (it is re-packed on close).
        ``"w"``: create, replacing a store or archive holdall wrote at this path. ``"w-"``:
        create, failing if anything is there.
    zarr_format
        3 or 2 for a new store (default 3). An existing store keeps its format; asking for
        the other one raises `InvalidValueError`.
    compression
        ``"default"`` (Blosc-LZ4 for small arrays; for large ones the fastest of Blosc-LZ4,
        Blosc-Zstd and Zstd within 3% of the best ratio on the first chunk: docs/benchmarks.md),
        ``"zstd12"`` (the seeds' Zstd level 12; add ``delta=True`` for their whole
        configuration) or ``"none"``.
    chunk_bytes
        Target uncompressed size of a chunk.
    allow_nan
        Keep NaN in float arrays instead of raising `InvalidValueError`.
    delta
        Put numcodecs' delta filter before the compressor of integer arrays. Outside the Zarr
        v3 core spec: zarr-python warns when it opens such arrays and tensorstore cannot.
    checksum
        End every v3 chunk with a CRC-32C (the core ``crc32c`` codec), verified on read.
    fsync
        Flush files to stable storage before renaming them (power-loss durability; atomic
        replace is always on).
    lock_timeout
        Seconds to wait for another process writing the same store before
        `StorageLockedError`.
    storage_options
        fsspec options for remote URLs (credentials, ``client_kwargs={"endpoint_url": ...}``).
    """

    # Large arrays are scanned for NaN chunk by chunk in the codec threads, in the pass that
    # compresses them (measured: a separate scan cost 10-15% of a 32 MiB write).
    nan_scan_deferred_above = _BUFFER_ARRAY_BYTES

    def __init__(
        self,
        store_path: str | os.PathLike[str],
        compress_extension: str = ".data",
        *,
        mode: Mode = "a",
        zarr_format: ZarrFormat | None = None,
        compression: Compression = "default",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        allow_nan: bool = False,
        delta: bool = False,
        checksum: bool = True,
        fsync: bool = False,
        lock_timeout: float = 30.0,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        _check_options(mode, zarr_format, compression, chunk_bytes)
        self.rejects_nan = not allow_nan
        self._mode: Mode = mode
        self._location = parse_location(store_path, storage_options=storage_options)
        self._archive_location = self._location.sibling(self._location.name + compress_extension)
        self._compression: Compression = compression
        self._chunk_target = chunk_bytes
        self._delta = delta
        self._checksum = checksum
        self._fsync = fsync
        self._lock_timeout = lock_timeout
        self._zarr_format: ZarrFormat = zarr_format or 3
        self._path_budget = (
            _SAFE_PATH_BYTES - len(os.path.abspath(self._location.url).encode()) - _PATH_MARGIN
            if self._location.is_local
            else _SAFE_PATH_BYTES
        )
        self._nodes: dict[str, ZarrNode] = {}
        self._pending: dict[str, bytes] = {}
        self._pending_bytes = 0
        self._committed: set[str] = set()
        self._dirty: set[str] = set()
        self._deleted: set[str] = set()
        self._metadata_dirty = False
        self._changes = 0
        self._packed_changes: int | None = None
        self._generation = 0
        self._archive: ArchiveReader | None = None
        self._backing: Literal["new", "directory", "archive"] = "new"
        self._workdir: WorkingDirectory | None = None
        self._created_folder = False
        self._emptied_folder = False
        self._saving = ""
        self._scratch: Path | None = None
        self._stage_root: Path | None = None
        self._open(zarr_format)
        self._opened = True
        if not self._read_only:
            close_at_exit(self)

    def __del__(self) -> None:
        if getattr(self, "_opened", False) and not self._closed:
            close_quietly(self, when="when it was garbage-collected")

    # ----------------------------------------------------------------- opening

    def _open(self, asked_format: ZarrFormat | None) -> None:
        if not self._location.is_local:
            self._open_remote()
        else:
            self._open_local()
        if (
            asked_format is not None
            and self._backing != "new"
            and asked_format != self._zarr_format
        ):
            self._release()
            raise InvalidValueError(
                f"{self._describe()} is a Zarr format {self._zarr_format} store; it cannot be "
                f"opened as format {asked_format} (holdall never mixes formats in one hierarchy). "
                "Omit zarr_format, or convert the store",
                expected=self._zarr_format,
                got=asked_format,
            )

    def _open_local(self) -> None:
        root = Path(self._location.url)
        self._workdir = WorkingDirectory(root, fsync=self._fsync)
        if self._archive_location.is_dir():
            raise NotAStoreError(
                f"{self._archive_location.url} is a folder where the store's archive belongs",
                path=self._archive_location.url,
            )
        archive_exists = self._archive_location.exists()
        folder_kind, _names = _folder_kind(root)
        if folder_kind == "foreign" and not archive_exists:
            # Refused before anything is locked or recovered: a crashed writer's cleanup would
            # empty the folder's .holdall/, which another holdall store (JSON) may own.
            raise self._not_a_store(root)
        if self._mode == "r" or (
            self._mode == "a" and archive_exists and folder_kind in ("missing", "empty")
        ):
            self._open_reader(root, archive_exists, folder_kind)
            return
        self._created_folder = self._workdir.lock(timeout_s=self._lock_timeout, create=True)
        try:
            self._workdir.recover()
            self._open_writer(root)
        except BaseException:
            self._release()
            raise

    def _open_reader(self, root: Path, archive_exists: bool, folder_kind: str) -> None:
        self._read_only = True
        assert self._workdir is not None
        if self._workdir.control.is_dir() and self._workdir.try_lock():
            # No writer holds the folder: finish or drop what a dead one left, as a writer would.
            try:
                self._workdir.recover()
            finally:
                self._workdir.unlock()
        folder_nodes, folder_format = (
            self._folder_index(root) if folder_kind == "zarr" else ({}, None)
        )
        archive_generation = self._archive_generation() if archive_exists else None
        folder_generation = generation_of(folder_nodes) or 0
        if folder_kind == "zarr" and (
            archive_generation is None or folder_generation > archive_generation
        ):
            self._close_archive()
            self._adopt(folder_nodes, folder_format, "live")
            self._backing = "directory"
            return
        if archive_generation is not None:
            self._backing = "archive"
            return
        if folder_kind == "foreign":
            raise self._not_a_store(root)
        raise StoreNotFoundError(
            f"no store at {self._location.url} (neither a Zarr folder nor an archive "
            f"{self._archive_location.url})",
            path=self._location.url,
        )

    def _open_writer(self, root: Path) -> None:
        assert self._workdir is not None
        folder_kind, _names = _folder_kind(root)
        archive_exists = self._archive_location.exists()
        if self._mode == "w-" and (folder_kind not in ("missing", "empty") or archive_exists):
            raise ArchiveExistsError(
                f"{self._location.url} already holds a store (mode 'w-' creates only); "
                "open it with mode 'a' or 'r+', or replace it with mode 'w'",
                path=self._location.url,
            )
        if self._mode == "w":
            self._replace_existing(root, folder_kind, archive_exists)
            return
        folder_nodes, folder_format = (
            self._folder_index(root) if folder_kind == "zarr" else ({}, None)
        )
        archive_generation = self._archive_generation() if archive_exists else None
        if folder_kind == "zarr" and (
            archive_generation is None or (generation_of(folder_nodes) or 0) > archive_generation
        ):
            self._close_archive()
            self._adopt(folder_nodes, folder_format, "live")
            self._committed = set(folder_nodes)
            self._backing = "directory"
            return
        if folder_kind == "foreign" and archive_generation is None:
            raise self._not_a_store(root)
        if archive_generation is not None:
            if folder_kind == "zarr":
                self._drop_superseded(root)
            if self._mode == "a":
                # The seed's behaviour: an archive without its working folder opens read-only.
                self._read_only = True
                self._release_lock_and_folder()
            else:
                self._backing = "archive"
            return
        if self._mode == "r+":
            raise StoreNotFoundError(
                f"no store at {self._location.url} to open with mode 'r+'; use mode 'a' to create it",
                path=self._location.url,
            )
        self._new_store()

    def _new_store(self) -> None:
        self._nodes[""] = self._group_node({})
        self._backing = "new"
        self._metadata_dirty = True

    def _replace_existing(self, root: Path, folder_kind: str, archive_exists: bool) -> None:
        assert self._workdir is not None
        if folder_kind == "foreign":
            raise self._not_a_store(root)
        if folder_kind == "zarr":
            nodes, _ = self._folder_index(root)
            if generation_of(nodes) is None:
                raise NotAStoreError(
                    f"mode 'w' would replace {root}, a Zarr store holdall did not write; "
                    "delete it yourself if that is what you want",
                    path=str(root),
                )
            self._drop_superseded(root, replacing=True)
        if archive_exists:
            if self._archive_generation() is None:
                raise NotAStoreError(
                    f"mode 'w' would replace {self._archive_location.url}, which holdall did not "
                    "write; delete it yourself if that is what you want",
                    path=self._archive_location.url,
                )
            self._close_archive()
            self._nodes.clear()
            self._archive_location.remove()
        self._new_store()

    def _drop_superseded(self, root: Path, *, replacing: bool = False) -> None:
        """Remove the Zarr files of a folder holdall wrote: one the archive superseded (a crashed
        writer's, with a warning), or the store mode ``"w"`` replaces."""
        assert self._workdir is not None
        kept = self._workdir.remove_owned(keep=lambda _path: False)
        self._workdir.root.mkdir(exist_ok=True)
        self._emptied_folder = True
        if replacing:
            return
        message = (
            f"{root} was the working folder of a writer that stopped before close(); the archive "
            f"{self._archive_location.url} is newer and complete, so holdall removed that folder's "
            "Zarr files"
        )
        if kept:
            message += (
                f" and kept {len(kept)} file(s) it did not write: {sorted(map(str, kept))[:5]}"
            )
        warnings.warn(message, HoldallWarning, stacklevel=5)

    def _not_a_store(self, root: Path) -> NotAStoreError:
        _kind, names = _folder_kind(root)
        if {"data", METADATA_FILE} <= set(names):
            hint = (
                "it looks like a JsonStorageHandler store; convert it with "
                f"`holdall convert {root} {root}.zarr --to zarr`"
            )
        else:
            hint = "choose another path or an empty folder"
        return NotAStoreError(
            f"{root} is not a Zarr store (no zarr.json, .zgroup or .zarray at its root; it holds "
            f"{sorted(names)[:8]}); holdall will not write into it: {hint}",
            path=str(root),
            found=sorted(names),
        )

    def _folder_index(self, root: Path) -> tuple[dict[str, ZarrNode], ZarrFormat | None]:
        names = {
            name
            for name, _size in self._location.list_files()
            if not name.startswith(f"{CONTROL}/")
        }

        def read(name: str) -> bytes | None:
            return _read_local(root / name)

        root_doc = read("zarr.json")
        trusted = root_doc is not None and b'"generation"' in root_doc
        return load_index(names, read, where=str(root), source="live", consolidated=trusted)

    def _archive_generation(self) -> int | None:
        """Open the archive and return its generation (None when holdall did not write it)."""
        if self._archive is None:
            self._archive = ArchiveReader(self._archive_location)
        nodes, archive_format = load_index(
            self._archive.names(),
            self._archive.read,
            where=self._archive_location.url,
            source="archive",
            consolidated=True,
        )
        if "" not in nodes:
            self._archive.close()
            self._archive = None
            raise CorruptedFileError(
                f"{self._archive_location.url} holds no Zarr hierarchy (no zarr.json or .zgroup "
                "at its root)",
                path=self._archive_location.url,
            )
        self._adopt(nodes, archive_format, "archive")
        self._metadata = self._read_metadata(self._archive.read)
        return generation_of(nodes) or 0

    def _close_archive(self) -> None:
        if self._archive is not None:
            self._archive.close()
            self._archive = None

    def _adopt(
        self, nodes: dict[str, ZarrNode], zarr_format: ZarrFormat | None, source: Source
    ) -> None:
        self._nodes = nodes
        if "" not in self._nodes:
            self._nodes[""] = self._group_node({})
        if zarr_format is not None:
            self._zarr_format = zarr_format
        self._generation = generation_of(nodes) or 0
        if source == "live":
            root = Path(self._location.url)
            self._metadata = self._read_metadata(lambda name: _read_local(root / name))

    def _read_metadata(self, read: Any) -> dict[str, Any]:
        data = read(METADATA_FILE)
        if data is None:
            return {}
        loaded = parse_json(data, f"{self._describe()}/{METADATA_FILE}")
        if not isinstance(loaded, dict):
            raise CorruptedFileError(
                f"{self._describe()}/{METADATA_FILE} is not a JSON object",
                path=f"{self._describe()}/{METADATA_FILE}",
            )
        return loaded

    def _open_remote(self) -> None:
        """Remote stores (fsspec): no lock and no renames; the archive is the atomic unit."""
        if self._mode in ("w", "w-") and (
            self._location.exists() or self._archive_location.exists()
        ):
            if self._mode == "w-":
                raise ArchiveExistsError(
                    f"{self._location.url} already holds a store (mode 'w-' creates only)",
                    path=self._location.url,
                )
            self._location.remove()
            self._archive_location.remove()
        archive_exists = self._archive_location.exists()
        directory_exists = self._location.is_dir()
        if directory_exists:
            names = {name for name, _size in self._location.list_files()}
            nodes, folder_format = load_index(
                names, self._read_remote, where=self._location.url, source="live", consolidated=True
            )
            folder_generation = generation_of(nodes) or 0
            archive_generation = self._archive_generation() if archive_exists else None
            if "" in nodes and (
                archive_generation is None or folder_generation > archive_generation
            ):
                self._nodes, self._zarr_format = nodes, folder_format or self._zarr_format
                self._generation = folder_generation
                self._metadata = self._read_metadata(self._read_remote)
                self._committed = set(nodes)
                self._backing = "directory"
                self._read_only = self._mode == "r"
                return
        elif archive_exists:
            self._archive_generation()
        if archive_exists:
            self._backing = "archive"
            self._read_only = self._mode in ("r", "a")
            return
        if self._mode in ("r", "r+"):
            raise StoreNotFoundError(f"no store at {self._location.url}", path=self._location.url)
        self._new_store()

    def _read_remote(self, name: str) -> bytes | None:
        try:
            return self._location.child(name).read_bytes()
        except FileNotFoundError:
            return None

    def _group_node(self, attributes: dict[str, Any]) -> ZarrNode:
        return ZarrNode("group", group_documents(attributes, self._zarr_format), attributes)

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

    @property
    def mode(self) -> Mode:
        """The mode the store was opened with."""
        return self._mode

    def _describe(self) -> str:
        if self._backing == "archive":
            return self._archive_location.url
        return self._location.url

    def _kind_at(self, parts: tuple[str, ...]) -> NodeKind | None:
        node = self._nodes.get("/".join(parts))
        if node is None:
            return None
        if node.node_type == "group" and node.holdall.get("kind") is None:
            return "group"
        return "leaf"

    def _check_segment(self, path: str, key: str) -> None:
        name = path.rsplit("/", 1)[-1]
        if name in _RESERVED or name.startswith("__"):
            raise InvalidKeyError(
                f"key {key!r} uses the reserved name {name!r} (Zarr and holdall files, and "
                "names starting with '__', cannot be data keys in OptStorage)",
                key=key,
            )
        # A UTF-8 character takes at most 4 bytes: short keys cannot exceed any limit.
        longest = max(len(part) for part in path.split("/"))
        if 4 * longest > _SAFE_NAME_BYTES or 4 * len(path) > self._path_budget:
            check_name_lengths(
                key,
                path.split("/"),
                root=self._location.url if self._location.is_local else None,
                extra_path_bytes=_PATH_MARGIN,
            )

    # ----------------------------------------------------------------- writing

    def _write_node(self, parts: tuple[str, ...], node: Node) -> LeafSizes:
        path = "/".join(parts)
        for depth in range(1, len(parts) + 1):
            self._check_segment("/".join(parts[:depth]), path)
        new_nodes: dict[str, ZarrNode] = {}
        new_pending: dict[str, bytes] = {}
        self._saving = path
        self._scratch = None
        sizes: LeafSizes = {}
        try:
            self._write_tree(path, node, (), sizes, new_nodes, new_pending)
        except BaseException:
            if self._scratch is not None:
                shutil.rmtree(self._scratch, ignore_errors=True)
                self._scratch = None
            raise
        # Nothing failed: swap the new value in (an old staged value goes only now).
        if path in self._nodes:
            self._forget(path)
            self._discard_staged(path)
        if self._scratch is not None:
            target = self._stage_path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._scratch / "v", target)
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent not in self._nodes:
                self._nodes[parent] = self._group_node({})
                self._dirty.add(parent)
        self._nodes.update(new_nodes)
        self._pending.update(new_pending)
        self._pending_bytes += sum(len(data) for data in new_pending.values())
        self._dirty.add(path)
        self._changes += 1
        if self._pending_bytes > _BUFFER_LIMIT:
            self._stage_pending()
        return sizes

    def _scratch_folder(self) -> Path:
        """The private folder of the value being saved (made on first need: large arrays only)."""
        if self._scratch is None:
            base = self._stage_base() / "new"
            base.mkdir(parents=True, exist_ok=True)
            self._scratch = Path(tempfile.mkdtemp(prefix=f"{owner_tag()}-", dir=base))
        return self._scratch

    def _stage_base(self) -> Path:
        """The writer's private area: ``.holdall/`` in the folder, or a local temp for remote."""
        if self._workdir is not None:
            return self._workdir.control
        if self._stage_root is None:
            self._stage_root = Path(tempfile.mkdtemp(prefix=f"holdall-stage-{owner_tag()}-"))
        return self._stage_root

    def _stage_path(self, path: str) -> Path:
        return self._stage_base().joinpath("stage", *path.split("/"))

    def _discard_staged(self, path: str) -> None:
        target = self._stage_path(path)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)

    def _write_tree(
        self,
        path: str,
        node: Node,
        relative: tuple[str, ...],
        sizes: LeafSizes,
        nodes: dict[str, ZarrNode],
        pending: dict[str, bytes],
    ) -> None:
        if isinstance(node, Group):
            nodes[path] = self._group_node({})
            for name, child in node.children.items():
                child_path = join(path, name)
                self._check_segment(child_path, child_path)
                self._write_tree(child_path, child, (*relative, name), sizes, nodes, pending)
            return
        sizes[relative] = self._write_leaf(path, node, nodes, pending)

    def _write_leaf(
        self,
        path: str,
        leaf: Leaf,
        nodes: dict[str, ZarrNode],
        pending: dict[str, bytes],
    ) -> int:
        """Encode one leaf value at `path` and return the bytes it takes."""
        if leaf.array is None:
            group = self._group_node({"holdall": {"kind": leaf.kind}})
            nodes[path] = group
            total = sum(len(d) for d in group.documents.values())
            for index, item in enumerate(leaf.items):
                item_sizes: LeafSizes = {}
                self._write_tree(join(path, str(index)), item, (), item_sizes, nodes, pending)
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
            delta=self._delta,
            checksum=self._checksum,
        )
        stem = path.replace("/", "_")
        parsed = array_documents(
            spec,
            attributes=attributes,
            dimension_names=[f"{stem}_dim_{i}" for i in range(array.ndim)],
        )
        buffer = array.nbytes <= _BUFFER_ARRAY_BYTES
        node = ZarrNode("array", None, attributes, spec, "pending" if buffer else "stage", parsed)
        nodes[path] = node
        total = sum(len(d) for d in node.documents.values())
        # Large chunks go to the scratch folder, mirroring the path below the saved key.
        if buffer:

            def store(chunk_key: str, parts: tuple[bytes, ...]) -> None:
                pending[f"{path}/{chunk_key}"] = b"".join(parts)

        else:
            below = self._scratch_folder().joinpath("v", *path[len(self._saving) :].split("/"))

            def store(chunk_key: str, parts: tuple[bytes, ...]) -> None:
                _write_file(below.joinpath(*chunk_key.split("/")), *parts)

        return total + encode_array(spec, array, store, nan_key=leaf.nan_key)

    def _stage_pending(self) -> None:
        """Move buffered chunks to the staging area (bounded memory for many small arrays)."""
        for path, node in self._nodes.items():
            if node.source != "pending" or node.spec is None:
                continue
            for index in node.spec.chunk_indices():
                name = f"{path}/{node.spec.chunk_key(index)}"
                data = self._pending.pop(name, None)
                if data is not None:
                    _write_file(self._stage_path(name), data)
            node.source = "stage"
        self._pending.clear()
        self._pending_bytes = 0

    def _forget(self, path: str) -> None:
        """Drop `path` and everything below it from the index and the buffer."""
        prefix = path + "/"
        for name in [p for p in self._nodes if p == path or p.startswith(prefix)]:
            del self._nodes[name]
        for name in [p for p in self._pending if p.startswith(prefix)]:
            self._pending_bytes -= len(self._pending.pop(name))
        for name in [p for p in self._dirty if p == path or p.startswith(prefix)]:
            self._dirty.discard(name)

    def _delete_node(self, parts: tuple[str, ...]) -> None:
        path = "/".join(parts)
        self._forget(path)
        self._discard_staged(path)
        if any(p == path or p.startswith(path + "/") for p in self._committed) or (
            self._backing == "archive"
        ):
            self._deleted.add(path)
        self._changes += 1

    # ----------------------------------------------------------------- reading

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
                        name: self._load_tree(join(path, name))
                        for name in sorted(self._children(path))
                    }
                )
            if kind == "none":
                return Leaf("none")
            names = sorted(self._children(path), key=int)
            return Leaf(kind, items=tuple(self._load_tree(join(path, name)) for name in names))
        array = self._read_array(path, node)
        dtype = node.holdall.get("dtype")
        if dtype is not None and array.dtype != np.dtype(dtype):
            array = array.astype(dtype)
        return Leaf(kind or "array", array)

    def _read_array(self, path: str, node: ZarrNode) -> np.ndarray[Any, Any]:
        where = join(self._describe(), path)
        spec = node.array_spec(where)
        if spec is None:
            return self._read_with_zarr(path)
        try:
            return decode_array(spec, lambda key: self._chunk_bytes(path, node, key), path=where)
        except (KeyError, TypeError, IndexError) as err:
            raise CorruptedFileError(
                f"array {where} cannot be read: its metadata does not fit its chunks ({err!r})",
                path=where,
            ) from err

    def _chunk_bytes(self, path: str, node: ZarrNode, key: str) -> bytes | None:
        name = f"{path}/{key}"
        source = node.source
        if source == "pending":
            return self._pending.get(name)
        if source == "stage":
            return _read_local(self._stage_path(name))
        if source == "archive":
            assert self._archive is not None
            return self._archive.read(name, verify=not (node.spec and node.spec.checksum))
        if self._location.is_local:
            return _read_local(Path(self._location.url).joinpath(*name.split("/")))
        return self._read_remote(name)

    def _read_with_zarr(self, path: str) -> np.ndarray[Any, Any]:
        """Read an array whose codecs only zarr-python knows (sharding, transposes...)."""
        import zarr
        from zarr.storage import LocalStore, ZipStore

        if not self._location.is_local or self._nodes[path].source in ("pending", "stage"):
            raise UnsupportedTypeError(
                f"array {path!r} in {self._describe()} uses codecs holdall does not decode itself, "
                "and zarr-python can only read it from a local store",
                key=path,
            )
        store: Any
        if self._nodes[path].source == "archive":
            store = ZipStore(self._archive_location.url, mode="r")
        else:
            store = LocalStore(self._location.url, read_only=True)
        try:
            return np.asarray(
                zarr.open_array(store=store, path=path, mode="r", zarr_format=self._zarr_format)[
                    ...
                ]
            )
        finally:
            store.close()

    def _top_level_names(self) -> list[str]:
        return self._children("")

    def _get_file_path(self, parts: tuple[str, ...]) -> str:
        key = "/".join(parts)
        if self._backing == "archive":
            return (
                f"zip://{key}::{self._archive_location.url}" if key else self._archive_location.url
            )
        return self._location.child(key).url if key else self._location.url

    def _metadata_changed(self) -> None:
        self._metadata_dirty = True
        self._changes += 1

    def inspect(self) -> list[NodeInfo]:
        """Every node of the hierarchy with its shape, dtype, codecs and stored sizes."""
        with self._lock:
            self._check_open()
            return describe(self._nodes, self._stored_file_sizes(), self._describe())

    def _stored_file_sizes(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        if self._archive is not None:
            sizes.update(self._archive.sizes())
        if self._backing == "directory":
            sizes.update(
                (name, size)
                for name, size in self._location.list_files()
                if not name.startswith(f"{CONTROL}/")
            )
        staged = self._stage_base() / "stage" if not self._read_only else None
        if staged is not None and staged.is_dir():
            for folder, _dirs, files in os.walk(staged):
                for file in files:
                    full = Path(folder) / file
                    sizes[full.relative_to(staged).as_posix()] = full.stat().st_size
        sizes.update({name: len(data) for name, data in self._pending.items()})
        return sizes

    # ----------------------------------------------------------------- flush, compress, close

    def flush(self) -> None:
        """Make everything saved so far durable, crash-safely.

        A folder store commits to its folder: after a crash the store reopens with the values
        of the last `flush` (or of a later commit), never a mix. A store opened from its
        archive (mode ``"r+"``) re-packs the archive. A read-only store has nothing to flush.
        """
        with self._lock:
            self._check_open()
            if self._read_only:
                return
            if self._backing == "archive":
                if self._changes != self._packed_changes:
                    self.compress_store()
                return
            self._commit()

    def _commit(self) -> None:
        if not (self._dirty or self._deleted or self._metadata_dirty):
            return
        moves = self._move_roots()
        moved = set(moves)
        deletes = sorted(path for path in self._deleted if not _below_any(path, moved))
        deleted = set(deletes)
        generation = self._generation + 1
        stage = self._stage_base() / "stage"
        moved_nodes = [
            (path, node) for path, node in self._nodes.items() if _below_any(path, moved)
        ]
        for path, node in moved_nodes:
            for name, data in node.documents.items():
                _write_file(stage.joinpath(*join(path, name).split("/")), data)
        for name, data in list(self._pending.items()):
            if _below_any(name, moved):
                _write_file(stage.joinpath(*name.split("/")), data)
        root_files = {METADATA_FILE: self._metadata_bytes()}
        root_files.update(root_documents(self._nodes, self._zarr_format, generation))
        for name, data in root_files.items():
            _write_file(stage / ROOT_STAGE / name, data)
        if self._workdir is not None:
            self._workdir.commit(moves, deletes, root_files)
        else:
            self._upload(moves, deletes, root_files)
        self._generation = generation
        if deleted:
            self._committed = {p for p in self._committed if not _below_any(p, deleted)}
        for path, node in moved_nodes:
            node.source = "live"
            self._committed.add(path)
        self._committed.add("")
        self._pending.clear()
        self._pending_bytes = 0
        self._dirty.clear()
        self._deleted.clear()
        self._metadata_dirty = False
        if self._backing == "new":
            self._backing = "directory"

    def _move_roots(self) -> list[str]:
        """The subtrees a commit moves in: each dirty key lifted to its topmost new ancestor."""
        roots: set[str] = set()
        for path in self._dirty:
            if path not in self._nodes:
                continue
            parts = path.split("/")
            for depth in range(1, len(parts) + 1):
                candidate = "/".join(parts[:depth])
                if candidate not in self._committed or depth == len(parts):
                    roots.add(candidate)
                    break
        return sorted(p for p in roots if not _below_any(p.rpartition("/")[0], roots))

    def _upload(self, moves: list[str], deletes: list[str], root_files: dict[str, bytes]) -> None:
        """Remote commit: upload staged subtrees, remove deleted ones, root documents last."""
        stage = self._stage_base() / "stage"
        for path in [*deletes, *moves]:
            self._location.child(path).remove()
        for move in moves:
            source = stage.joinpath(*move.split("/"))
            for folder, _dirs, files in os.walk(source):
                for file in files:
                    full = Path(folder) / file
                    self._location.child(full.relative_to(stage).as_posix()).write_bytes(
                        full.read_bytes()
                    )
        for name, data in root_files.items():
            self._location.child(name).write_bytes(data)
        shutil.rmtree(stage, ignore_errors=True)

    def _metadata_bytes(self) -> bytes:
        # Compact: an indent sends json.dumps down its pure-Python encoder, 0.5 ms of a small
        # store's 10 ms (the files_summary/ companion, which people read, stays indented).
        return json.dumps(self._metadata, separators=(",", ":"), allow_nan=False).encode()

    def compress_store(self) -> int:
        """Pack the whole store into ``<store_path><compress_extension>`` and return its size.

        The archive is built under a temporary name and renamed, so a crash leaves the previous
        archive (or none), never a partial one; it carries a newer generation than the folder,
        so a store that dies before `close` reopens from the archive. The folder stays until
        `close`.
        """
        with self._lock:
            self._ensure_writable()
            generation = self._generation + 1
            temp_dir = self._workdir.temporary_folder() if self._workdir is not None else None
            size = write_archive(
                self._archive_location,
                self._archive_entries(generation),
                fsync=self._fsync,
                temp_dir=temp_dir,
            )
            self._generation = generation
            self._packed_changes = self._changes
            if self._backing == "archive":
                self._reopen_archive()
            return size

    def _reopen_archive(self) -> None:
        """After re-packing an archive-backed store, read everything from the new archive."""
        if self._archive is not None:
            self._archive.close()
        self._archive = ArchiveReader(self._archive_location)
        for node in self._nodes.values():
            node.source = "archive"
        self._pending.clear()
        self._pending_bytes = 0
        self._dirty.clear()
        self._deleted.clear()
        self._metadata_dirty = False
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self._stage_base() / "stage")

    def _archive_entries(self, generation: int) -> Iterator[tuple[str, EntryContent]]:
        for path, node in sorted(self._nodes.items()):
            if not path:
                continue
            for name, data in node.documents.items():
                yield join(path, name), data
            if node.node_type == "array":
                yield from self._array_chunks(path, node)
        yield METADATA_FILE, self._metadata_bytes()
        yield from root_documents(self._nodes, self._zarr_format, generation).items()

    def _array_chunks(self, path: str, node: ZarrNode) -> Iterator[tuple[str, EntryContent]]:
        """Every stored chunk of an array: bytes from memory or the archive, files from disk."""
        spec = node.array_spec(join(self._describe(), path))
        if spec is None:
            yield from self._foreign_chunks(path, node)
            return
        for index in spec.chunk_indices():
            name = f"{path}/{spec.chunk_key(index)}"
            content = self._chunk_content(node, name)
            if content is not None:
                yield name, content

    def _chunk_content(self, node: ZarrNode, name: str) -> EntryContent | None:
        """One file to pack (a local file is packed only if it is not reached through a link)."""
        if node.source == "pending":
            return self._pending.get(name)
        if node.source == "archive":
            assert self._archive is not None
            return self._archive.read(name)
        if node.source == "stage":
            local = self._stage_path(name)
        elif self._location.is_local:
            root = Path(self._location.url)
            safe_parent(root, name)
            local = root.joinpath(*name.split("/"))
        else:
            return self._read_remote(name)
        return local if os.path.lexists(local) else None

    def _foreign_chunks(self, path: str, node: ZarrNode) -> Iterator[tuple[str, EntryContent]]:
        """Files of an array whose layout only zarr-python knows, copied as they are."""
        if node.source == "archive":
            assert self._archive is not None
            names = [n for n in sorted(self._archive.names()) if n.startswith(path + "/")]
        else:
            names = [f"{path}/{n}" for n, _size in self._location.child(path).list_files()]
        for name in names:
            if name.rsplit("/", 1)[-1] not in DOC_NAMES:
                content = self._chunk_content(node, name)
                if content is not None:
                    yield name, content

    def close(self) -> None:
        """Commit or re-pack what is left, write the companions, release the store.

        A store nothing was written to is left exactly as it was found. Idempotent.
        """
        super().close()

    def _close(self) -> None:
        forget_at_exit(self)
        try:
            if not self._read_only and self._changes:
                self._finish_writes()
        finally:
            self._release()

    def _finish_writes(self) -> None:
        packed = self._packed_changes is not None
        if packed and self._packed_changes != self._changes:
            self.compress_store()  # written to after compress_store(): re-pack
        if not packed and self._backing == "archive":
            self.compress_store()
            packed = True
        if not packed:
            self._commit()
        self._write_companions(move_visu=packed)
        if packed and self._workdir is not None:
            kept = self._workdir.remove_owned(keep=lambda _path: False)
            if kept:
                warnings.warn(
                    f"kept {self._location.url} after packing it into {self._archive_location.url}: "
                    f"it holds {len(kept)} file(s) holdall did not write "
                    f"({sorted(p.name for p in kept)[:5]})",
                    HoldallWarning,
                    stacklevel=4,
                )
        elif packed and not self._location.is_local and self._backing == "directory":
            self._location.remove()

    def _release(self) -> None:
        """Close the archive, drop the private area, unlock, remove a folder we created empty."""
        if self._archive is not None:
            self._archive.close()
        if self._stage_root is not None:
            shutil.rmtree(self._stage_root, ignore_errors=True)
            self._stage_root = None
        self._release_lock_and_folder()

    def _release_lock_and_folder(self) -> None:
        workdir = self._workdir
        if workdir is None or not workdir.locked:
            return
        with contextlib.suppress(OSError):
            workdir.remove_control()
            if self._created_folder or self._emptied_folder or self._packed_changes is not None:
                with contextlib.suppress(OSError):
                    workdir.root.rmdir()
        workdir.unlock()

    def _write_companions(self, *, move_visu: bool) -> None:
        """Seed 001's close(): ``visu*`` files to stream_cache/, metadata to files_summary/."""
        stem = self._location.name.removesuffix(".zarr")
        parent = self._location.parent()
        parent.child(f"files_summary/{stem}.json").write_bytes(
            json.dumps(self._metadata, indent=2, allow_nan=False).encode(), fsync=self._fsync
        )
        if not self._location.is_local or not self._location.is_dir():
            return
        root = Path(self._location.url)
        for entry in os.scandir(root):
            if entry.name.startswith("visu") and entry.is_file(follow_symlinks=False):
                target = Path(parent.url) / "stream_cache" / stem / entry.name
                target.parent.mkdir(parents=True, exist_ok=True)
                if move_visu:
                    shutil.move(entry.path, target)
                else:
                    shutil.copyfile(entry.path, target)


def _check_options(
    mode: object, zarr_format: object, compression: object, chunk_bytes: object
) -> None:
    if mode not in ("r", "r+", "a", "w", "w-"):
        raise InvalidValueError(
            f"mode must be 'r', 'r+', 'a', 'w' or 'w-', got {mode!r}",
            expected=("r", "r+", "a", "w", "w-"),
            got=mode,
        )
    if zarr_format not in (None, 2, 3):
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


def _folder_kind(root: Path) -> tuple[str, list[str]]:
    """("missing" | "empty" | "zarr" | "foreign", the names at its top, control folder aside)."""
    try:
        names = [name for name in os.listdir(root) if not name.startswith(CONTROL)]
    except FileNotFoundError:
        return "missing", []
    except NotADirectoryError:
        return "foreign", [root.name]
    if not names:
        return "empty", names
    if {"zarr.json", ".zgroup", ".zarray"} & set(names):
        return "zarr", names
    return "foreign", names


def _read_local(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _write_file(path: Path, *parts: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        file.writelines(parts)


def _below_any(path: str, roots: set[str]) -> bool:
    """True when `path` is one of `roots` or lies below one (a walk up its prefixes: no scan)."""
    while path:
        if path in roots:
            return True
        path = path.rpartition("/")[0]
    return False
