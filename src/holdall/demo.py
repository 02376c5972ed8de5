"""`holdall demo`: the main job on synthetic CAD-like parts, end to end.

Generates parts with face and edge arrays of realistic sizes (areas, normals, UV grids,
adjacency index arrays, labels), writes each to its own `OptStorage` with metadata, packs it
into its archive, converts one part to JSON for inspection, and reports throughput and
compression.

Then it learns from what it stored: it reads the archives back, fits a few numpy ridge
pipelines with K-fold cross-validation to predict each part's total face area, records runs,
pipelines, chains, artifacts, predictions and logs in a `WorkspaceStore`, replays the best
chain on held-out parts and exports it as a bundle, so one command shows both halves of
holdall.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from holdall._core.optional import import_optional
from holdall.dataset import merge_demo_parts
from holdall.demo_models import MinMaxScaler, RidgeRegression, StandardScaler
from holdall.errors import InvalidValueError
from holdall.ml._demo import train_and_report
from holdall.storage import DataStorage, JsonStorageHandler, OptStorage, convert_storage
from holdall.workspace import ChainBuilder, WorkspaceStore

__all__ = ["DemoPipeline", "DemoReport", "LearningReport", "make_part", "part_sample", "run_demo"]

FACE_TYPES = 6
EDGE_TYPES = 4
UV_SAMPLES = 10

FEATURE_NAMES = (
    "log10_faces",
    "log10_edges",
    "mean_degree",
    "patch_height_mean",
    "patch_height_std",
    "edge_length_mean",
)
"""The features `part_sample` reads from a part's archive, in column order."""
TARGET = "log10(total face area)"
"""What the demo's models predict for each part."""
FOLDS = 3
HELD_OUT_FRACTION = 0.2
"""Share of the parts kept out of training, to replay the best chain on."""
MIN_PARTS = 10
"""Fewest parts that leave a held-out set and three folds of at least two parts."""
DATASET = "demo_parts"
MODEL_CLASS = "holdall.demo_models.RidgeRegression"


