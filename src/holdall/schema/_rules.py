"""Rules on plain schema dicts: value checks, the metadata block, and metadata routing.

These functions read the JSON dict `SchemaBuilder.build` returns (or one loaded from a file
or a store), so the builder, every storage backend and the merger apply the same rules
without importing one another.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

__all__ = [
    "RULE_NAMES",
    "Route",
    "check_rules",
    "metadata_block",
    "metadata_definition",
    "metadata_problem",
    "route_metadata",
]

Route = Literal["file_level", "categorical"]
ROUTES: tuple[Route, Route] = ("file_level", "categorical")
#: Validation rules an array or metadata definition may carry.
RULE_NAMES = frozenset({"min_value", "max_value", "values", "min_length", "max_length", "pattern"})
#: Routing defaults when a schema gives none (seed 001).
DEFAULT_ROUTING: dict[str, Any] = {
    "file_level_patterns": [],
    "categorical_patterns": [],
    "default_numeric": "file_level",
    "default_categorical": "categorical",
    "default_string": "categorical",
}


def metadata_block(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema's metadata block as ``{"file_level", "categorical", "routing_rules"}``.

    Accepts the shape seed 001 documents (``schema["metadata"]["file_level"]``) and the
    variant real HOOPS AI output has, nested one level deeper (``schema["metadata"]
    ["metadata"]``); routing rules may sit at either level. Missing parts come back empty.
    """
    outer = schema.get("metadata")
    outer = outer if isinstance(outer, Mapping) else {}
    inner = outer.get("metadata")
    body = inner if isinstance(inner, Mapping) else outer
    routing = dict(DEFAULT_ROUTING)
    for source in (outer, body):
        rules = source.get("routing_rules")
        if isinstance(rules, Mapping):
            routing.update({k: v for k, v in rules.items() if v is not None})
    return {
        "file_level": dict(body.get("file_level") or {}),
        "categorical": dict(body.get("categorical") or {}),
        "routing_rules": routing,
    }


def metadata_definition(block: Mapping[str, Any], name: str) -> tuple[Route, dict[str, Any]] | None:
    """(route, definition) of metadata field `name` (or of its top-level section), if defined."""
    for candidate in dict.fromkeys((name, name.split("/", 1)[0])):
        for route in ROUTES:
            definition = block[route].get(candidate)
            if isinstance(definition, Mapping):
                return route, dict(definition)
    return None


def route_metadata(block: Mapping[str, Any], name: str, value: Any) -> Route:
    """Where metadata field `name` goes: ``"file_level"`` (.infoset) or ``"categorical"``.

    In order (seed 001): an explicit definition; the routing patterns, matched without regard
    to case against the full ``a/b`` name and its top-level section (file-level patterns
    first); then the type default: numbers go to ``default_numeric``, strings to
    ``default_string``, booleans and everything else to ``default_categorical``.
    """
    defined = metadata_definition(block, name)
    if defined is not None:
        return defined[0]
    rules = block["routing_rules"]
    names = {name.lower(), name.split("/", 1)[0].lower()}
    for route, key in (
        ("file_level", "file_level_patterns"),
        ("categorical", "categorical_patterns"),
    ):
        for pattern in rules.get(key) or ():
            if any(fnmatch.fnmatchcase(n, str(pattern).lower()) for n in names):
                return route  # type: ignore[return-value]
    if isinstance(value, bool | np.bool_):
        default = rules["default_categorical"]
    elif isinstance(value, int | float | np.integer | np.floating):
        default = rules["default_numeric"]
    elif isinstance(value, str):
        default = rules["default_string"]
    else:
        default = rules["default_categorical"]
    return "file_level" if default == "file_level" else "categorical"


def check_rules(rules: Mapping[str, Any], value: Any) -> str | None:
    """Why `value` (a scalar, string or array) breaks `rules`, or None when it keeps them.

    ``min_value``/``max_value`` bound every element (inclusive; NaN breaks them),
    ``values`` lists the allowed elements, ``min_length``/``max_length`` bound a string's or
    list's length, ``pattern`` is a regular expression a string must match in full.
    """
    if isinstance(value, str | bytes) or not hasattr(value, "__len__"):
        items: Any = np.asarray([value], dtype=object if isinstance(value, str | bytes) else None)
    else:
        items = np.asarray(value)
    low, high = rules.get("min_value"), rules.get("max_value")
    if (low is not None or high is not None) and items.size:
        if items.dtype.kind not in "biuf":
            return f"min_value/max_value need numbers, got {items.dtype} values"
        numbers = items.astype(np.float64)
        if np.isnan(numbers).any():
            return "holds NaN, which no min_value/max_value admits"
        if low is not None and numbers.min() < low:
            return f"value {numbers.min():g} is below min_value {low}"
        if high is not None and numbers.max() > high:
            return f"value {numbers.max():g} is above max_value {high}"
    allowed = rules.get("values")
    if allowed is not None and items.size:
        unknown = [v for v in items.ravel().tolist() if v not in list(allowed)]
        if unknown:
            return f"value {unknown[0]!r} is not one of the allowed values {list(allowed)}"
    if isinstance(value, str | list | tuple):
        low_len, high_len = rules.get("min_length"), rules.get("max_length")
        if low_len is not None and len(value) < low_len:
            return f"length {len(value)} is below min_length {low_len}"
        if high_len is not None and len(value) > high_len:
            return f"length {len(value)} is above max_length {high_len}"
    pattern = rules.get("pattern")
    if pattern is not None and isinstance(value, str) and re.fullmatch(pattern, value) is None:
        return f"{value!r} does not match pattern {pattern!r}"
    return None


def metadata_problem(definition: Mapping[str, Any], value: Any) -> str | None:
    """Why `value` does not fit a metadata `definition` (dtype, then rules), or None."""
    dtype = str(definition.get("dtype", "")).lower()
    if dtype in ("str", "string"):
        if not isinstance(value, str):
            return f"expected a string, got {type(value).__name__}"
    elif dtype in ("bool", "boolean"):
        if not isinstance(value, bool | np.bool_):
            return f"expected a bool, got {type(value).__name__}"
    elif dtype:
        try:
            want = np.dtype(dtype)
        except TypeError:
            return f"the definition has an unknown dtype {dtype!r}"
        if isinstance(value, bool | np.bool_) or not isinstance(
            value, int | float | np.integer | np.floating
        ):
            return f"expected a number ({want}), got {type(value).__name__}"
        if want.kind in "iu":
            if isinstance(value, float | np.floating) and not (
                math.isfinite(value) and float(value).is_integer()
            ):
                return f"expected an integer ({want}), got {value!r}"
            info = np.iinfo(want)
            if not info.min <= int(value) <= info.max:
                return f"{value!r} does not fit in {want}"
    return check_rules(definition, value)
