"""Validation and encoding of workspace records: JSON fields, scores, prediction arrays.

Everything a caller passes is checked here before anything is written, so bad input
raises a holdall error and leaves the store untouched. Prediction arrays are normalized
to flat numpy buffers plus a layout (dtype and shape per array) so they can be inserted as
native DuckDB list columns in one Arrow batch and rebuilt with their original dtypes.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from holdall._core.keys import validate_name
from holdall.errors import InvalidValueError

__all__ = [
    "ARRAY_NAMES",
    "EXACT_INT_LIMIT",
    "INT32_MAX",
    "INT32_MIN",
    "PREDICTION_FIELDS",
    "FieldSpec",
    "PreparedArrays",
    "array_value_type",
    "arrays_table",
    "list_column",
    "layout_json",
    "decode_arrays",
    "dump_json",
    "new_id",
    "new_ids",
    "load_json",
    "parse_int",
    "parse_name",
    "parse_score",
    "parse_text",
    "prediction_values",
    "prepare_arrays",
    "prepare_one",
    "utc_now",
    "utc_now_us",
]

ARRAY_NAMES = ("y_true", "y_pred", "y_proba", "sample_indices", "weights")
"""The prediction arrays, in column order; ``sample_indices`` is stored as BIGINT[]."""

EXACT_INT_LIMIT = 2**53
"""Largest integer magnitude a float64 holds exactly."""


def utc_now() -> datetime:
    """The current UTC time as a naive datetime (how every timestamp is stored)."""
    return datetime.now(UTC).replace(tzinfo=None)


def utc_now_us() -> int:
    """The current UTC time in microseconds since the epoch (a cheap row timestamp).

    A ``TIMESTAMP`` column built with `rows_table` accepts it as well as a datetime; it
    costs a tenth of `utc_now`, which counts on the one-at-a-time save path.
    """
    return time.time_ns() // 1000


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_DASHES_AT = (8, 13, 18, 23)  # positions of "-" in the 36-character UUID text


def new_ids(count: int) -> np.ndarray:
    """`count` new random UUID4 strings, as a fixed-width bytes array (``S36``).

    Built from one ``os.urandom`` read with numpy: about 50x faster than ``uuid.uuid4()`` per
    id, which matters when a bulk save creates tens of thousands of records.
    """
    raw = np.frombuffer(os.urandom(16 * count), dtype=np.uint8).reshape(count, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    text = np.empty((count, 36), dtype=np.uint8)
    digits = np.empty((count, 32), dtype=np.uint8)
    digits[:, 0::2] = _HEX_DIGITS[raw >> 4]
    digits[:, 1::2] = _HEX_DIGITS[raw & 0x0F]
    text[:, list(_DASHES_AT)] = ord("-")
    text[:, [i for i in range(36) if i not in _DASHES_AT]] = digits
    return text.view("S36").reshape(count)


class _IdPool:
    """Pre-generated ids for one-at-a-time saves, refilled in blocks and emptied on fork.

    A forked child must never hand out an id its parent also holds, hence the reset.
    """

    def __init__(self, block: int = 4096) -> None:
        self._block = block
        self._ids: list[str] = []
        os.register_at_fork(after_in_child=self._ids.clear)

    def take(self) -> str:
        try:
            return self._ids.pop()
        except IndexError:
            text = new_ids(self._block).tobytes().decode("ascii")
            self._ids.extend(text[i : i + 36] for i in range(0, len(text), 36))
            return self._ids.pop()


new_id = _IdPool().take
"""A new record id (a UUID4 string, as nirs4all's ids)."""


def _json_default(value: Any) -> Any:
    """numpy values as numbers and lists; any other object as its ``str()``, as nirs4all
    0.7.1 stores it (its refit pass puts a splitter object in a pipeline's config)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


_ENCODE_JSON = json.JSONEncoder(allow_nan=False, default=_json_default).encode
"""Strict JSON encoding, built once (``json.dumps`` with options builds an encoder per call)."""


def dump_json(value: Any, *, what: str) -> str | None:
    """Encode `value` as strict JSON (None stays NULL); NaN and infinities are refused."""
    if value is None:
        return None
    if value == {}:
        return "{}"
    try:
        return _ENCODE_JSON(value)
    except ValueError as err:
        raise InvalidValueError(
            f"{what} contains NaN or an infinity, which JSON cannot hold; "
            "store None for a missing value",
            key=what,
            got=value,
        ) from err


def load_json(text: str | None) -> Any:
    """Decode a JSON column (NULL becomes None)."""
    return None if text is None else json.loads(text)


_CHECKED_NAMES: set[str] = set()
"""Names already validated (a run uses a handful of dataset names thousands of times)."""


def parse_name(value: object, *, what: str) -> str:
    """A name that may become part of a file name: one path segment, no separators."""
    if type(value) is str and value in _CHECKED_NAMES:
        return value
    name = validate_name(value, what=what)
    if len(_CHECKED_NAMES) < 4096:
        _CHECKED_NAMES.add(name)
    return name


def parse_text(value: object, *, what: str, optional: bool = False) -> str | None:
    """A free-text string field (None allowed only when `optional`)."""
    if type(value) is str or (value is None and optional):
        return value
    if not isinstance(value, str):
        raise InvalidValueError(
            f"{what} must be a str, got {type(value).__name__} {value!r:.80}",
            key=what,
            expected="str",
            got=value,
        )
    return value


def parse_int(
    value: object,
    *,
    what: str,
    optional: bool = False,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    """An integer field (numpy integers accepted, bools refused), within optional bounds."""
    if value is None and optional:
        return None
    if (
        type(value) is int
        and (minimum is None or value >= minimum)
        and (maximum is None or value <= maximum)
    ):
        return value
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidValueError(
            f"{what} must be an int, got {type(value).__name__} {value!r:.80}",
            key=what,
            expected="int",
            got=value,
        )
    if minimum is not None and value < minimum:
        raise InvalidValueError(
            f"{what} must be >= {minimum}, got {value}",
            key=what,
            expected=f">= {minimum}",
            got=value,
        )
    if maximum is not None and value > maximum:
        raise InvalidValueError(
            f"{what} must be <= {maximum} (a 32-bit column), got {value}",
            key=what,
            expected=f"<= {maximum}",
            got=value,
        )
    return int(value)


def parse_score(value: object, *, what: str) -> float | None:
    """A score: a finite float, or None when absent. NaN and infinities are refused."""
    if value is None or (type(value) is float and math.isfinite(value)):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InvalidValueError(
            f"{what} must be a float or None, got {type(value).__name__} {value!r:.80}",
            key=what,
            expected="float | None",
            got=value,
        )
    number = float(value)
    if not math.isfinite(number):
        raise InvalidValueError(
            f"{what} is {number}; scores must be finite (store None for a missing score)",
            key=what,
            expected="finite float",
            got=number,
        )
    return number


@dataclass(frozen=True, slots=True)
class PreparedArrays:
    """The arrays of one prediction, flattened and checked, ready to insert."""

    prediction_id: str
    """The prediction they belong to."""
    flat: dict[str, np.ndarray | None]
    """Per array name: the flat values (float64, or int64 for sample_indices), or None."""
    layout: str
    """JSON ``{name: {"dtype": str, "shape": [...]}}`` to rebuild the original arrays."""


ANY_LENGTH = frozenset({"weights"})
"""Arrays whose length need not be `n_samples`: nirs4all 0.7.1 stores the fold weights of an
averaged prediction (one per fold) in `weights`."""


def prepare_one(
    name: str, value: object, n_samples: int
) -> tuple[np.ndarray, str, tuple[int, ...]]:
    """Check one prediction array; return its flat copy, original dtype and shape."""
    if (
        type(value) is np.ndarray
        and value.dtype == np.float64
        and value.ndim == 1
        and value.shape[0] == n_samples
        and name != "sample_indices"
    ):  # the common case, checked in a few comparisons
        return value.copy(), value.dtype.str, value.shape
    try:
        array = np.asarray(value)
    except ValueError as err:  # ragged nested lists
        raise InvalidValueError(
            f"{name} is ragged (rows of different lengths); it must be a rectangular array",
            key=name,
        ) from err
    kind = array.dtype.kind
    if kind not in "biuf":
        raise InvalidValueError(
            f"{name} must hold bool, integer or float values, got dtype {array.dtype}",
            key=name,
            expected="bool, int, uint or float dtype",
            got=str(array.dtype),
        )
    if name == "sample_indices" and kind not in "iu":
        raise InvalidValueError(
            f"sample_indices must be integers, got dtype {array.dtype}",
            key=name,
            expected="integer dtype",
            got=str(array.dtype),
        )
    if array.ndim == 0 or (name not in ANY_LENGTH and array.shape[0] != n_samples):
        got = "a scalar" if array.ndim == 0 else f"shape {array.shape}"
        raise InvalidValueError(
            f"{name} must have one row per sample (n_samples={n_samples}), got {got}",
            key=name,
            expected=n_samples,
            got=array.shape,
        )
    target = np.int64 if name == "sample_indices" else np.float64
    if kind in "iu" and array.size and array.dtype.itemsize == 8:
        limit = np.iinfo(np.int64).max if target is np.int64 else EXACT_INT_LIMIT
        if int(array.max()) > limit or int(array.min()) < -limit:
            raise InvalidValueError(
                f"{name} holds integers beyond +-{limit}, which would not round-trip exactly",
                key=name,
                expected=f"|values| <= {limit}",
                got=(int(array.min()), int(array.max())),
            )
    # A copy even when the dtype matches: the caller may reuse its buffer before the flush.
    flat = np.array(array, dtype=target, order="C").reshape(-1)
    return flat, array.dtype.str, array.shape


def prepare_arrays(
    prediction_id: str, n_samples: int, arrays: Mapping[str, object]
) -> PreparedArrays:
    """Check the arrays of one prediction against its `n_samples` and flatten them.

    Raises
    ------
    InvalidValueError
        For a non-numeric dtype, a length other than `n_samples` (but for `ANY_LENGTH`), or
        integers a float64 cannot hold exactly.
    """
    flat: dict[str, np.ndarray | None] = {}
    layout: list[tuple[str, str, tuple[int, ...]]] = []
    for name in ARRAY_NAMES:
        value = arrays.get(name)
        if value is None:
            flat[name] = None
            continue
        flat[name], dtype, shape = prepare_one(name, value, n_samples)
        layout.append((name, dtype, shape))
    return PreparedArrays(prediction_id, flat, layout_json(tuple(layout)))


@functools.lru_cache(maxsize=1024)
def layout_json(layout: tuple[tuple[str, str, tuple[int, ...]], ...]) -> str:
    """The layout JSON; cached, since a run saves thousands of arrays of a few layouts."""
    return json.dumps(
        {name: {"dtype": dtype, "shape": list(shape)} for name, dtype, shape in layout}
    )


def list_column(
    lengths: np.ndarray, flat: np.ndarray, valid: np.ndarray, value_type: pa.DataType
) -> pa.Array:
    """An Arrow list column from per-row lengths (0 for a null row), the concatenated
    values and the per-row validity."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.LargeListArray.from_arrays(
        pa.array(offsets), pa.array(flat, type=value_type), mask=pa.array(~valid)
    )


