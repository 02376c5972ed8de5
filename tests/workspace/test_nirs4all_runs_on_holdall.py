"""nirs4all 0.7.1's own pipeline code (``nirs4all.run``, ranking, replay, export) on holdall.

Runs in nirs4all 0.7.1's environment (``benchmarks/.envs/n4a071``) with holdall on its path
(holdall's pure-Python dependencies nirs4all lacks are installed beside it, once, into
``benchmarks/.envs/n4a071-holdall-deps``); skipped without that environment. The same
script runs on nirs4all's own store, and every result must be the same.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from tests.workspace.conftest import REPO
from tests.workspace.test_import import NIRS4ALL_071, needs_nirs4all

RUNNER = Path(__file__).with_name("n4a07_runner.py")
DEPS = REPO / "benchmarks" / ".envs" / "n4a071-holdall-deps"
MISSING = ["zarr==3.1.6", "numcodecs==0.16.6", "donfig", "crc32c", "google-crc32c"]
"""holdall's dependencies that nirs4all 0.7.1's environment lacks (it has the others)."""


def _holdall_path() -> str:
    if not (DEPS / ".complete").exists():
        subprocess.run(
            [str(NIRS4ALL_071), "-m", "pip", "install", "--quiet", "--no-deps", "--target",
             str(DEPS), *MISSING],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        (DEPS / ".complete").touch()
    return os.pathsep.join([str(DEPS), str(REPO / "src"), str(REPO)])


def _run(workspace: Path, store: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": _holdall_path() if store == "holdall" else ""}
    done = subprocess.run(
        [str(NIRS4ALL_071), str(RUNNER), str(workspace), store],
        capture_output=True, text=True, timeout=600, check=False, env=env,
        cwd=workspace.parent,  # nirs4all also writes a workspace/ in its working directory
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@needs_nirs4all
def test_nirs4all_s_own_pipeline_code_runs_on_holdall_s_store(tmp_path: Path) -> None:
    ours = _run(tmp_path / "holdall", "holdall")
    theirs = _run(tmp_path / "nirs4all", "nirs4all")
    assert ours["store"].startswith("holdall.")
    assert theirs["store"].startswith("nirs4all.")
    for key in ("num_predictions", "stored_predictions", "top"):
        assert ours[key] == theirs[key], key
    assert ours["num_predictions"] > 0
    for key in ("replay", "bundle"):
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-12)
