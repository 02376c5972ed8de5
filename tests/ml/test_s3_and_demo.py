"""Labels and metrics in an OptStorage on S3 (the SeaweedFS fixture), and the demo's training log."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from holdall import OptStorage
from holdall.demo import FACE_TYPES, make_part
from holdall.ml import LabelStorage, MetricStorage


def test_labels_and_metrics_round_trip_on_s3(s3_server: dict[str, Any], s3_prefix: str) -> None:
    url = f"{s3_prefix}/part.zarr"
    store = OptStorage(url, storage_options=s3_server)
    labels = LabelStorage(store, total_faces=3)
    labels.save_sparse_graph_node_label("defects", [2], [7], faceLabelDescriptions={7: "crack"})
    metrics = MetricStorage(store)
    for epoch in range(3):
        metrics.push_trend_metric("loss", epoch, 1.0 / (epoch + 1))
    metrics.push_matrix_metric("cm", 2, [[3, 1], [0, 4]], class_labels=["ok", "bad"])
    metrics.close()  # flushes, then closes the store
    again = OptStorage(url, storage_options=s3_server)
    codes, texts = LabelStorage(again, total_faces=3).load_graph_nodes_labels("defects")
    assert codes.tolist() == [0, 0, 7]
    assert texts == {7: "crack"}
    reopened = MetricStorage(again)
    assert reopened.pull_trend_metric("loss").epochs.tolist() == [0, 1, 2]
    assert reopened.pull_matrix_metric("cm", 2).tolist() == [[3, 1], [0, 4]]
    assert reopened.class_labels("cm") == ["ok", "bad"]
    reopened.close()


def test_demo_training_logs_every_kind_and_writes_the_report(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from holdall.ml._demo import EPOCHS, train_and_report

    rng = np.random.default_rng(1)
    report = train_and_report([make_part(rng) for _ in range(12)], tmp_path, FACE_TYPES, rng)
    assert report == tmp_path / "metrics_report.html"
    page = report.read_text()
    assert len(re.findall(r"data:image/png;base64,", page)) == 5  # loss, accuracy, lr, bars, cm
    with MetricStorage(OptStorage(tmp_path / "metrics" / "metrics.zarr")) as metrics:
        assert metrics.list_metrics("trend") == ["learning_rate", "train_loss", "val_accuracy",
                                                 "val_loss"]  # fmt: skip
        loss = metrics.pull_trend_metric("train_loss").values
        assert len(loss) == EPOCHS
        assert loss[-1] < loss[0]  # it learns
        confusion = metrics.pull_matrix_metric("val_confusion", EPOCHS - 1)
        assert confusion.shape == (FACE_TYPES, FACE_TYPES)
        assert metrics.list_epochs("val_recall_per_label") == list(range(EPOCHS))
