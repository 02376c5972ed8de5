"""`DatasetInfo`: the per-file metadata of a merge as two Parquet tables (seed 001).

``<name>.infoset`` has one row per file: ``name`` (the file stem), ``id`` (its file code),
``description``, ``subset`` and one column per file-level field. ``<name>.attribset`` is the
categorical metadata in long form, one row per (field, file): ``table_name`` (the field),
``id`` (the file code), ``name`` (the value, as text) and ``description`` (the value's label
when the schema defines labels, else the field's description). Each field goes where the
store recorded its route when it was saved, else where the schema routes it.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from holdall._core.atomic import atomic_write_bytes
from holdall._core.jsoncodec import from_json
from holdall.dataset._parts import file_stem
from holdall.errors import CorruptedFileError, InvalidValueError
from holdall.schema._rules import metadata_block, metadata_definition, route_metadata
from holdall.storage.base import ROUTING_METADATA_KEY, SCHEMA_METADATA_KEY, SIZES_METADATA_KEY

__all__ = ["DatasetInfo"]

_INTERNAL = frozenset({SCHEMA_METADATA_KEY, SIZES_METADATA_KEY, ROUTING_METADATA_KEY})
_RESERVED_COLUMNS = ("name", "id", "description", "subset")


def _leaves(metadata: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in metadata.items():
        name = f"{prefix}{key}"
        if not prefix and key in _INTERNAL:
            continue
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, f"{name}/")
        else:
            yield name, value.tolist() if hasattr(value, "tolist") else value


def _cell(value: Any) -> Any:
    """A table cell: scalars as they are, anything else as JSON text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, default=str)


def _column(values: list[Any]) -> pl.Series:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pl.Series(values, dtype=pl.Boolean)
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pl.Series(values, dtype=pl.Int64)
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pl.Series([None if v is None else float(v) for v in values], dtype=pl.Float64)
    return pl.Series([None if v is None else str(v) for v in values], dtype=pl.String)


