"""Settings of the objects part, addressed with dotted paths as mltraq users write them.

``options().set("datastore.url", "s3://bucket/prefix")`` changes a setting for the process;
``with options().ctx({"datastore.url": ...}):`` changes it for a block and restores it after,
even when the block raises.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from holdall.errors import KeyNotFoundError

__all__ = ["Options", "options"]

_MISSING: Any = object()


class Options:
    """A tree of settings (nested dicts), read and written with dotted paths.

    Only the paths of `default_values` exist: a typo such as ``datastore.ulr`` raises
    `KeyNotFoundError` instead of being kept and ignored.
    """

    default_values: ClassVar[dict[str, Any]] = {
        "datastore": {
            # mltraq's convention: ``file:///name`` is the folder ``name`` below the working
            # directory, ``file:////abs/path`` an absolute one; a plain path or ``s3://`` works too.
            "url": "file:///holdall.datastore",
            "relative_path_prefix": "undefined",
            "allow_pickle": False,
            "storage_options": {},
        },
        "database": {"url": "duckdb:///:memory:", "lock_timeout_s": 30.0},
    }
    _instance: ClassVar[Options | None] = None

    def __init__(self) -> None:
        self._values: dict[str, Any] = copy.deepcopy(self.default_values)
        self.generation = 0
        """Changes whenever a setting may have changed (lets callers cache derived values)."""

    @property
    def values(self) -> dict[str, Any]:
        """The whole tree (a copy: change settings with `set`)."""
        return copy.deepcopy(self._values)

    @classmethod
    def instance(cls) -> Options:
        """The process-wide settings object."""
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _walk(self, path: str) -> tuple[dict[str, Any], str]:
        """The dict holding the last segment of `path`, checked against the defaults."""
        if not isinstance(path, str) or not path:
            raise KeyNotFoundError(f"option path must be a non-empty str, got {path!r}", key=path)
        *steps, last = path.split(".")
        node, default = self._values, self.default_values
        for step in steps:
            if not isinstance(default.get(step), dict):
                raise self._unknown(path)
            node, default = node.setdefault(step, {}), default[step]
        if last not in default:
            raise self._unknown(path)
        return node, last

    def _unknown(self, path: str) -> KeyNotFoundError:
        known = ", ".join(sorted(self.flatten(self.default_values)))
        return KeyNotFoundError(f"unknown option {path!r}; known options are {known}", key=path)

    def get(self, path: str, prefer: Any = None, otherwise: Any = _MISSING) -> Any:
        """The value at `path` (a subtree for a group), or `prefer` when it is not None.

        Parameters
        ----------
        path
            Dotted path such as ``"datastore.url"``.
        prefer
            An explicit argument that wins over the setting (mltraq's convention).
        otherwise
            Returned instead of raising when `path` is not a known option.
        """
        if prefer is not None:
            return prefer
        try:
            node, last = self._walk(path)
        except KeyNotFoundError:
            if otherwise is not _MISSING:
                return otherwise
            raise
        return copy.deepcopy(node[last]) if isinstance(node[last], dict) else node[last]

    def set(self, path: str, value: Any) -> None:
        """Set the option at `path` to `value`."""
        node, last = self._walk(path)
        node[last] = value
        self.generation += 1

    def reset(self, path: str | None = None) -> None:
        """Restore `path` (or every option) to its default."""
        if path is None:
            self._values = copy.deepcopy(self.default_values)
            self.generation += 1
            return
        self._walk(path)
        default: Any = self.default_values
        for step in path.split("."):
            default = default[step]
        self.set(path, copy.deepcopy(default))

    @contextlib.contextmanager
    def ctx(self, values: Mapping[str, Any]) -> Iterator[Options]:
        """Set `values` (dotted path -> value) for the duration of a with-block."""
        saved = copy.deepcopy(self._values)
        try:
            for path, value in values.items():
                self.set(path, value)
            yield self
        finally:
            self._values = saved
            self.generation += 1

    @staticmethod
    def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        """Dotted path -> value for every leaf of `tree`."""
        flat: dict[str, Any] = {}
        for name, value in tree.items():
            path = f"{prefix}{name}"
            if isinstance(value, dict) and value and path != "datastore.storage_options":
                flat.update(Options.flatten(value, f"{path}."))
            else:
                flat[path] = value
        return flat


def options() -> Options:
    """The process-wide `Options` (``options().get/set/ctx``)."""
    return Options.instance()
