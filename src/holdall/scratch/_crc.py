"""CRC-64/XZ, the checksum GenericIO puts after every header and data block.

GenericIO uses the reflected ECMA-182 polynomial with all-ones initial value and final XOR,
the variant catalogued as CRC-64/XZ (check value ``0x995DC9BBDF1939FA`` for ``b"123456789"``).
Each protected region is followed by eight bytes chosen so that the CRC of the region plus
those bytes is all ones; for a reflected CRC those bytes are the bit-inverted CRC in
little-endian order, whatever the byte order of the file.

The checksum runs at several GB/s through the compiled `anycrc` package (the ``genericio``
extra). A pure-Python fallback would run at a few MB/s and make every spill CRC-bound, so
holdall raises `BackendUnavailableError` instead of degrading silently.

`RunningCrc` moves the checksum off the I/O path: it computes the CRC of buffers on one worker
thread while the caller writes or reads the next bytes. anycrc keeps the GIL while it runs,
but ``os.pwrite``/``os.preadv`` release it for the whole system call, so the two overlap;
the worker checksums in pieces so that it hands the GIL back between them when asked.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from typing import Any

from holdall._core.optional import import_optional

__all__ = ["CHECK_RESIDUE", "RunningCrc", "crc64", "crc_from_trailer", "crc_trailer"]

#: CRC of any region followed by its trailer.
CHECK_RESIDUE = 0xFFFF_FFFF_FFFF_FFFF
_MASK = CHECK_RESIDUE


@cache
def _model() -> Any:
    anycrc = import_optional(
        "anycrc", extra="genericio", purpose="checksumming GenericIO headers and blocks"
    )
    return anycrc.Model("CRC64-XZ")


_PIECE = 8 << 20  # bytes checksummed per call on the worker: about a millisecond
_INLINE = 1 << 20  # smaller buffers are checksummed at once, where a thread would cost more


def _bytes(data: bytes | bytearray | memoryview) -> memoryview:
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def crc64(data: bytes | bytearray | memoryview) -> int:
    """Return the CRC-64/XZ of `data` (any C-contiguous buffer, read as bytes)."""
    return int(_model().calc(_bytes(data)))


_SPARE_CORE = len(os.sched_getaffinity(0)) > 1 if hasattr(os, "sched_getaffinity") else True
"""Whether a second core can run the checksum beside the I/O (else it runs inline)."""

_pool_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None


def _worker() -> ThreadPoolExecutor:
    """The one checksum thread of this process (made anew in a forked child)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="holdall-crc"))
        return _pool[1]


class RunningCrc:
    """The CRC-64/XZ of buffers fed in order, computed on a worker while the caller goes on.

    The caller must not change a fed buffer before `value` returns. Small feeds are
    checksummed at once, on the caller's thread.
    """

    def __init__(self) -> None:
        self._crc: int | None = None
        self._last: Future[None] | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add `data` to the checksum (in the background when it is large)."""
        view = _bytes(data)
        if not view.nbytes:
            return
        if self._last is None and (view.nbytes < _INLINE or not _SPARE_CORE):
            self._step(view)
            return
        # One worker runs jobs in submission order, so each piece extends the one before.
        self._last = _worker().submit(self._step, view)

    def _step(self, view: memoryview) -> None:
        model = _model()
        for start in range(0, view.nbytes, _PIECE):
            piece = view[start : start + _PIECE]
            self._crc = int(
                model.calc(piece) if self._crc is None else model.calc(piece, self._crc)
            )

    def value(self) -> int:
        """The CRC of everything fed, once the worker is done with it."""
        if self._last is not None:
            self._last.result()
            self._last = None
        return crc64(b"") if self._crc is None else self._crc


def crc_trailer(crc: int) -> bytes:
    """The eight bytes GenericIO writes after a region whose CRC is `crc`."""
    return ((~crc) & _MASK).to_bytes(8, "little")


def crc_from_trailer(trailer: bytes | bytearray | memoryview) -> int:
    """The CRC a region must have for `trailer` to be its valid trailer."""
    return (~int.from_bytes(bytes(trailer), "little")) & _MASK
