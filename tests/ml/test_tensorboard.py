"""TensorBoard export, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from holdall import MemoryStorage
from holdall.errors import InvalidValueError
from holdall.ml import MetricStorage

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from holdall.ml.tensorboard import export_tensorboard


def test_trend_and_category_metrics_open_in_tensorboard(tmp_path: Path) -> None:
    metrics = MetricStorage(MemoryStorage())
    for epoch in range(5):
        metrics.push_trend_metric("train/loss", epoch, 1.0 / (epoch + 1))
        metrics.push_category_metric("iou", epoch, ["hole", "slot"], [0.1 * epoch, 0.5])
    metrics.push_trend_metric("train/loss", 2, 9.0)  # the latest value of an epoch is exported
    metrics.push_matrix_metric("cm", 0, [[1, 0], [0, 1]])
    event_file = export_tensorboard(metrics, tmp_path / "tb")
    assert event_file.name.startswith("events.out.tfevents.")
    reader = EventAccumulator(str(tmp_path / "tb"))
    reader.Reload()
    assert sorted(reader.Tags()["scalars"]) == ["iou/hole", "iou/slot", "train/loss"]
    loss = reader.Scalars("train/loss")
    assert [e.step for e in loss] == [0, 1, 2, 3, 4]
    assert [e.value for e in loss] == pytest.approx([1.0, 0.5, 9.0, 0.25, 0.2])
    assert [e.value for e in reader.Scalars("iou/hole")] == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])
    with pytest.raises(InvalidValueError, match="'cm' is a matrix metric"):
        export_tensorboard(metrics, tmp_path / "tb2", ["cm"])
    assert not (tmp_path / "tb2").exists()
    only_trends = export_tensorboard(metrics, tmp_path / "tb3", categories=False)
    reader = EventAccumulator(str(only_trends))
    reader.Reload()
    assert reader.Tags()["scalars"] == ["train/loss"]
