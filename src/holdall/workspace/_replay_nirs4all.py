"""Replay a prediction bundle exported by nirs4all 0.7 (``RunResult.export``, ``runner.export``).

Such a bundle is a zip of ``manifest.json`` (with ``bundle_format_version``),
``pipeline.json`` (the pipeline's steps, 1-based), an optional ``fold_weights.json`` and
one joblib file per fitted object, named after its step: ``step_3_MinMaxScaler.joblib``,
``step_5_fold0_PLSRegression.joblib``, ``step_5_foldfinal_PLSRegression.joblib`` for a
refit model. The replay does what nirs4all's ``BundleLoader.predict`` does, so the
predictions are the ones nirs4all gives: the steps that have files run in step order; a
``y_processing`` step is skipped and its ``inverse_transform`` applied to the predictions (the
last such step's, as nirs4all's loader does);
a ``feature_augmentation`` step stacks each transformer's output beside its input; the
model step uses its refit model when there is one, else the weighted mean of its fold
models (``fold_weights.json``), else its single model.

Branches and stacking (meta-models) are refused with `UnsupportedTypeError`: they need
nirs4all's execution trace to replay.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from holdall.errors import (
    CorruptedFileError,
    KeyNotFoundError,
    UnsupportedTypeError,
    UntrustedArtifactError,
)
from holdall.workspace._replay_core import deserialize_bytes, inverse_targets, transform

__all__ = ["is_nirs4all_bundle", "replay_nirs4all_bundle"]

_ARTIFACT = re.compile(r"^step_(\d+)(?:_fold([A-Za-z0-9]+))?(?:_.*)?\.joblib$")
"""``step_<index>[_fold<id>][_<class>].joblib``, as nirs4all names a bundle's artifacts."""

_UNSUPPORTED = ("branch", "merge", "meta_model")


@dataclass
class _Step:
    """The artifacts of one step: unfolded ones (in bundle order) and folded ones by fold."""

    index: int
    shared: list[str] = field(default_factory=list)
    folds: dict[str, str] = field(default_factory=dict)


def is_nirs4all_bundle(manifest: dict[str, Any]) -> bool:
    """Whether a bundle's manifest is that of a nirs4all prediction bundle."""
    return "bundle_format_version" in manifest and "format" not in manifest


def _operator_types(pipeline: dict[str, Any]) -> dict[int, str]:
    """The operator type of each 1-based step of ``pipeline.json``, as nirs4all infers it."""
    types: dict[int, str] = {}
    for position, step in enumerate(pipeline.get("steps") or [], start=1):
        if not isinstance(step, dict):
            continue
        for key in ("y_processing", "feature_augmentation", "model", *_UNSUPPORTED):
            if key in step:
                types[position] = key
                break
        else:
            if "class" in step or "step" in step:
                types[position] = "transform"
    return types


def _steps(names: list[str]) -> dict[int, _Step]:
    """Group a bundle's ``artifacts/`` files by step."""
    steps: dict[int, _Step] = {}
    for name in names:
        match = _ARTIFACT.match(name.rsplit("/", 1)[-1])
        if not name.startswith("artifacts/") or match is None:
            continue
        step = steps.setdefault(int(match[1]), _Step(int(match[1])))
        if match[2] is None:
            step.shared.append(name)
        else:
            step.folds[match[2]] = name
    return steps


def _predict_model(
    step: _Step, load: Callable[[str], Any], X: np.ndarray, weights: dict[str, float]
) -> np.ndarray:
    """The model step's prediction: refit model, else weighted fold mean, else single model."""
    if "final" in step.folds:
        return np.asarray(load(step.folds["final"]).predict(X))
    numbered = sorted((int(k), name) for k, name in step.folds.items() if k.isdigit())
    if numbered:
        predictions = [np.asarray(load(name).predict(X)) for _, name in numbered]
        if not weights:
            return np.asarray(np.mean(predictions, axis=0))
        fold_weights = [weights.get(str(fold), 1.0) for fold, _ in numbered]
        weighted = sum(w * p for w, p in zip(fold_weights, predictions, strict=True))
        return np.asarray(weighted / sum(fold_weights))
    return np.asarray(load(step.shared[0]).predict(X))


def replay_nirs4all_bundle(
    path: Path,
    chain_id: str | None,
    X: np.ndarray,
    wavelengths: np.ndarray | None,
    *,
    trust: bool,
) -> np.ndarray:
    """Predict `X` with a nirs4all 0.7 prediction bundle (see the module docstring).

    Its artifacts are unsigned pickles, so they load only with ``trust=True``
    (`UntrustedArtifactError` otherwise). `chain_id`, when given, must be the bundle's
    ``pipeline_uid``. `wavelengths` are passed only to operators that accept them (nirs4all's
    loader passes none).
    """
    try:
        with zipfile.ZipFile(path) as bundle:
            manifest = json.loads(bundle.read("manifest.json"))
            names = bundle.namelist()
            pipeline = json.loads(bundle.read("pipeline.json")) if "pipeline.json" in names else {}
            raw_weights = (
                json.loads(bundle.read("fold_weights.json")) if "fold_weights.json" in names else {}
            )
            blobs = {name: bundle.read(name) for name in names if name.startswith("artifacts/")}
    except (zipfile.BadZipFile, KeyError, ValueError) as err:
        raise CorruptedFileError(
            f"{path} is not a readable nirs4all bundle: {err}", path=str(path)
        ) from err
    uid = manifest.get("pipeline_uid")
    if chain_id is not None and chain_id != uid:
        raise KeyNotFoundError(
            f"nirs4all bundle {path} holds pipeline {uid!r}, not {chain_id!r}", key=chain_id
        )
    types = _operator_types(pipeline)
    if "trace.json" in names or any(t in _UNSUPPORTED for t in types.values()):
        raise UnsupportedTypeError(
            f"{path} is a nirs4all bundle with branches, merges or a meta-model (or an "
            "execution trace); holdall replays nirs4all bundles of one linear chain. Use "
            "nirs4all's BundleLoader for this one",
            got="nirs4all bundle with branches",
        )
    model_index = manifest.get("model_step_index")
    steps = _steps(names)
    if model_index not in steps:
        raise CorruptedFileError(
            f"nirs4all bundle {path} has no artifact for its model step {model_index!r}",
            path=str(path),
        )
    weights = {str(k): float(v) for k, v in raw_weights.items()}

    if not trust:
        raise UntrustedArtifactError(
            f"{path} is a nirs4all bundle: its artifacts are joblib pickles that no holdall "
            "key signed, and loading them runs code. Pass trust=True only if you trust "
            "whoever wrote it",
            path=str(path),
        )

    def load(name: str) -> Any:
        return deserialize_bytes(blobs[name], "joblib")

    current = np.asarray(X)
    target: list[Any] = []
    for index in sorted(i for i in steps if i < model_index):
        step = steps[index]
        kind = types.get(index, "transform")
        objects = [load(name) for name in [*step.shared, *step.folds.values()]]
        if kind == "y_processing":
            target = objects  # nirs4all's loader inverts the last target step only
        elif kind == "feature_augmentation":
            current = np.hstack([current, *(transform(o, current, wavelengths) for o in objects)])
        else:
            for operator in objects:
                if hasattr(operator, "transform"):
                    current = transform(operator, current, wavelengths)
    predictions = inverse_targets(
        target, _predict_model(steps[model_index], load, current, weights)
    )
    if predictions.ndim == 2 and predictions.shape[1] == 1:
        return predictions.reshape(-1)
    return predictions
