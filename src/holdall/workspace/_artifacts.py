"""The content-addressed artifact files: serialization, hashing, atomic placement, checks.

An artifact is stored once per distinct serialized content, at
``artifacts/<first two hex digits>/<sha256>.<ext>`` (256 fan-out folders keep directories
small). Files are written to a temporary sibling and renamed into place, so a crash leaves
either no file or the whole file; a temporary file left by a killed writer is collected by
`ArtifactFiles.orphans`. The database row (`artifacts` table) is the only thing that makes a
file live; the store writes the file before the row and deletes the row before the file.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from holdall._core.atomic import atomic_write_bytes
from holdall._core.hashing import sha256_bytes
from holdall._core.links import first_link
from holdall._core.optional import import_optional
from holdall.errors import (
    CorruptedFileError,
    IntegrityError,
    InvalidValueError,
    UnsafePathError,
    UnsupportedTypeError,
    UntrustedArtifactError,
)
from holdall.workspace._replay_core import deserialize_bytes
from holdall.workspace._signing import key_path, signature_ok

__all__ = ["ArtifactFiles", "ArtifactFormat", "check_trusted", "deserialize", "serialize"]

ArtifactFormat = Literal["joblib", "cloudpickle", "npy"]
FORMATS: tuple[str, ...] = get_args(ArtifactFormat)
EXTENSIONS = {"joblib": "joblib", "cloudpickle": "pkl", "npy": "npy"}

_OWN_NAME = re.compile(
    r"(?P<fan>[0-9a-f]{2})/(?:\.)?(?P<hash>[0-9a-f]{64})\.(?:joblib|pkl|npy)(?:\.[^/]+\.tmp)?"
)
"""What holdall writes below ``artifacts/``: ``ab/<sha256>.<ext>`` and, while it writes one,
the temporary ``ab/.<sha256>.<ext>.<random>.tmp`` beside it. Nothing else is ever listed."""

_SHA256 = re.compile(r"[0-9a-f]{64}")


def loader_of(fmt: str) -> ArtifactFormat:
    """How to load an artifact stored in format `fmt`, including formats other tools wrote.

    nirs4all registers ``pickle`` and ``<framework>_pickle`` files (plain pickles); those
    load like ``cloudpickle``. Framework formats (Keras, PyTorch, XGBoost files) are not
    loaded by holdall: `UnsupportedTypeError` says where the file is.
    """
    if fmt in FORMATS:
        return fmt  # type: ignore[return-value]
    if fmt == "pickle" or fmt.endswith("_pickle"):
        return "cloudpickle"
    raise UnsupportedTypeError(
        f"artifact format {fmt!r} is not one holdall loads (joblib, cloudpickle, pickle, npy); "
        "load the file at get_artifact_path(artifact_id) with the framework that wrote it",
        got=fmt,
    )


def parse_content_hash(value: object) -> str:
    """A SHA-256 as 64 lowercase hex digits (nirs4all's ``sha256:`` prefix accepted)."""
    text = value[7:] if isinstance(value, str) and value.startswith("sha256:") else value
    if not isinstance(text, str) or not _SHA256.fullmatch(text):
        raise InvalidValueError(
            f"content_hash must be a SHA-256 (64 hex digits, optionally 'sha256:'-prefixed), "
            f"got {value!r}",
            key="content_hash",
            got=value,
        )
    return text


def check_relative(relative: object) -> str:
    """A registered artifact's path: relative, inside ``artifacts/``, no ``..`` (else refused)."""
    parts = relative.split("/") if isinstance(relative, str) else []
    if (
        not parts
        or any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts)
        or len(parts) > 8
    ):
        raise UnsafePathError(
            f"artifact path {relative!r} must be a relative path inside artifacts/ (no empty, "
            "'.' or '..' segment, no backslash, no absolute path)",
            path=str(relative),
        )
    return str(relative)


def parse_format(value: object) -> ArtifactFormat:
    """Check an artifact format name and return it."""
    if value not in FORMATS:
        raise InvalidValueError(
            f"artifact format must be one of {', '.join(FORMATS)}, got {value!r}",
            key="format",
            expected=FORMATS,
            got=value,
        )
    return value  # type: ignore[return-value]


