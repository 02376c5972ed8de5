"""A scratch store's own folder: its tagged name, removal when empty, and leftovers of the dead.

A store spills under ``<temporary_path>/holdall-scratch-<owner tag>-<id>/``. The owner tag
(`holdall._core.owners`) names the host and process that made the folder, so when a new
store is created on the same `temporary_path` it can tell the folders of processes that died
without closing their store (killed, crashed) from those of live ones, and remove only the
former. Removal never follows a symbolic link and deletes only files of the kinds a scratch
store writes; a folder that still holds anything else is left in place.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

from holdall._core.owners import OWNER_TAG_PATTERN, owner_is_dead

__all__ = ["FOLDER_PREFIX", "folder_name", "prune_empty", "remove_abandoned"]

FOLDER_PREFIX = "holdall-scratch-"
_FOLDER = re.compile(
    rf"{re.escape(FOLDER_PREFIX)}(?P<tag>{OWNER_TAG_PATTERN.pattern})-[0-9a-f]{{12}}"
)
# What a scratch store writes: NumpyStore's ``<key>.rank<r>.soa``, GenericIOStore's
# ``<key>.gio``, and the temporary names both write before renaming (``.<name>.<random>.tmp``).
_STORE_FILE = re.compile(r".+\.rank[0-9]+\.soa|.+\.gio|\..+\.tmp")


def folder_name(tag: str, token: str) -> str:
    """The folder name of a store made by the process with owner `tag` (`token`: 12 hex)."""
    return f"{FOLDER_PREFIX}{tag}-{token}"


def remove_abandoned(base: Path) -> list[Path]:
    """Remove the scratch folders under `base` whose owner process is dead; return them.

    Only direct children of `base` named like a store folder with a dead owner's tag are
    touched; inside them only regular files named like a store's files are deleted, and
    folders only once empty. Errors (a folder vanishing, no permission) are ignored: another
    process may be cleaning the same place, and what stays is removed by a later store.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        match = _FOLDER.fullmatch(entry.name)
        if match is None or not owner_is_dead(match.group("tag")):
            continue
        with contextlib.suppress(OSError):
            if not entry.is_dir(follow_symlinks=False):
                continue
            _remove_store_tree(Path(entry.path))
            if not os.path.lexists(entry.path):
                removed.append(Path(entry.path))
    return removed


def _remove_store_tree(root: Path) -> None:
    """Delete a store's files under `root` and the folders they leave empty, bottom-up."""
    for folder, _dirs, files in os.walk(root, topdown=False):  # never descends into links
        for name in files:
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                if _STORE_FILE.fullmatch(name) and stat.S_ISREG(os.lstat(path).st_mode):
                    os.unlink(path)
        with contextlib.suppress(OSError):  # not empty: it holds something not ours
            os.rmdir(folder)


def prune_empty(folders: Iterable[Path], root: Path) -> None:
    """Remove each of `folders` and its parents up to `root` (excluded) while they are empty."""
    for start in folders:
        folder = start
        while folder != root and root in folder.parents:
            try:
                folder.rmdir()
            except FileNotFoundError:  # removed already (by another rank): go on up
                pass
            except OSError:  # not empty
                break
            folder = folder.parent
