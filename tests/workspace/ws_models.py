"""Tiny numpy operators standing in for fitted scikit-learn objects in workspace tests."""

from __future__ import annotations

import numpy as np


class Scaler:
    """Centre and scale columns, like a fitted StandardScaler."""

    def __init__(self, X: np.ndarray) -> None:
        self.mean = X.mean(axis=0)
        self.scale = X.std(axis=0) + 1e-12

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) / self.scale


class WavelengthShift:
    """A wavelength-aware transform: adds the wavelengths to every row."""

    def transform(self, X: np.ndarray, wavelengths: np.ndarray | None = None) -> np.ndarray:
        return X if wavelengths is None else X + wavelengths


class Ridge:
    """Least squares with a small ridge penalty, fitted on construction."""

    def __init__(self, X: np.ndarray, y: np.ndarray, alpha: float = 1e-3) -> None:
        gram = X.T @ X + alpha * np.eye(X.shape[1])
        self.coef = np.linalg.solve(gram, X.T @ y)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X @ self.coef
