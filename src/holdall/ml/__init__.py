"""Labels and training metrics: `LabelStorage`, `MetricStorage`, `MetricExplorer` (seed 000)."""

from __future__ import annotations

from holdall.ml.labels import LabelSet, LabelStorage, SparseLabels
from holdall.ml.metrics import MetricStorage, Trend

__all__ = ["LabelSet", "LabelStorage", "MetricStorage", "SparseLabels", "Trend"]
