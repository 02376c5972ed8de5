"""`LabelStorage`: graph, node (face) and edge labels of one CAD part, per ML task (seed 000).

Labels are plain arrays in a `DataStorage` (an `OptStorage` by default), so a dataset merge
concatenates them like any other group: ``face_labels/<task>`` holds one code per face,
``edge_labels/<task>`` one per edge and ``file_label/<task>`` one code for the whole part.
The text of each code lives beside them in ``label_descriptions/<entity>/<task>``, and what a
sparse save was given in ``label_sparse/<entity>/<task>``. docs/formats/labels.md is the
full layout.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from holdall._core.closing import Closing
from holdall._core.keys import validate_name
from holdall.errors import (
    ClosedStorageError,
    InvalidValueError,
    KeyNotFoundError,
    UnsupportedTypeError,
)
from holdall.storage import DataStorage, OptStorage

__all__ = ["LabelSet", "LabelStorage", "SparseLabels"]

#: What callers may pass as label descriptions: code -> text, or one text per label.
Descriptions = Mapping[int, str] | Sequence[str] | None

DESCRIPTIONS_GROUP = "label_descriptions"
SPARSE_GROUP = "label_sparse"


class LabelSet(NamedTuple):
    """Label codes with the text of each code (what the ``load_graph_*`` methods return)."""

    #: One int64 code per face or edge (shape ``(n,)``), or per part (shape ``(1,)``).
    codes: np.ndarray[Any, np.dtype[np.int64]]
    #: Text of each code that has one, by code.
    descriptions: dict[int, str]


class SparseLabels(NamedTuple):
    """What a sparse save was given: the labelled indices, their codes and the default."""

    #: Indices of the labelled faces or edges, int64, in the order they were saved.
    indices: np.ndarray[Any, np.dtype[np.int64]]
    #: The code of each index, int64.
    labels: np.ndarray[Any, np.dtype[np.int64]]
    #: The code every other face or edge received.
    default_label: int
    #: Text of each code that has one, by code.
    descriptions: dict[int, str]


class LabelStorage(Closing):
    """Encode and decode the labels of one part, several ML tasks side by side.

    Parameters
    ----------
    path_for_storing
        Where the labels go: a path (opened as an `OptStorage`) or an open `DataStorage`
        (any backend; it stays the caller's to close).
    total_faces, total_edges
        Number of faces and edges of the part. Node and edge labels must have exactly this
        length; 0 means unknown: dense saves are not length-checked, and sparse saves, which
        must know the length to fill in the default, raise.

    Notes
    -----
    Every save checks its input before writing anything, so a rejected call leaves what was
    stored untouched. Errors are `InvalidValueError` (also a `ValueError`) naming the task
    and the offending index; missing tasks raise `KeyNotFoundError` (also a `KeyError`).
    """

    EDGE_CADENTITY = "edge_labels"
    EDGE_ENTITY = "GRAPH_EDGE"
    GRAPH_CADENTITY = "file_label"
    GRAPH_ENTITY = "GRAPH_ENTITY"
    NODE_CADENTITY = "face_labels"
    NODE_ENTITY = "GRAPH_NODE"

    def __init__(
        self,
        path_for_storing: str | os.PathLike[str] | DataStorage,
        total_faces: int = 0,
        total_edges: int = 0,
    ) -> None:
        for what, total in (("total_faces", total_faces), ("total_edges", total_edges)):
            if isinstance(total, bool) or not isinstance(total, int | np.integer) or total < 0:
                raise InvalidValueError(
                    f"{what} must be a non-negative int, got {total!r}", expected="int >= 0",
                    got=total,
                )  # fmt: skip
        self.total_faces = int(total_faces)
        self.total_edges = int(total_edges)
        if isinstance(path_for_storing, DataStorage):
            self._storage = path_for_storing
            self._owns_storage = False
        else:
            self._storage = OptStorage(path_for_storing)
            self._owns_storage = True

    # ----------------------------------------------------------------- lifecycle

    def get_storage(self) -> DataStorage:
        """The `DataStorage` the labels are written to."""
        return self._storage

    def close(self) -> None:
        """Close the storage if this object opened it (from a path); idempotent."""
        if self._owns_storage:
            self._storage.close()

    def _check_open(self) -> None:
        if self._storage.closed:
            raise ClosedStorageError(f"{self._storage!r} is closed; open a new LabelStorage")

    # ----------------------------------------------------------------- saving

    def save_graph_label(
        self, mlTask: str, graphLabel: int, graphLabelDescription: str | Descriptions = None
    ) -> None:
        """Save the label code of the whole part for `mlTask`, and the text of that code."""
        task = _task(mlTask)
        code = _codes(task, self.GRAPH_ENTITY, [graphLabel] if _is_int(graphLabel) else graphLabel)
        if code.shape != (1,):
            raise InvalidValueError(
                f"task {task!r}: a graph label is one int code, got {graphLabel!r}",
                key=task, expected="int", got=graphLabel,
            )  # fmt: skip
        if isinstance(graphLabelDescription, str):
            graphLabelDescription = {int(code[0]): graphLabelDescription}
        descriptions = _descriptions(task, self.GRAPH_ENTITY, code, graphLabelDescription)
        self._write(self.GRAPH_CADENTITY, self.GRAPH_ENTITY, task, code, descriptions, None)

    def save_graph_node_label(
        self, mlTask: str, faceLabels: Any, faceLabelDescriptions: Descriptions = None
    ) -> None:
        """Save one label code per face for `mlTask` (length `total_faces`), with their texts."""
        self._save_dense(self.NODE_CADENTITY, self.NODE_ENTITY, self.total_faces, "total_faces",
                         mlTask, faceLabels, faceLabelDescriptions)  # fmt: skip

    def save_graph_edge_label(
        self, mlTask: str, edgeLabels: Any, edgeLabelDescriptions: Descriptions = None
    ) -> None:
        """Save one label code per edge for `mlTask` (length `total_edges`), with their texts."""
        self._save_dense(self.EDGE_CADENTITY, self.EDGE_ENTITY, self.total_edges, "total_edges",
                         mlTask, edgeLabels, edgeLabelDescriptions)  # fmt: skip

    def save_sparse_graph_node_label(
        self,
        mlTask: str,
        faceIndices: Any,
        faceLabels: Any,
        defaultLabel: int = 0,
        faceLabelDescriptions: Descriptions = None,
    ) -> None:
        """Save codes for the faces at `faceIndices`; every other face gets `defaultLabel`."""
        self._save_sparse(self.NODE_CADENTITY, self.NODE_ENTITY, self.total_faces, "total_faces",
                          mlTask, faceIndices, faceLabels, defaultLabel, faceLabelDescriptions)  # fmt: skip

    def save_sparse_graph_edge_label(
        self,
        mlTask: str,
        edgeIndices: Any,
        edgeLabels: Any,
        defaultLabel: int = 0,
        edgeLabelDescriptions: Descriptions = None,
    ) -> None:
        """Save codes for the edges at `edgeIndices`; every other edge gets `defaultLabel`."""
        self._save_sparse(self.EDGE_CADENTITY, self.EDGE_ENTITY, self.total_edges, "total_edges",
                          mlTask, edgeIndices, edgeLabels, defaultLabel, edgeLabelDescriptions)  # fmt: skip

    def _save_dense(
        self, group: str, entity: str, total: int, total_name: str, mlTask: str,
        labels: Any, descriptions: Descriptions,
    ) -> None:  # fmt: skip
        task = _task(mlTask)
        codes = _codes(task, entity, labels)
        if total and len(codes) != total:
            raise InvalidValueError(
                f"task {task!r}: {entity} labels must have {total_name}={total} codes, "
                f"got {len(codes)}",
                key=task, expected=total, got=len(codes),
            )  # fmt: skip
        texts = _descriptions(task, entity, codes, descriptions)
        self._write(group, entity, task, codes, texts, None)

    def _save_sparse(
        self, group: str, entity: str, total: int, total_name: str, mlTask: str,
        indices: Any, labels: Any, default: int, descriptions: Descriptions,
    ) -> None:  # fmt: skip
        task = _task(mlTask)
        if not total:
            raise InvalidValueError(
                f"task {task!r}: a sparse {entity} save needs {total_name} to fill in the "
                f"default label; pass {total_name}= to LabelStorage",
                key=task, expected=f"{total_name} > 0", got=total,
            )  # fmt: skip
        where = _codes(task, entity, indices, what="indices")
        codes = _codes(task, entity, labels)
        if len(where) != len(codes):
            raise InvalidValueError(
                f"task {task!r}: {len(where)} {entity} indices but {len(codes)} labels; "
                "give one label per index",
                key=task, expected=len(where), got=len(codes),
            )  # fmt: skip
        outside = np.flatnonzero((where < 0) | (where >= total))
        if outside.size:
            bad = int(where[outside[0]])
            raise InvalidValueError(
                f"task {task!r}: {entity} index {bad} (position {int(outside[0])}) is outside "
                f"0..{total - 1} ({total_name}={total})",
                key=task, expected=f"0 <= index < {total}", got=bad,
            )  # fmt: skip
        seen = np.zeros(total, dtype=bool)
        for position, index in enumerate(where.tolist()):
            if seen[index]:
                raise InvalidValueError(
                    f"task {task!r}: {entity} index {index} is given twice (again at position "
                    f"{position}); give each index once",
                    key=task, expected="unique indices", got=index,
                )  # fmt: skip
            seen[index] = True
        if not _is_int(default):
            raise InvalidValueError(
                f"task {task!r}: defaultLabel must be an int code, got {default!r}",
                key=task, expected="int", got=default,
            )  # fmt: skip
        dense = np.full(total, int(default), dtype=np.int64)
        dense[where] = codes
        texts = _descriptions(task, entity, codes, descriptions)
        sparse = {"indices": where, "labels": codes, "default_label": np.int64(default)}
        self._write(group, entity, task, dense, texts, sparse)

    def _write(
        self, group: str, entity: str, task: str, codes: np.ndarray[Any, Any],
        descriptions: dict[int, str], sparse: dict[str, Any] | None,
    ) -> None:  # fmt: skip
        storage = self._storage
        storage.save_data(f"{group}/{task}", codes)
        ordered = sorted(descriptions)
        storage.save_data(
            f"{DESCRIPTIONS_GROUP}/{entity}/{task}",
            {"codes": np.array(ordered, dtype=np.int64),
             "texts": np.array([descriptions[c] for c in ordered], dtype=np.str_)},
        )  # fmt: skip
        sparse_key = f"{SPARSE_GROUP}/{entity}/{task}"
        if sparse is not None:
            storage.save_data(sparse_key, sparse)
        elif sparse_key in storage:
            storage.delete_data(sparse_key)

    # ----------------------------------------------------------------- loading

    def load_graph_label(self, mlTask: str) -> tuple[int, str | None]:
        """The code of the whole part for `mlTask` and its text (None when it has none)."""
        codes, texts = self._load(self.GRAPH_CADENTITY, self.GRAPH_ENTITY, mlTask)
        code = int(codes[0])
        return code, texts.get(code)

    def load_graph_nodes_labels(self, mlTask: str) -> LabelSet:
        """One code per face for `mlTask`, and the text of each code."""
        return self._load(self.NODE_CADENTITY, self.NODE_ENTITY, mlTask)

    def load_graph_edges_labels(self, mlTask: str) -> LabelSet:
        """One code per edge for `mlTask`, and the text of each code."""
        return self._load(self.EDGE_CADENTITY, self.EDGE_ENTITY, mlTask)

    def load_sparse_graph_node_label(self, mlTask: str) -> SparseLabels:
        """The indices, codes and default given to `save_sparse_graph_node_label`."""
        return self._load_sparse(self.NODE_CADENTITY, self.NODE_ENTITY, mlTask)

    def load_sparse_graph_edge_label(self, mlTask: str) -> SparseLabels:
        """The indices, codes and default given to `save_sparse_graph_edge_label`."""
        return self._load_sparse(self.EDGE_CADENTITY, self.EDGE_ENTITY, mlTask)

    def list_ml_tasks(self, entity: str | None = None) -> list[str]:
        """The tasks with labels, sorted; only those of one entity (``NODE_ENTITY``...) if given."""
        groups = {self.GRAPH_ENTITY: self.GRAPH_CADENTITY, self.NODE_ENTITY: self.NODE_CADENTITY,
                  self.EDGE_ENTITY: self.EDGE_CADENTITY}  # fmt: skip
        if entity is not None and entity not in groups:
            raise InvalidValueError(
                f"entity must be one of {sorted(groups)}, got {entity!r}",
                expected=sorted(groups), got=entity,
            )  # fmt: skip
        tasks: set[str] = set()
        for name, group in groups.items():
            if (entity is None or entity == name) and group in self._storage:
                tasks.update(self._storage.load_data(group))
        return sorted(tasks)

    def _load(self, group: str, entity: str, mlTask: str) -> LabelSet:
        task = _task(mlTask)
        key = f"{group}/{task}"
        if key not in self._storage:
            raise KeyNotFoundError(
                f"no {entity} labels for task {task!r}; tasks with labels: "
                f"{self.list_ml_tasks() or 'none'}",
                key=key,
            )
        codes = np.asarray(self._storage.load_data(key), dtype=np.int64)
        return LabelSet(codes, self._load_descriptions(entity, task))

    def _load_descriptions(self, entity: str, task: str) -> dict[int, str]:
        key = f"{DESCRIPTIONS_GROUP}/{entity}/{task}"
        if key not in self._storage:
            return {}
        table = self._storage.load_data(key)
        return {int(c): str(t) for c, t in zip(table["codes"], table["texts"], strict=True)}

    def _load_sparse(self, group: str, entity: str, mlTask: str) -> SparseLabels:
        task = _task(mlTask)
        key = f"{SPARSE_GROUP}/{entity}/{task}"
        if key not in self._storage:
            dense = f"{group}/{task}" in self._storage
            raise KeyNotFoundError(
                f"no sparse {entity} labels for task {task!r}"
                + ("; its labels were saved dense, load them with load_graph_*_labels"
                   if dense else ""),
                key=key,
            )  # fmt: skip
        record = self._storage.load_data(key)
        return SparseLabels(
            np.asarray(record["indices"], dtype=np.int64),
            np.asarray(record["labels"], dtype=np.int64),
            int(record["default_label"]),
            self._load_descriptions(entity, task),
        )


def _task(mlTask: object) -> str:
    return validate_name(mlTask, what="mlTask")


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _codes(
    task: str, entity: str, values: Any, *, what: str = "labels"
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """`values` as a 1-D int64 array, or an error naming the task and the first bad item."""
    if isinstance(values, str | bytes | Mapping):
        raise UnsupportedTypeError(
            f"task {task!r}: {entity} {what} must be a sequence or array of int codes, "
            f"got {type(values).__name__}",
            key=task, got=values,
        )  # fmt: skip
    array = np.asarray(values)
    if array.ndim != 1:
        raise InvalidValueError(
            f"task {task!r}: {entity} {what} must be 1-D, got shape {array.shape}",
            key=task, expected="1-D", got=array.shape,
        )  # fmt: skip
    if array.size and array.dtype.kind not in "iu":
        if isinstance(values, np.ndarray):
            raise InvalidValueError(
                f"task {task!r}: {entity} {what} have dtype {array.dtype}; "
                "label codes must be an integer array",
                key=task, expected="integer dtype", got=str(array.dtype),
            )  # fmt: skip
        for index, item in enumerate(values):
            if not _is_int(item):
                raise InvalidValueError(
                    f"task {task!r}: {entity} {what}[{index}] is {item!r}, not an int code",
                    key=task, expected="int", got=item,
                )  # fmt: skip
        array = array.astype(np.int64)
    if array.dtype.kind == "u" and array.size and int(array.max()) > np.iinfo(np.int64).max:
        index = int(np.argmax(array))
        raise InvalidValueError(
            f"task {task!r}: {entity} {what}[{index}] = {array[index]} does not fit in int64",
            key=task, expected="int64", got=int(array[index]),
        )  # fmt: skip
    return array.astype(np.int64, copy=True)


def _descriptions(
    task: str, entity: str, codes: np.ndarray[Any, Any], given: Descriptions
) -> dict[int, str]:
    """Normalize `given` to code -> text: a mapping, or one text per code of `codes`."""
    if given is None:
        return {}
    if isinstance(given, Mapping):
        pairs = list(given.items())
    elif isinstance(given, str | bytes):
        raise UnsupportedTypeError(
            f"task {task!r}: {entity} descriptions must map codes to texts or give one text "
            f"per label, got a single {type(given).__name__}",
            key=task, got=given,
        )  # fmt: skip
    else:
        texts = list(given)
        if len(texts) != len(codes):
            raise InvalidValueError(
                f"task {task!r}: {len(texts)} {entity} descriptions for {len(codes)} labels; "
                "give one text per label or a mapping code -> text",
                key=task, expected=len(codes), got=len(texts),
            )  # fmt: skip
        pairs = list(zip(codes.tolist(), texts, strict=True))
    result: dict[int, str] = {}
    for index, (code, text) in enumerate(pairs):
        if not _is_int(code) or not isinstance(text, str):
            raise InvalidValueError(
                f"task {task!r}: {entity} description {index} is {code!r}: {text!r}; "
                "expected an int code and a str",
                key=task, expected="int -> str", got=(code, text),
            )  # fmt: skip
        if "\x00" in text:
            raise InvalidValueError(
                f"task {task!r}: {entity} description of code {code} contains NUL",
                key=task, got=text,
            )  # fmt: skip
        if result.get(int(code), text) != text:
            raise InvalidValueError(
                f"task {task!r}: {entity} code {code} has two descriptions, "
                f"{result[int(code)]!r} and {text!r} (at label {index})",
                key=task, expected="one text per code", got=(result[int(code)], text),
            )  # fmt: skip
        result[int(code)] = text
    return result