def make_part(rng: np.random.Generator) -> dict[str, Any]:
    """One synthetic B-rep part: smooth surface samples, index arrays and labels."""
    n_faces = int(rng.integers(20, 240))
    n_edges = int(n_faces * rng.uniform(2.5, 3.5))
    # UV grids: points of smooth patches (cylinders and planes) sampled on a 10x10 grid.
    u = np.linspace(0.0, 1.0, UV_SAMPLES, dtype=np.float32)
    uu, vv = np.meshgrid(u, u, indexing="ij")
    radius = rng.uniform(1.0, 20.0, n_faces).astype(np.float32)[:, None, None]
    angle = rng.uniform(0, np.pi, n_faces).astype(np.float32)[:, None, None]
    origin = rng.uniform(-50, 50, (n_faces, 1, 1, 3)).astype(np.float32)
    points = (
        np.stack(
            [radius * np.cos(angle + uu), radius * np.sin(angle + uu), vv * radius * 2], axis=-1
        )
        + origin
    )
    normals = points - origin
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True) + np.float32(1e-6)
    mask = np.ones((n_faces, UV_SAMPLES, UV_SAMPLES, 1), dtype=np.float32)
    uv_grids = np.concatenate([points, normals, mask], axis=-1).astype(np.float32)
    edge_faces = np.sort(rng.integers(0, n_faces, (n_edges, 2)), axis=1).astype(np.int32)
    edge_faces = edge_faces[np.lexsort((edge_faces[:, 1], edge_faces[:, 0]))]
    t = np.linspace(0.0, 1.0, UV_SAMPLES, dtype=np.float32)
    edge_start = rng.uniform(-50, 50, (n_edges, 1, 3)).astype(np.float32)
    edge_dir = rng.normal(size=(n_edges, 1, 3)).astype(np.float32)
    edge_curves = edge_start + t[None, :, None] * edge_dir * 10
    face_types = rng.integers(0, FACE_TYPES, n_faces).astype(np.int32)
    return {
        "faces": {
            "face_indices": np.arange(n_faces, dtype=np.int32),
            "face_areas": (radius[:, 0, 0] ** 2 * rng.uniform(0.5, 2.0, n_faces)).astype(
                np.float32
            ),
            "face_types": face_types,
            "face_normals": normals[:, UV_SAMPLES // 2, UV_SAMPLES // 2, :].copy(),
            "face_uv_grids": uv_grids,
            "face_labels": (face_types + rng.integers(0, 2, n_faces)).astype(np.int32) % FACE_TYPES,
        },
        "edges": {
            "edge_indices": np.arange(n_edges, dtype=np.int32),
            "edge_lengths": (np.linalg.norm(edge_dir[:, 0, :], axis=1) * 10).astype(np.float32),
            "edge_types": rng.integers(0, EDGE_TYPES, n_edges).astype(np.int32),
            "edge_u_grids": edge_curves.astype(np.float32),
        },
        "graph": {
            "edges_source": edge_faces[:, 0].copy(),
            "edges_destination": edge_faces[:, 1].copy(),
            "num_nodes": n_faces,
        },
        "file_label": int(rng.integers(0, 10)),
    }


def part_sample(storage: DataStorage) -> tuple[np.ndarray, float]:
    """The features (`FEATURE_NAMES`) and the target (`TARGET`) of one stored part.

    The features describe the sampled geometry (face and edge counts, heights of the UV
    patches, edge lengths), never the face areas, so a model has to learn the area from them.
    """
    n_faces = int(storage.load_data("graph/num_nodes"))
    edge_lengths = storage.load_data("edges/edge_lengths")
    heights = np.ptp(storage.load_data("faces/face_uv_grids")[..., 2], axis=(1, 2))
    features = np.array(
        [
            np.log10(n_faces),
            np.log10(len(edge_lengths)),
            2 * len(edge_lengths) / n_faces,
            heights.mean(),
            heights.std(),
            edge_lengths.mean(),
        ],
        dtype=np.float64,
    )
    return features, float(np.log10(storage.load_data("faces/face_areas").sum(dtype=np.float64)))


def _nbytes(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_nbytes(item) for item in value.values())
    return int(value.nbytes) if isinstance(value, np.ndarray) else 8


@dataclass(frozen=True, slots=True)
class DemoPipeline:
    """One pipeline of the demo: an optional fitted scaler, then a ridge regression per fold."""

    name: str
    scaler: type[StandardScaler] | type[MinMaxScaler] | None
    alpha: float

    @property
    def preprocessing(self) -> str:
        """The scaler's class name, or "" without one."""
        return "" if self.scaler is None else self.scaler.__name__

    @property
    def model_name(self) -> str:
        """The model as shown in the predictions."""
        return f"Ridge(alpha={self.alpha:g})"


PIPELINES = (
    DemoPipeline("0001_standard_ridge", StandardScaler, 1.0),
    DemoPipeline("0002_minmax_ridge", MinMaxScaler, 0.01),
    DemoPipeline("0003_raw_ridge", None, 10.0),
)
"""The pipelines the demo cross-validates: preprocessing and regularisation differ."""


@dataclass(frozen=True, slots=True)
class LearningReport:
    """What the learning step trained, recorded in the workspace, replayed and exported."""

    train_parts: int
    """Parts used for cross-validation."""
    held_out_parts: int
    """Parts kept out of training (the ``test`` partition), replayed at the end."""
    seconds: float
    """Wall time to read the archives, train, record, replay and export."""
    top: pl.DataFrame
    """``top_predictions(5)`` of the workspace: the best validation predictions."""
    best_pipeline: str
    """Name of the pipeline with the lowest mean validation RMSE."""
    best_val: float
    """Its mean validation RMSE over the folds."""
    held_out_rmse: float
    """RMSE of its chain replayed on the held-out parts."""
    workspace: Path
    """The workspace folder."""
    bundle: Path
    """The exported best chain."""

    def lines(self) -> list[str]:
        """The report as printed by the CLI."""
        table = [
            f"  {'preprocessing':15} {'model':17} {'fold':>4} {'val RMSE':>10} {'test RMSE':>10}"
        ]
        for row in self.top.iter_rows(named=True):
            table.append(
                f"  {row['preprocessings'] or 'none':15} {row['model_name']:17} {row['fold_id']:>4} "
                f"{row['val_score']:10.4f} {row['test_score']:10.4f}"
            )
        return [
            f"learning: each part's {TARGET} from {len(FEATURE_NAMES)} features read back from its archive",
            f"trained {len(PIPELINES)} pipelines x {FOLDS} folds on {self.train_parts} parts in "
            f"{self.seconds:.2f} s, {self.held_out_parts} parts held out",
            f"top {len(self.top)} predictions (val: the fold's validation parts, test: the held-out parts):",
            *table,
            f"best chain: {self.best_pipeline} (mean val RMSE {self.best_val:.4f}), "
            f"replayed on the {self.held_out_parts} held-out parts: RMSE {self.held_out_rmse:.4f}",
            f"exported: {self.bundle} (replay it with holdall.workspace.replay_chain)",
            f"next: holdall workspace {self.workspace} top",
        ]


@dataclass(frozen=True, slots=True)
class DemoReport:
    """What the demo did and measured."""

    parts: int
    """Number of parts encoded."""
    seconds: float
    """Wall time to write, compress and close every part."""
    bytes_in: int
    """Uncompressed bytes of all arrays."""
    bytes_out: int
    """Bytes of all archives."""
    encoded_dir: Path
    """Folder holding the archives."""
    json_dir: Path
    """Folder of the part converted to JSON."""
    learning: LearningReport
    """The models trained on the archives and recorded in the workspace."""
    metrics_report: Path | None = None
    """HTML report of the face classifier's training metrics (None without matplotlib)."""
    dataset: tuple[str, ...] = ()
    """Table of contents of the archives merged into one dataset (`holdall.dataset`)."""

    def lines(self) -> list[str]:
        """The report as printed by the CLI."""
        return [
            f"encoded {self.parts} parts in {self.seconds:.2f} s ({self.parts / self.seconds:.0f} parts/s)",
            f"bytes in {self.bytes_in / 1e6:.2f} MB, archives {self.bytes_out / 1e6:.2f} MB, "
            f"compression ratio {self.bytes_in / max(self.bytes_out, 1):.2f}x",
            f"archives: {self.encoded_dir}/*.zarr.data (open with holdall.OptStorage or zarr.storage.ZipStore)",
            f"one part as JSON: {self.json_dir}",
            f"try: holdall info {self.encoded_dir}/part_0000.zarr",
            *self.dataset,
            *self.learning.lines(),
            f"training curves and confusion matrices: {self.metrics_report or 'pip install holdall[plot] to draw them'}",
        ]


def _rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def _fit_pipeline(
    store: WorkspaceStore,
    run_id: str,
    spec: DemoPipeline,
    data: tuple[np.ndarray, np.ndarray],
    folds: list[np.ndarray],
    held: np.ndarray,
    dataset_hash: str,
) -> None:
    """Cross-validate one pipeline and record its artifacts, chain, predictions and logs.

    The scaler is fitted once on all development parts (the folds together): a chain holds
    one fitted transform per step and one model per fold, so that is what replays. Each
    fold's model predicts its validation fold (partition ``val``) and the held-out parts
    (``test``). The pipeline's ``best_val`` is the mean validation RMSE over the folds and
    ``best_test`` the held-out RMSE of the fold models' mean, which is what replay gives.
    """
    began = time.perf_counter()
    X, y = data
    dev = np.sort(np.concatenate(folds))
    steps = [spec.preprocessing or "none", spec.model_name]
    pipeline_id = store.begin_pipeline(
        run_id, spec.name, {"steps": steps, "folds": len(folds)}, [], DATASET, dataset_hash
    )
    chain = ChainBuilder()
    if spec.scaler is not None:
        fitted = time.perf_counter()
        scaler = spec.scaler(X[dev])
        X = scaler.transform(X)
        operator = f"holdall.demo_models.{spec.preprocessing}"
        chain.add_step(
            operator, artifact_id=store.save_artifact(scaler, operator, "transformer", "joblib")
        )
        store.log_step(pipeline_id, 0, operator, "fit", _ms(fitted), f"on {len(dev)} parts")
    model_step = 0 if spec.scaler is None else 1
    models: list[RidgeRegression] = []
    records: list[dict[str, Any]] = []
    for k, val in enumerate(folds):
        fitted = time.perf_counter()
        subsets = {"train": np.setdiff1d(dev, val), "val": val, "test": held}
        model = RidgeRegression(X[subsets["train"]], y[subsets["train"]], spec.alpha)
        models.append(model)
        predicted = {name: model.predict(X[idx]) for name, idx in subsets.items()}
        scores = {name: _rmse(y[idx], predicted[name]) for name, idx in subsets.items()}
        store.log_step(pipeline_id, model_step, MODEL_CLASS, "fit", _ms(fitted), f"fold {k}",
                       details={"fold": k, "val_rmse": scores["val"]})  # fmt: skip
        for partition in ("val", "test"):
            idx = subsets[partition]
            records.append({
                "pipeline_id": pipeline_id, "dataset_name": DATASET, "model_name": spec.model_name,
                "model_class": MODEL_CLASS, "fold_id": str(k), "partition": partition,
                "val_score": scores["val"], "test_score": scores["test"],
                "train_score": scores["train"], "metric": "rmse", "task_type": "regression",
                "n_samples": len(idx), "n_features": X.shape[1],
                "scores": {name: {"rmse": value} for name, value in scores.items()},
                "best_params": {"alpha": spec.alpha}, "branch_id": None, "branch_name": None,
                "exclusion_count": 0, "exclusion_rate": 0.0, "preprocessings": spec.preprocessing,
                "y_true": y[idx], "y_pred": predicted[partition], "sample_indices": idx,
            })  # fmt: skip
    fold_artifacts = {
        str(k): store.save_artifact(model, MODEL_CLASS, "model", "joblib")
        for k, model in enumerate(models)
    }
    chain.add_model(MODEL_CLASS, fold_artifacts, params={"alpha": spec.alpha})
    chain_id = store.save_chain(pipeline_id, **chain.build())
    store.save_predictions([{**record, "chain_id": chain_id} for record in records])
    val_records = [record for record in records if record["partition"] == "val"]
    held_out = np.mean([r["y_pred"] for r in records if r["partition"] == "test"], axis=0)
    store.complete_pipeline(
        pipeline_id,
        best_val=float(np.mean([record["val_score"] for record in val_records])),
        best_test=_rmse(y[held], held_out),
        metric="rmse",
        duration_ms=_ms(began),
    )


def _ms(since: float) -> int:
    return round((time.perf_counter() - since) * 1000)


def _learn(out: Path, encoded: Path, parts: int, rng: np.random.Generator) -> LearningReport:
    """Read the archives back, cross-validate `PIPELINES`, record, replay and export the best."""
    began = time.perf_counter()
    samples = []
    for index in range(parts):
        with OptStorage(encoded / f"part_{index:04d}.zarr") as storage:
            samples.append(part_sample(storage))
    X = np.stack([features for features, _ in samples])
    y = np.array([target for _, target in samples])
    order = rng.permutation(parts)
    n_held = max(1, round(parts * HELD_OUT_FRACTION))
    held = np.sort(order[:n_held])
    folds = [np.sort(fold) for fold in np.array_split(order[n_held:], FOLDS)]
    dataset_hash = hashlib.sha256(X.tobytes() + y.tobytes()).hexdigest()[:16]
    config = {"target": TARGET, "features": list(FEATURE_NAMES), "folds": FOLDS,
              "held_out_parts": held.tolist()}  # fmt: skip
    with WorkspaceStore(out / "workspace") as store:
        run_id = store.begin_run(
            "holdall-demo", config, [{"name": DATASET, "n_samples": parts, "hash": dataset_hash}]
        )
        for spec in PIPELINES:
            _fit_pipeline(store, run_id, spec, (X, y), folds, held, dataset_hash)
        top = store.top_predictions(5)
        best = store.list_pipelines(run_id=run_id).sort("best_val").row(0, named=True)
        chain_id = str(store.get_chains_for_pipeline(best["pipeline_id"])["chain_id"][0])
        held_out_rmse = _rmse(y[held], store.replay_chain(chain_id, X[held]))
        bundle = store.export_chain(chain_id, out / "best_chain.n4a")
        store.complete_run(
            run_id,
            {"best_pipeline": best["name"], "best_chain": chain_id, "held_out_rmse": held_out_rmse},
        )
    return LearningReport(
        train_parts=parts - n_held,
        held_out_parts=n_held,
        seconds=time.perf_counter() - began,
        top=top,
        best_pipeline=best["name"],
        best_val=best["best_val"],
        held_out_rmse=held_out_rmse,
        workspace=out / "workspace",
        bundle=bundle,
    )


DEMO_OUTPUTS = (
    "encoded",
    "json",
    "workspace",
    "best_chain.n4a",
    "metrics",
    "metrics_report.html",
    "dataset",
)
"""What `run_demo` writes below its output folder (and replaces on the next run)."""


def _clear_previous_run(out: Path) -> None:
    """Remove what an earlier demo wrote to `out`, so `make demo` can run again.

    Archives are read-only once packed and a second run would add a second run to the
    workspace; only the demo's own outputs are removed, nothing else in `out`.
    """
    for name in DEMO_OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def run_demo(out: Path, parts: int, *, seed: int = 0) -> DemoReport:
    """Encode `parts` synthetic parts, then learn from their archives into a workspace.

    Writes the archives to `out`/encoded, the first part as JSON to `out`/json/part_0000,
    the workspace to `out`/workspace and the best chain to `out`/best_chain.n4a.

    Raises
    ------
    InvalidValueError
        When `parts` is below `MIN_PARTS`.
    BackendUnavailableError
        When joblib (the ``workspace`` extra) is missing; checked before anything is written.
    """
    if parts < MIN_PARTS:
        raise InvalidValueError(
            f"the demo needs at least {MIN_PARTS} parts (it holds some out and cross-validates "
            f"on the rest), got {parts}",
            key="parts",
            expected=f">= {MIN_PARTS}",
            got=parts,
        )
    import_optional("joblib", extra="workspace", purpose="holdall demo (it saves fitted models)")
    _clear_previous_run(out)
    rng = np.random.default_rng(seed)
    encoded = out / "encoded"
    encoded.mkdir(parents=True, exist_ok=True)
    generated = [make_part(rng) for _ in range(parts)]
    bytes_in = bytes_out = 0
    start = time.perf_counter()
    for index, part in enumerate(generated):
        began = time.perf_counter()
        with OptStorage(encoded / f"part_{index:04d}.zarr") as storage:
            for key, value in part.items():
                if key != "file_label":
                    storage.save_data(key, value)
            storage.save_metadata("file_label", part["file_label"])
            storage.save_metadata("size_cadfile", int(rng.integers(10_000, 5_000_000)))
            storage.save_metadata("processing_time", time.perf_counter() - began)
            bytes_out += storage.compress_store()
        bytes_in += _nbytes(part)
    seconds = time.perf_counter() - start
    json_dir = out / "json" / "part_0000"
    with OptStorage(encoded / "part_0000.zarr") as source:
        convert_storage(source, JsonStorageHandler(json_dir))
    learning = _learn(out, encoded, parts, rng)
    report = train_and_report(generated, out, FACE_TYPES, rng)
    dataset = merge_demo_parts(encoded, out / "dataset" / "parts")
    return DemoReport(
        parts, seconds, bytes_in, bytes_out, encoded, json_dir, learning, report, dataset
    )
