"""Small per-file CAD stores (the `cad_basic` schema) for merge tests, and their expected merge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from holdall.schema import SchemaBuilder
from holdall.storage import OptStorage

SCHEMA = SchemaBuilder.from_template("cad_basic").build()


def make_part(rng: np.random.Generator) -> dict[str, Any]:
    """One small part: n faces, m edges, an n x n x 4 face-pair histogram."""
    n = int(rng.integers(2, 9))
    m = int(rng.integers(1, 12))
    return {
        "faces": {
            "face_indices": np.arange(n, dtype=np.int32),
            "face_areas": rng.uniform(0.1, 5, n).astype(np.float32),
            "face_types": rng.integers(0, 5, n).astype(np.int32),
            "face_normals": rng.normal(size=(n, 3)).astype(np.float32),
        },
        "edges": {
            "edge_indices": np.arange(m, dtype=np.int32),
            "edge_lengths": rng.uniform(0.1, 3, m).astype(np.float32),
            "edge_types": rng.integers(0, 3, m).astype(np.int32),
        },
        "graph": {
            "edges_source": rng.integers(0, n, m).astype(np.int32),
            "edges_destination": rng.integers(0, n, m).astype(np.int32),
            "num_nodes": n,
        },
        "faceface": {
            "a3_distance": rng.uniform(size=(n, n, 4)).astype(np.float32),
            "d2_distance": rng.uniform(size=(n, n, 4)).astype(np.float32),
            "extended_adjacency": rng.integers(0, 4, (n, n)).astype(np.float32),
        },
    }


def write_part(
    path: str,
    part: dict[str, Any],
    *,
    label: int,
    archive: bool = True,
    schema: dict[str, Any] | None = SCHEMA,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Store `part` at `path` (``.../name.zarr``); return the merge input (archive or folder)."""
    with OptStorage(path, storage_options=storage_options) as storage:
        if schema is not None:
            storage.set_schema(schema)
        for key, value in part.items():
            storage.save_data(key, value)
        storage.save_metadata("file_label", label)
        storage.save_metadata("size_cadfile", 1000 + label)
        storage.save_metadata("processing_time", 0.5)
        storage.save_metadata("material_name", f"steel-{label % 2}")
        if archive:
            storage.compress_store()
    return f"{path}.data" if archive else path


def make_inputs(
    folder: Path, count: int, *, seed: int = 0, archive: bool = True, **options: Any
) -> tuple[list[str], list[dict[str, Any]]]:
    """`count` parts written under `folder`; returns (merge inputs, the parts)."""
    rng = np.random.default_rng(seed)
    parts = [make_part(rng) for _ in range(count)]
    sources = [
        write_part(
            str(folder / f"part_{i:03d}.zarr"), part, label=i % 3, archive=archive, **options
        )
        for i, part in enumerate(parts)
    ]
    return sources, parts


def expected_array(parts: list[dict[str, Any]], group: str, name: str) -> np.ndarray:
    """The merge of `group/name` by plain numpy: concatenation, face pairs flattened."""
    blocks = []
    for part in parts:
        value = np.asarray(part[group][name])
        if value.ndim == 0:
            value = value.reshape(1)
        if group == "faceface":
            value = value.reshape(value.shape[0] * value.shape[1], *value.shape[2:])
        blocks.append(value)
    return np.concatenate(blocks)


def assert_merged(dataset: Path, parts: list[dict[str, Any]], codes: list[int]) -> None:
    """Every group, array, file code and offset of `dataset` equals the numpy merge of `parts`."""
    import zarr

    root = zarr.open_group(str(dataset), mode="r")
    np.testing.assert_array_equal(root["file_id_codes"][...], codes)
    primary = {
        "faces": "face_indices",
        "edges": "edge_indices",
        "graph": "edges_source",
        "faceface": "a3_distance",
    }
    for group, arrays in parts[0].items():
        for name in arrays:
            got = root[f"{group}/{name}"][...]
            want = expected_array(parts, group, name)
            assert got.dtype == want.dtype if name != "num_nodes" else got.dtype == np.int64
            np.testing.assert_array_equal(got, want, err_msg=f"{group}/{name}")
        lengths = [len(expected_array([p], group, primary[group])) for p in parts]
        offsets = root[f"{group}/file_offsets"][...]
        np.testing.assert_array_equal(offsets, np.concatenate([[0], np.cumsum(lengths)]))
        np.testing.assert_array_equal(
            root[f"{group}/file_id_code_{group}"][...], np.repeat(codes, lengths)
        )
        # One file's rows are a slice: file i is offsets[i]:offsets[i + 1].
        last = len(parts) - 1
        np.testing.assert_array_equal(
            root[f"{group}/{primary[group]}"][offsets[last] : offsets[last + 1]],
            expected_array([parts[last]], group, primary[group]),
        )
    graph_bounds = root["graph/file_offsets_graph"][...]
    np.testing.assert_array_equal(graph_bounds, np.arange(len(parts) + 1))
