"""Bad inputs, schema violations, a merge killed mid-way, append, and memory bounded while merging."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from holdall.dataset import DatasetInfo, DatasetMerger
from holdall.errors import MergeError
from holdall.storage import OptStorage
from tests.dataset.conftest import assert_merged, make_inputs, make_part, write_part
from tests.dataset.test_merge import merge

ROOT = Path(__file__).resolve().parents[2]


def _violating(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Inputs that cannot be merged, by what is wrong: (input, text the flow must name)."""
    rng = np.random.default_rng(11)
    bad: dict[str, tuple[str, str]] = {}
    truncated = tmp_path / "bad" / "truncated.zarr"
    source = write_part(str(truncated), make_part(rng), label=0)
    data = Path(source).read_bytes()
    Path(source).write_bytes(data[: len(data) // 2])
    bad["truncated"] = (source, "truncated")
    garbage = tmp_path / "bad" / "garbage.zarr.data"
    garbage.write_bytes(b"\x00" * 100)
    bad["garbage"] = (str(garbage), "garbage")
    bad["missing"] = (str(tmp_path / "bad" / "nothing_here.zarr.data"), "nothing_here")
    wrong_ndim = make_part(rng)
    wrong_ndim["faces"]["face_areas"] = wrong_ndim["faces"]["face_areas"][:, None]
    bad["ndim"] = (
        write_part(str(tmp_path / "bad" / "ndim.zarr"), wrong_ndim, label=0),
        "dimension",
    )
    fractional = make_part(rng)
    fractional["faces"]["face_types"] = fractional["faces"]["face_types"] + 0.5
    bad["dtype"] = (write_part(str(tmp_path / "bad" / "dtype.zarr"), fractional, label=0), "int32")
    negative = make_part(rng)
    negative["edges"]["edge_lengths"] = -negative["edges"]["edge_lengths"]
    bad["rule"] = (write_part(str(tmp_path / "bad" / "rule.zarr"), negative, label=0), "min_value")
    lacking = make_part(rng)
    del lacking["edges"]["edge_types"]
    bad["missing_array"] = (
        write_part(str(tmp_path / "bad" / "lacking.zarr"), lacking, label=0),
        "edge_types",
    )
    uneven = make_part(rng)
    uneven["faces"]["face_types"] = uneven["faces"]["face_types"][:-1]
    bad["uneven"] = (
        write_part(str(tmp_path / "bad" / "uneven.zarr"), uneven, label=0),
        "rows along 'face'",
    )
    not_square = make_part(rng)
    not_square["faceface"]["a3_distance"] = not_square["faceface"]["a3_distance"][:, :1]
    bad["square"] = (
        write_part(str(tmp_path / "bad" / "square.zarr"), not_square, label=0),
        "n x n",
    )
    return bad


def test_bad_and_violating_inputs_are_recorded_and_skipped(tmp_path: Path) -> None:
    good, parts = make_inputs(tmp_path / "good", 4)
    bad = _violating(tmp_path)
    sources = [good[0], *(s for s, _ in bad.values()), *good[1:]]
    flow = merge(sources, tmp_path / "cad")
    assert flow["counts"] == {
        "inputs": len(sources),
        "merged": 4,
        "skipped": len(bad),
        "files_in_dataset": 4,
    }
    for what, (source, text) in bad.items():
        assert text in flow["errors"][source], (what, flow["errors"][source])
    assert_merged(tmp_path / "cad.dataset", parts, [0, len(bad) + 1, len(bad) + 2, len(bad) + 3])
    on_disk = json.loads((tmp_path / "cad.flow").read_text())["runs"][0]
    assert on_disk["errors"] == flow["errors"]
    assert on_disk["counts"] == flow["counts"]


def test_stop_on_error_leaves_nothing_under_the_final_names(tmp_path: Path) -> None:
    good, _ = make_inputs(tmp_path / "good", 2)
    source, _text = _violating(tmp_path)["ndim"]
    with pytest.raises(MergeError, match="dimension") as info:
        merge([good[0], source, good[1]], tmp_path / "cad", stop_on_error=True)
    assert list(info.value.errors) == [source]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "good"]


def test_every_input_bad_gives_an_empty_dataset_and_a_flow(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.zarr.data"
    garbage.write_bytes(b"junk")
    flow = merge([str(garbage)], tmp_path / "cad")
    assert flow["counts"]["merged"] == 0
    assert str(garbage) in flow["errors"]


def test_append_adds_files_without_rewriting_full_chunks(tmp_path: Path) -> None:
    sources, parts = make_inputs(tmp_path / "in", 6, seed=21)
    codes = DatasetInfo.build_code_mappings(sources)
    first = DatasetMerger(
        sources[:4], tmp_path / "cad", {s: codes[s] for s in list(codes)[:4]}, workers=1
    )
    first.merge_data(face_chunk=4, edge_chunk=4, faceface_flat_chunk=8)
    dataset = tmp_path / "cad.dataset"
    chunks = {p: p.stat().st_ino for p in dataset.rglob("c/*") if p.is_file()}
    second = DatasetMerger(
        sources[4:], tmp_path / "cad", {s: codes[s] for s in list(codes)[4:]}, workers=1
    )
    flow = second.merge_data(face_chunk=4, edge_chunk=4, faceface_flat_chunk=8, append=True)
    assert flow["appended"]
    assert flow["counts"]["files_in_dataset"] == 6
    assert_merged(dataset, parts, list(range(6)))
    kept = [p for p, inode in chunks.items() if p.exists() and p.stat().st_ino == inode]
    # Only partial last chunks are rewritten (each array has at most one).
    arrays = {p.parent.parent if p.parent.name == "c" else p.parent for p in chunks}
    assert len(kept) >= len(chunks) - 2 * len(arrays)
    assert kept
    import polars as pl

    assert pl.read_parquet(tmp_path / "cad.infoset")["id"].to_list() == list(range(6))
    runs = json.loads((tmp_path / "cad.flow").read_text())["runs"]
    assert [r["counts"]["merged"] for r in runs] == [4, 2]
    again = DatasetMerger(
        sources[4:5], tmp_path / "cad", {s: codes[s] for s in list(codes)[4:5]}, workers=1
    )
    flow = again.merge_data(append=True)
    assert "already holds" in flow["errors"][sources[4]]
    assert_merged(dataset, parts, list(range(6)))


_KILLED_MERGE = textwrap.dedent(
    """
    import sys
    from holdall.dataset import DatasetInfo, DatasetMerger
    first, sources = int(sys.argv[2]), sys.argv[3:]
    codes = {stem: first + code for stem, code in DatasetInfo.build_code_mappings(sources).items()}
    merger = DatasetMerger(sources, sys.argv[1], codes, workers=1)
    merger.merge_data(face_chunk=2, edge_chunk=2, faceface_flat_chunk=2, append=True)
    """
)


@pytest.mark.parametrize("existing", [False, True], ids=["new", "append"])
def test_killed_mid_merge_leaves_no_half_dataset(tmp_path: Path, existing: bool) -> None:
    sources, parts = make_inputs(tmp_path / "in", 40, seed=5)
    out = tmp_path / "out" / "cad"
    if existing:
        merge(sources[:2], out)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    todo = sources[2:] if existing else sources
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLED_MERGE, str(out), str(len(sources) - len(todo)), *todo],
        env=env,
    )
    deadline = time.monotonic() + 60
    try:
        while not list((tmp_path / "out").glob(".cad.merge-*.tmp/dataset/*/*")):
            assert process.poll() is None, "the merge ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    dataset = out.with_name("cad.dataset")
    if existing:
        assert_merged(dataset, parts[:2], [0, 1])
    else:
        assert not dataset.exists()
    assert list((tmp_path / "out").glob(".cad.merge-*.tmp")), "the killed work folder is there"
    # The next merge removes the dead process's work folder and completes.
    codes = DatasetInfo.build_code_mappings(sources)
    flow = DatasetMerger(todo, out, codes, workers=1).merge_data(append=True)
    assert not list((tmp_path / "out").glob(".cad.merge-*.tmp"))
    assert flow["counts"]["files_in_dataset"] == 40
    assert_merged(dataset, parts, list(range(40)))