def serialize(obj: Any, fmt: ArtifactFormat) -> bytes | memoryview:
    """Serialize `obj` in `fmt`; ``npy`` takes only non-object numpy arrays (never pickled).

    The bytes are returned as a view of the serializer's buffer, not copied: hashing and
    writing 100 MB take less time than the copy did.
    """
    buffer = io.BytesIO()
    if fmt == "npy":
        if not isinstance(obj, np.ndarray) or obj.dtype.hasobject:
            raise UnsupportedTypeError(
                f"format 'npy' stores numpy arrays of plain dtypes, got {type(obj).__name__}; "
                "use 'joblib' or 'cloudpickle' for other objects",
                got=type(obj).__name__,
            )
        np.save(buffer, obj, allow_pickle=False)
    elif fmt == "joblib":
        joblib = import_optional("joblib", extra="workspace", purpose="saving joblib artifacts")
        joblib.dump(obj, buffer)
    else:
        cloudpickle = import_optional(
            "cloudpickle", extra="workspace", purpose="saving cloudpickle artifacts"
        )
        return bytes(cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    return buffer.getbuffer()


def deserialize(data: bytes, fmt: ArtifactFormat) -> Any:
    """Rebuild an object from bytes written by `serialize`."""
    if fmt != "npy":
        import_optional(fmt, extra="workspace", purpose=f"loading {fmt} artifacts")
    return deserialize_bytes(data, fmt)


def check_trusted(signature: object, digest: str, fmt: str, *, what: str, path: str) -> None:
    """Raise `UntrustedArtifactError` unless `signature` is this user's for the content."""
    if signature_ok(signature, digest, fmt):
        return
    state = "is not signed" if signature is None else "is signed by another key"
    raise UntrustedArtifactError(
        f"{what} ({path}) {state}: it was not written by a workspace of this user (signing key "
        f"{key_path()}), and loading it ({fmt}) would unpickle it, which runs code. Pass "
        "trust=True only if you trust whoever wrote it; re-saving it signs it. Store arrays as "
        "'npy' (no pickle) to need no trust.",
        key=digest,
        path=path,
    )


def verify(data: bytes, expected_sha256: str, *, where: str) -> None:
    """Raise `IntegrityError` when `data` does not hash to `expected_sha256`."""
    got = sha256_bytes(data)
    if got != expected_sha256:
        raise IntegrityError(
            f"artifact {where} is corrupted: its SHA-256 is {got}, the store recorded "
            f"{expected_sha256}; the file was modified or damaged after it was written",
            path=where,
            expected=expected_sha256,
            got=got,
        )


class ArtifactFiles:
    """The ``artifacts/`` folder of a workspace.

    Parameters
    ----------
    root
        The ``artifacts`` folder (created when missing).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._check_real_folder(root)

    @staticmethod
    def _check_real_folder(folder: Path) -> None:
        if folder.is_symlink() or not folder.is_dir():
            raise UnsafePathError(
                f"{folder} is a symbolic link or not a folder; holdall keeps artifacts only in a "
                "real folder inside the workspace (it never writes or deletes through a link)",
                path=str(folder),
            )

    @staticmethod
    def is_own(relative: object) -> bool:
        """True for a relative path holdall itself would have written (address or temporary)."""
        if not isinstance(relative, str):
            return False
        match = _OWN_NAME.fullmatch(relative)
        return match is not None and match["hash"].startswith(match["fan"])

    @staticmethod
    def relative_path(content_hash: str, fmt: ArtifactFormat) -> str:
        """``ab/abcdef...<64 hex>.<ext>``: where content with this hash is kept."""
        return f"{content_hash[:2]}/{content_hash}.{EXTENSIONS[fmt]}"

    def absolute(self, relative: str) -> Path:
        """The file for a stored relative path."""
        return self.root.joinpath(*relative.split("/"))

    def has_complete(self, relative: str, size: int) -> bool:
        """True when a regular file of `size` bytes is at `relative` (no link followed)."""
        try:
            info = self.absolute(relative).lstat()
        except FileNotFoundError:
            return False
        return stat.S_ISREG(info.st_mode) and info.st_size == size

    def write(self, relative: str, data: bytes | memoryview) -> None:
        """Place `data` at `relative` atomically, unless a complete copy is already there.

        Anything else at that name (a truncated file, a planted link) is replaced.
        """
        if self.has_complete(relative, len(data)):
            return
        target = self.absolute(relative)
        self._check_real_folder(self.root)
        if target.parent.is_symlink():
            raise UnsafePathError(
                f"{target.parent} is a symbolic link; holdall never writes an artifact through "
                "a link (remove it and save again)",
                path=str(target.parent),
            )
        atomic_write_bytes(target, data)

    def read_verified(self, relative: str, content_hash: str) -> bytes:
        """Read a file and check its SHA-256 (`IntegrityError` on mismatch)."""
        path = self.absolute(relative)
        try:
            data = path.read_bytes()
        except FileNotFoundError as err:
            raise CorruptedFileError(
                f"artifact file {path} is missing though the workspace records it (a crash or a "
                "manual delete removed it); saving the same object again restores it",
                path=str(path),
            ) from err
        verify(data, content_hash, where=str(path))
        return data

    def remove(self, relative: str) -> bool:
        """Delete one artifact file; False when it was gone or is not one to delete.

        Only a relative path inside the folder is removed (holdall's own names, or the path
        an artifact was registered with), and never through a symbolic link (the root, a
        folder on the way, the file itself): a tampered row (``../x``, an absolute path, a
        linked folder) deletes nothing outside the workspace.
        """
        try:
            check_relative(relative)
        except UnsafePathError:
            return False
        path = self.absolute(relative)
        if self.root.is_symlink() or first_link(self.root, relative.split("/")) is not None:
            return False
        try:
            if not stat.S_ISREG(path.lstat().st_mode):
                return False
            path.unlink()
        except FileNotFoundError:
            return False
        with contextlib.suppress(OSError):  # the fan-out folder, once empty (else left)
            if path.parent != self.root:
                path.parent.rmdir()
        return True

    def files(self) -> Iterator[str]:
        """Every file holdall wrote below the root (`is_own`), temporaries included.

        Links are neither followed nor listed; files of other names are not listed.
        """
        if self.root.is_symlink() or not self.root.is_dir():
            return
        for fan in os.scandir(self.root):
            if not fan.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(fan.path):
                relative = f"{fan.name}/{entry.name}"
                if entry.is_file(follow_symlinks=False) and self.is_own(relative):
                    yield relative
