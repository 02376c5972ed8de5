"""``holdall workspace PATH ...`` through the parser the lead wires into ``holdall``."""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl
import pytest

from holdall.errors import InvalidValueError
from holdall.workspace import WorkspaceStore, replay_chain
from holdall.workspace._cli import add_workspace_parser
from tests.workspace.conftest import Trained, prediction_fields


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="holdall")
    add_workspace_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["workspace", *argv])
    return int(args.run(args))


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, Trained]:
    with WorkspaceStore(tmp_path / "ws") as store:
        trained = Trained(store)
        for score in (0.3, 0.1, 0.2):
            store.save_prediction(
                **prediction_fields(
                    trained.pipeline_id,
                    trained.chain_id,
                    val_score=score,
                    fold_id="0",
                    model_name=f"PLS-{score}",
                )
            )
    return tmp_path / "ws", trained


def test_listings_print_tables(
    workspace: tuple[Path, Trained], capsys: pytest.CaptureFixture[str]
) -> None:
    path, trained = workspace
    assert _run(str(path), "runs") == 0
    assert "run-a" in capsys.readouterr().out
    assert _run(str(path), "pipelines", "--run-id", trained.run_id) == 0
    assert "0001_pls_abc" in capsys.readouterr().out
    assert _run(str(path), "predictions", "--partition", "val", "--limit", "2") == 0
    assert capsys.readouterr().out.count("wheat") == 2
    assert _run(str(path), "top", "1", "--group-by", "model_class") == 0
    out = capsys.readouterr().out
    assert "0.1" in out
    assert "0.3" not in out
    assert "SNV>MinMax" in out  # the preprocessing tells pipelines with one model apart


def test_export_gc_vacuum(
    workspace: tuple[Path, Trained], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, trained = workspace
    assert _run(str(path), "export", "chain", trained.chain_id, "-o", str(tmp_path / "best")) == 0
    bundle = Path(capsys.readouterr().out.strip())
    assert replay_chain(bundle, X=trained.X).shape == (len(trained.X),)
    assert (
        _run(
            str(path), "export", "predictions", "-o", str(tmp_path / "p.parquet"), "--fold-id", "0"
        )
        == 0
    )
    assert pl.read_parquet(tmp_path / "p.parquet").height == 3
    with pytest.raises(InvalidValueError):
        _run(str(path), "export", "run", "-o", str(tmp_path / "r.yaml"))
    assert _run(str(path), "gc") == 0
    assert "removed 0" in capsys.readouterr().out
    assert _run(str(path), "vacuum") == 0
    assert "store.duckdb" in capsys.readouterr().out
    assert _run(str(path), "migrate") == 0
