"""Codec benchmark: holdall's default codec choice against the seeds' Zstd-12 on realistic arrays.

Run with ``.venv/bin/python -m benchmarks.codecs`` (``--mib N`` per array, default 64). Writes
section ``codecs`` of docs/benchmarks.md.

Each array of a corpus (CAD surface grids of a torus and a cylinder sampled on a UV grid, smooth
and noisy float32, index-like and label int32, a bool mask) is written whole with OptStorage's
default codecs and with the seeds' configuration (Zstd level 12, delta on integers), both
through holdall's own encoder with its codec thread pool, CRC-32C on, into a folder store. The
write time covers encoding and the commit; the ratio is uncompressed bytes over chunk bytes.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import machine_line, markdown_table, write_section
from holdall import OptStorage

MiB = 1024 * 1024


def corpus(nbytes: int) -> dict[str, np.ndarray[Any, Any]]:
    """Realistic arrays of about `nbytes` each."""
    rng = np.random.default_rng(7)
    side = int(np.sqrt(nbytes / 12))
    u, v = np.meshgrid(
        np.linspace(0, 2 * np.pi, side, dtype=np.float32),
        np.linspace(0, 2 * np.pi, side, dtype=np.float32),
        indexing="ij",
    )
    big, small = np.float32(3.0), np.float32(1.0)
    torus = np.stack(
        [
            (big + small * np.cos(v)) * np.cos(u),
            (big + small * np.cos(v)) * np.sin(u),
            small * np.sin(v),
        ],
        axis=-1,
    ).astype(np.float32)
    height = np.linspace(0, 10, side, dtype=np.float32)[:, None] * np.ones_like(v)
    cylinder = np.stack([np.cos(v) * 2, np.sin(v) * 2, height], axis=-1).astype(np.float32)
    n = nbytes // 4
    x = np.linspace(0, 400 * np.pi, n)
    smooth = (np.sin(x) * 100 + np.sin(0.37 * x) * 20).astype(np.float32)
    noisy = (smooth + rng.normal(0, 5, n)).astype(np.float32)
    index = np.cumsum(rng.integers(0, 4, n)).astype(np.int32)
    labels = np.repeat(rng.integers(0, 12, n // 256 + 1), 256)[:n].astype(np.int32)
    mask = np.repeat(rng.random(nbytes // 64 + 1) < 0.3, 64)[:nbytes].astype(bool)
    return {
        "torus UV grid float32": torus,
        "cylinder UV grid float32": cylinder,
        "smooth float32": smooth,
        "noisy float32": noisy,
        "index int32": index,
        "label int32": labels,
        "bool mask": mask,
    }


def _write(path: Path, array: np.ndarray[Any, Any], **options: Any) -> tuple[float, float, str]:
    """Seconds to write `array` with `options`, its compression ratio and codec label."""
    shutil.rmtree(path, ignore_errors=True)
    start = time.perf_counter()
    with OptStorage(path, mode="w", **options) as store:
        store.save_data("a", array)
        store.flush()
        seconds = time.perf_counter() - start
        info = next(i for i in store.inspect() if i.path == "a")
    return seconds, array.nbytes / info.chunk_bytes, info.codec


def _medians(
    runs: list[Callable[[], tuple[float, float, str]]], repeats: int
) -> list[tuple[float, float, str]]:
    """Each run's median seconds (with its ratio and codec); the runs take turns, so the noise
    of a shared machine falls on all of them alike."""
    results: list[list[tuple[float, float, str]]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, out in zip(runs, results, strict=True):
            out.append(run())
    return [(sorted(r[0] for r in out)[len(out) // 2], out[0][1], out[0][2]) for out in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=64, help="MiB per array (default 64)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    lines = []
    with tempfile.TemporaryDirectory(prefix="holdall-bench-codecs-", dir=".") as tmp:
        work = Path(tmp)
        arrays = corpus(args.mib * MiB)
        runs: list[tuple[str, np.ndarray[Any, Any], dict[str, Any]]] = [
            (name, array, {}) for name, array in arrays.items()
        ]
        # What the documented opt-in gives the arrays whose seeds' ratio comes from delta.
        runs += [
            (f"{name} (delta=True opt-in)", array, {"delta": True})
            for name, array in arrays.items()
            if array.dtype.kind in "iu"
        ]
        for name, array, options in runs:
            default, seeds = _medians(
                [
                    partial(_write, work / "d.zarr", array, **options),
                    partial(_write, work / "s.zarr", array, compression="zstd12", delta=True),
                ],
                args.repeats,
            )
            speed = seeds[0] / default[0]
            ratio = default[1] / seeds[1]
            rows.append(
                [
                    name,
                    default[2],
                    f"{array.nbytes / default[0] / 1e9:.2f}",
                    f"{default[1]:.2f}",
                    f"{array.nbytes / seeds[0] / 1e9:.3f}",
                    f"{seeds[1]:.2f}",
                    f"{speed:.1f}x",
                    f"{ratio:.3f}",
                ]
            )
            print(rows[-1], flush=True)
            verdict = "met" if speed >= 10 and ratio >= 1.0 else "missed"
            lines.append(
                f"- {name}: {speed:.1f}x the write speed (target >= 10x) at {ratio:.3f}x the "
                f"ratio (target >= 1.000x) -> {verdict}"
            )
    table = markdown_table(
        [
            "array",
            "default codec chosen",
            "default GB/s",
            "default ratio",
            "Zstd-12 GB/s",
            "Zstd-12 ratio",
            "speed vs Zstd-12",
            "ratio vs Zstd-12",
        ],
        rows,
    )
    body = "\n".join(
        [
            "## Codecs: the default choice against the seeds' Zstd-12",
            "",
            f"Command: `.venv/bin/python -m benchmarks.codecs --mib {args.mib}` on {machine_line()}. "
            f"{args.mib} MiB per array, 4 MiB chunks, CRC-32C on, both through holdall's encoder "
            f"and thread pool; medians of {args.repeats} writes each, the two taking turns.",
            "",
            table,
            "",
            "Targets:",
            "",
            *lines,
        ]
    )
    write_section("codecs", body)
    print(body)


if __name__ == "__main__":
    main()
