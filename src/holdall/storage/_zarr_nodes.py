"""The node index of a Zarr hierarchy: its groups and arrays with their metadata documents.

`OptStorage` keeps every node of a store in memory (a few hundred bytes each), so listing keys
and opening arrays never touch the disk. This module builds that index from the documents of a
directory or an archive, writes the root documents (with consolidated metadata and holdall's
generation number), and describes nodes for `OptStorage.inspect`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from holdall.errors import CorruptedFileError
from holdall.storage._zarr_codecs import (
    ArraySpec,
    ZarrFormat,
    dumps_document,
    group_documents,
    parse_array_document,
)

__all__ = [
    "DOC_NAMES",
    "NodeInfo",
    "Source",
    "ZarrNode",
    "codec_label",
    "describe",
    "generation_of",
    "join",
    "load_index",
    "parse_json",
    "root_documents",
]

DOC_NAMES = ("zarr.json", ".zarray", ".zgroup", ".zattrs")
#: Where a node's chunks are: in memory, in the writer's staging area, in the live directory,
#: or in the archive the store was opened from.
Source = Literal["pending", "stage", "live", "archive"]


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
    """Filters, compressor and checksum, for example ``blosc(lz4:5,shuffle)>crc32c``."""
    stored_bytes: int = 0
    """Bytes of its chunks and metadata documents as stored (`chunk_bytes` + `document_bytes`)."""
    nbytes: int = 0
    """Bytes of the data uncompressed."""
    chunk_bytes: int = 0
    """Bytes of its chunks as stored (what the compression ratio compares with `nbytes`)."""
    document_bytes: int = 0
    """Bytes of its Zarr metadata documents."""


@dataclass(slots=True)
class ZarrNode:
    """One group or array of the hierarchy, with its metadata documents."""

    node_type: str
    """``"group"`` or ``"array"``."""
    raw_documents: dict[str, bytes] | None
    """Serialized metadata files by name (``zarr.json`` or ``.zarray``/``.zattrs``/``.zgroup``),
    or None when only the parsed form is known yet (see `documents`)."""
    attributes: dict[str, Any] = field(default_factory=dict)
    """Node attributes; holdall's own live under ``"holdall"``."""
    spec: ArraySpec | None = None
    """The array layout, parsed on first read."""
    source: Source = "pending"
    """Where the node's chunks are."""
    parsed_documents: dict[str, Any] | None = None
    """`documents` parsed, filled on first use."""

    @property
    def holdall(self) -> dict[str, Any]:
        """holdall's attributes (value kind, original dtype)."""
        value = self.attributes.get("holdall", {})
        return value if isinstance(value, dict) else {}

    @property
    def documents(self) -> dict[str, bytes]:
        """The serialized metadata files (serialized once from the parsed form, then kept)."""
        if self.raw_documents is None:
            self.raw_documents = {
                name: dumps_document(doc) for name, doc in (self.parsed_documents or {}).items()
            }
        return self.raw_documents

    def parsed(self) -> dict[str, Any]:
        """The parsed metadata documents (parsed once, then kept)."""
        if self.parsed_documents is None:
            self.parsed_documents = {
                name: json.loads(data) for name, data in self.documents.items()
            }
        return self.parsed_documents

    def array_spec(self, where: str) -> ArraySpec | None:
        """The layout of an array node (None when only zarr-python can decode it)."""
        if self.spec is None:
            try:
                self.spec = parse_array_document(self.parsed())
            except (KeyError, TypeError, ValueError, IndexError) as err:
                name = "zarr.json" if "zarr.json" in self.documents else ".zarray"
                raise CorruptedFileError(
                    f"{where}/{name} is not a valid Zarr array document: {err!r}",
                    path=f"{where}/{name}",
                ) from err
        return self.spec


def join(path: str, name: str) -> str:
    """``path/name``, or `name` at the root."""
    return f"{path}/{name}" if path else name


def parse_json(data: bytes, where: str) -> Any:
    """Parse a JSON document, or raise `CorruptedFileError` naming the file `where`."""
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptedFileError(f"{where} is not valid JSON: {err}", path=where) from err


def _node_from_documents(documents: dict[str, bytes], where: str, source: Source) -> ZarrNode:
    if "zarr.json" in documents:
        doc = parse_json(documents["zarr.json"], f"{where}/zarr.json")
        if not isinstance(doc, dict):
            raise CorruptedFileError(
                f"{where}/zarr.json is not a JSON object", path=f"{where}/zarr.json"
            )
        node_type = doc.get("node_type")
        attributes = doc.get("attributes", {})
    else:
        node_type = "array" if ".zarray" in documents else "group"
        attributes = (
            parse_json(documents[".zattrs"], f"{where}/.zattrs") if ".zattrs" in documents else {}
        )
    if node_type not in ("array", "group") or not isinstance(attributes, dict):
        raise CorruptedFileError(
            f"{where}: a Zarr node with node_type {node_type!r} and attributes of type "
            f"{type(attributes).__name__} (expected 'array' or 'group', and an object)",
            path=where,
        )
    return ZarrNode(node_type, documents, attributes, source=source)


def _node_from_parsed(doc: Any, where: str, source: Source) -> ZarrNode:
    """A node from its already parsed v3 document (consolidated metadata)."""
    if not isinstance(doc, dict) or doc.get("node_type") not in ("array", "group"):
        raise CorruptedFileError(
            f"{where}: the consolidated metadata of this node is not a Zarr v3 array or group "
            "document",
            path=where,
        )
    attributes = doc.get("attributes", {})
    if not isinstance(attributes, dict):
        raise CorruptedFileError(f"{where}: attributes are not an object", path=where)
    return ZarrNode(doc["node_type"], None, attributes, None, source, {"zarr.json": doc})


