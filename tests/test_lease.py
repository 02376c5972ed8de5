"""The DuckDB lease shared by the workspace and the experiment sessions (`holdall._core.lease`)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from holdall._core.lease import ConnectionLease
from holdall._core.locks import InterProcessLock
from holdall.errors import ClosedStorageError


def _lease(db: Path, open_connection: object) -> ConnectionLease:
    return ConnectionLease(
        db,
        what=str(db),
        open_connection=open_connection,  # type: ignore[arg-type]
        closed_error=lambda: ClosedStorageError("closed", path=str(db)),
        lock_timeout_s=1.0,
    )


def _lock_is_free(db: Path) -> bool:
    probe = InterProcessLock(db.with_name(db.name + ".lock"), what="probe")
    try:
        probe.acquire(shared=False, timeout_s=0.0)
    except TimeoutError:
        return False
    probe.release()
    return True


def test_a_failed_open_gives_the_lock_back(tmp_path: Path) -> None:
    db = tmp_path / "file.duckdb"

    def failing() -> duckdb.DuckDBPyConnection:
        raise OSError("disk gone while opening")

    lease = _lease(db, failing)
    with pytest.raises(OSError, match="disk gone"), lease.connection():
        pass
    assert _lock_is_free(db)
    lease._open = lambda: duckdb.connect(str(db))  # the next lease works
    with lease.connection() as conn:
        assert conn.execute("SELECT 1").fetchall() == [(1,)]
    lease.close()
    assert _lock_is_free(db)


def test_an_interrupt_after_the_lock_was_taken_gives_it_back(tmp_path: Path) -> None:
    """Ctrl-C while leaving the queue, the lock already taken: the lock is not left held."""
    db = tmp_path / "file.duckdb"
    lease = _lease(db, lambda: duckdb.connect(str(db)))

    @contextlib.contextmanager
    def interrupted_on_leaving(timeout_s: float, describe: object) -> Iterator[float]:
        yield timeout_s
        raise KeyboardInterrupt

    lease._queue.turn = interrupted_on_leaving  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt), lease.connection():
        pass
    assert _lock_is_free(db)
    assert not lease.held
    lease.close()


def test_a_cursor_is_closed_with_the_lease(tmp_path: Path) -> None:
    db = tmp_path / "file.duckdb"
    lease = _lease(db, lambda: duckdb.connect(str(db)))
    cursor = lease.open_cursor()
    reader = cursor.read(
        lambda: cursor.cursor.sql("SELECT * FROM range(100000)").to_arrow_reader(10)
    )
    cursor.attach(reader)
    assert cursor.read(reader.read_next_batch).num_rows == 10
    lease.close()
    with pytest.raises(ClosedStorageError):
        cursor.read(reader.read_next_batch)
    # Nothing of the closed lease keeps the file open: another process opens it.
    done = subprocess.run(
        [sys.executable, "-c", f"import duckdb; duckdb.connect({str(db)!r}).close()"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
