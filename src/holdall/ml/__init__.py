"""Labels and training metrics: `LabelStorage`, `MetricStorage`, `MetricExplorer` (seed 000)."""

from __future__ import annotations

from holdall.ml.labels import LabelSet, LabelStorage, SparseLabels

__all__ = ["LabelSet", "LabelStorage", "SparseLabels"]
