"""Merge benchmark: holdall's DatasetMerger beside an xarray merge and a raw byte copy.

Run with ``.venv/bin/python -m benchmarks.merge`` (``--parts 2000 --large 200`` by default;
smaller counts for a smoke run). Writes section ``merge`` of docs/benchmarks.md.

Inputs are demo-sized part archives (`holdall.demo.make_part`, about 0.4 MB each) and larger
ones (ten demo parts' faces and edges in one archive). Each method runs in its own process:

- holdall: ``DatasetMerger`` with its defaults (local reader processes);
- xarray: the straightforward merge, ``xr.open_zarr`` on each archive's group, ``xr.concat``
  of each variable along its first dimension, ``to_zarr`` (what the seed's system does);
- raw copy: the archives' bytes copied to another folder (the disk's limit).

Files/s and MB/s count input archive bytes. Peak RSS is the largest sum of the resident
memory of the method's process and all its descendants (sampled every 20 ms).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import machine_line, markdown_table, write_section

MB = 1e6
GROUPS = {"faces": "face", "edges": "edge", "graph": "graph_edge"}

_HOLDALL = """
import sys
from holdall.dataset import DatasetInfo, DatasetMerger
from holdall.schema import SchemaBuilder
sources = sys.argv[2:]
merger = DatasetMerger(sources, sys.argv[1], DatasetInfo.build_code_mappings(sources),
                       schema=SchemaBuilder.from_template("cad_advanced").build())
flow = merger.merge_data()
assert flow["counts"]["merged"] == len(sources), flow["errors"]
"""

_XARRAY = """
import sys, warnings
import xarray as xr
from zarr.storage import ZipStore
warnings.simplefilter("ignore")
out, sources = sys.argv[1], sys.argv[2:]
stores = [ZipStore(s, mode="r") for s in sources]
mode = "w"
for group in ("faces", "edges", "graph"):
    parts = [xr.open_zarr(store, group=group, consolidated=False) for store in stores]
    merged = {}
    for name, variable in parts[0].data_vars.items():
        if variable.ndim == 0:
            continue
        joined = xr.concat([p[name] for p in parts], dim=variable.dims[0]).drop_encoding()
        merged[name] = joined.chunk({variable.dims[0]: 50000})
    xr.Dataset(merged).to_zarr(out, group=group, mode=mode, zarr_format=3, consolidated=False)
    mode = "a"
for store in stores:
    store.close()
"""

_COPY = """
import shutil, sys
from pathlib import Path
out = Path(sys.argv[1]); out.mkdir()
for source in sys.argv[2:]:
    shutil.copyfile(source, out / Path(source).name)
