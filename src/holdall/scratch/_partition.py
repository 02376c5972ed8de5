"""The group of processes a scratch store or GenericIO call works across.

A caller passes what it has: an `mpipartition.Partition`, an `mpi4py` communicator, or
None for a single process. `resolve_group` turns it into a `Group`, the few collective
operations holdall needs, bound to that communicator (never to ``COMM_WORLD`` behind the
caller's back). mpi4py is never imported here: an object can only be an mpi4py communicator
if the caller already imported mpi4py, so ``None`` works without MPI installed.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from typing import Any, TypeVar

from holdall.errors import UnsupportedTypeError

__all__ = ["Group", "MPIGroup", "SingleProcess", "resolve_group"]

T = TypeVar("T")


class Group(ABC):
    """The ranks that act together, and the collectives holdall runs among them.

    Every method is collective: all ranks of the group must call it in the same order.
    """

    rank: int
    """This process's rank in the group (0-based)."""
    size: int
    """Number of ranks in the group."""

    @abstractmethod
    def allgather(self, value: T) -> list[T]:
        """Every rank's `value`, in rank order, on every rank."""

    @abstractmethod
    def bcast(self, value: T, root: int = 0) -> T:
        """Rank `root`'s `value` on every rank."""

    @abstractmethod
    def barrier(self) -> None:
        """Return once every rank has called it."""

    @abstractmethod
    def split(self, color: int) -> Group:
        """A group of the ranks that passed the same `color`, ordered by rank."""

    @abstractmethod
    def free(self) -> None:
        """Release a group made by `split` (a no-op for groups the caller passed)."""

    @abstractmethod
    def grid(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """The 3-D process grid and this rank's coordinates in it.

        A 3-D Cartesian communicator (what `mpipartition.Partition` makes) reports its own
        topology; any other group is a line of `size` ranks, ``(size, 1, 1)``.
        """

    def is_cartesian(self) -> bool:
        """Whether the group is a 3-D Cartesian communicator (its `grid` is its own)."""
        return False


class SingleProcess(Group):
    """A group of one: every collective returns at once."""

    rank = 0
    size = 1

    def allgather(self, value: T) -> list[T]:
        return [value]

    def bcast(self, value: T, root: int = 0) -> T:
        return value

    def barrier(self) -> None:
        return None

    def split(self, color: int) -> Group:
        return self

    def free(self) -> None:
        return None

    def grid(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        return (1, 1, 1), (0, 0, 0)


class MPIGroup(Group):
    """The ranks of an mpi4py intra-communicator."""

    def __init__(self, comm: Any, *, owned: bool = False, keep_alive: object = None) -> None:
        self.comm = comm
        # An mpipartition.Partition frees its communicator when collected: hold on to it.
        self._keep_alive = keep_alive
        self.rank = int(comm.Get_rank())
        self.size = int(comm.Get_size())
        self._owned = owned

    def allgather(self, value: T) -> list[T]:
        return list(self.comm.allgather(value))

    def bcast(self, value: T, root: int = 0) -> T:
        result: T = self.comm.bcast(value, root=root)
        return result

    def barrier(self) -> None:
        self.comm.Barrier()

    def split(self, color: int) -> Group:
        return MPIGroup(self.comm.Split(color, self.rank), owned=True)

    def free(self) -> None:
        if self._owned:
            self.comm.Free()
            self._owned = False

    def grid(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        if self.is_cartesian():
            dims, _periods, coords = self.comm.Get_topo()
            return (dims[0], dims[1], dims[2]), (coords[0], coords[1], coords[2])
        return (self.size, 1, 1), (self.rank, 0, 0)

    def is_cartesian(self) -> bool:
        mpi = sys.modules.get("mpi4py.MPI")
        return bool(
            mpi is not None and isinstance(self.comm, mpi.Cartcomm) and self.comm.Get_dim() == 3
        )


def resolve_group(partition: object) -> Group:
    """Turn a store's `partition` argument into a `Group`.

    Parameters
    ----------
    partition
        An `mpipartition.Partition` (its communicator is used), an mpi4py intra-communicator,
        a `Group`, or None for a single process.

    Raises
    ------
    UnsupportedTypeError
        For anything else.
    """
    if partition is None:
        return SingleProcess()
    if isinstance(partition, Group):
        return partition
    mpi = sys.modules.get("mpi4py.MPI")
    comm = getattr(partition, "comm", None)
    if (
        mpi is not None
        and type(partition).__module__.startswith("mpipartition")
        and isinstance(comm, mpi.Intracomm)
    ):
        return MPIGroup(comm, keep_alive=partition)
    if mpi is not None and isinstance(partition, mpi.Intracomm):
        return MPIGroup(partition)
    raise UnsupportedTypeError(
        f"partition must be an mpipartition.Partition, an mpi4py intra-communicator or None "
        f"(one process), got {type(partition).__name__}",
        got=partition,
    )
