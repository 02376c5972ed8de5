"""Writing the merged ``.dataset``: a Zarr v3 hierarchy, one group per schema group.

Each array is the per-file arrays concatenated in file order along its leading dimension,
written whole chunk by whole chunk (`GrowingArray`: rows wait in a buffer of at most one
chunk per array), so memory is bounded by the chunk sizes. Every group also holds ``file_id_code_<group>``
(each primary row's file code) and ``file_offsets`` (``n_files + 1`` row bounds along the
primary dimension, ``file_offsets_<dim>`` for other leading dimensions), so the rows of
file ``i`` are ``offsets[i]:offsets[i + 1]``. The root holds ``file_id_codes`` and, in its
attributes under ``holdall_dataset``, the file list and the plan (a schema dict).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from holdall._core.keys import check_name_lengths
from holdall.dataset._arrays import GrowingArray, write_group
from holdall.dataset._parts import GroupPlan, PartResult, cast_keeping_values, plan_from_schema
from holdall.errors import CorruptedFileError, InvalidValueError

__all__ = ["ATTRIBUTE", "DatasetWriter", "plan_to_schema"]

#: Root attribute holding the dataset's own description.
ATTRIBUTE = "holdall_dataset"
FORMAT_VERSION = 1
#: Largest uncompressed chunk the merge writes, whatever the row counts asked for.
MAX_CHUNK_BYTES = 2 * 1024 * 1024


def plan_to_schema(plan: list[GroupPlan]) -> dict[str, Any]:
    """The plan as a schema dict (what `plan_from_schema` reads back)."""
    groups: dict[str, Any] = {}
    for group in plan:
        arrays = {}
        for array in group.arrays:
            spec: dict[str, Any] = dict(array.rules)
            if array.dims is not None:
                spec["dims"] = list(array.dims)
            if array.dtype is not None:
                spec["dtype"] = array.dtype
            arrays[array.name] = spec
        groups[group.name] = {"primary_dimension": group.primary_dimension, "arrays": arrays}
        if group.flatten:
            groups[group.name]["special_processing"] = "matrix_flattening"
    return {"groups": groups}


class DatasetWriter:
    """Append files to a ``.dataset`` folder (new, or an existing one to extend)."""

    def __init__(
        self,
        path: Path,
        plan: list[GroupPlan] | None,
        *,
        chunk_rows: Callable[[GroupPlan], int],
        compress: bool,
    ) -> None:
        self.path = path
        self._compress = compress
        self._chunk_rows = chunk_rows
        self._outputs: dict[str, GrowingArray] = {}
        self._root_attributes: dict[str, Any] = {}
        if (path / "zarr.json").exists():
            self._root_attributes = _root_attributes(path)
            info = self._root_attributes.get(ATTRIBUTE)
            if not isinstance(info, dict) or info.get("format_version") != FORMAT_VERSION:
                raise CorruptedFileError(
                    f"{path} is not a holdall dataset (no {ATTRIBUTE!r} root attribute of "
                    f"format {FORMAT_VERSION}); cannot append to it",
                    path=str(path),
                )
            self.files: list[str] = list(info["files"])
            self.codes: list[int] = list(info["codes"])
            self.plan = plan_from_schema(info["plan"])
            self.offsets = {
                g.name: {d: self._read_offsets(g, d) for d in _leading_dimensions(g)}
                for g in self.plan
            }
            self.schema: dict[str, Any] = info.get("schema", {})
        else:
            if path.exists():
                raise CorruptedFileError(
                    f"{path} exists and is not a Zarr group; cannot build a dataset there",
                    path=str(path),
                )
            self.files, self.codes = [], []
            self.plan = plan or []
            self.offsets = {g.name: {d: [0] for d in _leading_dimensions(g)} for g in self.plan}
            self.schema = {}
            for group in self.plan:
                names = [a.name for a in group.arrays] + [f"file_id_code_{group.name}"]
                names += [_offsets_name(group, d) for d in _leading_dimensions(group)]
                for name in names:
                    # Chunk keys below an array: "c/<i>/<j>/..." plus a temporary suffix.
                    check_name_lengths(
                        f"{group.name}/{name}",
                        (group.name, name),
                        root=str(path),
                        extra_path_bytes=64,
                    )
            write_group(path, {})
            for group in self.plan:
                write_group(path / group.name, {})
        self._rows_written = 0

    def _read_offsets(self, group: GroupPlan, dim: str) -> list[int]:
        key = f"{group.name}/{_offsets_name(group, dim)}"
        array = self._existing(key)
        if array is None:
            raise CorruptedFileError(
                f"{self.path}: {key!r} is missing; the dataset is incomplete", path=str(self.path)
            )
        bounds = [int(v) for v in array.read()]
        if len(bounds) != len(self.files) + 1:
            raise CorruptedFileError(
                f"{self.path}: {key!r} has {len(bounds)} bounds for {len(self.files)} files",
                path=str(self.path),
            )
        return bounds

    # ----------------------------------------------------------------- appending

    def check(self, result: PartResult) -> dict[tuple[str, str], np.ndarray[Any, Any]]:
        """`result`'s arrays converted to what the dataset holds; raises before writing anything."""
        ready = {}
        for (group, name), data in result.arrays.items():
            key = f"{group}/{name}"
            existing = self._existing(key)
            if existing is None:
                ready[(group, name)] = data
                continue
            if tuple(existing.shape[1:]) != data.shape[1:]:
                raise InvalidValueError(
                    f"{result.source}: {key!r} rows have shape {data.shape[1:]}, the dataset's "
                    f"have {tuple(existing.shape[1:])}",
                    key=key,
                )
            ready[(group, name)] = cast_keeping_values(data, existing.dtype, key)
        return ready

    def add(self, result: PartResult, code: int) -> None:
        """Append one file with file code `code`; `check` runs first, so a refused file
        (`InvalidValueError`) leaves nothing written."""
        ready = self.check(result)
        for group in self.plan:
            added: dict[str, int] = {}
            for array in group.arrays:
                data = ready.get((group.name, array.name))
                lead = group.leading_dimension(array)
                added.setdefault(lead, 0 if data is None else len(data))
                if data is not None:
                    self._output(group, array.name, data).append(data)
                    self._rows_written += len(data)
            for dim, bounds in self.offsets[group.name].items():
                bounds.append(bounds[-1] + added.get(dim, 0))
            rows = added.get(group.primary_dimension, 0)
            if rows:
                codes = self._codes_output(group)
                codes.append(np.full(rows, code, dtype=np.int64))
        self.files.append(result.stem)
        self.codes.append(code)

    def _existing(self, key: str) -> GrowingArray | None:
        """The output array `key`, opened on first use; None when the dataset has none."""
        if key not in self._outputs:
            folder = self.path / key
            if not (folder / "zarr.json").exists():
                return None
            self._outputs[key] = GrowingArray.open(folder)
        return self._outputs[key]

    def _output(self, group: GroupPlan, name: str, sample: np.ndarray[Any, Any]) -> GrowingArray:
        key = f"{group.name}/{name}"
        array = self._existing(key)
        if array is None:
            plan = next(a for a in group.arrays if a.name == name)
            lead = group.leading_dimension(plan)
            if group.flatten or not plan.dims:
                rest = [f"{name}_dim_{i}" for i in range(1, sample.ndim)]
                if group.flatten and plan.dims:
                    rest = list(plan.dims[2:])
            else:
                rest = list(plan.dims[1:])
            trailing = sample.shape[1:]
            rows = self._rows_per_chunk(group, trailing, sample.dtype)
            array = self._create(key, trailing, sample.dtype, [lead, *rest], rows, sample=sample)
        return array

    def _codes_output(self, group: GroupPlan) -> GrowingArray:
        key = f"{group.name}/file_id_code_{group.name}"
        array = self._existing(key)
        if array is None:
            dtype = np.dtype(np.int64)
            rows = self._rows_per_chunk(group, (), dtype)
            array = self._create(key, (), dtype, [group.primary_dimension], rows)
        return array

    def _rows_per_chunk(
        self, group: GroupPlan, trailing: tuple[int, ...], dtype: np.dtype[Any]
    ) -> int:
        row_bytes = max(1, int(np.prod(trailing, dtype=np.int64)) * dtype.itemsize)
        return max(1, min(self._chunk_rows(group), MAX_CHUNK_BYTES // row_bytes))

    def _create(
        self,
        key: str,
        trailing: tuple[int, ...],
        dtype: np.dtype[Any],
        dims: list[str],
        rows: int,
        *,
        sample: np.ndarray[Any, Any] | None = None,
    ) -> GrowingArray:
        self._outputs[key] = GrowingArray.create(
            self.path / key,
            trailing=trailing,
            dtype=dtype,
            chunk_rows=rows,
            dimension_names=dims,
            compress=self._compress,
            sample=sample,
        )
        return self._outputs[key]

    # ----------------------------------------------------------------- finishing

    def finish(self, *, schema: dict[str, Any], consolidate: bool) -> dict[str, dict[str, int]]:
        """Write what is buffered, the offsets, codes and attributes; return rows per group."""
        for group in self.plan:
            for dim, bounds in self.offsets[group.name].items():
                self._replace(
                    f"{group.name}/{_offsets_name(group, dim)}",
                    np.asarray(bounds, dtype=np.int64),
                    "file_bound",
                )
        self._replace("file_id_codes", np.asarray(self.codes, dtype=np.int64), "file")
        for output in self._outputs.values():
            output.finish()
        self.schema = self.schema or schema
        self._root_attributes[ATTRIBUTE] = {
            "format_version": FORMAT_VERSION,
            "files": self.files,
            "codes": self.codes,
            "plan": plan_to_schema(self.plan),
            "schema": self.schema,
        }
        write_group(self.path, self._root_attributes)
        if consolidate:
            import zarr

            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message="Consolidated metadata", category=UserWarning
                )
                zarr.consolidate_metadata(str(self.path))
        return {
            g.name: {d: bounds[-1] for d, bounds in self.offsets[g.name].items()} for g in self.plan
        }

    def _replace(self, key: str, values: np.ndarray[Any, Any], dim: str) -> None:
        array = self._existing(key)
        if array is None:
            array = self._create(key, (), values.dtype, [dim], max(1, min(len(values), 1 << 20)))
        array.replace_all(values)


def _root_attributes(path: Path) -> dict[str, Any]:
    """The attributes of the dataset's root group, or `CorruptedFileError`."""
    document_path = path / "zarr.json"
    try:
        document = json.loads(document_path.read_bytes())
        attributes = document.get("attributes", {})
    except (OSError, ValueError, AttributeError) as err:
        raise CorruptedFileError(
            f"{document_path} cannot be read as a Zarr group: {err}", path=str(document_path)
        ) from err
    return attributes if isinstance(attributes, dict) else {}


def _leading_dimensions(group: GroupPlan) -> list[str]:
    """The dimensions `group`'s arrays concatenate along, primary first."""
    dims = [group.leading_dimension(a) for a in group.arrays]
    return list(dict.fromkeys([group.primary_dimension, *dims]))


def _offsets_name(group: GroupPlan, dim: str) -> str:
    return "file_offsets" if dim == group.primary_dimension else f"file_offsets_{dim}"
