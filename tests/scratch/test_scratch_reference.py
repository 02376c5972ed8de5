"""Cross-check against the reference GenericIO C++ library: each reads the other's files,
and what holdall writes is byte for byte what the reference writes.

The reference is not on PyPI, so nothing here builds it: set ``HOLDALL_GENERICIO_REFERENCE``
to a driver built with ``tests/scratch/reference/build.sh`` (from a checkout of the
reference sources) to run these tests; without it they skip. Both sides write the same table
on two MPI ranks in four layouts, uncompressed and with blosc:

- plain: one file shared by both ranks;
- split: each rank its own partition, a rank map plus ``#0`` and ``#1``;
- same: both ranks name partition 3, which is no split (a plain file);
- cart: split on a 2x1x1 Cartesian communicator (the map carries ``$x $y $z``).

Compressed blocks are compared by what they decode to, not by their bytes: the reference
bundles c-blosc 1.10, python-blosc 1.21, and the two compress the same input differently.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from holdall.scratch import genericio

pytestmark = pytest.mark.mpi
Runner = Callable[..., list[str]]
LAYOUTS = ["plain", "split", "same", "cart"]

HOLDALL_WRITER = """
import sys
import numpy as np
from mpi4py import MPI
from holdall.scratch import genericio

layout, compress, name = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
world = MPI.COMM_WORLD
rank = world.rank
rows = np.arange(3000 + 7 * rank)  # the driver's table, rank by rank
data = {
    "id": (1000000 * rank + rows // 16).astype("i8"),
    "x": (0.5 * (rows % 100)).astype("f4"),
    "m": rank + 0.25 * rows,
}
comm = world.Create_cart([world.size, 1, 1]) if layout == "cart" else world
part = {"plain": None, "split": rank, "same": 3, "cart": rank}[layout]
genericio.write(name, data, partition=comm, compress=compress, phys_scale=(2.0, 2.0, 2.0),
                coordinates={"x": "x"}, file_partition=part)
"""


def _expected(rank: int) -> dict[str, np.ndarray]:
    rows = np.arange(3000 + 7 * rank)
    return {
        "id": (1000000 * rank + rows // 16).astype("i8"),
        "x": (0.5 * (rows % 100)).astype("f4"),
        "m": rank + 0.25 * rows,
    }


@pytest.fixture
def reference() -> str:
    driver = os.environ.get("HOLDALL_GENERICIO_REFERENCE")
    if not driver:
        pytest.skip("HOLDALL_GENERICIO_REFERENCE is not set (see tests/scratch/reference)")
    if not os.access(driver, os.X_OK):
        pytest.skip(f"HOLDALL_GENERICIO_REFERENCE={driver} is not an executable")
    return driver


def _files(folder: Path, stem: str) -> list[str]:
    return sorted(p.name[len(stem) :] for p in folder.glob(f"{stem}*"))


def _printed(lines: list[str]) -> dict[tuple[int, str], list[float]]:
    """The driver's ``<rank> <name> <values...>`` lines."""
    out = {}
    for line in lines:
        rank, name, *values = line.split()
        out[int(rank), name] = [float(v) for v in values]
    return out


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "blosc"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_reference_and_holdall_write_the_same_and_read_each_other(
    tmp_path: Path, mpi_program: Runner, reference: str, layout: str, compress: bool
) -> None:
    env = {"GENERICIO_COMPRESS": "1"} if compress else {}
    mpi_program([reference, "write", "ref.gio", layout], 2, tmp_path, env=env)
    script = tmp_path / "writer.py"
    script.write_text(HOLDALL_WRITER)
    flag = "1" if compress else "0"
    mpi_program([sys.executable, str(script), layout, flag, "hol.gio"], 2, tmp_path)

    suffixes = _files(tmp_path, "ref.gio")
    assert suffixes == _files(tmp_path, "hol.gio")
    assert suffixes == (["", "#0", "#1"] if layout in ("split", "cart") else [""])
    for suffix in suffixes:
        ref, hol = tmp_path / f"ref.gio{suffix}", tmp_path / f"hol.gio{suffix}"
        ref_file, hol_file = genericio.GenericIOFile(ref), genericio.GenericIOFile(hol)
        if not compress or ref_file.is_rank_map:  # maps of two ranks stay uncompressed
            assert hol.read_bytes() == ref.read_bytes(), suffix
            continue
        ref_h, hol_h = ref_file.header, hol_file.header
        assert (hol_h.variables, hol_h.ranks[0].coords, hol_h.dims, hol_h.phys_scale) == (
            ref_h.variables,
            ref_h.ranks[0].coords,
            ref_h.dims,
            ref_h.phys_scale,
        )
        assert [r.nelems for r in hol_h.ranks] == [r.nelems for r in ref_h.ranks]
        assert hol_h.blocks is not None
        assert ref_h.blocks is not None
        assert [[b.filters for b in row] for row in hol_h.blocks] == [
            [b.filters for b in row] for row in ref_h.blocks
        ]

    for rank in (0, 1):
        got = genericio.read(tmp_path / "ref.gio", ranks=rank)
        for name, column in _expected(rank).items():
            np.testing.assert_array_equal(got[name], column)
    ours = _printed(mpi_program([reference, "read", "hol.gio"], 1, tmp_path))
    theirs = _printed(mpi_program([reference, "read", "ref.gio"], 1, tmp_path))
    assert ours == theirs
    assert ours[1, "m"] == _expected(1)["m"].tolist()
