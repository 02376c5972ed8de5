"""What a store learnt about the database during one lease, so saves need not ask again.

While a store holds its lease (`Session.lease` keeps one value) no other process can write,
so facts read or written during it stay true until it ends: which pipelines and chains
exist (`KnownParents`) and which prediction holds each natural key (`NaturalKeys`). Both
start over when the lease changes, and after any delete.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KnownParents", "NaturalKeys", "natural_key"]


@dataclass
class KnownParents:
    """Pipelines and chains (with their pipeline) seen to exist during one lease.

    One-at-a-time saves check a record's parents against this instead of the database. It
    is only trusted during the lease it was learnt in (`Session.lease`): once the lease is
    handed back, another process may have deleted anything, so it starts over.
    """

    lease: int = -1
    pipelines: set[str] = field(default_factory=set)
    chains: dict[str, str] = field(default_factory=dict)

    def valid_for(self, lease: int) -> KnownParents:
        """This record, emptied first when it was learnt during another lease."""
        if lease != self.lease:
            self.forget()
            self.lease = lease
        return self

    def forget(self) -> None:
        """Drop everything (after a delete, or when the lease changed)."""
        self.pipelines.clear()
        self.chains.clear()

    def knows(self, lease: int, pipeline_id: object, chain_id: object) -> bool:
        """True when the pair is known to be valid during `lease`."""
        return (
            lease == self.lease
            and pipeline_id in self.pipelines
            and (
                chain_id is None
                or (isinstance(chain_id, str) and self.chains.get(chain_id) == pipeline_id)
            )
        )

    def remember(self, lease: int, pipeline_id: str, chain_id: str | None = None) -> None:
        """Record a pipeline (and chain) just written during `lease`."""
        known = self.valid_for(lease)
        known.pipelines.add(pipeline_id)
        if chain_id is not None:
            known.chains[chain_id] = pipeline_id


NaturalKey = tuple[Any, ...]
"""(chain_id, fold_id, partition, model_name, branch_id) within one pipeline."""


def natural_key(
    chain_id: Any, fold_id: Any, partition: Any, model_name: Any, branch_id: Any
) -> NaturalKey:
    """The key nirs4all 0.7.1 replaces a prediction by (within its pipeline).

    No chain is ``""`` (nirs4all's unresolved chain); branch ids compare NULL-safely.
    """
    return (chain_id or "", fold_id, partition, model_name, branch_id)


_PIPELINES_KEPT = 4
"""Pipelines whose keys are kept at once: a run saves into one pipeline at a time, and this
bounds the memory whatever the number of pipelines."""


@dataclass
class NaturalKeys:
    """``{natural key: prediction_id}`` of the pipelines saved into during one lease."""

    lease: int = -1
    pipelines: OrderedDict[str, dict[NaturalKey, str]] = field(default_factory=OrderedDict)

    def forget(self) -> None:
        """Drop everything (after a delete or a bulk save)."""
        self.pipelines.clear()

    def cached(self, lease: int, pipeline_id: str) -> dict[NaturalKey, str] | None:
        """The keys of `pipeline_id` if learnt during `lease` (everything is dropped if not)."""
        if lease != self.lease:
            self.forget()
            self.lease = lease
            return None
        keys = self.pipelines.get(pipeline_id)
        if keys is not None:
            self.pipelines.move_to_end(pipeline_id)
        return keys

    def learn(
        self, lease: int, pipeline_id: str, found: Iterable[tuple[NaturalKey, str]]
    ) -> dict[NaturalKey, str]:
        """Keep the keys just read for `pipeline_id` during `lease`, and return them."""
        if lease != self.lease:
            self.forget()
            self.lease = lease
        keys = self.pipelines[pipeline_id] = dict(found)
        while len(self.pipelines) > _PIPELINES_KEPT:
            self.pipelines.popitem(last=False)
        return keys