class DatasetInfo:
    """Collect per-file metadata and write the ``.infoset`` and ``.attribset`` of a dataset.

    Parameters
    ----------
    merged_store_path
        The dataset, ``<name>.dataset`` (or ``<name>``): the tables go beside it as
        ``<name>.infoset`` and ``<name>.attribset``.
    info_dir
        A ``files_summary`` folder (the JSON that ``OptStorage.close`` writes per file), read
        by `parse_info_files`.
    schema
        Schema dict used to route fields a store did not record a route for, and for the
        definitions (required fields, labels).
    """

    def __init__(
        self,
        merged_store_path: str | os.PathLike[str],
        info_dir: str | os.PathLike[str] | None = None,
        schema: dict[str, Any] | None = None,
    ) -> None:
        path = Path(merged_store_path)
        stem = path.name.removesuffix(".dataset")
        self.infoset_path = path.with_name(f"{stem}.infoset")
        self.attribset_path = path.with_name(f"{stem}.attribset")
        self.info_dir = None if info_dir is None else Path(info_dir)
        self.schema = schema or {}
        self._rows: list[dict[str, Any]] = []
        self._attributes: list[dict[str, Any]] = []

    @staticmethod
    def build_code_mappings(files: Sequence[str | os.PathLike[str]]) -> dict[str, int]:
        """Map each input's file stem to its code, 0..N-1 in input order.

        Raises
        ------
        InvalidValueError
            Two inputs share a stem (their rows could not be told apart).
        """
        codes: dict[str, int] = {}
        for source in files:
            stem = file_stem(source)
            if stem in codes:
                raise InvalidValueError(
                    f"two inputs have the file stem {stem!r} ({os.fspath(source)} and an earlier "
                    "one); rename one so every file has its own code",
                    key=stem,
                )
            codes[stem] = len(codes)
        return codes

    def parse_info_files(
        self, file_id_codes: Mapping[str, int] | None = None
    ) -> dict[str, list[str]]:
        """Add every ``<stem>.json`` of `info_dir` (those in `file_id_codes`, when given).

        Files are taken in code order (or name order without codes). Returns the missing
        required fields per stem, like `add_file`.
        """
        if self.info_dir is None:
            raise InvalidValueError("DatasetInfo was made without an info_dir to parse")
        found = {p.stem: p for p in sorted(self.info_dir.glob("*.json"))}
        if file_id_codes is None:
            file_id_codes = {stem: code for code, stem in enumerate(found)}
        missing: dict[str, list[str]] = {}
        for stem, code in sorted(file_id_codes.items(), key=lambda item: item[1]):
            if stem not in found:
                raise InvalidValueError(
                    f"no {stem}.json in {self.info_dir} (the summaries there: {sorted(found)[:10]})",
                    key=stem,
                )
            try:
                metadata = from_json(json.loads(found[stem].read_text(encoding="utf-8")))
            except (OSError, ValueError) as err:
                raise CorruptedFileError(
                    f"{found[stem]} is not valid JSON: {err}", path=str(found[stem])
                ) from err
            missing[stem] = self.add_file(stem, code, metadata)
        return missing

    def add_file(self, stem: str, code: int, metadata: Mapping[str, Any]) -> list[str]:
        """Add one file's metadata; return the required fields it lacks (it is added anyway)."""
        block = metadata_block(self.schema or metadata.get(SCHEMA_METADATA_KEY) or {})
        routes = metadata.get(ROUTING_METADATA_KEY) or {}
        row: dict[str, Any] = {
            "name": stem,
            "id": code,
            "description": _cell(metadata.get("description", "")),
            "subset": _cell(metadata.get("subset", "")),
        }
        for name, value in _leaves(metadata):
            if name in ("description", "subset"):
                continue
            route = routes.get(name) or route_metadata(block, name, value)
            if route == "file_level":
                row[name if name not in _RESERVED_COLUMNS else f"meta_{name}"] = _cell(value)
            else:
                self._attributes.append(
                    {
                        "table_name": name,
                        "id": code,
                        "name": value if isinstance(value, str) else json.dumps(value, default=str),
                        "description": _describe(block, name, value),
                    }
                )
        self._rows.append(row)
        present = {name for name, _ in _leaves(metadata)}
        return sorted(
            name
            for route in ("file_level", "categorical")
            for name, definition in block[route].items()
            if definition.get("required") and name not in present
        )

    def tables(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(infoset, attribset) as polars DataFrames, from what was added so far."""
        columns = list(dict.fromkeys(c for row in self._rows for c in row))
        for name in _RESERVED_COLUMNS:
            if name not in columns:
                columns.insert(_RESERVED_COLUMNS.index(name), name)
        infoset = pl.DataFrame(
            [_column([row.get(c) for row in self._rows]).alias(c) for c in columns]
        )
        infoset = infoset.with_columns(pl.col("id").cast(pl.Int64))
        attribset = pl.DataFrame(
            {
                "table_name": [a["table_name"] for a in self._attributes],
                "id": [a["id"] for a in self._attributes],
                "name": [a["name"] for a in self._attributes],
                "description": [a["description"] for a in self._attributes],
            },
            schema={
                "table_name": pl.String,
                "id": pl.Int64,
                "name": pl.String,
                "description": pl.String,
            },
        )
        return infoset, attribset

    def store_info_to_parquet(
        self,
        infoset_path: str | os.PathLike[str] | None = None,
        attribset_path: str | os.PathLike[str] | None = None,
        *,
        previous: tuple[pl.DataFrame, pl.DataFrame] | None = None,
    ) -> tuple[Path, Path]:
        """Write both tables (after the rows of `previous`, when appending), atomically."""
        infoset, attribset = self.tables()
        if previous is not None:
            infoset = pl.concat([previous[0], infoset], how="diagonal_relaxed")
            attribset = pl.concat([previous[1], attribset], how="diagonal_relaxed")
        targets = (
            Path(infoset_path or self.infoset_path),
            Path(attribset_path or self.attribset_path),
        )
        for frame, target in zip((infoset, attribset), targets, strict=True):
            buffer = io.BytesIO()
            frame.write_parquet(buffer)
            atomic_write_bytes(target, buffer.getvalue())
        return targets


def _describe(block: Mapping[str, Any], name: str, value: Any) -> str:
    defined = metadata_definition(block, name)
    if defined is None:
        return ""
    definition = defined[1]
    values, labels = definition.get("values"), definition.get("labels")
    if values is not None and labels is not None and value in values:
        return str(labels[list(values).index(value)])
    return str(definition.get("description", ""))
