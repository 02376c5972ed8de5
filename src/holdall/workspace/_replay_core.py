"""Apply a fitted chain to new data: the replay logic, free of any holdall import.

This module is the single implementation of chain replay. `holdall.workspace.replay_chain`
calls it for chains in a workspace or in a bundle, and `export_chain(format="n4a.py")`
copies its source verbatim into the standalone script, which therefore needs only numpy
(and joblib or cloudpickle for the artifacts that use them).
"""

from __future__ import annotations

import inspect
import io
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np

REFIT_FOLDS = ("fold_final", "final")
"""Fold keys naming a single model refit on all data; when present it alone predicts."""


class NotAModelError(TypeError):
    """The artifact a chain names as its model has no ``predict``."""


def deserialize_bytes(data: bytes, fmt: str) -> Any:
    """Rebuild an artifact from its bytes in format ``npy``, ``joblib`` or ``cloudpickle``."""
    if fmt == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    if fmt == "joblib":
        import joblib

        return joblib.load(io.BytesIO(data))
    if fmt == "cloudpickle":
        import cloudpickle  # noqa: F401  (registers what cloudpickled objects need)

        return pickle.loads(data)
    raise ValueError(f"unknown artifact format {fmt!r}")


def _as_ids(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def transform(operator: Any, X: np.ndarray, wavelengths: np.ndarray | None) -> np.ndarray:
    """``operator.transform(X)``, passing `wavelengths` when the operator accepts them."""
    if wavelengths is not None:
        try:
            parameters = inspect.signature(operator.transform).parameters
        except (TypeError, ValueError):
            parameters = {}  # type: ignore[assignment]
        if "wavelengths" in parameters:
            return np.asarray(operator.transform(X, wavelengths=wavelengths))
    return np.asarray(operator.transform(X))


def _is_target_step(step: dict[str, Any]) -> bool:
    """True for a step that transformed the targets (nirs4all records ``y_processing``)."""
    params = step.get("params")
    return isinstance(params, dict) and "y_processing" in params


def inverse_targets(transformers: list[Any], predictions: np.ndarray) -> np.ndarray:
    """`predictions` through each transformer's ``inverse_transform``, in the given order.

    A 1-D array goes through as one column and comes back 1-D; transformers without an
    ``inverse_transform`` are passed over (as nirs4all's bundle loader does).
    """
    values = np.asarray(predictions)
    for transformer in transformers:
        if not hasattr(transformer, "inverse_transform"):
            continue
        if values.ndim == 1:
            values = np.asarray(transformer.inverse_transform(values.reshape(-1, 1))).ravel()
        else:
            values = np.asarray(transformer.inverse_transform(values))
    return values


def apply_chain(
    chain: dict[str, Any],
    load: Callable[[str], Any],
    X: np.ndarray,
    wavelengths: np.ndarray | None = None,
) -> np.ndarray:
    """Run `chain` on `X` and return the predictions.

    Steps run in ``step_idx`` order. A step before the model applies the ``transform`` of
    each artifact in ``shared_artifacts[str(step_idx)]`` (else its own ``artifact_id``);
    stateless steps without artifact are skipped. A target step (nirs4all's
    ``y_processing``, marked in its ``params``) scaled y, not X: its artifacts' inverse
    transforms are applied, last first, to the predictions. The model step averages
    ``predict`` over the fold models of ``fold_artifacts`` (only the refit model when there
    is one). A prediction with one column is returned as a 1-D array.
    """
    fold = dict(chain.get("fold_artifacts") or {})
    shared = dict(chain.get("shared_artifacts") or {})
    model_idx = chain["model_step_idx"]
    current = np.asarray(X)
    targets: list[Any] = []
    for step in sorted(chain["steps"], key=lambda s: int(s["step_idx"])):
        idx = int(step["step_idx"])
        if idx == model_idx:
            refit = [k for k in REFIT_FOLDS if fold.get(k)]
            keys = refit[:1] if refit else sorted(fold, key=str)
            ids = [i for k in keys for i in _as_ids(fold[k])] or _as_ids(step.get("artifact_id"))
            if not ids:
                raise ValueError(
                    f"chain {chain.get('chain_id')!r} has no model artifact to predict with"
                )
            models = [load(i) for i in ids]
            for artifact_id, model in zip(ids, models, strict=True):
                if not callable(getattr(model, "predict", None)):
                    raise NotAModelError(
                        f"artifact {artifact_id!r}, the model of chain {chain.get('chain_id')!r}, "
                        f"is a {type(model).__name__} with no predict(); it is not a fitted "
                        "model (nirs4all 1.4's dag-ml runner stores a replay descriptor here, "
                        "which only nirs4all itself can replay)"
                    )
            predictions: np.ndarray = inverse_targets(  # the last target step first
                targets[::-1],
                np.mean([np.asarray(model.predict(current)) for model in models], axis=0),
            )
            if predictions.ndim == 2 and predictions.shape[1] == 1:
                return predictions.reshape(-1)
            return predictions
        ids = _as_ids(shared.get(str(idx))) or _as_ids(step.get("artifact_id"))
        if _is_target_step(step):
            targets.extend(load(artifact_id) for artifact_id in ids)
            continue
        for artifact_id in ids:
            current = transform(load(artifact_id), current, wavelengths)
    raise ValueError(f"chain {chain.get('chain_id')!r} has no step with model_step_idx={model_idx}")
