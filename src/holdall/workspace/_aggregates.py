"""SQL for nirs4all 0.7.1's aggregated prediction queries (one row per chain and metric).

nirs4all kept these in a database VIEW; here they are a subquery, so a workspace's schema
holds only tables. Column names come from fixed lists; values are always bound.
"""

from __future__ import annotations

from typing import Any

from holdall.errors import InvalidValueError

__all__ = [
    "HIGHER_IS_BETTER",
    "aggregated_query",
    "chain_predictions_query",
    "top_aggregated_query",
]

HIGHER_IS_BETTER = frozenset({
    "r2", "accuracy", "f1", "precision", "recall", "auc", "roc_auc", "balanced_accuracy",
    "kappa", "rpd", "rpiq",
})  # fmt: skip
"""Metrics ranked highest first when no direction is given (others: lowest first)."""

_SCORE_COLUMNS = tuple(
    f"{agg}_{part}_score" for part in ("val", "test", "train") for agg in ("min", "max", "avg")
)

_AGGREGATED = (
    "SELECT pl.run_id, c.pipeline_id, c.chain_id, c.model_class, c.model_step_idx, "
    "c.preprocessings, c.branch_path, c.source_index, p.model_name, p.metric, p.dataset_name, "
    "count(DISTINCT p.fold_id) AS fold_count, count(DISTINCT p.partition) AS partition_count, "
    "list(DISTINCT p.partition ORDER BY p.partition) AS partitions, "
    + ", ".join(
        f"{agg}(p.{part}_score) AS {agg}_{part}_score"
        for part in ("val", "test", "train")
        for agg in ("min", "max", "avg")
    )
    + ", list(p.prediction_id ORDER BY p.partition, p.fold_id) AS prediction_ids, "
    "list(p.fold_id ORDER BY p.partition, p.fold_id) AS fold_ids "
    "FROM predictions p JOIN chains c ON p.chain_id = c.chain_id "
    "JOIN pipelines pl ON c.pipeline_id = pl.pipeline_id WHERE p.refit_context IS NULL "
    "GROUP BY pl.run_id, c.pipeline_id, c.chain_id, c.model_class, c.model_step_idx, "
    "c.preprocessings, c.branch_path, c.source_index, p.model_name, p.metric, p.dataset_name"
)

_AGGREGATE_FILTERS = ("run_id", "pipeline_id", "chain_id", "dataset_name", "model_class", "metric")
_TOP_FILTERS = ("run_id", "pipeline_id", "dataset_name", "model_class")


def _where(
    filters: dict[str, Any], allowed: tuple[str, ...], *, like: bool
) -> tuple[str, list[Any]]:
    unknown = sorted(set(filters) - set(allowed))
    if unknown:
        raise InvalidValueError(
            f"unknown filter(s) {', '.join(unknown)}; filters are {', '.join(allowed)}",
            key=unknown[0],
            expected=allowed,
        )
    conditions: list[str] = []
    params: list[Any] = []
    for column in allowed:
        value = filters.get(column)
        if value is None:
            continue
        operator = "LIKE" if like and isinstance(value, str) and "%" in value else "="
        conditions.append(f"{column} {operator} ?")
        params.append(value)
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), params


def aggregated_query(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    """The aggregated rows matching `filters` (``%`` in a string makes it a LIKE pattern)."""
    where, params = _where(filters, _AGGREGATE_FILTERS, like=True)
    return (
        f"SELECT * FROM ({_AGGREGATED}){where} ORDER BY run_id, pipeline_id, chain_id, metric",
        params,
    )


def top_aggregated_query(
    metric: str, n: int, score_column: str, ascending: bool | None, filters: dict[str, Any]
) -> tuple[str, list[Any]]:
    """The `n` best aggregated rows of `metric` by `score_column` (NULL scores last)."""
    if score_column not in _SCORE_COLUMNS:
        raise InvalidValueError(
            f"cannot rank by {score_column!r}; score columns are {', '.join(_SCORE_COLUMNS)}",
            key="score_column",
            expected=_SCORE_COLUMNS,
            got=score_column,
        )
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise InvalidValueError(f"n must be an int >= 0, got {n!r}", key="n", got=n)
    if ascending is None:
        ascending = str(metric).lower() not in HIGHER_IS_BETTER
    where, params = _where({**filters, "metric": metric}, (*_TOP_FILTERS, "metric"), like=False)
    direction = "ASC" if ascending else "DESC"
    sql = (
        f"SELECT * FROM ({_AGGREGATED}){where} "
        f"ORDER BY {score_column} {direction} NULLS LAST, chain_id LIMIT ?"
    )
    return sql, [*params, n]


def chain_predictions_query(
    chain_id: str, partition: str | None, fold_id: str | None
) -> tuple[str, list[Any]]:
    """The predictions of a chain, optionally of one partition and fold."""
    conditions, params = ["chain_id = ?"], [chain_id]
    for column, value in (("partition", partition), ("fold_id", fold_id)):
        if value is not None:
            conditions.append(f"{column} = ?")
            params.append(value)
    where = " AND ".join(conditions)
    return (
        f"SELECT * FROM predictions WHERE {where} ORDER BY partition, fold_id, prediction_id",
        params,
    )
