"""What scratch stores leave behind: nothing after close or remove, and what dead processes
left is removed by the next store on the same path, with real processes killed by SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from holdall._core.owners import owner_tag
from holdall.scratch import GenericIOStore, NumpyStore, ScratchStore

SRC = str(Path(__file__).parents[2] / "src")
KINDS = ["numpy", "gio"]


def _make(kind: str, base: Path) -> ScratchStore:
    return NumpyStore(None, base) if kind == "numpy" else GenericIOStore(None, 1.0, base)


def _soa(n: int = 4) -> dict[str, np.ndarray]:
    return {"x": np.arange(n, dtype="f8"), "id": np.arange(n, dtype="i8")}


def _child(code: str, cwd: Path) -> subprocess.Popen[str]:
    """Start a Python child running `code` in `cwd`, with holdall from this checkout."""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))
    )
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


WRITER = """
import os, signal, sys
import numpy as np
from holdall.scratch import GenericIOStore, NumpyStore
stores = [NumpyStore(None, "spill"), GenericIOStore(None, 1.0, "spill")]
for store in stores:
    store["done"] = {"x": np.arange(1000.0)}
    store["deep/er/key"] = {"x": np.arange(10.0)}
print("ready", flush=True)
if sys.argv[-1] == "between":
    os.kill(os.getpid(), signal.SIGKILL)
big = {"x": np.zeros(4 << 20)}
while True:  # killed by the parent in the middle of some write
    for store in stores:
        store["busy"] = big
"""


@pytest.mark.parametrize("when", ["between", "mid-write"])
def test_folders_of_sigkilled_processes_are_removed_by_the_next_store(
    tmp_path: Path, when: str
) -> None:
    child = _child(WRITER.replace("sys.argv[-1]", repr(when)), tmp_path)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
    if when == "mid-write":
        child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    spill = tmp_path / "spill"
    left = sorted(p.name for p in spill.iterdir())
    assert len(left) == 2, left
    assert all(f"p{child.pid}-" in name for name in left), left
    assert any(p.suffix == ".soa" for p in spill.rglob("*"))
    with NumpyStore(None, spill) as store:
        assert list(spill.iterdir()) == []  # the new store makes its folder when it spills
        store["mine"] = _soa()
    assert spill.is_dir()  # the dead store made `spill`, so this one leaves it


def test_folders_of_live_processes_other_hosts_and_foreign_names_are_kept(
    tmp_path: Path,
) -> None:
    live = _child(
        """
        import sys, numpy as np
        from holdall.scratch import NumpyStore
        store = NumpyStore(None, "spill")
        store["k"] = {"x": np.arange(3.0)}
        print(store.temporary_path.name, flush=True)
        sys.stdin.read()
        store.close()
        """,
        tmp_path,
    )
    try:
        assert live.stdout is not None
        live_name = live.stdout.readline().strip()
        spill = tmp_path / "spill"
        other_host = spill / "holdall-scratch-h00000000p1-0123456789ab"
        other_host.mkdir()
        (other_host / "a.rank0.soa").write_bytes(b"x")
        untagged = spill / "holdall-scratch-0123456789ab"
        untagged.mkdir()
        (untagged / "b.gio").write_bytes(b"x")
        with GenericIOStore(None, 1.0, spill):
            pass
        assert (spill / live_name).is_dir()
        assert (other_host / "a.rank0.soa").exists()
        assert (untagged / "b.gio").exists()
    finally:
        live.communicate("", timeout=60)
    assert live.returncode == 0
    assert not (tmp_path / "spill" / live_name).exists()


def _dead_pid() -> int:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(child.stdout)


def test_dead_folder_keeps_what_holdall_did_not_write_and_never_follows_links(
    tmp_path: Path,
) -> None:
    spill = tmp_path / "spill"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.rank0.soa").write_bytes(b"keep")
    tag = owner_tag().replace(f"p{os.getpid()}", f"p{_dead_pid()}")
    dead = spill / f"holdall-scratch-{tag}-0123456789ab"
    (dead / "sub").mkdir(parents=True)
    (dead / "sub" / "k.rank0.soa").write_bytes(b"spilled")
    (dead / ".k.gio.abc123.tmp").write_bytes(b"half")
    (dead / "notes.txt").write_text("mine")
    (dead / "link").symlink_to(outside, target_is_directory=True)
    (dead / "file.gio").symlink_to(outside / "precious.rank0.soa")
    clean = spill / f"holdall-scratch-{tag}-ba9876543210"
    clean.mkdir()
    (clean / "x.gio").write_bytes(b"spilled")
    with NumpyStore(None, spill):
        pass
    assert not clean.exists()
    assert sorted(p.name for p in dead.iterdir()) == ["file.gio", "link", "notes.txt"]
    assert (outside / "precious.rank0.soa").read_bytes() == b"keep"


# ---------------------------------------------------------------- nothing left behind


@pytest.mark.parametrize("kind", KINDS)
def test_removing_the_last_key_removes_the_folders_the_store_made(
    tmp_path: Path, kind: str
) -> None:
    base = tmp_path / "tmp"
    store = _make(kind, base)
    store["pos_0"] = _soa()
    store["a/b/c"] = _soa()
    store.remove("a/b/c")
    assert [p.name for p in store.temporary_path.iterdir()] == [  # type: ignore[union-attr]
        f"pos_0.{'rank0.soa' if kind == 'numpy' else 'gio'}"
    ]
    store.remove("pos_0")
    assert not base.exists()  # the seed's example: nothing left once its key is removed
    store["again"] = _soa(2)  # the folders come back when needed
    np.testing.assert_array_equal(store["again"]["x"], _soa(2)["x"])
    store.close()
    assert not base.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_a_temporary_path_that_existed_or_holds_other_files_stays(
    tmp_path: Path, kind: str
) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    with _make(kind, existing) as store:
        store["k"] = _soa()
    assert existing.is_dir()
    assert list(existing.iterdir()) == []
    made = tmp_path / "made"
    store = _make(kind, made)
    store["k"] = _soa()
    (made / "user.txt").write_text("not holdall's")
    (store.temporary_path / "user.txt").write_text("not holdall's either")  # type: ignore[operator]
    store.close()
    assert sorted(p.relative_to(made).as_posix() for p in made.rglob("*")) == [
        store.temporary_path.name,  # type: ignore[union-attr]
        f"{store.temporary_path.name}/user.txt",  # type: ignore[union-attr]
        "user.txt",
    ]


@pytest.mark.parametrize("ending", ["exit", "gc"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_store_never_closed_deletes_its_files(tmp_path: Path, kind: str, ending: str) -> None:
    make = "NumpyStore(None, 'tmp')" if kind == "numpy" else "GenericIOStore(None, 1.0, 'tmp')"
    child = _child(
        f"""
        import gc, os, numpy as np
        from holdall.scratch import GenericIOStore, NumpyStore
        store = {make}
        store["pos_0"] = {{"x": np.arange(5.0)}}
        assert os.listdir("tmp")
        if {ending!r} == "gc":
            del store
            gc.collect()
            assert not os.path.exists("tmp"), os.listdir("tmp")
        print("ok", flush=True)
        """,
        tmp_path,
    )
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.strip() == "ok", err
    assert list(tmp_path.iterdir()) == []
