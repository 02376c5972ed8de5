"""`replay_chain` on prediction bundles exported by nirs4all 0.7.1 (``RunResult.export``).

The bundles in ``fixtures/nirs4all-0.7.1-bundles``, the workspaces they were exported from
and the predictions beside them were written by nirs4all 0.7.1 itself
(``n4a07_bundle_writer.py``, scikit-learn 1.9.1): holdall must give the predictions
nirs4all's ``BundleLoader`` gives, from the bundle and from the imported chain. When nirs4all's environment is
built, the writer also runs here, so a fresh export is checked too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from holdall.errors import (
    CorruptedFileError,
    KeyNotFoundError,
    UnsupportedTypeError,
    UntrustedArtifactError,
)
from holdall.workspace import WorkspaceStore, import_workspace, replay_chain
from tests.workspace.conftest import REPO, unpack_workspace
from tests.workspace.test_import import NIRS4ALL_071, needs_nirs4all

FIXTURES = Path(__file__).with_name("fixtures") / "nirs4all-0.7.1-bundles"
BUNDLES = ("cv_pls", "ridge")


def _assert_nirs4all_predictions(folder: Path, name: str) -> None:
    X = np.load(folder / "X_new.npy")
    got = replay_chain(folder / f"{name}.n4a", X=X, trust=True)
    loader = np.load(folder / f"{name}.loader.npy")
    np.testing.assert_array_equal(got, loader.reshape(got.shape))  # BundleLoader.predict
    # nirs4all.predict reads X into float32 first, so it agrees to float32 precision
    np.testing.assert_allclose(got, np.load(folder / f"{name}.predict.npy").reshape(got.shape),
                               rtol=1e-5, atol=1e-5)  # fmt: skip


def _assert_imported_chain_predicts_the_same(folder: Path, name: str, tmp_path: Path) -> None:
    """The exported prediction's chain, imported with its workspace, replays to the same
    predictions (the cv_pls pipeline scales y: the replay inverts it, as nirs4all's loader)."""
    source = unpack_workspace(Path(shutil.copytree(folder / f"{name}-ws", tmp_path / f"{name}-ws")))
    import_workspace(source, tmp_path / f"{name}-holdall")
    chain_id = json.loads((folder / "bundles.json").read_text())["bundles"][name]["chain_id"]
    with WorkspaceStore(tmp_path / f"{name}-holdall", read_only=True) as store:
        got = replay_chain(store, chain_id, np.load(folder / "X_new.npy"), trust=True)
    np.testing.assert_array_equal(got, np.load(folder / f"{name}.loader.npy").reshape(got.shape))


@pytest.mark.parametrize("name", BUNDLES)
def test_a_nirs4all_bundle_gives_nirs4all_s_predictions(name: str) -> None:
    _assert_nirs4all_predictions(FIXTURES, name)


@pytest.mark.parametrize("name", BUNDLES)
def test_the_chain_of_a_bundle_replays_the_same_from_its_imported_workspace(
    name: str, tmp_path: Path
) -> None:
    _assert_imported_chain_predicts_the_same(FIXTURES, name, tmp_path)


@needs_nirs4all
def test_a_bundle_nirs4all_exports_now_gives_its_predictions(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(NIRS4ALL_071), str(Path(__file__).with_name("n4a07_bundle_writer.py")), str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in BUNDLES:
        _assert_nirs4all_predictions(tmp_path, name)
        _assert_imported_chain_predicts_the_same(tmp_path, name, tmp_path / "imports")


def test_a_nirs4all_bundle_needs_trust() -> None:
    with pytest.raises(UntrustedArtifactError, match=r"nirs4all bundle.*trust=True"):
        replay_chain(FIXTURES / "ridge.n4a", X=np.load(FIXTURES / "X_new.npy"))


def test_the_chain_id_of_a_nirs4all_bundle_is_its_pipeline_uid() -> None:
    bundle = FIXTURES / "ridge.n4a"
    uid = json.loads(zipfile.ZipFile(bundle).read("manifest.json"))["pipeline_uid"]
    X = np.load(FIXTURES / "X_new.npy")
    np.testing.assert_array_equal(
        replay_chain(bundle, uid, X, trust=True), replay_chain(bundle, X=X, trust=True)
    )
    with pytest.raises(KeyNotFoundError, match="not 'other'"):
        replay_chain(bundle, "other", X, trust=True)


def _rewrite(source: Path, target: Path, edit: dict[str, bytes | None]) -> Path:
    """Copy bundle `source` to `target`, replacing (or, for None, dropping) members."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            if name not in edit:
                new.writestr(name, old.read(name))
        for name, data in edit.items():
            if data is not None:
                new.writestr(name, data)
    return target


def test_a_refit_model_alone_predicts_and_fold_weights_weigh(tmp_path: Path) -> None:
    source = FIXTURES / "cv_pls.n4a"
    X = np.load(FIXTURES / "X_new.npy")
    with zipfile.ZipFile(source) as bundle:
        fold0 = bundle.read("artifacts/step_4_fold0_PLSRegression.joblib")
    only_fold0 = _rewrite(
        source, tmp_path / "w.n4a", {"fold_weights.json": b'{"0": 1, "1": 0, "2": 0}'}
    )
    refit = _rewrite(source, tmp_path / "r.n4a", {
        "artifacts/step_4_foldfinal_PLSRegression.joblib": fold0,
        "artifacts/step_4_fold1_PLSRegression.joblib": b"not read: the refit model wins",
    })  # fmt: skip
    expected = replay_chain(only_fold0, X=X, trust=True)
    np.testing.assert_allclose(replay_chain(refit, X=X, trust=True), expected, rtol=1e-12)
    assert not np.allclose(expected, replay_chain(source, X=X, trust=True))


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        ({"trace.json": b"{}"}, UnsupportedTypeError, "one linear chain"),
        ({"pipeline.json": b'{"steps": [{"branch": [[], []]}, {"model": "x"}]}'},
         UnsupportedTypeError, "branches"),
        ({"artifacts/step_4_fold0_PLSRegression.joblib": None,
          "artifacts/step_4_fold1_PLSRegression.joblib": None,
          "artifacts/step_4_fold2_PLSRegression.joblib": None},
         CorruptedFileError, "no artifact for its model step 4"),
        ({"manifest.json": None}, CorruptedFileError, "not a readable chain bundle"),
    ],
)  # fmt: skip
def test_bundles_holdall_cannot_replay_say_why(
    tmp_path: Path, edit: dict[str, bytes | None], error: type[Exception], match: str
) -> None:
    bundle = _rewrite(FIXTURES / "cv_pls.n4a", tmp_path / "b.n4a", edit)
    with pytest.raises(error, match=match):
        replay_chain(bundle, X=np.load(FIXTURES / "X_new.npy"), trust=True)


def test_a_truncated_nirs4all_bundle_is_reported_corrupted(tmp_path: Path) -> None:
    bundle = tmp_path / "cut.n4a"
    shutil.copyfile(FIXTURES / "ridge.n4a", bundle)
    bundle.write_bytes(bundle.read_bytes()[:1500])
    with pytest.raises(CorruptedFileError, match=str(bundle)):
        replay_chain(bundle, X=np.load(FIXTURES / "X_new.npy"), trust=True)
