"""`JsonStorageHandler`: one human-readable JSON file per key, for debugging and interchange.

Layout of ``json_dir_path``::

    metadata.json          the metadata (never clobbered by a data key)
    data/face_areas.json   data key "face_areas"
    data/face/areas.json   data key "face/areas" (a folder per group, so no collisions)

Arrays are written as plain nested lists with their ``dtype`` and ``shape`` beside them, so
they load back exactly (see `holdall._core.jsoncodec`). Segments are percent-encoded where
they hold anything but letters, digits, ``_`` and ``-``, which keeps file and folder names
distinct (key ``a.json`` is file ``a%2Ejson.json``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from holdall._core.atomic import atomic_write_bytes
from holdall._core.jsoncodec import from_json, to_json
from holdall._core.values import Group, Node, decode_leaf
from holdall.errors import CorruptedFileError, InvalidKeyError
from holdall.storage.base import DataStorage, LeafSizes, NodeKind

__all__ = ["JsonStorageHandler"]

_SAFE = "_-"
_SUFFIX = ".json"
_MAX_NAME_BYTES = 255


def _encode_segment(segment: str) -> str:
    encoded = quote(segment, safe=_SAFE).replace(".", "%2E")
    if len(encoded.encode()) + len(_SUFFIX) > _MAX_NAME_BYTES:
        raise InvalidKeyError(
            f"key segment {segment[:40]!r}... is too long for a file name "
            f"({len(encoded)} bytes encoded, at most {_MAX_NAME_BYTES - len(_SUFFIX)})",
            key=segment,
        )
    return encoded


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except json.JSONDecodeError as err:
        raise CorruptedFileError(f"{path} is not valid JSON: {err}", path=str(path)) from err


class JsonStorageHandler(DataStorage):
    """Stores each data key as a readable JSON file under `json_dir_path` (created if missing)."""

    def __init__(self, json_dir_path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        super().__init__()
        self._root = Path(json_dir_path)
        self._data = self._root / "data"
        self._metadata_file = self._root / "metadata.json"
        self._fsync = fsync
        self._data.mkdir(parents=True, exist_ok=True)
        if self._metadata_file.exists():
            loaded = _read_json(self._metadata_file)
            if not isinstance(loaded, dict):
                raise CorruptedFileError(
                    f"{self._metadata_file} must hold a JSON object, found {type(loaded).__name__}",
                    path=str(self._metadata_file),
                )
            self._metadata = loaded
        else:
            self._write_metadata()

    # docstring inherited
    def format(self) -> str:
        return "json"

    def _describe(self) -> str:
        return str(self._root)

    def _folder(self, parts: tuple[str, ...]) -> Path:
        return self._data.joinpath(*(_encode_segment(part) for part in parts))

    def _file(self, parts: tuple[str, ...]) -> Path:
        return self._folder(parts[:-1]) / (_encode_segment(parts[-1]) + _SUFFIX)

    def _kind_at(self, parts: tuple[str, ...]) -> NodeKind | None:
        if self._file(parts).is_file():
            return "leaf"
        if self._folder(parts).is_dir():
            return "group"
        return None

    def _remove(self, parts: tuple[str, ...]) -> None:
        self._file(parts).unlink(missing_ok=True)
        folder = self._folder(parts)
        if folder.is_dir():
            shutil.rmtree(folder)

    def _write_node(self, parts: tuple[str, ...], node: Node) -> LeafSizes:
        self._remove(parts)
        sizes: LeafSizes = {}
        self._write_tree(parts, node, (), sizes)
        return sizes

    def _write_tree(
        self, parts: tuple[str, ...], node: Node, relative: tuple[str, ...], sizes: LeafSizes
    ) -> None:
        if isinstance(node, Group):
            self._folder(parts).mkdir(parents=True, exist_ok=True)
            for name, child in node.children.items():
                self._write_tree((*parts, name), child, (*relative, name), sizes)
            return
        payload = json.dumps(to_json(decode_leaf(node), key="/".join(parts)), allow_nan=False)
        encoded = (payload + "\n").encode()
        atomic_write_bytes(self._file(parts), encoded, fsync=self._fsync)
        sizes[relative] = len(encoded)

    def _read_node(self, parts: tuple[str, ...]) -> Any:
        file = self._file(parts)
        if file.is_file():
            return from_json(_read_json(file), path=str(file))
        folder = self._folder(parts)
        value: dict[str, Any] = {}
        for entry in sorted(folder.iterdir()):
            if entry.is_dir():
                name = unquote(entry.name)
            elif entry.name.endswith(_SUFFIX):
                name = unquote(entry.name[: -len(_SUFFIX)])
            else:
                continue  # temporary files of an interrupted write
            value[name] = self._read_node((*parts, name))
        return value

    def _delete_node(self, parts: tuple[str, ...]) -> None:
        self._remove(parts)

    def _top_level_names(self) -> list[str]:
        names = []
        for entry in self._data.iterdir():
            if entry.is_dir():
                names.append(unquote(entry.name))
            elif entry.name.endswith(_SUFFIX) and not entry.name.startswith("."):
                names.append(unquote(entry.name[: -len(_SUFFIX)]))
        return names

    def _get_file_path(self, parts: tuple[str, ...]) -> str:
        if not parts:
            return str(self._root)
        if self._kind_at(parts) == "group":
            return str(self._folder(parts))
        return str(self._file(parts))

    def _metadata_changed(self) -> None:
        self._write_metadata()

    def _write_metadata(self) -> None:
        text = json.dumps(self._metadata, indent=2, allow_nan=False) + "\n"
        atomic_write_bytes(self._metadata_file, text.encode(), fsync=self._fsync)
