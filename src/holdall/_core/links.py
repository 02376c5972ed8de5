"""Symbolic links on the way into a store: holdall never writes, deletes or reads through one.

A link planted inside a store, a datastore root or a workspace would let a write, a delete
or a read land outside it. Every place that turns a relative name into a path checks the
folders on the way with `first_link` and raises its own error naming what it was doing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["first_link"]


def first_link(start: str | os.PathLike[str], names: Iterable[str]) -> Path | None:
    """The first of ``start/a``, ``start/a/b``... (for `names` a, b...) that is a symlink.

    `start` itself is not checked. Missing paths are not links.
    """
    probe = os.fspath(start)
    for name in names:
        probe = os.path.join(probe, name)
        if os.path.islink(probe):
            return Path(probe)
    return None
