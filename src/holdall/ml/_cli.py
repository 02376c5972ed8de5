"""``holdall metrics PATH --out report.html``: the HTML report of a store's metrics.

`add_metrics_parser` registers the subcommand on the ``holdall`` parser. The command line
passes in its own store opener (``holdall.cli.open_storage``), so this module does not import
the CLI and every command opens paths the same way.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from holdall.storage import DataStorage

__all__ = ["add_metrics_parser"]


def add_metrics_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    open_storage: Callable[[str], DataStorage],
) -> None:
    """Add ``metrics`` to the ``holdall`` subcommands; `open_storage` opens PATH."""
    parser = commands.add_parser(
        "metrics", help="write one self-contained HTML report of every metric of a store"
    )
    parser.add_argument("path", help="the store holding the metrics (folder or .data archive)")
    parser.add_argument("--out", default="metrics_report.html",
                        help="HTML file to write (default: ./metrics_report.html)")  # fmt: skip
    parser.add_argument("--title", default=None, help="heading of the report")

    def run(args: argparse.Namespace) -> int:
        from holdall.ml.metrics import MetricStorage
        from holdall.ml.report import write_report

        with MetricStorage(open_storage(args.path)) as metrics:
            names = metrics.list_metrics()
            out = write_report(metrics, Path(args.out), title=args.title)
        size = out.stat().st_size
        print(f"{out}: {len(names)} metrics, {size / 1024:.0f} KiB (open it in a browser)")
        return 0

    parser.set_defaults(run=run)
