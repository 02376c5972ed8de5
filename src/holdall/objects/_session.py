"""Sessions: where experiments are persisted, listed and loaded back (mltraq's ``create_session``).

``create_session("duckdb:///experiments.duckdb")`` keeps experiments in that DuckDB file;
``create_session()`` uses the ``database.url`` option, by default an in-memory database that
lives as long as the session (mltraq's default is an in-memory SQLite database).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import polars as pl

from holdall.errors import InvalidValueError, KeyNotFoundError
from holdall.objects._experiment import Experiment
from holdall.objects._options import options
from holdall.objects._records import RecordStore

__all__ = ["Session", "create_experiment", "create_session", "load_experiment"]


class Session:
    """A connection to one experiments database (a DuckDB file, or in memory).

    Parameters
    ----------
    url
        ``duckdb:///relative/path.duckdb``, ``duckdb:////absolute/path.duckdb``, a plain path,
        or ``duckdb:///:memory:``; default the ``database.url`` option.
    lock_timeout_s
        How long a writer waits for another process's write to finish; default the
        ``database.lock_timeout_s`` option.
    """

    def __init__(
        self, url: str | os.PathLike[str] | None = None, *, lock_timeout_s: float | None = None
    ) -> None:
        self.records = RecordStore(
            options().get("database.url", prefer=url),
            lock_timeout_s=float(options().get("database.lock_timeout_s", prefer=lock_timeout_s)),
        )

    @property
    def url(self) -> str:
        """The database, as a session URL."""
        return self.records.url

    def __repr__(self) -> str:
        return f"Session(url={self.url!r})"

    def create_experiment(self, name: str | None = None, **fields: Any) -> Experiment:
        """A new experiment bound to this session (not persisted until ``persist()``)."""
        return Experiment(self, name=name, fields=fields)

    def load_experiment(
        self,
        name: str | None = None,
        id_experiment: uuid.UUID | str | None = None,
        *,
        allow_pickle: bool | None = None,
    ) -> Experiment:
        """The persisted experiment with this name or id, with its runs and DataStores.

        Raises
        ------
        KeyNotFoundError
            When no experiment has this name or id.
        """
        if (name is None) == (id_experiment is None):
            raise InvalidValueError(
                "load_experiment takes either a name or an id_experiment",
                key="name",
                expected="name or id_experiment",
                got=(name, id_experiment),
            )
        if id_experiment is not None and not isinstance(id_experiment, uuid.UUID):
            try:
                id_experiment = uuid.UUID(str(id_experiment))
            except ValueError as err:
                raise KeyNotFoundError(
                    f"{id_experiment!r} is not an experiment id (a UUID)", key=str(id_experiment)
                ) from err
        # The objects are read under the lease too: no other process can replace them meanwhile.
        with self.records.connect_read() as conn:
            found = self.records.load(conn, name=name, id_experiment=id_experiment)
            if found is None:
                what = f"name {name!r}" if name is not None else f"id {id_experiment}"
                raise KeyNotFoundError(
                    f"no experiment with {what} in {self.url}", key=str(name or id_experiment)
                )
            row, runs = found
            return Experiment.from_rows(self, row, runs, allow_pickle=allow_pickle)

    def ls(self) -> pl.DataFrame:
        """The persisted experiments: ``id_experiment``, ``name``, ``run_count``, ``persisted_at``."""
        with self.records.connect_read() as conn:
            return self.records.ls(conn)

    def close(self) -> None:
        """Release the database (an in-memory one, and its experiments, are gone)."""
        self.records.close()


def create_session(
    url: str | os.PathLike[str] | None = None, *, lock_timeout_s: float | None = None
) -> Session:
    """A `Session` on `url` (default: the ``database.url`` option)."""
    return Session(url, lock_timeout_s=lock_timeout_s)


def create_experiment(
    name: str | None = None, url: str | os.PathLike[str] | None = None, **fields: Any
) -> Experiment:
    """A new experiment in a new session on `url` (mltraq's shortcut)."""
    return Session(url).create_experiment(name=name, **fields)


def load_experiment(
    name: str | None = None,
    id_experiment: uuid.UUID | str | None = None,
    *,
    url: str | os.PathLike[str] | None = None,
    allow_pickle: bool | None = None,
) -> Experiment:
    """Load a persisted experiment by name or id from the database at `url`."""
    return Session(url).load_experiment(name, id_experiment, allow_pickle=allow_pickle)
