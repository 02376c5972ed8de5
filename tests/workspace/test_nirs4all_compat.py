"""What nirs4all 0.7.1's own callers rely on: natural-key replacement, its keywords, delegation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from holdall.errors import InvalidValueError
from holdall.workspace import WorkspaceStore, replay_chain
from tests.workspace.conftest import Trained, prediction_fields


def _fields(trained: Trained, **overrides: Any) -> dict[str, Any]:
    fields = prediction_fields(trained.pipeline_id, trained.chain_id, fold_id="0")
    return {**fields, **overrides}


def test_same_natural_key_replaces_the_prediction_and_its_arrays(
    store: WorkspaceStore, trained: Trained
) -> None:
    first = store.save_prediction(**_fields(trained, val_score=0.9))
    store.save_prediction_arrays(first, np.zeros(4), np.zeros(4))
    store.flush()
    again = store.save_prediction(**_fields(trained, val_score=0.1))  # a re-run of the fold
    assert again == first  # nirs4all keeps the id of the record it replaces
    frame = store.query_predictions(pipeline_id=trained.pipeline_id)
    assert frame["val_score"].to_list() == [0.1]
    assert store.load_prediction_arrays([first]) == {}  # the old arrays went with the old row
    store.save_prediction_arrays(again, np.ones(4), np.ones(4))
    loaded = store.get_prediction(again, load_arrays=True)
    assert loaded is not None
    np.testing.assert_array_equal(loaded["y_true"], np.ones(4))


@pytest.mark.parametrize(
    "change",
    [{"fold_id": "1"}, {"partition": "test"}, {"model_name": "RF"}, {"branch_id": 0},
     {"chain_id": ""}],
)  # fmt: skip
def test_any_other_key_adds_a_prediction(
    store: WorkspaceStore, trained: Trained, change: dict[str, Any]
) -> None:
    first = store.save_prediction(**_fields(trained))
    second = store.save_prediction(**{**_fields(trained), **change})
    assert first != second
    assert store.query_predictions(pipeline_id=trained.pipeline_id).height == 2


def test_branch_and_chain_compare_like_0_7_1(store: WorkspaceStore, trained: Trained) -> None:
    a = store.save_prediction(**_fields(trained, chain_id=None))
    b = store.save_prediction(**_fields(trained, chain_id=None))
    assert a != b  # 0.7.1's chain_id = NULL never matches: a chainless save always adds
    c = store.save_prediction(**_fields(trained, chain_id="", fold_id="7"))  # nirs4all's ""
    d = store.save_prediction(**_fields(trained, chain_id="", fold_id="7", val_score=0.0))
    e = store.save_prediction(**_fields(trained, branch_id=3))
    f = store.save_prediction(**_fields(trained, branch_id=3, val_score=0.0))
    assert c == d
    assert e == f
    frame = store.query_predictions(pipeline_id=trained.pipeline_id)
    assert frame.height == 4
    assert frame.filter(frame["prediction_id"] == c)["chain_id"].to_list() == [None]


def test_replacement_in_the_buffer_and_after_a_reopen(tmp_path: Any) -> None:
    with WorkspaceStore(tmp_path, flush_every=1000, flush_interval=3600) as store:
        trained = Trained(store)
        first = store.save_prediction(**_fields(trained, val_score=1.0))
        store.save_prediction_arrays(first, np.zeros(4), np.zeros(4))
        assert store.save_prediction(**_fields(trained, val_score=2.0)) == first  # both buffered
    with WorkspaceStore(tmp_path) as store:
        assert store.query_predictions()["val_score"].to_list() == [2.0]
        assert store.load_prediction_arrays() == {}
        assert store.save_prediction(**_fields(trained, val_score=3.0)) == first  # learnt anew
        assert store.query_predictions()["val_score"].to_list() == [3.0]


def test_explicit_prediction_id_and_refit_context(store: WorkspaceStore, trained: Trained) -> None:
    chosen = store.save_prediction(
        **_fields(trained), prediction_id="pred-42", refit_context="standalone"
    )
    assert chosen == "pred-42"
    row = store.get_prediction("pred-42")
    assert row is not None
    assert row["refit_context"] == "standalone"
    # Another key under an id already used replaces that record (0.7.1's PK-collision guard).
    store.save_prediction(**_fields(trained, fold_id="9"), prediction_id="pred-42")
    frame = store.query_predictions()
    assert frame["prediction_id"].to_list() == ["pred-42"]
    assert frame["fold_id"].to_list() == ["9"]
    assert frame["refit_context"].to_list() == [None]
    # A known natural key wins over the id asked for, as in 0.7.1.
    assert (
        store.save_prediction(**_fields(trained, fold_id="9"), prediction_id="other") == "pred-42"
    )
    with pytest.raises(InvalidValueError):
        store.save_prediction(**_fields(trained), prediction_id=7)  # type: ignore[arg-type]


def test_deletes_forget_learnt_keys(store: WorkspaceStore, trained: Trained) -> None:
    first = store.save_prediction(**_fields(trained))
    assert store.delete_prediction(first)
    assert store.save_prediction(**_fields(trained)) != first


class _ForeignStore:
    """Any store with nirs4all's replay_chain signature (nirs4all's own, for one)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, tuple[int, ...], Any]] = []

    def replay_chain(self, chain_id: str | None, X: np.ndarray, wavelengths: Any = None) -> Any:
        self.calls.append((chain_id, X.shape, wavelengths))
        return X.sum(axis=1)


def test_module_replay_chain_calls_another_stores_own_method() -> None:
    foreign = _ForeignStore()
    X = np.ones((3, 2))
    out = replay_chain(foreign, "chain-1", X, wavelengths=None)
    np.testing.assert_array_equal(out, [2.0, 2.0, 2.0])
    assert foreign.calls == [("chain-1", (3, 2), None)]