def load_index(
    names: Iterable[str],
    read: Callable[[str], bytes | None],
    *,
    where: str,
    source: Source,
    consolidated: bool,
) -> tuple[dict[str, ZarrNode], ZarrFormat | None]:
    """Every node of a hierarchy, from its file `names` read with `read`, and its format.

    With `consolidated`, a v3 root document with inline consolidated metadata is trusted
    (holdall's archives and committed directories keep it exact); otherwise each node's own
    documents are read. The format is None for a hierarchy with no root document.
    """
    names = set(names)
    nodes: dict[str, ZarrNode] = {}
    root_v3 = read("zarr.json") if "zarr.json" in names else None
    zarr_format: ZarrFormat | None = 3 if root_v3 is not None else None
    if root_v3 is None and (".zgroup" in names or ".zarray" in names):
        zarr_format = 2
    if consolidated and root_v3 is not None:
        root_doc = parse_json(root_v3, f"{where}/zarr.json")
        inline = root_doc.get("consolidated_metadata") if isinstance(root_doc, dict) else None
        if isinstance(inline, dict) and inline.get("kind") == "inline":
            nodes[""] = _node_from_documents({"zarr.json": root_v3}, where, source)
            for path, doc in (inline.get("metadata") or {}).items():
                nodes[path] = _node_from_parsed(doc, join(where, path), source)
            return nodes, zarr_format
    for name in sorted(names):
        folder, _, base = name.rpartition("/")
        if base in ("zarr.json", ".zarray", ".zgroup") and folder not in nodes:
            documents = {}
            for doc_name in DOC_NAMES:
                candidate = join(folder, doc_name)
                if candidate in names:
                    data = read(candidate)
                    if data is not None:
                        documents[doc_name] = data
            nodes[folder] = _node_from_documents(documents, join(where, folder), source)
    return nodes, zarr_format


def generation_of(nodes: dict[str, ZarrNode]) -> int | None:
    """holdall's generation number of a hierarchy (None for stores holdall did not write)."""
    root = nodes.get("")
    if root is None:
        return None
    generation = root.holdall.get("generation")
    return generation if isinstance(generation, int) else None


def root_documents(
    nodes: dict[str, ZarrNode], zarr_format: ZarrFormat, generation: int
) -> dict[str, bytes]:
    """Root group documents with holdall's generation and the consolidated metadata of all nodes."""
    attributes = dict(nodes[""].attributes) if "" in nodes else {}
    attributes["holdall"] = {**attributes.get("holdall", {}), "generation": generation}
    root = group_documents(attributes, zarr_format)
    if zarr_format == 3:
        document = json.loads(root["zarr.json"])
        document["consolidated_metadata"] = {
            "kind": "inline",
            "must_understand": False,
            "metadata": {
                path: node.parsed()["zarr.json"] for path, node in sorted(nodes.items()) if path
            },
        }
        return {"zarr.json": json.dumps(document, allow_nan=False).encode()}
    consolidated: dict[str, Any] = {}
    for path, node in sorted(nodes.items()):
        documents = {
            name: json.loads(data) for name, data in (root if not path else node.documents).items()
        }
        for name, document in documents.items():
            consolidated[join(path, name)] = document
    root[".zmetadata"] = json.dumps(
        {"zarr_consolidated_format": 1, "metadata": consolidated}
    ).encode()
    return root


def codec_label(spec: ArraySpec) -> str:
    """A short description of an array's codecs, such as ``blosc(lz4:5,shuffle)>crc32c``."""
    steps = ["transpose"] if spec.transpose is not None else []
    steps += [codec.codec_id for codec in spec.filters]
    if spec.compressor is not None:
        config = spec.compressor.get_config()
        if config["id"] == "blosc":
            shuffle = {0: "noshuffle", 1: "shuffle", 2: "bitshuffle"}.get(config["shuffle"], "?")
            steps.append(f"blosc({config['cname']}:{config['clevel']},{shuffle})")
        elif "level" in config:
            steps.append(f"{config['id']}({config['level']})")
        else:
            steps.append(config["id"])
    if spec.checksum:
        steps.append("crc32c")
    return ">".join(steps) or "none"


def _owner(nodes: dict[str, ZarrNode], file_name: str) -> str:
    folder = file_name.rpartition("/")[0]
    while folder and folder not in nodes:
        folder = folder.rpartition("/")[0]
    return folder


def describe(nodes: dict[str, ZarrNode], file_sizes: dict[str, int], where: str) -> list[NodeInfo]:
    """A `NodeInfo` for every node but the root, from the stored size of every file."""
    owned: dict[str, int] = {}
    for name, size in file_sizes.items():
        if name.rsplit("/", 1)[-1] not in DOC_NAMES:
            owner = _owner(nodes, name)
            owned[owner] = owned.get(owner, 0) + size
    infos = []
    for path, node in sorted(nodes.items()):
        if not path:
            continue
        documents = sum(len(d) for d in node.documents.values())
        if node.node_type == "group":
            kind = node.holdall.get("kind", "group")
            infos.append(
                NodeInfo(path, "group", kind, stored_bytes=documents, document_bytes=documents)
            )
            continue
        spec = node.array_spec(join(where, path))
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
                codec=codec_label(spec),
                stored_bytes=own + documents,
                nbytes=int(np.prod(spec.shape)) * itemsize,
                chunk_bytes=own,
                document_bytes=documents,
            )
        )
    return infos