def array_value_type(name: str) -> pa.DataType:
    """The Arrow value type an array column is stored with."""
    return pa.int64() if name == "sample_indices" else pa.float64()


def arrays_table(batch: list[PreparedArrays]) -> pa.Table:
    """The ``prediction_arrays`` rows of `batch` as one Arrow table (list columns)."""
    columns: dict[str, pa.Array] = {"prediction_id": pa.array([p.prediction_id for p in batch])}
    for name in ARRAY_NAMES:
        values = [p.flat[name] for p in batch]
        valid = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
        lengths = np.fromiter((0 if v is None else v.size for v in values), np.int64, len(values))
        present = [v for v in values if v is not None]
        flat = np.concatenate(present) if present else np.empty(0)
        columns[name] = list_column(lengths, flat, valid, array_value_type(name))
    columns["layout"] = pa.array([p.layout for p in batch])
    return pa.table(columns)


def decode_arrays(layout: str, flats: Mapping[str, Any]) -> dict[str, np.ndarray | None]:
    """Rebuild the numpy arrays (original dtype and shape) of one prediction.

    `layout` is the row's JSON layout; `flats` maps each array name to its flat values
    (a numpy array, a list, or None).
    """
    result: dict[str, np.ndarray | None] = dict.fromkeys(ARRAY_NAMES)
    for name, dtype, shape in _parsed_layout(layout):
        flat = flats.get(name)
        if flat is not None:
            array = np.asarray(flat).astype(dtype, copy=False)
            result[name] = array if array.shape == shape else array.reshape(shape)
    return result


