"""Where a datastore object lives: the root from the settings, and URLs that cannot escape it.

An object URL is either ``file:///<relative path>`` (relative to the datastore root, as in
mltraq) or, for a remote root, the full ``s3://bucket/prefix/<relative path>``. Every URL and
prefix is parsed into validated segments before it names anything: ``..``, absolute paths,
backslashes, NUL, other schemes and remote URLs outside the root are refused, and on a local
root no segment may be a symbolic link.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from holdall._core.keys import check_name_lengths, parse_key
from holdall._core.links import first_link
from holdall._core.locations import FsspecLocation, LocalLocation, Location, parse_location
from holdall.errors import InvalidKeyError, UnsafePathError
from holdall.objects._options import options

__all__ = [
    "Root",
    "check_not_experiment_folder",
    "current_root",
    "new_object_name",
    "parse_relative",
    "parse_root",
]

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def parse_relative(path: object, *, what: str) -> tuple[str, ...]:
    """The segments of a relative path below the root (`InvalidKeyError` when it is unsafe)."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if isinstance(path, str) and (path.startswith("~") or re.match(r"^[A-Za-z]:", path)):
        raise InvalidKeyError(
            f"{what} {path!r} is not a relative path below the datastore root", key=path
        )
    return parse_key(path, what=what)


def check_not_experiment_folder(segments: tuple[str, ...], *, what: str) -> None:
    """Refuse a user prefix whose first folder is named like an experiment id.

    The folder ``<root>/<experiment id>/`` belongs to that experiment: persisting it again
    replaces what is inside and deleting it removes it, so self-managed objects must live
    elsewhere (the seed's warning about ``relative_path_prefix``).
    """
    if segments and _UUID.match(segments[0]):
        raise InvalidKeyError(
            f"{what} {'/'.join(segments)!r} starts with {segments[0]!r}, which is named like an "
            "experiment id; that folder is replaced when the experiment is persisted and removed "
            "when it is deleted. Use another prefix, such as 'self_managed/<id>'",
            key="/".join(segments),
        )


@dataclass(frozen=True)
class Root:
    """The datastore root: a local folder or a remote prefix."""

    location: Location
    """Where objects go."""

    @property
    def is_local(self) -> bool:
        """True for a folder on this machine."""
        return self.location.is_local

    @property
    def path(self) -> Path:
        """The local folder (only for a local root)."""
        if not isinstance(self.location, LocalLocation):
            raise TypeError(f"datastore root {self.location.url} is not local")
        return self.location.path

    def url_of(self, segments: tuple[str, ...]) -> str:
        """The URL recorded for the object at `segments`."""
        relative = "/".join(segments)
        return f"file:///{relative}" if self.is_local else f"{self.location.url}/{relative}"

    def segments_of(self, url: object) -> tuple[str, ...]:
        """The validated relative segments `url` names below this root."""
        if not isinstance(url, str):
            raise InvalidKeyError(
                f"datastore URL must be a str like 'file:///prefix/name', got {type(url).__name__}",
                key=url,
            )
        if url.startswith("file:///"):
            return parse_relative(url[len("file:///") :], what=f"datastore URL {url!r}")
        if not self.is_local and url.startswith(self.location.url + "/"):
            return parse_relative(url[len(self.location.url) + 1 :], what=f"datastore URL {url!r}")
        expected = "'file:///<relative path>'"
        if not self.is_local:
            expected += f" or '{self.location.url}/<relative path>'"
        raise InvalidKeyError(
            f"datastore URL {url!r} is not below the datastore root {self.location.url}; "
            f"expected {expected}",
            key=url,
        )

    def target(self, segments: tuple[str, ...]) -> Location:
        """The location of `segments`, refusing symbolic links anywhere below the root."""
        if isinstance(self.location, LocalLocation):
            root = str(self.location.path)
            check_name_lengths("/".join(segments), segments, root=root)
            link = first_link(root, segments)
            if link is not None:
                raise UnsafePathError(
                    f"datastore path {link} is a symbolic link; holdall never follows links "
                    "below the datastore root",
                    path=str(link),
                )
            return LocalLocation(os.path.join(root, *segments))
        return self.location.child("/".join(segments))


def parse_root(url: object) -> Root:
    """The root named by a ``datastore.url`` setting."""
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str) or not url or "\x00" in url:
        raise InvalidKeyError(
            f"option datastore.url must be a path or URL such as 'file:///holdall.datastore', "
            f"got {url!r}",
            key=url,
        )
    if url.startswith("file://"):
        if not url.startswith("file:///") or url == "file:///":
            raise InvalidKeyError(
                f"option datastore.url {url!r}: write 'file:///<folder>' (relative to the working "
                "directory) or 'file:////<absolute path>'",
                key=url,
            )
        # mltraq's convention: what follows 'file:///' is a path, relative unless it starts with '/'.
        return Root(LocalLocation(Path(url[len("file:///") :]).absolute()))
    if "://" not in url:
        return Root(LocalLocation(Path(url).absolute()))
    location = parse_location(url, storage_options=options().get("datastore.storage_options"))
    if not isinstance(location, FsspecLocation) or not location.path:
        raise InvalidKeyError(f"option datastore.url {url!r} names no folder", key=url)
    return Root(location)


def current_root() -> Root:
    """The root of the ``datastore.url`` setting now in force (relative to the working directory)."""
    settings = options()
    key = (settings.generation, os.getcwd())
    cached = _ROOTS.get(key)
    if cached is None:
        cached = parse_root(settings.get("datastore.url"))
        _ROOTS.clear()  # only the settings in force now can be asked for again
        _ROOTS[key] = cached
    return cached


_ROOTS: dict[tuple[int, str], Root] = {}


def new_object_name() -> str:
    """A fresh, unguessable object file name (32 hex digits)."""
    return uuid.uuid4().hex
