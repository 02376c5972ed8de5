"""A large value is streamed: writing and reading it never holds a second copy in memory.

Each measurement runs in a fresh process and reads its peak resident set size with
``getrusage``: the peak after the operation, minus the peak before it, is what the operation
itself needed on top of the value.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.objects.helpers import run_child

SIZE_MB = 64

PRELUDE = f"""
import json, resource
import numpy as np
from holdall.objects import DataStore, DataStoreIO, create_session

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

N = {SIZE_MB} << 17  # float64 items in {SIZE_MB} MiB
"""


def measure(code: str, cwd: Path) -> dict[str, float]:
    out = run_child(PRELUDE + code, cwd).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_write_holds_no_second_copy(layout: str) -> None:
    code = f"""
value = np.ones(N) if {layout!r} == "contiguous" else np.ones(2 * N)[::2]
base = peak_mb()
io = DataStoreIO.serialize_write(DataStore(a=value), relative_path_prefix="mem")
print(json.dumps({{"extra": peak_mb() - base}}))
"""
    extra = measure(code, Path.cwd())["extra"]
    assert extra < 0.2 * SIZE_MB, f"writing a {SIZE_MB} MiB array needed {extra:.1f} MiB more"


def test_read_holds_one_copy() -> None:
    run_child(
        PRELUDE
        + "open('url', 'w').write(DataStoreIO.serialize_write(np.ones(N), relative_path_prefix='mem').url)",
        Path.cwd(),
    )
    code = """
url = open("url").read()
base = peak_mb()
value = DataStoreIO(url).read_deserialize()
total = float(value.sum())  # touch every page
print(json.dumps({"extra": peak_mb() - base, "total": total}))
"""
    result = measure(code, Path.cwd())
    assert result["total"] == SIZE_MB << 17
    assert result["extra"] < 1.2 * SIZE_MB, (
        f"reading a {SIZE_MB} MiB array needed {result['extra']:.1f} MiB"
    )


def test_persist_and_reload_hold_one_copy() -> None:
    # DuckDB's first use costs a fixed amount of memory: pay it (a tiny experiment) first.
    persist = """
session = create_session("duckdb:///mem.duckdb")
session.create_experiment("warm-up").persist()
experiment = session.create_experiment("mem")
value = np.ones(N)
base = peak_mb()
with experiment.run() as run:
    run.fields.ds = DataStore(a=value)
experiment.persist()
print(json.dumps({"extra": peak_mb() - base}))
"""
    assert measure(persist, Path.cwd())["extra"] < 0.2 * SIZE_MB
    reload = """
session = create_session("duckdb:///mem.duckdb")
session.load_experiment("warm-up")
base = peak_mb()
loaded = session.load_experiment("mem")
total = float(loaded.runs.first().fields.ds.a.sum())
print(json.dumps({"extra": peak_mb() - base, "total": total}))
"""
    result = measure(reload, Path.cwd())
    assert result["total"] == SIZE_MB << 17
    assert result["extra"] < 1.2 * SIZE_MB, result
