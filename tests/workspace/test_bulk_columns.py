"""The bulk save checks whole columns at once; it must accept and refuse what save_prediction does.

Every record here is saved twice, once one at a time and once in bulk (from dicts and, where
the values fit in Arrow, from an Arrow table), and the stored rows are compared; every bad
value is refused by every path with the same error class naming the same field.
"""

from __future__ import annotations

import inspect
import math
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from holdall.errors import HoldallError, InvalidKeyError, InvalidValueError, KeyNotFoundError
from holdall.workspace import WorkspaceStore, _records
from tests.workspace.conftest import Trained, prediction_fields

_COMPARED = [c for c in _records.PREDICTION_FIELDS if c.name != "scores"]


def _stored(store: WorkspaceStore, ids: list[str]) -> list[dict[str, Any]]:
    """The rows and arrays of `ids` as saved, without the generated id and time."""
    out = []
    arrays = store.load_prediction_arrays(ids)
    for pid in ids:
        row = store.get_prediction(pid)
        assert row is not None
        values = {spec.name: row[spec.name] for spec in _records.PREDICTION_FIELDS}
        for name, array in arrays.get(pid, {}).items():
            values[name] = None if array is None else (array.dtype.str, array.tolist())
        out.append(values)
    return out


def _records_of(trained: Trained) -> list[dict[str, Any]]:
    """Records mixing every accepted type: numpy scalars, ints as scores, lists as arrays."""
    base = prediction_fields(trained.pipeline_id, trained.chain_id)
    records = [
        {**base, "y_true": np.arange(4.0), "y_pred": np.arange(4.0) * 2},
        {
            **base,
            "val_score": np.float32(0.25),
            "n_samples": np.int64(4),
            "test_score": 2,
            "y_true": np.arange(4, dtype=np.float32),
            "y_pred": [1, 2, 3, 4],
        },
        {
            **base,
            "val_score": None,
            "train_score": None,
            "branch_id": -3,
            "branch_name": "b",
            "y_proba": np.eye(4, 2),
            "sample_indices": np.arange(4, dtype=np.uint16),
        },
        {k: v for k, v in base.items() if k != "preprocessings"},  # the default ""
        {**base, "scores": None, "best_params": {"alpha": [1, 2]}, "weights": np.ones(4, bool)},
    ]
    # One fold each: records with one natural key would replace each other one at a time.
    return [{**record, "fold_id": str(i)} for i, record in enumerate(records)]


def test_bulk_rows_equal_one_at_a_time_rows(store: WorkspaceStore, trained: Trained) -> None:
    records = _records_of(trained)
    one_by_one = []
    for record in records:
        fields = {k: v for k, v in record.items() if k not in _records.ARRAY_NAMES}
        pid = store.save_prediction(**fields)
        arrays = {k: v for k, v in record.items() if k in _records.ARRAY_NAMES}
        if arrays:
            store.save_prediction_arrays(pid, **{"y_true": None, "y_pred": None, **arrays})
        one_by_one.append(pid)
    bulk = store.save_predictions(records)
    assert _stored(store, bulk) == _stored(store, one_by_one)


def test_arrow_and_polars_input_match_dict_input(store: WorkspaceStore, trained: Trained) -> None:
    rng = np.random.default_rng(0)
    records = [
        {
            **prediction_fields(trained.pipeline_id, None, val_score=float(i), n_samples=3),
            "scores": {"val": {"rmse": 0.5 + i, "r2": None}},
            "best_params": {},
            "y_true": rng.random(3),
            "y_pred": rng.random(3).astype(np.float32),
            "sample_indices": np.arange(3) + i,
        }
        for i in range(4)
    ]
    table = pa.Table.from_pylist(
        [
            {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()}
            for r in records
        ]
    )
    table = table.set_column(
        table.column_names.index("y_pred"),
        "y_pred",
        table.column("y_pred").cast(pa.list_(pa.float32())),
    )
    from_dicts = _stored(store, store.save_predictions(records))
    from_arrow = _stored(store, store.save_predictions(table))
    from_polars = _stored(store, store.save_predictions(pl.from_arrow(table)))  # type: ignore[arg-type]
    for stored in (from_arrow, from_polars):
        for a, b in zip(stored, from_dicts, strict=True):
            assert {k: a[k] for k in a if k != "scores"} == {k: b[k] for k in b if k != "scores"}
            # Arrow cannot tell a null field from a missing one: null fields are left out.
            assert a["scores"] == {"val": {"rmse": b["scores"]["val"]["rmse"]}}
    assert from_arrow[0]["y_pred"][0] == "<f4"  # the Arrow value type is the saved dtype


