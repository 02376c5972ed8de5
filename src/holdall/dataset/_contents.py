"""One-call merge of a list of inputs or folders, and a merged dataset's table of contents.

Used by ``holdall merge`` and the demo; programs call `DatasetMerger` directly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import polars as pl

from holdall.dataset._info import DatasetInfo
from holdall.dataset._merger import DatasetMerger
from holdall.dataset._parts import ARCHIVE_SUFFIX
from holdall.dataset._writer import ATTRIBUTE
from holdall.errors import CorruptedFileError, InvalidValueError

__all__ = ["describe_dataset", "expand_sources", "merge_demo_parts", "merge_stores"]


def expand_sources(paths: list[str]) -> list[str]:
    """Inputs for a merge: each path as given, except a local folder that is not a store,
    which stands for the archives (``*.data``) and stores (``*.zarr``) directly inside it,
    in name order."""
    sources: list[str] = []
    for path in paths:
        folder = Path(path)
        is_store = any((folder / name).exists() for name in ("zarr.json", ".zgroup"))
        if "://" in path or not folder.is_dir() or is_store or folder.name.endswith(".zarr"):
            sources.append(path)
            continue
        found = sorted(
            str(p)
            for p in folder.iterdir()
            if p.name.endswith(ARCHIVE_SUFFIX)
            or (
                p.name.endswith(".zarr")
                and p.is_dir()
                and not Path(f"{p}{ARCHIVE_SUFFIX}").exists()
            )
        )
        if not found:
            raise InvalidValueError(
                f"{path} holds no archives (*.data) or stores (*.zarr) to merge", key=path
            )
        sources.extend(found)
    return sources


def merge_stores(
    paths: list[str],
    out: str | os.PathLike[str],
    *,
    schema: dict[str, Any] | None = None,
    workers: int | None = None,
    append: bool = False,
    stop_on_error: bool = False,
    storage_options: dict[str, Any] | None = None,
    dask_client_params: Any = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Merge `paths` (see `expand_sources`) into ``<out>.dataset``; return the flow record.

    Codes are 0..N-1 in input order, continued after the existing files when appending.
    """
    sources = expand_sources(paths)
    codes = DatasetInfo.build_code_mappings(sources)
    merger = DatasetMerger(
        sources,
        out,
        codes,
        dask_client_params,
        schema=schema,
        workers=workers,
        storage_options=storage_options,
        progress=progress,
    )
    if append and merger.dataset_path.exists():
        first = 1 + max(_dataset_info(merger.dataset_path).get("codes") or [-1])
        merger.file_id_codes = {stem: first + code for stem, code in codes.items()}
    return merger.merge_data(append=append, stop_on_error=stop_on_error)


def _dataset_info(path: Path) -> dict[str, Any]:
    import zarr

    try:
        info = zarr.open_group(str(path), mode="r").attrs.get(ATTRIBUTE)
    except (FileNotFoundError, ValueError) as err:
        raise CorruptedFileError(f"{path} is not a Zarr dataset: {err}", path=str(path)) from err
    if not isinstance(info, dict):
        raise CorruptedFileError(
            f"{path} is not a holdall dataset (no {ATTRIBUTE!r})", path=str(path)
        )
    return info


def describe_dataset(path: str | os.PathLike[str]) -> list[str]:
    """The table of contents of a merged dataset: groups, arrays, rows, tables, as text lines."""
    import zarr

    dataset = Path(path)
    if not dataset.name.endswith(".dataset"):
        dataset = dataset.with_name(f"{dataset.name}.dataset")
    info = _dataset_info(dataset)
    root: Any = zarr.open_group(str(dataset), mode="r")
    lines = [f"dataset {dataset}: {len(info['files'])} files"]
    for group_name in info["plan"]["groups"]:
        group = root[group_name]
        arrays = sorted(group.array_keys())
        primary = info["plan"]["groups"][group_name]["primary_dimension"]
        rows = int(group["file_offsets"][-1]) if "file_offsets" in arrays else 0
        lines.append(f"  {group_name}/  {rows:,} rows along {primary!r}")
        for name in arrays:
            array = group[name]
            dims = ", ".join(array.metadata.dimension_names or ())
            lines.append(f"    {name:26} {array.shape!s:22} {array.dtype!s:8} ({dims})")
    table = DatasetInfo(dataset)
    for label, table_path in (("infoset", table.infoset_path), ("attribset", table.attribset_path)):
        if table_path.exists():
            frame = pl.read_parquet(table_path)
            lines.append(f"  {table_path.name}: {frame.height} rows, columns {frame.columns}")
        else:
            lines.append(f"  {label}: missing ({table_path})")
    return lines


def merge_demo_parts(encoded: Path, out: Path) -> tuple[str, ...]:
    """The demo's step: merge its archives by the ``cad_advanced`` template; return the contents."""
    from holdall.schema import SchemaBuilder

    flow = merge_stores(
        [str(encoded)], out, schema=SchemaBuilder.from_template("cad_advanced").build()
    )
    counts = flow["counts"]
    head = f"merged {counts['merged']} archives into one dataset in {flow['seconds']:.2f} s:"
    return (head, *describe_dataset(flow["dataset"]), f"try: holdall merge {encoded} --out NAME")
