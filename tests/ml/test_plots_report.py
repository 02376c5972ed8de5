"""Figures (checked through their artists and as image files), the HTML report and its command."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from holdall import MemoryStorage, OptStorage
from holdall.errors import InvalidValueError
from holdall.ml import MetricStorage
from holdall.ml.report import render_report, trend_groups

pytest.importorskip("matplotlib")

from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Text

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LABELS = ["hole", "slot", "stock"]


def _metrics(store: object | None = None) -> MetricStorage:
    metrics = MetricStorage(store if store is not None else MemoryStorage())  # type: ignore[arg-type]
    for epoch in range(12):
        metrics.push_trend_metric("train_loss", epoch, 2.0 * 0.7**epoch)
        metrics.push_trend_metric("val_loss", epoch, 2.2 * 0.75**epoch)
        metrics.push_trend_metric("learning_rate", epoch, 1e-1 * 0.5**epoch)
        metrics.push_trend_metric("val_accuracy", epoch, 0.5 + 0.04 * epoch)
        metrics.push_category_metric("iou", epoch, LABELS, [0.2 + 0.05 * epoch, 0.6, 0.1])
        confusion = np.array([[8, 1, 1], [2, 7, 1], [0, 3, 7]]) + epoch
        metrics.push_matrix_metric("confusion", epoch, confusion, class_labels=LABELS)
    metrics.push_predictions("pred", 0, np.zeros(3))
    return metrics


def _image_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(PNG_MAGIC)
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_trend_figure_has_one_curve_per_metric_and_log_scale_when_it_helps(tmp_path: Path) -> None:
    metrics = _metrics()
    figure = metrics.plot(["train_loss", "val_loss"], path=tmp_path / "loss.png")
    (axes,) = figure.axes
    curves = [line for line in axes.get_lines() if isinstance(line, Line2D)]
    assert [line.get_label() for line in curves] == ["train_loss", "val_loss"]
    assert curves[0].get_xdata().tolist() == list(range(12))
    assert axes.get_yscale() == "linear"  # 2.0 .. 0.04: under two decades
    assert metrics.plot(["learning_rate"]).axes[0].get_yscale() == "log"  # 0.1 .. 5e-5
    assert metrics.plot(["learning_rate"], log_scale=False).axes[0].get_yscale() == "linear"
    width, height = _image_size((tmp_path / "loss.png").read_bytes())
    assert width > 300
    assert height > 200


def test_category_bars_one_per_class(tmp_path: Path) -> None:
    metrics = _metrics()
    figure = metrics.plot("iou", 3, path=tmp_path / "iou.svg")
    (axes,) = figure.axes
    bars = [p for p in axes.patches if isinstance(p, Rectangle)]
    assert len(bars) == 3
    assert [round(b.get_height(), 6) for b in bars] == [0.35, 0.6, 0.1]
    assert [t.get_text() for t in axes.get_xticklabels()] == LABELS
    assert "epoch 3" in axes.get_title()
    svg = (tmp_path / "iou.svg").read_text()
    assert svg.lstrip().startswith("<?xml")
    assert "<svg" in svg


def test_confusion_heatmap_has_a_count_in_every_cell(tmp_path: Path) -> None:
    metrics = _metrics()
    figure = metrics.plot("confusion", path=tmp_path / "cm.png")  # last epoch: 11
    heatmap = figure.axes[0]
    (image,) = [i for i in heatmap.get_images() if isinstance(i, AxesImage)]
    assert image.get_array().shape == (3, 3)
    cells = [t.get_text() for t in heatmap.texts if isinstance(t, Text)]
    expected = (np.array([[8, 1, 1], [2, 7, 1], [0, 3, 7]]) + 11).ravel()
    assert cells == [str(v) for v in expected]
    assert [t.get_text() for t in heatmap.get_yticklabels()] == LABELS
    assert heatmap.get_xlabel() == "predicted"
    assert len(figure.axes) == 2  # the heatmap and its colour bar
    _image_size((tmp_path / "cm.png").read_bytes())


def test_plot_refuses_mixed_kinds_and_other_suffixes(tmp_path: Path) -> None:
    metrics = _metrics()
    with pytest.raises(InvalidValueError, match="cannot draw"):
        metrics.plot(["train_loss", "confusion"])
    with pytest.raises(InvalidValueError, match=r"\.png or \.svg"):
        metrics.plot("train_loss", path=tmp_path / "x.jpg")
    with pytest.raises(InvalidValueError, match="3x3 but 2 class labels"):
        metrics.plot("confusion", class_labels=["a", "b"])


def test_trend_groups_by_what_they_measure() -> None:
    assert trend_groups(["train_loss", "val/loss", "val_accuracy", "lr"]) == {
        "accuracy": ["val_accuracy"],
        "loss": ["train_loss", "val/loss"],
        "lr": ["lr"],
    }


def test_report_is_self_contained_and_shows_every_metric() -> None:
    page = render_report(_metrics(), title="run <1>")
    assert "<title>run &lt;1&gt;</title>" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    # 3 trend groups (loss, rate, accuracy) + 1 bar chart + 1 heatmap
    assert len(images) == 5
    for data in images:
        width, height = _image_size(base64.b64decode(data))
        assert width > 200
        assert height > 150
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched from elsewhere
    for name in ["train_loss", "val_loss", "learning_rate", "val_accuracy", "iou", "confusion"]:
        assert name in page
    # Last confusion matrix [[19,12,12],[13,18,12],[11,14,18]]: slot precision 18/44, recall 18/43.
    assert re.search(r"<td>slot</td><td>0\.409</td><td>0\.419</td>", page)
    assert "<h2>Predictions</h2>" in page


def test_report_of_an_empty_store_says_so() -> None:
    assert "holds no metrics" in render_report(MetricStorage(MemoryStorage()))


def test_metrics_command_writes_the_report(tmp_path: Path) -> None:
    _metrics(OptStorage(tmp_path / "run.zarr")).close()
    out = tmp_path / "report.html"
    done = subprocess.run(
        [sys.executable, "-m", "holdall.cli", "metrics", str(tmp_path / "run.zarr"), "--out",
         str(out)],
        capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), "PATH": "/usr/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "7 metrics" in done.stdout
    assert out.read_text().count("data:image/png;base64,") == 5
    missing = subprocess.run(
        [sys.executable, "-m", "holdall.cli", "metrics", str(tmp_path / "nothing")],
        capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), "PATH": "/usr/bin"},
    )  # fmt: skip
    assert missing.returncode == 2
    assert "nothing" in missing.stderr
