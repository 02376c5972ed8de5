"""Run and experiment fields as JSON for the record, with DataStores replaced by their URLs.

Plain JSON values (None, bool, int, finite float, str, lists, dicts with ``str`` keys) are
written as they are, so the record stays readable with DuckDB's JSON functions. Other values
carry a one-key tag (``{"$tuple": [...]}``, ``{"$datastorepack": ["file:///...", 3]}`` for
the fourth DataStore of the object one persist wrote...). Large values
belong in a DataStore: numpy arrays are kept inline only up to `INLINE_ARRAY_BYTES`.
"""

from __future__ import annotations

import base64
import datetime
import math
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from holdall.errors import CorruptedFileError, UnsupportedTypeError
from holdall.objects._bunch import Bunch
from holdall.objects._datastore import DataStore, DataStoreIO

__all__ = ["INLINE_ARRAY_BYTES", "decode_fields", "encode_fields", "scalar_value"]

#: The largest numpy array kept inside a record; larger ones must go in a DataStore.
INLINE_ARRAY_BYTES = 1 << 20

_RAW_KINDS = frozenset("biufcSUmM")

#: Writes a DataStore; returns its URL, or (URL of a pack, index in it).
WriteDataStore = Callable[[DataStore, str], "str | tuple[str, int]"]
#: Reads the DataStore at a URL (index None) or at an index of the pack at that URL.
ReadDataStore = Callable[[str, "int | None"], DataStore]


def encode_fields(fields: dict[str, Any], *, where: str, store: WriteDataStore) -> Any:
    """The JSON-able form of `fields`; each DataStore is written with `store`, which returns its URL."""
    return _encode(dict(fields), where, store)


def _encode(value: Any, where: str, store: WriteDataStore) -> Any:
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return value if math.isfinite(value) else {"$float": repr(value)}
    if kind is list:
        return [_encode(item, f"{where}[{index}]", store) for index, item in enumerate(value)]
    if kind is DataStore:
        reference = store(value, where)
        if isinstance(reference, str):
            return {"$datastore": reference}
        return {"$datastorepack": list(reference)}
    if kind is DataStoreIO:
        return {"$datastoreio": value.url}
    if kind is dict or kind is Bunch:
        if all(type(key) is str and not key.startswith("$") for key in value):
            encoded = {key: _encode(item, f"{where}.{key}", store) for key, item in value.items()}
            return encoded if kind is dict else {"$bunch": encoded}
        pairs = [
            [_encode(k, f"{where} key", store), _encode(v, f"{where}[{k!r}]", store)]
            for k, v in value.items()
        ]
        return {"$dict" if kind is dict else "$bunchpairs": pairs}
    if kind in (tuple, set, frozenset):
        items = [_encode(item, f"{where}[{index}]", store) for index, item in enumerate(value)]
        return {f"${kind.__name__}": items}
    if kind is complex:
        return {"$complex": [repr(value.real), repr(value.imag)]}
    if kind is uuid.UUID:
        return {"$uuid": str(value)}
    if kind is datetime.datetime:
        return {"$datetime": value.isoformat()}
    if kind is datetime.date:
        return {"$date": value.isoformat()}
    if isinstance(value, np.generic) and value.dtype.kind in _RAW_KINDS:
        return {"$np": [value.dtype.str, value.tobytes().hex()]}
    if kind is np.ndarray and value.dtype.kind in _RAW_KINDS and value.dtype.fields is None:
        if value.nbytes > INLINE_ARRAY_BYTES:
            raise UnsupportedTypeError(
                f"cannot keep field {where} in the record: a {value.nbytes}-byte array is larger "
                f"than the {INLINE_ARRAY_BYTES} bytes kept inline; put it in a DataStore "
                f"(run.fields.ds = DataStore(); run.fields.ds.x = array)",
                key=where,
                got=type(value),
            )
        data = base64.b64encode(np.ascontiguousarray(value).tobytes()).decode()
        return {"$ndarray": [value.dtype.str, list(value.shape), data]}
    raise UnsupportedTypeError(
        f"cannot keep field {where} of type {kind.__module__}.{kind.__qualname__} in the record; "
        "fields hold None, bool, numbers, str, lists, tuples, dicts, small numpy arrays and "
        "DataStores: put other values (tables, large arrays, objects) in a DataStore",
        key=where,
        got=kind,
    )


def decode_fields(encoded: Any, *, where: str, load: ReadDataStore) -> Bunch:
    """Rebuild a fields Bunch from its JSON form; each DataStore URL is read with `load`."""
    value = _decode(encoded, where, load)
    if not isinstance(value, dict):
        raise CorruptedFileError(f"{where}: fields are not a dict in the record", path=where)
    return Bunch(value)


def _decode(value: Any, where: str, load: ReadDataStore) -> Any:
    if isinstance(value, list):
        return [_decode(item, where, load) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1 or not next(iter(value)).startswith("$"):
        return {key: _decode(item, where, load) for key, item in value.items()}
    ((tag, body),) = value.items()
    try:
        if tag == "$float":
            return float(body)
        if tag == "$datastore":
            return load(body, None)
        if tag == "$datastorepack":
            url, index = body
            if not isinstance(url, str) or type(index) is not int:
                raise TypeError(f"a pack reference is [url, index], not {body!r}")
            return load(url, index)
        if tag == "$datastoreio":
            return DataStoreIO(body)
        if tag == "$bunch":
            return Bunch({key: _decode(item, where, load) for key, item in body.items()})
        if tag in ("$dict", "$bunchpairs"):
            pairs = {_decode(k, where, load): _decode(v, where, load) for k, v in body}
            return pairs if tag == "$dict" else Bunch(pairs)
        if tag in ("$tuple", "$set", "$frozenset"):
            items = [_decode(item, where, load) for item in body]
            return {"$tuple": tuple, "$set": set, "$frozenset": frozenset}[tag](items)
        if tag == "$complex":
            return complex(float(body[0]), float(body[1]))
        if tag == "$uuid":
            return uuid.UUID(body)
        if tag == "$datetime":
            return datetime.datetime.fromisoformat(body)
        if tag == "$date":
            return datetime.date.fromisoformat(body)
        if tag == "$np":
            return np.frombuffer(bytes.fromhex(body[1]), dtype=np.dtype(body[0]))[0]
        if tag == "$ndarray":
            dtype, shape, data = np.dtype(body[0]), tuple(body[1]), base64.b64decode(body[2])
            return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    except (TypeError, ValueError, KeyError, IndexError) as err:
        raise CorruptedFileError(
            f"{where}: unreadable field value {str(value)[:200]}", path=where
        ) from err
    raise CorruptedFileError(f"{where}: unknown field tag {tag!r}", path=where)


def scalar_value(value: Any) -> tuple[bool, Any]:
    """(True, plain Python scalar) when `value` belongs in a DataFrame of scalar fields."""
    if value is None or type(value) in (bool, int, float, str):
        return True, value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return True, value.item()
    return False, None
