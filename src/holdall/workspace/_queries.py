"""SQL for the prediction queries, built from allow-listed identifiers and bound values.

No caller-provided text is ever pasted into SQL: column names come from the allow-lists
below, and every value is a ``?`` parameter.
"""

from __future__ import annotations

from typing import Any

from holdall.errors import InvalidValueError

__all__ = [
    "COUNT_PREDICTIONS",
    "FILTER_COLUMNS",
    "GROUP_COLUMNS",
    "NEWEST_FIRST",
    "RANK_COLUMNS",
    "fence_pays",
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

NEWEST_FIRST = (("created_at", True), ("prediction_id", False))
"""The order of `query_predictions` rows: (column, descending) pairs, most significant first.

``prediction_id`` is unique, so this order is total and sorting in SQL or in polars agrees.
"""

COUNT_PREDICTIONS = "SELECT count(*) FROM predictions"
"""The probe `fence_pays` needs (DuckDB answers it from table metadata, about 0.3 ms)."""

_LATE_MATERIALIZATION_MAX_ROWS = 50  # DuckDB's default late_materialization_max_rows
_FENCE_MAX_ROWS = 30_000

_SELECT = "SELECT p.* FROM predictions p"
_NEWEST_FIRST_SQL = ", ".join(f"p.{c}{' DESC' if d else ''}" for c, d in NEWEST_FIRST)
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
    filters: dict[str, Any], *, limit: int | None, offset: int, ordered: bool = True
) -> tuple[str, list[Any]]:
    """SQL and parameters for `WorkspaceStore.query_predictions`.

    Rows come newest first (`NEWEST_FIRST`: ``created_at`` descending, then
    ``prediction_id``), so limit/offset pages are stable. With ``ordered=False`` (only
    without limit and offset) the SQL has no ORDER BY and the caller sorts by
    `NEWEST_FIRST`: DuckDB moves every column of the rows through its sort (measured 1.2 ms
    for 2,000 rows whatever the keys), polars sorts the same frame in 0.2 ms.
    """
    validate_page(limit, offset)
    join, where, params = _where(filters)
    if not ordered:
        if limit is not None or offset:
            raise ValueError("an unordered prediction query cannot take a limit or an offset")
        return f"{_SELECT}{join}{where}", params
    sql = f"{_SELECT}{join}{where} ORDER BY {_NEWEST_FIRST_SQL}"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    if offset:
        sql += " OFFSET ?"
        params.append(offset)
    return sql, params


def fence_pays(n: int, group_by: str | None, n_predictions: int) -> bool:
    """Whether `top_query` should fence off late materialization (its ``fence`` argument).

    For ``ORDER BY ... LIMIT n`` with n <= 50, DuckDB ranks on the order columns alone and
    then fetches the n winners' other columns by row id (a semi join and a second scan of
    the table). Below some 50,000 predictions that plan costs more than carrying every
    column through the top-n: measured top-10 of 10,000 predictions 4.3 -> 2.7 ms, 30,000
    4.7 -> 3.6 ms, but 100,000 8.9 -> 10.5 ms and 1,000,000 22 -> 63 ms. So the fence is
    used up to 30,000 predictions (counted first, which costs ~0.3 ms; the gain is ~1-1.5 ms).
    """
    return (
        group_by is None
        and n <= _LATE_MATERIALIZATION_MAX_ROWS
        and n_predictions <= _FENCE_MAX_ROWS
    )


def top_query(
    n: int,
    *,
    metric: str,
    ascending: bool,
    partition: str | None,
    dataset_name: str | None,
    group_by: str | None,
    fence: bool = False,
) -> tuple[str, list[Any]]:
    """SQL and parameters for `WorkspaceStore.top_predictions`.

    Ties are broken by ``prediction_id`` so the result is deterministic; NULL scores rank last.
    With `group_by`, the best `n` rows of each group are kept, groups in ranking order.
    With `fence` (see `fence_pays`; ignored with `group_by`), the rows are read in a
    subquery with ``OFFSET 0``, which keeps DuckDB from planning late materialization
    without changing the result.
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
        source = f"({_SELECT}{where} OFFSET 0) p" if fence else f"predictions p{where}"
        return f"SELECT p.* FROM {source} ORDER BY {order} LIMIT ?", [*params, n]
    sql = (
        f"SELECT * EXCLUDE (_rank) FROM (SELECT p.*, row_number() OVER "
        f"(PARTITION BY p.{group_by} ORDER BY {order}) AS _rank FROM predictions p{where}) p "
        f"WHERE _rank <= ? ORDER BY {order}"
    )
    return sql, [*params, n]