def test_struct_columns_do_not_gain_other_rows_keys(
    store: WorkspaceStore, trained: Trained
) -> None:
    base = prediction_fields(trained.pipeline_id, None)
    rows = [{**base, "best_params": {"alpha": 1}}, {**base, "best_params": {"n_components": 5}}]
    for given in (rows, pa.Table.from_pylist(rows), pl.DataFrame(rows)):
        ids = store.save_predictions(given)
        assert [store.get_prediction(i)["best_params"] for i in ids] == [  # type: ignore[index]
            {"alpha": 1},
            {"n_components": 5},
        ]


def test_nested_and_null_holding_arrow_arrays(store: WorkspaceStore, trained: Trained) -> None:
    base = prediction_fields(trained.pipeline_id, None, n_samples=2)
    proba = pa.array([[[0.25, 0.75], [0.5, 0.5]]], type=pa.list_(pa.list_(pa.float32())))
    table = pa.Table.from_pylist([base]).append_column("y_proba", proba)
    (pid,) = store.save_predictions(table)
    saved = store.get_prediction(pid, load_arrays=True)
    assert saved is not None
    assert saved["y_proba"].dtype == np.float32
    assert saved["y_proba"].shape == (2, 2)
    for bad in (
        pa.array([[1.0, None]], type=pa.list_(pa.float64())),  # a null inside an array
        pa.array([[[0.1, 0.9], [0.1, 0.2, 0.7]]]),  # ragged rows
    ):
        with pytest.raises(InvalidValueError) as info:
            store.save_predictions(pa.Table.from_pylist([base]).append_column("y_proba", bad))
        assert info.value.key == "y_proba"


def test_unknown_fields_are_refused_not_dropped(store: WorkspaceStore, trained: Trained) -> None:
    record = {**prediction_fields(trained.pipeline_id, None), "y_prob": np.zeros((4, 2))}
    for given in ([record], pa.Table.from_pylist([{**record, "y_prob": [[0.0, 0.0]] * 4}])):
        with pytest.raises(InvalidValueError) as info:
            store.save_predictions(given)
        assert info.value.key == "y_prob"
    assert store.query_predictions().height == 0


def test_a_chain_must_exist_and_belong_to_the_pipeline(
    store: WorkspaceStore, trained: Trained
) -> None:
    other = store.begin_pipeline(trained.run_id, "other", {}, [], "wheat", "h")
    mixed = prediction_fields(other, trained.chain_id)
    with pytest.raises(InvalidValueError) as info:
        store.save_prediction(**mixed)
    assert info.value.key == "chain_id"
    with pytest.raises(InvalidValueError):
        store.save_predictions([mixed])
    assert store.query_predictions().height == 0


def test_parents_are_checked_again_after_another_store_wrote(tmp_path: Path) -> None:
    path = tmp_path / "ws"
    with WorkspaceStore(path) as setup:
        trained = Trained(setup)
    with WorkspaceStore(path, lock_timeout=20) as first:
        record = prediction_fields(trained.pipeline_id, trained.chain_id)
        first.save_predictions([record])  # `first` now knows the chain
        with WorkspaceStore(path, lock_timeout=20) as second:
            second.fail_pipeline(trained.pipeline_id, "diverged")  # deletes its chains
        with pytest.raises(KeyNotFoundError):
            first.save_predictions([record])
        with pytest.raises(KeyNotFoundError):
            first.save_prediction(**record)
        assert first.query_predictions().height == 0


BAD_VALUES = [
    ("val_score", math.nan, InvalidValueError),
    ("test_score", math.inf, InvalidValueError),
    ("exclusion_rate", None, InvalidValueError),
    ("val_score", True, InvalidValueError),
    ("val_score", "0.5", InvalidValueError),
    ("n_samples", -1, InvalidValueError),
    ("n_features", 2**31, InvalidValueError),
    ("branch_id", -(2**40), InvalidValueError),
    ("exclusion_count", 1.0, InvalidValueError),
    ("model_name", None, InvalidValueError),
    ("fold_id", 3, InvalidValueError),
    ("dataset_name", "../x", InvalidKeyError),
    ("dataset_name", "", InvalidKeyError),
    ("dataset_name", "a\x00b", InvalidKeyError),
    ("scores", {"val": {"rmse": math.nan}}, InvalidValueError),
]


def _batch(pipeline_id: str, field: str, bad: object) -> list[dict[str, Any]]:
    """A good record, one holding the bad value, a good record."""
    good = prediction_fields(pipeline_id, None)
    return [good, {**good, field: bad}, good]


def _arrow_keeps(field: str, bad: object) -> bool:
    """Whether an Arrow table can hold `bad` as it is (Arrow refuses some, coerces others)."""
    try:
        table = pa.Table.from_pylist(_batch("p", field, bad))
    except (pa.ArrowException, OverflowError):
        return False
    return type(table.column(field)[1].as_py()) is type(bad)


