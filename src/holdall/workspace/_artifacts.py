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
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from holdall._core.atomic import atomic_write_bytes
from holdall._core.hashing import sha256_bytes
from holdall._core.optional import import_optional
from holdall.errors import IntegrityError, InvalidValueError, UnsupportedTypeError
from holdall.workspace._replay_core import deserialize_bytes

__all__ = ["ArtifactFiles", "ArtifactFormat", "deserialize", "serialize"]

ArtifactFormat = Literal["joblib", "cloudpickle", "npy"]
FORMATS: tuple[str, ...] = get_args(ArtifactFormat)
EXTENSIONS = {"joblib": "joblib", "cloudpickle": "pkl", "npy": "npy"}


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

    @staticmethod
    def relative_path(content_hash: str, fmt: ArtifactFormat) -> str:
        """``ab/abcdef...<64 hex>.<ext>``: where content with this hash is kept."""
        return f"{content_hash[:2]}/{content_hash}.{EXTENSIONS[fmt]}"

    def absolute(self, relative: str) -> Path:
        """The file for a stored relative path."""
        return self.root.joinpath(*relative.split("/"))

    def write(self, relative: str, data: bytes | memoryview) -> None:
        """Place `data` at `relative` atomically, unless a complete copy is already there."""
        target = self.absolute(relative)
        if target.exists() and target.stat().st_size == len(data):
            return
        atomic_write_bytes(target, data)

    def read_verified(self, relative: str, content_hash: str) -> bytes:
        """Read a file and check its SHA-256 (`IntegrityError` on mismatch)."""
        path = self.absolute(relative)
        data = path.read_bytes()
        verify(data, content_hash, where=str(path))
        return data

    def remove(self, relative: str) -> bool:
        """Delete one file; False when it was already gone."""
        path = self.absolute(relative)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        with contextlib.suppress(OSError):  # the fan-out folder, once empty (else left)
            path.parent.rmdir()
        return True

    def files(self) -> Iterator[str]:
        """Every file below the root as a ``/``-separated relative path (temporaries included)."""
        for folder, _dirs, names in os.walk(self.root):
            prefix = os.path.relpath(folder, self.root)
            for name in names:
                yield name if prefix == "." else f"{prefix}/{name}".replace(os.sep, "/")
