"""``holdall merge SRC... --schema S --out NAME``: merge per-file stores from the shell.

`add_merge_parser` registers the subcommand on the ``holdall`` parser. The progress bar is
drawn on stderr when it is a terminal; the summary and table of contents go to stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from holdall.dataset._contents import describe_dataset, merge_stores
from holdall.errors import InvalidValueError
from holdall.schema import SchemaBuilder

__all__ = ["add_merge_parser"]


def _schema(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if Path(value).is_file():
        return SchemaBuilder.load_from_file(value).build()
    if value in SchemaBuilder.list_templates():
        return SchemaBuilder.from_template(value).build()
    raise InvalidValueError(
        f"--schema {value!r} is neither a schema JSON file nor a template "
        f"({', '.join(SchemaBuilder.list_templates())})",
        key="--schema",
        got=value,
    )


def _merge(args: argparse.Namespace) -> int:
    flow = merge_stores(
        args.sources,
        args.out,
        schema=_schema(args.schema),
        workers=args.workers,
        append=args.append,
        stop_on_error=args.stop_on_error,
        dask_client_params=None if args.dask is None else {"address": args.dask},
        progress=sys.stderr.isatty() and not args.quiet,
    )
    counts = flow["counts"]
    print(
        f"merged {counts['merged']} of {counts['inputs']} inputs in {flow['seconds']:.2f} s "
        f"({counts['skipped']} skipped, {counts['files_in_dataset']} files in the dataset)"
    )
    for source, error in list(flow["errors"].items())[:10]:
        print(f"  skipped {source}: {error}")
    if len(flow["errors"]) > 10:
        print(f"  ... and {len(flow['errors']) - 10} more (see the .flow file)")
    for line in describe_dataset(flow["dataset"]):
        print(line)
    return 1 if counts["skipped"] else 0


def add_merge_parser(commands: Any) -> None:
    """Add ``merge`` to the ``holdall`` subcommands."""
    merge = commands.add_parser(
        "merge",
        help="merge per-file stores or archives into one dataset (.dataset/.infoset/.attribset/.flow)",
    )
    merge.add_argument(
        "sources", nargs="+", metavar="SRC", help="archives, stores, s3:// URLs, or folders of them"
    )
    merge.add_argument(
        "--out", required=True, help="output name: writes NAME.dataset and its tables"
    )
    merge.add_argument(
        "--schema", help="schema JSON file, or a template name (cad_basic, cad_advanced)"
    )
    merge.add_argument(
        "--workers", type=int, help="reader processes (default: the CPU count, at most 8)"
    )
    merge.add_argument("--dask", metavar="ADDRESS", help="read on the Dask scheduler at ADDRESS")
    merge.add_argument(
        "--append", action="store_true", help="add the inputs to an existing dataset"
    )
    merge.add_argument("--stop-on-error", action="store_true", help="abort on the first bad input")
    merge.add_argument("--quiet", action="store_true", help="no progress bar")
    merge.set_defaults(run=_merge)
