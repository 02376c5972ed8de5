"""Export metrics to TensorBoard event files, so they open in the tool people already use.

Uses the ``tensorboard`` package's own event-file writer and protobuf messages (extra
``tensorboard``). Trend metrics become scalar series tagged with their name, the epoch as
step; each category metric becomes one series per category, tagged ``<name>/<category>``.
Matrices and predictions have no TensorBoard scalar form and are not exported.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from holdall._core.optional import import_optional
from holdall.errors import InvalidValueError
from holdall.ml.metrics import MetricStorage

__all__ = ["export_tensorboard"]


def export_tensorboard(
    metrics: MetricStorage,
    logdir: str | os.PathLike[str],
    names: Sequence[str] | None = None,
    *,
    categories: bool = True,
) -> Path:
    """Write trend (and, with `categories`, category) metrics as one event file in `logdir`.

    Parameters
    ----------
    metrics
        The metrics to export (buffered pushes included).
    logdir
        Folder of the event file (created); point ``tensorboard --logdir`` at it.
    names
        Metrics to export; every trend (and category) metric by default.
    categories
        Also export category metrics, one scalar series per category.

    Returns
    -------
    Path
        The event file written.
    """
    writer_module = import_optional(
        "tensorboard.summary.writer.event_file_writer", extra="tensorboard",
        purpose="exporting metrics to TensorBoard",
    )  # fmt: skip
    summary_pb2 = import_optional("tensorboard.compat.proto.summary_pb2", extra="tensorboard",
                                  purpose="exporting metrics to TensorBoard")  # fmt: skip
    event_pb2 = import_optional("tensorboard.compat.proto.event_pb2", extra="tensorboard",
                                purpose="exporting metrics to TensorBoard")  # fmt: skip
    kinds = ("trend", "category") if categories else ("trend",)
    chosen = list(names) if names is not None else [
        n for n in metrics.list_metrics() if metrics.metric_kind(n) in kinds
    ]  # fmt: skip
    for name in chosen:  # checked before anything is written
        kind = metrics.metric_kind(name)
        if kind not in kinds:
            raise InvalidValueError(
                f"metric {name!r} is a {kind} metric; only {' and '.join(kinds)} metrics are "
                "exported as TensorBoard scalars",
                key=name, expected=kinds, got=kind,
            )  # fmt: skip
    folder = Path(logdir)
    folder.mkdir(parents=True, exist_ok=True)
    before = set(folder.iterdir())
    writer = writer_module.EventFileWriter(str(folder), max_queue_size=1024, flush_secs=3600)
    wall_time = time.time()

    def scalar(tag: str, step: int, value: float) -> None:
        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]
        )
        writer.add_event(event_pb2.Event(wall_time=wall_time, step=step, summary=summary))

    try:
        for name in chosen:
            if metrics.metric_kind(name) == "trend":
                trend = metrics.pull_trend_metric(name)
                for epoch, value in zip(trend.epochs.tolist(), trend.values.tolist(), strict=True):
                    scalar(name, epoch, value)
                continue
            for epoch in metrics.list_epochs(name):
                labels, values = metrics.pull_category_metric(name, epoch)
                for label, value in zip(labels, values, strict=True):
                    scalar(f"{name}/{label}", epoch, value)
    finally:
        writer.close()
    (written,) = set(folder.iterdir()) - before
    return written
