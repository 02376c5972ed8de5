"""`MetricExplorer`: answers about stored metrics (best classes, per-class F1, epoch aggregates)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from holdall.errors import InvalidValueError
from holdall.ml.metrics import MetricStorage

__all__ = ["ConfusionStatistics", "MetricExplorer", "Reducer"]

Reducer = Literal["mean", "min", "max", "sum", "last", "first"]
_REDUCERS: dict[str, Any] = {
    "mean": lambda a: np.mean(a, axis=0),
    "min": lambda a: np.min(a, axis=0),
    "max": lambda a: np.max(a, axis=0),
    "sum": lambda a: np.sum(a, axis=0),
    "last": lambda a: a[-1],
    "first": lambda a: a[0],
}


@dataclass(frozen=True, slots=True)
class ConfusionStatistics:
    """Per-class statistics of a confusion matrix (rows: true class, columns: predicted).

    A class never predicted has precision 0, and one never present recall 0 (the
    ``zero_division=0`` convention of scikit-learn, so the figures match it).
    """

    labels: list[str]
    """The class names, in matrix order."""
    precision: np.ndarray[Any, np.dtype[np.float64]]
    """Of the items predicted as each class, the share that truly are (column-wise)."""
    recall: np.ndarray[Any, np.dtype[np.float64]]
    """Of the items of each class, the share predicted as it (row-wise)."""
    f1: np.ndarray[Any, np.dtype[np.float64]]
    """Harmonic mean of precision and recall."""
    support: np.ndarray[Any, np.dtype[np.int64]]
    """Number of items of each class (row sums)."""
    accuracy: float
    """Share of all items on the diagonal."""
    macro_f1: float
    """Unweighted mean F1 over the classes."""
    weighted_f1: float
    """F1 averaged with each class weighted by its support."""

    def rows(self) -> list[tuple[str, float, float, float, int]]:
        """(label, precision, recall, F1, support) per class, for tables."""
        return [(label, float(p), float(r), float(f), int(s)) for label, p, r, f, s in
                zip(self.labels, self.precision, self.recall, self.f1, self.support, strict=True)]  # fmt: skip


def confusion_statistics(matrix: Any, labels: list[str] | None = None) -> ConfusionStatistics:
    """Precision, recall and F1 per class of the square confusion `matrix`."""
    counts = np.asarray(matrix, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.size == 0:
        raise InvalidValueError(
            f"a confusion matrix is square, got shape {counts.shape}",
            expected="n x n", got=counts.shape,
        )  # fmt: skip
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise InvalidValueError("a confusion matrix holds finite counts >= 0", got=matrix)
    n = counts.shape[0]
    names = labels if labels is not None else [str(i) for i in range(n)]
    if len(names) != n:
        raise InvalidValueError(
            f"{len(names)} labels for a {n}x{n} confusion matrix", expected=n, got=len(names)
        )
    hits = np.diag(counts)
    predicted = counts.sum(axis=0)
    actual = counts.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros(n), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(n), where=both > 0)
    total = counts.sum()
    return ConfusionStatistics(
        labels=list(names),
        precision=precision,
        recall=recall,
        f1=f1,
        support=actual.astype(np.int64),
        accuracy=float(hits.sum() / total) if total else 0.0,
        macro_f1=float(f1.mean()),
        weighted_f1=float((f1 * actual).sum() / actual.sum()) if actual.sum() else 0.0,
    )


class MetricExplorer:
    """Questions about the metrics of a `MetricStorage`: which classes lead or lag, how a
    confusion matrix breaks down per class, and what a metric amounts to over epochs.

    Parameters
    ----------
    metrics
        The metrics to explore (buffered pushes included).
    """

    def __init__(self, metrics: MetricStorage) -> None:
        self.metrics = metrics

    def _epoch(self, name: str, epoch: int | None) -> int:
        if epoch is not None:
            return epoch
        epochs = self.metrics.list_epochs(name)
        if not epochs:
            raise InvalidValueError(f"metric {name!r} has no epochs yet", key=name)
        return epochs[-1]

    def _ranked(
        self, name: str, epoch: int | None, n: int, *, best: bool, higher_is_better: bool
    ) -> list[tuple[Any, float]]:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidValueError(f"n must be a positive int, got {n!r}", got=n)
        categories, values = self.metrics.pull_category_metric(name, self._epoch(name, epoch))
        pairs = list(zip(categories, values, strict=True))
        descending = best == higher_is_better
        # NaN sorts last whichever the order; ties keep the categories' order.
        pairs.sort(key=lambda p: (np.isnan(p[1]), -p[1] if descending else p[1]))
        return pairs[:n]

    def best_categories(
        self, name: str, epoch: int | None = None, n: int = 3, *, higher_is_better: bool = True
    ) -> list[tuple[Any, float]]:
        """The `n` best (category, value) of category metric `name` at `epoch` (default: last)."""
        return self._ranked(name, epoch, n, best=True, higher_is_better=higher_is_better)

    def worst_categories(
        self, name: str, epoch: int | None = None, n: int = 3, *, higher_is_better: bool = True
    ) -> list[tuple[Any, float]]:
        """The `n` worst (category, value) of category metric `name` at `epoch` (default: last)."""
        return self._ranked(name, epoch, n, best=False, higher_is_better=higher_is_better)

    def confusion_statistics(
        self, name: str, epoch: int | None = None, *, labels: list[str] | None = None
    ) -> ConfusionStatistics:
        """Precision, recall and F1 per class of confusion-matrix metric `name` at `epoch`."""
        matrix = self.metrics.pull_matrix_metric(name, self._epoch(name, epoch))
        return confusion_statistics(matrix, labels)

    def best_epoch(self, name: str, *, mode: Literal["min", "max"] = "min") -> tuple[int, float]:
        """(epoch, value) where trend metric `name` is lowest (``mode="min"``) or highest."""
        if mode not in ("min", "max"):
            raise InvalidValueError(f"mode must be 'min' or 'max', got {mode!r}", got=mode)
        trend = self.metrics.pull_trend_metric(name)
        finite = np.isfinite(trend.values)
        if not finite.any():
            raise InvalidValueError(f"trend {name!r} has no finite value", key=name)
        values = np.where(finite, trend.values, np.inf if mode == "min" else -np.inf)
        at = int(np.argmin(values) if mode == "min" else np.argmax(values))
        return int(trend.epochs[at]), float(trend.values[at])

    def aggregate(
        self, name: str, reducer: Reducer = "mean", *, first: int | None = None,
        last: int | None = None,
    ) -> Any:  # fmt: skip
        """Reduce metric `name` over its epochs in ``first..last`` (inclusive; default: all).

        A trend gives one float; a category metric a dict category -> float (each category
        over the epochs that have it); a matrix metric one array (``"sum"`` adds confusion
        matrices of several epochs into one).
        """
        if reducer not in _REDUCERS:
            raise InvalidValueError(
                f"reducer must be one of {sorted(_REDUCERS)}, got {reducer!r}", got=reducer
            )
        reduce = _REDUCERS[reducer]
        kind = self.metrics.metric_kind(name)
        epochs = [e for e in self.metrics.list_epochs(name)
                  if (first is None or e >= first) and (last is None or e <= last)]  # fmt: skip
        if not epochs:
            raise InvalidValueError(
                f"metric {name!r} has no epoch in {first}..{last}", key=name, got=(first, last)
            )
        if kind == "trend":
            trend = self.metrics.pull_trend_metric(name)
            return float(reduce(trend.values[np.isin(trend.epochs, epochs)]))
        if kind == "category":
            per_category: dict[Any, list[float]] = {}
            for epoch in epochs:
                for category, value in zip(*self.metrics.pull_category_metric(name, epoch),
                                           strict=True):  # fmt: skip
                    per_category.setdefault(category, []).append(value)
            return {c: float(reduce(np.array(v))) for c, v in per_category.items()}
        matrices = [self.metrics.pull_matrix_metric(name, epoch) for epoch in epochs]
        shapes = {m.shape for m in matrices}
        if len(shapes) > 1:
            raise InvalidValueError(
                f"matrix {name!r} changes shape over epochs {first}..{last} ({sorted(shapes)}); "
                "aggregate a range where it keeps one shape",
                key=name, got=sorted(shapes),
            )  # fmt: skip
        return reduce(np.stack(matrices))
