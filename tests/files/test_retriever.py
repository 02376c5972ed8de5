"""Providers (folder tree, path list, S3) and CADFileRetriever's selection."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from holdall.errors import InvalidValueError, PathNotFoundError
from holdall.files import CADFileRetriever, FsspecStorageProvider, LocalStorageProvider

NAMES = ["a/gear_01.STEP", "a/gear_02.step", "a/b/bolt.stp", "a/b/plate.iges", "top.IGS",
         "notes.txt", "a/b/c/gear_03.step", "archive.tar.gz"]  # fmt: skip


def _tree(root: Path) -> Path:
    for name in NAMES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return root


def _rel(root: Path, paths: list[str]) -> list[str]:
    return [os.path.relpath(p, root).replace(os.sep, "/") for p in paths]


def test_extensions_any_case_with_or_without_dot(tmp_path: Path) -> None:
    root = _tree(tmp_path / "parts")
    provider = LocalStorageProvider(root)
    found = CADFileRetriever(provider, formats=["step", ".STP"]).get_file_list()
    assert _rel(root, found) == ["a/b/bolt.stp", "a/b/c/gear_03.step", "a/gear_01.STEP",
                                 "a/gear_02.step"]  # fmt: skip
    assert found == sorted(found)
    assert _rel(root, CADFileRetriever(provider, formats="tar.gz").get_file_list()) == [
        "archive.tar.gz"
    ]
    assert len(CADFileRetriever(provider).get_file_list()) == len(NAMES)
    assert _rel(root, provider.list_files(["IGES", "igs"])) == ["a/b/plate.iges", "top.IGS"]
    for bad in ["", ".", "a/b", "x\x00", 3]:
        with pytest.raises(InvalidValueError):
            CADFileRetriever(provider, formats=[bad])  # type: ignore[list-item]


def test_glob_on_names_or_relative_paths_and_regex(tmp_path: Path) -> None:
    root = _tree(tmp_path / "parts")
    provider = LocalStorageProvider(root)

    def select(pattern: str, regex: bool = False, formats: Any = None) -> list[str]:
        retriever = CADFileRetriever(provider, formats, filter_pattern=pattern, use_regex=regex)
        return _rel(root, retriever.get_file_list())

    assert select("gear_*", formats="step") == ["a/b/c/gear_03.step", "a/gear_01.STEP",
                                                "a/gear_02.step"]  # fmt: skip
    assert select("a/b/*") == ["a/b/bolt.stp", "a/b/c/gear_03.step", "a/b/plate.iges"]
    assert select("GEAR_*") == []  # case-sensitive
    assert select(r"gear_0[12]\.", regex=True) == ["a/gear_01.STEP", "a/gear_02.step"]
    assert select(r"^a/b/[^/]+$", regex=True) == ["a/b/bolt.stp", "a/b/plate.iges"]
    with pytest.raises(InvalidValueError, match=r"'gear_\(' is not a valid regular expression"):
        CADFileRetriever(provider, filter_pattern="gear_(", use_regex=True)
    with pytest.raises(InvalidValueError, match="non-empty"):
        CADFileRetriever(provider, filter_pattern="")
    with pytest.raises(InvalidValueError, match="StorageProvider"):
        CADFileRetriever(str(root))  # type: ignore[arg-type]


def test_symlink_loops_and_repeated_links_are_scanned_once(tmp_path: Path) -> None:
    root = _tree(tmp_path / "parts")
    (root / "a" / "b" / "loop").symlink_to(root / "a")  # a -> b -> loop -> a ...
    (root / "again").symlink_to(root / "a" / "b")
    (root / "dangling.step").symlink_to(root / "missing.step")
    (root / "link.step").symlink_to(root / "a" / "gear_02.step")
    found = _rel(root, CADFileRetriever(LocalStorageProvider(root), "step").get_file_list())
    assert "link.step" in found
    assert "dangling.step" not in found
    assert sum(p.endswith("gear_03.step") for p in found) == 1
    unfollowed = LocalStorageProvider(root, follow_symlinks=False)
    assert _rel(root, unfollowed.list_files("stp")) == ["a/b/bolt.stp"]


def test_text_file_listing_paths(tmp_path: Path) -> None:
    root = _tree(tmp_path / "parts")
    listing = root / "inputs.txt"
    listing.write_text(f"# chosen parts\na/gear_01.STEP\n\n{root / 'top.IGS'}\na/gear_01.STEP\n")
    found = CADFileRetriever(LocalStorageProvider(listing), formats=["step", "igs"]).get_file_list()
    assert _rel(root, found) == ["a/gear_01.STEP", "top.IGS"]
    listing.write_text("a/gear_01.STEP\nnope.step\n")
    with pytest.raises(PathNotFoundError, match=r"line 2 of .*inputs\.txt names 'nope\.step'"):
        LocalStorageProvider(listing).list_files()
    with pytest.raises(PathNotFoundError, match="does not exist"):
        LocalStorageProvider(tmp_path / "absent")
    (root / "part.step.bin").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(InvalidValueError, match="neither a folder nor a UTF-8 text file"):
        LocalStorageProvider(root / "part.step.bin").list_files()


def test_fsspec_provider_lists_an_s3_prefix(s3_server: dict[str, Any], s3_prefix: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server, skip_instance_cache=True)
    for name in NAMES:
        fs.pipe_file(f"{s3_prefix}/{name}", b"x")
    provider = FsspecStorageProvider(s3_prefix, storage_options=s3_server)
    found = CADFileRetriever(provider, formats=["step"], filter_pattern="gear_*").get_file_list()
    assert found == [f"{s3_prefix}/a/b/c/gear_03.step", f"{s3_prefix}/a/gear_01.STEP",
                     f"{s3_prefix}/a/gear_02.step"]  # fmt: skip
    assert fs.cat_file(found[0]) == b"x"
    regex = CADFileRetriever(provider, filter_pattern=r"^a/b/", use_regex=True).get_file_list()
    assert len(regex) == 3
    with pytest.raises(InvalidValueError, match="LocalStorageProvider"):
        FsspecStorageProvider(str(Path.cwd()))
