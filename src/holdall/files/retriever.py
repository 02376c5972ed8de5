"""`CADFileRetriever`: the input files of a pipeline, by extension and by glob or regex (seed 000)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable

from holdall.errors import InvalidValueError
from holdall.files.providers import StorageProvider, parse_extensions

__all__ = ["CADFileRetriever"]


class CADFileRetriever:
    """Select files of a `StorageProvider` by extension and name pattern.

    Parameters
    ----------
    storage_provider
        Where the files are (`LocalStorageProvider`, `FsspecStorageProvider`, ...).
    formats
        Extensions to keep, any case, with or without the dot (``["step", ".IGES"]``); None
        keeps every file.
    filter_pattern
        A glob (``"gear_*"``, ``"**/v2/*.step"``) or, with `use_regex`, a regular expression.
        A glob without ``/`` is matched against the file name, one with ``/`` against the
        path below the provider's root (``*`` also crosses ``/`` there, as in `fnmatch`). A
        regex is searched for (`re.search`) in the path below the root. Matching is
        case-sensitive.
    use_regex
        Read `filter_pattern` as a regular expression.

    Raises
    ------
    InvalidValueError
        A bad extension, or a regular expression that does not compile (with the reason).
    """

    def __init__(
        self,
        storage_provider: StorageProvider,
        formats: Iterable[str] | str | None = None,
        filter_pattern: str | None = None,
        use_regex: bool = False,
    ) -> None:
        if not isinstance(storage_provider, StorageProvider):
            raise InvalidValueError(
                f"storage_provider must be a StorageProvider, got {type(storage_provider).__name__}",
                got=storage_provider,
            )
        self.storage_provider = storage_provider
        self.formats = parse_extensions(formats)
        self.filter_pattern = filter_pattern
        self.use_regex = use_regex
        self._matches = self._matcher(filter_pattern, use_regex)

    @staticmethod
    def _matcher(pattern: str | None, use_regex: bool) -> Callable[[str], bool] | None:
        """A test of a relative path, or None when every file matches."""
        if pattern is None:
            return None
        if not isinstance(pattern, str) or pattern == "":
            raise InvalidValueError(
                f"filter_pattern must be a non-empty str, got {pattern!r}", got=pattern
            )
        if use_regex:
            try:
                compiled = re.compile(pattern)
            except re.error as err:
                raise InvalidValueError(
                    f"filter_pattern {pattern!r} is not a valid regular expression: {err}",
                    expected="a Python regular expression", got=pattern,
                ) from err  # fmt: skip
            return lambda relative: compiled.search(relative) is not None
        glob = re.compile(fnmatch.translate(pattern))
        if "/" in pattern:
            return lambda relative: glob.match(relative) is not None
        # The file name is what follows the last '/': match from there, without slicing.
        return lambda relative: glob.match(relative, relative.rfind("/") + 1) is not None

    def get_file_list(self) -> list[str]:
        """Paths of the selected files, sorted (the same order on every run and machine)."""
        entries = self.storage_provider.iter_files(self.formats)
        matches = self._matches
        if matches is None:
            selected = [entry.path for entry in entries]
        else:
            selected = [entry.path for entry in entries if matches(entry.relative)]
        selected.sort()
        return selected
