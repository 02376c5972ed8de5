"""Values to datastore objects and back, with their exact types and without pickle by default.

`encode` walks a value and writes each large part as a blob through a `BlobWriter`, keeping
a small JSON tree (the manifest) that says how to rebuild it: numpy arrays as raw buffers
with dtype (byte order included), shape and memory order; pandas and polars objects as Arrow
IPC streams; bytes as raw blobs; numbers, strings and containers in the tree itself. Anything
else raises `UnsupportedTypeError`, unless the caller allowed pickle for it.
"""

from __future__ import annotations

import pickle
import sys
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from holdall._core.optional import import_optional
from holdall.errors import CorruptedFileError, UnsupportedTypeError
from holdall.objects._bunch import Bunch
from holdall.objects._container import FORMAT_VERSION, BlobWriter, Source

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["decode_item", "decode_object", "encode_object", "encode_pack"]

#: Strings longer than this go in a blob rather than in the manifest.
_INLINE_STR = 4096
#: dtype kinds stored as raw buffers: bool, integers, floats, complex, bytes, str, dates.
_RAW_KINDS = frozenset("biufcSUmM")
_PICKLE_HINT = (
    "pass allow_pickle=True (or set options 'datastore.allow_pickle') only for values you trust"
)


def _container_kind(value: object) -> str | None:
    kinds: dict[type, str] = {
        dict: "dict",
        Bunch: "bunch",
        list: "list",
        tuple: "tuple",
        set: "set",
        frozenset: "frozenset",
    }
    found = kinds.get(type(value))
    if found is None:
        from holdall.objects._datastore import DataStore

        if type(value) is DataStore:
            return "datastore"
    return found


class _Encoder:
    def __init__(self, writer: BlobWriter, *, allow_pickle: bool) -> None:
        self.writer = writer
        self.allow_pickle = allow_pickle

    def node(self, value: Any, where: str) -> dict[str, Any]:
        kind = type(value)
        if value is None:
            return {"t": "none"}
        if kind is bool:
            return {"t": "bool", "v": value}
        if kind is int:
            return {"t": "int", "v": value}
        if kind is float:
            return {"t": "float", "h": value.hex()}
        if kind is complex:
            return {"t": "complex", "h": [value.real.hex(), value.imag.hex()]}
        if kind is str:
            if len(value) > _INLINE_STR:
                return {"t": "str", "b": self.writer.blob(value.encode("utf-8", "surrogatepass"))}
            return {"t": "str", "v": value}
        if kind is bytes or kind is bytearray:
            return {"t": kind.__name__, "b": self.writer.blob(value)}
        if kind is np.ndarray or kind is np.memmap:
            if value.dtype.kind in _RAW_KINDS and value.dtype.fields is None:
                ref, order = self.writer.array(value)
                shape = list(value.shape)
                return {
                    "t": "ndarray",
                    "dtype": value.dtype.str,
                    "shape": shape,
                    "order": order,
                    "b": ref,
                }
            return self._fallback(value, where, f"numpy dtype {value.dtype}")
        if isinstance(value, np.generic):
            if value.dtype.kind in _RAW_KINDS and value.dtype.fields is None:
                return {"t": "npscalar", "dtype": value.dtype.str, "x": value.tobytes().hex()}
            return self._fallback(value, where, f"numpy scalar of dtype {value.dtype}")
        container = _container_kind(value)
        if container in ("dict", "bunch", "datastore"):
            return self._mapping(container, value, where)
        if container is not None:
            items = [self.node(item, f"{where}[{index}]") for index, item in enumerate(value)]
            return {"t": container, "items": items}
        table = self._table(value, where)
        if table is not None:
            return table
        return self._fallback(value, where, f"type {kind.__module__}.{kind.__qualname__}")

    def _mapping(self, container: str | None, value: dict[Any, Any], where: str) -> dict[str, Any]:
        if all(type(key) is str for key in value):
            children = {key: self.node(item, f"{where}.{key}") for key, item in value.items()}
            return {"t": container, "items": children}
        pairs = [
            [self.node(key, f"{where} key {key!r}"), self.node(item, f"{where}[{key!r}]")]
            for key, item in value.items()
        ]
        return {"t": container, "pairs": pairs}

    def _table(self, value: object, where: str) -> dict[str, Any] | None:
        """Encode a pandas or polars object as an Arrow IPC stream (None for other types)."""
        module = type(value).__module__.split(".", 1)[0]
        if module not in ("pandas", "polars"):
            return None
        lib = sys.modules[module]
        import pyarrow as pa

        node: dict[str, Any]
        try:
            if module == "pandas" and isinstance(value, lib.DataFrame | lib.Series):
                is_series = isinstance(value, lib.Series)
                frame = value.to_frame(name="series") if is_series else value
                table = pa.Table.from_pandas(frame, preserve_index=None)
                node = {"t": "pandas", "kind": "Series" if is_series else "DataFrame"}
                if is_series:
                    node["name"] = self.node(value.name, f"{where}.name")
            elif module == "polars" and isinstance(value, lib.DataFrame | lib.Series):
                is_series = isinstance(value, lib.Series)
                table = (value.to_frame() if is_series else value).to_arrow()
                node = {"t": "polars", "kind": "Series" if is_series else "DataFrame"}
            else:
                return None
        except (pa.ArrowException, TypeError, ValueError) as err:
            return self._fallback(value, where, f"{module} object that Arrow cannot hold ({err})")
        node["b"] = self.writer.stream(lambda handle: _write_ipc(handle, table))
        return node

    def _fallback(self, value: object, where: str, what: str) -> dict[str, Any]:
        if not self.allow_pickle:
            raise UnsupportedTypeError(
                f"cannot store {where}: {what} has no pickle-free encoding; store numpy arrays "
                "of numeric, str or date dtypes, pandas/polars objects, bytes, str, numbers, "
                f"None, or lists, tuples, sets and dicts of these; or {_PICKLE_HINT}",
                key=where,
                got=type(value),
            )
        return {
            "t": "pickle",
            "b": self.writer.stream(lambda handle: pickle.dump(value, handle, protocol=5)),
        }


