"""One key grammar for every store: ``/``-separated segments that can never escape a root.

A key is valid when it is a non-empty `str`, has no leading ``/``, no empty segment
(``a//b`` or a trailing ``/``), no ``.`` or ``..`` segment, and no backslash or NUL.
Every backend calls `parse_key` inside every public method, so a hostile key is rejected
before it can name a file.
"""

from __future__ import annotations

from holdall.errors import InvalidKeyError

__all__ = ["join_key", "parse_key", "validate_name"]


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