_MEASURED_MERGE = textwrap.dedent(
    """
    import sys
    from holdall.dataset import DatasetInfo, DatasetMerger
    sources = sys.argv[2:]
    codes = DatasetInfo.build_code_mappings(sources)
    DatasetMerger(sources, sys.argv[1], codes, workers=1).merge_data(face_chunk=20000, batch_size=2)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
    with open("/proc/self/status") as status:
        peak = next(line for line in status if line.startswith("VmHWM:"))
    print(int(peak.split()[1]) * 1024)
    """
)


def _peak_rss_of_merge(sources: list[str], out: Path) -> int:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED_MERGE, str(out), *sources],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return int(done.stdout.split()[-1])


def test_memory_stays_bounded_on_a_merge_larger_than_the_limit(tmp_path: Path) -> None:
    """Merging 4x more data does not raise the peak RSS: it stays below the merged size."""
    rng = np.random.default_rng(0)
    rows = 8 * 1024  # 8k faces x 256 float32 = 8 MiB per file (compressible)
    sources = []
    for i in range(32):
        features = np.repeat(rng.normal(size=(rows, 1)).astype(np.float32), 256, axis=1)
        part = {
            "faces": {"face_indices": np.arange(rows, dtype=np.int32), "face_features": features}
        }
        sources.append(
            write_part(str(tmp_path / "in" / f"big_{i:02d}.zarr"), part, label=0, schema=None)
        )
    total = len(sources) * rows * 256 * 4
    small = _peak_rss_of_merge(sources[:8], tmp_path / "small")
    large = _peak_rss_of_merge(sources, tmp_path / "large")
    limit = total  # 256 MiB: the merge cannot hold its output in memory
    assert large < limit, f"peak RSS {large / 2**20:.0f} MiB for {total / 2**20:.0f} MiB merged"
    assert large < small + 48 * 2**20, (
        f"peak RSS grew from {small / 2**20:.0f} MiB (8 files) to {large / 2**20:.0f} MiB (32 files)"
    )
    import zarr

    merged = zarr.open_group(str(tmp_path / "large.dataset"), mode="r")["faces/face_features"]
    assert merged.shape == (32 * rows, 256)
    with OptStorage(sources[1].removesuffix(".data")) as second:
        np.testing.assert_array_equal(
            merged[rows : rows + 3], second.load_data("faces/face_features")[:3]
        )


