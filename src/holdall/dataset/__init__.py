"""Merged datasets: many per-file stores into one Zarr dataset with Parquet tables (seed 001)."""

from __future__ import annotations

from holdall.dataset._contents import describe_dataset, merge_demo_parts, merge_stores
from holdall.dataset._info import DatasetInfo
from holdall.dataset._merger import DatasetMerger

__all__ = [
    "DatasetInfo",
    "DatasetMerger",
    "describe_dataset",
    "merge_demo_parts",
    "merge_stores",
]
