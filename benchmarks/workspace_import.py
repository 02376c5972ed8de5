"""Benchmark `import_workspace` of nirs4all workspaces against holdall's bulk write.

Run with ``.venv/bin/python -m benchmarks.workspace_import`` (``--quick`` for a smoke run).
Each nirs4all version (0.7.1: DuckDB; latest: SQLite + Parquet) writes a workspace of N
predictions, each with a 200-value ``y_true`` and ``y_pred``, in its own environment under
``benchmarks/.envs/`` (the ones `benchmarks.workspace` builds); the workspaces are kept in
``benchmarks/.envs/import-inputs/`` for the next run (0.7.1 writes about 8 predictions/s by
the end of 10,000, one call each). holdall then imports it, taking turns with writing the
same N predictions through its bulk API ``save_predictions`` (one Arrow table, the fastest
path), timed to its ``flush()`` and to its ``close()``; medians of the repeats. The issue's
target: the import runs at least at the bulk API's rate. Writes section
``workspace-import`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks._report import machine_line, markdown_table, write_section
from benchmarks.peer_envs import ENVS
from benchmarks.workspace import ARRAY_LEN, PEERS, Holdall, peer_interpreter
from holdall.workspace import import_workspace

WRITER = r"""
import json, sys
from pathlib import Path
import numpy as np
import nirs4all
from nirs4all.pipeline.storage import WorkspaceStore
n, length, folder = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
rng = np.random.default_rng(0)
Y1, Y2 = rng.random((n, length)), rng.random((n, length))
store = WorkspaceStore(folder)
run = store.begin_run("bench", {}, [{"name": "wheat"}])
pipeline = store.begin_pipeline(run, "p", {}, [], "wheat", "h")
latest = not nirs4all.__version__.startswith("0.")
batch = []
for i in range(n):
    pid = store.save_prediction(pipeline, None, "wheat", f"m{i % 50}", "sk.PLS", str(i % 5),
                                ("val", "test", "train")[i % 3], float(rng.random()),
                                float(rng.random()), None, "rmse", "regression", length, 10,
                                {}, {}, None, None, 0, 0.0)
    if latest:
        batch.append({"prediction_id": pid, "dataset_name": "wheat", "y_true": Y1[i],
                      "y_pred": Y2[i], "task_type": "regression"})
    else:
        store.save_prediction_arrays(pid, Y1[i], Y2[i])
if batch:
    store.array_store.save_batch(batch)
store.close()
print(json.dumps({"version": nirs4all.__version__}))
"""


def peer_workspace(python: Path, n: int, folder: Path) -> str:
    """Have nirs4all write the workspace (or reuse the one kept); return its version."""
    done_marker = folder / ".written-by"
    if done_marker.is_file():
        return done_marker.read_text()
    shutil.rmtree(folder, ignore_errors=True)
    done = subprocess.run(
        [str(python), "-c", WRITER, str(n), str(ARRAY_LEN), str(folder)],
        capture_output=True, text=True, timeout=3600, check=False,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1:])
    version = str(json.loads(done.stdout.strip().splitlines()[-1])["version"])
    done_marker.write_text(version)
    return version


def measure(source: Path, n: int, repeats: int, tmp: Path) -> tuple[float, float, float]:
    """Median seconds of: the import, the bulk write to flush(), and to close().

    The import and the bulk write take turns, so a change of load hits both alike.
    """
    bench = Holdall(n, 1, tmp)
    imported, flushed, closed = [], [], []
    import_workspace(source, tmp / "warm-up")  # imports, caches: not timed
    shutil.rmtree(tmp / "warm-up")
    for k in range(repeats):
        target = tmp / f"imported-{k}"
        start = time.perf_counter()
        import_workspace(source, target)
        imported.append(time.perf_counter() - start)
        shutil.rmtree(target)
        store, _run, pipeline_id = bench.fresh()
        table = bench.arrow_table(pipeline_id)
        start = time.perf_counter()
        store.save_predictions(table)
        store.flush()
        flushed.append(time.perf_counter() - start)
        store.close()
        closed.append(time.perf_counter() - start)
        shutil.rmtree(store.workspace_path)
    median = statistics.median
    return median(imported), median(flushed), median(closed)


HEADER = ["source", "predictions", "import", "bulk to flush", "import / bulk", "bulk to close",
          "import / bulk to close"]  # fmt: skip

SIZES = {"n4a071": (10_000,), "n4alatest": (10_000, 150_000)}
"""Predictions per workspace; 0.7.1 would take hours to write 150,000 one call at a time."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 predictions, 1 repeat")
    args = parser.parse_args()
    command = ".venv/bin/python -m benchmarks.workspace_import" + (" --quick" if args.quick else "")
    inputs = ENVS / "import-inputs"
    tmp = Path(tempfile.mkdtemp(prefix="holdall-bench-import-"))
    rows, notes = [], []
    try:
        for label, env_name in PEERS.items():
            python = peer_interpreter(env_name, label, notes)
            if python is None:
                continue
            for n in (1000,) if args.quick else SIZES[env_name]:
                version = peer_workspace(python, n, inputs / f"{env_name}-{n}")
                repeats = 1 if args.quick else (5 if n <= 10_000 else 3)
                imported, flushed, closed = measure(inputs / f"{env_name}-{n}", n, repeats, tmp)
                rows.append([
                    f"nirs4all {version}", f"{n:,}", f"{n / imported:,.0f}/s",
                    f"{n / flushed:,.0f}/s", f"{flushed / imported:.2f}x",
                    f"{n / closed:,.0f}/s", f"{closed / imported:.2f}x",
                ])  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    body = "\n".join(
        [
            "## Workspace import (issue 12)",
            "",
            f"`{command}`; {machine_line()}. Predictions with {ARRAY_LEN}-value `y_true` and "
            "`y_pred`, written by each nirs4all version itself. import: `import_workspace` into a "
            "fresh folder (tables, arrays, the copy of the source's files, committed and closed); "
            "bulk: holdall's `save_predictions` of the same predictions as one Arrow table, timed "
            "to `flush()` (the figure of the workspace table) and to `close()` (durable and "
            "checkpointed, as the import's result is); the two take turns, medians of 5 repeats "
            "(3 at 150,000). Target: import >= 1.0x bulk.",
            "",
            markdown_table(HEADER, rows),
            *(["", *notes] if notes else []),
        ]
    )
    write_section("workspace-import", body)
    print(body)


if __name__ == "__main__":
    main()