"""


def _tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    todo.extend(int(c) for c in children.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def _tree_bytes(folder: Path) -> int:
    """Bytes of the files under `folder`."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_measured(script: str, out: Path, sources: list[str]) -> tuple[float, int]:
    """(seconds, peak RSS of the process tree) of `script` run on `sources`."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"}
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", script, str(out), *sources], env=env)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if code != 0:
        raise RuntimeError(f"benchmark step failed with status {code}")
    return seconds, peak


def make_archives(folder: Path, count: int, *, scale: int, seed: int) -> list[str]:
    """`count` archives of `scale` demo parts each (faces, edges, graph concatenated)."""
    from holdall.demo import make_part
    from holdall.storage import OptStorage

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for index in range(count):
        pieces = [make_part(rng) for _ in range(scale)]
        with OptStorage(folder / f"part_{index:05d}.zarr") as storage:
            for group in GROUPS:
                names = [n for n in pieces[0][group] if n != "num_nodes"]
                storage.save_data(
                    group, {n: np.concatenate([p[group][n] for p in pieces]) for n in names}
                )
            storage.save_data("graph/num_nodes", sum(p["graph"]["num_nodes"] for p in pieces))
            storage.save_metadata("file_label", pieces[0]["file_label"])
            storage.save_metadata("size_cadfile", int(rng.integers(10_000, 5_000_000)))
            storage.compress_store()
        sources.append(str(folder / f"part_{index:05d}.zarr.data"))
    return sources


def bench(
    label: str, sources: list[str], work: Path, *, with_xarray: bool, repeats: int
) -> list[list[Any]]:
    size = sum(Path(s).stat().st_size for s in sources)
    rows = []
    methods = [("holdall DatasetMerger", _HOLDALL), ("raw byte copy", _COPY)]
    if with_xarray:
        methods.insert(1, ("xarray open_zarr+concat+to_zarr", _XARRAY))
    results = {}
    for name, script in methods:
        # The xarray merge takes minutes: once. The others: the median of `repeats` runs.
        runs = []
        for _ in range(1 if name.startswith("xarray") else repeats):
            out = work / f"{label}-{name.split()[0]}"
            shutil.rmtree(out, ignore_errors=True)
            if name.startswith("holdall"):
                out = out / "merged"
            runs.append(run_measured(script, out, sources))
        # What the method wrote: holdall's dataset with its tables, xarray's store, the copies.
        written = _tree_bytes(out.parent if name.startswith("holdall") else out)
        seconds = sorted(r[0] for r in runs)[len(runs) // 2]
        peak = max(r[1] for r in runs)
        results[name] = seconds
        rows.append(
            [
                label,
                name,
                len(sources),
                f"{size / MB:.0f}",
                f"{written / MB:.0f}",
                f"{seconds:.2f}",
                f"{len(sources) / seconds:.0f}",
                f"{size / MB / seconds:.0f}",
                f"{peak / 2**20:.0f}",
            ]
        )
        print(rows[-1], flush=True)
    ours = results["holdall DatasetMerger"]
    for row in rows:
        row.append(f"{results[row[1]] / ours:.2f}x")
    return rows


def targets(rows: list[list[Any]]) -> list[str]:
    """One line per input kind: the issue's targets, met or not, from the measured rows."""
    lines = []
    for label in dict.fromkeys(row[0] for row in rows):
        mine = {row[1]: row for row in rows if row[0] == label}
        ours = float(mine["holdall DatasetMerger"][5])
        copy = float(mine["raw byte copy"][5])
        peak = int(mine["holdall DatasetMerger"][8])
        parts = [
            f"{label}: holdall takes {ours / copy:.1f}x the raw copy's time (target <= 3x: "
            f"{'met' if ours <= 3 * copy else 'not met'})"
        ]
        if "xarray open_zarr+concat+to_zarr" in mine:
            slow = float(mine["xarray open_zarr+concat+to_zarr"][5])
            parts.append(
                f"is {slow / ours:.1f}x faster than xarray (target >= 5x: "
                f"{'met' if slow >= 5 * ours else 'not met'})"
            )
        parts.append(f"peak RSS {peak} MiB (target < 1024: {'met' if peak < 1024 else 'not met'})")
        lines.append("- " + ", ".join(parts) + ".")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--parts", type=int, default=2000, help="demo-sized archives (default 2000)"
    )
    parser.add_argument("--large", type=int, default=200, help="larger archives (default 200)")
    parser.add_argument("--scale", type=int, default=10, help="demo parts per larger archive")
    parser.add_argument("--no-xarray", action="store_true", help="skip the (slow) xarray merge")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of holdall and the copy (median; xarray: 1)"
    )
    parser.add_argument(
        "--keep", type=Path, help="build inputs here and keep them (default: a temp dir)"
    )
    args = parser.parse_args()
    load = os.getloadavg()[0]
    work = args.keep or Path(tempfile.mkdtemp(prefix="holdall-merge-bench-"))
    try:
        rows = []
        for label, count, scale in (
            ("demo-sized", args.parts, 1),
            ("larger", args.large, args.scale),
        ):
            folder = work / f"inputs-{label}-{count}-{scale}"
            sources = sorted(str(p) for p in folder.glob("*.zarr.data")) if folder.exists() else []
            if len(sources) != count:
                shutil.rmtree(folder, ignore_errors=True)
                sources = make_archives(folder, count, scale=scale, seed=count + scale)
            rows += bench(
                label, sources, work, with_xarray=not args.no_xarray, repeats=args.repeats
            )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    header = [
        "inputs",
        "method",
        "files",
        "MB in",
        "MB out",
        "seconds",
        "files/s",
        "MB/s",
        "peak RSS MiB",
        "time vs holdall",
    ]
    body = "\n".join(
        [
            "## Merging per-part archives into one dataset",
            "",
            f"Measured with `python -m benchmarks.merge --parts {args.parts} --large {args.large}` "
            f"on {machine_line()}; load average {load:.1f} when it started. holdall and the raw"
            f" copy: median of {args.repeats} runs (single runs of the same merge varied 2x on"
            " this shared machine); the xarray merge: one run.",
            "",
            markdown_table(header, rows),
            "",
            *targets(rows),
            "",
            "What bounds them: the raw copy only moves bytes (the page cache). holdall opens",
            "every archive, checks and decodes every chunk (CRC-32C, Blosc), checks and casts",
            "each array against the schema, and re-encodes the concatenation (the codec the",
            "storage core chooses for the array, plus CRC-32C). On this 2-CPU machine that takes",
            "about 3.5 ms per demo part in one",
            "process: about 2.4 ms to read it (13 arrays: document parsing, checksum, decode,",
            "rules; Python per-call work, not bytes) and 1 ms to append it. Designs measured:",
            "zarr-python appends in the writer (it rewrote each array's zarr.json on every",
            "resize: 13 ms per chunk flush, 2x the whole merge now); two reader processes (1.5-2x",
            "slower on 2 CPUs: process start and a pickled copy of every array; used from 4",
            "CPUs); reader threads (no gain on demo parts: the per-array work holds the GIL; about",
            "10% on the larger ones, within this machine's noise, so not used). On the larger",
            "parts a fresh process spends about 1.2 s of system time (78,000 page faults: new",
            "memory for the decoded arrays, the mapped archives); mapping archives up to 64 MiB",
            "with MAP_POPULATE (one call instead of a fault per page) took 5-7% off a fresh",
            "larger merge (A/B, taking turns). The same merge run again in one process takes",
            "2.0-2.4 s, 7-9x faster than xarray. Across runs on 2026-12-02 the larger merge was",
            "4.5-5.7x faster than xarray (both sides move with the load): at the 5x target, not",
            "clearly above it. The xarray merge pays per-file dataset",
            "construction and one dask task per file and variable. Peak RSS does not grow with",
            "the number of files.",
            "",
            "Why 3x of the copy is out of reach for the larger inputs (2026-12-02, second",
            "session): the copy of 200 archives takes 0.15-0.19 s, and a fresh Python process",
            "spends 0.31-0.34 s importing `holdall.dataset` alone (numpy, the codecs, polars),",
            "twice the whole copy. In one process, profiled, the larger merge spends about 0.8 s",
            "decoding 2,567 chunks and waits 0.65 s for the encoding threads: decode and",
            "re-encode of every byte, which a copy does not do, is itself over 5x the copy. A",
            "merge could only approach the copy by moving the archives' chunks unchanged, and",
            "Zarr's regular chunk grid cannot hold one file's rows per chunk when files differ",
            "in length. The demo-sized figure moves with the copy: on 2026-12-02 the 2,000-file",
            "copy took 0.58-1.5 s across runs (file creation on this disk), putting holdall",
            "between 2.5x and 10.9x of it. Also tried: glibc keeping freed memory for reuse",
            "(MALLOC_MMAP_THRESHOLD_=64 MiB, MALLOC_TRIM_THRESHOLD_=256 MiB, against the page",
            "faults of a fresh process): a 2.39 s median against 2.67 s over four A/B pairs of",
            "the larger merge, inside this machine's noise, and a process-wide setting a",
            "library should not make for its caller; not adopted.",
            "",
            "Output size (2026-12-02, third session): the merge compressed every array with one",
            "fixed Blosc-LZ4 (default blocks, C order) and wrote 666-671 MB for each input set,",
            "twice what the inputs take and 1.6x xarray's output. It now compresses each array",
            "as the storage core compresses a large one, the layout chosen on the first file's",
            "rows (component-major UV grids, Blosc-LZ4 on 1 MiB blocks): 315-326 MB. Time, A/B",
            "on the same inputs taking turns: demo parts 9.6-9.9 s before and 9.8-11.4 s after,",
            "larger parts 4.9-5.3 s and 5.0-5.3 s; the same within this machine's noise (less",
            "system time writing half the bytes, more user time in the trials and transposes).",
            "This run found the machine 2-2.7x slower than the earlier ones (xarray 216 s",
            "against 80 s, the copy 1.44 s against 0.68 s); the ratios moved less.",
        ]
    )
    write_section("merge", body)


if __name__ == "__main__":
    main()
