"""The holdall command, run as a user would: a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from holdall import OptStorage


def _holdall(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "holdall.cli", *args], capture_output=True, text=True, check=False
    )


def test_demo_info_convert_compress(tmp_path: Path) -> None:
    demo = _holdall("demo", "--out", str(tmp_path / "demo"), "--parts", "5")
    assert demo.returncode == 0, demo.stderr
    assert "encoded 5 parts" in demo.stdout
    archives = sorted((tmp_path / "demo" / "encoded").glob("*.zarr.data"))
    assert len(archives) == 5
    assert (
        tmp_path / "demo" / "json" / "part_0000" / "data" / "faces" / "face_areas.json"
    ).is_file()

    info = _holdall("info", str(archives[0]))
    assert info.returncode == 0, info.stderr
    assert "face_uv_grids" in info.stdout
    assert "blosc" in info.stdout
    assert "file_label" in info.stdout

    converted = _holdall("convert", str(archives[0]), str(tmp_path / "copy_json"), "--quiet")
    assert converted.returncode == 0, converted.stderr
    back = _holdall(
        "convert", str(tmp_path / "copy_json"), str(tmp_path / "back.zarr"), "--quiet", "--compress"
    )
    assert back.returncode == 0, back.stderr
    with (
        OptStorage(archives[0].with_suffix("")) as original,
        OptStorage(tmp_path / "back.zarr") as copy,
    ):
        np.testing.assert_array_equal(
            original.load_data("faces/face_uv_grids"), copy.load_data("faces/face_uv_grids")
        )

    with OptStorage(tmp_path / "plain.zarr") as store:
        store.save_data("x", np.arange(3))
    compressed = _holdall("compress", str(tmp_path / "plain.zarr"))
    assert compressed.returncode == 0, compressed.stderr
    assert (tmp_path / "plain.zarr.data").is_file()


def test_errors_are_reported_without_traceback(tmp_path: Path) -> None:
    result = _holdall("info", str(tmp_path / "missing.zarr"))
    assert result.returncode == 2
    assert "holdall: error:" in result.stderr
    assert "Traceback" not in result.stderr
