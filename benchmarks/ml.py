"""Logging training metrics and finding input files: holdall vs unbuffered writes, TensorBoard, os.walk.

Run with ``.venv/bin/python -m benchmarks.ml [--repeats N]``; rewrites section ``ml`` of
docs/benchmarks.md.

- 100,000 trend points and 1,000 confusion matrices (10x10 int64) logged with
  `MetricStorage` over an `OptStorage` (buffered, flushed on close), against the same points
  written one call at a time straight into the backend (``save_data`` + ``flush`` per point,
  what a logger without a buffer pays to make each point durable), and against TensorBoard's
  own ``EventFileWriter`` (trend points only: TensorBoard has no matrix scalar).
- Pulling everything back: `pull_trend_metric`, one `pull_matrix_metric` per epoch, and
  TensorBoard's ``EventAccumulator``.
- Listing 100,000 files (10% ``.step``) in 1,000 folders with `CADFileRetriever` against a
  plain ``os.walk`` + ``fnmatch`` loop doing the same selection and sort.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks._report import machine_line, markdown_table, median_seconds, write_section
from holdall import OptStorage
from holdall.files import CADFileRetriever, LocalStorageProvider
from holdall.ml import MetricStorage

TREND_POINTS = 100_000
MATRICES = 1_000
UNBUFFERED_POINTS = 1_000  # the unbuffered rate, measured on the first points (it only falls)
FILES = 100_000
FOLDERS = 1_000
COMMAND = ".venv/bin/python -m benchmarks.ml"


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _buffered_trend(folder: Path) -> None:
    with MetricStorage(OptStorage(folder / "m.zarr")) as metrics:
        push = metrics.push_trend_metric
        for step in range(TREND_POINTS):
            push("loss", step, 1.0 / (step + 1))


def _buffered_matrices(folder: Path, matrices: np.ndarray) -> None:
    with MetricStorage(OptStorage(folder / "m.zarr")) as metrics:
        for epoch in range(MATRICES):
            metrics.push_matrix_metric("confusion", epoch, matrices[epoch])


def _unbuffered(folder: Path, count: int, value: Callable[[int], object]) -> None:
    store = OptStorage(folder / "u.zarr")
    for step in range(count):
        store.save_data(f"loss/{step}", value(step))
        store.flush()
    store.close()


def _tensorboard_trend(folder: Path) -> None:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(folder / "tb"))
    for step in range(TREND_POINTS):
        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag="loss", simple_value=1.0 / (step + 1))]
        )
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
    writer.close()


def _pull_trend(folder: Path) -> None:
    with MetricStorage(OptStorage(folder / "m.zarr")) as metrics:
        assert len(metrics.pull_trend_metric("loss").epochs) == TREND_POINTS


def _pull_matrices(folder: Path) -> None:
    with MetricStorage(OptStorage(folder / "m.zarr")) as metrics:
        for epoch in range(MATRICES):
            metrics.pull_matrix_metric("confusion", epoch)


def _pull_tensorboard(folder: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(folder / "tb"), size_guidance={"scalars": 0})
    reader.Reload()
    assert len(reader.Scalars("loss")) == TREND_POINTS


def _file_tree(root: Path) -> None:
    for folder in range(FOLDERS):
        sub = root / f"batch_{folder // 100:02d}" / f"set_{folder:04d}"
        sub.mkdir(parents=True)
        for index in range(FILES // FOLDERS):
            suffix = ".STEP" if index % 20 == 0 else ".step" if index % 20 == 1 else ".json"
            (sub / f"part_{index:03d}{suffix}").touch()


def _plain_walk(root: Path) -> list[str]:
    found = []
    for directory, _folders, names in os.walk(root):
        for name in names:
            if name.lower().endswith(".step") and fnmatch.fnmatchcase(name, "part_*"):
                found.append(os.path.join(directory, name))
    found.sort()
    return found


def _retriever(root: Path) -> list[str]:
    retriever = CADFileRetriever(LocalStorageProvider(root), formats=["step"],
                                 filter_pattern="part_*")  # fmt: skip
    return retriever.get_file_list()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats
    work = Path(tempfile.mkdtemp(prefix="holdall-bench-ml-"))
    try:
        matrices = np.random.default_rng(0).integers(0, 100, (MATRICES, 10, 10))
        logs = _fresh(work / "logs")
        rows = []
        trend_s = median_seconds(lambda: _buffered_trend(logs), repeats=repeats,
                                 setup=lambda: _fresh(logs))  # fmt: skip
        pull_trend_s = median_seconds(lambda: _pull_trend(logs), repeats=repeats)
        tb_s = median_seconds(lambda: _tensorboard_trend(logs), repeats=repeats,
                              setup=lambda: shutil.rmtree(logs / "tb", ignore_errors=True))  # fmt: skip
        tb_pull_s = median_seconds(lambda: _pull_tensorboard(logs), repeats=repeats)
        raw = _fresh(work / "raw")
        unbuffered_s = median_seconds(
            lambda: _unbuffered(raw, UNBUFFERED_POINTS, lambda s: np.float64(1.0 / (s + 1))),
            repeats=1, setup=lambda: _fresh(raw),
        )  # fmt: skip
        matrix_s = median_seconds(lambda: _buffered_matrices(logs, matrices), repeats=repeats,
                                  setup=lambda: _fresh(logs))  # fmt: skip
        pull_matrix_s = median_seconds(lambda: _pull_matrices(logs), repeats=repeats)
        unbuffered_m_s = median_seconds(
            lambda: _unbuffered(raw, MATRICES, lambda s: matrices[s]), repeats=1,
            setup=lambda: _fresh(raw),
        )  # fmt: skip
        trend_rate = TREND_POINTS / trend_s
        unbuffered_rate = UNBUFFERED_POINTS / unbuffered_s
        matrix_rate = MATRICES / matrix_s
        unbuffered_m_rate = MATRICES / unbuffered_m_s
        rows.append([f"{TREND_POINTS:,} trend points", "MetricStorage (buffered, flushed on close)",
                     f"{trend_rate:,.0f}", f"{pull_trend_s * 1000:.0f} ms"])  # fmt: skip
        rows.append(["", f"save_data + flush per point (first {UNBUFFERED_POINTS:,})",
                     f"{unbuffered_rate:,.0f}", "-"])  # fmt: skip
        rows.append(["", "TensorBoard EventFileWriter", f"{TREND_POINTS / tb_s:,.0f}",
                     f"{tb_pull_s * 1000:.0f} ms (EventAccumulator)"])  # fmt: skip
        rows.append([f"{MATRICES:,} matrices 10x10", "MetricStorage (buffered)",
                     f"{matrix_rate:,.0f}", f"{pull_matrix_s * 1000:.0f} ms (one pull per epoch)"])  # fmt: skip
        rows.append(["", "save_data + flush per matrix", f"{unbuffered_m_rate:,.0f}", "-"])

        tree = work / "tree"
        _file_tree(tree)
        assert _plain_walk(tree) == _retriever(tree)
        walk_s = median_seconds(lambda: _plain_walk(tree), repeats=repeats)
        retriever_s = median_seconds(lambda: _retriever(tree), repeats=repeats)
        walk_again_s = median_seconds(lambda: _plain_walk(tree), repeats=repeats)
        walk_s = (walk_s + walk_again_s) / 2  # before and after, so load changes hit both sides
    finally:
        shutil.rmtree(work, ignore_errors=True)
    body = "\n".join(
        [
            "## Training metrics and input files (holdall.ml, holdall.files)",
            "",
            f"{machine_line()}; `{COMMAND} --repeats {repeats}`, medians, stores under /tmp.",
            "",
            markdown_table(["what", "how", "calls/s", "pull all back"], rows),
            "",
            f"Buffered trend logging is {trend_rate / unbuffered_rate:,.0f}x the unbuffered rate "
            f"and {trend_rate / (TREND_POINTS / tb_s):.1f}x TensorBoard's writer; matrices "
            f"{matrix_rate / unbuffered_m_rate:,.0f}x. A buffered push is a lock, two type checks "
            "and two list appends; what bounds it is the Python call itself, and the close writes "
            "one segment per metric (two arrays) whatever the number of points. The unbuffered "
            "writer pays a file write, a metadata document and a consolidated root document per "
            "point, and that last one grows with every key, so its rate only falls after the "
            f"first {UNBUFFERED_POINTS:,}. TensorBoard builds two protobuf messages per point and "
            "queues them to a writer thread. Pulling back reads the segments (one array read "
            "per segment) and de-duplicates epochs; the matrix pulls hit a cached segment.",
            "",
            markdown_table(
                ["listing", "s", "vs plain loop"],
                [
                    [
                        f"os.walk + fnmatch, {FILES:,} files, {FOLDERS:,} folders",
                        f"{walk_s:.3f}",
                        "1.00x",
                    ],
                    [
                        "CADFileRetriever(LocalStorageProvider, formats=['step'], filter_pattern='part_*')",
                        f"{retriever_s:.3f}",
                        f"{retriever_s / walk_s:.2f}x",
                    ],
                ],
            ),
            "",
            "Both walk the tree with `os.scandir` and test each name; the retriever also "
            "stats each folder once (device and inode) so that followed links never repeat or "
            "loop, and builds one small tuple per file. The filesystem's directory reads bound "
            "both. The plain loop is timed before and after the retriever and averaged; on a "
            "shared machine the ratio still moves from run to run (0.9x to 1.4x were seen here).",
        ]
    )
    write_section("ml", body)
    print(body)


if __name__ == "__main__":
    main()
