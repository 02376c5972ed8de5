"""MetricExplorer: ranked categories, per-class statistics checked by hand, epoch aggregates."""

from __future__ import annotations

import numpy as np
import pytest

from holdall import MemoryStorage
from holdall.errors import EpochNotFoundError, InvalidValueError
from holdall.ml import MetricStorage
from holdall.ml.explorer import MetricExplorer, confusion_statistics


@pytest.fixture
def explorer() -> MetricExplorer:
    metrics = MetricStorage(MemoryStorage())
    for epoch in range(4):
        metrics.push_trend_metric("loss", epoch, [3.0, 1.0, 2.0, float("nan")][epoch])
        metrics.push_category_metric("acc", epoch, ["a", "b", "c", "d"],
                                     [0.5, 0.9 - 0.1 * epoch, float("nan"), 0.1 * epoch])  # fmt: skip
        metrics.push_matrix_metric("cm", epoch, [[epoch, 1], [0, 2]])
    metrics.flush()
    return MetricExplorer(metrics)


def test_best_and_worst_categories(explorer: MetricExplorer) -> None:
    assert explorer.best_categories("acc", 0, n=2) == [("b", 0.9), ("a", 0.5)]
    assert explorer.worst_categories("acc", 0, n=2) == [("d", 0.0), ("a", 0.5)]
    # The last epoch by default; NaN never ranks first either way.
    assert explorer.best_categories("acc", n=1) == [("b", pytest.approx(0.6))]
    assert explorer.worst_categories("acc", n=4)[-1][0] == "c"
    assert explorer.best_categories("acc", 0, n=1, higher_is_better=False) == [("d", 0.0)]
    with pytest.raises(InvalidValueError, match="positive int"):
        explorer.best_categories("acc", n=0)
    with pytest.raises(EpochNotFoundError):
        explorer.best_categories("acc", 9)


def test_confusion_statistics_by_hand() -> None:
    # rows true, columns predicted
    stats = confusion_statistics([[5, 1, 0], [2, 3, 0], [0, 0, 0]], ["x", "y", "z"])
    np.testing.assert_allclose(stats.precision, [5 / 7, 3 / 4, 0.0])
    np.testing.assert_allclose(stats.recall, [5 / 6, 3 / 5, 0.0])
    f1_x = 2 * (5 / 7) * (5 / 6) / (5 / 7 + 5 / 6)
    f1_y = 2 * (3 / 4) * (3 / 5) / (3 / 4 + 3 / 5)
    np.testing.assert_allclose(stats.f1, [f1_x, f1_y, 0.0])
    assert stats.support.tolist() == [6, 5, 0]
    assert stats.accuracy == pytest.approx(8 / 11)
    assert stats.macro_f1 == pytest.approx((f1_x + f1_y) / 3)
    assert stats.weighted_f1 == pytest.approx((6 * f1_x + 5 * f1_y) / 11)
    assert stats.rows()[0][0] == "x"
    for bad in ([[1, 2]], [[1, -1], [0, 1]], [[np.nan, 0], [0, 1]]):
        with pytest.raises(InvalidValueError):
            confusion_statistics(bad)
    with pytest.raises(InvalidValueError, match="2 labels"):
        confusion_statistics(np.eye(3), ["a", "b"])


def test_confusion_statistics_of_a_stored_matrix(explorer: MetricExplorer) -> None:
    stats = explorer.confusion_statistics("cm", 3)
    np.testing.assert_allclose(stats.recall, [3 / 4, 1.0])
    assert stats.labels == ["0", "1"]


def test_aggregation_over_epochs(explorer: MetricExplorer) -> None:
    assert explorer.best_epoch("loss") == (1, 1.0)  # NaN at epoch 3 is skipped
    assert explorer.best_epoch("loss", mode="max") == (0, 3.0)
    assert explorer.aggregate("loss", "mean", last=2) == pytest.approx(2.0)
    assert explorer.aggregate("loss", "first") == 3.0
    per_class = explorer.aggregate("acc", "max", first=1)
    assert per_class["b"] == pytest.approx(0.8)
    assert per_class["d"] == pytest.approx(0.3)
    assert explorer.aggregate("cm", "sum").tolist() == [[6, 4], [0, 8]]
    with pytest.raises(InvalidValueError, match=r"no epoch in 7\.\.9"):
        explorer.aggregate("loss", first=7, last=9)
    with pytest.raises(InvalidValueError, match="reducer"):
        explorer.aggregate("loss", "median")  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="mode"):
        explorer.best_epoch("loss", mode="lowest")  # type: ignore[arg-type]