@functools.lru_cache(maxsize=1024)
def _parsed_layout(text: str) -> tuple[tuple[str, np.dtype[Any], tuple[int, ...]], ...]:
    """A layout JSON as (name, dtype, shape) triples; cached, since layouts repeat."""
    return tuple(
        (name, np.dtype(spec["dtype"]), tuple(spec["shape"]))
        for name, spec in json.loads(text).items()
    )


INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
"""Bounds of an INTEGER column."""

_REQUIRED = object()


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One caller-given column of the ``predictions`` table and how its values are checked."""

    name: str
    kind: Literal["text", "name", "score", "int", "json"]
    """text: any str; name: one path segment; score: finite float; int: 32-bit int; json."""
    optional: bool = False
    """None is allowed (NULL)."""
    default: object = _REQUIRED
    """The value when a record omits the field (required fields have none)."""

    def value_in(self, fields: Mapping[str, Any]) -> object:
        """This field's value in a record; `InvalidValueError` when a required one is absent."""
        if self.default is _REQUIRED:
            try:
                return fields[self.name]
            except KeyError:
                raise InvalidValueError(
                    f"prediction record lacks the field {self.name!r}", key=self.name
                ) from None
        return fields.get(self.name, self.default)

    def parse(self, value: object) -> Any:
        """Check one value exactly; raise the holdall error naming this field."""
        what = self.name
        if self.kind == "text":
            return parse_text(value, what=what, optional=self.optional)
        if self.kind == "name":
            return parse_name(value, what=what)
        if self.kind == "int":
            minimum = INT32_MIN if self.optional else 0  # counts are >= 0; branch ids any int
            return parse_int(
                value, what=what, optional=self.optional, minimum=minimum, maximum=INT32_MAX
            )
        if self.kind == "json":
            return dump_json(value, what=what)
        number = parse_score(value, what=what)
        if number is None and not self.optional:
            raise InvalidValueError(f"{what} must be a float, got None", key=what)
        return number


