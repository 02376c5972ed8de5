"""Every exception and warning holdall raises, in one hierarchy rooted at `HoldallError`.

Each class also derives from the closest builtin, so ``except KeyError`` keeps working for
code written against the seed APIs. Every error keeps the offending objects as attributes
(``key``, ``path``, ``expected``, ``got``) so callers need not parse messages.
"""

from __future__ import annotations

__all__ = [
    "ArchiveExistsError",
    "BackendUnavailableError",
    "ClosedStorageError",
    "ClosedWorkspaceError",
    "CollectiveMismatchError",
    "ConversionError",
    "CorruptedFileError",
    "EpochNotFoundError",
    "ExperimentExistsError",
    "HoldallError",
    "HoldallWarning",
    "IntegrityError",
    "InvalidKeyError",
    "InvalidValueError",
    "KeyNotFoundError",
    "MergeError",
    "NotAStoreError",
    "PathNotFoundError",
    "ReadOnlyStorageError",
    "SchemaError",
    "SchemaVersionError",
    "StorageLockedError",
    "StoreNotFoundError",
    "UnsafePathError",
    "UnsupportedTypeError",
    "UntrustedArtifactError",
    "WorkspaceLockedError",
]


class HoldallError(Exception):
    """Base class of every error raised by holdall."""


class HoldallWarning(UserWarning):
    """Base class of every warning emitted by holdall."""


class KeyNotFoundError(HoldallError, KeyError):
    """A key, id or field that does not exist was asked for.

    Also a `KeyError`, so ``except KeyError`` written against the seed APIs still works.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key

    def __str__(self) -> str:
        # KeyError.__str__ would wrap the message in quotes; show it as written.
        return str(self.args[0]) if self.args else ""


class InvalidKeyError(HoldallError, ValueError):
    """A key or name is malformed: empty, absolute, with ``.``/``..``, NUL or backslash, or reserved."""

    def __init__(self, message: str, *, key: object = None) -> None:
        super().__init__(message)
        self.key = key


class InvalidValueError(HoldallError, ValueError):
    """A value has the right type but cannot be stored: NaN, wrong shape, length or dtype."""

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        expected: object = None,
        got: object = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.expected = expected
        self.got = got


class UnsupportedTypeError(HoldallError, TypeError):
    """A value's type cannot be stored by this backend (holdall never pickles silently)."""

    def __init__(self, message: str, *, key: str | None = None, got: object = None) -> None:
        super().__init__(message)
        self.key = key
        self.got = got


class SchemaError(HoldallError, ValueError):
    """Data or metadata violates the schema set on a store."""

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        expected: object = None,
        got: object = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.expected = expected
        self.got = got


class ReadOnlyStorageError(HoldallError, PermissionError):
    """A write, delete or compression was attempted on a read-only store or archive."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class ClosedStorageError(HoldallError, ValueError):
    """A store, workspace or file was used after `close()` (like I/O on a closed file)."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class CorruptedFileError(HoldallError, OSError):
    """A file is truncated, damaged or not in the format it claims to be."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class IntegrityError(CorruptedFileError):
    """A checksum does not match the bytes it protects."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        expected: object = None,
        got: object = None,
    ) -> None:
        super().__init__(message, path=path)
        self.expected = expected
        self.got = got


class ArchiveExistsError(HoldallError, FileExistsError):
    """A destination file or archive already exists and overwriting it was not asked for."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class SchemaVersionError(HoldallError, RuntimeError):
    """An on-disk file was written with a schema version this holdall cannot use as is."""

    def __init__(
        self, message: str, *, path: str | None = None, expected: object = None, got: object = None
    ) -> None:
        super().__init__(message)
        self.path = path
        self.expected = expected
        self.got = got


class WorkspaceLockedError(HoldallError, TimeoutError):
    """Another process held the workspace's write lock for longer than the configured wait."""

    def __init__(
        self, message: str, *, path: str | None = None, waited_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.path = path
        self.waited_s = waited_s


class StoreNotFoundError(HoldallError, FileNotFoundError):
    """A store opened for reading (mode ``"r"`` or ``"r+"``) is not there."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class NotAStoreError(HoldallError, ValueError):
    """A path holds something that is not a store of the kind asked for (files of another tool).

    holdall refuses to open it rather than write into, pack or delete what it did not write.
    """

    def __init__(self, message: str, *, path: str | None = None, found: object = None) -> None:
        super().__init__(message)
        self.path = path
        self.found = found


class StorageLockedError(HoldallError, TimeoutError):
    """Another process held a store's write lock for longer than the configured wait.

    The storage counterpart of `WorkspaceLockedError`: two writers of one store never both
    write; the second waits (bounded) and then gets this error, never a silent loss.
    """

    def __init__(
        self, message: str, *, path: str | None = None, waited_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.path = path
        self.waited_s = waited_s


class UnsafePathError(HoldallError, PermissionError):
    """A path inside a store is a symbolic link (or otherwise leads outside the store).

    holdall never follows a link for a write, a delete or an archive entry; it refuses instead.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class CollectiveMismatchError(HoldallError, ValueError):
    """MPI ranks passed different arguments (field names, dtypes) to a collective operation."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class ConversionError(HoldallError, RuntimeError):
    """`convert_storage` could not copy a store (nothing to copy, or a key failed)."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class BackendUnavailableError(HoldallError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, message: str, *, extra: str | None = None) -> None:
        super().__init__(message)
        self.extra = extra


class EpochNotFoundError(KeyNotFoundError, ValueError):
    """A metric has no value at the epoch asked for.

    Both a `KeyError` (like every missing key) and a `ValueError` (what the seed's
    ``pull_category_metric`` and ``pull_matrix_metric`` raise for an unknown epoch).
    """

    def __init__(self, message: str, *, key: str | None = None, epoch: int | None = None) -> None:
        super().__init__(message, key=key)
        self.epoch = epoch


class PathNotFoundError(HoldallError, FileNotFoundError):
    """A file or folder that was named as input (a folder to scan, a listed file) does not exist."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class ExperimentExistsError(HoldallError, FileExistsError):
    """An experiment with this name or id is already persisted and replacing it was not asked for.

    Persist with ``if_exists="replace"`` to overwrite it (mltraq's ``ExperimentAlreadyExists``).
    """

    def __init__(self, message: str, *, name: str | None = None, id_experiment: object = None):
        super().__init__(message)
        self.name = name
        self.id_experiment = id_experiment


class MergeError(HoldallError, RuntimeError):
    """A merge stopped: an input failed with ``stop_on_error=True``, or no input could be merged."""

    def __init__(self, message: str, *, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.errors = dict(errors or {})


class ClosedWorkspaceError(ClosedStorageError, RuntimeError):
    """A `WorkspaceStore` was used after `close()`.

    Also a `RuntimeError`, which is what nirs4all's store raised, so ``except`` clauses
    written for either keep working.
    """


class UntrustedArtifactError(HoldallError, PermissionError):
    """An artifact that loading would unpickle is not signed by this user's key.

    Unpickling runs code: a file planted in a workspace, or one written by someone else,
    is loaded only when the caller passes ``trust=True``.
    """

    def __init__(self, message: str, *, key: str | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.path = path
