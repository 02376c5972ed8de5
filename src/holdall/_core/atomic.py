"""Write files so that a crash leaves either the old content or the new, never a mix.

Content goes to a temporary name in the target's folder, then `os.replace` moves it into
place (atomic on POSIX within one filesystem). Flushing to stable storage with fsync is
optional and off by default, like zarr and h5py: atomic replace protects against crashes
of the process, fsync also against power loss, at a cost measured in docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from holdall._core.owners import owner_tag

__all__ = ["TEMP_PREFIX", "atomic_output", "atomic_write_bytes", "fsync_dir", "temporary_sibling"]

#: How the names of temporary files made in a store's own folder start.
TEMP_PREFIX = ".holdall-"


def _process_umask() -> int:
    """The process umask (read by setting it, then restoring it at once: import time only)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_process_umask()
"""The mode `open()` would give a new file: mkstemp's 0600 would hide the final file from
the group and other users (a dashboard reading artifacts, a shared workspace)."""


def temporary_sibling(target: Path, *, temp_dir: Path | None = None) -> Path:
    """Return an unused temporary path on the same filesystem as `target`.

    By default the file sits beside `target` (``.<name>.<random>.tmp``). With `temp_dir` (a
    store's own folder for temporary files, on the same filesystem) it is created there as
    ``.holdall-<owner tag>-<random>.tmp``: a short name whatever the length of `target`'s,
    which tells the next process whose it was (`holdall._core.owners`). The file gets the mode a plain
    ``open()`` would give it, so that the file it becomes does too.
    """
    if temp_dir is None:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    else:
        temp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f"{TEMP_PREFIX}{owner_tag()}-", suffix=".tmp", dir=temp_dir
        )
    try:
        os.fchmod(fd, _FILE_MODE)
    finally:
        os.close(fd)
    return Path(name)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename inside it) to stable storage."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(
    target: Path, *, fsync: bool = False, temp_dir: Path | None = None
) -> Iterator[BinaryIO]:
    """Open a temporary file (beside `target`, or in `temp_dir`); on success rename it over `target`.

    If the body raises, the temporary file is removed and `target` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(target, temp_dir=temp_dir)
    try:
        with open(tmp, "wb") as handle:
            yield handle
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if fsync:
        fsync_dir(target.parent)


def atomic_write_bytes(
    target: Path,
    data: bytes | bytearray | memoryview,
    *,
    fsync: bool = False,
    temp_dir: Path | None = None,
) -> None:
    """Write `data` to `target` atomically (see `atomic_output`)."""
    with atomic_output(target, fsync=fsync, temp_dir=temp_dir) as handle:
        handle.write(data)
