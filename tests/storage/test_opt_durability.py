"""OptStorage never loses an acknowledged value: crashes during and between calls, real processes.

Each child process is a real interpreter that runs a few storage calls and then dies by
``SIGKILL`` at a chosen point (or simply exits); the parent reopens the store and checks that
what was acknowledged (flushed, packed) is there, complete, and that nothing is half-written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from holdall import OptStorage
from holdall.errors import HoldallWarning, InvalidKeyError, StorageLockedError

SMALL_OLD = "np.arange(10, dtype=np.int32)"
SMALL_NEW = "np.arange(20, dtype=np.int32) * 3"
LARGE_OLD = "np.arange(600_000, dtype=np.float64)"
LARGE_NEW = "np.arange(700_000, dtype=np.float64) * 2"


def _run(code: str, *, expect_kill: bool = True) -> None:
    """Run `code` in a new interpreter; it ends with SIGKILL unless `expect_kill` is False."""
    script = (
        "import os, signal\nimport numpy as np\nfrom holdall import OptStorage\n"
        + textwrap.dedent(code)
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    if expect_kill:
        assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    else:
        assert result.returncode == 0, result.stderr.decode()


KILL = "os.kill(os.getpid(), signal.SIGKILL)"


@pytest.mark.parametrize(("old", "new"), [(SMALL_OLD, SMALL_NEW), (LARGE_OLD, LARGE_NEW)])
def test_overwriting_a_flushed_key_then_crashing_keeps_the_old_value(
    tmp_path: Path, old: str, new: str
) -> None:
    path = tmp_path / "s.zarr"
    _run(
        f"""
        s = OptStorage({str(path)!r})
        s.save_data("a", {old})
        s.flush()
        s.save_data("a", {new})
        {KILL}
        """
    )
    with OptStorage(path) as store:
        np.testing.assert_array_equal(store.load_data("a"), eval(old))


@pytest.mark.parametrize("crash_at", range(1, 12))
def test_a_crash_at_any_step_of_a_commit_leaves_the_old_or_the_new_state(
    tmp_path: Path, crash_at: int
) -> None:
    """Kill the writer at the n-th rename of its second flush: reopen sees one whole state."""
    path = tmp_path / "s.zarr"
    _run(
        f"""
        s = OptStorage({str(path)!r})
        s.save_data("a", np.arange(5))
        s.save_data("g/x", np.ones(3))
        s.save_data("big", {LARGE_OLD})
        s.save_metadata("version", 1)
        s.flush()
        s.save_data("a", np.arange(7))
        s.delete_data("g/x")
        s.save_data("g/y", np.zeros(2))
        s.save_data("big", {LARGE_NEW})
        s.save_metadata("version", 2)
        calls = [0]
        real_replace = os.replace
        def replace(src, dst):
            calls[0] += 1
            if calls[0] == {crash_at}:
                {KILL}
            return real_replace(src, dst)
        os.replace = replace
        s.flush()
        os.replace = real_replace
        s.close()
        {KILL}
        """
    )
    with OptStorage(path) as store:
        version = store.load_metadata("version")
        if version == 1:
            assert sorted(store.get_keys()) == ["a", "big", "g"]
            np.testing.assert_array_equal(store.load_data("a"), np.arange(5))
            assert sorted(store.load_data("g")) == ["x"]
            np.testing.assert_array_equal(store.load_data("big"), eval(LARGE_OLD))
        else:
            assert version == 2
            np.testing.assert_array_equal(store.load_data("a"), np.arange(7))
            assert sorted(store.load_data("g")) == ["y"]
            np.testing.assert_array_equal(store.load_data("big"), eval(LARGE_NEW))
    assert not (path / ".holdall").exists(), "the next writer removes what the dead one left"


def test_the_archive_wins_over_the_stale_folder_it_superseded(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    _run(
        f"""
        s = OptStorage({str(path)!r})
        s.save_data("a", np.arange(3))
        s.flush()
        s.save_data("a", np.arange(4))
        s.save_data("b", np.ones(2))
        s.compress_store()
        {KILL}
        """
    )
    with pytest.warns(HoldallWarning, match="newer and complete"):
        store = OptStorage(path)
    with store:
        assert store.read_only
        np.testing.assert_array_equal(store.load_data("a"), np.arange(4))
        np.testing.assert_array_equal(store.load_data("b"), np.ones(2))
    with OptStorage(path, mode="r+") as store:
        store.save_data("c", 1)
        store.compress_store()
    with OptStorage(path) as store:
        assert store.get_keys() == ["a", "b", "c"]


def test_a_folder_flushed_after_the_archive_wins_over_it(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    _run(
        f"""
        s = OptStorage({str(path)!r})
        s.save_data("a", np.arange(3))
        s.compress_store()
        s.save_data("b", np.ones(2))
        s.flush()
        {KILL}
        """
    )
    with OptStorage(path) as store:
        assert not store.read_only
        assert store.get_keys() == ["a", "b"]


@pytest.mark.parametrize("how", ["exit", "gc"])
def test_a_store_never_closed_is_written_at_exit_or_collection(tmp_path: Path, how: str) -> None:
    path = tmp_path / "s.zarr"
    ending = f"del s; import gc; gc.collect(); {KILL}" if how == "gc" else ""
    _run(
        f"""
        s = OptStorage({str(path)!r})
        s.save_data("small", np.arange(4))
        s.save_data("large", {LARGE_OLD})
        s.save_metadata("note", "kept")
        {ending}
        """,
        expect_kill=how == "gc",
    )
    with OptStorage(path) as store:
        assert store.get_keys() == ["large", "small"]
        np.testing.assert_array_equal(store.load_data("large"), eval(LARGE_OLD))
        assert store.load_metadata("note") == "kept"
    assert not (path / ".holdall").exists()


def test_the_seed_convert_example_that_never_closes_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "saved_data"
    _run(
        f"""
        from holdall import MemoryStorage, convert_storage
        mem = MemoryStorage()
        mem.save_data("faces/positions", np.array([[0, 0, 0], [1, 1, 1]]))
        opt = OptStorage({str(path)!r})
        convert_storage(mem, opt)
        """,
        expect_kill=False,
    )
    with OptStorage(path) as store:
        np.testing.assert_array_equal(store.load_data("faces/positions"), [[0, 0, 0], [1, 1, 1]])


@pytest.mark.parametrize("key", ["x" * 300, "/".join(["deep" * 50] * 30), "ok/" + "é" * 200])
def test_a_key_the_filesystem_cannot_hold_is_refused_before_anything_is_written(
    tmp_path: Path, key: str
) -> None:
    path = tmp_path / "s.zarr"
    with OptStorage(path) as store:
        store.save_data("kept", 1)
        with pytest.raises(InvalidKeyError, match="bytes"):
            store.save_data(key, np.arange(1_000_000))
        with pytest.raises(InvalidKeyError):
            store.save_data("g", {"y" * 300: 1})
        assert store.get_keys() == ["kept"]
    with OptStorage(path) as store:
        assert store.get_keys() == ["kept"]


def test_a_second_writer_waits_then_gets_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    ready = tmp_path / "ready"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time, numpy as np
                from pathlib import Path
                from holdall import OptStorage
                with OptStorage({str(path)!r}) as s:
                    s.save_data("first", np.arange(3))
                    Path({str(ready)!r}).touch()
                    time.sleep(3)
                """
            ),
        ]
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.02)
        with pytest.raises(StorageLockedError, match="being written by process"):
            OptStorage(path, lock_timeout=0.2)
        with OptStorage(path, lock_timeout=60) as store:  # waits for the child's close
            store.save_data("second", np.arange(2))
    finally:
        child.wait(timeout=60)
    with OptStorage(path) as store:
        assert store.get_keys() == ["first", "second"]


