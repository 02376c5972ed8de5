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
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from holdall._core.keys import validate_name
from holdall.errors import InvalidValueError, UnsupportedTypeError

__all__ = [
    "ARRAY_NAMES",
    "PreparedArrays",
    "arrays_table",
    "decode_arrays",
    "dump_json",
    "new_id",
    "load_json",
    "parse_int",
    "parse_name",
    "parse_score",
    "parse_text",
    "prediction_row",
    "prepare_arrays",
    "utc_now",
]

ARRAY_NAMES = ("y_true", "y_pred", "y_proba", "sample_indices", "weights")
"""The prediction arrays, in column order; ``sample_indices`` is stored as BIGINT[]."""

_EXACT_INT_LIMIT = 2**53  # largest integer magnitude a float64 holds exactly


def utc_now() -> datetime:
    """The current UTC time as a naive datetime (how every timestamp is stored)."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_id() -> str:
    """A new record id (a UUID4 string, as nirs4all's ids)."""
    return str(uuid.uuid4())


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise UnsupportedTypeError(
        f"cannot store a {type(value).__name__} as JSON ({value!r:.80}); "
        "use str, int, float, bool, None, lists and dicts",
        got=type(value).__name__,
    )


def dump_json(value: Any, *, what: str) -> str | None:
    """Encode `value` as strict JSON (None stays NULL); NaN and infinities are refused."""
    if value is None:
        return None
    if value == {}:
        return "{}"
    try:
        return json.dumps(value, default=_json_default, allow_nan=False)
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


def parse_name(value: object, *, what: str) -> str:
    """A name that may become part of a file name: one path segment, no separators."""
    return validate_name(value, what=what)


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
    value: object, *, what: str, optional: bool = False, minimum: int | None = None
) -> int | None:
    """An integer field (numpy integers accepted, bools refused)."""
    if value is None and optional:
        return None
    if type(value) is int and (minimum is None or value >= minimum):
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


def _prepare_one(
    name: str, value: object, n_samples: int
) -> tuple[np.ndarray, str, tuple[int, ...]]:
    array = np.asarray(value)
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
    if array.ndim == 0 or array.shape[0] != n_samples:
        got = "a scalar" if array.ndim == 0 else f"shape {array.shape}"
        raise InvalidValueError(
            f"{name} must have one row per sample (n_samples={n_samples}), got {got}",
            key=name,
            expected=n_samples,
            got=array.shape,
        )
    target = np.int64 if name == "sample_indices" else np.float64
    if kind in "iu" and array.size and array.dtype.itemsize == 8:
        limit = np.iinfo(np.int64).max if target is np.int64 else _EXACT_INT_LIMIT
        if int(array.max()) > limit or int(array.min()) < -limit:
            raise InvalidValueError(
                f"{name} holds integers beyond +-{limit}, which would not round-trip exactly",
                key=name,
                expected=f"|values| <= {limit}",
                got=(int(array.min()), int(array.max())),
            )
    flat = np.ascontiguousarray(array, dtype=target).reshape(-1)
    return flat, array.dtype.str, array.shape


def prepare_arrays(
    prediction_id: str, n_samples: int, arrays: Mapping[str, object]
) -> PreparedArrays:
    """Check the arrays of one prediction against its `n_samples` and flatten them.

    Raises
    ------
    InvalidValueError
        For a non-numeric dtype, a length other than `n_samples`, or integers a float64
        cannot hold exactly.
    """
    flat: dict[str, np.ndarray | None] = {}
    layout: list[tuple[str, str, tuple[int, ...]]] = []
    for name in ARRAY_NAMES:
        value = arrays.get(name)
        if value is None:
            flat[name] = None
            continue
        flat[name], dtype, shape = _prepare_one(name, value, n_samples)
        layout.append((name, dtype, shape))
    return PreparedArrays(prediction_id, flat, _layout_json(tuple(layout)))


@functools.lru_cache(maxsize=1024)
def _layout_json(layout: tuple[tuple[str, str, tuple[int, ...]], ...]) -> str:
    """The layout JSON; cached, since a run saves thousands of arrays of a few layouts."""
    return json.dumps(
        {name: {"dtype": dtype, "shape": list(shape)} for name, dtype, shape in layout}
    )


