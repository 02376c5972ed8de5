"""``holdall workspace PATH ...``: inspect and maintain a workspace from the shell.

`add_workspace_parser` registers the subcommand on the ``holdall`` parser; each action is
bound with ``set_defaults(run=...)`` and returns the exit status, like the other commands.
Listings print as tables; reads open the workspace read-only, so they never block a
training process for longer than one of its operations.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import polars as pl

from holdall.errors import InvalidValueError
from holdall.workspace._queries import FILTER_COLUMNS, GROUP_COLUMNS, RANK_COLUMNS
from holdall.workspace._store import WorkspaceStore

__all__ = ["add_workspace_parser"]

_RUN_COLUMNS = ["run_id", "name", "status", "created_at", "completed_at"]
_PIPELINE_COLUMNS = [
    "pipeline_id",
    "name",
    "status",
    "dataset_name",
    "best_val",
    "best_test",
    "metric",
    "duration_ms",
]
_PREDICTION_COLUMNS = ["prediction_id", "dataset_name", "model_name", "preprocessings",
                       "fold_id", "partition", "val_score", "test_score", "metric"]  # fmt: skip


def _print_table(frame: pl.DataFrame, columns: list[str]) -> None:
    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=40, tbl_width_chars=200):
        print(frame.select([c for c in dict.fromkeys(columns) if c in frame.columns]))


def _open(args: argparse.Namespace, *, write: bool = False) -> WorkspaceStore:
    return WorkspaceStore(args.path, read_only=not write, lock_timeout=args.lock_timeout)


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in FILTER_COLUMNS if getattr(args, name) is not None}


def _runs(args: argparse.Namespace) -> int:
    with _open(args) as store:
        _print_table(store.list_runs(status=args.status, limit=args.limit), _RUN_COLUMNS)
    return 0


def _pipelines(args: argparse.Namespace) -> int:
    with _open(args) as store:
        _print_table(
            store.list_pipelines(run_id=args.run_id, dataset_name=args.dataset_name),
            _PIPELINE_COLUMNS,
        )
    return 0


def _predictions(args: argparse.Namespace) -> int:
    with _open(args) as store:
        _print_table(
            store.query_predictions(**_filters(args), limit=args.limit), _PREDICTION_COLUMNS
        )
    return 0


def _top(args: argparse.Namespace) -> int:
    with _open(args) as store:
        frame = store.top_predictions(args.n, metric=args.metric, ascending=not args.descending,
                                      partition=args.partition, group_by=args.group_by)  # fmt: skip
        extra = [args.group_by] if args.group_by else []
        _print_table(
            frame,
            [
                *_PREDICTION_COLUMNS[:1],
                *extra,
                "model_class",
                *_PREDICTION_COLUMNS[1:],
                args.metric,
            ],
        )
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.what != "predictions" and args.id is None:
        raise InvalidValueError(f"export {args.what} needs the {args.what} id", key="id")
    with _open(args) as store:
        if args.what == "chain":
            written = store.export_chain(args.id, args.output, format=args.format)
        elif args.what == "run":
            written = store.export_run(args.id, args.output)
        elif args.what == "pipeline":
            written = store.export_pipeline_config(args.id, args.output)
        else:
            written = store.export_predictions_parquet(args.output, **_filters(args))
    print(written)
    return 0


def _gc(args: argparse.Namespace) -> int:
    with _open(args, write=True) as store:
        print(f"removed {store.gc_artifacts()} unreferenced artifact file(s)")
    return 0


def _vacuum(args: argparse.Namespace) -> int:
    db = args.path.rstrip("/") + "/store.duckdb"
    with _open(args, write=True) as store:
        before = store.workspace_path.joinpath("store.duckdb").stat().st_size
        store.vacuum()
        after = store.workspace_path.joinpath("store.duckdb").stat().st_size
    print(f"{db}: {before} -> {after} bytes")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    found = WorkspaceStore.migrate(args.path, lock_timeout=args.lock_timeout)
    print(f"{args.path}: schema version {found} -> current")
    return 0


def _import(args: argparse.Namespace) -> int:
    from holdall.workspace._import import import_workspace

    report = import_workspace(
        args.source, args.destination, trust=args.trust, progress=sys.stderr.isatty()
    )
    copied = ", ".join(f"{n} {table}" for table, n in report.rows.items())
    kept = f"; {report.extras} nirs4all files kept in nirs4all/" if report.extras else ""
    if report.labels_left_out:
        kept += (
            f"; string class labels of {len(report.labels_left_out)} prediction(s) only in "
            "nirs4all/arrays/"
        )
    print(
        f"{report.destination}: imported {report.layout} workspace {report.source} ({copied}{kept})"
    )
    return 0


class _AnyName(Mapping[str, argparse.ArgumentParser]):
    """The action parsers by name, letting any word past argparse's check (`_Actions` decides)."""

    def __init__(self, parsers: dict[str, argparse.ArgumentParser]) -> None:
        self._parsers = parsers

    def __getitem__(self, key: str) -> argparse.ArgumentParser:
        return self._parsers[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsers)

    def __len__(self) -> int:
        return len(self._parsers)

    def __contains__(self, key: object) -> bool:
        return True


