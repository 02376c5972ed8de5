"""SQL for the prediction queries, built from allow-listed identifiers and bound values.

No caller-provided text is ever pasted into SQL: column names come from the allow-lists
below, and every value is a ``?`` parameter.
"""

from __future__ import annotations

from typing import Any

from holdall.errors import InvalidValueError

__all__ = [
    "FILTER_COLUMNS",
    "GROUP_COLUMNS",
    "RANK_COLUMNS",
    "prediction_query",
    "top_query",
    "validate_page",
]

FILTER_COLUMNS = (
    "dataset_name",
    "model_class",
    "partition",
    "fold_id",
    "branch_id",
    "pipeline_id",
    "run_id",
)
"""The filters of `query_predictions` and `export_predictions_parquet` (AND semantics)."""

RANK_COLUMNS = (
    "val_score",
    "test_score",
    "train_score",
    "exclusion_rate",
    "exclusion_count",
    "n_samples",
    "n_features",
)
"""Numeric prediction columns `top_predictions` can rank by."""

GROUP_COLUMNS = (
    "dataset_name",
    "model_name",
    "model_class",
    "pipeline_id",
    "chain_id",
    "fold_id",
    "partition",
    "branch_id",
    "branch_name",
    "metric",
    "task_type",
    "preprocessings",
)
"""Columns `top_predictions` can group by."""

_SELECT = "SELECT p.* FROM predictions p"
_JOIN_RUN = " JOIN pipelines pl ON pl.pipeline_id = p.pipeline_id"


def _where(filters: dict[str, Any]) -> tuple[str, str, list[Any]]:
    """(join, where, params) for the given filters; a str value with ``%`` is a LIKE pattern."""
    unknown = sorted(set(filters) - set(FILTER_COLUMNS))
    if unknown:
        raise InvalidValueError(
            f"unknown prediction filter(s) {', '.join(unknown)}; "
            f"filters are {', '.join(FILTER_COLUMNS)}",
            key=unknown[0],
            expected=FILTER_COLUMNS,
            got=unknown,
        )
    join, conditions, params = "", [], []
    for column in FILTER_COLUMNS:
        value = filters.get(column)
        if value is None:
            continue
        if column == "run_id":
            join = _JOIN_RUN
            qualified = "pl.run_id"
        else:
            qualified = f"p.{column}"
        operator = "LIKE" if isinstance(value, str) and "%" in value else "="
        conditions.append(f"{qualified} {operator} ?")
        params.append(value)
    where = (" WHERE " + " AND ".join(conditions)) if conditions else ""
    return join, where, params


def validate_page(limit: int | None, offset: int) -> None:
    """Check pagination arguments: `limit` None or an int >= 0, `offset` an int >= 0."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidValueError(
            f"limit must be None or an int >= 0, got {limit!r}", key="limit", got=limit
        )
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidValueError(
            f"offset must be an int >= 0, got {offset!r}", key="offset", got=offset
        )


def prediction_query(
    filters: dict[str, Any], *, limit: int | None, offset: int
) -> tuple[str, list[Any]]:
    """SQL and parameters for `WorkspaceStore.query_predictions`.

    Rows come newest first (``created_at`` descending, then ``prediction_id``), so
    limit/offset pages are stable.
    """
    validate_page(limit, offset)
    join, where, params = _where(filters)
    sql = f"{_SELECT}{join}{where} ORDER BY p.created_at DESC, p.prediction_id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    if offset:
        sql += " OFFSET ?"
        params.append(offset)
    return sql, params


def top_query(
    n: int,
    *,
    metric: str,
    ascending: bool,
    partition: str | None,
    dataset_name: str | None,
    group_by: str | None,
) -> tuple[str, list[Any]]:
    """SQL and parameters for `WorkspaceStore.top_predictions`.

    Ties are broken by ``prediction_id`` so the result is deterministic; NULL scores rank last.
    With `group_by`, the best `n` rows of each group are kept, groups in ranking order.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidValueError(f"n must be an int >= 0, got {n!r}", key="n", got=n)
    if metric not in RANK_COLUMNS:
        raise InvalidValueError(
            f"cannot rank by {metric!r}; rank columns are {', '.join(RANK_COLUMNS)}",
            key="metric",
            expected=RANK_COLUMNS,
            got=metric,
        )
    if group_by is not None and group_by not in GROUP_COLUMNS:
        raise InvalidValueError(
            f"cannot group by {group_by!r}; group columns are {', '.join(GROUP_COLUMNS)}",
            key="group_by",
            expected=GROUP_COLUMNS,
            got=group_by,
        )
    _join, where, params = _where({"partition": partition, "dataset_name": dataset_name})
    order = f"p.{metric} {'ASC' if ascending else 'DESC'} NULLS LAST, p.prediction_id"
    if group_by is None:
        return f"{_SELECT}{where} ORDER BY {order} LIMIT ?", [*params, n]
    sql = (
        f"SELECT * EXCLUDE (_rank) FROM (SELECT p.*, row_number() OVER "
        f"(PARTITION BY p.{group_by} ORDER BY {order}) AS _rank FROM predictions p{where}) p "
        f"WHERE _rank <= ? ORDER BY {order}"
    )
    return sql, [*params, n]
