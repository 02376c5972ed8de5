"""Figures of training metrics: trend curves, per-class bars, confusion-matrix heatmaps.

Drawn with matplotlib's object API (`matplotlib.figure.Figure`, no pyplot), so nothing here
touches global state or needs a display; matplotlib is the optional extra ``plot``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from holdall._core.optional import import_optional
from holdall.errors import InvalidValueError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from holdall.ml.metrics import MetricStorage

__all__ = [
    "plot_categories",
    "plot_matrix",
    "plot_metrics",
    "plot_trends",
    "save_figure",
    "wants_log_scale",
]

#: Largest matrix side whose cells get their value written in them.
MAX_ANNOTATED_CELLS = 30
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip


def _new_figure(width: float, height: float) -> Figure:
    figure_module = import_optional("matplotlib.figure", extra="plot", purpose="plotting metrics")
    figure: Figure = figure_module.Figure(figsize=(width, height), dpi=100, layout="constrained")
    return figure


def wants_log_scale(values: Sequence[np.ndarray[Any, Any]]) -> bool:
    """True when every value is positive and they span more than two decades."""
    finite = [v[np.isfinite(v)] for v in values]
    finite = [v for v in finite if v.size]
    if not finite:
        return False
    low = min(float(v.min()) for v in finite)
    high = max(float(v.max()) for v in finite)
    return low > 0 and high / low > 100


def plot_trends(
    metrics: MetricStorage, names: Sequence[str], *, log_scale: bool | None = None,
    title: str | None = None,
) -> Figure:  # fmt: skip
    """One figure, one curve per trend metric in `names`, epochs on the x axis."""
    if not names:
        raise InvalidValueError("plot_trends needs at least one trend metric name", got=names)
    trends = {name: metrics.pull_trend_metric(name) for name in names}
    figure = _new_figure(5.8, 3.6)
    axes = figure.add_subplot()
    for number, (name, trend) in enumerate(trends.items()):
        marker = "o" if len(trend.epochs) <= 30 else None
        axes.plot(trend.epochs, trend.values, label=name, color=_PALETTE[number % len(_PALETTE)],
                  marker=marker, markersize=3, linewidth=1.6)  # fmt: skip
    if log_scale is None:
        log_scale = wants_log_scale([t.values for t in trends.values()])
    if log_scale:
        axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel("value (log scale)" if log_scale else "value")
    axes.set_title(title or ", ".join(names))
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    return figure


def _last_epoch(metrics: MetricStorage, name: str, epoch: int | None) -> int:
    if epoch is not None:
        return epoch
    epochs = metrics.list_epochs(name)
    if not epochs:
        raise InvalidValueError(f"metric {name!r} has no epochs to plot", key=name)
    return epochs[-1]


def plot_categories(metrics: MetricStorage, name: str, epoch: int | None = None) -> Figure:
    """Bars of category metric `name` at `epoch` (its last one by default), values written on top."""
    epoch = _last_epoch(metrics, name, epoch)
    categories, values = metrics.pull_category_metric(name, epoch)
    figure = _new_figure(max(4.0, 0.6 * len(categories) + 2), 3.6)
    axes = figure.add_subplot()
    positions = np.arange(len(categories))
    bars = axes.bar(positions, values, color=_PALETTE[0])
    if len(categories) <= 40:
        axes.bar_label(bars, fmt="%.3g", fontsize="small", padding=2)
    axes.set_xticks(positions, [str(c) for c in categories],
                    rotation=45 if len(categories) > 8 else 0, ha="right" if len(categories) > 8 else "center")  # fmt: skip
    axes.set_ylabel(name)
    axes.set_title(f"{name} per category, epoch {epoch}")
    axes.margins(y=0.12)
    axes.grid(True, axis="y", alpha=0.3)
    return figure


def _draw_heatmap(axes: Axes, figure: Figure, matrix: np.ndarray[Any, Any],
                  labels: Sequence[str]) -> None:  # fmt: skip
    image = axes.imshow(matrix, cmap="Blues", interpolation="nearest", aspect="equal")
    figure.colorbar(image, ax=axes, shrink=0.8)
    rows, cols = matrix.shape
    if max(rows, cols) <= MAX_ANNOTATED_CELLS:
        integral = matrix.dtype.kind in "iu" or bool(np.all(np.mod(matrix, 1) == 0))
        finite = matrix[np.isfinite(matrix)]
        middle = (float(finite.min()) + float(finite.max())) / 2 if finite.size else 0.0
        for i in range(rows):
            for j in range(cols):
                value = matrix[i, j]
                text = f"{int(value)}" if integral and np.isfinite(value) else f"{value:.2g}"
                axes.text(j, i, text, ha="center", va="center", fontsize="small",
                          color="white" if value > middle else "black")  # fmt: skip
    axes.set_xticks(np.arange(cols), list(labels[:cols]), rotation=45 if cols > 6 else 0)
    axes.set_yticks(np.arange(rows), list(labels[:rows]))


def plot_matrix(
    metrics: MetricStorage, name: str, epoch: int | None = None, *,
    class_labels: Sequence[str] | None = None,
) -> Figure:  # fmt: skip
    """Heatmap of matrix metric `name` at `epoch` (its last by default), each cell's count in it.

    Rows are the true classes and columns the predicted ones (the usual confusion-matrix
    reading); `class_labels` names them.
    """
    epoch = _last_epoch(metrics, name, epoch)
    matrix = np.asarray(metrics.pull_matrix_metric(name, epoch))
    rows, cols = matrix.shape
    if class_labels is None:
        class_labels = metrics.class_labels(name)
    if class_labels is None:
        labels = [str(i) for i in range(max(rows, cols))]
    else:
        labels = [str(label) for label in class_labels]
    if class_labels is not None and len(labels) < max(rows, cols):
        raise InvalidValueError(
            f"matrix {name!r} is {rows}x{cols} but {len(labels)} class labels were given",
            key=name, expected=max(rows, cols), got=len(labels),
        )  # fmt: skip
    side = min(12.0, max(4.5, 0.55 * max(rows, cols) + 2.5))
    figure = _new_figure(side + 1.0, side)
    axes = figure.add_subplot()
    _draw_heatmap(axes, figure, matrix, labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"{name}, epoch {epoch}")
    return figure


def save_figure(figure: Figure, path: str | os.PathLike[str]) -> Path:
    """Save `figure` as PNG or SVG, chosen by the suffix of `path`."""
    target = Path(path)
    if target.suffix.lower() not in (".png", ".svg"):
        raise InvalidValueError(
            f"cannot save a figure as {target.name!r}: the file must end in .png or .svg",
            expected=(".png", ".svg"), got=target.suffix,
        )  # fmt: skip
    figure.savefig(target, dpi=120)
    return target


def plot_metrics(
    metrics: MetricStorage, names: str | Sequence[str], epoch: int | None = None, *,
    path: str | os.PathLike[str] | None = None, log_scale: bool | None = None,
    class_labels: Sequence[str] | None = None,
) -> Figure:  # fmt: skip
    """The figure `MetricStorage.plot` returns: trends together, or one category/matrix metric."""
    names = [names] if isinstance(names, str) else list(names)
    kinds = {name: metrics.metric_kind(name) for name in names}
    if all(kind == "trend" for kind in kinds.values()):
        figure = plot_trends(metrics, names, log_scale=log_scale)
    elif len(names) == 1 and kinds[names[0]] == "category":
        figure = plot_categories(metrics, names[0], epoch)
    elif len(names) == 1 and kinds[names[0]] == "matrix":
        figure = plot_matrix(metrics, names[0], epoch, class_labels=class_labels)
    else:
        raise InvalidValueError(
            f"cannot draw {kinds} on one figure: give trend metrics (any number), or one "
            "category or matrix metric",
            got=kinds,
        )
    if path is not None:
        save_figure(figure, path)
    return figure
