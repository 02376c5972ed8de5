"""The ``holdall`` command: inspect, convert and compress stores, manage workspaces, run the demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from holdall.errors import HoldallError
from holdall.storage import DataStorage, JsonStorageHandler, OptStorage, convert_storage

__all__ = ["main", "open_storage"]


def open_storage(path: str, *, for_writing: bool = False) -> DataStorage:
    """Open `path` as the backend it looks like: a JSON store folder, or a Zarr store/archive.

    ``x.zarr.data`` (an archive) opens the store ``x.zarr``. A path that does not exist yet
    becomes a JSON store when it ends in ``.json`` or ``_json``, and an OptStorage otherwise.
    """
    target = Path(path)
    if target.name.endswith(".data") and target.is_file():
        return OptStorage(str(target)[: -len(".data")])
    if (target / "data").is_dir() and (target / "metadata.json").is_file():
        return JsonStorageHandler(target)
    if for_writing and not target.exists() and target.name.endswith(("json", "_json")):
        return JsonStorageHandler(target)
    if not for_writing and not target.exists() and not Path(f"{path}.data").exists():
        raise HoldallError(f"{path} is neither a store nor an archive (nothing there)")
    return OptStorage(path)


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
                f"{'key':40} {'kind':8} {'shape':16} {'dtype':10} {'codec':36} {'stored':>10} {'ratio':>6}"
            )
            for info in storage.inspect():
                depth = info.path.count("/")
                name = (
                    "  " * depth
                    + info.path.rsplit("/", 1)[-1]
                    + ("/" if info.node_type == "group" else "")
                )
                if info.node_type == "group":
                    print(f"{name:40} {info.kind:8}")
                    continue
                ratio = (
                    f"{info.nbytes / info.stored_bytes:.2f}"
                    if info.stored_bytes and info.nbytes
                    else "-"
                )
                print(
                    f"{name:40} {info.kind:8} {info.shape!s:16} {info.dtype!s:10} {info.codec:36} "
                    f"{_human(info.stored_bytes):>10} {ratio:>6}"
                )
        else:
            for key in storage.get_keys():
                print(f"  {key}")
        print("metadata:")
        for name, value in storage.load_metadata().items():
            print(f"  {name}: {value}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    with open_storage(args.source) as source, open_storage(args.dest, for_writing=True) as dest:
        convert_storage(source, dest, verbose=not args.quiet)
        size = dest.compress_store() if args.compress else 0
    print(
        f"converted {args.source} -> {args.dest}" + (f" ({_human(size)} archive)" if size else "")
    )
    return 0


def _compress(args: argparse.Namespace) -> int:
    with OptStorage(args.path) as storage:
        size = storage.compress_store()
        archive = storage.archive_path
    print(f"{archive}: {_human(size)}")
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
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser(
        "info", help="tree of a store or archive with shapes, codecs, sizes and metadata"
    )
    info.add_argument("path", help="store folder, or its .data archive")
    info.set_defaults(run=_info)
    convert = commands.add_parser("convert", help="copy a store into another (Zarr <-> JSON)")
    convert.add_argument("source")
    convert.add_argument(
        "dest", help="destination; a new path ending in 'json' becomes a JSON store"
    )
    convert.add_argument(
        "--compress", action="store_true", help="pack the destination into its archive"
    )
    convert.add_argument("--quiet", action="store_true", help="no progress bar")
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


if __name__ == "__main__":
    sys.exit(main())