def test_two_processes_compressing_one_store_keep_both_sides(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    code = """
        import sys
        s = OptStorage({path!r}, mode="r+" if {index} else "a", lock_timeout=120)
        s.save_data("k{index}", np.full(5, {index}))
        s.compress_store()
        s.close()
        """
    with OptStorage(path) as store:
        store.save_data("base", 0)
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import numpy as np\nfrom holdall import OptStorage\n"
                + textwrap.dedent(code.format(path=str(path), index=index)),
            ]
        )
        for index in (1, 2)
    ]
    for child in children:
        assert child.wait(timeout=120) == 0
    with OptStorage(path) as store:
        assert store.get_keys() == ["base", "k1", "k2"]


def test_a_killed_compress_leaves_no_temporary_archive_after_the_next_open(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    _run(
        f"""
        from holdall._core import locations
        s = OptStorage({str(path)!r})
        s.save_data("a", {LARGE_OLD})
        def die(self, local_file, *, fsync=False):
            {KILL}
        locations.LocalLocation.put_file = die
        s.compress_store()
        """
    )
    leftovers = [p for p in path.rglob(".holdall*") if p.is_file()]
    assert any(p.suffix == ".tmp" for p in leftovers), "the dead writer left its temporary archive"
    with OptStorage(path) as store:
        assert store.get_keys() == []
    assert not [p for p in path.rglob(".holdall*")], (
        "the next writer removed what the dead one left"
    )
    assert not os.path.exists(str(path) + ".data")
