"""Read and write HACC GenericIO files in pure Python and NumPy.

GenericIO is the file format of the HACC cosmology code: a table of equal-length columns,
written in parallel, where each MPI rank owns one contiguous block of rows and every header
and data block carries a CRC-64. Files written here have the layout and checksums the
reference C++ library writes; files it writes, in either byte order, with older shorter
headers, with block headers and blosc compression, or split into a rank map plus one file per
rank group, are read here.

Writing is collective over a partition (an `mpipartition.Partition`, an mpi4py communicator,
or None for one process); reading is not: any process can read any rank's rows.

Examples
--------
>>> import numpy as np
>>> from holdall.scratch import genericio
>>> path = getfixture("tmp_path") / "halos.gio"
>>> genericio.write(path, {"x": np.arange(4.0), "id": np.arange(4)}, phys_scale=(1.0, 1.0, 1.0))
>>> genericio.read(path, "x")["x"]
array([0., 1., 2., 3.])
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from holdall._core.atomic import temporary_sibling
from holdall._core.optional import import_optional
from holdall.errors import (
    CollectiveMismatchError,
    CorruptedFileError,
    HoldallError,
    InvalidValueError,
    KeyNotFoundError,
    UnsupportedTypeError,
)
from holdall.scratch._crc import RunningCrc, crc64, crc_trailer
from holdall.scratch._gio_format import (
    BLOSC_FILTER,
    Axis,
    Block,
    ByteOrder,
    Header,
    RankEntry,
    Variable,
    encode_header,
    layout_header,
    variable_for,
)
from holdall.scratch._gio_io import map_columns, pwrite_all, read_columns, read_header
from holdall.scratch._partition import Group, SingleProcess, resolve_group

__all__ = [
    "Block",
    "GenericIOFile",
    "Header",
    "RankEntry",
    "Variable",
    "read",
    "source_ranks",
    "write",
]

_NATIVE: ByteOrder = "<" if np.little_endian else ">"
_BYTEORDERS: dict[str, ByteOrder] = {
    "native": _NATIVE,
    "=": _NATIVE,
    "little": "<",
    "<": "<",
    "big": ">",
    ">": ">",
}
_RANK_MAP_VARIABLES = ("$rank", "$partition")


# --------------------------------------------------------------------------- writing


def write(
    path: str | os.PathLike[str],
    data: Mapping[str, Any],
    *,
    partition: object = None,
    byteorder: Literal["native", "little", "big"] = "native",
    compress: bool = False,
    block_headers: bool = False,
    phys_origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    phys_scale: tuple[float, float, float] = (0.0, 0.0, 0.0),
    coordinates: Mapping[str, Axis] | None = None,
    ghosts: Collection[str] = (),
    file_partition: int | None = None,
) -> None:
    """Write this rank's rows of a table to a GenericIO file shared by all ranks.

    Collective: every rank of `partition` calls it with the same column names and dtypes;
    each rank's rows become its own block, in rank order. The file appears at `path` only
    once every rank has written (a temporary name is renamed), so a reader never sees half.

    Parameters
    ----------
    path
        The file to write (in split mode, the rank map; data goes to ``path#<group>``).
    data
        Column name to array: 1-D arrays, or 2-D for a fixed number of elements per row, all
        with the same number of rows (0-d values count as one row). float32, float64 and 8-
        to 64-bit integers.
    partition
        An `mpipartition.Partition`, an mpi4py communicator, or None for one process.
    byteorder
        Byte order of the file; the reference library writes its machine's ("native").
    compress
        Compress each block with blosc (level 9, byte shuffle, as the reference does) where
        that makes it smaller. Needs the ``blosc`` package (``holdall[genericio]``).
    block_headers
        Record one block header per rank and column even without compression (the
        reference's ``GENERICIO_FORCE_BLOCKS``).
    phys_origin, phys_scale
        Origin and extent of the simulated volume, recorded in the global header.
    coordinates
        Columns that hold positions, and along which axis (``{"x": "x"}``).
    ghosts
        Columns whose rows may be ghost copies from a neighbouring rank.
    file_partition
        Split the output: ranks passing the same number write ``path#<number>`` together,
        and `path` becomes a rank map naming each rank's file (the reference's partitions).
        When every rank passes the same number nothing is split: `path` is a plain file,
        as the reference writes it.

    Raises
    ------
    InvalidValueError
        Unequal column lengths, or arrays of more than two dimensions.
    UnsupportedTypeError
        A dtype GenericIO cannot hold, or a bad column name.
    CollectiveMismatchError
        Ranks passed different column names or dtypes, or another rank's data was rejected.
    OSError
        Writing failed on some rank; nothing is left at `path`.
    """
    group = resolve_group(partition)
    order = _parse_byteorder(byteorder)
    # Optional packages on every rank before any collective, so that no rank fails alone
    # (rank 0 writes the rank map by itself) while the others wait for it.
    crc64(b"")
    if compress:
        import_optional("blosc", extra="genericio", purpose="compressing GenericIO blocks")
    variables, columns, _ = agree_columns(
        group,
        data,
        what=f"writing GenericIO file {os.fspath(path)}",
        one_dimensional=False,
        coordinates=coordinates,
        ghosts=ghosts,
    )
    options = _WriteOptions(order, compress, block_headers or compress, phys_origin, phys_scale)
    dims, coords = group.grid()
    target = Path(path)
    if file_partition is None:
        _write_file(group, target, variables, columns, options, group.rank, dims, coords)
        return
    placement = group.allgather((int(file_partition), coords))
    colors = [color for color, _ in placement]
    if len(set(colors)) == 1:  # as the reference: no rank split off, so one plain file
        _write_file(group, target, variables, columns, options, group.rank, dims, coords)
        return
    failure = None
    if group.rank == 0:
        grid = [where for _, where in placement] if group.is_cartesian() else None
        failure = _attempt(lambda: _write_rank_map(target, colors, grid, options))
    failure = group.bcast(failure)
    if failure is not None:
        raise OSError(f"writing the GenericIO rank map {target} failed: {failure}")
    sub = group.split(int(file_partition))
    try:
        local = Path(f"{target}#{int(file_partition)}")
        _write_file(sub, local, variables, columns, options, group.rank, dims, coords)
    finally:
        sub.free()


class _WriteOptions:
    __slots__ = ("blocks", "compress", "order", "origin", "scale")

    def __init__(
        self,
        order: ByteOrder,
        compress: bool,
        blocks: bool,
        origin: tuple[float, float, float],
        scale: tuple[float, float, float],
    ) -> None:
        self.order, self.compress, self.blocks = order, compress, blocks
        self.origin = tuple(float(v) for v in origin)
        self.scale = tuple(float(v) for v in scale)


def agree_columns(
    group: Group,
    data: Mapping[str, Any],
    *,
    what: str,
    one_dimensional: bool,
    coordinates: Mapping[str, Axis] | None = None,
    ghosts: Collection[str] = (),
) -> tuple[list[Variable], dict[str, np.ndarray[Any, Any]], int]:
    """Check this rank's columns, then check all ranks agree; collective.

    Every rank learns whether any rank's data was rejected, so a bad value on one rank
    raises on every rank instead of leaving the others blocked in a later collective.

    Returns
    -------
    variables, columns, nelems
        The column descriptions in rank 0's order, this rank's arrays (0-d promoted to one
        row) and its number of rows.
    """
    local: tuple[tuple[Variable, ...], int] | None = None
    error: HoldallError | None = None
    try:
        variables, columns, nelems = _describe(
            data, one_dimensional=one_dimensional, coordinates=coordinates or {}, ghosts=ghosts
        )
        local = (tuple(variables), nelems)
    except HoldallError as err:
        error = err
    gathered = group.allgather(None if error is not None else local)
    if error is not None:
        raise error
    for rank, item in enumerate(gathered):
        if item is None:
            raise CollectiveMismatchError(f"{what}: rank {rank} rejected its data (see its error)")
    reference = gathered[0][0] if gathered[0] is not None else ()
    expected = {v.name: v for v in reference}
    for rank, item in enumerate(gathered):
        got = {v.name: v for v in item[0]} if item is not None else {}
        if got != expected:
            raise CollectiveMismatchError(
                f"{what}: every rank must pass the same columns and dtypes; rank 0 passed "
                f"{_summary(reference)}, rank {rank} passed {_summary(tuple(got.values()))}"
            )
    return list(reference), columns, nelems


def _summary(variables: tuple[Variable, ...]) -> str:
    return "{" + ", ".join(f"{v.name}: {v.dtype(_NATIVE)}x{v.per_row}" for v in variables) + "}"


def _describe(
    data: Mapping[str, Any],
    *,
    one_dimensional: bool,
    coordinates: Mapping[str, Axis],
    ghosts: Collection[str],
) -> tuple[list[Variable], dict[str, np.ndarray[Any, Any]], int]:
    if not isinstance(data, Mapping):
        raise UnsupportedTypeError(
            f"GenericIO data must be a mapping of column name to array, got {type(data).__name__}",
            got=data,
        )
    unknown = (set(coordinates) | set(ghosts)) - set(data)
    if unknown:
        raise InvalidValueError(
            f"coordinates/ghosts name columns that are not in the data: {sorted(unknown)}",
            got=sorted(unknown),
        )
    columns: dict[str, np.ndarray[Any, Any]] = {}
    variables: list[Variable] = []
    for name, value in data.items():
        if not isinstance(name, str):
            raise UnsupportedTypeError(
                f"GenericIO column names must be str, got {type(name).__name__} {name!r}",
                got=name,
            )
        array = np.asarray(value)
        if array.ndim == 0:
            array = array.reshape(1)
        limit = 1 if one_dimensional else 2
        if array.ndim > limit:
            raise InvalidValueError(
                f"column {name!r} has shape {array.shape}; GenericIO columns must be "
                f"{'1-D' if one_dimensional else '1-D or 2-D'}",
                key=name,
                expected=f"{limit}-D at most",
                got=array.shape,
            )
        per_row = array.shape[1] if array.ndim == 2 else 1
        if per_row == 0:
            raise InvalidValueError(
                f"column {name!r} has zero elements per row", key=name, got=array.shape
            )
        variables.append(
            variable_for(
                name, array.dtype, per_row, phys_coord=coordinates.get(name), ghost=name in ghosts
            )
        )
        columns[name] = array
    lengths = {name: len(array) for name, array in columns.items()}
    if len(set(lengths.values())) > 1:
        raise InvalidValueError(
            f"GenericIO columns must all have the same length, got {lengths}",
            expected="equal lengths",
            got=lengths,
        )
    return variables, columns, next(iter(lengths.values()), 0)


def _parse_byteorder(byteorder: str) -> ByteOrder:
    if byteorder not in _BYTEORDERS:
        raise InvalidValueError(
            f"byteorder must be 'native', 'little' or 'big', got {byteorder!r}", got=byteorder
        )
    return _BYTEORDERS[byteorder]


def _encode_column(
    array: np.ndarray[Any, Any], variable: Variable, options: _WriteOptions
) -> tuple[memoryview, tuple[str, ...]]:
    """The bytes of one block in file order, compressed when asked and worthwhile."""
    ordered = np.ascontiguousarray(array, dtype=variable.dtype(options.order))
    raw = ordered.data.cast("B") if ordered.size else memoryview(b"")
    if not options.compress or not raw.nbytes:
        return raw, ()
    blosc = import_optional("blosc", extra="genericio", purpose="compressing GenericIO blocks")
    if raw.nbytes > blosc.MAX_BUFFERSIZE:
        return raw, ()
    typesize = variable.size if variable.size <= 255 else 1
    packed = blosc.compress(raw, typesize=typesize, clevel=9, shuffle=blosc.SHUFFLE)
    if len(packed) > raw.nbytes:  # the reference keeps such blocks uncompressed
        return raw, ()
    original_crc = struct.pack(options.order + "Q", crc64(raw))
    return memoryview(original_crc + packed), (BLOSC_FILTER,)


def _write_file(
    group: Group,
    target: Path,
    variables: Sequence[Variable],
    columns: Mapping[str, np.ndarray[Any, Any]],
    options: _WriteOptions,
    global_rank: int,
    dims: tuple[int, int, int],
    coords: tuple[int, int, int],
) -> None:
    payloads = [_encode_column(columns[v.name], v, options) for v in variables]
    nelems = len(next(iter(columns.values()))) if columns else 0
    mine = (nelems, coords, global_rank, [p.nbytes for p, _ in payloads], [f for _, f in payloads])
    everyone = group.allgather(mine)
    header = layout_header(
        byteorder=options.order,
        variables=variables,
        nelems=[item[0] for item in everyone],
        coords=[item[1] for item in everyone],
        global_ranks=[item[2] for item in everyone],
        dims=dims,
        phys_origin=options.origin,  # type: ignore[arg-type]
        phys_scale=options.scale,  # type: ignore[arg-type]
        block_sizes=[item[3] for item in everyone] if options.blocks else None,
        block_filters=[item[4] for item in everyone] if options.blocks else None,
    )
    temporary: Path | None = None
    failure: str | None = None
    if group.rank == 0:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = temporary_sibling(target)
            os.truncate(temporary, header.data_end())
        except OSError as err:
            failure = str(err)
    shared = group.bcast((None if temporary is None else str(temporary), failure))
    if shared[1] is not None or shared[0] is None:
        raise OSError(f"cannot create GenericIO file {target}: {shared[1]}")
    name = shared[0]

    def write_blocks() -> None:
        fd = os.open(name, os.O_WRONLY)
        try:
            if group.rank == 0:
                pwrite_all(fd, memoryview(encode_header(header)), 0)
            for index, (payload, _) in enumerate(payloads):
                offset, size, _ = header.extent(group.rank, index)
                running = RunningCrc()
                running.feed(payload)  # checksummed on the worker while it is written
                pwrite_all(fd, payload, offset)
                pwrite_all(fd, memoryview(crc_trailer(running.value())), offset + size)
        finally:
            os.close(fd)

    failures = [f for f in group.allgather(_attempt(write_blocks)) if f is not None]
    if group.rank == 0:
        if not failures:
            renamed = _attempt(lambda: os.replace(name, target))
            failures += [renamed] if renamed is not None else []
        if failures:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
    failures = group.bcast(failures)
    if failures:
        raise OSError(f"writing GenericIO file {target} failed: {'; '.join(failures)}")


def _write_rank_map(
    target: Path,
    colors: Sequence[int],
    grid: Sequence[tuple[int, int, int]] | None,
    options: _WriteOptions,
) -> None:
    """Write the rank map of a split file the way the reference does, from rank 0 alone.

    Its columns are int32 ``$rank`` and ``$partition``, plus ``$x``, ``$y``, ``$z`` (each
    rank's grid coordinates) on a Cartesian communicator. It is a one-rank file written with
    the data files' byte order, compression and block headers, with no physical volume.
    """
    table = {"$rank": np.arange(len(colors)), "$partition": np.asarray(colors)}
    if grid is not None:
        for axis, name in enumerate(("$x", "$y", "$z")):
            table[name] = np.asarray([where[axis] for where in grid])
    table = {name: column.astype(np.int32) for name, column in table.items()}
    variables, columns, _ = _describe(table, one_dimensional=True, coordinates={}, ghosts=())
    map_options = _WriteOptions(
        options.order, options.compress, options.blocks, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)
    )
    _write_file(SingleProcess(), target, variables, columns, map_options, 0, (1, 1, 1), (0, 0, 0))


def _attempt(action: Any) -> str | None:
    """Run `action`; return None, or the OSError it raised as text (to share with ranks)."""
    try:
        action()
    except OSError as err:
        return str(err)
    return None


# --------------------------------------------------------------------------- reading


def source_ranks(n_file_ranks: int, n_ranks: int, rank: int) -> list[int]:
    """The file ranks reader `rank` of `n_ranks` reads when redistributing a file.

    Each reader gets a contiguous run of file ranks; runs differ in length by at most one,
    and the longer runs go to the last readers (rank 0 usually carries more memory already).
    With fewer file ranks than readers, the last readers get one each and the first none.

    Examples
    --------
    >>> [source_ranks(5, 2, r) for r in range(2)]
    [[0, 1], [2, 3, 4]]
    >>> [source_ranks(2, 3, r) for r in range(3)]
    [[], [0], [1]]
    """
    if n_ranks < 1 or not 0 <= rank < n_ranks:
        raise InvalidValueError(f"rank {rank} is not in a group of {n_ranks}", got=rank)
    per, extra = divmod(n_file_ranks, n_ranks)
    first_long = n_ranks - extra
    start = rank * per + max(0, rank - first_long)
    count = per + (1 if rank >= first_long else 0)
    return list(range(start, start + count))


class GenericIOFile:
    """An open GenericIO file (or rank map with its per-group files): header and reads.

    Opening reads and checks every header (CRC, bounds, file sizes) but no data.

    Parameters
    ----------
    path
        The file, or the rank map of a split file.

    Raises
    ------
    FileNotFoundError
        No such file.
    CorruptedFileError
        Not a GenericIO file, or truncated.
    IntegrityError
        A header CRC does not match.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        header = read_header(self.path)
        names = {v.name for v in header.variables}
        self.is_rank_map = set(_RANK_MAP_VARIABLES) <= names and len(header.ranks) == 1
        if not self.is_rank_map:
            self.header = header
            self._sources = [(self.path, header, i) for i in range(len(header.ranks))]
            return
        partitions = read_columns(self.path, header, ["$partition"], [0], verify=True)
        self._sources = []
        files: dict[int, Header] = {}
        seen: dict[int, int] = {}
        for color in (int(c) for c in partitions["$partition"]):
            part = f"{self.path}#{color}"
            if color not in files:
                files[color] = read_header(part)
            index = seen.get(color, 0)
            seen[color] = index + 1
            if index >= len(files[color].ranks):
                raise CorruptedFileError(
                    f"{part} holds {len(files[color].ranks)} ranks but the rank map "
                    f"{self.path} assigns it more",
                    path=part,
                )
            self._sources.append((part, files[color], index))
        self.header = next(iter(files.values())) if files else header

    @property
    def variables(self) -> tuple[Variable, ...]:
        """The columns, in file order."""
        return self.header.variables

    @property
    def num_ranks(self) -> int:
        """Number of ranks that wrote the file (over all files of a split layout)."""
        return len(self._sources)

    def num_elements(self, rank: int | None = None) -> int:
        """Rows written by `rank`, or by all ranks when None."""
        ranks = range(self.num_ranks) if rank is None else [self._check_rank(rank)]
        return sum(self._sources[r][1].ranks[self._sources[r][2]].nelems for r in ranks)

    def _check_rank(self, rank: int) -> int:
        if not 0 <= rank < self.num_ranks:
            raise KeyNotFoundError(
                f"{self.path} has ranks 0 to {self.num_ranks - 1}, not rank {rank}", key=str(rank)
            )
        return rank

    def read(
        self,
        variables: str | Sequence[str] | None = None,
        ranks: int | Sequence[int] | None = None,
        *,
        verify: bool = True,
        mmap: bool = False,
    ) -> dict[str, np.ndarray[Any, Any]]:
        """Read columns of some or all ranks, concatenated in rank order.

        Parameters
        ----------
        variables
            A column name, a list of them, or None for all, in file order.
        ranks
            A file rank, a list of them, or None for all.
        verify
            Check every block's CRC (and the uncompressed CRC of blosc blocks).
        mmap
            Map the file instead of reading it (one rank, uncompressed blocks only); the
            arrays keep the file's byte order.

        Returns
        -------
        dict
            Column name to array, in native byte order unless `mmap`.

        Raises
        ------
        KeyNotFoundError
            An unknown column or rank.
        IntegrityError
            A CRC does not match.
        CorruptedFileError
            A block is cut short or uses an unknown filter.
        """
        names = self._names(variables)
        chosen = (
            list(range(self.num_ranks))
            if ranks is None
            else [self._check_rank(r) for r in ([ranks] if isinstance(ranks, int) else ranks)]
        )
        if not chosen:
            return {
                name: np.empty((0,) if v.per_row == 1 else (0, v.per_row), v.dtype(_NATIVE))
                for name, v in (
                    (n, self.header.variables[self.header.variable_index(n)]) for n in names
                )
            }
        if mmap:
            if len(chosen) != 1:
                raise InvalidValueError(
                    f"mmap reads exactly one rank, got ranks {chosen}", got=chosen
                )
            path, header, index = self._sources[chosen[0]]
            return map_columns(path, header, names, index, verify=verify)
        if len(chosen) == 1:
            path, header, index = self._sources[chosen[0]]
            return read_columns(path, header, names, [index], verify=verify)
        by_file: dict[str, list[int]] = {}
        for rank in chosen:
            by_file.setdefault(self._sources[rank][0], []).append(self._sources[rank][2])
        if len(by_file) == 1:
            path, header, _ = self._sources[chosen[0]]
            return read_columns(path, header, names, by_file[path], verify=verify)
        parts = [
            read_columns(*self._sources[rank][:2], names, [self._sources[rank][2]], verify=verify)
            for rank in chosen
        ]
        return {name: np.concatenate([part[name] for part in parts]) for name in names}

    def _names(self, variables: str | Sequence[str] | None) -> list[str]:
        known = [v.name for v in self.variables]
        if variables is None:
            return known
        wanted = [variables] if isinstance(variables, str) else list(variables)
        for name in wanted:
            if name not in known:
                raise KeyNotFoundError(
                    f"{self.path} has no variable {name!r}; it has {known}", key=name
                )
        return wanted


def read(
    path: str | os.PathLike[str],
    variables: str | Sequence[str] | None = None,
    *,
    ranks: int | Sequence[int] | None = None,
    partition: object = None,
    redistribute: bool = False,
    verify: bool = True,
    mmap: bool = False,
) -> dict[str, np.ndarray[Any, Any]]:
    """Read a GenericIO file: all ranks, chosen ranks, or this process's share.

    Parameters
    ----------
    path
        The file, or the rank map of a split file.
    variables
        A column name, a list of them, or None for all.
    ranks
        File ranks to read (concatenated in rank order); None for all. Not with `partition`.
    partition
        Read this process's share instead: an `mpipartition.Partition` or mpi4py
        communicator. Without `redistribute` the file must have one rank per process and each
        reads its own; with it, file ranks are spread over the processes (`source_ranks`).
        Not collective: processes need not call it together.
    redistribute
        Allow a file written by a different number of ranks than `partition` has.
    verify
        Check every CRC.
    mmap
        Memory-map instead of reading (one rank, uncompressed), arrays in file byte order.

    Returns
    -------
    dict
        Column name to array.

    Raises
    ------
    InvalidValueError
        `ranks` and `partition` together, or a rank-count mismatch without `redistribute`.
    KeyNotFoundError, IntegrityError, CorruptedFileError
        As `GenericIOFile.read`.
    """
    gio = GenericIOFile(path)
    if partition is not None:
        if ranks is not None:
            raise InvalidValueError("pass ranks or partition, not both", got=ranks)
        group = resolve_group(partition)
        if redistribute:
            ranks = source_ranks(gio.num_ranks, group.size, group.rank)
        elif gio.num_ranks != group.size:
            raise InvalidValueError(
                f"{gio.path} was written by {gio.num_ranks} ranks but the partition has "
                f"{group.size}; pass redistribute=True to spread the file over them",
                expected=group.size,
                got=gio.num_ranks,
            )
        else:
            ranks = [group.rank]
    return gio.read(variables, ranks, verify=verify, mmap=mmap)