def test_unknown_dask_params_are_refused(tmp_path: Path) -> None:
    pytest.importorskip("dask.distributed")
    sources, _ = make_inputs(tmp_path / "in", 1)
    merger = DatasetMerger(sources, tmp_path / "cad", {"part_000": 0}, dask_client_params=["x"])
    with pytest.raises(ValueError, match="dask_client_params"):
        merger.merge_data()
    assert not (tmp_path / "cad.dataset").exists()


@pytest.mark.parametrize("name", ["../outside", "a/b", "", "..", "__zarr", "nul\x00"])
def test_schema_names_that_are_not_one_segment_are_refused(tmp_path: Path, name: str) -> None:
    from holdall.errors import SchemaError

    sources, _ = make_inputs(tmp_path / "in", 1)
    hostile = {"groups": {name: {"primary_dimension": "face", "arrays": {"x": {"dims": ["face"]}}}}}
    merger = DatasetMerger(sources, tmp_path / "out" / "cad", {"part_000": 0}, schema=hostile)
    with pytest.raises(SchemaError, match="cannot name a dataset node"):
        merger.merge_data()
    assert not (tmp_path / "outside").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


def test_names_too_long_for_the_filesystem_are_refused_up_front(tmp_path: Path) -> None:
    from holdall.errors import InvalidKeyError

    sources, _ = make_inputs(tmp_path / "in", 1)
    long = "g" * 300
    schema = {"groups": {long: {"primary_dimension": "face", "arrays": {"x": {"dims": ["face"]}}}}}
    merger = DatasetMerger(sources, tmp_path / "out" / "cad", {"part_000": 0}, schema=schema)
    with pytest.raises(InvalidKeyError, match="g" * 20):
        merger.merge_data()
    assert list((tmp_path / "out").iterdir()) == []
