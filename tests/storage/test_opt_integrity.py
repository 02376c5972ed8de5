"""Damaged stores are reported, never crash a decoder or come back as wrong numbers."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from holdall import OptStorage
from holdall.errors import CorruptedFileError, IntegrityError


def _first_chunk(path: Path, key: str) -> Path:
    return next(p for p in sorted((path / key).rglob("*")) if p.is_file() and p.name != "zarr.json")


def test_every_flipped_byte_of_a_chunk_is_an_integrity_error(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    values = np.random.default_rng(0).normal(size=5000).astype(np.float32)
    with OptStorage(path) as store:
        store.save_data("a", values)
    chunk = _first_chunk(path, "a")
    original = chunk.read_bytes()
    rng = random.Random(1)
    for _ in range(40):
        damaged = bytearray(original)
        damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        chunk.write_bytes(bytes(damaged))
        with OptStorage(path, mode="r") as store, pytest.raises(IntegrityError, match="a/c/0"):
            store.load_data("a")
    chunk.write_bytes(original)
    with OptStorage(path, mode="r") as store:
        np.testing.assert_array_equal(store.load_data("a"), values)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_truncated_blosc_chunk_is_an_error_not_a_crash(tmp_path: Path, zarr_format: int) -> None:
    """Run in a child, so a segfault in the decoder fails the test instead of killing pytest."""
    path = tmp_path / "s.zarr"
    with OptStorage(path, zarr_format=zarr_format, checksum=False) as store:  # type: ignore[arg-type]
        store.save_data("a", np.arange(100_000, dtype=np.float64))
    chunk = _first_chunk(path, "a")
    chunk.write_bytes(chunk.read_bytes()[:200])
    code = f"""
        from holdall import OptStorage
        from holdall.errors import CorruptedFileError
        with OptStorage({str(path)!r}, mode="r") as store:
            try:
                store.load_data("a")
            except CorruptedFileError as err:
                print("reported:", err)
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "reported:" in result.stdout
    assert "truncated" in result.stdout


@pytest.mark.parametrize(
    ("old", "new"), [('"cname"', '"cnme"'), ('"shuffle":"shuffle"', '"shuffle":"sh"')]
)
def test_a_damaged_codec_in_an_array_document_names_that_document(
    tmp_path: Path, old: str, new: str
) -> None:
    path = tmp_path / "s.zarr"
    with OptStorage(path) as store:
        store.save_data("g/a", np.arange(10.0))
    for document in (path / "g" / "a" / "zarr.json", path / "zarr.json"):
        text = document.read_text()
        document.write_text(text.replace(old, new).replace(old.replace(":", ": "), new))
    with OptStorage(path, mode="r") as store, pytest.raises(CorruptedFileError, match="g/a"):
        store.load_data("g/a")


def test_a_damaged_child_document_names_the_child(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    with OptStorage(path) as store:
        store.save_data("g/a", np.arange(10.0))
    root = json.loads((path / "zarr.json").read_text())
    root.pop("consolidated_metadata")
    root["attributes"].pop("holdall")
    (path / "zarr.json").write_text(json.dumps(root))
    (path / "g" / "a" / "zarr.json").write_bytes(b'{"zarr_format": 3, "node_type": "arr')
    with pytest.raises(CorruptedFileError, match=r"g/a/zarr\.json"):
        OptStorage(path, mode="r")


def test_a_damaged_archive_entry_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    with OptStorage(path) as store:
        store.save_data("a", np.arange(1000.0))
        store.compress_store()
    archive = Path(f"{path}.data")
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as reader:
        info = reader.getinfo("a/c/0")
    offset = info.header_offset + 30 + len(info.filename) + 10
    data[offset] ^= 0xFF
    archive.write_bytes(bytes(data))
    with OptStorage(path) as store, pytest.raises(CorruptedFileError):
        store.load_data("a")
