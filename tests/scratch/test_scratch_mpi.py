"""The scratch stores and GenericIO under real MPI: `mpiexec -n 2` runs small scripts.

Each script prints ``ok <rank>`` lines only after its own checks passed on that rank; a
failing assertion or a hang fails the launch, and the test checks every rank reported.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from holdall.scratch import NumpyStore

pytestmark = pytest.mark.mpi
Runner = Callable[..., list[str]]

STORES = """
import os
import numpy as np
from mpi4py import MPI
import mpipartition
from holdall.errors import CollectiveMismatchError, KeyNotFoundError
from holdall.scratch import GenericIOStore, NumpyStore

comm = MPI.COMM_WORLD
rank = comm.rank
n = 0 if rank == 1 else 5  # rank 1 holds zero rows
mine = {"x": np.arange(n, dtype="f8") + 10 * rank, "id": np.arange(n, dtype="i8")}
for make in (lambda: NumpyStore(mpipartition.Partition(), "spill"),
             lambda: GenericIOStore(comm, 3.0, "spill"),
             lambda: GenericIOStore(mpipartition.Partition(), 3.0)):
    with make() as store:
        store["a"] = mine
        got = store["a"]
        assert got["x"].tolist() == mine["x"].tolist(), got
        assert store.get_field("a", "id")["id"].dtype == np.int64
        try:
            store["missing"]
        except KeyNotFoundError:
            pass
        else:
            raise AssertionError("missing key did not raise")
        if isinstance(store, GenericIOStore):
            bad = {"x": mine["x"].astype("f4" if rank == 1 else "f8"), "id": mine["id"]}
            try:
                store["b"] = bad
            except CollectiveMismatchError as err:
                assert "rank 1" in str(err), err
            else:
                raise AssertionError("dtype mismatch did not raise")
            assert "b" not in store
        popped = store.pop("a")
        assert len(popped["x"]) == n and "a" not in store
        store["c"] = mine
        root = store.temporary_path
    comm.Barrier()
    if root is not None:
        assert not os.path.exists("spill"), os.listdir("spill")
print("ok", rank, flush=True)
"""

GENERICIO = """
import numpy as np
from mpi4py import MPI
from holdall.scratch import genericio

comm = MPI.COMM_WORLD
rank = comm.rank
rows = [3, 0][rank]
data = {"v": np.arange(rows, dtype=">i4") + 100 * rank, "p": np.ones((rows, 3), "f4")}
genericio.write("shared.gio", data, partition=comm, compress=True, byteorder="big")
genericio.write("split.gio", data, partition=comm, file_partition=rank)
comm.Barrier()
for name in ("shared.gio", "split.gio"):
    gio = genericio.GenericIOFile(name)
    assert gio.num_ranks == 2 and gio.num_elements() == 3, name
    assert genericio.read(name, "v")["v"].tolist() == [0, 1, 2]
    own = genericio.read(name, partition=comm)
    assert own["v"].tolist() == data["v"].tolist() and own["p"].shape == (rows, 3)
    one = genericio.read(name, "v", partition=MPI.COMM_SELF, redistribute=True)
    assert one["v"].tolist() == [0, 1, 2]
assert genericio.GenericIOFile("split.gio").is_rank_map
assert genericio.GenericIOFile("shared.gio").header.dims == (2, 1, 1)
print("ok", rank, flush=True)
"""

SEED_GENERICIO = """
import mpipartition
import numpy as np
from holdall.scratch import GenericIOStore

# Creating a partition
partition = mpipartition.Partition()
# Creating a store
store = GenericIOStore(partition, 1.0, './tmp')
data = {x: np.random.uniform(10) for x in 'xyz'}
store['pos_0'] = data
del data
# Do some memory-expensive stuff until you need the data again...
data_0 = store['pos_0']
# Cleanup
store.remove('pos_0')
print("ok", partition.rank, sorted(data_0), flush=True)
"""

SEED_NUMPY = """
import mpipartition
import numpy as np
from holdall.scratch import NumpyStore

