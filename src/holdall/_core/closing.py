"""`with` support shared by every store: entering checks the store is open, leaving closes it."""

from __future__ import annotations

from abc import abstractmethod
from typing import Self

__all__ = ["Closing"]


class Closing:
    """Mixin for stores with a ``close()``: ``with store:`` raises if it is already closed.

    Subclasses provide `close` and `_check_open` (which raises `ClosedStorageError`).
    """

    @abstractmethod
    def close(self) -> None:
        """Release what the store holds (idempotent)."""

    @abstractmethod
    def _check_open(self) -> None:
        """Raise `ClosedStorageError` once the store is closed."""

    def __enter__(self) -> Self:
        self._check_open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
