"""Chain replay (`replay_chain`) and chain assembly (`ChainBuilder`).

`replay_chain` runs a chain on new data, from a workspace (artifacts loaded, and their
checksums verified, by the store that wrote them) or from a bundle written by
`WorkspaceStore.export_chain` (checksums verified against the bundle's manifest), with no
workspace needed, or from a prediction bundle exported by nirs4all 0.7 (`_replay_nirs4all`).
Pickled artifacts load only when signed by this user's key (see `_signing`) or with
``trust=True``.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import numpy as np

from holdall.errors import (
    CorruptedFileError,
    InvalidValueError,
    KeyNotFoundError,
    UnsupportedTypeError,
)
from holdall.workspace._artifact_store import ArtifactStore
from holdall.workspace._artifacts import check_trusted, verify
from holdall.workspace._replay_core import NotAModelError, apply_chain, deserialize_bytes
from holdall.workspace._replay_nirs4all import is_nirs4all_bundle, replay_nirs4all_bundle
from holdall.workspace._signing import PICKLE_FORMATS

__all__ = ["ChainBuilder", "replay_chain"]


def _bundle_manifest(path: Path) -> dict[str, Any]:
    """The ``manifest.json`` of a bundle (`CorruptedFileError` when there is none)."""
    try:
        with zipfile.ZipFile(path) as bundle:
            manifest: dict[str, Any] = json.loads(bundle.read("manifest.json"))
            return manifest
    except (zipfile.BadZipFile, KeyError, ValueError) as err:
        raise CorruptedFileError(
            f"{path} is not a readable chain bundle: {err}", path=str(path)
        ) from err


def _bundle_chain(
    path: Path, chain_id: str | None
) -> tuple[dict[str, Any], dict[str, bytes], dict[str, Any]]:
    """Read a holdall bundle: (chain, artifact bytes by id, artifact entries by id)."""
    from holdall.workspace._export import BUNDLE_FORMAT

    try:
        with zipfile.ZipFile(path) as bundle:
            manifest = json.loads(bundle.read("manifest.json"))
            if "format" not in manifest and "chain.json" in bundle.namelist():
                raise UnsupportedTypeError(
                    f"{path} is a nirs4all 0.7 chain bundle: it names its artifacts by id in "
                    "chain.json but stores their files by content hash, without saying which "
                    "is which, so no tool can replay it on its own (nirs4all 0.7.1's loader "
                    "fails with 'No model step found in bundle'). Import the workspace it was "
                    "exported from (holdall workspace import SRC DST) and replay chain "
                    f"{manifest.get('chain_id')!r} there: replay_chain(store, chain_id, X)",
                    got="nirs4all-0.7 bundle",
                )
            if manifest.get("format") != BUNDLE_FORMAT:
                raise CorruptedFileError(
                    f"{path} is not a holdall chain bundle (format {manifest.get('format')!r}, "
                    f"expected {BUNDLE_FORMAT!r})", path=str(path),
                )  # fmt: skip
            blobs = {
                aid: bundle.read(entry["path"]) for aid, entry in manifest["artifacts"].items()
            }
    except (zipfile.BadZipFile, KeyError, ValueError) as err:
        raise CorruptedFileError(
            f"{path} is not a readable chain bundle: {err}", path=str(path)
        ) from err
    chain = manifest["chain"]
    if chain_id is not None and chain_id != chain["chain_id"]:
        raise KeyNotFoundError(
            f"bundle {path} holds chain {chain['chain_id']!r}, not {chain_id!r}", key=chain_id
        )
    return chain, blobs, manifest["artifacts"]


def replay_chain(
    source: ArtifactStore | str | os.PathLike[str] | Any,
    chain_id: str | None = None,
    X: np.ndarray | None = None,
    wavelengths: np.ndarray | None = None,
    *,
    trust: bool = False,
) -> np.ndarray:
    """Replay a chain on new data and return its predictions.

    Parameters
    ----------
    source
        An open `WorkspaceStore`, the path of a ``.n4a`` bundle (from `export_chain`, or
        from nirs4all 0.7's ``RunResult.export``, replayed as nirs4all's ``BundleLoader``
        does), or any other store object with a ``replay_chain(chain_id, X, wavelengths)``
        method (such as nirs4all's own), which is called.
    chain_id
        The chain to replay; required with a store, optional (checked if given) with a bundle
        (for a nirs4all bundle, its ``pipeline_uid``).
    X
        Features, ``n_samples x n_features``.
    wavelengths
        Passed to the ``transform`` of operators that accept a ``wavelengths`` argument.
    trust
        Unpickle joblib/cloudpickle artifacts that this user's key did not sign (a bundle
        from someone else, a workspace copied from elsewhere). Unpickling runs code.

    Returns
    -------
    numpy.ndarray
        The mean of the fold models' predictions (1-D for single-output models).

    Raises
    ------
    KeyNotFoundError
        For an unknown chain id.
    IntegrityError
        When an artifact does not match its recorded SHA-256.
    UntrustedArtifactError
        For an unsigned or foreign pickled artifact without ``trust=True``.
    """
    if X is None:
        raise InvalidValueError("replay_chain needs X, the features to predict from", key="X")
    if isinstance(source, ArtifactStore):
        if chain_id is None:
            raise InvalidValueError("replay_chain on a workspace needs a chain_id", key="chain_id")
        chain = source.get_chain(chain_id)
        if chain is None:
            raise KeyNotFoundError(
                f"no chain with id {chain_id!r} in workspace {source.workspace_path}", key=chain_id
            )
        return _apply(chain, lambda aid: source.load_artifact(aid, trust=trust), X, wavelengths)
    if not isinstance(source, str | os.PathLike) and callable(
        getattr(source, "replay_chain", None)
    ):
        return np.asarray(source.replay_chain(chain_id, X, wavelengths))
    path = Path(source)
    if is_nirs4all_bundle(_bundle_manifest(path)):
        return replay_nirs4all_bundle(path, chain_id, X, wavelengths, trust=trust)
    chain, blobs, entries = _bundle_chain(path, chain_id)

    def load(artifact_id: str) -> Any:
        entry = entries[artifact_id]
        where = f"{path}:{entry['path']}"
        if not trust and entry["format"] in PICKLE_FORMATS:
            check_trusted(entry.get("signature"), entry["sha256"], entry["format"],
                          what=f"artifact {artifact_id!r} of bundle {path}", path=where)  # fmt: skip
        verify(blobs[artifact_id], entry["sha256"], where=where)
        return deserialize_bytes(blobs[artifact_id], entry["format"])

    return _apply(chain, load, X, wavelengths)


def _apply(
    chain: dict[str, Any],
    load: Callable[[str], Any],
    X: np.ndarray,
    wavelengths: np.ndarray | None,
) -> np.ndarray:
    """`apply_chain`, with a model artifact that cannot predict reported as holdall's error."""
    try:
        return apply_chain(chain, load, X, wavelengths)
    except NotAModelError as err:
        raise UnsupportedTypeError(str(err), got="a model artifact without predict()") from err


