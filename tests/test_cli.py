"""The holdall command, run as a user would: a real process."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import zarr

import holdall
from holdall import OptStorage
from holdall.demo import FOLDS, HELD_OUT_FRACTION, MIN_PARTS, PIPELINES, part_sample, run_demo
from holdall.workspace import WorkspaceStore, replay_chain

PARTS = 15


def _holdall(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "holdall.cli", *args], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One ``holdall demo`` run shared by the tests below: its output folder and stdout."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    result = _holdall("demo", "--out", str(out), "--parts", str(PARTS))
    assert result.returncode == 0, result.stderr
    return out, result.stdout


def test_demo_info_convert_compress(demo: tuple[Path, str], tmp_path: Path) -> None:
    out, stdout = demo
    assert f"encoded {PARTS} parts" in stdout
    archives = sorted((out / "encoded").glob("*.zarr.data"))
    assert len(archives) == PARTS
    assert (out / "json" / "part_0000" / "data" / "faces" / "face_areas.json").is_file()

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


def test_demo_records_replays_and_exports_the_best_chain(demo: tuple[Path, str]) -> None:
    out, stdout = demo
    with WorkspaceStore(out / "workspace", read_only=True) as store:
        runs = store.list_runs()
        assert runs["status"].to_list() == ["completed"]
        run = store.get_run(runs["run_id"][0])
        assert run is not None
        pipelines = store.list_pipelines(run_id=run["run_id"])
        assert pipelines["name"].to_list() == [spec.name for spec in PIPELINES]
        assert set(pipelines["status"]) == {"completed"}
        predictions = store.query_predictions(run_id=run["run_id"])
        per_cell = predictions.group_by("pipeline_id", "fold_id", "partition").len()
        assert per_cell.height == len(PIPELINES) * FOLDS * 2
        assert set(per_cell["len"]) == {1}
        assert set(predictions["partition"]) == {"val", "test"}
        assert predictions["val_score"].is_finite().all()
        best = pipelines.filter(pl.col("name") == run["summary"]["best_pipeline"]).row(
            0, named=True
        )
        assert best["best_val"] == pipelines["best_val"].min()
        chain = store.get_chain(run["summary"]["best_chain"])
        assert chain is not None
        assert chain["pipeline_id"] == best["pipeline_id"]
        assert len(chain["fold_artifacts"]) == FOLDS
        tests = store.query_predictions(pipeline_id=best["pipeline_id"], partition="test")
        arrays = list(store.load_prediction_arrays(tests["prediction_id"].to_list()).values())
        top = store.top_predictions(5)
    held = arrays[0]["sample_indices"]
    y_true = arrays[0]["y_true"]
    assert held is not None
    assert y_true is not None
    assert len(held) == len(y_true) == round(PARTS * HELD_OUT_FRACTION)
    for fold in arrays[1:]:
        np.testing.assert_array_equal(fold["sample_indices"], held)
    fold_mean = np.mean([a["y_pred"] for a in arrays], axis=0)

    # Replay the exported bundle here, in another process than the demo, as a user would:
    # features read back from the held-out parts' archives.
    features = []
    for index in held:
        with OptStorage(out / "encoded" / f"part_{index:04d}.zarr") as storage:
            features.append(part_sample(storage)[0])
    replayed = replay_chain(out / "best_chain.n4a", X=np.stack(features))
    np.testing.assert_allclose(replayed, fold_mean, rtol=1e-12)
    rmse = float(np.sqrt(np.mean((replayed - y_true) ** 2)))
    assert rmse == pytest.approx(best["best_test"], rel=1e-12)
    assert f"replayed on the {len(held)} held-out parts: RMSE {rmse:.4f}" in stdout
    assert f"exported: {out / 'best_chain.n4a'}" in stdout

    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("top 5 predictions"))
    for line, row in zip(lines[start + 2 : start + 7], top.iter_rows(named=True), strict=True):
        assert row["model_name"] in line
        assert f"{row['val_score']:.4f}" in line
    assert f"next: holdall workspace {out / 'workspace'} top" in stdout


def test_demo_refuses_too_few_parts_and_a_missing_extra(tmp_path: Path) -> None:
    few = _holdall("demo", "--out", str(tmp_path / "few"), "--parts", "5")
    assert few.returncode == 2
    assert "at least 10 parts" in few.stderr
    block_joblib = (
        "import sys; sys.modules['joblib'] = None; "
        "from holdall.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    missing = subprocess.run(
        [sys.executable, "-c", block_joblib, "demo", "--out", str(tmp_path / "bare")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2
    assert "pip install 'holdall[workspace]'" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert not (tmp_path / "bare").exists()  # refused before writing anything


def test_errors_are_reported_without_traceback(tmp_path: Path) -> None:
    result = _holdall("info", str(tmp_path / "missing.zarr"))
    assert result.returncode == 2
    assert "holdall: error:" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_runs_again_into_the_same_folder(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    run_demo(out, MIN_PARTS)
    (out / "notes.txt").write_text("mine")
    run_demo(out, MIN_PARTS, seed=1)
    assert (out / "notes.txt").read_text() == "mine"  # only the demo's own outputs are replaced
    assert len(list((out / "encoded").glob("*.zarr.data"))) == MIN_PARTS
    with WorkspaceStore(out / "workspace", read_only=True) as store:
        assert store.list_runs().height == 1


# ----------------------------------------------------------------- storage commands


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def zarr_store(tmp_path: Path) -> Path:
    path = tmp_path / "p.zarr"
    with OptStorage(path) as store:
        store.save_data("faces/areas", np.linspace(0, 1, 50, dtype=np.float32))
        store.save_data("zeros", np.zeros(20_000))
        store.save_data("label", 3)
        store.save_metadata("file/name", "p")
    return path


def test_version() -> None:
    result = _holdall("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"holdall {holdall.__version__}"


def test_compress_refuses_what_is_not_a_zarr_store(tmp_path: Path, zarr_store: Path) -> None:
    listing = sorted(p.name for p in tmp_path.iterdir())
    typo = _holdall("compress", str(tmp_path / "typo.zarr"))
    assert typo.returncode == 2
    assert "no Zarr store at" in typo.stderr
    assert "Traceback" not in typo.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # nothing created

    json_store = tmp_path / "p_json"
    assert _holdall("convert", str(zarr_store), str(json_store)).returncode == 0
    before = _tree(json_store)
    refused = _holdall("compress", str(json_store))
    assert refused.returncode == 2
    assert f"holdall convert {json_store} {tmp_path / 'p.zarr'} --to zarr" in refused.stderr
    assert _tree(json_store) == before  # the JSON store is untouched
    over = _holdall("convert", str(zarr_store), str(json_store), "--to", "zarr")
    assert over.returncode == 2
    assert "is a JSON store" in over.stderr
    assert _tree(json_store) == before

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("mine")
    for args in (("compress", str(notes)), ("convert", str(zarr_store), str(notes))):
        result = _holdall(*args)
        assert result.returncode == 2
        assert "not a Zarr store" in result.stderr
    assert _tree(notes) == {"a.txt": b"mine"}


def test_convert_to_an_archive_name_packs_a_zarr_store(tmp_path: Path, zarr_store: Path) -> None:
    archive = tmp_path / "d.zarr.data"
    result = _holdall("convert", str(zarr_store), str(archive))
    assert result.returncode == 0, result.stderr
    assert archive.is_file()
    assert not (tmp_path / "d.zarr").exists()
    zipped = zarr.open_array(zarr.storage.ZipStore(archive, mode="r"), path="zeros", mode="r")
    np.testing.assert_array_equal(zipped[:], np.zeros(20_000))
    again = _holdall("convert", str(zarr_store), str(archive))
    assert again.returncode == 2
    assert "exists already" in again.stderr
    as_json = _holdall("convert", str(zarr_store), str(tmp_path / "e.data"), "--to", "json")
    assert as_json.returncode == 2
    assert not (tmp_path / "e.data").exists()


def test_convert_to_chooses_the_backend(tmp_path: Path, zarr_store: Path) -> None:
    json_named_zarr = tmp_path / "copy"
    assert (
        _holdall("convert", str(zarr_store), str(json_named_zarr), "--to", "json").returncode == 0
    )
    assert (json_named_zarr / "data" / "faces" / "areas.json").is_file()
    zarr_named_json = tmp_path / "copy_json"
    result = _holdall("convert", str(json_named_zarr), str(zarr_named_json), "--to", "zarr")
    assert result.returncode == 0, result.stderr
    assert (zarr_named_json / "zarr.json").is_file()
    with OptStorage(zarr_named_json) as back:
        assert back.load_data("label") == 3
    assert "--to {zarr,json}" in _holdall("convert", "--help").stdout


def test_info_reports_chunk_and_document_bytes_apart(zarr_store: Path) -> None:
    result = _holdall("info", str(zarr_store))
    assert result.returncode == 0, result.stderr
    assert "chunks" in result.stdout
    assert "documents" in result.stdout
    with OptStorage(zarr_store) as store:
        infos = {info.path: info for info in store.inspect()}
    for path in ("faces/areas", "zeros"):
        info = infos[path]
        line = next(line for line in result.stdout.splitlines() if path.split("/")[-1] in line)
        assert line.split()[-1] == f"{info.nbytes / info.chunk_bytes:.2f}"
    # 200 bytes of floats compress to about their size, not to 1% of it.
    assert float(result.stdout.split("areas")[1].split("\n")[0].split()[-1]) > 0.5


def test_progress_is_quiet_in_a_pipe_and_one_line_per_update_when_asked(
    tmp_path: Path, zarr_store: Path
) -> None:
    quiet = _holdall("convert", str(zarr_store), str(tmp_path / "a_json"))
    assert quiet.returncode == 0
    assert quiet.stderr == ""
    shown = _holdall("convert", str(zarr_store), str(tmp_path / "b_json"), "--progress")
    assert shown.returncode == 0
    assert "\r" not in shown.stderr
    lines = shown.stderr.splitlines()
    assert lines
    assert all(line.startswith("convert:") for line in lines)
    assert "3/3" in lines[-1]


def test_progress_bar_redraws_in_place_on_a_terminal(tmp_path: Path, zarr_store: Path) -> None:
    main_side, child_side = pty.openpty()
    fcntl.ioctl(child_side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    child = subprocess.Popen(
        [sys.executable, "-m", "holdall.cli", "convert", str(zarr_store), str(tmp_path / "c_json")],
        stdout=subprocess.PIPE,
        stderr=child_side,
    )
    os.close(child_side)
    output = b""
    while True:
        try:
            data = os.read(main_side, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        output += data
    os.close(main_side)
    assert child.wait() == 0
    assert child.stdout is not None
    child.stdout.close()
    text = output.decode()
    assert "\r" in text  # redrawn in place
    assert "3/3" in text
    assert text.count("\n") <= 2


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    with OptStorage(tmp_path / "s.zarr") as store:
        for index in range(200):
            store.save_data(f"k{index:03d}", np.arange(3))
        store.compress_store()
    process = subprocess.Popen(
        [sys.executable, "-m", "holdall.cli", "info", str(tmp_path / "s.zarr.data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.readline()
    process.stdout.close()  # like `| head -1`
    _, err = process.communicate(timeout=60)
    assert b"Traceback" not in err
    assert process.returncode in (0, 141)


def test_import_holdall_for_storage_does_not_load_the_object_store() -> None:
    """`import holdall` stays light; DataStore and DataStoreIO load holdall.objects on use."""
    code = (
        "import sys, holdall\n"
        "assert 'duckdb' not in sys.modules, 'duckdb imported by import holdall'\n"
        "from holdall import DataStore, DataStoreIO\n"
        "from holdall.objects import DataStore as D\n"
        "assert DataStore is D and 'duckdb' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
