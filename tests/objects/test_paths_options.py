"""Settings, DataStore's dict behaviour, and URLs or prefixes that try to leave the root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from holdall.errors import InvalidKeyError, KeyNotFoundError, UnsafePathError
from holdall.objects import DataStore, DataStoreIO, options, tmpdir_ctx


def test_datastore_is_a_dict_with_attributes() -> None:
    ds = DataStore(a=1)
    ds.b = 2
    ds["c"] = 3
    assert ds.a == 1
    assert ds["b"] == 2
    assert ds.c == 3
    assert len(ds) == 3
    assert "b" in ds
    assert list(ds) == ["a", "b", "c"]
    del ds.b
    del ds["c"]
    assert dict(ds) == {"a": 1}
    with pytest.raises(AttributeError, match="no attribute or key 'zz'"):
        _ = ds.zz
    with pytest.raises(AttributeError):
        del ds.zz
    url = ds.to_url()
    assert url.startswith("file:///undefined/")
    assert DataStore.from_url(url) == {"a": 1}


def test_options_get_set_ctx_reset() -> None:
    assert options().get("datastore.url") == "file:///holdall.datastore"
    with options().ctx({"datastore.url": "file:///elsewhere"}):
        assert options().get("datastore.url") == "file:///elsewhere"
        url = DataStoreIO.write(b"x", relative_path_prefix="p").url
        assert (Path("elsewhere") / url[len("file:///") :]).read_bytes() == b"x"
    assert options().get("datastore.url") == "file:///holdall.datastore"
    with pytest.raises(RuntimeError), options().ctx({"datastore.relative_path_prefix": "q"}):
        raise RuntimeError
    assert options().get("datastore.relative_path_prefix") == "undefined"
    options().set("datastore.relative_path_prefix", "mine")
    assert DataStoreIO.write(b"y").url.startswith("file:///mine/")
    options().reset("datastore.relative_path_prefix")
    assert options().get("datastore.relative_path_prefix") == "undefined"
    with pytest.raises(KeyNotFoundError, match=r"unknown option 'datastore\.ulr'"):
        options().set("datastore.ulr", "x")
    assert options().get("nothing.here", otherwise=5) == 5
    assert options().get("datastore.url", prefer="p") == "p"


@pytest.mark.parametrize("form", ["plain", "file4"])
def test_absolute_roots(tmp_path: Path, form: str) -> None:
    folder = tmp_path / "abs-root"
    url = str(folder) if form == "plain" else f"file:///{folder}"
    options().set("datastore.url", url)
    io = DataStoreIO.serialize_write([1], relative_path_prefix="p")
    assert Path(DataStoreIO.get_filepath(io.url)).parent == folder / "p"
    assert io.read_deserialize() == [1]


def test_tmpdir_ctx_enters_and_removes_a_folder() -> None:
    before = os.getcwd()
    with tmpdir_ctx() as folder:
        assert os.getcwd() == os.path.realpath(folder) or os.getcwd() == folder
        Path("f").write_text("x")
    assert os.getcwd() == before
    assert not os.path.exists(folder)


@pytest.mark.parametrize(
    "prefix",
    ["../outside", "a/../../b", "/etc", "", "a//b", "a\\b", "a\x00b", "~/x", "C:/x", 5],
)
def test_hostile_prefixes_are_refused(prefix: object, tmp_path: Path) -> None:
    with pytest.raises(InvalidKeyError):
        DataStoreIO.write(b"x", relative_path_prefix=prefix)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):
        DataStoreIO.delete(prefix)  # type: ignore[arg-type]
    assert not (tmp_path / "outside").exists()


@pytest.mark.parametrize(
    "url",
    [
        "file:///../x",
        "file:///a/../../x",
        "file:////etc/passwd",
        "file://host/x",
        "http://example.com/x",
        "s3://bucket/x",
        "/etc/passwd",
        "file:///",
        "relative/x",
    ],
)
def test_hostile_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidKeyError):
        DataStoreIO(url)
    with pytest.raises(InvalidKeyError):
        DataStoreIO.get_filepath(url)


def test_a_prefix_named_like_an_experiment_id_is_refused() -> None:
    experiment_id = "d65df69e-1175-44a5-be2f-2232765703b8"
    with pytest.raises(InvalidKeyError, match="experiment id"):
        DataStoreIO.serialize_write(1, relative_path_prefix=experiment_id)
    with pytest.raises(InvalidKeyError, match="experiment id"):
        DataStoreIO.write(b"1", relative_path_prefix=f"{experiment_id}/sub")
    with (
        options().ctx({"datastore.relative_path_prefix": experiment_id}),
        pytest.raises(InvalidKeyError, match="experiment id"),
    ):
        DataStore(a=1).to_url()
    # Below another folder it is the seed's own pattern.
    assert (
        DataStoreIO.write(b"1", relative_path_prefix=f"self_managed/{experiment_id}").read() == b"1"
    )


def test_symbolic_links_below_the_root_are_refused(root: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    url = DataStoreIO.write(b"x", relative_path_prefix="real").url
    os.symlink(victim, root / "link")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        DataStoreIO.write(b"x", relative_path_prefix="link")
    with pytest.raises(UnsafePathError):
        DataStoreIO.delete("link")
    with pytest.raises(UnsafePathError):
        DataStoreIO("file:///link/keep.txt").read()
    os.symlink(victim, root / "real" / "inner-link")
    with pytest.raises(UnsafePathError, match="inner-link"):
        DataStoreIO.delete("real")
    assert (victim / "keep.txt").read_text() == "precious"
    assert DataStoreIO(url).read() == b"x"


def test_delete_stays_inside_the_root(root: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    DataStoreIO.write(b"x", relative_path_prefix="self_managed/a")
    DataStoreIO.write(b"x", relative_path_prefix="other")
    for hostile in ["../victim", "../../victim", "/tmp", str(victim)]:
        with pytest.raises(InvalidKeyError):
            DataStoreIO.delete(hostile)
    assert victim.exists()
    DataStoreIO.delete("self_managed")
    DataStoreIO.delete("missing/folder")
    assert sorted(os.listdir(root)) == ["other"]


def test_missing_objects_raise_key_not_found() -> None:
    io = DataStoreIO("file:///nowhere/0123")
    with pytest.raises(KeyNotFoundError, match="does not exist"):
        io.read()
    with pytest.raises(KeyNotFoundError):
        DataStore.from_url(io.url)


def test_bad_datastore_url_option_is_refused() -> None:
    for bad in ["file://", "file:///", "", "file://host/x"]:
        options().set("datastore.url", bad)
        with pytest.raises(InvalidKeyError, match=r"datastore\.url"):
            DataStoreIO.write(b"x", relative_path_prefix="p")


def test_write_takes_only_bytes() -> None:
    from holdall.errors import InvalidValueError

    with pytest.raises(InvalidValueError, match="serialize_write"):
        DataStoreIO.write("text", relative_path_prefix="p")  # type: ignore[arg-type]
