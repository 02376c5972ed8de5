"""`with` support shared by every store, and closing what the caller forgot to close.

`Closing` gives a store its with-block: entering checks the store is open, leaving closes it.
`close_at_exit` registers a store so that buffered values reach disk when the caller never
calls ``close()``: at garbage collection (the store's ``__del__``) and at interpreter exit
(one ``atexit`` hook for all stores). Neither runs on ``SIGKILL`` or ``os._exit``; what those
lose is what was never flushed.
"""

from __future__ import annotations

import atexit
import sys
import threading
import warnings
import weakref
from abc import abstractmethod
from typing import Protocol, Self

__all__ = ["Closing", "close_at_exit", "close_quietly", "forget_at_exit"]


class _Closable(Protocol):
    def close(self) -> None: ...


_open_stores: weakref.WeakSet[_Closable] = weakref.WeakSet()
_registry_lock = threading.Lock()


def close_at_exit(store: _Closable) -> None:
    """Close `store` at interpreter exit if it is still open then (idempotent per store)."""
    with _registry_lock:
        _open_stores.add(store)


def forget_at_exit(store: _Closable) -> None:
    """Remove `store` from the exit registry (after it was closed)."""
    with _registry_lock:
        _open_stores.discard(store)


def close_quietly(store: _Closable, *, when: str) -> None:
    """Close `store`, turning a failure into a warning: used where nobody can catch it."""
    try:
        store.close()
    except Exception as err:  # reported: nobody can catch it at exit or in __del__
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            try:
                warnings.warn(
                    f"holdall could not close {store!r} {when}: {err}", RuntimeWarning, stacklevel=1
                )
            except Exception:  # the warnings machinery is torn down at shutdown
                print(f"holdall could not close {store!r} {when}: {err}", file=sys.stderr)


@atexit.register
def _close_all_at_exit() -> None:
    with _registry_lock:
        stores = list(_open_stores)
        _open_stores.clear()
    for store in stores:
        close_quietly(store, when="at interpreter exit")


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
