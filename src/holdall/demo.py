"""`holdall demo`: the main job on synthetic CAD-like parts, end to end.

Generates parts with face and edge arrays of realistic sizes (areas, normals, UV grids,
adjacency index arrays, labels), writes each to its own `OptStorage` with metadata, packs it
into its archive, converts one part to JSON for inspection, and reports throughput and
compression.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from holdall.storage import JsonStorageHandler, OptStorage, convert_storage

__all__ = ["DemoReport", "make_part", "run_demo"]

FACE_TYPES = 6
EDGE_TYPES = 4
UV_SAMPLES = 10


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


def _nbytes(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_nbytes(item) for item in value.values())
    return int(value.nbytes) if isinstance(value, np.ndarray) else 8


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

    def lines(self) -> list[str]:
        """The report as printed by the CLI."""
        return [
            f"encoded {self.parts} parts in {self.seconds:.2f} s ({self.parts / self.seconds:.0f} parts/s)",
            f"bytes in {self.bytes_in / 1e6:.2f} MB, archives {self.bytes_out / 1e6:.2f} MB, "
            f"compression ratio {self.bytes_in / max(self.bytes_out, 1):.2f}x",
            f"archives: {self.encoded_dir}/*.zarr.data (open with holdall.OptStorage or zarr.storage.ZipStore)",
            f"one part as JSON: {self.json_dir}",
            f"try: holdall info {self.encoded_dir}/part_0000.zarr",
        ]


def run_demo(out: Path, parts: int, *, seed: int = 0) -> DemoReport:
    """Encode `parts` synthetic parts into `out`/encoded and convert the first one to JSON."""
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
    return DemoReport(parts, seconds, bytes_in, bytes_out, encoded, json_dir)
