"""LabelStorage: every save/load pair on every backend, checks, and several tasks side by side."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr

from holdall import DataStorage, JsonStorageHandler, MemoryStorage, OptStorage
from holdall.errors import (
    ClosedStorageError,
    InvalidKeyError,
    InvalidValueError,
    KeyNotFoundError,
    ReadOnlyStorageError,
    UnsupportedTypeError,
)
from holdall.ml import LabelStorage

FACES, EDGES = 6, 9


def _fill(labels: LabelStorage) -> None:
    labels.save_graph_label("part_class", 3, "bracket")
    labels.save_graph_node_label(
        "machining", [0, 1, 1, 2, 0, 2], {0: "stock", 1: "hole", 2: "slot"}
    )
    labels.save_graph_node_label("segmentation", np.arange(6, dtype=np.int32), None)
    labels.save_graph_edge_label("convexity", [1] * 9, ["convex"] * 9)
    labels.save_sparse_graph_edge_label("fillet", [7, 2], [5, 4], defaultLabel=-1,
                                        edgeLabelDescriptions={5: "fillet", 4: "chamfer"})  # fmt: skip
    labels.save_sparse_graph_node_label("defects", [4], [9], faceLabelDescriptions=["crack"])


def _check(labels: LabelStorage) -> None:
    assert labels.load_graph_label("part_class") == (3, "bracket")
    codes, texts = labels.load_graph_nodes_labels("machining")
    assert codes.dtype == np.int64
    assert codes.tolist() == [0, 1, 1, 2, 0, 2]
    assert texts == {0: "stock", 1: "hole", 2: "slot"}
    assert labels.load_graph_nodes_labels("segmentation").codes.tolist() == list(range(6))
    assert labels.load_graph_nodes_labels("segmentation").descriptions == {}
    convexity = labels.load_graph_edges_labels("convexity")
    assert convexity.codes.tolist() == [1] * 9
    assert convexity.descriptions == {1: "convex"}
    fillet = labels.load_graph_edges_labels("fillet")
    assert fillet.codes.tolist() == [-1, -1, 4, -1, -1, -1, -1, 5, -1]
    sparse = labels.load_sparse_graph_edge_label("fillet")
    assert sparse.indices.tolist() == [7, 2]
    assert sparse.labels.tolist() == [5, 4]
    assert sparse.default_label == -1
    assert sparse.descriptions == {5: "fillet", 4: "chamfer"}
    defects = labels.load_sparse_graph_node_label("defects")
    assert defects.indices.tolist() == [4]
    assert defects.descriptions == {9: "crack"}
    assert labels.load_graph_nodes_labels("defects").codes.tolist() == [0, 0, 0, 0, 9, 0]
    assert labels.list_ml_tasks() == sorted(
        ["part_class", "machining", "segmentation", "convexity", "fillet", "defects"]
    )
    assert labels.list_ml_tasks(LabelStorage.EDGE_ENTITY) == ["convexity", "fillet"]


def _memory(tmp_path: Path) -> tuple[DataStorage, Callable[[DataStorage], DataStorage]]:
    return MemoryStorage(), lambda written: written


def _json(tmp_path: Path) -> tuple[DataStorage, Callable[[DataStorage], DataStorage]]:
    def reopen(written: DataStorage) -> DataStorage:
        written.close()
        return JsonStorageHandler(tmp_path / "labels_json")

    return JsonStorageHandler(tmp_path / "labels_json"), reopen


def _zarr_dir(tmp_path: Path) -> tuple[DataStorage, Callable[[DataStorage], DataStorage]]:
    def reopen(written: DataStorage) -> DataStorage:
        written.close()
        return OptStorage(tmp_path / "part.zarr")

    return OptStorage(tmp_path / "part.zarr"), reopen


def _zarr_archive(tmp_path: Path) -> tuple[DataStorage, Callable[[DataStorage], DataStorage]]:
    def reopen(written: DataStorage) -> DataStorage:
        written.compress_store()
        written.close()
        reopened = OptStorage(tmp_path / "part.zarr")
        assert reopened.read_only
        return reopened

    return OptStorage(tmp_path / "part.zarr"), reopen


@pytest.mark.parametrize("backend", [_memory, _json, _zarr_dir, _zarr_archive])
def test_every_label_kind_round_trips(tmp_path: Path, backend: Callable[..., tuple]) -> None:
    store, reopen = backend(tmp_path)
    _fill(LabelStorage(store, total_faces=FACES, total_edges=EDGES))
    again = reopen(store)
    _check(LabelStorage(again, total_faces=FACES, total_edges=EDGES))
    again.close()


@pytest.mark.filterwarnings("error::zarr.errors.ZarrUserWarning")  # core codecs only
def test_default_backend_is_optstorage_at_the_path(tmp_path: Path) -> None:
    with LabelStorage(tmp_path / "p.zarr", total_faces=FACES, total_edges=EDGES) as labels:
        assert isinstance(labels.get_storage(), OptStorage)
        _fill(labels)
    with LabelStorage(tmp_path / "p.zarr", FACES, EDGES) as labels:
        _check(labels)
    # Another reader sees plain arrays, one group per entity, one array per task.
    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")
    assert group["face_labels/machining"][:].tolist() == [0, 1, 1, 2, 0, 2]
    assert group["file_label/part_class"][:].tolist() == [3]
    with pytest.raises(ClosedStorageError):
        labels.load_graph_label("part_class")


def test_dense_save_replaces_sparse_record() -> None:
    labels = LabelStorage(MemoryStorage(), total_faces=3)
    labels.save_sparse_graph_node_label("t", [1], [2])
    labels.save_graph_node_label("t", [1, 1, 1])
    with pytest.raises(KeyNotFoundError, match="saved dense"):
        labels.load_sparse_graph_node_label("t")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.save_graph_node_label("seg", [0, 1], None), r"'seg'.*total_faces=4.*got 2"),
        (lambda s: s.save_graph_edge_label("e", [0] * 6, None), r"'e'.*total_edges=5.*got 6"),
        (lambda s: s.save_graph_node_label("seg", [0, 1.5, 0, 0], None), r"labels\[1\] is 1.5"),
        (lambda s: s.save_graph_node_label("seg", [[0, 1], [0, 1]], None), "must be 1-D"),
        (lambda s: s.save_graph_node_label("seg", [0, 1, 0, np.nan], None), r"labels\[3\]"),
        (lambda s: s.save_graph_node_label("seg", np.zeros(4), None), "dtype float64"),
        (lambda s: s.save_sparse_graph_node_label("sp", [0, 4], [1, 1]), r"'sp'.*index 4 .*0\.\.3"),
        (lambda s: s.save_sparse_graph_node_label("sp", [-1], [1]), r"index -1"),
        (lambda s: s.save_sparse_graph_node_label("sp", [2, 1, 2], [1, 1, 1]),
         r"'sp'.*index 2 is given twice.*position 2"),
        (lambda s: s.save_sparse_graph_node_label("sp", [0, 1], [1]), "2 GRAPH_NODE indices but 1"),
        (lambda s: s.save_sparse_graph_node_label("sp", [0], [1], defaultLabel=0.5), "defaultLabel"),
        (lambda s: s.save_graph_node_label("d", [0, 0, 1, 1], ["a", "b", "c", "d"]),
         "code 0 has two descriptions"),
        (lambda s: s.save_graph_node_label("d", [0, 0, 1, 1], ["a"]), "1 GRAPH_NODE descriptions"),
        (lambda s: s.save_graph_node_label("d", [0, 0, 1, 1], {"x": "a"}), "expected an int code"),
        (lambda s: s.save_graph_label("g", [1, 2], None), "one int code"),
    ],
)  # fmt: skip
def test_bad_labels_are_refused_and_nothing_is_written(call: Callable, message: str) -> None:
    store = MemoryStorage()
    labels = LabelStorage(store, total_faces=4, total_edges=5)
    with pytest.raises(InvalidValueError, match=message):
        call(labels)
    assert store.get_keys() == []


def test_bad_task_names_and_types() -> None:
    labels = LabelStorage(MemoryStorage(), total_faces=2)
    for task in ["", "../x", "/abs", "a/b", "nul\x00", 3]:
        with pytest.raises(InvalidKeyError):
            labels.save_graph_node_label(task, [0, 1])  # type: ignore[arg-type]
    with pytest.raises(UnsupportedTypeError, match="'t'"):
        labels.save_graph_node_label("t", "01")
    with pytest.raises(UnsupportedTypeError, match="single str"):
        labels.save_graph_node_label("t", [0, 1], "one text")  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="total_faces"):
        LabelStorage(MemoryStorage(), total_faces=-1)
    with pytest.raises(InvalidValueError, match="needs total_edges"):
        labels.save_sparse_graph_edge_label("t", [0], [1])
    with pytest.raises(KeyNotFoundError, match="no GRAPH_EDGE labels for task 'nope'"):
        labels.load_graph_edges_labels("nope")
    with pytest.raises(InvalidValueError, match="entity must be one of"):
        labels.list_ml_tasks("faces")


def test_unknown_length_is_not_checked_and_archive_is_read_only(tmp_path: Path) -> None:
    store = OptStorage(tmp_path / "p.zarr")
    LabelStorage(store).save_graph_node_label("t", np.array([4, 5, 6], dtype=np.uint8))
    store.compress_store()
    store.close()
    reopened = OptStorage(tmp_path / "p.zarr")
    labels = LabelStorage(reopened)
    assert labels.load_graph_nodes_labels("t").codes.tolist() == [4, 5, 6]
    with pytest.raises(ReadOnlyStorageError):
        labels.save_graph_label("g", 1)
    reopened.close()
