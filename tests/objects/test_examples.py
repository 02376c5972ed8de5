"""The seed's two examples, with only the imports changed, print what the seed shows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.objects.helpers import child_env

EXAMPLES = Path(__file__).parent / "examples"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
HEX = r"[0-9a-f]{32}"


def run_example(name: str, cwd: Path) -> str:
    cwd.mkdir()
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def test_datastore_example(tmp_path: Path) -> None:
    out = run_example("datastore_01.py", tmp_path / "ex")
    id_experiment = re.search(rf"^ID experiment: ({UUID})$", out, re.M)
    assert id_experiment is not None, out
    listing = out.split("Contents of datastore directory:\n\n")[1].split("--")[0].split()
    folder = f"holdall.datastore/{id_experiment.group(1)}"
    assert listing[:2] == ["holdall.datastore/", folder]
    # mltraq writes one object per DataStore; holdall one per persist (docs/decisions.md).
    assert len(listing) == 3
    assert all(re.fullmatch(rf"{folder}/{HEX}", line) for line in listing[2:])
    assert "a <class 'numpy.ndarray'> [0. 0. 0. 0. 0. 0. 0. 0. 0. 0.]" in out
    assert re.search(r"^b <class 'pandas\..*Series'> \[1 2 3\]$", out, re.M)
    assert "c <class 'int'> 123" in out
    assert (
        list((tmp_path / "ex").iterdir()) == []
    )  # tmpdir_ctx cleaned up and the example wrote nothing here


def test_datastoreio_example(tmp_path: Path) -> None:
    out = run_example("datastore_02.py", tmp_path / "ex")
    found = re.search(rf"^ID experiment: ({UUID})$", out, re.M)
    assert found is not None, out
    prefix = f"self_managed/{found.group(1)}"
    listing = out.split("Contents of datastore directory:\n")[1].split("--")[0].split()
    assert listing[:3] == [
        "holdall.datastore/",
        "holdall.datastore/self_managed",
        f"holdall.datastore/{prefix}",
    ]
    assert sorted(listing[3:]) == sorted(
        f"holdall.datastore/{prefix}/{name}"
        for name in re.findall(rf"file:///{prefix}/({HEX})", out)
    )
    assert re.search(rf"^url_a file:///{prefix}/{HEX}$", out, re.M)
    assert re.search(rf"^url_b file:///{prefix}/{HEX}$", out, re.M)
    assert "a <class 'numpy.ndarray'> [0. 0. 0. 0. 0. 0. 0. 0. 0. 0.]" in out
    assert "b <class 'bytes'> b'11111'" in out
