"""Labels and training metrics: `LabelStorage`, `MetricStorage`, `MetricExplorer` (seed 000)."""

from __future__ import annotations

from holdall.ml.explorer import ConfusionStatistics, MetricExplorer
from holdall.ml.labels import LabelSet, LabelStorage, SparseLabels
from holdall.ml.metrics import MetricStorage, Trend

__all__ = [
    "ConfusionStatistics",
    "LabelSet",
    "LabelStorage",
    "MetricExplorer",
    "MetricStorage",
    "SparseLabels",
    "Trend",
]
