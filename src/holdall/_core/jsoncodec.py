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
import re
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from holdall._core.values import NestingGuard, parse_array
from holdall.errors import CorruptedFileError, UnsupportedTypeError

__all__ = ["BLOCK_ELEMENTS", "dump_json", "from_json", "load_json", "read_value", "to_json"]

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
        array = _shortest_doubles(array)
    if array.size and not np.isfinite(array).all():
        as_object = array.astype(object)
        flat = as_object.reshape(-1)
        for index, item in enumerate(flat):
            flat[index] = _float_to_json(item)
        return as_object.tolist()
    return array.tolist()


#: Significant digits that always suffice to read a float16 / float32 back exactly.
_MAX_DIGITS = {2: 5, 4: 9}
#: Below this many elements numpy's own text is cheaper than the vectorized search's setup.
_VECTORIZED_MIN_SIZE = 512
_POW10 = np.array([float(10**n) for n in range(23)])  # each exact in float64


def _power_of_ten(exponent: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    positive = _POW10[np.clip(exponent, 0, 22)]
    powers: np.ndarray[Any, Any] = np.where(
        exponent >= 0, positive, 1.0 / _POW10[np.clip(-exponent, 0, 22)]
    )
    return powers


def _shortest_doubles(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """float64 values whose ``repr`` is the shortest decimal reading back to each float16/32.

    The same values as ``array.astype(str).astype(np.float64)`` (numpy's shortest text, read
    back), at a fraction of its cost: for every element in 1e-13..1e13 it tries 1, 2, ...
    significant digits, keeping at each count the nearest decimal that reads back exactly
    (ties to even, as numpy). Zeros, tiny, huge and non-finite elements go through numpy's
    text. Each candidate ``m * 10**-j`` is an exact division or product of exact doubles
    (``|j| <= 22``), hence the double nearest to that decimal. Small arrays use numpy's text.
    """
    if array.size < _VECTORIZED_MIN_SIZE:
        return array.astype(str).astype(np.float64)
    flat = array.reshape(-1)
    wide = flat.astype(np.float64)
    out = np.empty_like(wide)
    magnitude = np.abs(wide)
    fast = (magnitude > 1e-13) & (magnitude < 1e13)
    if not fast.all():
        out[~fast] = flat[~fast].astype(str).astype(np.float64)
    index = np.flatnonzero(fast)
    values, target, size = wide[index], flat[index], magnitude[index]
    exponent = np.floor(np.log10(size)).astype(np.int64)
    exponent += size >= _power_of_ten(exponent + 1)
    exponent -= size < _power_of_ten(exponent)
    with np.errstate(over="ignore"):  # a float16 candidate past 65504 is inf: not a match
        for digits in range(1, _MAX_DIGITS[array.dtype.itemsize] + 1):
            if not index.size:
                break
            shift = digits - 1 - exponent
            up = shift >= 0
            scale = _POW10[np.abs(shift)]
            scaled = np.where(up, values * scale, values / scale)
            nearest = np.round(scaled)  # half to even, as numpy's own ties
            best = np.zeros_like(values)
            best_error = np.full(values.shape, np.inf)
            for delta in (0.0, -1.0, 1.0):  # the nearest first, so that it wins ties
                candidate = nearest + delta
                decimal = np.where(up, candidate / scale, candidate * scale)
                error = np.abs(candidate - scaled)
                better = (decimal.astype(array.dtype) == target) & (error < best_error)
                best = np.where(better, decimal, best)
                best_error = np.where(better, error, best_error)
            found = np.isfinite(best_error)
            out[index[found]] = best[found]
            keep = ~found
            index, values, target, exponent = (
                index[keep],
                values[keep],
                target[keep],
                exponent[keep],
            )
    return out.reshape(array.shape)


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


#: Arrays with more elements than this are written and read in blocks of about this many
#: elements (`dump_json`, `load_json`): memory stays bounded by the block, not the array.
BLOCK_ELEMENTS = 1 << 16


def dump_json(value: Any, handle: BinaryIO, *, key: str = "value") -> int:
    """Write `value` as one JSON document (UTF-8, newline-terminated) to `handle`.

    Returns the number of bytes written. The text is exactly ``json.dumps(to_json(value))``
    plus a newline (standard JSON, no NaN literals), but an array of more than
    `BLOCK_ELEMENTS` elements is written block by block along its first axes, so memory
    stays bounded by a block however large the array.
    """
    if not (
        isinstance(value, np.ndarray) and value.ndim and value.size > BLOCK_ELEMENTS
    ) or isinstance(value, np.ma.MaskedArray):
        payload = (json.dumps(to_json(value, key=key), allow_nan=False) + "\n").encode()
        handle.write(payload)
        return len(payload)
    array = parse_array(value, key=key)
    header = json.dumps({TAG: "ndarray", "dtype": array.dtype.str, "shape": list(array.shape)})
    written = handle.write(f'{header[:-1]}, "data": '.encode())
    written += _dump_nested(array, handle)
    return written + handle.write(b"}\n")


def _dump_nested(array: np.ndarray[Any, Any], handle: BinaryIO) -> int:
    """Write `array` (1-d or more) as nested JSON lists, a block of rows at a time."""
    row_size = math.prod(array.shape[1:])
    if row_size > BLOCK_ELEMENTS:  # one row is too large already: recurse into it
        written = handle.write(b"[")
        for index in range(array.shape[0]):
            if index:
                written += handle.write(b", ")
            written += _dump_nested(array[index], handle)
        return written + handle.write(b"]")
    rows = max(1, BLOCK_ELEMENTS // max(row_size, 1))
    written = handle.write(b"[")
    for start in range(0, array.shape[0], rows):
        if start:
            written += handle.write(b", ")
        written += handle.write(_block_text(array[start : start + rows]).encode())
    return written + handle.write(b"]")


def _block_text(block: np.ndarray[Any, Any]) -> str:
    """The JSON text of the rows of `block`, without the enclosing brackets."""
    return json.dumps(_array_data(block), allow_nan=False)[1:-1]


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


#: Files larger than this are first tried as one numeric array read with numpy (`read_value`).
_LARGE_FILE_BYTES = 1 << 20
_READ_BYTES = 1 << 20
_ARRAY_HEADER = re.compile(
    rb'\{"__holdall__": "ndarray", "dtype": "([<>|][fiu][0-9]+)", "shape": \[([0-9, ]*)\], "data": '
)


def read_value(path: Path) -> Any:
    """The value of the JSON file `path`, as `from_json` rebuilds it.

    A large file holding one int or float array (what `dump_json` writes for big arrays) is
    parsed with numpy block by block into the result, about its size in memory, instead of
    through Python lists (about ten times the array's bytes).
    """
    if path.stat().st_size > _LARGE_FILE_BYTES:
        with open(path, "rb") as handle:
            array = _read_numeric_array(handle, path)
        if array is not None:
            return array
    return from_json(load_json(path), path=str(path))


def _read_numeric_array(handle: BinaryIO, path: Path) -> np.ndarray[Any, Any] | None:
    """Parse an int/float array document with numpy; None when it is another kind of document."""
    head = handle.read(4096)
    match = _ARRAY_HEADER.match(head)
    if match is None:
        return None
    dtype = np.dtype(match.group(1).decode())
    shape = tuple(int(n) for n in match.group(2).split(b",") if n.strip())
    size = math.prod(shape)
    if not shape or size == 0:
        return None
    parse_dtype = np.dtype(
        np.float64 if dtype.kind == "f" else np.uint64 if dtype.kind == "u" else np.int64
    )
    out = np.empty(size, dtype=dtype.newbyteorder("="))
    filled = 0
    brackets = 0
    pending = head[match.end() :]
    while True:
        chunk = handle.read(_READ_BYTES)
        buffer = pending + chunk
        if b'"' in buffer:
            return None  # NaN or infinities, written as strings: the JSON path reads those
        cut = buffer.rfind(b",") if chunk else len(buffer)
        if chunk and cut < 0:
            pending = buffer
            continue
        text, pending = buffer[:cut], buffer[cut + 1 :]
        if not chunk:
            if not text.endswith(b"}\n"):
                raise CorruptedFileError(f"{path}: the array document is truncated", path=str(path))
            text = text[:-2]
        brackets += text.count(b"[") + text.count(b"]")
        values = _parse_numbers(text.translate(None, b"[]"), parse_dtype, path)
        if filled + values.size <= size:
            out[filled : filled + values.size] = _in_range(values, dtype, path)
        filled += values.size
        if not chunk or filled > size:
            break
    expected_brackets = 2 * sum(math.prod(shape[:depth]) for depth in range(len(shape)))
    if filled != size or brackets != expected_brackets:
        raise CorruptedFileError(
            f"{path}: the array data does not match its shape {list(shape)} (found "
            f"{filled}{' or more' if chunk else ''} values and {brackets} brackets, expected "
            f"{size} values and {expected_brackets} brackets)",
            path=str(path),
        )
    return out.reshape(shape).astype(dtype, copy=False)


def _parse_numbers(text: bytes, dtype: np.dtype[Any], path: Path) -> np.ndarray[Any, Any]:
    if not text.strip():
        return np.empty(0, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            return np.fromstring(text, dtype=dtype, sep=",")
        except (DeprecationWarning, ValueError) as err:
            raise CorruptedFileError(
                f"{path}: the array data holds something that is not a number: {err}",
                path=str(path),
            ) from err


def _in_range(
    values: np.ndarray[Any, Any], dtype: np.dtype[Any], path: Path
) -> np.ndarray[Any, Any]:
    if dtype.kind in "iu" and values.size and values.dtype != dtype.newbyteorder("="):
        info = np.iinfo(dtype)
        if values.min() < info.min or values.max() > info.max:
            raise CorruptedFileError(
                f"{path}: a value lies outside the range of {dtype}", path=str(path)
            )
    return values
