"""The working folder of a local Zarr store being written: its lock and its crash-safe commits.

A writer owns the store folder for as long as it is open: it holds an exclusive ``flock`` on
the folder itself (no lock file is added to a store, so opening another tool's store writes
nothing), and the kernel drops the lock when the process dies, however it dies.

Nothing a writer saves touches the live hierarchy until a commit. New values are written
into the store's own control folder ``.holdall/`` (``stage/<key>/...``), then a commit:

1. writes the journal ``.holdall/journal.json`` (atomically) listing the subtrees to move in
   and the ones to drop: from here on the commit happens, whatever kills the process;
2. moves each replaced or dropped live subtree into ``.holdall/trash/<key>``, then each staged
   subtree into place (renames within one filesystem), then the root documents;
3. removes the journal, then empties the trash: files holdall wrote (Zarr documents and
   chunks) are deleted, any other file is moved back to where it was.

The next writer to open the folder finishes a commit that has a journal and drops a staged
one that has none, so a crash leaves the old state or the new one. The control folder is
removed when the store closes, so a closed store is a plain Zarr hierarchy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from holdall._core.atomic import TEMP_PREFIX, atomic_write_bytes, fsync_dir
from holdall._core.links import first_link
from holdall._core.locks import Backoff
from holdall.errors import CorruptedFileError, StorageLockedError, UnsafePathError

__all__ = [
    "CONTROL",
    "ROOT_STAGE",
    "WorkingDirectory",
    "is_zarr_owned",
    "safe_parent",
]

#: The control folder inside a store being written.
CONTROL = ".holdall"
#: Where root documents are staged (key segments cannot start with ``__``).
ROOT_STAGE = "__root__"
_DOC_NAMES = frozenset({"zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata"})
_CHUNK_NAME = re.compile(r"^(c|\d+(\.\d+)*)$")
_FIRST_POLL_S = 0.001
_MAX_POLL_S = 0.05


def is_zarr_owned(relative_parts: tuple[str, ...], *, in_array: bool) -> bool:
    """True for a file holdall may delete: a Zarr document, or a chunk below an array folder."""
    name = relative_parts[-1]
    if name in _DOC_NAMES:
        return True
    return in_array and all(_CHUNK_NAME.match(part) for part in relative_parts)


def safe_parent(root: Path, relative: str) -> Path:
    """The folder that will hold `relative` below `root`, refusing symbolic links on the way.

    Raises `UnsafePathError` when a folder between `root` and the target is a symlink: a
    write or a rename through it would land outside the store.
    """
    folders = relative.split("/")[:-1]
    link = first_link(root, folders)
    if link is not None:
        raise UnsafePathError(
            f"{link} is a symbolic link inside the store {root}; holdall never writes, "
            "moves or deletes through a link. Remove the link, or open the store it points to",
            path=str(link),
        )
    return root.joinpath(*folders)


def _lock_holder(inode: int) -> str:
    """Who holds an ``flock`` on the file with inode `inode`, read from /proc/locks."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].endswith(f":{inode}"):
                return f"process {fields[4]}"
    return "another process"


