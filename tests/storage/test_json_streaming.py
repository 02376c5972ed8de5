"""Large arrays go to and come from JSON in blocks: same text, bounded memory, crash-safe."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from holdall import JsonStorageHandler
from holdall._core.jsoncodec import BLOCK_ELEMENTS, dump_json, from_json, read_value, to_json
from holdall.errors import CorruptedFileError

RNG = np.random.default_rng(7)
N = BLOCK_ELEMENTS + 1000


def _floats(dtype: str, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    scale = 10.0 ** RNG.integers(-12, 12, size=shape)
    with np.errstate(over="ignore"):
        return (RNG.standard_normal(shape) * scale).astype(dtype)


LARGE = {
    "float32": _floats("<f4", (N,)),
    "float32-rows-per-block": _floats("<f4", (400, 300)),
    "float64-big-endian-long-rows": _floats(">f8", (3, N)),
    "float16": _floats("<f2", (N,)),
    "float32-nonfinite": np.where(
        RNG.random(N) < 0.01, np.array([np.nan, np.inf, -np.inf])[RNG.integers(0, 3, N)], 1.5
    ).astype("<f4"),
    "int16-3d": RNG.integers(-30000, 30000, size=(40, 50, 40)).astype(">i2"),
    "int64-extremes": np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max] * (N // 2)),
    "uint64": RNG.integers(0, 2**64 - 1, size=N, dtype=np.uint64),
    "bool": RNG.random((300, 300)) > 0.5,
    "complex64": (_floats("<f4", (N,)) + 1j * _floats("<f4", (N,))).astype("<c8"),
    "str": np.array(["ab", "", "ü"] * (N // 3)),
}


@pytest.mark.parametrize("name", sorted(LARGE))
def test_streamed_text_is_the_one_shot_text(name: str, tmp_path: Path) -> None:
    array = LARGE[name]
    buffer = io.BytesIO()
    written = dump_json(array, buffer)
    expected = (json.dumps(to_json(array), allow_nan=False) + "\n").encode()
    assert buffer.getvalue() == expected
    assert written == len(expected)
    path = tmp_path / "x.json"
    path.write_bytes(expected)
    back = read_value(path)
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    np.testing.assert_array_equal(back, from_json(json.loads(expected)))


def test_float32_text_is_the_shortest_that_reads_back() -> None:
    """Every float16, and float32 values of every binade, as numpy's own shortest text."""
    every_half = np.arange(2**16, dtype=np.uint16).view(np.float16)
    bits = RNG.integers(0, 2**32, size=50_000, dtype=np.uint64).astype(np.uint32)
    powers = 2.0 ** np.arange(-149, 128)
    singles = bits.view(np.float32)
    singles = np.concatenate([singles[np.isfinite(singles)], powers.astype(np.float32)])
    for array in (every_half[np.isfinite(every_half)], singles, -singles):
        document = to_json(array)
        expected = [float(text) for text in array.astype(str)]
        assert document["data"] == expected
        assert [repr(x) for x in document["data"]] == [repr(x) for x in expected]


def _peak(run: Any) -> float:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_memory_is_bounded_by_a_block_not_the_array(tmp_path: Path) -> None:
    array = RNG.standard_normal((512, 1024)).astype(np.float32)  # 2 MiB, 8 MiB of text
    store = JsonStorageHandler(tmp_path)
    write_peak = _peak(lambda: store.save_data("x", array))
    loaded: list[Any] = []
    read_peak = _peak(lambda: loaded.append(store.load_data("x")))
    np.testing.assert_array_equal(loaded[0], array)
    # The one-shot writer needed ~70 MiB here and the list reader ~23 MiB.
    assert write_peak < 16, write_peak
    assert read_peak < array.nbytes / 2**20 + 12, read_peak


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:-4000], "truncated"),
        (lambda data: data.replace(b", ", b", x", 1), "not a number"),
        (lambda data: data.replace(b"]", b"", 1), "does not match its shape"),
        (lambda data: data.replace(b", ", b"], [", 1), "does not match its shape"),
        (lambda data: data.replace(b", ", b", 1.5, ", 1), "does not match its shape"),
    ],
)
def test_damaged_large_array_is_a_corrupted_file(tmp_path: Path, damage: Any, message: str) -> None:
    store = JsonStorageHandler(tmp_path)
    store.save_data("x", RNG.standard_normal((200, 600)))
    path = tmp_path / "data" / "x.json"
    header, data = path.read_bytes().split(b'"data": ')
    path.write_bytes(header + b'"data": ' + damage(data))
    with pytest.raises(CorruptedFileError, match=message):
        store.load_data("x")


WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from holdall import JsonStorageHandler

    store = JsonStorageHandler(sys.argv[1])
    store.save_data("x", {"old": np.arange(3)} if sys.argv[2] == "group" else np.arange(3))
    big = np.random.default_rng(0).standard_normal((4096, 4096)).astype(np.float32)
    print("ready", flush=True)
    store.save_data("x", {"new": big} if sys.argv[2] == "group" else big)
    """
)


@pytest.mark.parametrize("shape", ["leaf", "group"])
def test_sigkill_mid_write_keeps_the_old_value_and_cleans_up(tmp_path: Path, shape: str) -> None:
    root = tmp_path / "store"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), shape], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    tmp = root / ".holdall" / "tmp"
    deadline = time.monotonic() + 120
    while not any(path.is_file() for path in tmp.rglob("*")):  # a temporary being written
        assert time.monotonic() < deadline, "the writer never started writing"
        assert child.poll() is None, "the writer finished before it was killed"
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert any(tmp.iterdir())
    with JsonStorageHandler(root) as store:
        assert list(tmp.iterdir()) == []
        old = store.load_data("x")
        if shape == "group":
            assert list(old) == ["old"]
            old = old["old"]
        np.testing.assert_array_equal(old, np.arange(3))
