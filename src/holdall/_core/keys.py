"""One key grammar for every store: ``/``-separated segments that can never escape a root.

A key is valid when it is a non-empty `str`, has no leading ``/``, no empty segment
(``a//b`` or a trailing ``/``), no ``.`` or ``..`` segment, and no backslash or NUL.
Every backend calls `parse_key` inside every public method, so a hostile key is rejected
before it can name a file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import lru_cache

from holdall.errors import InvalidKeyError

__all__ = ["check_name_lengths", "join_key", "name_limits", "parse_key", "validate_name"]


def parse_key(key: object, *, what: str = "key") -> tuple[str, ...]:
    """Return the segments of `key`, or raise `InvalidKeyError` saying what is wrong.

    Parameters
    ----------
    key
        The candidate key, for example ``"faces/areas"``.
    what
        How to call the key in the error message (``"key"``, ``"metadata key"``...).
    """
    if not isinstance(key, str):
        raise InvalidKeyError(
            f"{what} must be a str like 'faces/areas', got {type(key).__name__} {key!r}", key=key
        )
    if key == "":
        raise InvalidKeyError(f"{what} must not be empty", key=key)
    if "\x00" in key:
        raise InvalidKeyError(f"{what} {key!r} contains a NUL character", key=key)
    if "\\" in key:
        raise InvalidKeyError(
            f"{what} {key!r} contains a backslash; separate segments with '/'", key=key
        )
    if key.startswith("/"):
        raise InvalidKeyError(
            f"{what} {key!r} starts with '/'; keys are relative to the store, "
            f"write {key.lstrip('/')!r}",
            key=key,
        )
    segments = tuple(key.split("/"))
    for segment in segments:
        if segment == "":
            raise InvalidKeyError(
                f"{what} {key!r} has an empty segment ('//' or a trailing '/')", key=key
            )
        if segment in (".", ".."):
            raise InvalidKeyError(
                f"{what} {key!r} has a {segment!r} segment; keys cannot point outside the store",
                key=key,
            )
    return segments


def validate_name(name: object, *, what: str = "name") -> str:
    """Check a single path segment (no ``/`` at all) and return it."""
    segments = parse_key(name, what=what)
    if len(segments) != 1:
        raise InvalidKeyError(f"{what} {name!r} must not contain '/'", key=name)
    return segments[0]


def join_key(*segments: str) -> str:
    """Join already-validated segments with ``/``."""
    return "/".join(segments)


#: Limits used where no filesystem is at hand (MemoryStorage): Linux's NAME_MAX and PATH_MAX.
DEFAULT_NAME_MAX = 255
DEFAULT_PATH_MAX = 4096


@lru_cache(maxsize=64)
def name_limits(folder: str) -> tuple[int, int]:
    """(longest file name in bytes, longest path in bytes) on the filesystem of `folder`.

    Read with ``pathconf`` from the nearest existing folder; Linux's 255 and 4096 when the
    filesystem does not say.
    """
    probe = os.path.abspath(folder)
    while not os.path.isdir(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        name_max = os.pathconf(probe, "PC_NAME_MAX")
        path_max = os.pathconf(probe, "PC_PATH_MAX")
    except (OSError, ValueError):
        return DEFAULT_NAME_MAX, DEFAULT_PATH_MAX
    return (name_max if name_max > 0 else DEFAULT_NAME_MAX), (
        path_max if path_max > 0 else DEFAULT_PATH_MAX
    )


def check_name_lengths(
    key: str,
    parts: Sequence[str],
    *,
    root: str | None,
    encode: Callable[[str], str] = lambda segment: segment,
    last_suffix: str = "",
    extra_path_bytes: int = 0,
) -> None:
    """Raise `InvalidKeyError` before anything is written if `key` cannot be a path under `root`.

    Each segment, as the backend names it on disk (`encode`; the last one with `last_suffix`,
    such as ``.json``), must fit the filesystem's longest file name, and the whole path, plus
    `extra_path_bytes` for what the backend adds below it (chunk keys, staging folders), the
    longest path. `root` None checks against Linux's limits (for in-memory stores, so that
    what they accept can be copied to disk).
    """
    name_max, path_max = (
        name_limits(root) if root is not None else (DEFAULT_NAME_MAX, DEFAULT_PATH_MAX)
    )
    total = len(os.path.abspath(root).encode()) if root is not None else 0
    for index, segment in enumerate(parts):
        name = encode(segment) + (last_suffix if index == len(parts) - 1 else "")
        size = len(name.encode("utf-8", "surrogatepass"))
        if size > name_max:
            raise InvalidKeyError(
                f"key {key!r}: segment {segment[:32]!r}... is {size} bytes as a file name, "
                f"longer than the {name_max} bytes the filesystem allows; use a shorter name",
                key=key,
            )
        total += size + 1
    if total + extra_path_bytes > path_max:
        raise InvalidKeyError(
            f"key {key!r} would make a path of {total + extra_path_bytes} bytes, longer than "
            f"the {path_max} bytes the system allows; use a shorter or less deeply nested key",
            key=key,
        )