def _write_ipc(handle: BinaryIO, table: pa.Table) -> None:
    import pyarrow as pa

    with pa.ipc.new_stream(handle, table.schema) as stream:
        stream.write_table(table)


def encode_object(writer: BlobWriter, value: Any, *, allow_pickle: bool, where: str) -> None:
    """Write `value` as a whole object through `writer` (blobs, then manifest and footer)."""
    root = _Encoder(writer, allow_pickle=allow_pickle).node(value, where)
    writer.finish({"format": FORMAT_VERSION, "root": root})


def encode_pack(writer: BlobWriter, values: list[tuple[Any, str]], *, allow_pickle: bool) -> None:
    """Write several (value, where) as one object, each read back alone by `decode_item`.

    One persist writes its DataStores as one pack: a file per DataStore cost 0.5-1.5 ms each
    here, which bounded experiments of many runs.
    """
    encoder = _Encoder(writer, allow_pickle=allow_pickle)
    items = [encoder.node(value, where) for value, where in values]
    writer.finish({"format": FORMAT_VERSION, "items": items})


class _Decoder:
    def __init__(self, source: Source, *, allow_pickle: bool) -> None:
        self.source = source
        self.allow_pickle = allow_pickle

    def bad(self, node: object) -> CorruptedFileError:
        return CorruptedFileError(
            f"datastore object {self.source.name}: unreadable manifest node {str(node)[:200]}",
            path=self.source.name,
        )

    def node(self, node: Any) -> Any:
        if not isinstance(node, dict) or "t" not in node:
            raise self.bad(node)
        kind = node["t"]
        try:
            return self._decode(kind, node)
        except (KeyError, TypeError, ValueError, IndexError) as err:
            if isinstance(err, UnsupportedTypeError):
                raise
            raise self.bad(node) from err

    def _decode(self, kind: str, node: dict[str, Any]) -> Any:
        if kind == "none":
            return None
        if kind in ("bool", "int"):
            value = node["v"]
            if type(value) is not (bool if kind == "bool" else int):
                raise self.bad(node)
            return value
        if kind == "float":
            return float.fromhex(node["h"])
        if kind == "complex":
            return complex(float.fromhex(node["h"][0]), float.fromhex(node["h"][1]))
        if kind == "str":
            if "v" in node:
                return str(node["v"])
            return self.source.read_bytes(node["b"]).decode("utf-8", "surrogatepass")
        if kind == "bytes":
            return self.source.read_bytes(node["b"])
        if kind == "bytearray":
            return bytearray(self.source.read_bytes(node["b"]))
        if kind == "ndarray":
            dtype = np.dtype(node["dtype"])
            shape = tuple(int(n) for n in node["shape"])
            if node["order"] not in ("C", "F") or any(n < 0 for n in shape):
                raise self.bad(node)
            return self.source.array(node["b"], dtype, shape, node["order"])
        if kind == "npscalar":
            return np.frombuffer(bytes.fromhex(node["x"]), dtype=np.dtype(node["dtype"]))[0]
        if kind in ("list", "tuple", "set", "frozenset"):
            items = [self.node(item) for item in node["items"]]
            return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[kind](items)
        if kind in ("dict", "bunch", "datastore"):
            return self._mapping(kind, node)
        if kind in ("pandas", "polars"):
            return self._table(kind, node)
        if kind == "pickle":
            if not self.allow_pickle:
                raise UnsupportedTypeError(
                    f"datastore object {self.source.name} holds a pickled value, and loading "
                    f"pickles runs code chosen by whoever wrote them; {_PICKLE_HINT}",
                    key=self.source.name,
                    got="pickle",
                )
            return pickle.loads(self.source.read_bytes(node["b"]))
        raise self.bad(node)

    def _mapping(self, kind: str, node: dict[str, Any]) -> Any:
        if "items" in node:
            if not isinstance(node["items"], dict):
                raise self.bad(node)
            content = {key: self.node(item) for key, item in node["items"].items()}
        else:
            content = {self.node(key): self.node(item) for key, item in node["pairs"]}
        if kind == "dict":
            return content
        if kind == "bunch":
            return Bunch(content)
        from holdall.objects._datastore import DataStore

        return DataStore(content)

    def _table(self, kind: str, node: dict[str, Any]) -> Any:
        import pyarrow as pa

        buffer = self.source.arrow_buffer(node["b"])
        try:
            table = pa.ipc.open_stream(buffer).read_all()
        except pa.ArrowException as err:
            raise self.bad({"t": kind}) from err
        if kind == "polars":
            import polars as pl

            frame = pl.from_arrow(table)
            if not isinstance(frame, pl.DataFrame):
                raise self.bad(node)
            return frame.to_series(0) if node["kind"] == "Series" else frame
        import_optional("pandas", extra="pandas", purpose="reading a stored pandas object")
        result = table.to_pandas()
        if node["kind"] == "Series":
            series = result["series"]
            series.name = self.node(node["name"])
            return series
        return result


def decode_item(source: Source, manifest: dict[str, Any], index: int, *, allow_pickle: bool) -> Any:
    """Rebuild item `index` of a pack written by `encode_pack` (`manifest` from `source`)."""
    items = manifest.get("items")
    if not isinstance(items, list) or not 0 <= index < len(items):
        raise CorruptedFileError(
            f"datastore object {source.name}: no packed item {index}", path=source.name
        )
    return _Decoder(source, allow_pickle=allow_pickle).node(items[index])


def decode_object(source: Source, *, allow_pickle: bool) -> Any:
    """Rebuild the value of a whole object from `source`."""
    manifest = source.manifest()
    if "root" not in manifest:
        raise CorruptedFileError(
            f"datastore object {source.name}: manifest has no root", path=source.name
        )
    return _Decoder(source, allow_pickle=allow_pickle).node(manifest["root"])
