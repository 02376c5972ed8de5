"""`DataStore` (values kept outside the record, behind one URL) and `DataStoreIO` (the files).

``DataStoreIO.serialize_write(value, relative_path_prefix="p")`` writes one object to
``<datastore root>/p/<32 hex digits>`` and returns a `DataStoreIO` whose ``url`` is
``file:///p/<name>`` (relative to the root) or, on a remote root, ``s3://.../p/<name>``.
``DataStoreIO(url).read_deserialize()`` brings the value back.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, TypeVar

from holdall._core.locations import LocalLocation, Location
from holdall.errors import InvalidValueError, UnsafePathError
from holdall.objects._bunch import Bunch
from holdall.objects._codec import decode_item, decode_object, encode_object
from holdall.objects._container import BlobWriter, Source, open_source, write_location
from holdall.objects._options import options
from holdall.objects._paths import (
    Root,
    check_not_experiment_folder,
    current_root,
    new_object_name,
    parse_relative,
)

__all__ = ["DataStore", "DataStoreIO", "PackReader"]

T = TypeVar("T")


def _allow_pickle(value: bool | None) -> bool:
    return bool(options().get("datastore.allow_pickle", prefer=value))


class DataStore(Bunch):
    """A dict of values (also attributes) stored outside the record that holds it.

    When the experiment holding it is persisted, its values are written, with the
    experiment's other DataStores, as one object under ``<datastore root>/<experiment id>/``;
    the record keeps the object's URL and the DataStore's place in it, and loading the record
    reads them back with their types.

    Examples
    --------
    >>> import numpy as np
    >>> ds = DataStore()
    >>> ds.a = np.zeros(3)
    >>> sorted(ds)
    ['a']
    """

    def to_url(self, *, allow_pickle: bool | None = None) -> str:
        """Write the contents now (under ``datastore.relative_path_prefix``); return the URL."""
        return DataStoreIO.serialize_write(self, allow_pickle=allow_pickle).url

    @staticmethod
    def from_url(url: str, *, allow_pickle: bool | None = None) -> DataStore:
        """Read the DataStore written at `url`."""
        return _as_datastore(DataStoreIO(url).read_deserialize(allow_pickle=allow_pickle), url)


def _as_datastore(value: Any, url: str) -> DataStore:
    if not isinstance(value, dict):
        raise InvalidValueError(
            f"datastore object {url} holds a {type(value).__name__}, not a DataStore",
            key=url,
            expected="DataStore",
            got=type(value).__name__,
        )
    return value if type(value) is DataStore else DataStore(value)


class PackReader:
    """Reads DataStores out of the packs that persists write, opening each pack once.

    Loading an experiment of n runs reads n items of one pack: each item is decoded from the
    pack's memory map and manifest, parsed on first use. Use it as a context manager; values
    read stay valid after it closes.
    """

    def __init__(self, *, allow_pickle: bool) -> None:
        self._allow_pickle = allow_pickle
        self._stack = contextlib.ExitStack()
        self._packs: dict[str, tuple[Source, dict[str, Any]]] = {}

    def __enter__(self) -> PackReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def datastore(self, url: str, index: int) -> DataStore:
        """Item `index` of the pack at `url`."""
        if url not in self._packs:
            root = current_root()
            target = root.target(root.segments_of(url))
            source = self._stack.enter_context(open_source(target, name=url))
            self._packs[url] = (source, source.manifest())
        source, manifest = self._packs[url]
        value = decode_item(source, manifest, index, allow_pickle=self._allow_pickle)
        return _as_datastore(value, f"{url}#{index}")


class DataStoreIO:
    """One object in the datastore, named by its URL.

    Parameters
    ----------
    url
        ``file:///<relative path>`` below the datastore root, or a URL below a remote root.
        Checked at once: a URL that would leave the root raises `InvalidKeyError`.
    """

    __slots__ = ("_checked", "url")

    def __init__(self, url: str) -> None:
        root = current_root()
        self._checked: tuple[Root, tuple[str, ...]] | None = (root, root.segments_of(url))
        self.url = url

    def __repr__(self) -> str:
        return f"DataStoreIO({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataStoreIO) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    @classmethod
    def get_filepath(cls, url: str) -> str:
        """The file (local path, or remote URL) that `url` names under the current root."""
        root = current_root()
        return root.target(root.segments_of(url)).url

    @classmethod
    def delete(cls, relative_path_prefix: str) -> None:
        """Remove the file or folder `relative_path_prefix` below the root (nothing if missing).

        Refuses paths that leave the root (`InvalidKeyError`) and symbolic links anywhere on
        the way (`UnsafePathError`); the root itself cannot be deleted this way.
        """
        root = current_root()
        segments = parse_relative(relative_path_prefix, what="DataStoreIO.delete path")
        target = root.target(segments)
        if isinstance(target, LocalLocation) and target.path.is_dir():
            _refuse_links_inside(target.path)
        target.remove()

    @classmethod
    def serialize_write(
        cls,
        obj: Any,
        relative_path_prefix: str | None = None,
        *,
        allow_pickle: bool | None = None,
    ) -> DataStoreIO:
        """Serialize `obj` into a new object below `relative_path_prefix`; return it.

        Raises
        ------
        UnsupportedTypeError
            When a part of `obj` has no pickle-free encoding and pickle was not allowed.
        """
        pickle_ok = _allow_pickle(allow_pickle)
        where = "value" if not isinstance(obj, DataStore) else "DataStore"
        return cls._create(
            relative_path_prefix,
            lambda handle: encode_object(
                BlobWriter(handle), obj, allow_pickle=pickle_ok, where=where
            ),
        )

    @classmethod
    def write(
        cls, data: bytes | bytearray | memoryview, relative_path_prefix: str | None = None
    ) -> DataStoreIO:
        """Write `data` as they are (no serialization) into a new object; return it."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidValueError(
                f"DataStoreIO.write takes bytes, got {type(data).__name__}; use serialize_write "
                "for other values",
                expected="bytes",
                got=type(data).__name__,
            )
        return cls._create(relative_path_prefix, lambda handle: handle.write(data))

    @classmethod
    def _create(cls, relative_path_prefix: str | None, produce: Any) -> DataStoreIO:
        prefix = options().get("datastore.relative_path_prefix", prefer=relative_path_prefix)
        segments = parse_relative(prefix, what="relative_path_prefix")
        check_not_experiment_folder(segments, what="relative_path_prefix")
        return DataStoreIO._of(write_new_object(current_root(), segments, produce))

    @classmethod
    def _of(cls, url: str) -> DataStoreIO:
        """An instance for a URL holdall just made (already valid: no second check)."""
        made = cls.__new__(cls)
        made.url = url
        made._checked = None
        return made

    def _target(self) -> Location:
        """Where the object is under the root now in force (its URL parsed once per root)."""
        root = current_root()
        if self._checked is None or self._checked[0] is not root:
            self._checked = (root, root.segments_of(self.url))
        return root.target(self._checked[1])

    def read(self) -> bytes:
        """The object's bytes, exactly as stored."""
        target = self._target()
        with open_source(target, name=self.url) as source:
            return source.read_all()

    def read_deserialize(
        self, expected_type: type[T] | None = None, *, allow_pickle: bool | None = None
    ) -> Any:
        """The value the object was serialized from, with its type.

        Parameters
        ----------
        expected_type
            When given, a value of another type raises `InvalidValueError`.
        allow_pickle
            Load pickled parts (only for objects you trust); default ``datastore.allow_pickle``.
        """
        target = self._target()
        with open_source(target, name=self.url) as source:
            value = decode_object(source, allow_pickle=_allow_pickle(allow_pickle))
        if expected_type is not None and not isinstance(value, expected_type):
            raise InvalidValueError(
                f"datastore object {self.url} holds a {type(value).__name__}, expected "
                f"{expected_type.__name__}",
                key=self.url,
                expected=expected_type.__name__,
                got=type(value).__name__,
            )
        return value


def write_new_object(root: Root, prefix: tuple[str, ...], produce: Any) -> str:
    """Write a new object named at random below `prefix`; return its URL."""
    segments = (*prefix, new_object_name())
    write_location(root.target(segments), produce)
    return root.url_of(segments)


def _refuse_links_inside(folder: os.PathLike[str]) -> None:
    """Refuse to delete a folder that holds a symbolic link (it may point anywhere)."""
    for path, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            full = os.path.join(path, name)
            if os.path.islink(full):
                raise UnsafePathError(
                    f"refusing to delete {folder}: it holds the symbolic link {full}",
                    path=full,
                )
