"""Readable JSON for every storable value, with the tags needed to bring it back exactly.

JSON-native values (None, bool, int, finite float, str, lists and dicts of these) are written
as plain JSON. Everything else becomes a small tagged object ``{"__holdall__": kind, ...}``:
arrays keep their data as plain nested lists with ``dtype`` and ``shape`` beside them, complex
elements use the seed's ``{"real", "imag", "_numpy_complex"}`` form, non-finite floats are the
strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``. Used for metadata files and by the JSON
storage backend.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from holdall._core.values import NestingGuard, parse_array
from holdall.errors import CorruptedFileError, UnsupportedTypeError

__all__ = ["dump_json", "from_json", "load_json", "to_json"]

TAG = "__holdall__"
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _float_to_json(value: float) -> float | str:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _real_array_to_list(array: np.ndarray[Any, Any]) -> Any:
    """Nested lists of an int/float/bool array; float32/16 use their shortest decimal form."""
    if array.dtype.kind != "f":
        return array.tolist()
    if array.dtype.itemsize < 8:
        # '2.3' rather than 2.299999952316284: shortest text that reads back to the same float32.
        array = array.astype(str).astype(np.float64)
    if array.size and not np.isfinite(array).all():
        as_object = array.astype(object)
        flat = as_object.reshape(-1)
        for index, item in enumerate(flat):
            flat[index] = _float_to_json(item)
        return as_object.tolist()
    return array.tolist()


def _array_data(array: np.ndarray[Any, Any]) -> Any:
    kind = array.dtype.kind
    if kind == "c":
        real = np.asarray(
            _real_array_to_list(array.real.astype(array.real.dtype.newbyteorder("="))), dtype=object
        )
        imag = np.asarray(
            _real_array_to_list(array.imag.astype(array.imag.dtype.newbyteorder("="))), dtype=object
        )
        out = np.empty(array.shape, dtype=object)
        for index in np.ndindex(array.shape):
            out[index] = {"real": real[index], "imag": imag[index], "_numpy_complex": True}
        return out.tolist()
    if kind == "S":
        encoded = np.empty(array.shape, dtype=object)
        for index in np.ndindex(array.shape):
            encoded[index] = base64.b64encode(bytes(array[index])).decode("ascii")
        return encoded.tolist()
    if kind in "UO":
        return array.tolist()
    return _real_array_to_list(array.astype(array.dtype.newbyteorder("=")))


def to_json(value: Any, *, key: str = "value") -> Any:
    """Return a JSON-serializable form of `value` that `from_json` turns back into it exactly.

    Raises `UnsupportedTypeError` for types outside the value model and `InvalidValueError`
    for a value that contains itself or nests deeper than
    `holdall._core.values.MAX_NESTING_DEPTH`.
    """
    return _to_json(value, key=key, guard=NestingGuard())


def _to_json(value: Any, *, key: str, guard: NestingGuard) -> Any:
    if value is None or (isinstance(value, bool | int | str) and not isinstance(value, np.generic)):
        return value
    if isinstance(value, float) and not isinstance(value, np.generic):
        encoded = _float_to_json(value)
        return encoded if isinstance(encoded, float) else {TAG: "float", "value": encoded}
    if isinstance(value, np.ndarray):
        array = parse_array(value, key=key)
        return {
            TAG: "ndarray",
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "data": _array_data(array),
        }
    if isinstance(value, np.generic):
        array = parse_array(np.asarray(value), key=key)
        return {TAG: "numpy", "dtype": array.dtype.str, "data": _array_data(array)}
    if isinstance(value, complex):
        return {
            TAG: "complex",
            "real": _float_to_json(value.real),
            "imag": _float_to_json(value.imag),
        }
    if isinstance(value, bytes | bytearray):
        return {TAG: "bytes", "base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, list | tuple):
        guard.enter(value, key=key)
        items = [_to_json(item, key=f"{key}[{i}]", guard=guard) for i, item in enumerate(value)]
        guard.leave(value)
        return items if isinstance(value, list) else {TAG: "tuple", "items": items}
    if isinstance(value, dict):
        guard.enter(value, key=key)
        members: dict[str, Any] = {}
        for name, item in value.items():
            if not isinstance(name, str):
                raise UnsupportedTypeError(
                    f"cannot store {key!r}: dict keys must be str, got {type(name).__name__} {name!r}",
                    key=key,
                    got=type(name),
                )
            members[name] = _to_json(item, key=f"{key}/{name}", guard=guard)
        guard.leave(value)
        return {TAG: "dict", "items": members} if TAG in members else members
    raise UnsupportedTypeError(
        f"cannot store {key!r}: values of type {type(value).__qualname__} are not supported; "
        "store numpy arrays, numbers, str, bytes, None, lists or dicts of these",
        key=key,
        got=type(value),
    )


def _parse_float(item: Any) -> float:
    return _NONFINITE[item] if isinstance(item, str) else float(item)


def _array_from_data(
    data: Any, dtype: np.dtype[Any], shape: tuple[int, ...]
) -> np.ndarray[Any, Any]:
    kind = dtype.kind
    if kind == "c":
        flat = np.array(data, dtype=object).reshape(-1) if shape else [data]
        values = [complex(_parse_float(z["real"]), _parse_float(z["imag"])) for z in flat]
        return np.array(values, dtype=dtype).reshape(shape)
    if kind == "S":
        flat = np.array(data, dtype=object).reshape(-1) if shape else [data]
        return np.array([base64.b64decode(item) for item in flat], dtype=dtype).reshape(shape)
    if kind == "O":
        out = np.empty(shape, dtype=object)
        out[...] = np.array(data, dtype=object).reshape(shape) if shape else data
        return out
    if kind == "f":
        try:
            return np.array(data, dtype=dtype).reshape(shape)
        except ValueError:
            as_object = np.array(data, dtype=object).reshape(shape)
            parsed: np.ndarray[Any, Any] = np.vectorize(_parse_float, otypes=[dtype])(as_object)
            return parsed.reshape(shape)
    return np.array(data, dtype=dtype).reshape(shape)


def from_json(obj: Any, *, path: str = "<json>") -> Any:
    """Rebuild the value written by `to_json`; a malformed tag raises `CorruptedFileError`."""
    try:
        return _from_json(obj, path=path)
    except RecursionError as err:
        raise CorruptedFileError(
            f"{path}: values nest too deeply to be a holdall document", path=path
        ) from err


def _from_json(obj: Any, *, path: str) -> Any:
    if isinstance(obj, list):
        return [_from_json(item, path=path) for item in obj]
    if not isinstance(obj, dict):
        return obj
    tag = obj.get(TAG)
    if tag is None:
        return {name: _from_json(item, path=path) for name, item in obj.items()}
    try:
        if tag == "ndarray":
            return _array_from_data(obj["data"], np.dtype(obj["dtype"]), tuple(obj["shape"]))
        if tag == "numpy":
            return _array_from_data(obj["data"], np.dtype(obj["dtype"]), ())[()]
        if tag == "float":
            return _NONFINITE[obj["value"]]
        if tag == "complex":
            return complex(_parse_float(obj["real"]), _parse_float(obj["imag"]))
        if tag == "bytes":
            return base64.b64decode(obj["base64"])
        if tag == "tuple":
            return tuple(_from_json(item, path=path) for item in obj["items"])
        if tag == "dict":
            return {name: _from_json(item, path=path) for name, item in obj["items"].items()}
    except (KeyError, TypeError, ValueError) as err:
        raise CorruptedFileError(f"{path}: malformed {tag!r} value: {err}", path=path) from err
    raise CorruptedFileError(f"{path}: unknown value tag {tag!r}", path=path)


def dump_json(value: Any, handle: BinaryIO, *, key: str = "value") -> int:
    """Write `value` as one JSON document (UTF-8, newline-terminated) to `handle`.

    Returns the number of bytes written. The text is what ``json.dumps(to_json(value))``
    gives, standard JSON (no NaN literals).
    """
    payload = (json.dumps(to_json(value, key=key), allow_nan=False) + "\n").encode()
    handle.write(payload)
    return len(payload)


def load_json(path: Path) -> Any:
    """Parse the JSON file `path` (UTF-8); damage of any kind raises `CorruptedFileError`."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise CorruptedFileError(
            f"{path} is not UTF-8 text (byte {err.start}: {err.object[err.start : err.start + 1]!r}); "
            "the file is damaged",
            path=str(path),
        ) from err
    except json.JSONDecodeError as err:
        raise CorruptedFileError(f"{path} is not valid JSON: {err}", path=str(path)) from err
    except RecursionError as err:
        raise CorruptedFileError(
            f"{path} nests too deeply to be a holdall document", path=str(path)
        ) from err
