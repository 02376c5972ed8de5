"""Scratch stores: park large Structure-of-Arrays out of memory and fetch them back.

`NumpyStore` keeps any arrays, one raw file per MPI rank and key; `GenericIOStore` keeps
equal-length 1-D columns in one GenericIO file per key shared by all ranks. Both keep data
in memory when no `temporary_path` is given, behave like a dictionary, and delete every file
they made on `close` (or at the end of a ``with`` block). `holdall.scratch.genericio` reads
and writes HACC GenericIO files directly.
"""

from __future__ import annotations

from holdall.scratch import genericio
from holdall.scratch._base import ScratchStore, SoA
from holdall.scratch._genericio_store import GenericIOStore
from holdall.scratch._numpy_store import NumpyStore

__all__ = ["GenericIOStore", "NumpyStore", "ScratchStore", "SoA", "genericio"]