def _list_column(values: list[np.ndarray | None], value_type: pa.DataType) -> pa.Array:
    """One Arrow list column from per-row flat arrays, built with one concatenation."""
    lengths = np.fromiter(
        (0 if v is None else v.size for v in values), dtype=np.int64, count=len(values)
    )
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    present = [v for v in values if v is not None]
    flat = np.concatenate(present) if present else np.empty(0)
    mask = pa.array(np.fromiter((v is None for v in values), dtype=bool, count=len(values)))
    return pa.LargeListArray.from_arrays(
        pa.array(offsets), pa.array(flat, type=value_type), mask=mask
    )


def arrays_table(batch: list[PreparedArrays]) -> pa.Table:
    """The ``prediction_arrays`` rows of `batch` as one Arrow table (list columns)."""
    columns: dict[str, pa.Array] = {"prediction_id": pa.array([p.prediction_id for p in batch])}
    for name in ARRAY_NAMES:
        value_type = pa.int64() if name == "sample_indices" else pa.float64()
        columns[name] = _list_column([p.flat[name] for p in batch], value_type)
    columns["layout"] = pa.array([p.layout for p in batch])
    return pa.table(columns)


def decode_arrays(row: dict[str, Any]) -> dict[str, np.ndarray | None]:
    """Rebuild the numpy arrays (original dtype and shape) from a fetched arrays row.

    `row` maps each array name to its flat numpy values (or None) and ``layout`` to the
    JSON layout.
    """
    layout = json.loads(row["layout"])
    result: dict[str, np.ndarray | None] = {}
    for name in ARRAY_NAMES:
        flat = row.get(name)
        if flat is None or name not in layout:
            result[name] = None
            continue
        spec = layout[name]
        result[name] = (
            np.asarray(flat).astype(np.dtype(spec["dtype"]), copy=False).reshape(spec["shape"])
        )
    return result


def prediction_row(fields: Mapping[str, Any]) -> tuple[Any, ...]:
    """Validate one prediction record (the arguments of save_prediction) into a table row.

    Raises
    ------
    InvalidValueError
        For a missing field, a wrong type, a NaN or infinite score.
    InvalidKeyError
        For a dataset name that is not a single path segment.
    """
    try:
        row = (
            new_id(),
            parse_text(fields["pipeline_id"], what="pipeline_id"),
            parse_text(fields["chain_id"], what="chain_id", optional=True),
            parse_name(fields["dataset_name"], what="dataset_name"),
            parse_text(fields["model_name"], what="model_name"),
            parse_text(fields["model_class"], what="model_class"),
            parse_text(fields["fold_id"], what="fold_id"),
            parse_text(fields["partition"], what="partition"),
            parse_score(fields["val_score"], what="val_score"),
            parse_score(fields["test_score"], what="test_score"),
            parse_score(fields["train_score"], what="train_score"),
            parse_text(fields["metric"], what="metric"),
            parse_text(fields["task_type"], what="task_type"),
            parse_int(fields["n_samples"], what="n_samples", minimum=0),
            parse_int(fields["n_features"], what="n_features", minimum=0),
            dump_json(fields["scores"], what="scores"),
            dump_json(fields["best_params"], what="best_params"),
            parse_text(fields.get("preprocessings", ""), what="preprocessings", optional=True),
            parse_int(fields["branch_id"], what="branch_id", optional=True),
            parse_text(fields["branch_name"], what="branch_name", optional=True),
            parse_int(fields["exclusion_count"], what="exclusion_count", minimum=0),
            parse_score(fields["exclusion_rate"], what="exclusion_rate"),
            utc_now(),
        )
    except KeyError as err:
        raise InvalidValueError(
            f"prediction record lacks the field {err.args[0]!r}", key=str(err.args[0])
        ) from err
    if row[21] is None:
        raise InvalidValueError("exclusion_rate must be a float, got None", key="exclusion_rate")
    return row
