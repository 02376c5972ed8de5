"""DatasetMerger: correctness against numpy, readers it did not write, sources, tables, flow."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest

from holdall.dataset import DatasetInfo, DatasetMerger
from holdall.errors import ArchiveExistsError, InvalidValueError
from holdall.schema import SchemaBuilder
from holdall.storage import OptStorage
from tests.dataset.conftest import (
    SCHEMA,
    assert_merged,
    expected_array,
    make_inputs,
    make_part,
    write_part,
)


def merge(sources: list[str], out: Path, **options: Any) -> dict[str, Any]:
    codes = DatasetInfo.build_code_mappings(sources)
    merger_options = {
        k: options.pop(k)
        for k in list(options)
        if k
        in ("workers", "dask_client_params", "delete_source_files", "schema", "storage_options")
    }
    merger_options.setdefault("workers", 1)
    merger = DatasetMerger(sources, out, codes, **merger_options)
    return merger.merge_data(**options)


@pytest.mark.parametrize("archive", [True, False], ids=["archives", "directories"])
def test_merge_equals_numpy_concatenation(tmp_path: Path, archive: bool) -> None:
    sources, parts = make_inputs(tmp_path / "in", 7, archive=archive)
    flow = merge(
        sources, tmp_path / "out" / "cad", face_chunk=5, edge_chunk=4, faceface_flat_chunk=9
    )
    assert flow["counts"] == {"inputs": 7, "merged": 7, "skipped": 0, "files_in_dataset": 7}
    assert flow["errors"] == {}
    assert_merged(tmp_path / "out" / "cad.dataset", parts, list(range(7)))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "cad.attribset",
        "cad.dataset",
        "cad.flow",
        "cad.infoset",
    ]
    assert all(Path(s).exists() for s in sources), "inputs are never deleted by default"


def test_local_reader_processes(tmp_path: Path) -> None:
    sources, parts = make_inputs(tmp_path / "in", 5, seed=3)
    codes = DatasetInfo.build_code_mappings(sources)
    assert DatasetMerger(sources, tmp_path / "cad", codes).workers == 1, "few inputs: in-process"
    many = [f"p{i}.zarr.data" for i in range(17)]
    merger = DatasetMerger(many, tmp_path / "x", DatasetInfo.build_code_mappings(many))
    cpus = os.cpu_count() or 1
    assert merger.workers == (1 if cpus < 4 else min(cpus - 1, 8))
    # Two real reader processes, even on a one-core runner.
    DatasetMerger(sources, tmp_path / "cad", codes, workers=2).merge_data(face_chunk=3)
    assert_merged(tmp_path / "cad.dataset", parts, list(range(5)))


def test_readers_it_did_not_write(tmp_path: Path) -> None:
    import xarray as xr
    import zarr

    sources, parts = make_inputs(tmp_path / "in", 4)
    merge(sources, tmp_path / "cad")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        faces = xr.open_zarr(tmp_path / "cad.dataset", group="faces")
        assert faces["face_areas"].dims == ("face",)
        assert faces["face_normals"].dims == ("face", "coordinate")
        np.testing.assert_array_equal(
            faces["face_areas"].values, np.concatenate([p["faces"]["face_areas"] for p in parts])
        )
        pairs = xr.open_zarr(tmp_path / "cad.dataset", group="faceface")
        assert pairs["a3_distance"].dims == ("face_pair", "a3_bin")
        root = zarr.open_group(str(tmp_path / "cad.dataset"), mode="r")
        assert root.attrs["holdall_dataset"]["files"] == [f"part_{i:03d}" for i in range(4)]
    assert_merged(tmp_path / "cad.dataset", parts, [0, 1, 2, 3])  # zarr-python, every array
    documents = sorted((tmp_path / "cad.dataset").glob("*/*/zarr.json"))
    transposed = [d for d in documents if '"transpose"' in d.read_text()]
    assert transposed, "no array was stored component-major: the test would not cover it"
    tensorstore = pytest.importorskip("tensorstore", reason="tensorstore is in the test extra")
    for document in documents:
        opened = tensorstore.open(
            {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(document.parent)}},
            open=True,
        ).result()
        group, name = document.parent.parent.name, document.parent.name
        np.testing.assert_array_equal(
            opened.read().result(), root[group][name][...], err_msg=f"{group}/{name}"
        )
    infoset = tmp_path / "cad.infoset"
    attribset = tmp_path / "cad.attribset"
    for frame in (
        pl.read_parquet(infoset).to_pandas(),
        pd.read_parquet(infoset),
        duckdb.sql(f"SELECT * FROM read_parquet('{infoset}')").df(),
    ):
        assert list(frame["name"]) == [f"part_{i:03d}" for i in range(4)]
        assert list(frame["id"]) == [0, 1, 2, 3]
        assert list(frame["size_cadfile"]) == [1000, 1001, 1002, 1000]
        assert list(frame["processing_time"]) == [0.5] * 4
        assert {"description", "subset"} <= set(frame.columns)
        assert "file_label" not in frame.columns
    labels = duckdb.sql(
        f"SELECT id, name, description FROM read_parquet('{attribset}') "
        "WHERE table_name = 'file_label' ORDER BY id"
    ).fetchall()
    assert labels == [
        (0, "0", "Part class"),
        (1, "1", "Part class"),
        (2, "2", "Part class"),
        (3, "0", "Part class"),
    ]
    materials = pl.read_parquet(attribset).filter(pl.col("table_name") == "material_name")
    assert materials["name"].to_list() == ["steel-0", "steel-1", "steel-0", "steel-0"]


def test_schema_labels_describe_categorical_values(tmp_path: Path) -> None:
    builder = SchemaBuilder.from_template("cad_basic")
    builder.define_categorical_metadata(
        "file_label",
        "int32",
        "Part class",
        values=[0, 1, 2],
        labels=["bolt", "nut", "gear"],
        required=True,
    )
    builder.define_file_metadata("weight", "float64", required=True)
    schema = builder.build()
    sources, _ = make_inputs(tmp_path / "in", 3, schema=schema)
    flow = merge(sources, tmp_path / "cad")
    attribs = pl.read_parquet(tmp_path / "cad.attribset").filter(
        pl.col("table_name") == "file_label"
    )
    assert attribs["description"].to_list() == ["bolt", "nut", "gear"]
    assert flow["warnings"] == {s: ["required metadata missing: weight"] for s in sources}
    assert flow["counts"]["merged"] == 3


def test_without_a_schema_groups_come_from_array_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    parts = [make_part(rng) for _ in range(3)]
    for part in parts:
        del part["faceface"]
    sources = [
        write_part(str(tmp_path / f"p{i}.zarr"), part, label=i, schema=None)
        for i, part in enumerate(parts)
    ]
    flow = merge(sources, tmp_path / "plain")
    assert flow["errors"] == {}
    import zarr

    root = zarr.open_group(str(tmp_path / "plain.dataset"), mode="r")
    for group in ("faces", "edges", "graph"):
        for name in parts[0][group]:
            np.testing.assert_array_equal(
                root[f"{group}/{name}"][...], expected_array(parts, group, name)
            )
    assert root["faces/face_normals"].metadata.dimension_names == (
        "faces_row",
        "face_normals_dim_1",
    )
    assert root["graph/num_nodes"].metadata.dimension_names == ("graph_file",)


def test_face_pair_matrices_need_a_schema_to_be_flattened(tmp_path: Path) -> None:
    sources, _ = make_inputs(tmp_path / "in", 3, schema=None)
    flow = merge(sources, tmp_path / "plain")
    # Without matrix_flattening, n x n arrays of different n cannot be concatenated.
    assert flow["counts"]["merged"] == 1
    assert all("rows have shape" in error for error in flow["errors"].values())


def test_explicit_schema_and_casts_that_keep_values(tmp_path: Path) -> None:
    builder = SchemaBuilder.from_template("cad_basic")
    # Seed users save int64 labels under int32 declarations; the merge casts them.
    builder.get_group("faces").create_array("face_labels", ["face"], "int32")
    rng = np.random.default_rng(5)
    sources, parts = make_inputs(tmp_path / "in", 3, schema=None)
    for source, part in zip(sources, parts, strict=True):
        del source
        part["faces"]["face_labels"] = rng.integers(
            0, 4, len(part["faces"]["face_indices"])
        ).astype(np.int64)
    sources = [
        write_part(str(tmp_path / "in2" / f"p{i}.zarr"), part, label=0, schema=None)
        for i, part in enumerate(parts)
    ]
    merge(sources, tmp_path / "cast", schema=builder.build())
    import zarr

    labels = zarr.open_group(str(tmp_path / "cast.dataset"), mode="r")["faces/face_labels"]
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(
        labels[...], np.concatenate([p["faces"]["face_labels"] for p in parts])
    )


def test_s3_sources(tmp_path: Path, s3_prefix: str, s3_server: dict[str, Any]) -> None:
    rng_sources, parts = make_inputs(tmp_path / "local", 3)
    del rng_sources
    sources = [
        write_part(f"{s3_prefix}/part_{i:03d}.zarr", part, label=i % 3, storage_options=s3_server)
        for i, part in enumerate(parts)
    ]
    assert all(s.startswith("s3://") for s in sources)
    flow = merge(sources, tmp_path / "cloud", storage_options=s3_server)
    assert flow["errors"] == {}
    assert_merged(tmp_path / "cloud.dataset", parts, [0, 1, 2])


def test_dask_local_cluster(tmp_path: Path) -> None:
    distributed = pytest.importorskip("dask.distributed")
    sources, parts = make_inputs(tmp_path / "in", 4, seed=9)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        assert len(client.scheduler_info()["workers"]) == 2
        flow = merge(sources, tmp_path / "dask", dask_client_params=client, face_chunk=4)
        assert client.status == "running", "a client passed in is left open"
    assert flow["counts"]["merged"] == 4
    assert_merged(tmp_path / "dask.dataset", parts, [0, 1, 2, 3])


def test_dataset_info_from_files_summary(tmp_path: Path) -> None:
    sources, _ = make_inputs(tmp_path / "in", 3)
    merge(sources, tmp_path / "cad")
    codes = DatasetInfo.build_code_mappings(sources)
    info = DatasetInfo(
        tmp_path / "again" / "cad.dataset",
        info_dir=tmp_path / "in" / "files_summary",
        schema=SCHEMA,
    )
    assert info.parse_info_files(codes) == {stem: [] for stem in codes}
    infoset_path, attribset_path = info.store_info_to_parquet()
    assert infoset_path == tmp_path / "again" / "cad.infoset"
    assert pl.read_parquet(infoset_path).equals(pl.read_parquet(tmp_path / "cad.infoset"))
    assert pl.read_parquet(attribset_path).equals(pl.read_parquet(tmp_path / "cad.attribset"))
    with pytest.raises(InvalidValueError, match="part_999"):
        DatasetInfo(tmp_path / "x", info_dir=tmp_path / "in" / "files_summary").parse_info_files(
            {"part_999": 0}
        )


def test_code_mappings_and_bad_arguments(tmp_path: Path) -> None:
    sources = ["a/p1.zarr.data", "b/p2.zarr", "s3://bucket/p3.zarr.data"]
    assert DatasetInfo.build_code_mappings(sources) == {"p1": 0, "p2": 1, "p3": 2}
    with pytest.raises(InvalidValueError, match="'p1'"):
        DatasetInfo.build_code_mappings(["a/p1.zarr.data", "b/p1.zarr"])
    with pytest.raises(InvalidValueError, match="no code"):
        DatasetMerger(sources, tmp_path / "x", {"p1": 0})
    with pytest.raises(InvalidValueError, match="own integer code"):
        DatasetMerger(sources, tmp_path / "x", {"p1": 0, "p2": 0, "p3": 1})
    with pytest.raises(InvalidValueError, match="list"):
        DatasetMerger("a/p1.zarr.data", tmp_path / "x", {"p1": 0})  # type: ignore[arg-type]
    merger = DatasetMerger(sources, tmp_path / "x", {"p1": 0, "p2": 1, "p3": 2})
    with pytest.raises(InvalidValueError, match="face_chunk"):
        merger.merge_data(face_chunk=0)
    assert not (tmp_path / "x.dataset").exists()


def test_existing_dataset_is_not_replaced(tmp_path: Path) -> None:
    sources, parts = make_inputs(tmp_path / "in", 2)
    merge(sources, tmp_path / "cad")
    flow_before = (tmp_path / "cad.flow").read_bytes()
    with pytest.raises(ArchiveExistsError, match="append=True"):
        merge(sources, tmp_path / "cad")
    assert (tmp_path / "cad.flow").read_bytes() == flow_before
    assert_merged(tmp_path / "cad.dataset", parts, [0, 1])


def test_delete_source_files_only_when_asked_and_only_merged(tmp_path: Path) -> None:
    sources, _parts = make_inputs(tmp_path / "in", 3)
    bad = tmp_path / "in" / "broken.zarr.data"
    bad.write_bytes(b"not a zip")
    part = make_part(np.random.default_rng(4))
    directory = [write_part(str(tmp_path / "folder_part.zarr"), part, label=1, archive=False)]
    all_sources = [*sources, str(bad), *directory]
    flow = merge(all_sources, tmp_path / "cad", delete_source_files=True)
    assert flow["deleted"] == sources
    assert not any(Path(s).exists() for s in sources)
    assert bad.exists(), "a file that was not merged is kept"
    assert Path(directory[0]).is_dir(), "directory stores are never deleted"
    assert json.loads((tmp_path / "cad.flow").read_text())["runs"][0]["deleted"] == sources


def test_seed_style_flat_keys(tmp_path: Path) -> None:
    """Seed 001 saves ``face_areas`` at the top level; the schema still groups it."""
    builder = SchemaBuilder(domain="CAD_analysis")
    faces = builder.create_group("faces", "face", "Face data")
    faces.create_array("face_areas", ["face"], "float32")
    faces.create_array("face_normals", ["face", "coordinate"], "float32")
    builder.create_group("edges", "edge").create_array("edge_lengths", ["edge"], "float32")
    schema = builder.build()
    rng = np.random.default_rng(4)
    expected: dict[str, list[np.ndarray]] = {
        "face_areas": [],
        "face_normals": [],
        "edge_lengths": [],
    }
    sources = []
    for index in range(3):
        n, m = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        values = {
            "face_areas": rng.random(n).astype(np.float32),
            "face_normals": rng.random((n, 3)).astype(np.float32),
            "edge_lengths": rng.random(m).astype(np.float64),  # float64 under float32: cast
        }
        with OptStorage(tmp_path / f"flat_{index}.zarr") as storage:
            storage.set_schema(schema)
            for key, value in values.items():
                storage.save_data(key, value)
            storage.compress_store()
        sources.append(str(tmp_path / f"flat_{index}.zarr.data"))
        for key, value in values.items():
            expected[key].append(value)
    flow = merge(sources, tmp_path / "flat")
    assert flow["errors"] == {}
    import zarr

    root = zarr.open_group(str(tmp_path / "flat.dataset"), mode="r")
    for key, group in (
        ("face_areas", "faces"),
        ("face_normals", "faces"),
        ("edge_lengths", "edges"),
    ):
        np.testing.assert_array_equal(
            root[f"{group}/{key}"][...], np.concatenate(expected[key]).astype(np.float32)
        )
    assert root["edges/edge_lengths"].dtype == np.float32


def test_options_streaming_consolidation_compression(tmp_path: Path) -> None:
    import zarr

    sources, parts = make_inputs(tmp_path / "in", 4, seed=12)
    merge(
        sources,
        tmp_path / "plain",
        use_streaming=False,
        consolidate_metadata=False,
        force_compression=False,
        batch_size=1,
    )
    assert_merged(tmp_path / "plain.dataset", parts, [0, 1, 2, 3])
    root_doc = json.loads((tmp_path / "plain.dataset" / "zarr.json").read_text())
    assert "consolidated_metadata" not in root_doc or root_doc["consolidated_metadata"] is None
    codecs = [
        c["name"]
        for c in zarr.open_array(
            str(tmp_path / "plain.dataset" / "faces" / "face_areas"), mode="r"
        ).metadata.to_dict()["codecs"]
    ]
    assert "blosc" not in codecs
    assert "crc32c" in codecs
    merge(sources, tmp_path / "packed")
    packed = json.loads((tmp_path / "packed.dataset" / "zarr.json").read_text())
    assert packed["consolidated_metadata"]["kind"] == "inline"
    codecs = [
        c["name"]
        for c in zarr.open_array(
            str(tmp_path / "packed.dataset" / "faces" / "face_areas"), mode="r"
        ).metadata.to_dict()["codecs"]
    ]
    # Compressed as the storage core compresses a large array (the codec chosen on a sample).
    assert codecs[-2] in ("blosc", "zstd"), codecs
    assert codecs[-1] == "crc32c"


def test_dask_client_made_from_params(tmp_path: Path) -> None:
    pytest.importorskip("dask.distributed")
    sources, parts = make_inputs(tmp_path / "in", 2, seed=13)
    params = {"n_workers": 2, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
    flow = merge(sources, tmp_path / "dask", dask_client_params=params)
    assert flow["counts"]["merged"] == 2
    assert_merged(tmp_path / "dask.dataset", parts, [0, 1])