# Creating a partition
partition = mpipartition.Partition()
# Creating a store
store = NumpyStore(partition, './tmp')
data = {x: np.random.uniform(10) for x in 'xyz'}
store['pos_0'] = data
# Do some memory-expensive stuff until you need the data again...
data_0 = store['pos_0']
# Cleanup
store.remove('pos_0')
print("ok", partition.rank, sorted(data_0), flush=True)
"""


KILLED = """
import os, signal
import numpy as np
from mpi4py import MPI
import mpipartition
from holdall.scratch import GenericIOStore, NumpyStore

comm = MPI.COMM_WORLD
stores = [NumpyStore(mpipartition.Partition(), "spill"), GenericIOStore(comm, 1.0, "spill")]
for store in stores:
    store["k"] = {"x": np.arange(5.0) + comm.rank}
comm.Barrier()
print("ok", comm.rank, flush=True)
comm.Barrier()
os.kill(os.getpid(), signal.SIGKILL)  # every rank dies without closing its stores
"""


NEVER_CLOSED = """
import numpy as np
from mpi4py import MPI
import mpipartition
from holdall.scratch import GenericIOStore, NumpyStore

comm = MPI.COMM_WORLD
numpy_store = NumpyStore(mpipartition.Partition(), "spill")
gio_store = GenericIOStore(comm, 1.0, "spill")
for store in (numpy_store, gio_store):
    store["k"] = {"x": np.arange(5.0) + comm.rank}
print("ok", comm.rank, flush=True)
"""


def _reported(lines: list[str]) -> set[str]:
    """The ranks that printed their ``ok`` line."""
    return {line.split()[1] for line in lines if line.startswith("ok ")}


def test_stores_on_two_ranks_with_an_empty_rank(tmp_path: Path, mpi_run: Runner) -> None:
    assert _reported(mpi_run(STORES, 2, tmp_path)) == {"0", "1"}


def test_genericio_parallel_write_split_layout_and_redistribution(
    tmp_path: Path, mpi_run: Runner
) -> None:
    assert _reported(mpi_run(GENERICIO, 2, tmp_path)) == {"0", "1"}


@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("script", [SEED_GENERICIO, SEED_NUMPY], ids=["genericio", "numpy"])
def test_seed_examples_run_unchanged(
    tmp_path: Path, ranks: int, script: str, mpi_run: Runner
) -> None:
    lines = mpi_run(script, ranks, tmp_path)
    assert _reported(lines) == {str(r) for r in range(ranks)}
    assert all(line.endswith("['x', 'y', 'z']") for line in lines if line.startswith("ok"))
    assert not (tmp_path / "tmp").exists()  # nor the folders the store made


def test_folders_of_killed_ranks_are_removed_by_the_next_store(
    tmp_path: Path, mpi_run: Runner
) -> None:
    assert _reported(mpi_run(KILLED, 2, tmp_path, check=False)) == {"0", "1"}
    spill = tmp_path / "spill"
    files = sorted(p.name for p in spill.rglob("*") if p.is_file())
    assert files == ["k.gio", "k.rank0.soa", "k.rank1.soa"]  # one folder per store
    with NumpyStore(None, spill):
        assert list(spill.iterdir()) == []


def test_stores_never_closed_under_mpi_exit_without_blocking(
    tmp_path: Path, mpi_run: Runner
) -> None:
    """NumpyStore closes at exit on each rank; a multi-rank GenericIOStore cannot (its close
    is collective), so its file stays until the next store finds its owner dead."""
    assert _reported(mpi_run(NEVER_CLOSED, 2, tmp_path)) == {"0", "1"}
    spill = tmp_path / "spill"
    assert sorted(p.name for p in spill.rglob("*") if p.is_file()) == ["k.gio"]
    with NumpyStore(None, spill):
        assert list(spill.iterdir()) == []