class ChainBuilder:
    """Assemble the arguments of `WorkspaceStore.save_chain` step by step.

    nirs4all's builder reads its own ``ExecutionTrace``; holdall has no trace type, so the
    steps are declared directly, in execution order.

    Examples
    --------
    >>> builder = ChainBuilder()
    >>> _ = builder.add_step("sklearn.preprocessing.StandardScaler", artifact_id="ab12")
    >>> _ = builder.add_model("sklearn.linear_model.Ridge", {"0": "cd34", "1": "ef56"})
    >>> chain = builder.build()
    >>> chain["preprocessings"], chain["model_step_idx"]
    ('StandardScaler', 1)
    """

    def __init__(self, *, fold_strategy: str = "per_fold") -> None:
        self._steps: list[dict[str, Any]] = []
        self._model: dict[str, Any] | None = None
        self._fold_strategy = fold_strategy
        self._branch_path: list[int] | None = None
        self._source_index: int | None = None

    def add_step(
        self,
        operator_class: str,
        *,
        params: dict[str, Any] | None = None,
        artifact_id: str | None = None,
        stateless: bool | None = None,
    ) -> Self:
        """Append a preprocessing step (fitted when `artifact_id` is given)."""
        if self._model is not None:
            raise InvalidValueError(
                "add steps before the model step", key="operator_class", got=operator_class
            )
        self._steps.append({
            "step_idx": len(self._steps), "operator_class": operator_class, "params": params or {},
            "artifact_id": artifact_id, "stateless": artifact_id is None if stateless is None else stateless,
        })  # fmt: skip
        return self

    def add_model(
        self,
        model_class: str,
        fold_artifacts: dict[Any, str],
        *,
        params: dict[str, Any] | None = None,
    ) -> Self:
        """Set the model step and its fitted artifact per fold (``{fold_id: artifact_id}``)."""
        if not fold_artifacts:
            raise InvalidValueError(
                "a model step needs at least one fold artifact", key="fold_artifacts"
            )
        self._model = {"step_idx": len(self._steps), "operator_class": model_class, "params": params or {},
                       "artifact_id": None, "stateless": False, "folds": {str(k): v for k, v in fold_artifacts.items()}}  # fmt: skip
        return self

    def on_branch(self, branch_path: list[int] | None, source_index: int | None = None) -> Self:
        """Record the branch indices and source index of a branching/multi-source pipeline."""
        self._branch_path, self._source_index = branch_path, source_index
        return self

    def build(self) -> dict[str, Any]:
        """The keyword arguments of `save_chain` (all but ``pipeline_id``)."""
        if self._model is None:
            raise InvalidValueError(
                "the chain has no model step; call add_model first", key="model"
            )
        model = {k: v for k, v in self._model.items() if k != "folds"}
        shared = {str(s["step_idx"]): s["artifact_id"] for s in self._steps if s["artifact_id"]}
        return {
            "steps": [*self._steps, model],
            "model_step_idx": model["step_idx"],
            "model_class": model["operator_class"],
            "preprocessings": ">".join(s["operator_class"].rsplit(".", 1)[-1] for s in self._steps),
            "fold_strategy": self._fold_strategy,
            "fold_artifacts": dict(self._model["folds"]),
            "shared_artifacts": shared,
            "branch_path": self._branch_path,
            "source_index": self._source_index,
        }

    def build_all(self) -> list[dict[str, Any]]:
        """All chains of the builder: one per model step (here, always one)."""
        return [self.build()]
