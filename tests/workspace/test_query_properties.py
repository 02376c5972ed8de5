"""Property-based: query_predictions and top_predictions agree with a reference in plain Python."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from holdall.workspace import WorkspaceStore
from tests.workspace.conftest import prediction_fields

DATASETS = ["wheat", "corn", "rice"]
MODELS = ["PLS", "PLSDA", "RF"]
PARTITIONS = ["train", "val", "test"]
FOLDS = ["0", "1", "2"]


@pytest.fixture(scope="module")
def populated(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[WorkspaceStore, list[dict[str, Any]]]]:
    """One workspace with two runs and 120 varied predictions, and the reference rows."""
    path: Path = tmp_path_factory.mktemp("props")
    rows: list[dict[str, Any]] = []
    with WorkspaceStore(path) as store:
        pipelines = []
        for r in range(2):
            run_id = store.begin_run(f"run{r}", {}, [])
            for k in range(2):
                pipelines.append(
                    (run_id, store.begin_pipeline(run_id, f"p{r}{k}", {}, [], "wheat", "h"))
                )
        for i in range(120):
            run_id, pipeline_id = pipelines[i % 4]
            fields = prediction_fields(
                pipeline_id, None, dataset_name=DATASETS[i % 3], model_class=MODELS[(i // 3) % 3],
                partition=PARTITIONS[(i // 9) % 3], fold_id=FOLDS[(i // 2) % 3],
                branch_id=None if i % 5 == 0 else i % 2,
                val_score=None if i % 11 == 0 else round((i * 37 % 101) / 7, 3),
                model_name=f"m{i}",  # distinct natural keys: 120 predictions, none replaced
            )  # fmt: skip
            fields["prediction_id"] = store.save_prediction(**fields)
            fields["run_id"] = run_id
            rows.append(fields)
        store.flush()
        yield store, rows


def _like(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _matches(row: dict[str, Any], filters: dict[str, Any]) -> bool:
    for column, wanted in filters.items():
        if wanted is None:
            continue
        value = row[column]
        if isinstance(wanted, str) and "%" in wanted:
            if value is None or not _like(wanted, value):
                return False
        elif value != wanted:
            return False
    return True


filters_strategy = st.fixed_dictionaries({
    "dataset_name": st.none() | st.sampled_from([*DATASETS, "barley", "%r%"]),
    "model_class": st.none() | st.sampled_from([*MODELS, "PLS%", "%DA", "XGB"]),
    "partition": st.none() | st.sampled_from(PARTITIONS),
    "fold_id": st.none() | st.sampled_from([*FOLDS, "9"]),
    "branch_id": st.none() | st.sampled_from([0, 1, 2]),
})  # fmt: skip

slow_settings = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@slow_settings
@given(filters=filters_strategy, use_run=st.booleans(), use_pipeline=st.booleans(),
       limit=st.none() | st.integers(0, 30), offset=st.integers(0, 40))  # fmt: skip
def test_query_predictions_matches_reference(
    populated: tuple[WorkspaceStore, list[dict[str, Any]]],
    filters: dict[str, Any], use_run: bool, use_pipeline: bool, limit: int | None, offset: int,
) -> None:  # fmt: skip
    store, rows = populated
    if use_run:
        filters["run_id"] = rows[1]["run_id"]
    if use_pipeline:
        filters["pipeline_id"] = rows[2]["pipeline_id"]
    expected = {r["prediction_id"] for r in rows if _matches(r, filters)}
    everything = store.query_predictions(**filters)
    assert set(everything["prediction_id"].to_list()) == expected
    page = store.query_predictions(**filters, limit=limit, offset=offset)["prediction_id"].to_list()
    stop = None if limit is None else offset + limit
    assert page == everything["prediction_id"].to_list()[offset:stop]


@slow_settings
@given(n=st.integers(0, 12), ascending=st.booleans(), partition=st.sampled_from(PARTITIONS),
       dataset=st.none() | st.sampled_from(DATASETS),
       group_by=st.none() | st.sampled_from(["model_class", "fold_id", "branch_id"]))  # fmt: skip
def test_top_predictions_matches_reference(
    populated: tuple[WorkspaceStore, list[dict[str, Any]]],
    n: int, ascending: bool, partition: str, dataset: str | None, group_by: str | None,
) -> None:  # fmt: skip
    store, rows = populated
    candidates = [
        r for r in rows if r["partition"] == partition and dataset in (None, r["dataset_name"])
    ]

    def rank(row: dict[str, Any]) -> tuple[bool, float, str]:
        score = row["val_score"]
        return (
            score is None,
            0.0 if score is None else (score if ascending else -score),
            row["prediction_id"],
        )

    candidates.sort(key=rank)
    if group_by is None:
        expected = candidates[:n]
    else:
        seen: dict[Any, int] = {}
        expected = []
        for row in candidates:
            seen[row[group_by]] = seen.get(row[group_by], 0) + 1
            if seen[row[group_by]] <= n:
                expected.append(row)
    got = store.top_predictions(
        n, ascending=ascending, partition=partition, dataset_name=dataset, group_by=group_by
    )
    assert got["prediction_id"].to_list() == [r["prediction_id"] for r in expected]
