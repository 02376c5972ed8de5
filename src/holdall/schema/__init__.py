"""Schemas for per-file stores: `SchemaBuilder`, validation rules and metadata routing (seed 001)."""

from __future__ import annotations

from holdall.schema._builder import SPECIAL_PROCESSING, SchemaBuilder, SchemaGroup
from holdall.schema._rules import (
    RULE_NAMES,
    Route,
    check_rules,
    metadata_block,
    metadata_problem,
    route_metadata,
)

__all__ = [
    "RULE_NAMES",
    "SPECIAL_PROCESSING",
    "Route",
    "SchemaBuilder",
    "SchemaGroup",
    "check_rules",
    "metadata_block",
    "metadata_problem",
    "route_metadata",
]
