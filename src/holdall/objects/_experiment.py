"""Experiments and their runs, as mltraq users write them, persisted through a `Session`.

``experiment.run()`` gives a `Run` whose ``fields`` take any values a record can hold and any
number of DataStores. ``persist()`` writes all its DataStores as one object (a pack) under
``<datastore root>/<experiment id>/`` first, then commits the record that names them, and
only then removes the objects of the previous version: a crash at any point leaves the old
record with its objects, or the new one with its objects.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from holdall._core.locations import Location
from holdall.errors import ExperimentExistsError, InvalidValueError, KeyNotFoundError
from holdall.objects._bunch import Bunch
from holdall.objects._codec import encode_pack
from holdall.objects._container import BlobWriter, write_location
from holdall.objects._datastore import DataStore, PackReader, _allow_pickle
from holdall.objects._fields import decode_fields, encode_fields, scalar_value
from holdall.objects._paths import Root, current_root, new_object_name
from holdall.objects._records import ExperimentRow, RunRow

if TYPE_CHECKING:
    from holdall.objects._session import Session

__all__ = ["Experiment", "Run", "Runs"]

IfExists = Literal["fail", "replace"]
_OBJECT_NAME = re.compile(r"^(\.)?[0-9a-f]{32}(\..*\.tmp)?$")


class Run:
    """One run: an id and its `fields` (a dict with attribute access)."""

    __slots__ = ("fields", "id_experiment", "id_run")

    def __init__(
        self,
        id_experiment: uuid.UUID,
        id_run: uuid.UUID | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        self.id_experiment = id_experiment
        self.id_run = uuid.uuid4() if id_run is None else id_run
        self.fields = Bunch(fields or {})

    def __repr__(self) -> str:
        return f"Run(id_run={str(self.id_run)!r}, fields={sorted(map(str, self.fields))})"


class Runs:
    """The runs of an experiment, in the order they were added.

    Iterating yields `Run` objects; ``runs[0]`` is the first, ``runs[id_run]`` (a UUID or its
    string) the run with that id; ``keys()``, ``values()`` and ``items()`` work as on mltraq's
    dict of runs.
    """

    def __init__(self, runs: list[Run] | None = None) -> None:
        self._runs: dict[uuid.UUID, Run] = {run.id_run: run for run in runs or []}

    def add(self, *runs: Run) -> None:
        """Append runs (a run with an id already present replaces it)."""
        for run in runs:
            self._runs[run.id_run] = run

    def first(self) -> Run:
        """The first run (`KeyNotFoundError` when there is none)."""
        for run in self._runs.values():
            return run
        raise KeyNotFoundError("the experiment has no runs yet; add one with experiment.run()")

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[Run]:
        return iter(list(self._runs.values()))

    def __contains__(self, id_run: object) -> bool:
        try:
            return _as_uuid(id_run) in self._runs
        except (ValueError, TypeError, AttributeError):
            return False

    def __getitem__(self, index: int | str | uuid.UUID) -> Run:
        if isinstance(index, int) and not isinstance(index, bool):
            runs = list(self._runs.values())
            if not -len(runs) <= index < len(runs):
                raise KeyNotFoundError(
                    f"run index {index} out of range for {len(runs)} runs", key=str(index)
                )
            return runs[index]
        try:
            return self._runs[_as_uuid(index)]
        except (KeyError, ValueError, TypeError, AttributeError):
            raise KeyNotFoundError(
                f"no run with id {index!r} in this experiment", key=str(index)
            ) from None

    def keys(self) -> list[uuid.UUID]:
        """The run ids, in order."""
        return list(self._runs)

    def values(self) -> list[Run]:
        """The runs, in order."""
        return list(self._runs.values())

    def items(self) -> list[tuple[uuid.UUID, Run]]:
        """(id, run) pairs, in order."""
        return list(self._runs.items())

    def df(self) -> pl.DataFrame:
        """A polars DataFrame: ``id_run`` and one column per scalar field (None where missing).

        Fields that are not scalars (lists, dicts, DataStores, arrays) are left out; a field
        holding different scalar types across runs is shown as strings.
        """
        columns: dict[str, list[Any]] = {"id_run": [str(run.id_run) for run in self._runs.values()]}
        for position, run in enumerate(self._runs.values()):
            for name, value in run.fields.items():
                ok, plain = scalar_value(value)
                if not ok or not isinstance(name, str) or name == "id_run":
                    continue
                columns.setdefault(name, [None] * len(self._runs))[position] = plain
        series = []
        for name, values in columns.items():
            kinds = {type(value) for value in values if value is not None}
            if len(kinds) > 1 and not kinds <= {int, float}:
                values = [None if value is None else str(value) for value in values]
            series.append(pl.Series(name, values, strict=False))
        return pl.DataFrame(series)

    def __repr__(self) -> str:
        return f"Runs(count={len(self)})"


def _as_uuid(value: object) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def default_name(id_experiment: uuid.UUID) -> str:
    """A short name derived from the id (six hex digits), used when none is given."""
    return hashlib.blake2b(id_experiment.bytes, digest_size=3).hexdigest()


class Experiment:
    """An experiment: an id, a name, `fields` and `runs`, persisted in its session's database.

    Create one with `create_experiment` or ``session.create_experiment``.
    """

    def __init__(
        self,
        session: Session,
        *,
        name: str | None = None,
        id_experiment: uuid.UUID | None = None,
        fields: dict[str, Any] | None = None,
        runs: list[Run] | None = None,
    ) -> None:
        self.session = session
        self.id_experiment = uuid.uuid4() if id_experiment is None else id_experiment
        if name is not None and (not isinstance(name, str) or not name or "\x00" in name):
            raise InvalidValueError(
                f"experiment name must be a non-empty str, got {name!r}",
                key="name",
                expected="str",
                got=name,
            )
        self.name = default_name(self.id_experiment) if name is None else name
        self.fields = Bunch(fields or {})
        self.runs = Runs(runs)

    def __repr__(self) -> str:
        return f'Experiment(name="{self.name}", runs.count={len(self.runs)}, id="{self.id_experiment}")'

    __str__ = __repr__

    @contextlib.contextmanager
    def run(self) -> Iterator[Run]:
        """A new run for a with-block; it joins `runs` when the block ends (even by an error)."""
        run = Run(self.id_experiment)
        try:
            yield run
        finally:
            self.runs.add(run)

    def add_run(self, **fields: Any) -> Run:
        """Add a run with these fields and return it."""
        run = Run(self.id_experiment, fields=fields)
        self.runs.add(run)
        return run

    def persist(
        self, if_exists: IfExists = "fail", *, allow_pickle: bool | None = None
    ) -> Experiment:
        """Write the experiment, its runs and their DataStores; return it.

        Parameters
        ----------
        if_exists
            ``"fail"`` (default, as in mltraq) raises `ExperimentExistsError` when an experiment
            with this name or id is already persisted; ``"replace"`` replaces it.
        allow_pickle
            Pickle DataStore values that have no other encoding (default
            ``datastore.allow_pickle``).
        """
        if if_exists not in ("fail", "replace"):
            raise InvalidValueError(
                f"if_exists must be 'fail' or 'replace', got {if_exists!r}",
                key="if_exists",
                expected="fail or replace",
                got=if_exists,
            )
        if len(self.runs) == 0:
            self.add_run()
        pickle_ok = _allow_pickle(allow_pickle)
        root = current_root()
        folder = (str(self.id_experiment),)
        written: list[str] = []
        # Every DataStore of this persist goes in one object (a pack), named before it is
        # written so the record can refer to its items.
        packed: list[tuple[DataStore, str]] = []
        pack = (*folder, new_object_name())
        pack_url = root.url_of(pack)

        def store(datastore: DataStore, where: str) -> tuple[str, int]:
            packed.append((datastore, where))
            return pack_url, len(packed) - 1

        records = self.session.records
        with records.connect_write() as conn:
            existing = records.find(conn, name=self.name, id_experiment=self.id_experiment)
            if existing and if_exists == "fail":
                raise ExperimentExistsError(
                    f"experiment {self.name!r} (id {existing[0][0]}) is already persisted in "
                    f"{records.url}; pass if_exists='replace' to overwrite it",
                    name=self.name,
                    id_experiment=existing[0][0],
                )
            try:
                row = ExperimentRow(
                    self.id_experiment,
                    self.name,
                    encode_fields(self.fields, where="experiment.fields", store=store),
                )
                runs = [
                    RunRow(
                        run.id_run,
                        encode_fields(run.fields, where=f"runs[{index}].fields", store=store),
                    )
                    for index, run in enumerate(self.runs)
                ]
                if packed:
                    write_location(
                        root.target(pack),
                        lambda handle: encode_pack(
                            BlobWriter(handle), packed, allow_pickle=pickle_ok
                        ),
                    )
                    written.append(pack[-1])
                records.replace(conn, row, runs, remove=[old for old, _ in existing])
            except BaseException:
                _remove_objects(root, folder, keep=set(), only=set(written))
                raise
            # Committed: the previous version's objects are no longer referenced.
            _remove_objects(root, folder, keep=set(written))
            for old, _ in existing:
                if old != self.id_experiment:
                    _remove_objects(root, (str(old),), keep=set())
        return self

    def reload(self, *, allow_pickle: bool | None = None) -> Experiment:
        """Replace name, fields and runs with what is persisted for this id; return self."""
        loaded = self.session.load_experiment(
            id_experiment=self.id_experiment, allow_pickle=allow_pickle
        )
        self.name, self.fields, self.runs = loaded.name, loaded.fields, loaded.runs
        return self

    def delete(self) -> None:
        """Remove the persisted record and the experiment's datastore folder."""
        records = self.session.records
        with records.connect_write() as conn:
            records.delete(conn, self.id_experiment)
            _remove_objects(current_root(), (str(self.id_experiment),), keep=set())

    @classmethod
    def from_rows(
        cls, session: Session, row: ExperimentRow, runs: list[RunRow], *, allow_pickle: bool | None
    ) -> Experiment:
        """Rebuild an experiment from its records, reading its DataStores."""

        with PackReader(allow_pickle=_allow_pickle(allow_pickle)) as packs:

            def load(url: str, index: int | None) -> DataStore:
                if index is None:  # one object per DataStore: written before packs existed
                    return DataStore.from_url(url, allow_pickle=allow_pickle)
                return packs.datastore(url, index)

            fields = decode_fields(row.fields, where=f"experiment {row.name}", load=load)
            loaded = [
                Run(
                    row.id_experiment,
                    run.id_run,
                    decode_fields(run.fields, where=f"run {run.id_run}", load=load),
                )
                for run in runs
            ]
        return cls(
            session, name=row.name, id_experiment=row.id_experiment, fields=fields, runs=loaded
        )


def _remove_objects(
    root: Root, folder: tuple[str, ...], *, keep: set[str], only: set[str] | None = None
) -> None:
    """Remove the objects holdall wrote in `folder` (all but `keep`, or just `only`).

    Names holdall never writes there (a user's own files) are left alone, and the folder is
    removed only when nothing else is left in it.
    """
    location: Location = root.target(folder)
    names = [name for name, _ in location.list_files()] if location.exists() else []
    left = False
    for name in names:
        ours = "/" not in name and _OBJECT_NAME.match(name) is not None
        wanted = name in only if only is not None else name not in keep
        if ours and wanted:
            root.target((*folder, name)).remove()
        else:
            left = True
    if not left and not keep and only is None:
        location.remove()