class _Actions(argparse._SubParsersAction):  # type: ignore[type-arg]
    """The actions of ``workspace PATH ACTION``, also reading ``workspace import SRC DST``.

    Importing has two folders and no PATH: when PATH is ``import`` and what follows is
    not an action, the words are the import's source and destination.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.choices = _AnyName(self._name_parser_map)  # type: ignore[assignment]

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if values[0] not in self._name_parser_map:
            if getattr(namespace, "path", None) != "import":
                names = ", ".join(map(repr, self._name_parser_map))
                raise argparse.ArgumentError(
                    self, f"invalid choice: {values[0]!r} (choose from {names})"
                )
            namespace.path = values[0]
            values = ["import", *values]
        super().__call__(parser, namespace, values, option_string)


def _add_filters(parser: argparse.ArgumentParser) -> None:
    for name in FILTER_COLUMNS:
        parser.add_argument(
            f"--{name.replace('_', '-')}", dest=name, type=int if name == "branch_id" else str
        )


def add_workspace_parser(subparsers: Any) -> None:
    """Register ``workspace PATH runs|pipelines|...|migrate`` and ``workspace import SRC DST``.

    Parameters
    ----------
    subparsers
        The object returned by ``ArgumentParser.add_subparsers()`` of the ``holdall`` command.
        Each action sets ``run`` (a callable taking the parsed args, returning the exit status).
    """
    parser = subparsers.add_parser("workspace", help="inspect and maintain a WorkspaceStore folder")
    parser.add_argument("path", help="the workspace folder (holding store.duckdb)")
    parser.add_argument(
        "--lock-timeout", type=float, default=30.0, help="seconds to wait for a busy workspace"
    )
    actions = parser.add_subparsers(dest="action", required=True, action=_Actions)

    runs = actions.add_parser("runs", help="list runs, newest first")
    runs.add_argument("--status", choices=["running", "completed", "failed"])
    runs.add_argument("--limit", type=int, default=100)
    runs.set_defaults(run=_runs)

    pipelines = actions.add_parser("pipelines", help="list pipelines")
    pipelines.add_argument("--run-id", dest="run_id")
    pipelines.add_argument("--dataset-name", dest="dataset_name")
    pipelines.set_defaults(run=_pipelines)

    predictions = actions.add_parser("predictions", help="list predictions matching filters")
    _add_filters(predictions)
    predictions.add_argument("--limit", type=int, default=50)
    predictions.set_defaults(run=_predictions)

    top = actions.add_parser("top", help="best predictions by a score column")
    top.add_argument("n", type=int, nargs="?", default=10)
    top.add_argument("--metric", choices=RANK_COLUMNS, default="val_score")
    top.add_argument("--descending", action="store_true", help="higher is better (R2, accuracy)")
    top.add_argument("--partition", default="val")
    top.add_argument("--group-by", dest="group_by", choices=GROUP_COLUMNS)
    top.set_defaults(run=_top)

    export = actions.add_parser(
        "export", help="export a chain, run, pipeline config or predictions"
    )
    export.add_argument("what", choices=["chain", "run", "pipeline", "predictions"])
    export.add_argument("id", nargs="?", help="chain, run or pipeline id (not for predictions)")
    export.add_argument("-o", "--output", required=True, help="output file")
    export.add_argument(
        "--format", choices=["n4a", "n4a.py"], default="n4a", help="chain export format"
    )
    _add_filters(export)
    export.set_defaults(run=_export)

    actions.add_parser("gc", help="remove unreferenced artifact files").set_defaults(run=_gc)
    actions.add_parser("vacuum", help="shrink store.duckdb").set_defaults(run=_vacuum)
    actions.add_parser("migrate", help="upgrade an older workspace schema").set_defaults(
        run=_migrate
    )
    imports = actions.add_parser(
        "import",
        help="copy a nirs4all workspace (0.7.x DuckDB, 1.4.x SQLite + Parquet) into a new "
        "holdall one: workspace import SRC DST",
    )
    imports.add_argument("source", help="the nirs4all workspace folder (never modified)")
    imports.add_argument("destination", help="the holdall workspace to create (must not exist)")
    imports.add_argument(
        "--trust",
        action="store_true",
        help="sign the imported pickled artifacts so they load without trust=True",
    )
    imports.set_defaults(run=_import)
