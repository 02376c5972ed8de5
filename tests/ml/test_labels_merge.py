"""Labels saved per part with LabelStorage merge into one dataset like any other group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from holdall import OptStorage
from holdall.dataset import merge_stores
from holdall.ml import LabelStorage


def test_face_and_file_labels_of_many_parts_merge_in_file_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    parts = tmp_path / "parts"
    expected_faces, expected_files = [], []
    for index, faces in enumerate((4, 7, 3)):
        with OptStorage(parts / f"part_{index}.zarr") as store:
            labels = LabelStorage(store, total_faces=faces, total_edges=0)
            face_codes = rng.integers(0, 5, faces)
            labels.save_graph_node_label("segmentation", face_codes, ["unknown"] * faces)
            labels.save_graph_label("classification", index % 2, "odd" if index % 2 else "even")
            store.compress_store()
        expected_faces.append(face_codes)
        expected_files.append(index % 2)
    flow = merge_stores([str(parts)], tmp_path / "labels")
    assert len(flow["merged"]) == 3
    dataset = zarr.open_group(str(tmp_path / "labels.dataset"), mode="r")
    np.testing.assert_array_equal(
        dataset["face_labels/segmentation"][...], np.concatenate(expected_faces)
    )
    np.testing.assert_array_equal(
        dataset["file_label/classification"][...].reshape(-1), expected_files
    )
