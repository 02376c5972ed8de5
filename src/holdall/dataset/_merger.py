"""`DatasetMerger`: thousands of per-file stores into one dataset (seed 001's second half).

Files are read in parallel (local processes by default, a Dask cluster on request) and
written in input order by this process, a bounded number of files ahead, so memory is
bounded by the chunk sizes and that window, not by the number of files. Everything is built
in a work folder ``.<name>.merge-<owner>.tmp`` beside the output and renamed into place at
the end: a crash leaves no half-written dataset under the final name, and the next merge
there removes the work folders of dead processes.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl

from holdall._core.atomic import atomic_write_bytes
from holdall._core.locations import parse_location
from holdall._core.optional import import_optional
from holdall._core.owners import owner_is_dead, owner_tag
from holdall._core.progress import progress as progress_bar
from holdall.dataset._info import DatasetInfo
from holdall.dataset._parts import (
    GroupPlan,
    PartResult,
    file_stem,
    infer_plan,
    open_part,
    plan_from_schema,
    read_part,
)
from holdall.dataset._writer import DatasetWriter, plan_to_schema
from holdall.errors import ArchiveExistsError, InvalidValueError, MergeError

__all__ = ["DatasetMerger"]


class DatasetMerger:
    """Merge per-file stores or archives into ``<name>.dataset`` with its tables and flow.

    Parameters
    ----------
    zip_files
        The inputs, in order: archives (``part.zarr.data``), directory stores
        (``part.zarr``), or ``s3://`` URLs of either.
    merged_store_path
        Where the dataset goes: ``out/name`` or ``out/name.dataset`` (a local folder). Beside
        it come ``name.infoset``, ``name.attribset`` (Parquet) and ``name.flow`` (JSON).
    file_id_codes
        Each input's file stem mapped to its integer code, as
        `DatasetInfo.build_code_mappings` returns it.
    dask_client_params
        A ``dask.distributed.Client``, or keyword arguments to make one (closed afterwards);
        None reads with local processes.
    delete_source_files
        Delete the archives that were merged, once the dataset is complete (never by
        default; directory stores are never deleted).
    schema
        Schema dict to merge by; by default the schema stored with the first readable input,
        or one inferred from its array names when it has none.
    workers
        Local reader processes; 1 reads in this process. By default one less than the CPU
        count (at most 8), or this process alone for up to 16 inputs or on fewer than 4 CPUs,
        where starting processes and copying their results costs more than it saves.
    storage_options
        fsspec options for ``s3://`` inputs.
    progress
        Draw a progress bar on stderr.
    """

    def __init__(
        self,
        zip_files: Sequence[str | os.PathLike[str]],
        merged_store_path: str | os.PathLike[str],
        file_id_codes: Mapping[str, int],
        dask_client_params: Any = None,
        delete_source_files: bool = False,
        *,
        schema: dict[str, Any] | None = None,
        workers: int | None = None,
        storage_options: dict[str, Any] | None = None,
        progress: bool = False,
    ) -> None:
        if isinstance(zip_files, str | os.PathLike):
            raise InvalidValueError(
                "zip_files must be a list of inputs, got a single path", got=os.fspath(zip_files)
            )
        self.sources = [os.fspath(source) for source in zip_files]
        target = Path(merged_store_path)
        stem = target.name.removesuffix(".dataset")
        if not stem:
            raise InvalidValueError(
                f"merged_store_path needs a name, got {os.fspath(merged_store_path)!r}"
            )
        self.dataset_path = target.with_name(f"{stem}.dataset")
        self.flow_path = target.with_name(f"{stem}.flow")
        self.stem = stem
        self.file_id_codes = dict(file_id_codes)
        missing = [file_stem(s) for s in self.sources if file_stem(s) not in self.file_id_codes]
        if missing:
            raise InvalidValueError(
                f"file_id_codes has no code for {missing[:5]} ({len(missing)} input(s)); build it "
                "with DatasetInfo.build_code_mappings(zip_files)",
                key=missing[0],
            )
        stems = [file_stem(s) for s in self.sources]
        if len(set(stems)) != len(stems):
            duplicate = next(s for s in stems if stems.count(s) > 1)
            raise InvalidValueError(f"two inputs have the file stem {duplicate!r}", key=duplicate)
        codes = [self.file_id_codes[s] for s in stems]
        if len(set(codes)) != len(codes) or not all(isinstance(c, int) for c in codes):
            raise InvalidValueError(
                "file_id_codes must give every input its own integer code", got=codes[:10]
            )
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise InvalidValueError(f"workers must be a positive int, got {workers!r}", got=workers)
        self.dask_client_params = dask_client_params
        self.delete_source_files = delete_source_files
        self.schema = schema
        if workers is None:
            cpus = os.cpu_count() or 1
            # Reader processes pay a start and a pickled copy of every array; on fewer than 4
            # CPUs that costs more than reading beside the writer (measured: docs/benchmarks.md).
            workers = 1 if len(self.sources) <= 16 or cpus < 4 else min(cpus - 1, 8)
        self.workers = workers
        self.storage_options = storage_options
        self.progress = progress

    # ----------------------------------------------------------------- merge

    def merge_data(
        self,
        face_chunk: int = 500000,
        edge_chunk: int = 500000,
        faceface_flat_chunk: int = 100000,
        batch_size: int | None = None,
        consolidate_metadata: bool = True,
        force_compression: bool = True,
        use_streaming: bool = True,
        *,
        append: bool = False,
        stop_on_error: bool = False,
    ) -> dict[str, Any]:
        """Merge the inputs and return the flow record (also written to ``<name>.flow``).

        Parameters
        ----------
        face_chunk, edge_chunk, faceface_flat_chunk
            Rows per chunk along ``face``, ``edge`` and flattened face-pair dimensions (other
            groups use `face_chunk`); a chunk never exceeds 2 MiB uncompressed.
        batch_size
            Files read ahead of the writer (default: twice the readers).
        consolidate_metadata
            Write consolidated Zarr metadata, so a reader opens the dataset in one read.
        force_compression
            Compress chunks (Blosc-LZ4); False stores them raw. Both carry crc32c checksums.
        use_streaming
            False reads every input before writing (faster for a few files, memory unbounded).
        append
            Add the inputs to an existing dataset without rewriting its chunks.
        stop_on_error
            Abort on the first bad input (`MergeError`) instead of recording and skipping it.

        Raises
        ------
        ArchiveExistsError
            The dataset exists and `append` is False.
        MergeError
            An input failed with `stop_on_error`; nothing is written under the final names.
        """
        for name, value in (
            ("face_chunk", face_chunk),
            ("edge_chunk", edge_chunk),
            ("faceface_flat_chunk", faceface_flat_chunk),
        ):
            if not isinstance(value, int) or value < 1:
                raise InvalidValueError(
                    f"{name} must be a positive int, got {value!r}", key=name, got=value
                )
        if self.dataset_path.exists() and not append:
            raise ArchiveExistsError(
                f"{self.dataset_path} already exists; pass append=True (holdall merge --append) to add "
                "files to it, or remove it first",
                path=str(self.dataset_path),
            )
        started = time.time()
        parent = self.dataset_path.parent
        parent.mkdir(parents=True, exist_ok=True)
        self._remove_dead_work_folders(parent)
        work = parent / f".{self.stem}.merge-{owner_tag()}.tmp"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            flow = self._merge_into(
                work,
                append=append and self.dataset_path.exists(),
                chunk_rows={"face": face_chunk, "edge": edge_chunk, "flat": faceface_flat_chunk},
                window=batch_size,
                consolidate=consolidate_metadata,
                compress=force_compression,
                streaming=use_streaming,
                stop_on_error=stop_on_error,
            )
            flow["started"] = started
            flow["seconds"] = round(time.time() - started, 3)
            self._publish(work, flow)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return flow

    def _merge_into(
        self,
        work: Path,
        *,
        append: bool,
        chunk_rows: dict[str, int],
        window: int | None,
        consolidate: bool,
        compress: bool,
        streaming: bool,
        stop_on_error: bool,
    ) -> dict[str, Any]:
        building = work / "dataset"
        if append:
            _link_tree(self.dataset_path, building)
        plan, schema = (None, self.schema or {}) if append else self._discover_plan()
        writer = DatasetWriter(
            building, plan, chunk_rows=lambda g: _rows_for(g, chunk_rows), compress=compress
        )
        plan = writer.plan
        schema = writer.schema or schema
        info = DatasetInfo(self.dataset_path, schema=schema)
        previous = self._previous_tables() if append else None
        errors: dict[str, str] = {}
        warnings: dict[str, list[str]] = {}
        merged: list[str] = []
        read_seconds = 0.0
        known, used_codes = set(writer.files), set(writer.codes)
        results = self._results(plan, window)
        if not streaming:
            results = iter(list(results))
        for result in progress_bar(
            results, total=len(self.sources), label="merge", enabled=self.progress
        ):
            read_seconds += result.seconds
            error = result.error
            code = self.file_id_codes[result.stem]
            if error is None and result.stem in known:
                error = f"the dataset already holds a file with stem {result.stem!r}"
            if error is None and code in used_codes:
                error = f"file code {code} is already used in the dataset"
            if error is None:
                try:
                    writer.add(result, code)  # checks everything before it writes anything
                except InvalidValueError as err:
                    error = f"{type(err).__name__}: {err}"
            if error is not None:
                errors[result.source] = error
                if stop_on_error:
                    raise MergeError(f"cannot merge {result.source}: {error}", errors=errors)
                continue
            known.add(result.stem)
            used_codes.add(code)
            merged.append(result.source)
            missing = info.add_file(result.stem, code, result.metadata)
            if missing:
                warnings[result.source] = [f"required metadata missing: {name}" for name in missing]
        rows = writer.finish(schema=schema or plan_to_schema(plan), consolidate=consolidate)
        info.store_info_to_parquet(
            work / "infoset.parquet", work / "attribset.parquet", previous=previous
        )
        return {
            "name": self.stem,
            "dataset": str(self.dataset_path),
            "appended": append,
            "counts": {
                "inputs": len(self.sources),
                "merged": len(merged),
                "skipped": len(errors),
                "files_in_dataset": len(writer.files),
            },
            "rows": rows,
            "timings": {"read_seconds_total": round(read_seconds, 3)},
            "errors": errors,
            "warnings": warnings,
            "merged": merged,
            "deleted": [],
        }

    def _discover_plan(self) -> tuple[list[GroupPlan], dict[str, Any]]:
        """The plan from the given schema, else from the first input that opens."""
        if self.schema:
            return plan_from_schema(self.schema), self.schema
        for source in self.sources:
            try:
                with open_part(source, self.storage_options) as storage:
                    schema = storage.get_schema()
                    return (
                        (plan_from_schema(schema), schema) if schema else (infer_plan(storage), {})
                    )
            except Exception:  # a bad input is reported when it is read; try the next one
                continue
        return [], {}

    def _previous_tables(self) -> tuple[pl.DataFrame, pl.DataFrame] | None:
        info = DatasetInfo(self.dataset_path)
        if not (info.infoset_path.exists() and info.attribset_path.exists()):
            return None
        return pl.read_parquet(info.infoset_path), pl.read_parquet(info.attribset_path)

    # ----------------------------------------------------------------- reading

    def _results(self, plan: list[GroupPlan], window: int | None) -> Iterator[PartResult]:
        """Each input's `PartResult`, in input order, at most `window` files ahead.

        The default window is twice the readers (local processes or Dask workers).
        """
        tasks = [(i, source, plan, self.storage_options) for i, source in enumerate(self.sources)]
        if self.dask_client_params is not None:
            yield from self._dask_results(tasks, window)
        elif self.workers == 1 or len(tasks) <= 1:
            for task in tasks:
                yield read_part(*task)
        else:
            context = multiprocessing.get_context("forkserver")
            with ProcessPoolExecutor(max_workers=self.workers, mp_context=context) as pool:
                yield from _windowed(
                    lambda task: pool.submit(read_part, *task), tasks, window or 2 * self.workers
                )

    def _dask_results(
        self, tasks: list[tuple[Any, ...]], window: int | None
    ) -> Iterator[PartResult]:
        distributed = import_optional("dask.distributed", extra="dask", purpose="merging on Dask")
        params = self.dask_client_params
        owned = not isinstance(params, distributed.Client)
        if owned and not isinstance(params, Mapping):
            raise InvalidValueError(
                "dask_client_params must be a dask.distributed.Client or a dict of Client "
                f"arguments, got {type(params).__name__}",
                got=params,
            )
        client = distributed.Client(**params) if owned else params
        try:
            readers = max(1, len(client.scheduler_info().get("workers", {})))
            yield from _windowed(
                lambda task: client.submit(read_part, *task, pure=False),
                tasks,
                window or 2 * readers,
            )
        finally:
            if owned:
                client.close()

    # ----------------------------------------------------------------- publishing

    def _publish(self, work: Path, flow: dict[str, Any]) -> None:
        """Rename the tables and the dataset into place, delete sources if asked, write the flow."""
        info = DatasetInfo(self.dataset_path)
        os.replace(work / "infoset.parquet", info.infoset_path)
        os.replace(work / "attribset.parquet", info.attribset_path)
        if flow["appended"]:
            # Two renames: a crash between them leaves the old dataset as the retired folder,
            # which the next merge here renames back (see _remove_dead_work_folders).
            retired = self._retired_path(owner_tag())
            os.rename(self.dataset_path, retired)
            os.rename(work / "dataset", self.dataset_path)
            shutil.rmtree(retired)
        else:
            if self.dataset_path.exists():
                raise ArchiveExistsError(
                    f"{self.dataset_path} appeared while merging; the merge is left in {work}",
                    path=str(self.dataset_path),
                )
            os.rename(work / "dataset", self.dataset_path)
        if self.delete_source_files:
            for source in flow["merged"]:
                location = parse_location(source, storage_options=self.storage_options)
                if source.rstrip("/").endswith(".data") and not location.is_dir():
                    location.remove()
                    flow["deleted"].append(source)
        previous = _read_flow(self.flow_path) if flow["appended"] else []
        atomic_write_bytes(
            self.flow_path,
            json.dumps({"runs": [*previous, flow]}, indent=2, default=str).encode(),
            temp_dir=work,
        )

    def _retired_path(self, owner: str) -> Path:
        return self.dataset_path.with_name(f".{self.stem}.dataset.retired-{owner}")

    def _remove_dead_work_folders(self, parent: Path) -> None:
        """Remove what merges of dead processes left; put back a dataset an append retired."""
        for retired in parent.glob(f".{self.stem}.dataset.retired-*"):
            if owner_is_dead(retired.name):
                if self.dataset_path.exists():
                    shutil.rmtree(retired, ignore_errors=True)
                else:
                    os.rename(retired, self.dataset_path)
        for leftover in parent.glob(f".{self.stem}.merge-*.tmp"):
            if owner_is_dead(leftover.name):
                shutil.rmtree(leftover, ignore_errors=True)


def _rows_for(group: GroupPlan, chunk_rows: dict[str, int]) -> int:
    if group.flatten:
        return chunk_rows["flat"]
    return chunk_rows.get(group.primary_dimension, chunk_rows["face"])


def _windowed(submit: Any, tasks: list[tuple[Any, ...]], window: int) -> Iterator[PartResult]:
    """Submit `tasks` keeping at most `window` in flight; yield results in task order."""
    pending: deque[Future[PartResult] | Any] = deque()
    queue = iter(tasks)
    for task in queue:
        pending.append(submit(task))
        if len(pending) >= window:
            break
    while pending:
        result = pending.popleft().result()
        for task in queue:
            pending.append(submit(task))
            break
        yield result


def _read_flow(path: Path) -> list[Any]:
    with contextlib.suppress(OSError, ValueError):
        runs = json.loads(path.read_text()).get("runs")
        if isinstance(runs, list):
            return runs
    return []


def _link_tree(source: Path, target: Path) -> None:
    """Copy folder `source` to `target` as hard links (no data copied).

    Safe because every writer here (zarr-python, holdall) replaces files by rename and never
    writes into an existing one, so the original keeps its bytes.
    """
    for folder, _dirs, files in os.walk(source):
        relative = Path(folder).relative_to(source)
        (target / relative).mkdir(parents=True, exist_ok=True)
        for name in files:
            os.link(Path(folder) / name, target / relative / name)