BAD_CASES = [
    (source, field, bad, error)
    for source in ("one", "dicts", "arrow")
    for field, bad, error in BAD_VALUES
    if source != "arrow" or _arrow_keeps(field, bad)
]


@pytest.mark.parametrize(("source", "field", "bad", "error"), BAD_CASES)
def test_every_path_refuses_the_same_bad_value(
    store: WorkspaceStore,
    trained: Trained,
    field: str,
    bad: object,
    error: type[HoldallError],
    source: str,
) -> None:
    batch = _batch(trained.pipeline_id, field, bad)
    payload: Any = pa.Table.from_pylist(batch) if source == "arrow" else batch
    save = (lambda: store.save_prediction(**batch[1])) if source == "one" else None
    with pytest.raises(error) as info:
        save() if save else store.save_predictions(payload)
    assert getattr(info.value, "key", field) in (field, bad)
    assert store.query_predictions().height == 0


@pytest.mark.parametrize(
    ("column", "key"),
    [
        (pa.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]]), "y_true"),  # wrong length
        (pa.array([["a"] * 4, ["b"] * 4]), "y_true"),  # text
        (pa.array([[2**60] * 4, [0] * 4]), "y_true"),  # not exact as float64
    ],
)
def test_arrow_array_columns_are_checked(
    store: WorkspaceStore, trained: Trained, column: pa.Array, key: str
) -> None:
    good = prediction_fields(trained.pipeline_id, None)
    table = pa.Table.from_pylist([good, good]).append_column("y_true", column)
    with pytest.raises(InvalidValueError) as info:
        store.save_predictions(table)
    assert info.value.key == key
    assert store.query_predictions().height == 0


def test_a_record_without_arrays_gets_no_arrays_row(
    store: WorkspaceStore, trained: Trained
) -> None:
    good = prediction_fields(trained.pipeline_id, None)
    ids = store.save_predictions([{**good, "y_true": np.zeros(4)}, good, {**good, "weights": None}])
    assert sorted(store.load_prediction_arrays(ids)) == [ids[0]]
    assert store.save_predictions([]) == []


def test_buffered_arrays_are_copies(store: WorkspaceStore, trained: Trained) -> None:
    y = np.arange(4.0)
    pid = store.save_prediction(**prediction_fields(trained.pipeline_id, None))
    store.save_prediction_arrays(pid, y, y)
    y[:] = -1  # the caller reuses its buffer before the flush
    record = store.get_prediction(pid, load_arrays=True)
    assert record is not None
    np.testing.assert_array_equal(record["y_true"], np.arange(4.0))


def test_buffered_logs_commit_with_a_bulk_save(store: WorkspaceStore, trained: Trained) -> None:
    store.log_step(trained.pipeline_id, 0, "Scaler", "fit", duration_ms=3)
    store.save_predictions([prediction_fields(trained.pipeline_id, None)])
    log = store.get_pipeline_log(trained.pipeline_id)
    assert log["event"].to_list()[-1] == "fit"
    assert log["created_at"].dtype == pl.Datetime("us")


def test_every_argument_lands_in_its_own_column(store: WorkspaceStore, trained: Trained) -> None:
    parameters = list(inspect.signature(WorkspaceStore.save_prediction).parameters)[1:]
    # Every field, plus nirs4all's explicit id (a column of its own: prediction_id).
    assert sorted(parameters) == sorted(
        [*(spec.name for spec in _records.PREDICTION_FIELDS), "prediction_id"]
    )
    distinct = {
        "pipeline_id": trained.pipeline_id,
        "chain_id": trained.chain_id,
        "dataset_name": "d1",
        "model_name": "m2",
        "model_class": "c3",
        "fold_id": "f4",
        "partition": "p5",
        "val_score": 6.0,
        "test_score": 7.0,
        "train_score": 8.0,
        "metric": "m9",
        "task_type": "t10",
        "n_samples": 11,
        "n_features": 12,
        "scores": {"s": 13},
        "best_params": {"b": 14},
        "branch_id": 15,
        "branch_name": "b16",
        "exclusion_count": 17,
        "exclusion_rate": 18.0,
        "preprocessings": "p19",
        "refit_context": "r20",
        "prediction_id": "id21",
    }
    assert store.save_prediction(**distinct) == "id21"
    row = store.get_prediction("id21")
    assert row is not None
    assert {name: row[name] for name in distinct} == distinct


def test_generated_ids_are_unique_uuid4() -> None:
    ids = [_records.new_id() for _ in range(5000)] + [
        i.decode() for i in _records.new_ids(5000).tolist()
    ]
    assert len(set(ids)) == len(ids)
    for text in ids[:: len(ids) // 50]:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert str(parsed) == text
