"""The ``holdall`` command: inspect, convert and compress stores, manage workspaces, run the demo."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from holdall import __version__
from holdall.errors import ArchiveExistsError, HoldallError, InvalidKeyError, KeyNotFoundError
from holdall.storage import DataStorage, JsonStorageHandler, OptStorage, convert_storage

__all__ = ["main", "open_storage"]

Backend = Literal["zarr", "json"]
_ARCHIVE = ".data"
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zmetadata", ".zarray")


def _is_json_store(path: Path) -> bool:
    return (path / "data").is_dir() and (path / "metadata.json").is_file()


def _is_zarr_store(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in _ZARR_MARKERS)


def _is_foreign_folder(path: Path) -> bool:
    """A non-empty folder that is neither kind of store: holdall will not write into it."""
    return (
        path.is_dir()
        and any(path.iterdir())
        and not _is_json_store(path)
        and not _is_zarr_store(path)
    )


def _json_store_hint(path: Path) -> str:
    stem = path.name.removesuffix(".json").removesuffix("_json").removesuffix("json") or "store"
    target = path.with_name(f"{stem}.zarr")
    return f"holdall convert {path} {target} --to zarr --compress"


def _guess_backend(path: Path) -> Backend:
    """The backend a destination is written as when ``--to`` is not given (see --help)."""
    if _is_json_store(path):
        return "json"
    if path.name.endswith(_ARCHIVE) or _is_zarr_store(path):
        return "zarr"
    return "json" if path.name.endswith("json") else "zarr"


def open_storage(
    path: str, *, for_writing: bool = False, backend: Backend | None = None
) -> DataStorage:
    """Open `path` as the store it is: a JSON store folder, a Zarr store, or its archive.

    ``x.zarr.data`` (an archive) opens the store ``x.zarr``. For writing, `backend` says what
    to create; None guesses from what is there, then from the name (`_guess_backend`).

    Raises
    ------
    KeyNotFoundError
        Nothing to read at `path`.
    InvalidKeyError
        `path` holds something else than the store asked for (a JSON store where a Zarr one
        is wanted, a folder of other files), which holdall will not write into or over.
    """
    target = Path(path)
    if not for_writing:
        if target.name.endswith(_ARCHIVE) and target.is_file():
            return OptStorage(str(target)[: -len(_ARCHIVE)])
        if _is_json_store(target):
            return JsonStorageHandler(target)
        if _is_zarr_store(target) or Path(f"{path}{_ARCHIVE}").is_file():
            return OptStorage(path)
        found = "nothing there" if not target.exists() else "no zarr.json, .zgroup or data/"
        raise KeyNotFoundError(
            f"{path} is neither a Zarr store, a {_ARCHIVE} archive nor a JSON store ({found})",
            key=path,
        )
    chosen = backend or _guess_backend(target)
    if chosen == "json":
        if target.name.endswith(_ARCHIVE) or _is_zarr_store(target):
            raise InvalidKeyError(
                f"{path} is a Zarr store or archive, not a JSON store; give the JSON store "
                "another name, or write Zarr with --to zarr",
                key=path,
            )
        if _is_foreign_folder(target):
            raise InvalidKeyError(
                f"{path} is a folder of other files, not a JSON store; choose a new path",
                key=path,
            )
        return JsonStorageHandler(target)
    store = Path(str(target)[: -len(_ARCHIVE)]) if target.name.endswith(_ARCHIVE) else target
    if _is_json_store(store):
        raise InvalidKeyError(
            f"{store} is a JSON store; holdall will not write a Zarr store over it: choose "
            "another destination, or add --to json to write into the JSON store",
            key=path,
        )
    if _is_foreign_folder(store):
        raise InvalidKeyError(
            f"{store} is a folder of other files, not a Zarr store; choose a new path",
            key=path,
        )
    return OptStorage(store)


def _human(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} GiB"


def _info(args: argparse.Namespace) -> int:
    with open_storage(args.path) as storage:
        print(f"{storage!r}  format={storage.format()}")
        if isinstance(storage, OptStorage):
            print(
                f"{'key':32} {'kind':7} {'shape':14} {'dtype':8} {'codec':34} "
                f"{'chunks':>10} {'documents':>10} {'ratio':>6}"
            )
            for info in storage.inspect():
                depth = info.path.count("/")
                name = (
                    "  " * depth
                    + info.path.rsplit("/", 1)[-1]
                    + ("/" if info.node_type == "group" else "")
                )
                if info.node_type == "group":
                    print(f"{name:32} {info.kind:7} {'':14} {'':8} {'':34} {'':>10} "
                          f"{_human(info.document_bytes):>10}")  # fmt: skip
                    continue
                ratio = (
                    f"{info.nbytes / info.chunk_bytes:.2f}"
                    if info.chunk_bytes and info.nbytes
                    else "-"
                )
                print(
                    f"{name:32} {info.kind:7} {info.shape!s:14} {info.dtype!s:8} {info.codec:34} "
                    f"{_human(info.chunk_bytes):>10} {_human(info.document_bytes):>10} {ratio:>6}"
                )
            print("ratio: uncompressed bytes / chunk bytes (metadata documents not counted)")
        else:
            for key in storage.get_keys():
                print(f"  {key}")
        print("metadata:")
        for name, value in storage.load_metadata().items():
            print(f"  {name}: {value}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    dest_path = Path(args.dest)
    backend: Backend = args.to or _guess_backend(dest_path)
    pack = args.compress or dest_path.name.endswith(_ARCHIVE)
    if backend == "json" and pack:
        why = "--compress packs" if args.compress else f"a {_ARCHIVE} destination is"
        raise InvalidKeyError(
            f"{why} a Zarr archive, and a JSON store is not packed: use --to zarr, or "
            f"{'drop --compress' if args.compress else 'a destination not ending in .data'}",
            key=args.dest,
        )
    if pack and Path(f"{str(dest_path).removesuffix(_ARCHIVE)}{_ARCHIVE}").exists():
        archive = f"{str(dest_path).removesuffix(_ARCHIVE)}{_ARCHIVE}"
        raise ArchiveExistsError(
            f"{archive} exists already; remove it or choose another destination", path=archive
        )
    progress = False if args.quiet else (True if args.progress else None)
    with (
        open_storage(args.source) as source,
        open_storage(args.dest, for_writing=True, backend=backend) as dest,
    ):
        convert_storage(source, dest, verbose=progress)
        size = dest.compress_store() if pack else 0
        written = dest.archive_path if isinstance(dest, OptStorage) and pack else args.dest
    print(
        f"converted {args.source} -> {written} ({backend}" + (f", {_human(size)})" if size else ")")
    )
    return 0


def _compress(args: argparse.Namespace) -> int:
    target = Path(args.path)
    if target.name.endswith(_ARCHIVE) and target.is_file():
        raise InvalidKeyError(f"{target} is an archive already; nothing to compress", key=args.path)
    if _is_json_store(target):
        raise InvalidKeyError(
            f"{target} is a JSON store, and holdall compress packs Zarr stores only (nothing "
            f"was changed); to make a packed Zarr store of it, run '{_json_store_hint(target)}'",
            key=args.path,
        )
    if not target.exists():
        archive = Path(f"{target}{_ARCHIVE}")
        found = f"{archive} is already packed" if archive.is_file() else "nothing is there"
        raise KeyNotFoundError(f"no Zarr store at {target} ({found})", key=args.path)
    if not _is_zarr_store(target):
        raise InvalidKeyError(
            f"{target} is not a Zarr store (no zarr.json or .zgroup in it); nothing to compress",
            key=args.path,
        )
    with OptStorage(target) as storage:
        size = storage.compress_store()
        archive_path = storage.archive_path
    print(f"{archive_path}: {_human(size)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from holdall.demo import run_demo

    report = run_demo(Path(args.out), args.parts)
    for line in report.lines():
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``holdall`` command."""
    parser = argparse.ArgumentParser(prog="holdall", description=__doc__)
    parser.add_argument("--version", action="version", version=f"holdall {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser(
        "info", help="tree of a store or archive with shapes, codecs, sizes and metadata"
    )
    info.add_argument("path", help="store folder, or its .data archive")
    info.set_defaults(run=_info)
    convert = commands.add_parser(
        "convert",
        help="copy a store into another (Zarr <-> JSON)",
        description="Copy every key and all metadata of SOURCE into DEST.",
        epilog="Without --to, DEST's backend is guessed: what is already there, else a name "
        "ending in '.data' is a Zarr archive, a name ending in 'json' a JSON store, anything "
        "else a Zarr store. 'DEST.zarr.data' writes the Zarr store DEST.zarr and packs it "
        "into DEST.zarr.data (as --compress does).",
    )
    convert.add_argument("source", help="store folder, or its .data archive")
    convert.add_argument("dest", help="destination store (see below for its backend)")
    convert.add_argument(
        "--to", choices=["zarr", "json"], help="backend of the destination (default: guessed)"
    )
    convert.add_argument(
        "--compress", action="store_true", help="pack the Zarr destination into its archive"
    )
    shown = convert.add_mutually_exclusive_group()
    shown.add_argument("--quiet", action="store_true", help="no progress bar")
    shown.add_argument(
        "--progress",
        action="store_true",
        help="show progress even when stderr is not a terminal (one line per update); by "
        "default a bar is drawn on terminals only",
    )
    convert.set_defaults(run=_convert)
    compress = commands.add_parser(
        "compress", help="pack a Zarr directory store into its .data archive"
    )
    compress.add_argument("path")
    compress.set_defaults(run=_compress)
    demo = commands.add_parser(
        "demo",
        help="encode synthetic CAD parts, train models on them into a workspace, and report",
    )
    demo.add_argument(
        "--out", default="holdall-demo", help="output folder (default: ./holdall-demo)"
    )
    demo.add_argument(
        "--parts", type=int, default=200, help="number of parts, at least 10 (default: 200)"
    )
    demo.set_defaults(run=_demo)
    from holdall.workspace._cli import add_workspace_parser

    add_workspace_parser(commands)
    from holdall.ml._cli import add_metrics_parser

    add_metrics_parser(commands, open_storage)
    from holdall.dataset._cli import add_merge_parser

    add_merge_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``holdall`` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except HoldallError as err:
        print(f"holdall: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of a pipe went away (``holdall info ... | head``): stop quietly, as
        # Unix tools do, and keep Python from complaining again when it flushes stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
