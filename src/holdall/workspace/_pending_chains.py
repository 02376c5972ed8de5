"""Chains saved before the artifacts they name, written in the transaction of the last one.

nirs4all 0.7.1's executor saves a pipeline's chains first and registers their artifacts
right after (``register_existing_artifact``). A chain must never be stored pointing to
nothing, so such a chain waits here, in memory, and is inserted in the very transaction
that commits the last artifact it names. `WorkspaceStore.complete_pipeline` refuses to
complete a pipeline with a chain still waiting, `fail_pipeline` drops its chains, and a
store closed with chains waiting warns that they were not stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

__all__ = ["PendingChains"]


@dataclass(frozen=True)
class _Waiting:
    pipeline_id: str
    row: list[Any]
    """The ``chains`` row, ready to insert."""
    referenced: list[str]
    """Every artifact id the chain names."""


class PendingChains:
    """The chains of this store object that wait for artifacts (see the module docstring)."""

    def __init__(self) -> None:
        self._waiting: dict[str, _Waiting] = {}

    def add(self, chain_id: str, pipeline_id: str, row: list[Any], referenced: list[str]) -> None:
        """Hold chain `chain_id` until every id of `referenced` is an artifact."""
        self._waiting[chain_id] = _Waiting(pipeline_id, row, referenced)

    def insert_ready(self, conn: duckdb.DuckDBPyConnection, artifact_id: str) -> list[str]:
        """Insert the chains that `artifact_id`, just inserted on `conn`, completes.

        Returns their ids, and those of chains whose pipeline was deleted meanwhile (never
        inserted); the caller calls `forget` with them once the transaction has committed
        (a rolled-back one leaves them waiting).
        """
        ready = []
        for chain_id, waiting in self._waiting.items():
            if artifact_id not in waiting.referenced:
                continue
            if not conn.execute(
                "SELECT 1 FROM pipelines WHERE pipeline_id = ?", [waiting.pipeline_id]
            ).fetchall():
                ready.append(chain_id)
                continue
            found = conn.execute(
                "SELECT count(*) FROM artifacts WHERE list_contains(?, artifact_id)",
                [waiting.referenced],
            ).fetchall()[0][0]
            if found == len(waiting.referenced):
                conn.execute(
                    "INSERT INTO chains VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    waiting.row,
                )
                ready.append(chain_id)
        return ready

    def forget(self, chain_ids: list[str]) -> None:
        """Stop holding `chain_ids` (stored, or dropped with their pipeline)."""
        for chain_id in chain_ids:
            self._waiting.pop(chain_id, None)

    def of_pipeline(self, pipeline_id: str) -> list[str]:
        """The ids of the chains of `pipeline_id` still waiting."""
        return [c for c, w in self._waiting.items() if w.pipeline_id == pipeline_id]

    def missing(self, conn: duckdb.DuckDBPyConnection, chain_id: str) -> list[str]:
        """The artifact ids chain `chain_id` still waits for."""
        referenced = self._waiting[chain_id].referenced
        found = {
            r[0]
            for r in conn.execute(
                "SELECT artifact_id FROM artifacts WHERE list_contains(?, artifact_id)",
                [referenced],
            ).fetchall()
        }
        return [a for a in referenced if a not in found]

    def ids(self) -> list[str]:
        """Every chain still waiting."""
        return list(self._waiting)
