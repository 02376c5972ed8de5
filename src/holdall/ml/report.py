"""One self-contained HTML page of every metric of a store (``holdall metrics PATH --out``).

The page needs nothing beside it: the figures are PNG images embedded as base64 data URLs,
the style sheet is inline, and there is no script. Trend metrics are grouped by what they
measure (``train_loss`` and ``val/loss`` share a ``loss`` figure); each category metric is
drawn at its last epoch, each matrix metric as a heatmap at its last epoch with a
precision/recall/F1 table when it is a square matrix of counts.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from holdall._core.atomic import atomic_write_bytes
from holdall.ml.explorer import MetricExplorer
from holdall.ml.plots import plot_categories, plot_matrix, plot_trends

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from holdall.ml.metrics import MetricStorage

__all__ = ["render_report", "trend_groups", "write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; margin-top: 0; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; }
.pair { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
"""


def trend_groups(names: list[str]) -> dict[str, list[str]]:
    """Trend names grouped by their last word (``train_loss``, ``val/loss`` -> ``loss``)."""
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        word = re.split(r"[/_.\-\s]+", name.strip("/_.- "))[-1] or name
        groups.setdefault(word.lower(), []).append(name)
    return groups


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="" src="data:image/png;base64,{data}">'


def _number(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.4g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _trend_section(metrics: MetricStorage, explorer: MetricExplorer) -> list[str]:
    names = metrics.list_metrics("trend")
    if not names:
        return []
    rows = []
    for name in names:
        trend = metrics.pull_trend_metric(name)
        finite = np.isfinite(trend.values)
        low = explorer.best_epoch(name, mode="min") if finite.any() else None
        high = explorer.best_epoch(name, mode="max") if finite.any() else None
        rows.append([
            html.escape(name), str(len(trend.epochs)),
            f"{_number(trend.values[-1])} (epoch {trend.epochs[-1]})" if len(trend.epochs) else "-",
            f"{_number(low[1])} (epoch {low[0]})" if low else "-",
            f"{_number(high[1])} (epoch {high[0]})" if high else "-",
        ])  # fmt: skip
    parts = ["<h2>Curves</h2>", _table(["metric", "epochs", "last", "min", "max"], rows)]
    parts.append('<div class="grid">')
    groups = trend_groups(names)
    # Losses first: they are what a reader looks for.
    for group in sorted(groups, key=lambda g: (g != "loss", g)):
        members = groups[group]
        figure = plot_trends(metrics, members, title=group if len(members) > 1 else members[0])
        parts.append(f"<figure>{_png(figure)}<figcaption>{html.escape(', '.join(members))}"
                     "</figcaption></figure>")  # fmt: skip
    parts.append("</div>")
    return parts


def _category_section(metrics: MetricStorage, explorer: MetricExplorer) -> list[str]:
    names = metrics.list_metrics("category")
    if not names:
        return []
    parts = ["<h2>Per category</h2>", '<div class="grid">']
    for name in names:
        epochs = metrics.list_epochs(name)
        best = ", ".join(f"{html.escape(str(c))} {_number(v)}"
                         for c, v in explorer.best_categories(name, n=3))  # fmt: skip
        worst = ", ".join(f"{html.escape(str(c))} {_number(v)}"
                          for c, v in explorer.worst_categories(name, n=3))  # fmt: skip
        parts.append(f"<figure>{_png(plot_categories(metrics, name))}<figcaption>"
                     f"{html.escape(name)} at epoch {epochs[-1]} ({len(epochs)} epochs). "
                     f"Highest: {best}. Lowest: {worst}.</figcaption></figure>")  # fmt: skip
    parts.append("</div>")
    return parts


def _matrix_section(metrics: MetricStorage, explorer: MetricExplorer) -> list[str]:
    names = metrics.list_metrics("matrix")
    if not names:
        return []
    parts = ["<h2>Matrices</h2>"]
    for name in names:
        epochs = metrics.list_epochs(name)
        matrix = metrics.pull_matrix_metric(name, epochs[-1])
        parts.append(f"<h3>{html.escape(name)}, epoch {epochs[-1]} of {len(epochs)}</h3>")
        parts.append(f'<div class="pair"><figure>{_png(plot_matrix(metrics, name))}</figure>')
        square = matrix.shape[0] == matrix.shape[1]
        counts = square and bool(np.all(matrix >= 0)) and bool(np.all(np.mod(matrix, 1) == 0))
        if counts:
            labels = metrics.class_labels(name)
            stats = explorer.confusion_statistics(name, labels=labels[: matrix.shape[0]]
                                                  if labels else None)  # fmt: skip
            rows = [[html.escape(label), f"{p:.3f}", f"{r:.3f}", f"{f:.3f}", str(s)]
                    for label, p, r, f, s in stats.rows()]  # fmt: skip
            rows.append(["<b>accuracy</b>", "", "", f"<b>{stats.accuracy:.3f}</b>",
                         str(int(stats.support.sum()))])  # fmt: skip
            rows.append(["<b>macro F1</b>", "", "", f"<b>{stats.macro_f1:.3f}</b>", ""])
            parts.append("<div>" + _table(["class", "precision", "recall", "F1", "support"],
                                          rows) + "</div>")  # fmt: skip
        parts.append("</div>")
    return parts


def render_report(metrics: MetricStorage, *, title: str | None = None) -> str:
    """The HTML text of the report of every metric of `metrics`."""
    explorer = MetricExplorer(metrics)
    store = metrics.get_storage()
    location = store.get_file_path("")
    heading = title or "Training metrics"
    body = [
        f"<h1>{html.escape(heading)}</h1>",
        f'<p class="meta">{html.escape(str(location))} &middot; {len(metrics.list_metrics())} '
        f"metrics &middot; written {time.strftime('%Y-%m-%d %H:%M')}</p>",
    ]
    body += _trend_section(metrics, explorer)
    body += _category_section(metrics, explorer)
    body += _matrix_section(metrics, explorer)
    predictions = metrics.list_metrics("predictions")
    if predictions:
        rows = [[html.escape(name), str(len(metrics.list_data_ids(name)))] for name in predictions]
        body += ["<h2>Predictions</h2>", _table(["name", "data ids"], rows)]
    if not metrics.list_metrics():
        body.append("<p>This store holds no metrics.</p>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(heading)}</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_report(
    metrics: MetricStorage, path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Write the report of `metrics` to `path` (atomically) and return the path."""
    target = Path(path)
    atomic_write_bytes(target, render_report(metrics, title=title).encode("utf-8"))
    return target