PREDICTION_FIELDS = (
    FieldSpec("pipeline_id", "text"),
    FieldSpec("chain_id", "text", optional=True),
    FieldSpec("dataset_name", "name"),
    FieldSpec("model_name", "text"),
    FieldSpec("model_class", "text"),
    FieldSpec("fold_id", "text"),
    FieldSpec("partition", "text"),
    FieldSpec("val_score", "score", optional=True),
    FieldSpec("test_score", "score", optional=True),
    FieldSpec("train_score", "score", optional=True),
    FieldSpec("metric", "text"),
    FieldSpec("task_type", "text"),
    FieldSpec("n_samples", "int"),
    FieldSpec("n_features", "int"),
    FieldSpec("scores", "json", optional=True),
    FieldSpec("best_params", "json", optional=True),
    FieldSpec("preprocessings", "text", optional=True, default=""),
    FieldSpec("branch_id", "int", optional=True),
    FieldSpec("branch_name", "text", optional=True),
    FieldSpec("exclusion_count", "int"),
    FieldSpec("exclusion_rate", "score"),
    FieldSpec("refit_context", "text", optional=True, default=None),
)
"""The arguments of ``save_prediction``, in ``predictions`` column order (after the
generated ``prediction_id``; ``created_at`` comes between the last two, rows are inserted by
column name)."""


_PLAIN_TYPES: dict[str, frozenset[type]] = {
    "text": frozenset({str}),
    "name": frozenset({str}),
    "score": frozenset({float, int}),
    "int": frozenset({int}),
    "json": frozenset({dict, list, str, int, float, bool}),
}
"""Per field kind, the Python types `prediction_values` accepts without the full parser."""

_AT = {
    kind: tuple(i for i, s in enumerate(PREDICTION_FIELDS) if s.kind == kind)
    for kind in _PLAIN_TYPES
}
_PLAIN_SIGNATURES: set[tuple[type, ...]] = set()
"""Type signatures of records already found plain (a run uses very few)."""


def _plain_signature(values: Sequence[object]) -> bool:
    signature = tuple(map(type, values))
    if signature in _PLAIN_SIGNATURES:
        return True
    plain = all(
        kind in _PLAIN_TYPES[spec.kind] or (kind is type(None) and spec.optional)
        for spec, kind in zip(PREDICTION_FIELDS, signature, strict=True)
    )
    if plain and len(_PLAIN_SIGNATURES) < 256:
        _PLAIN_SIGNATURES.add(signature)
    return plain


_INT_LOW = tuple((i, INT32_MIN if PREDICTION_FIELDS[i].optional else 0) for i in _AT["int"])
"""Lower bound of each integer field: counts are >= 0, branch ids any 32-bit int."""


def prediction_values(values: Sequence[Any]) -> list[Any]:
    """Check the values of one record, given in `PREDICTION_FIELDS` order.

    Records of plain Python types (the common case) are checked with a few comparisons;
    anything else goes through each field's exact parser, which names what is wrong.

    Raises
    ------
    InvalidValueError
        For a wrong type, a NaN or infinite score, an out-of-range integer.
    InvalidKeyError
        For a dataset name that is not a single path segment.
    """
    if (
        _plain_signature(values)
        and all(values[i] is None or math.isfinite(values[i]) for i in _AT["score"])
        and all(values[i] is None or low <= values[i] <= INT32_MAX for i, low in _INT_LOW)
        and all(values[i] in _CHECKED_NAMES for i in _AT["name"])
    ):
        checked = list(values)
        for i in _AT["json"]:
            checked[i] = dump_json(values[i], what=PREDICTION_FIELDS[i].name)
        return checked
    return [spec.parse(value) for spec, value in zip(PREDICTION_FIELDS, values, strict=True)]