class WorkingDirectory:
    """The lock and the commit protocol of one local store folder (see the module docstring)."""

    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        self.root = root
        self.control = root / CONTROL
        self.stage = self.control / "stage"
        self.trash = self.control / "trash"
        self.tmp = self.control / "tmp"
        self.journal = self.control / "journal.json"
        self._fsync = fsync
        self._fd: int | None = None

    # ----------------------------------------------------------------- lock

    def lock(self, *, timeout_s: float, create: bool) -> bool:
        """Take the writer lock, creating the folder when `create`; True when it was created.

        Waits at most `timeout_s` for another writer, then raises `StorageLockedError`
        naming it. A folder removed or replaced while we waited is opened again.
        """
        backoff = Backoff(timeout_s, first_s=_FIRST_POLL_S, max_s=_MAX_POLL_S)
        created = False
        while True:
            if create:
                try:
                    self.root.mkdir(parents=True)
                    created = True
                except FileExistsError:
                    pass
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                inode = os.fstat(fd).st_ino
                os.close(fd)
                if backoff.expired:
                    raise StorageLockedError(
                        f"{self.root} is being written by {_lock_holder(inode)}: could not take "
                        f"its write lock within {timeout_s:g} s. Wait for that writer to close "
                        "the store, or pass a longer lock_timeout",
                        path=str(self.root),
                        waited_s=backoff.waited,
                    ) from None
                backoff.sleep()
                continue
            try:
                same = os.stat(self.root, follow_symlinks=True).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return created
            # The folder we locked was removed (its writer finished): lock the new one.
            os.close(fd)
            created = False

    def unlock(self) -> None:
        """Release the writer lock (a no-op when not held)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def try_lock(self) -> bool:
        """Take the lock only if nobody holds it (for readers finishing a crashed commit)."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    @property
    def locked(self) -> bool:
        """True while this instance holds the writer lock."""
        return self._fd is not None

    # ----------------------------------------------------------------- staging

    def staged(self, relative: str) -> Path:
        """Where the file or folder `relative` (a store path) is staged."""
        return self.stage.joinpath(*relative.split("/"))

    # ----------------------------------------------------------------- commit

    def commit(self, moves: list[str], deletes: list[str], root_files: Iterable[str]) -> None:
        """Make the staged `moves`, the `deletes` and the staged root files live, crash-safely.

        `moves` and `deletes` are store paths none of which lies below another; root files
        are staged under ``__root__/``.
        """
        for path in (*moves, *deletes):
            safe_parent(self.root, f"{path}/leaf")
        journal = {"moves": moves, "deletes": deletes, "root": sorted(root_files)}
        atomic_write_bytes(
            self.journal, json.dumps(journal).encode(), fsync=self._fsync, temp_dir=self.tmp
        )
        self._apply(journal)
        self.journal.unlink()
        if self._fsync:
            fsync_dir(self.control)
        self._empty_trash()
        shutil.rmtree(self.stage, ignore_errors=True)

    def recover(self) -> None:
        """Finish a commit a dead writer journaled, drop what it staged without one.

        Called with the lock held, so every temporary file here is a dead writer's.
        """
        self.remove_temporaries()
        if not self.control.is_dir() or self.control.is_symlink():
            return
        if self.journal.exists():
            try:
                journal = json.loads(self.journal.read_bytes())
                if not isinstance(journal, dict):
                    raise ValueError("not an object")
            except (ValueError, UnicodeDecodeError) as err:
                raise CorruptedFileError(
                    f"{self.journal} (the commit record of an interrupted write) is damaged: "
                    f"{err}; move it away to open the store as it is",
                    path=str(self.journal),
                ) from err
            self._apply(journal)
            self.journal.unlink()
        self._empty_trash()
        self.remove_control()

    def _apply(self, journal: dict[str, list[str]]) -> None:
        """Carry out a journal; every step can run again after a crash (idempotent)."""
        moves = journal.get("moves", [])
        for path in [*journal.get("deletes", []), *moves]:
            live = self.root.joinpath(*path.split("/"))
            if path in moves and not self.staged(path).exists():
                continue  # already moved in
            if os.path.lexists(live):
                trash = self.trash.joinpath(*path.split("/"))
                trash.parent.mkdir(parents=True, exist_ok=True)
                os.replace(live, trash)
        for path in moves:
            staged = self.staged(path)
            if staged.exists():
                live = self.root.joinpath(*path.split("/"))
                live.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, live)
        for name in journal.get("root", []):
            staged = self.staged(f"{ROOT_STAGE}/{name}")
            if staged.exists():
                os.replace(staged, self.root / name)
        if self._fsync:
            fsync_dir(self.root)

    def _empty_trash(self) -> None:
        """Delete holdall's files in the trash; move every other file back where it was."""
        if not self.trash.is_dir():
            return
        owned, other = _sort_files(self.trash)
        for path in owned:
            path.unlink()
        for path in other:
            relative = path.relative_to(self.trash)
            back = self.root / relative
            with contextlib.suppress(OSError):
                safe_parent(self.root, relative.as_posix()).mkdir(parents=True, exist_ok=True)
                if not os.path.lexists(back):
                    os.replace(path, back)
        shutil.rmtree(self.trash, ignore_errors=True)

    # ----------------------------------------------------------------- removal

    def temporary_folder(self) -> Path:
        """Where a writer builds files it renames into or beside the store (the folder itself)."""
        return self.root

    def remove_temporaries(self) -> None:
        """Remove the temporary files of writers of this folder (``.holdall-*.tmp``)."""
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.root):
                if entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)

    def remove_control(self) -> None:
        """Remove the control folder (at close: nothing in it is needed any more)."""
        if self.control.is_dir() and not self.control.is_symlink():
            shutil.rmtree(self.control)
        self.remove_temporaries()

    def remove_owned(self, keep: Callable[[Path], bool]) -> list[Path]:
        """Delete holdall's files of the store and empty folders; return the files kept.

        A file is holdall's when it is a Zarr document or a chunk below an array folder, or
        `metadata.json` at the root; `keep` may protect more. Symbolic links are removed as
        links, never followed.
        """
        self.remove_control()
        owned, kept = _sort_files(self.root)
        metadata = self.root / "metadata.json"
        if metadata in kept:
            kept.remove(metadata)
            owned.append(metadata)
        for path in owned:
            if keep(path):
                kept.append(path)
            else:
                path.unlink()
        for folder, _dirs, _files in os.walk(self.root, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        return kept


def _walk_files(top: Path) -> list[Path]:
    """Every file and symlink below `top` (links are listed, never followed)."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(top):
        base = Path(folder)
        found.extend(base / name for name in files)
        found.extend(base / name for name in dirs if (base / name).is_symlink())
    return found


def _sort_files(top: Path) -> tuple[list[Path], list[Path]]:
    """The files below `top` split into (holdall's: Zarr documents and chunks, the others)."""
    arrays: set[Path] = set()
    for folder, _dirs, files in os.walk(top):
        base = Path(folder)
        if ".zarray" in files or ("zarr.json" in files and _is_v3_array(base / "zarr.json")):
            arrays.add(base)
    owned: list[Path] = []
    other: list[Path] = []
    for path in _walk_files(top):
        parts = path.relative_to(top).parts
        in_array = False
        for depth in range(len(parts) - 1, -1, -1):
            if top.joinpath(*parts[:depth]) in arrays:
                parts, in_array = parts[depth:], True
                break
        (owned if is_zarr_owned(parts, in_array=in_array) else other).append(path)
    return owned, other


def _is_v3_array(document: Path) -> bool:
    try:
        return bool(json.loads(document.read_bytes()).get("node_type") == "array")
    except (OSError, ValueError, AttributeError):
        return False
