"""`MetricStorage`: training metrics buffered in memory and written in batches (seed 000).

Four kinds of metric, each name of one kind:

- trend: one value per epoch (loss, accuracy, learning rate);
- category: one value per category per epoch (per-class accuracy or IoU);
- matrix: one 2-D array per epoch (confusion or correlation matrix);
- predictions: any storable value per data id.

A push appends to an in-memory buffer (a few microseconds); `flush` writes each
metric's buffered points as one new *segment* (a few arrays) and then the index, so logging
every step costs no I/O. `flush` runs by itself once `flush_every` points or `flush_bytes`
bytes are buffered, on `close`, when the object is garbage collected and at interpreter exit.
A crash (``SIGKILL``) loses what was pushed since the last flush and nothing before it.

Key layout in the store (docs/ml.md has the full description)::

    metrics/trend/<name>/<segment>/{epoch,value}
    metrics/category/<name>/<segment>/{epoch,categories,values}
    metrics/matrix/<name>/<segment>/{epoch,values}
    metrics/predictions/<name>/<data id>
    metadata "metrics_index": {kind: {<name>: {"name": ..., "segments": n | "ids": {...}}}}

``<name>`` is the metric name percent-encoded into one key segment. Within one metric the
latest push for an epoch wins, so a training resumed from a checkpoint overwrites the epochs
it repeats.
"""

from __future__ import annotations

import copy
import math
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast
from urllib.parse import quote

import numpy as np

from holdall._core.closing import Closing, close_at_exit, close_quietly, forget_at_exit
from holdall._core.values import encode_value
from holdall.errors import (
    ClosedStorageError,
    CorruptedFileError,
    EpochNotFoundError,
    InvalidKeyError,
    InvalidValueError,
    KeyNotFoundError,
    ReadOnlyStorageError,
    UnsupportedTypeError,
)
from holdall.storage import DataStorage

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["INDEX_METADATA_KEY", "METRICS_GROUP", "MetricKind", "MetricStorage", "Trend"]

MetricKind = Literal["trend", "category", "matrix", "predictions"]
KINDS: tuple[MetricKind, ...] = ("trend", "category", "matrix", "predictions")
#: Data group under which every metric is stored.
METRICS_GROUP = "metrics"
#: Metadata key of the index of metrics, segments and data ids.
INDEX_METADATA_KEY = "metrics_index"
#: Longest encoded metric name or data id, in bytes (a file name must stay under 255).
MAX_NAME_BYTES = 200
#: Segments whose arrays are kept in memory after a pull (matrices pulled one epoch at a time).
_CACHED_SEGMENTS = 4

Array = np.ndarray[Any, Any]


class Trend(NamedTuple):
    """A trend metric: epochs in increasing order and the value at each."""

    #: Epochs, int64, sorted, each once.
    epochs: np.ndarray[Any, np.dtype[np.int64]]
    #: The latest value pushed for each epoch, float64.
    values: np.ndarray[Any, np.dtype[np.float64]]


def encode_name(name: object, *, what: str = "metric name") -> str:
    """`name` as one key segment (percent-encoded), or `InvalidKeyError` saying why not."""
    if not isinstance(name, str):
        raise InvalidKeyError(f"{what} must be a str, got {type(name).__name__} {name!r}", key=name)
    if name == "" or "\x00" in name:
        raise InvalidKeyError(f"{what} {name!r} must be non-empty and without NUL", key=name)
    encoded = quote(name, safe="").replace(".", "%2E")
    if len(encoded) > MAX_NAME_BYTES:
        raise InvalidKeyError(
            f"{what} {name[:40]!r}... is {len(encoded)} bytes once encoded, more than "
            f"{MAX_NAME_BYTES}; use a shorter name",
            key=name,
        )
    return encoded


def _data_id_key(data_id: object) -> str:
    if isinstance(data_id, int | np.integer) and not isinstance(data_id, bool | np.bool_):
        return f"i{int(data_id)}"
    if isinstance(data_id, str):
        return "s" + encode_name(data_id, what="data_id")
    raise InvalidKeyError(
        f"data_id must be an int or a str, got {type(data_id).__name__} {data_id!r}", key=data_id
    )


