"""Writing the merged ``.dataset``: a Zarr v3 hierarchy, one group per schema group.

Each array is the per-file arrays concatenated in file order along its leading dimension,
written whole chunk by whole chunk (rows wait in a buffer of at most one chunk per array),
so memory is bounded by the chunk sizes. Every group also holds ``file_id_code_<group>``
(each primary row's file code) and ``file_offsets`` (``n_files + 1`` row bounds along the
primary dimension, ``file_offsets_<dim>`` for other leading dimensions), so the rows of
file ``i`` are ``offsets[i]:offsets[i + 1]``. The root holds ``file_id_codes`` and, in its
attributes under ``holdall_dataset``, the file list and the plan (a schema dict).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from holdall._core.keys import check_name_lengths
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


class _ArrayOut:
    """One output array, appended to in whole chunks."""

    def __init__(self, array: Any, chunk_rows: int) -> None:
        self.array = array
        self.chunk_rows = chunk_rows
        self.written = int(array.shape[0])
        self.pending: list[np.ndarray[Any, Any]] = []
        self.pending_rows = 0

    @property
    def rows(self) -> int:
        return self.written + self.pending_rows

    def append(self, block: np.ndarray[Any, Any]) -> None:
        if not len(block):
            return
        self.pending.append(block)
        self.pending_rows += len(block)
        if self.pending_rows >= self.chunk_rows:
            self.flush(final=False)

    def flush(self, *, final: bool) -> None:
        if not self.pending:
            return
        data = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        end = self.written + len(data)
        stop = end if final else (end // self.chunk_rows) * self.chunk_rows
        if stop <= self.written:
            return
        self.array.resize((stop, *self.array.shape[1:]))
        self.array[self.written : stop] = data[: stop - self.written]
        rest = data[stop - self.written :]
        self.pending = [rest] if len(rest) else []
        self.pending_rows = len(rest)
        self.written = stop


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
        import zarr
        from zarr.codecs import BloscCodec, Crc32cCodec

        self.path = path
        self._zarr = zarr
        self._compressors = (
            [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec()]
            if compress
            else [Crc32cCodec()]
        )
        self._chunk_rows = chunk_rows
        existing = (path / "zarr.json").exists()
        self.root: Any = zarr.open_group(str(path), mode="r+" if existing else "w-", zarr_format=3)
        self._outputs: dict[str, _ArrayOut] = {}
        if existing:
            info = self.root.attrs.get(ATTRIBUTE)
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
        self._rows_written = 0

    def _read_offsets(self, group: GroupPlan, dim: str) -> list[int]:
        key = f"{group.name}/{_offsets_name(group, dim)}"
        try:
            bounds = [int(v) for v in self.root[key][...]]
        except KeyError as err:
            raise CorruptedFileError(
                f"{self.path}: {key!r} is missing; the dataset is incomplete", path=str(self.path)
            ) from err
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

    def _existing(self, key: str) -> Any:
        if key in self._outputs:
            return self._outputs[key].array
        try:
            return self.root[key]
        except KeyError:
            return None

    def _output(self, group: GroupPlan, name: str, sample: np.ndarray[Any, Any]) -> _ArrayOut:
        key = f"{group.name}/{name}"
        if key not in self._outputs:
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
                array = self._create(group, key, sample.shape[1:], sample.dtype, [lead, *rest])
            self._outputs[key] = _ArrayOut(array, int(array.chunks[0]))
        return self._outputs[key]

    def _codes_output(self, group: GroupPlan) -> _ArrayOut:
        key = f"{group.name}/file_id_code_{group.name}"
        if key not in self._outputs:
            array = self._existing(key)
            if array is None:
                array = self._create(group, key, (), np.dtype(np.int64), [group.primary_dimension])
            self._outputs[key] = _ArrayOut(array, int(array.chunks[0]))
        return self._outputs[key]

    def _create(
        self,
        group: GroupPlan,
        key: str,
        trailing: tuple[int, ...],
        dtype: np.dtype[Any],
        dims: list[str],
    ) -> Any:
        row_bytes = max(1, int(np.prod(trailing, dtype=np.int64)) * dtype.itemsize)
        rows = max(1, min(self._chunk_rows(group), MAX_CHUNK_BYTES // row_bytes))
        return self.root.create_array(
            key,
            shape=(0, *trailing),
            chunks=(rows, *trailing),
            dtype=dtype,
            dimension_names=dims,
            compressors=self._compressors,
            fill_value=0,
        )

    # ----------------------------------------------------------------- finishing

    def finish(self, *, schema: dict[str, Any], consolidate: bool) -> dict[str, dict[str, int]]:
        """Write what is buffered, the offsets, codes and attributes; return rows per group."""
        for output in self._outputs.values():
            output.flush(final=True)
        for group in self.plan:
            for dim, bounds in self.offsets[group.name].items():
                self._replace(
                    f"{group.name}/{_offsets_name(group, dim)}",
                    np.asarray(bounds, dtype=np.int64),
                    "file_bound",
                )
        self._replace("file_id_codes", np.asarray(self.codes, dtype=np.int64), "file")
        self.schema = self.schema or schema
        self.root.attrs[ATTRIBUTE] = {
            "format_version": FORMAT_VERSION,
            "files": self.files,
            "codes": self.codes,
            "plan": plan_to_schema(self.plan),
            "schema": self.schema,
        }
        if consolidate:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message="Consolidated metadata", category=UserWarning
                )
                self._zarr.consolidate_metadata(str(self.path))
        return {
            g.name: {d: bounds[-1] for d, bounds in self.offsets[g.name].items()} for g in self.plan
        }

    def _replace(self, key: str, values: np.ndarray[Any, Any], dim: str) -> None:
        array = self._existing(key)
        if array is None:
            array = self.root.create_array(
                key,
                shape=values.shape,
                chunks=(max(1, min(len(values), 1 << 20)),),
                dtype=values.dtype,
                dimension_names=[dim],
                compressors=self._compressors,
                fill_value=0,
            )
        else:
            array.resize(values.shape)
        array[...] = values


def _leading_dimensions(group: GroupPlan) -> list[str]:
    """The dimensions `group`'s arrays concatenate along, primary first."""
    dims = [group.leading_dimension(a) for a in group.arrays]
    return list(dict.fromkeys([group.primary_dimension, *dims]))


def _offsets_name(group: GroupPlan, dim: str) -> str:
    return "file_offsets" if dim == group.primary_dimension else f"file_offsets_{dim}"
