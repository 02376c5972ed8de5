"""`GenericIOStore`: one GenericIO file per key, shared by all ranks, one block per rank."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from holdall.scratch import genericio
from holdall.scratch._base import ScratchStore, SoA
from holdall.scratch._gio_format import Axis

__all__ = ["GenericIOStore"]

_AXES: tuple[Axis, ...] = ("x", "y", "z")


class GenericIOStore(ScratchStore):
    """A temporary dictionary of Structure-of-Arrays, spilled to GenericIO files.

    Each value is a dictionary of 1-D arrays of one length (a 0-d value counts as one row),
    of float32, float64 or 8- to 64-bit integers. In spill mode each key is one GenericIO
    file that all ranks write together, each rank its own block, with CRC-64 checks; files
    can be read by HACC's GenericIO tools. Fields named ``x``, ``y`` and ``z`` are flagged
    as physical coordinates, and the volume is recorded as ``[0, box_size)`` on each axis.

    Collective: the constructor, ``store[key] = data``, `pop`, `remove`, ``del`` and `close`
    must be called by every rank of the partition, in the same order. Ranks must pass the
    same field names and dtypes (`CollectiveMismatchError` otherwise, on every rank); they may
    hold different numbers of rows, zero included. Reading (``store[key]``, `get_field`) is
    local: each rank gets its own rows back. Memory mode checks data the same way, so moving
    between memory and disk never changes which inputs are accepted.

    Parameters
    ----------
    partition
        An `mpipartition.Partition`, an mpi4py communicator, or None (one process).
    box_size
        Physical size of the simulated volume, written as the files' physical scale.
    temporary_path
        Folder for spilled files (see `ScratchStore`); None keeps data in memory.
    mmap
        Memory-map blocks on read (arrays then keep the file's byte order, read-only).

    Examples
    --------
    >>> import numpy as np
    >>> with GenericIOStore(None, 1.0, getfixture("tmp_path")) as store:
    ...     store["halos"] = {"x": np.array([0.5, 0.25]), "id": np.array([7, 9])}
    ...     store["halos"]["id"]
    array([7, 9])
    """

    def __init__(
        self,
        partition: object,
        box_size: float,
        temporary_path: str | os.PathLike[str] | None = None,
        *,
        mmap: bool = False,
    ) -> None:
        super().__init__(partition, temporary_path, mmap=mmap)
        self.box_size = float(box_size)

    def _prepare(self, key: str, data: Mapping[str, Any]) -> SoA:
        _, columns, _ = genericio.agree_columns(
            self._group, data, what=f"storing key {key!r}", one_dimensional=True
        )
        return columns

    def _file_for(self, key_path: Path) -> Path:
        return key_path.with_name(f"{key_path.name}.gio")

    def _spill(self, path: Path, data: SoA) -> None:
        genericio.write(
            path,
            data,
            partition=self._group,
            phys_scale=(self.box_size,) * 3,
            coordinates={axis: axis for axis in _AXES if axis in data},
        )

    def _load(self, path: Path, fields: list[str] | None) -> SoA:
        gio = genericio.GenericIOFile(path)
        return gio.read(fields, self._group.rank, mmap=self._mmap)

    _collective_close = True

    def _delete(self, paths: Sequence[Path]) -> None:
        self._group.barrier()  # no rank may still be reading a file rank 0 is deleting
        if self._group.rank == 0:
            for path in paths:
                path.unlink(missing_ok=True)
            self._prune(paths)
