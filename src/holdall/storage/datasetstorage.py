"""Import path of seed code: ``from hoops_ai.storage.datasetstorage import SchemaBuilder``.

An alias of `holdall.schema` (and, loaded on first use, of `holdall.dataset`'s
`DatasetMerger` and `DatasetInfo`), so switching is a one-word edit of the import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from holdall.schema import SchemaBuilder, SchemaGroup

if TYPE_CHECKING:
    from holdall.dataset import DatasetInfo, DatasetMerger

__all__ = ["DatasetInfo", "DatasetMerger", "SchemaBuilder", "SchemaGroup"]


def __getattr__(name: str) -> Any:
    # Lazy: holdall.dataset builds on holdall.storage, so storage must not import it eagerly.
    if name in ("DatasetInfo", "DatasetMerger"):
        import holdall.dataset

        return getattr(holdall.dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
