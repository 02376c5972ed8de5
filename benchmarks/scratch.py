"""Spill and restore of a 1 GiB Structure-of-Arrays: holdall's scratch stores vs baselines.

Run with ``.venv/bin/python -m benchmarks.scratch [--repeats N]``; rewrites section ``scratch`` of
docs/benchmarks.md. Compares NumpyStore and GenericIOStore with ``np.savez`` (what
haccytrees' NumpyStore does) and raw ``ndarray.tofile``/``np.fromfile``, the disk limit,
all in one process, plus the CRC-64 throughput GenericIO depends on.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks._report import machine_line, markdown_table, median_seconds, write_section
from holdall.scratch import GenericIOStore, NumpyStore
from holdall.scratch._crc import crc64

COLUMNS = 8
TOTAL = 1 << 30  # bytes
REPEATS = 5
COMMAND = ".venv/bin/python -m benchmarks.scratch"


def _data() -> dict[str, np.ndarray]:
    rows = TOTAL // COLUMNS // 8
    rng = np.random.default_rng(0)
    return {f"c{i}": rng.standard_normal(rows) for i in range(COLUMNS)}


def _raw_pair(folder: Path, data: dict[str, np.ndarray]) -> tuple[Callable[[], object], ...]:
    def spill() -> None:
        for name, array in data.items():
            array.tofile(folder / f"{name}.raw")

    def restore() -> dict[str, np.ndarray]:
        return {name: np.fromfile(folder / f"{name}.raw") for name in data}

    def clear() -> None:
        for path in folder.glob("*.raw"):
            path.unlink()

    return spill, restore, clear


def _savez_pair(folder: Path, data: dict[str, np.ndarray]) -> tuple[Callable[[], object], ...]:
    path = folder / "soa.npz"

    def spill() -> None:
        np.savez(path, **data)

    def restore() -> dict[str, np.ndarray]:
        with np.load(path) as archive:
            return {name: archive[name] for name in archive.files}

    return spill, restore, lambda: path.unlink(missing_ok=True)


def _store_pair(
    store: NumpyStore | GenericIOStore, data: dict[str, np.ndarray]
) -> tuple[Callable[[], object], ...]:
    def spill() -> None:
        store["soa"] = data

    def restore() -> dict[str, np.ndarray]:
        return store["soa"]

    return spill, restore, lambda: store.pop("soa", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timed runs per figure")
    repeats = parser.parse_args().repeats
    load = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="holdall-bench-", dir="/tmp"))
    free = shutil.disk_usage(folder).free
    if free < 4 * TOTAL:
        raise SystemExit(f"need {4 * TOTAL} free bytes in {folder}, have {free}")
    data = _data()
    rows: list[list[object]] = []
    rates: dict[str, tuple[float, float]] = {}
    numpy_store = NumpyStore(None, folder / "numpy")
    gio_store = GenericIOStore(None, 1.0, folder / "gio")
    try:
        cases = {
            "raw tofile/fromfile (disk limit)": _raw_pair(folder, data),
            "np.savez / np.load (haccytrees)": _savez_pair(folder, data),
            "holdall NumpyStore": _store_pair(numpy_store, data),
            "holdall GenericIOStore (CRC-64 on)": _store_pair(gio_store, data),
        }
        for label, (spill, restore, clear) in cases.items():
            write_s = median_seconds(spill, repeats=repeats, setup=clear)
            spill()
            read_s = median_seconds(restore, repeats=repeats)
            clear()
            rates[label] = (TOTAL / write_s / 1e9, TOTAL / read_s / 1e9)
    finally:
        numpy_store.close()
        gio_store.close()
        shutil.rmtree(folder, ignore_errors=True)
    raw_w, raw_r = rates["raw tofile/fromfile (disk limit)"]
    npz_w, npz_r = rates["np.savez / np.load (haccytrees)"]
    for label, (w, r) in rates.items():
        rows.append(
            [
                label,
                f"{w:.2f}",
                f"{r:.2f}",
                f"{w / raw_w:.0%}",
                f"{r / raw_r:.0%}",
                f"{w / npz_w:.2f}x",
                f"{r / npz_r:.2f}x",
            ]
        )
    buffer = np.frombuffer(np.random.default_rng(1).bytes(256 << 20), np.uint8)
    crc_s = median_seconds(lambda: crc64(buffer.data), repeats=repeats)
    crc_rate = buffer.nbytes / crc_s / 1e9
    verdicts = []
    for label in ("holdall NumpyStore", "holdall GenericIOStore (CRC-64 on)"):
        w, r = rates[label]
        worst_raw = min(w / raw_w, r / raw_r)
        worst_npz = min(w / npz_w, r / npz_r)
        verdicts.append(
            f"- {label}: {'met' if worst_raw >= 0.8 else 'missed'} the 80% of raw target "
            f"(worst of spill/restore {worst_raw:.0%}); "
            f"{'met' if worst_npz >= 1.5 else 'missed'} the 1.5x np.savez target "
            f"(worst {worst_npz:.2f}x)."
        )
    body = "\n".join(
        [
            "## Scratch stores: spill and restore of a 1 GiB Structure-of-Arrays",
            "",
            f"Command: `{COMMAND}`. Machine: {machine_line()}. One process, 8 float64 "
            f"columns of 128 MiB, files under /tmp, medians of {repeats} repeats (load average "
            f"{load:.1f} when it started). Writes "
            "are not fsynced and reads come back through the page cache for every method "
            "alike, so the raw column is the memory-to-page-cache limit of this machine.",
            "",
            markdown_table(
                [
                    "method",
                    "spill GB/s",
                    "restore GB/s",
                    "spill vs raw",
                    "restore vs raw",
                    "spill vs savez",
                    "restore vs savez",
                ],
                rows,
            ),
            "",
            *verdicts,
            "",
            f"CRC-64/XZ (anycrc) over 256 MiB: {crc_rate:.2f} GB/s, "
            f"{crc_rate / max(raw_w, raw_r):.1f}x the faster raw I/O direction.",
            "",
            "What bounds GenericIOStore: its files carry a CRC-64 per block, which costs "
            "one more pass over the bytes. That pass runs on a second thread while the "
            "bytes are written (each block checksummed as it is written) or read (each "
            "128 MiB piece checksummed while the next is read), so with a free core the "
            "spill and restore are bound by the memory-to-page-cache copy, like raw I/O; "
            "where every core is busy (a high load average above), the checksum competes "
            "for them and the figure falls towards the sequential sum of copy and CRC. "
            "NumpyStore writes no checksum and is bound by the copy alone.",
        ]
    )
    write_section("scratch", body)
    print(body)


if __name__ == "__main__":
    main()
