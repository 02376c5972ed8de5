"""The value model every storage backend shares: what can be stored, and how it comes back.

`encode_value` turns a Python value into a tree of `Group` (a dict) and `Leaf` nodes, checking
types once for all backends. A leaf carries a *kind* that says how to rebuild the exact Python
type on load (a Python ``int`` comes back as ``int``, ``np.int32(3)`` as ``np.int32``, a list
as a list) and, for most kinds, one numpy array holding the data. Nothing is ever pickled:
anything outside the model raises `UnsupportedTypeError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from holdall._core.keys import validate_name
from holdall.errors import InvalidValueError, UnsupportedTypeError

__all__ = [
    "MAX_NESTING_DEPTH",
    "Group",
    "Leaf",
    "LeafKind",
    "NestingGuard",
    "Node",
    "check_no_nan",
    "decode_leaf",
    "decode_node",
    "encode_value",
    "end_paths",
    "has_nan",
    "nan_error",
    "parse_array",
]

LeafKind = Literal[
    "array",  # numpy ndarray (any shape, including 0-d)
    "numpy",  # numpy scalar such as np.float32(1.5)
    "int",
    "float",
    "bool",
    "complex",
    "str",
    "bytes",
    "none",
    "list",  # list of one scalar type, rectangular: stored as one array
    "tuple",
    "items",  # any other list: one child node per item
    "titems",  # any other tuple
]

#: dtype kinds stored natively: bool, signed/unsigned int, float, complex, str, bytes.
_STORABLE_KINDS = frozenset("biufcUS")
_INT64 = np.iinfo(np.int64)
#: Largest item size of a storable float (float64) and complex (complex128) dtype: the 80- and
#: 128-bit extended types (``np.longdouble``, ``np.clongdouble``) have no Zarr or JSON form.
_MAX_ITEMSIZE = {"f": 8, "c": 16}
#: How deeply dicts, lists and tuples may nest inside one value (and in metadata). Deeper
#: values, or values that contain themselves, raise `InvalidValueError` instead of exhausting
#: the interpreter's stack; 100 levels leave room below Python's default recursion limit for
#: every backend's own recursion (writing, reading, JSON text).
MAX_NESTING_DEPTH = 100


@dataclass(frozen=True, slots=True)
class Leaf:
    """A stored value that is not a dict."""

    kind: LeafKind
    """How to rebuild the Python value (see `LeafKind`)."""
    array: np.ndarray[Any, Any] | None = None
    """The data, for every kind but ``none``, ``items`` and ``titems``."""
    items: tuple[Node, ...] = ()
    """The children of an ``items``/``titems`` leaf, in order."""
    nan_key: str | None = None
    """Set when the NaN check of `array` is left to the backend (see `encode_value`): the key
    its error must name."""


@dataclass(frozen=True, slots=True)
class Group:
    """A dict: named children, each a `Leaf` or a `Group`."""

    children: dict[str, Node] = field(default_factory=dict)


Node = Leaf | Group


def parse_array(array: np.ndarray[Any, Any], *, key: str) -> np.ndarray[Any, Any]:
    """Check that `array` has a storable dtype and return it (object arrays of str become ``<U``).

    Raises `UnsupportedTypeError` for structured, datetime, void and object dtypes that are not
    all strings, for extended-precision floats (``np.longdouble``, ``np.clongdouble``) and for
    masked arrays (whose mask would be lost).
    """
    if isinstance(array, np.ma.MaskedArray):
        raise UnsupportedTypeError(
            f"cannot store {key!r}: masked arrays would lose their mask; store the data and "
            "the mask as two arrays, for example value.filled(0) under one key and "
            "np.ma.getmaskarray(value) under another",
            key=key,
            got=type(array),
        )
    kind = array.dtype.kind
    if kind in _MAX_ITEMSIZE and array.dtype.itemsize > _MAX_ITEMSIZE[kind]:
        target = "float64" if kind == "f" else "complex128"
        raise UnsupportedTypeError(
            f"cannot store {key!r}: dtype {array.dtype} (extended precision, "
            f"{array.dtype.itemsize * 8} bits) has no portable stored form; cast it with "
            f".astype(np.{target}) first (this rounds to double precision)",
            key=key,
            got=array.dtype,
        )
    if kind in _STORABLE_KINDS and array.dtype.fields is None:
        return array
    if kind == "O":
        flat = array.ravel()
        if all(isinstance(item, str) for item in flat):
            return array
        bad = next(item for item in flat if not isinstance(item, str))
        raise UnsupportedTypeError(
            f"cannot store {key!r}: object arrays may only hold str, found {type(bad).__name__}; "
            "convert it to a numeric or string dtype first (holdall never pickles arrays)",
            key=key,
            got=array.dtype,
        )
    raise UnsupportedTypeError(
        f"cannot store {key!r}: dtype {array.dtype} is not supported; supported are bool, "
        "integers, floats, complex, str and bytes",
        key=key,
        got=array.dtype,
    )


def has_nan(array: np.ndarray[Any, Any]) -> bool:
    """True if a float or complex `array` holds a NaN (a minimum propagates NaN: no mask)."""
    if array.dtype.kind == "c":
        return has_nan(array.real) or has_nan(array.imag)
    return array.dtype.kind == "f" and array.size > 0 and bool(np.isnan(np.min(array)))


def nan_error(array: np.ndarray[Any, Any], *, key: str) -> InvalidValueError:
    """The error refusing `array`, which holds NaN, under `key`."""
    count = int(np.count_nonzero(np.isnan(array)))
    return InvalidValueError(
        f"cannot store {key!r}: it holds {count} NaN value(s) out of {array.size}; "
        "clean the data, or open the storage with allow_nan=True to keep them",
        key=key,
        expected="no NaN",
        got=f"{count} NaN",
    )


def check_no_nan(array: np.ndarray[Any, Any], *, key: str) -> None:
    """Raise `InvalidValueError` if a float or complex `array` holds NaN."""
    if has_nan(array):
        raise nan_error(array, key=key)


class NestingGuard:
    """The containers on the path from a value's root to the item being encoded.

    Encoders (`encode_value`, `holdall._core.jsoncodec.to_json`) call `enter` on every dict,
    list and tuple before encoding its items and `leave` after, so a value that contains
    itself, or nests deeper than `MAX_NESTING_DEPTH`, raises `InvalidValueError` naming the
    key rather than a `RecursionError`. The same container may appear twice in a value (two
    references, no cycle); only one that is its own ancestor is refused.
    """

    __slots__ = ("_active",)

    def __init__(self) -> None:
        self._active: set[int] = set()

    def enter(self, container: object, *, key: str) -> None:
        """Record `container` as open below the current path, or raise if it cannot be."""
        ident = id(container)
        shown = key if len(key) <= 80 else f"{key[:60]}...{key[-16:]}"
        if ident in self._active:
            raise InvalidValueError(
                f"cannot store {shown!r}: the {type(container).__name__} there contains itself "
                "(it is one of its own parents); store a copy without the cycle",
                key=key,
                expected="a value without cycles",
                got="a self-reference",
            )
        if len(self._active) >= MAX_NESTING_DEPTH:
            raise InvalidValueError(
                f"cannot store {shown!r}: dicts, lists and tuples nest more than "
                f"{MAX_NESTING_DEPTH} levels deep there; flatten the value (for example with "
                "'/'-separated keys) or store the deep part as a JSON str",
                key=key,
                expected=f"at most {MAX_NESTING_DEPTH} levels",
                got=f"more than {MAX_NESTING_DEPTH}",
            )
        self._active.add(ident)

    def leave(self, container: object) -> None:
        """Close `container` (its items are all encoded)."""
        self._active.discard(id(container))


def _uniform_list_type(value: list[Any] | tuple[Any, ...]) -> tuple[type, tuple[int, ...]] | None:
    """The one scalar type and the shape of a rectangular nested list (or tuple), else None.

    Only lists whose leaves all have exactly one type among bool, int, float and str, and whose
    inner containers all have the outer container's type, qualify: those come back unchanged
    from ``np.array(value).tolist()``. Lists nested deeper than `MAX_NESTING_DEPTH` (or holding
    themselves) do not qualify; the item-by-item path then reports them.
    """
    container = type(value)
    seen: set[type] = set()
    shape: list[int] = []

    def walk(node: object, depth: int) -> bool:
        if type(node) is container:
            if depth >= MAX_NESTING_DEPTH:
                return False
            items: list[Any] | tuple[Any, ...] = node  # type: ignore[assignment,unused-ignore]
            if len(shape) == depth:
                shape.append(len(items))
            elif len(shape) < depth or shape[depth] != len(items):
                return False
            return all(walk(item, depth + 1) for item in items)
        if len(shape) != depth or type(node) not in (bool, int, float, str):
            return False
        seen.add(type(node))
        return len(seen) == 1

    if not walk(value, 0):
        return None
    scalar_type = next(iter(seen)) if seen else float
    return scalar_type, tuple(shape)


def _encode_sequence(
    value: list[Any] | tuple[Any, ...],
    *,
    key: str,
    reject_nan: bool,
    copy: bool,
    guard: NestingGuard,
) -> Leaf:
    is_tuple = isinstance(value, tuple)
    uniform = _uniform_list_type(value)
    if uniform is not None:
        scalar_type, shape = uniform
        # str goes in an object array: numpy's fixed-width str dtype drops trailing NULs.
        dtype: Any = {bool: np.bool_, int: np.int64, float: np.float64, str: object}[scalar_type]
        try:
            array = np.array(value, dtype=dtype)
        except (OverflowError, ValueError):
            # Too large for int64, or ragged in a way the type walk did not catch: store per item.
            array = None
        if array is not None and array.shape == shape:
            if reject_nan:
                check_no_nan(array, key=key)
            return Leaf("tuple" if is_tuple else "list", array)
    guard.enter(value, key=key)
    items = tuple(
        _encode(item, key=f"{key}[{index}]", reject_nan=reject_nan, copy=copy, guard=guard)
        for index, item in enumerate(value)
    )
    guard.leave(value)
    return Leaf("titems" if is_tuple else "items", items=items)


def encode_value(
    value: object,
    *,
    key: str,
    reject_nan: bool = False,
    copy: bool = True,
    defer_nan_above: int | None = None,
) -> Node:
    """Check `value` and turn it into a node tree.

    With `copy` (the default) arrays are copied, so later mutation by the caller is harmless;
    backends that encode the value to bytes at once pass ``copy=False`` and skip that copy.

    Parameters
    ----------
    value
        What the caller wants to store.
    key
        The key it goes under, for error messages.
    reject_nan
        Raise `InvalidValueError` when a float or complex array or scalar holds NaN, wherever
        it sits in the value (inside dicts, lists and tuples too).
    copy
        Copy arrays into the tree (needed by backends that keep the tree itself).
    defer_nan_above
        With `reject_nan`, float and complex arrays of more bytes than this are not scanned
        here: their leaf carries `Leaf.nan_key`, and the backend refuses NaN chunk by chunk
        while it compresses them, which reads the data once instead of twice.

    Raises
    ------
    UnsupportedTypeError
        A type outside the value model (see `parse_array` for arrays).
    InvalidValueError
        NaN with `reject_nan`, an int beyond 64 bits, a value that contains itself or nests
        deeper than `MAX_NESTING_DEPTH`.
    """
    deferred = (
        reject_nan
        and defer_nan_above is not None
        and isinstance(value, np.ndarray)
        and value.dtype.kind in "fc"
        and value.nbytes > defer_nan_above
    )
    node = _encode(
        value, key=key, reject_nan=reject_nan and not deferred, copy=copy, guard=NestingGuard()
    )
    return replace(node, nan_key=key) if deferred and isinstance(node, Leaf) else node


def _encode(value: object, *, key: str, reject_nan: bool, copy: bool, guard: NestingGuard) -> Node:
    if isinstance(value, dict):
        guard.enter(value, key=key)
        children: dict[str, Node] = {}
        for name, child in value.items():
            validate_name(name, what=f"dict key in {key!r}")
            children[name] = _encode(
                child, key=f"{key}/{name}", reject_nan=reject_nan, copy=copy, guard=guard
            )
        guard.leave(value)
        return Group(children)
    if isinstance(value, list | tuple):
        return _encode_sequence(value, key=key, reject_nan=reject_nan, copy=copy, guard=guard)
    leaf = _encode_leaf(value, key=key, copy=copy)
    if reject_nan and leaf.array is not None:
        check_no_nan(leaf.array, key=key)
    return leaf


def _encode_leaf(value: object, *, key: str, copy: bool) -> Leaf:
    if isinstance(value, np.ndarray):
        array = parse_array(value, key=key)
        return Leaf("array", array.copy() if copy else array)
    if isinstance(value, np.generic):
        return Leaf("numpy", parse_array(np.asarray(value), key=key).copy())
    if value is None:
        return Leaf("none")
    if isinstance(value, bool):
        return Leaf("bool", np.array(value, dtype=np.bool_))
    if isinstance(value, int):
        if not _INT64.min <= value <= _INT64.max:
            raise InvalidValueError(
                f"cannot store {key!r}: int {value} does not fit in 64 bits; store it as a str",
                key=key,
                expected="an int within int64",
                got=value,
            )
        return Leaf("int", np.array(value, dtype=np.int64))
    if isinstance(value, float):
        return Leaf("float", np.array(value, dtype=np.float64))
    if isinstance(value, complex):
        return Leaf("complex", np.array(value, dtype=np.complex128))
    if isinstance(value, str):
        return Leaf("str", _object_scalar(value))
    if isinstance(value, bytes | bytearray):
        return Leaf("bytes", np.frombuffer(bytes(value), dtype=np.uint8).copy())
    raise UnsupportedTypeError(
        f"cannot store {key!r}: values of type {type(value).__module__}.{type(value).__qualname__} "
        "are not supported; store numpy arrays, numbers, str, bytes, None, lists or dicts of these "
        "(holdall never pickles silently)",
        key=key,
        got=type(value),
    )


def _object_scalar(value: str) -> np.ndarray[Any, Any]:
    """A 0-d object array holding `value` unchanged (trailing NULs included)."""
    array = np.empty((), dtype=object)
    array[()] = value
    return array


def decode_leaf(leaf: Leaf) -> Any:
    """Rebuild the Python value of `leaf`; arrays are returned as they are (no copy)."""
    kind, array = leaf.kind, leaf.array
    if kind == "none":
        return None
    if kind == "items":
        return [decode_node(item, copy=False) for item in leaf.items]
    if kind == "titems":
        return tuple(decode_node(item, copy=False) for item in leaf.items)
    if array is None:
        raise InvalidValueError(f"leaf of kind {kind!r} has no data")
    if kind == "array":
        return array
    if kind == "numpy":
        return array[()]
    if kind == "bytes":
        return array.tobytes()
    if kind == "list":
        return array.tolist()
    if kind == "tuple":
        return _to_tuples(array.tolist())
    if kind == "str":
        return str(array[()])
    # int, float, bool, complex: Python scalars.
    return array[()].item()


def _to_tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_to_tuples(item) for item in value)
    return value


def decode_node(node: Node, *, copy: bool = True) -> Any:
    """Rebuild the Python value of a node tree.

    With `copy` (the default) arrays are copied so the caller owns them; backends that have
    just decoded fresh arrays pass ``copy=False``.
    """
    if isinstance(node, Group):
        return {name: decode_node(child, copy=copy) for name, child in node.children.items()}
    value = decode_leaf(node)
    if copy and isinstance(value, np.ndarray):
        return value.copy()
    return value


def end_paths(node: Node, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], bool]]:
    """The paths where `node`'s tree ends: every leaf ``(path, True)`` and empty group ``(path, False)``.

    Every other path of the tree is a prefix of one of these, which is what backends check
    names against before writing (`holdall._core.keys.check_name_lengths`).
    """
    if isinstance(node, Leaf):
        return [(prefix, True)]
    if not node.children:
        return [(prefix, False)]
    return [
        path for name, child in node.children.items() for path in end_paths(child, (*prefix, name))
    ]
