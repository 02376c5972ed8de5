"""The same round trips against a real S3 server (SeaweedFS, from the s3_server fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from holdall.errors import InvalidKeyError, KeyNotFoundError
from holdall.objects import DataStore, DataStoreIO, create_session, options
from tests.objects.test_values import ARRAYS, SCALARS, same

pytestmark = pytest.mark.s3


@pytest.fixture
def s3_root(s3_server: dict[str, Any], s3_prefix: str) -> Iterator[str]:
    with options().ctx({"datastore.url": s3_prefix, "datastore.storage_options": s3_server}):
        yield s3_prefix


def s3fs_of(s3_server: dict[str, Any]) -> Any:
    import s3fs

    return s3fs.S3FileSystem(**s3_server, skip_instance_cache=True)


def test_datastoreio_round_trips_on_s3(s3_root: str, s3_server: dict[str, Any]) -> None:
    written = DataStoreIO.serialize_write(
        {"arrays": ARRAYS, "scalars": SCALARS}, relative_path_prefix="p/q"
    )
    assert written.url.startswith(f"{s3_root}/p/q/")
    same(written.read_deserialize(), {"arrays": ARRAYS, "scalars": SCALARS})
    relative = "file:///" + written.url[len(s3_root) + 1 :]
    same(DataStoreIO(relative).read_deserialize(), {"arrays": ARRAYS, "scalars": SCALARS})
    raw = DataStoreIO.write(b"\x00raw", relative_path_prefix="p")
    assert raw.read() == b"\x00raw"
    assert DataStoreIO.get_filepath(raw.url) == raw.url
    assert s3fs_of(s3_server).cat_file(raw.url) == b"\x00raw"  # an ordinary S3 object
    big = np.arange(3 << 18, dtype=">f8").reshape(3, -1)  # 6 MiB: read in place, not in one buffer
    same(DataStoreIO.serialize_write(big, relative_path_prefix="p").read_deserialize(), big)
    DataStoreIO.delete("p")
    with pytest.raises(KeyNotFoundError):
        raw.read()


def test_urls_outside_the_s3_root_are_refused(s3_root: str) -> None:
    for url in [
        "s3://other-bucket/x",
        f"{s3_root}/../x",
        f"{s3_root}x/y",
        f"{s3_root}/",
        "file:///../x",
    ]:
        with pytest.raises(InvalidKeyError):
            DataStoreIO(url)
    with pytest.raises(InvalidKeyError):
        DataStoreIO.delete("../")


def test_experiments_with_an_s3_datastore(
    s3_root: str, s3_server: dict[str, Any], tmp_path: Any
) -> None:
    session = create_session(tmp_path / "experiments.duckdb")
    experiment = session.create_experiment("s3")
    with experiment.run() as run:
        run.fields.ds = DataStore(a=np.arange(1 << 18), b=pd.Series([1, 2, 3]))
        run.fields.ds2 = DataStore(c=123)
    experiment.persist()
    fs = s3fs_of(s3_server)
    folder = f"{s3_root}/{experiment.id_experiment}"
    assert len(fs.ls(folder)) == 1  # both DataStores in the persist's one object
    loaded = session.load_experiment("s3")
    np.testing.assert_array_equal(loaded.runs.first().fields.ds.a, np.arange(1 << 18))
    pd.testing.assert_series_equal(loaded.runs.first().fields.ds.b, pd.Series([1, 2, 3]))
    assert loaded.runs.first().fields.ds2.c == 123
    before = set(fs.ls(folder))
    loaded.runs.first().fields.ds2.c = 456
    loaded.persist(if_exists="replace")
    fs.invalidate_cache()
    after = set(fs.ls(folder))
    assert len(after) == 1
    assert not after & before
    assert session.load_experiment("s3").runs.first().fields.ds2.c == 456
    loaded.delete()
    fs.invalidate_cache()
    assert not fs.exists(folder)
