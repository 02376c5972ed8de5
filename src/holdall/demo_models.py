"""The fitted numpy operators of `holdall demo`: two scalers and a ridge regression.

They live in an importable module (not in a script or a closure) so that the artifacts the
demo saves with joblib unpickle in any process that has holdall, which is what
`holdall.workspace.replay_chain` on an exported chain needs. Each is fitted on construction
and then only transforms or predicts, the two methods a replayed chain calls.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MinMaxScaler", "RidgeRegression", "StandardScaler"]


class StandardScaler:
    """Centre each column and divide it by its standard deviation (constant columns kept as is)."""

    def __init__(self, X: np.ndarray) -> None:
        self.mean: np.ndarray = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale: np.ndarray = np.where(std > 0, std, 1.0)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """`X` centred and scaled with the training statistics."""
        return np.asarray((X - self.mean) / self.scale)


class MinMaxScaler:
    """Map each column's training range onto [0, 1] (constant columns to 0)."""

    def __init__(self, X: np.ndarray) -> None:
        self.low: np.ndarray = X.min(axis=0)
        span = X.max(axis=0) - self.low
        self.span: np.ndarray = np.where(span > 0, span, 1.0)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """`X` shifted and scaled with the training range."""
        return np.asarray((X - self.low) / self.span)


class RidgeRegression:
    """Least squares with an L2 penalty `alpha` on the coefficients (the intercept is free)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, alpha: float) -> None:
        self.alpha = float(alpha)
        x_mean, y_mean = X.mean(axis=0), float(y.mean())
        centred = X - x_mean
        gram = centred.T @ centred + self.alpha * np.eye(X.shape[1])
        self.coef: np.ndarray = np.linalg.solve(gram, centred.T @ (y - y_mean))
        self.intercept = y_mean - float(x_mean @ self.coef)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions for the rows of `X`."""
        return np.asarray(X @ self.coef + self.intercept)
