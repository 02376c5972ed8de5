"""The metrics part of ``holdall demo``: a face classifier trained over epochs, logged and reported.

A softmax regression learns each face's label (``faces/face_labels``) from its type, area and
normal, by full-batch gradient descent with a cosine learning-rate schedule. Every epoch logs
the train and validation loss, the validation accuracy and the learning rate (trends), the
per-class recall (a category metric) and the validation confusion matrix, into a
`MetricStorage` over an `OptStorage`; then the HTML report of all of it is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from holdall.errors import BackendUnavailableError
from holdall.ml.metrics import MetricStorage
from holdall.ml.report import write_report
from holdall.storage import OptStorage

__all__ = ["train_and_report"]

EPOCHS = 40


def _features(parts: list[dict[str, Any]], classes: int) -> tuple[np.ndarray, np.ndarray]:
    faces = [part["faces"] for part in parts]
    types = np.concatenate([f["face_types"] for f in faces])
    areas = np.log10(np.concatenate([f["face_areas"] for f in faces]).astype(np.float64))
    normals = np.concatenate([f["face_normals"] for f in faces]).astype(np.float64)
    X = np.column_stack([np.eye(classes)[types], (areas - areas.mean()) / areas.std(), normals,
                         np.ones(len(types))])  # fmt: skip
    return X, np.concatenate([f["face_labels"] for f in faces]).astype(np.int64)


def _loss(X: np.ndarray, y: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray]:
    logits = X @ weights
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    loss = float(-np.log(probabilities[np.arange(len(y)), y] + 1e-12).mean())
    return loss, probabilities


def train_and_report(
    parts: list[dict[str, Any]], out: Path, classes: int, rng: np.random.Generator
) -> Path | None:
    """Train on 80% of `parts`, validate on the rest, log every epoch; return the report path.

    The metrics go to `out`/metrics/metrics.zarr and the report to `out`/metrics_report.html;
    without matplotlib (the ``plot`` extra) no report is written and None is returned.
    """
    order = rng.permutation(len(parts))
    cut = max(1, len(parts) // 5)
    X_val, y_val = _features([parts[i] for i in order[:cut]], classes)
    X_train, y_train = _features([parts[i] for i in order[cut:]], classes)
    weights = np.zeros((X_train.shape[1], classes))
    labels = [f"label {c}" for c in range(classes)]
    with MetricStorage(OptStorage(out / "metrics" / "metrics.zarr")) as metrics:
        for epoch in range(EPOCHS):
            rate = 0.05 + 1.95 * (1 + np.cos(np.pi * epoch / EPOCHS)) / 2
            train_loss, probabilities = _loss(X_train, y_train, weights)
            probabilities[np.arange(len(y_train)), y_train] -= 1
            weights -= rate * X_train.T @ probabilities / len(y_train)
            val_loss, val_probabilities = _loss(X_val, y_val, weights)
            predicted = val_probabilities.argmax(axis=1)
            confusion = np.zeros((classes, classes), dtype=np.int64)
            np.add.at(confusion, (y_val, predicted), 1)
            recall = np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)
            metrics.push_trend_metric("train_loss", epoch, train_loss)
            metrics.push_trend_metric("val_loss", epoch, val_loss)
            metrics.push_trend_metric("val_accuracy", epoch, float((predicted == y_val).mean()))
            metrics.push_trend_metric("learning_rate", epoch, float(rate))
            metrics.push_category_metric("val_recall_per_label", epoch, labels, recall)
            metrics.push_matrix_metric("val_confusion", epoch, confusion, class_labels=labels)
        try:
            return write_report(metrics, out / "metrics_report.html",
                                title="holdall demo: face label classifier")  # fmt: skip
        except BackendUnavailableError:  # no matplotlib: the metrics are stored, not drawn
            return None
