"""``holdall merge`` in a pipe and on a terminal, and the demo's merged dataset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from holdall.cli import main
from holdall.schema import SchemaBuilder
from tests.dataset.conftest import assert_merged, make_inputs

ROOT = Path(__file__).resolve().parents[2]


def test_merge_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sources, parts = make_inputs(tmp_path / "in", 3)
    schema_file = tmp_path / "schema.json"
    SchemaBuilder.from_template("cad_basic").save_to_file(schema_file)
    assert (
        main(
            [
                "merge",
                str(tmp_path / "in"),
                "--schema",
                str(schema_file),
                "--out",
                str(tmp_path / "cad"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "merged 3 of 3 inputs" in out
    assert "faces/  " in out
    assert "face_normals" in out
    assert "cad.infoset: 3 rows" in out
    assert_merged(tmp_path / "cad.dataset", parts, [0, 1, 2])
    # Appending continues the codes; a bad input is reported and makes the exit status 1.
    more, more_parts = make_inputs(tmp_path / "more", 2, seed=8)
    renamed = [str(Path(s).with_name(f"extra_{Path(s).name}")) for s in more]
    for old, new in zip(more, renamed, strict=True):
        os.rename(old, new)
    broken = tmp_path / "broken.zarr.data"
    broken.write_bytes(b"junk")
    status = main(
        [
            "merge",
            *renamed,
            str(broken),
            "--out",
            str(tmp_path / "cad"),
            "--append",
            "--schema",
            "cad_basic",
        ]
    )
    assert status == 1
    out = capsys.readouterr().out
    assert "merged 2 of 3 inputs" in out
    assert f"skipped {broken}" in out
    assert_merged(tmp_path / "cad.dataset", [*parts, *more_parts], [0, 1, 2, 3, 4])


def test_merge_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sources, _ = make_inputs(tmp_path / "in", 1)
    assert (
        main(["merge", *sources, "--out", str(tmp_path / "x"), "--schema", "cad_everything"]) == 2
    )
    assert "neither a schema JSON file nor a template" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["merge", str(tmp_path / "empty"), "--out", str(tmp_path / "x")]) == 2
    assert "holds no archives" in capsys.readouterr().err
    assert main(["merge", *sources, "--out", str(tmp_path / "x")]) == 0
    assert main(["merge", *sources, "--out", str(tmp_path / "x")]) == 2
    assert "--append" in capsys.readouterr().err


def test_progress_bar_on_a_terminal_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_inputs(tmp_path / "in", 2)
    assert main(["merge", str(tmp_path / "in"), "--out", str(tmp_path / "a")]) == 0
    piped = capsys.readouterr()
    assert piped.err == "", "no progress bar when stderr is not a terminal"
    assert "merged 2 of 2 inputs" in piped.out
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    command = [sys.executable, "-m", "holdall.cli", "merge", str(tmp_path / "in")]
    leader, follower = os.openpty()
    try:
        done = subprocess.run(
            [*command, "--out", str(tmp_path / "b")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=follower,
            check=True,
            timeout=120,
        )
        os.close(follower)
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
    assert b"merge:" in drawn
    assert b"2/2" in drawn
    assert b"merged 2 of 2 inputs" in done.stdout


def test_demo_merge_step(tmp_path: Path) -> None:
    """The demo's parts (saved without a schema) merge by the cad_advanced template."""
    import numpy as np
    import zarr

    from holdall.dataset import merge_demo_parts
    from holdall.demo import make_part
    from holdall.storage import OptStorage

    rng = np.random.default_rng(1)
    parts = [make_part(rng) for _ in range(3)]
    for index, part in enumerate(parts):
        with OptStorage(tmp_path / "encoded" / f"part_{index:04d}.zarr") as storage:
            for key, value in part.items():
                if key != "file_label":
                    storage.save_data(key, value)
            storage.save_metadata("file_label", part["file_label"])
            storage.compress_store()
    lines = merge_demo_parts(tmp_path / "encoded", tmp_path / "dataset" / "parts")
    assert lines[0].startswith("merged 3 archives")
    assert any("face_uv_grids" in line and "(face, u, v, uv_channel)" in line for line in lines)
    root = zarr.open_group(str(tmp_path / "dataset" / "parts.dataset"), mode="r")
    np.testing.assert_array_equal(
        root["faces/face_uv_grids"][...],
        np.concatenate([p["faces"]["face_uv_grids"] for p in parts]),
    )
    np.testing.assert_array_equal(
        root["graph/num_nodes"][...], [p["graph"]["num_nodes"] for p in parts]
    )
