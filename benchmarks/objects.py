"""Benchmark holdall.objects beside mltraq (its own venv) and plain ``np.save``/``np.load``.

Run with ``.venv/bin/python -m benchmarks.objects`` (``--sizes 1,100`` to skip the 1 GB case
on a busy machine, ``--repeats 1`` for a smoke run). mltraq is installed with pip on first
use into ``benchmarks/.envs/mltraq`` (`benchmarks.peer_envs`). Every measurement runs in a fresh process, so its
peak resident set size (``getrusage``) is its own: the figure reported is the peak above the
process's baseline (after imports and a warm-up use of the database, before the value is
made), divided by the value's size. Writes section ``objects`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._report import machine_line, markdown_table, write_section
from benchmarks.peer_envs import PeerEnvError, peer_python

SRC = Path(__file__).resolve().parent.parent / "src"
SMALL_COUNT = 1000
SMALL_FLOATS = 128  # 1 KiB of float64

# One worker for both libraries: they share the API, only the import and the database differ.
WORKER = r"""
import json, os, resource, sys, time
import numpy as np
cfg = json.loads(sys.argv[1])
lib, op, n = cfg["lib"], cfg["op"], cfg["items"]
os.chdir(cfg["dir"])
if lib == "holdall":
    from holdall.objects import DataStore, DataStoreIO, create_session
    URL = "duckdb:///experiments.duckdb"
elif lib == "mltraq":
    from mltraq import DataStore, DataStoreIO, create_session
    URL = "sqlite:///experiments.db"

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def session():
    s = create_session(URL)
    if op.endswith("persist"):
        s.create_experiment(f"warm-{op}").persist()
    else:
        s.load_experiment(f"warm-{op.replace('reload', 'persist')}")
    return s

def small():
    return np.arange(cfg["small_floats"], dtype=np.float64)

out = {}
if lib == "numpy":
    path = "array.npy"
    if op == "large_persist":
        base = peak_mb()
        value = np.arange(n, dtype=np.float64)
        start = time.perf_counter()
        np.save(path, value)
    else:
        base = peak_mb(); start = time.perf_counter()
        out["check"] = float(np.load(path).sum())
elif op == "large_persist":
    s = session(); base = peak_mb()
    value = np.arange(n, dtype=np.float64)
    start = time.perf_counter()
    e = s.create_experiment("large")
    with e.run() as run:
        run.fields.ds = DataStore()
        run.fields.ds.a = value
    e.persist()
elif op == "large_reload":
    s = session()
    base = peak_mb(); start = time.perf_counter()
    out["check"] = float(s.load_experiment("large").runs.first().fields.ds.a.sum())
elif op == "one_ds_persist":
    s = session(); values = {f"v{i}": small() for i in range(n)}
    base = peak_mb(); start = time.perf_counter()
    e = s.create_experiment("one_ds")
    with e.run() as run:
        run.fields.ds = DataStore()
        for key, value in values.items():
            run.fields.ds[key] = value
    e.persist()
elif op == "one_ds_reload":
    s = session()
    base = peak_mb(); start = time.perf_counter()
    ds = s.load_experiment("one_ds").runs.first().fields.ds
    out["check"] = float(sum(value[1] for value in ds.values()))
elif op == "runs_persist":
    s = session(); values = [small() for i in range(n)]
    base = peak_mb(); start = time.perf_counter()
    e = s.create_experiment("runs")
    for value in values:
        with e.run() as run:
            run.fields.ds = DataStore()
            run.fields.ds.a = value
    e.persist()
elif op == "runs_reload":
    s = session()
    base = peak_mb(); start = time.perf_counter()
    runs = s.load_experiment("runs").runs
    out["check"] = float(sum(run.fields.ds.a[1] for run in runs.values()))
elif op == "io_persist":
    values = [small() for i in range(n)]
    base = peak_mb(); start = time.perf_counter()
    urls = [DataStoreIO.serialize_write(value, relative_path_prefix="io").url for value in values]
    open("urls.json", "w").write(json.dumps(urls))
elif op == "io_reload":
    urls = json.loads(open("urls.json").read())
    base = peak_mb(); start = time.perf_counter()
    out["check"] = float(sum(DataStoreIO(url).read_deserialize()[1] for url in urls))