def _epoch(name: str, epoch: object) -> int:
    if isinstance(epoch, int | np.integer) and not isinstance(epoch, bool | np.bool_):
        return int(epoch)
    raise InvalidValueError(
        f"metric {name!r}: epoch must be an int, got {type(epoch).__name__} {epoch!r}",
        key=name, expected="int", got=epoch,
    )  # fmt: skip


class _Buffered:
    """What was pushed since the last flush, per metric name (one dict per kind)."""

    def __init__(self) -> None:
        self.trend: dict[str, tuple[list[int], list[float]]] = {}
        # name -> epoch -> (categories, values) / matrix / (data id -> result)
        self.category: dict[str, dict[int, tuple[Array, Array]]] = {}
        self.matrix: dict[str, dict[int, Array]] = {}
        self.predictions: dict[str, dict[str, tuple[int | str, Any]]] = {}

    def empty(self) -> bool:
        return not (self.trend or self.category or self.matrix or self.predictions)


class MetricStorage(Closing):
    """Training metrics in any `DataStorage`, buffered and written in batches.

    Parameters
    ----------
    store
        Where the metrics go. `MetricStorage` takes it over: `close` flushes and then closes
        it. An existing store's metrics are read back (a read-only archive can be pulled and
        plotted, not pushed to).
    flush_every
        Flush once this many points (trend values, category rows, matrices, predictions) are
        buffered.
    flush_bytes
        Flush once the buffered arrays reach this many bytes (bounds memory for big matrices).

    Raises
    ------
    InvalidValueError
        A bad epoch, value, matrix or category list (named with the metric and epoch), or NaN
        on a store that refuses NaN (open ``OptStorage(..., allow_nan=True)`` to keep them).
    KeyNotFoundError
        A pull of a name that was never pushed; `EpochNotFoundError` (also a `ValueError`) for
        an epoch the metric does not have.
    """

    def __init__(
        self, store: DataStorage, *, flush_every: int = 100_000, flush_bytes: int = 64 << 20
    ) -> None:
        if not isinstance(store, DataStorage):
            raise UnsupportedTypeError(
                f"MetricStorage needs a DataStorage, got {type(store).__name__}", got=store
            )
        for what, limit in (("flush_every", flush_every), ("flush_bytes", flush_bytes)):
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise InvalidValueError(f"{what} must be a positive int, got {limit!r}", got=limit)
        self._store = store
        self._flush_every = flush_every
        self._flush_bytes = flush_bytes
        self._lock = threading.RLock()
        self._closed = True  # until the index is read: a failed __init__ must not close the store
        self._buffer = _Buffered()
        self._pending = 0
        self._pending_bytes = 0
        self._kinds: dict[str, MetricKind] = {}  # metric name -> its kind
        self._encoded: dict[str, str] = {}
        self._index: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        self._labels: dict[str, list[str]] = {}  # matrix name -> class labels
        self._epochs_of: dict[tuple[str, str], list[Array]] = {}  # (kind, name) -> per segment
        self._segment_cache: dict[str, dict[str, Any]] = {}
        self._load_index()
        self._closed = False
        # This object closes the store (after a last flush), so the store itself must not be
        # closed first at interpreter exit.
        forget_at_exit(store)
        close_at_exit(self)

    def _load_index(self) -> None:
        try:
            index = self._store.load_metadata(INDEX_METADATA_KEY)
        except KeyNotFoundError:
            return
        if not isinstance(index, dict) or not all(isinstance(v, dict) for v in index.values()):
            raise CorruptedFileError(
                f"metadata {INDEX_METADATA_KEY!r} of {self._store!r} is not a metrics index "
                f"(expected a dict of dicts, found {type(index).__name__})"
            )
        for kind in KINDS:
            for encoded, entry in index.get(kind, {}).items():
                field = "ids" if kind == "predictions" else "segments"
                if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
                        and field in entry and encode_name(entry["name"]) == encoded):  # fmt: skip
                    raise CorruptedFileError(
                        f"metadata {INDEX_METADATA_KEY!r} of {self._store!r}: the {kind} entry "
                        f"{encoded!r} is {entry!r}, expected {{'name': ..., {field!r}: ...}}"
                    )
                self._index[kind][encoded] = entry
                self._kinds[entry["name"]] = kind
                self._encoded[entry["name"]] = encoded
                if "labels" in entry:
                    self._labels[entry["name"]] = list(entry["labels"])

    # ----------------------------------------------------------------- lifecycle

    def get_storage(self) -> DataStorage:
        """The `DataStorage` the metrics are written to."""
        return self._store

    @property
    def closed(self) -> bool:
        """True once `close` has run."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedStorageError(f"{self!r} is closed; open a new MetricStorage")

    def __repr__(self) -> str:
        return f"MetricStorage({self._store!r})"

    def close(self) -> None:
        """Flush what is buffered, then close the store. Idempotent."""
        with self._lock:
            if self._closed:
                return
            try:
                if not self._store.closed:
                    self.flush()
                    self._store.close()
            finally:
                self._closed = True
                forget_at_exit(self)

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            close_quietly(self, when="at garbage collection")

    # ----------------------------------------------------------------- pushes

    def _name(self, name: object, kind: MetricKind) -> str:
        """Check `name` once per metric (cached) and that it keeps its kind."""
        self._check_open()
        if self._store.read_only:
            raise ReadOnlyStorageError(f"cannot push metric {name!r}: {self._store!r} is read-only")
        if isinstance(name, str) and self._kinds.get(name) == kind:
            return name
        encoded = encode_name(name)
        name = cast(str, name)  # encode_name checked it
        known = self._kinds.get(name)
        if known is not None and known != kind:
            raise InvalidValueError(
                f"metric {name!r} is a {known} metric; it cannot also hold {kind} values "
                "(use another name)",
                key=name, expected=known, got=kind,
            )  # fmt: skip
        self._encoded[name] = encoded  # the kind is recorded by the first push that succeeds
        return name

    def _added(self, points: int, nbytes: int) -> None:
        self._pending += points
        self._pending_bytes += nbytes
        if self._pending >= self._flush_every or self._pending_bytes >= self._flush_bytes:
            self.flush()

    def push_trend_metric(self, name: str, epoch: int, value: float) -> None:
        """Record `value` of trend metric `name` at `epoch` (buffered; see `flush`)."""
        with self._lock:
            if self._closed:
                self._check_open()
            buffer = self._buffer.trend.get(name) if type(name) is str else None
            if buffer is None:
                name = self._name(name, "trend")
            if type(epoch) is not int:
                epoch = _epoch(name, epoch)
            if type(value) is not float:
                value = self._float(name, epoch, value)
            if value != value and self._store.rejects_nan:
                self._nan(name, epoch)
            if buffer is None:
                buffer = self._buffer.trend[name] = ([], [])
                self._kinds[name] = "trend"
            buffer[0].append(epoch)
            buffer[1].append(value)
            self._pending += 1
            if self._pending >= self._flush_every:
                self.flush()

    def push_category_metric(
        self, name: str, epoch: int, categories: Sequence[int | str] | Array, values: Any
    ) -> None:
        """Record one value per category of metric `name` at `epoch` (per-class bars)."""
        with self._lock:
            self._check_open()
            name = self._name(name, "category")
            epoch = _epoch(name, epoch)
            labels = np.asarray(categories)
            numbers = self._floats(name, epoch, values)
            if labels.ndim != 1 or labels.dtype.kind not in "iuU" or labels.size == 0:
                raise InvalidValueError(
                    f"metric {name!r} epoch {epoch}: categories must be a non-empty list of "
                    f"ints or strs, got {categories!r}",
                    key=name, expected="1-D ints or strs", got=categories,
                )  # fmt: skip
            if numbers.shape != labels.shape:
                raise InvalidValueError(
                    f"metric {name!r} epoch {epoch}: {labels.size} categories but "
                    f"{numbers.size} values; give one value per category",
                    key=name, expected=labels.size, got=numbers.size,
                )  # fmt: skip
            if len(set(labels.tolist())) != labels.size:
                raise InvalidValueError(
                    f"metric {name!r} epoch {epoch}: categories repeat ({labels.tolist()}); "
                    "give each category once",
                    key=name, expected="unique categories", got=labels.tolist(),
                )  # fmt: skip
            if labels.dtype.kind == "u":
                labels = labels.astype(np.int64)
            self._kinds[name] = "category"
            per_epoch = self._buffer.category.setdefault(name, {})
            per_epoch[epoch] = (labels.copy(), numbers)
            self._added(1, numbers.nbytes + labels.nbytes)

    def push_matrix_metric(
        self, name: str, epoch: int, matrix: Any, *, class_labels: Sequence[str] | None = None
    ) -> None:
        """Record the 2-D array `matrix` of metric `name` at `epoch` (confusion matrix...).

        `class_labels` (an addition to the seed) names the rows and columns; plots and the
        report show them. The latest labels given for a metric are kept.
        """
        with self._lock:
            self._check_open()
            name = self._name(name, "matrix")
            epoch = _epoch(name, epoch)
            array = np.array(matrix, copy=True)
            if array.ndim != 2 or array.dtype.kind not in "biuf" or 0 in array.shape:
                raise InvalidValueError(
                    f"metric {name!r} epoch {epoch}: a matrix metric is a non-empty 2-D "
                    f"numeric array, got shape {array.shape} dtype {array.dtype}",
                    key=name, expected="2-D numeric", got=(array.shape, str(array.dtype)),
                )  # fmt: skip
            if array.dtype.kind == "b":
                array = array.astype(np.int64)
            if array.dtype.kind == "f" and self._store.rejects_nan and np.isnan(array).any():
                self._nan(name, epoch)
            if class_labels is not None:
                labels = [str(label) for label in class_labels]
                if len(labels) < max(array.shape) or len(set(labels)) != len(labels):
                    raise InvalidValueError(
                        f"metric {name!r} epoch {epoch}: {len(labels)} class labels for a "
                        f"{array.shape[0]}x{array.shape[1]} matrix; give one distinct label "
                        "per row and column",
                        key=name, expected=max(array.shape), got=labels,
                    )  # fmt: skip
                self._labels[name] = labels
            self._kinds[name] = "matrix"
            self._buffer.matrix.setdefault(name, {})[epoch] = array
            self._added(1, array.nbytes)

    def push_predictions(self, name: str, data_id: int | str, result: Any) -> None:
        """Keep `result` (an array, or any storable value) of `name` for `data_id`."""
        with self._lock:
            self._check_open()
            name = self._name(name, "predictions")
            id_key = _data_id_key(data_id)
            # Checked now, so that a bad value fails here and not in a later flush.
            encode_value(
                result, key=f"{name}/{data_id}", reject_nan=self._store.rejects_nan, copy=False
            )
            kept = result.copy() if isinstance(result, np.ndarray) else copy.deepcopy(result)
            self._kinds[name] = "predictions"
            self._buffer.predictions.setdefault(name, {})[id_key] = (data_id, kept)
            self._added(1, int(getattr(result, "nbytes", 0)))

    def _float(self, name: str, epoch: int, value: object) -> float:
        if isinstance(value, int | float | np.integer | np.floating) and not isinstance(
            value, bool | np.bool_
        ):
            return float(value)
        raise InvalidValueError(
            f"metric {name!r} epoch {epoch}: value must be a real number, got "
            f"{type(value).__name__} {value!r}",
            key=name, expected="float", got=value,
        )  # fmt: skip

    def _floats(self, name: str, epoch: int, values: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
        array = np.asarray(values)
        if array.ndim != 1 or array.dtype.kind not in "iuf":
            raise InvalidValueError(
                f"metric {name!r} epoch {epoch}: values must be a 1-D list of numbers, got "
                f"shape {array.shape} dtype {array.dtype}",
                key=name, expected="1-D numbers", got=values,
            )  # fmt: skip
        result = array.astype(np.float64, copy=True)
        if self._store.rejects_nan and np.isnan(result).any():
            self._nan(name, epoch)
        return result

    def _nan(self, name: str, epoch: int) -> None:
        raise InvalidValueError(
            f"metric {name!r} epoch {epoch}: NaN, which {self._store!r} refuses; open the store "
            "with OptStorage(..., allow_nan=True) to keep NaN values",
            key=name, expected="a number", got=math.nan,
        )  # fmt: skip

    # ----------------------------------------------------------------- flush

    def flush(self) -> None:
        """Write everything buffered to the store, then the index, then flush the store.

        One new segment per metric (per shape or category list for the stacked kinds). If a
        write fails, the points stay buffered and the error is raised.
        """
        with self._lock:
            self._check_open()
            if self._buffer.empty():
                return
            buffered, self._buffer = self._buffer, _Buffered()
            index = {kind: {k: dict(v) for k, v in entries.items()}
                     for kind, entries in self._index.items()}  # fmt: skip
            try:
                self._write(buffered, index)
                self._store.save_metadata(INDEX_METADATA_KEY, index)
                flush = getattr(self._store, "flush", None)
                if callable(flush):
                    flush()
            except BaseException:
                self._restore(buffered)
                raise
            self._index = index
            self._pending = 0
            self._pending_bytes = 0

    def _restore(self, buffered: _Buffered) -> None:
        """Put points that failed to write back in front of anything pushed since."""
        for name, (epochs, values) in self._buffer.trend.items():
            old = buffered.trend.setdefault(name, ([], []))
            old[0].extend(epochs)
            old[1].extend(values)
        for kind in ("category", "matrix", "predictions"):
            for name, entries in getattr(self._buffer, kind).items():
                getattr(buffered, kind).setdefault(name, {}).update(entries)
        self._buffer = buffered

    def _new_segment(self, index: dict[str, dict[str, Any]], kind: MetricKind, name: str) -> str:
        encoded = self._encoded[name]
        entry = index[kind].setdefault(encoded, {"name": name, "segments": 0})
        segment = f"{entry['segments']:06d}"
        entry["segments"] += 1
        return f"{METRICS_GROUP}/{kind}/{encoded}/{segment}"

    def _write(self, buffered: _Buffered, index: dict[str, dict[str, Any]]) -> None:
        save = self._store.save_data
        for name, (epochs, values) in buffered.trend.items():
            save(self._new_segment(index, "trend", name),
                 {"epoch": np.array(epochs, dtype=np.int64),
                  "value": np.array(values, dtype=np.float64)})  # fmt: skip
        for name, per_epoch in buffered.category.items():
            by_labels: dict[tuple[Any, ...], list[int]] = {}
            for epoch, (labels, _values) in per_epoch.items():
                by_labels.setdefault((labels.dtype.str, *labels.tolist()), []).append(epoch)
            for epochs in by_labels.values():
                save(self._new_segment(index, "category", name),
                     {"epoch": np.array(epochs, dtype=np.int64),
                      "categories": per_epoch[epochs[0]][0],
                      "values": np.stack([per_epoch[e][1] for e in epochs])})  # fmt: skip
        for name, matrices in buffered.matrix.items():
            by_shape: dict[tuple[Any, ...], list[int]] = {}
            for epoch, matrix in matrices.items():
                by_shape.setdefault((matrix.shape, matrix.dtype.str), []).append(epoch)
            for epochs in by_shape.values():
                save(self._new_segment(index, "matrix", name),
                     {"epoch": np.array(epochs, dtype=np.int64),
                      "values": np.stack([matrices[e] for e in epochs])})  # fmt: skip
        for name in buffered.matrix:
            if name in self._labels:
                index["matrix"][self._encoded[name]]["labels"] = self._labels[name]
        for name, results in buffered.predictions.items():
            entry = index["predictions"].setdefault(self._encoded[name], {"name": name, "ids": {}})
            entry["ids"] = dict(entry["ids"])
            for id_key, (data_id, result) in results.items():
                save(f"{METRICS_GROUP}/predictions/{self._encoded[name]}/{id_key}", result)
                entry["ids"][id_key] = data_id

    # ----------------------------------------------------------------- pulls

    def list_metrics(self, kind: MetricKind | None = None) -> list[str]:
        """Names of the metrics pushed so far (of one kind if given), sorted."""
        if kind is not None and kind not in KINDS:
            raise InvalidValueError(f"kind must be one of {KINDS}, got {kind!r}", got=kind)
        with self._lock:
            self._check_open()
            return sorted(n for n, k in self._kinds.items() if kind is None or k == kind)

    def class_labels(self, name: str) -> list[str] | None:
        """The class labels given with matrix metric `name`, or None."""
        with self._lock:
            self._known(name, "matrix")
            labels = self._labels.get(name)
            return list(labels) if labels is not None else None

    def metric_kind(self, name: str) -> MetricKind:
        """The kind of metric `name` (``"trend"``, ``"category"``, ``"matrix"``, ``"predictions"``)."""
        with self._lock:
            self._check_open()
            kind = self._kinds.get(name)
            if kind is None:
                raise KeyNotFoundError(
                    f"no metric {name!r} in {self!r}; metrics: {self.list_metrics() or 'none'}",
                    key=name,
                )
            return kind

    def _known(self, name: str, kind: MetricKind) -> str:
        found = self.metric_kind(name)
        if found != kind:
            raise KeyNotFoundError(
                f"metric {name!r} is a {found} metric, not a {kind} one; "
                f"{kind} metrics: {self.list_metrics(kind) or 'none'}",
                key=name,
            )
        return self._encoded[name]

    def _segment(self, kind: MetricKind, encoded: str, number: int, part: str) -> Any:
        key = f"{METRICS_GROUP}/{kind}/{encoded}/{number:06d}"
        cached = self._segment_cache.get(key)
        if cached is None:
            cached = self._store.load_data(key)
            if len(self._segment_cache) >= _CACHED_SEGMENTS:
                self._segment_cache.pop(next(iter(self._segment_cache)))
            self._segment_cache[key] = cached
        return cached[part]

    def _stored_epochs(self, kind: MetricKind, encoded: str) -> list[Array]:
        """The epoch array of every stored segment of one metric, oldest first (cached)."""
        known = self._epochs_of.setdefault((kind, encoded), [])
        total = self._index[kind].get(encoded, {}).get("segments", 0)
        for number in range(len(known), total):
            key = f"{METRICS_GROUP}/{kind}/{encoded}/{number:06d}/epoch"
            known.append(np.asarray(self._store.load_data(key), dtype=np.int64))
        return known

    def pull_trend_metric(self, name: str) -> Trend:
        """Every epoch of trend metric `name` and its latest value, sorted by epoch."""
        with self._lock:
            self._check_open()
            encoded = self._known(name, "trend")
            epochs = list(self._stored_epochs("trend", encoded))
            values = [np.asarray(self._store.load_data(
                          f"{METRICS_GROUP}/trend/{encoded}/{n:06d}/value"), dtype=np.float64)
                      for n in range(len(epochs))]  # fmt: skip
            if name in self._buffer.trend:
                buffered_epochs, buffered_values = self._buffer.trend[name]
                epochs.append(np.array(buffered_epochs, dtype=np.int64))
                values.append(np.array(buffered_values, dtype=np.float64))
        all_epochs = np.concatenate(epochs) if epochs else np.zeros(0, np.int64)
        all_values = np.concatenate(values) if values else np.zeros(0, np.float64)
        # The last push of an epoch wins: unique over the reversed order keeps it.
        unique, first = np.unique(all_epochs[::-1], return_index=True)
        return Trend(unique.astype(np.int64), all_values[::-1][first])

    def list_epochs(self, name: str) -> list[int]:
        """The epochs metric `name` has values for, sorted (trend, category or matrix)."""
        with self._lock:
            kind = self.metric_kind(name)
            if kind == "trend":
                return [int(e) for e in self.pull_trend_metric(name).epochs]
            if kind == "predictions":
                raise InvalidValueError(
                    f"metric {name!r} holds predictions, which have data ids, not epochs; "
                    "use list_data_ids",
                    key=name,
                )
            epochs = set(getattr(self._buffer, kind).get(name, {}))
            for stored in self._stored_epochs(kind, self._encoded[name]):
                epochs.update(stored.tolist())
            return sorted(epochs)

    def _locate(self, name: str, kind: MetricKind, epoch: int) -> tuple[int, int]:
        """(segment, row) of the latest stored value of `name` at `epoch`."""
        encoded = self._encoded[name]
        segments = self._stored_epochs(kind, encoded)
        for number in range(len(segments) - 1, -1, -1):
            rows = np.flatnonzero(segments[number] == epoch)
            if rows.size:
                return number, int(rows[-1])
        epochs = self.list_epochs(name)
        shown = epochs if len(epochs) <= 10 else [*epochs[:5], "...", *epochs[-5:]]
        raise EpochNotFoundError(
            f"{kind} metric {name!r} has no epoch {epoch}; its epochs: {shown}",
            key=name, epoch=epoch,
        )  # fmt: skip

    def pull_category_metric(self, name: str, epoch: int) -> tuple[list[Any], list[float]]:
        """The categories of metric `name` at `epoch` and the value of each."""
        with self._lock:
            encoded = self._known(name, "category")
            epoch = _epoch(name, epoch)
            buffered = self._buffer.category.get(name, {}).get(epoch)
            if buffered is not None:
                return buffered[0].tolist(), buffered[1].tolist()
            number, row = self._locate(name, "category", epoch)
            labels = self._segment("category", encoded, number, "categories")
            values = self._segment("category", encoded, number, "values")
            return np.asarray(labels).tolist(), np.asarray(values[row]).tolist()

    def pull_matrix_metric(self, name: str, epoch: int) -> Array:
        """The matrix of metric `name` at `epoch` (a 2-D array, dtype as pushed)."""
        with self._lock:
            encoded = self._known(name, "matrix")
            epoch = _epoch(name, epoch)
            buffered = self._buffer.matrix.get(name, {}).get(epoch)
            if buffered is not None:
                return buffered.copy()
            number, row = self._locate(name, "matrix", epoch)
            return np.array(self._segment("matrix", encoded, number, "values")[row], copy=True)

    def list_data_ids(self, name: str) -> list[int | str]:
        """The data ids pushed under predictions `name`: ints first, then strs, each sorted."""
        with self._lock:
            encoded = self._known(name, "predictions")
            ids = dict(self._index["predictions"].get(encoded, {}).get("ids", {}))
            ids.update({k: v for k, (v, _r) in self._buffer.predictions.get(name, {}).items()})
            values = list(ids.values())
            return sorted(v for v in values if isinstance(v, int)) + sorted(
                v for v in values if isinstance(v, str)
            )

    def pull_data(self, name: str, data_id: int | str) -> Any:
        """The result pushed under predictions `name` for `data_id`."""
        with self._lock:
            encoded = self._known(name, "predictions")
            id_key = _data_id_key(data_id)
            buffered = self._buffer.predictions.get(name, {}).get(id_key)
            if buffered is not None:
                result = buffered[1]
                return result.copy() if isinstance(result, np.ndarray) else result
            if id_key not in self._index["predictions"].get(encoded, {}).get("ids", {}):
                raise KeyNotFoundError(
                    f"predictions {name!r} have no data_id {data_id!r}; "
                    f"{len(self.list_data_ids(name))} ids, see list_data_ids({name!r})",
                    key=f"{name}/{data_id}",
                )
            return self._store.load_data(f"{METRICS_GROUP}/predictions/{encoded}/{id_key}")

    # ----------------------------------------------------------------- plots

    def plot(
        self,
        names: str | Sequence[str],
        epoch: int | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        log_scale: bool | None = None,
        class_labels: Sequence[str] | None = None,
    ) -> Figure:
        """Draw metric(s) and return the matplotlib figure (extra ``plot``).

        Several trend names share one figure; a category or matrix metric is drawn at `epoch`
        (its last one by default). `path` ending in ``.png`` or ``.svg`` also saves the figure.
        `log_scale` None picks a log axis when the values span more than two decades.
        """
        from holdall.ml.plots import plot_metrics

        return plot_metrics(self, names, epoch, path=path, log_scale=log_scale,
                            class_labels=class_labels)  # fmt: skip