out["seconds"] = time.perf_counter() - start
out["peak_mb"] = peak_mb() - base
print(json.dumps(out))
"""


def measure(python: Path, lib: str, op: str, items: int, folder: Path) -> dict[str, Any]:
    """Run one operation in a fresh process and return its JSON report."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if lib != "mltraq":
        env["PYTHONPATH"] = str(SRC)
    config = {
        "lib": lib,
        "op": op,
        "items": items,
        "dir": str(folder),
        "small_floats": SMALL_FLOATS,
    }
    os.sync()  # each starts with no one else's dirty pages left to write back
    done = subprocess.run(
        [str(python), "-c", WORKER, json.dumps(config)],
        capture_output=True, text=True, timeout=3600, check=False, env=env,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{lib} {op} failed: {done.stderr.strip()[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def pair(python: Path, lib: str, kind: str, items: int, tmp: Path) -> dict[str, Any]:
    """One write-then-read pair in a new folder."""
    folder = Path(tempfile.mkdtemp(prefix=f"{lib}-{kind}-", dir=tmp))
    try:
        write = measure(python, lib, f"{kind}_persist", items, folder)
        read = measure(python, lib, f"{kind}_reload", items, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "write_s": write["seconds"],
        "read_s": read["seconds"],
        "write_peak_mb": write["peak_mb"],
        "read_peak_mb": read["peak_mb"],
        "check": read.get("check"),
    }


def summarize(runs: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """Median times and largest peaks of repeated pairs (whose reads must agree)."""
    if len({run["check"] for run in runs}) != 1:
        raise RuntimeError(f"{label}: reads disagree: {[run['check'] for run in runs]}")
    summary: dict[str, Any] = {"check": runs[0]["check"]}
    for key in ("write_s", "read_s"):
        summary[key] = statistics.median(run[key] for run in runs)
    for key in ("write_peak_mb", "read_peak_mb"):
        summary[key] = max(run[key] for run in runs)
    return summary


def main() -> None:
    """Run every measurement and write the report section."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes", default="1,100,1000", help="large-array sizes in MB (default 1,100,1000)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="write/read pairs per figure (median)"
    )
    parser.add_argument(
        "--large-repeats",
        type=int,
        default=9,
        help="pairs per large-array figure of holdall and numpy (median; default 9: single "
        "1 GB writes vary 10x on this VM)",
    )
    parser.add_argument("--save", help="also write the raw figures to this JSON file")
    parser.add_argument("--render", help="only rewrite the report from a --save file")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size]
    command = (
        f".venv/bin/python -m benchmarks.objects --sizes {args.sizes} --repeats {args.repeats} "
        f"--large-repeats {args.large_repeats}"
    )
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        write_section(
            "objects",
            report(
                sizes, args.repeats, args.large_repeats, command, saved["results"], saved["version"]
            ),
        )
        return
    ours_python = Path(sys.executable)
    try:
        mltraq_python: Path | None = peer_python("mltraq")
    except PeerEnvError as err:
        print(err, file=sys.stderr)
        mltraq_python = None
    libs = {"holdall": ours_python} | ({"mltraq": mltraq_python} if mltraq_python else {})
    tmp = Path(tempfile.mkdtemp(prefix="holdall-bench-objects-"))
    large_libs = list({**libs, "numpy": ours_python}.items())
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        # Repeats go round all cases in turn, so a change of load on a shared machine hits
        # every library alike instead of one library's whole series. The order of the large
        # cases turns each round: on this VM a write depends on what ran just before it
        # (np.save of 1 GB took 0.2 s right after mltraq's pair, 1.9-3.3 s after the others).
        for round_ in range(max(args.repeats, args.large_repeats)):
            turn = round_ % len(large_libs)
            order = large_libs[turn:] + large_libs[:turn]
            cases = [(lib, python, "large", size) for size in sizes for lib, python in order]
            cases += [
                (lib, python, kind, 0)
                for kind in ("one_ds", "runs", "io")
                for lib, python in libs.items()
            ]
            for lib, python, kind, size in cases:
                local_large = kind == "large" and lib != "mltraq"
                if round_ >= (args.large_repeats if local_large else args.repeats):
                    continue
                key = f"{lib}/{kind}/{size}" if kind == "large" else f"{lib}/{kind}"
                items = size * 1_000_000 // 8 if kind == "large" else SMALL_COUNT
                runs.setdefault(key, []).append(pair(python, lib, kind, items, tmp))
                print(f"{key}: {runs[key][-1]}", file=sys.stderr)
        results = {key: summarize(value, key) for key, value in runs.items()}
        version = ""
        if mltraq_python:
            version = subprocess.run(
                [str(mltraq_python), "-c", "import mltraq; print(mltraq.__version__)"],
                capture_output=True, text=True, check=False,
            ).stdout.strip()  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.save:
        Path(args.save).write_text(json.dumps({"results": results, "version": version}, indent=1))
    write_section(
        "objects", report(sizes, args.repeats, args.large_repeats, command, results, version)
    )


def report(
    sizes: list[int],
    repeats: int,
    large_repeats: int,
    command: str,
    results: dict[str, dict[str, Any]],
    version: str,
) -> str:
    """The markdown section: large arrays, then small values."""
    has_peer = any(key.startswith("mltraq/") for key in results)
    large_rows = []
    for size in sizes:
        ours, numpy = results[f"holdall/large/{size}"], results[f"numpy/large/{size}"]
        peer = results.get(f"mltraq/large/{size}")
        mib = size * 1e6 / 2**20  # peaks are in MiB (getrusage), sizes in MB
        for step, label in (("write", "persist"), ("read", "reload")):
            mbps = size / ours[f"{step}_s"]
            row = [
                f"{size} MB {label}",
                f"{mbps:,.0f}",
                f"{size / numpy[f'{step}_s']:,.0f}",
                f"{numpy[f'{step}_s'] / ours[f'{step}_s']:.2f}x",
                f"{ours[f'{step}_peak_mb'] / mib:.2f}x",
                f"{numpy[f'{step}_peak_mb'] / mib:.2f}x",
            ]
            if has_peer and peer:
                row += [
                    f"{size / peer[f'{step}_s']:,.0f}",
                    f"{peer[f'{step}_peak_mb'] / mib:.2f}x",
                ]
            large_rows.append(row)
    large_header = [
        "array",
        "holdall MB/s",
        "numpy MB/s",
        "holdall / numpy",
        "holdall peak",
        "numpy peak",
    ]
    if has_peer:
        large_header += [f"mltraq {version} MB/s", "mltraq peak"]
    small_rows = []
    labels = {
        "one_ds": f"{SMALL_COUNT:,} values of 1 KB in one DataStore",
        "runs": f"{SMALL_COUNT:,} runs, one 1 KB DataStore each",
        "io": f"{SMALL_COUNT:,} DataStoreIO serialize_write / read_deserialize of 1 KB",
    }
    for kind, label in labels.items():
        ours, peer = results[f"holdall/{kind}"], results.get(f"mltraq/{kind}")
        for step, verb in (("write", "write"), ("read", "read")):
            row = [f"{label}: {verb}", f"{SMALL_COUNT / ours[f'{step}_s']:,.0f}"]
            if peer:
                row += [
                    f"{SMALL_COUNT / peer[f'{step}_s']:,.0f}",
                    f"{peer[f'{step}_s'] / ours[f'{step}_s']:.1f}x",
                ]
            small_rows.append(row)
    small_header = ["small values", "holdall values/s"] + (
        ["mltraq values/s", "holdall / mltraq"] if has_peer else []
    )
    return f"""## Objects: DataStore persist and reload (holdall.objects)

`{command}` on {machine_line()}. Every figure is the median of {repeats} runs
({large_repeats} for the large arrays of holdall and numpy), each operation in a fresh
process. Persist is `experiment.persist()` of one run whose DataStore holds a float64 array (for numpy: `np.save`); reload is `load_experiment` (for numpy:
`np.load`) plus one pass over the array (`.sum()`), so memory-mapped data is really read.
Reads come from the page cache the write just filled, for every library alike; every
operation starts after `os.sync()`, so no one pays for flushing another's writes. Peak is
the process's peak RSS above its baseline (after imports and a warm-up use of the
database, before the value exists), divided by the value's size: a persist cannot go below
1.0x (the value itself is in memory).

{markdown_table(large_header, large_rows)}

{markdown_table(small_header, small_rows)}

What bounds each figure:

- 1 MB: the fixed cost of one persist or load (the DuckDB transaction that commits the
  record, with its write-ahead-log flush; the query and the object's open on load: 4-6 ms
  in this run against `np.save`'s 0.6 ms), not the bytes.
- Persist of 100 MB and 1 GB: writing the array's own buffer once, as `np.save` does (in
  1 MiB `write` calls, then a rename); on this shared VM the page cache's behaviour dominates
  and varies run to run. Until 2026-12-02 the benchmark did not call the `os.sync()` this
  text promised, so a write could pay for the previous process's gigabyte. With it, and with
  the order of the large cases turning each round, 1 GB persists took 0.29-0.47 s over 9
  fresh processes while `np.save` took 0.21 s in the two that followed mltraq's pair and
  2.9-3.3 s in the other seven: the ratio in the table is the median of that, not a holdall
  advantage. In one process, taking turns after `os.sync()`, `np.save` and the same 1 MiB
  sliced writes both took 0.16-2 s per gigabyte (sliced 10-30% slower in each pair); so read
  the 1 GB row as a tie with `np.save`, and the 100 MB row (0.5x) as `np.save`'s 17 ms
  against a persist's 35 ms: the same write plus the record's DuckDB transaction.
- Reload: holdall memory-maps the object and the pass faults the pages in from the page
  cache; `np.load` copies the file into a new array, mltraq unpickles a copy.
- Peak: holdall and numpy hold the value once; mltraq holds it about four times.
- Small values: a persist writes all its DataStores as one object (1,000 runs: one file,
  where mltraq writes 1,000), and a load opens it once. 1,000 values in one DataStore, at
  3.2x mltraq in the table: the object's encoding (manifest nodes and 1,000 blobs, gathered
  into 256 KiB writes; it paid a `write(2)` per 8 KiB, 5 ms, until 2026-12-02) and the DuckDB
  transaction of the record (about 6 ms: the name check, the experiment row, the runs as list
  parameters) take about half each. Before those two changes this row measured 1.8-2.7x
  mltraq across three runs. Each DataStoreIO value is its own
  file, as in mltraq, created under a temporary name and renamed: 0.1-0.8 ms per file on this
  disk from run to run, which bounds that row for both libraries (1.0-1.3x: missed; the
  same 1,000 writes took 0.12 s to 0.9 s in fresh processes minutes apart); reading one back
  is bound by Python's per-call work (URL checks, open, footer and manifest parse), about
  0.1 ms.
"""


if __name__ == "__main__":
    main()
