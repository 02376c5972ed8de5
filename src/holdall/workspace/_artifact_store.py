"""The artifact side of `WorkspaceStore`: save, register, load, cache keys, collection.

Artifacts saved here are content-addressed (`_artifacts`) and signed (`_signing`). nirs4all
0.7.1's executor also *registers* files its own registry wrote (`register_existing_artifact`)
and keys artifacts by a cross-run cache key (``chain_path_hash``, ``input_data_hash``, with the
``dataset_hash`` that invalidates them); those calls keep its signatures and meaning.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb

from holdall._core.hashing import sha256_bytes
from holdall._core.links import first_link
from holdall.errors import CorruptedFileError, KeyNotFoundError, UnsafePathError
from holdall.workspace import _records, _signing
from holdall.workspace._artifacts import (
    ArtifactFiles,
    check_relative,
    check_trusted,
    deserialize,
    loader_of,
    parse_content_hash,
    parse_format,
    serialize,
    verify,
)
from holdall.workspace._pending_chains import PendingChains
from holdall.workspace._writes import WorkspaceWrites

__all__ = ["ArtifactStore"]

_PERMANENT_FOLDS = frozenset({"final", "avg", "w_avg", "fold_final", "fold_avg", "fold_w_avg"})
"""Fold keys of refit and averaged models, which `cleanup_transient_artifacts` keeps."""

_AVERAGED_FOLDS = frozenset({"", "None", "avg", "w_avg"})
"""Prediction fold ids that need every fold model of their chain to replay."""


def _text(value: object, what: str) -> str | None:
    return _records.parse_text(value, what=what, optional=True)


class ArtifactStore(WorkspaceWrites):
    """Artifact calls of the store (the seed's and nirs4all 0.7.1's executor's)."""

    _files: ArtifactFiles
    _pending: PendingChains

    def save_artifact(self, obj: Any, operator_class: str, artifact_type: str, format: str) -> str:
        """Persist an object content-addressed; the same content is stored once.

        The id is the SHA-256 of the serialized bytes: saving equal content again returns
        the same id and bumps the artifact's reference count. The file is written
        atomically before its row is committed, under the workspace lock.
        """
        return self._save_artifact(obj, operator_class, artifact_type, format, cache_key=None)

    def save_artifact_with_cache_key(
        self,
        obj: Any,
        operator_class: str,
        artifact_type: str,
        format: str,
        chain_path_hash: str,
        input_data_hash: str,
        dataset_hash: str,
    ) -> str:
        """`save_artifact`, also recording the cross-run cache key `find_cached_artifact` uses."""
        key = (
            _text(chain_path_hash, "chain_path_hash"),
            _text(input_data_hash, "input_data_hash"),
            _text(dataset_hash, "dataset_hash"),
        )
        return self._save_artifact(obj, operator_class, artifact_type, format, cache_key=key)

    def _save_artifact(
        self,
        obj: Any,
        operator_class: str,
        artifact_type: str,
        format: str,
        *,
        cache_key: tuple[str | None, str | None, str | None] | None,
    ) -> str:
        self._session.check_writable()
        fmt = parse_format(format)
        data = serialize(obj, fmt)
        digest = sha256_bytes(data)
        relative = ArtifactFiles.relative_path(digest, fmt)
        signature = _signing.sign(digest, fmt)
        with self._write() as conn:
            bumped = conn.execute(
                "UPDATE artifacts SET ref_count = ref_count + 1, artifact_path = ?, signature = ? "
                "WHERE artifact_id = ? RETURNING 1",
                [relative, signature, digest],
            ).fetchall()
            # Written (or repaired: a crash or a hand removed it) before the row commits. The
            # caller produced these very bytes, so signing a row found unsigned is right too.
            self._files.write(relative, data)
            stored: list[str] = []
            if not bumped:
                conn.execute(
                    "INSERT INTO artifacts (artifact_id, artifact_path, content_hash, "
                    "operator_class, artifact_type, format, size_bytes, ref_count, created_at, "
                    "signature) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                    [digest, relative, digest, _text(operator_class, "operator_class"),
                     _text(artifact_type, "artifact_type"), fmt, len(data), _records.utc_now(),
                     signature],
                )  # fmt: skip
                stored = self._pending.insert_ready(conn, digest)
            if cache_key is not None:
                self._set_cache_key(conn, digest, cache_key)
        self._pending.forget(stored)
        return digest

    def register_existing_artifact(
        self,
        artifact_id: str,
        path: str,
        content_hash: str,
        operator_class: str,
        artifact_type: str,
        format: str,
        size_bytes: int,
    ) -> str:
        """Record a file already written under ``artifacts/`` (by nirs4all's registry).

        Idempotent: an id already recorded is left as it is. The file must exist inside
        the folder (`path` relative to it, no link on the way) and hash to `content_hash`
        (``sha256:`` prefix accepted); the caller vouches for it, so it is signed like a
        save. Its id may be any string (nirs4all's are not hashes). A chain saved before it
        (nirs4all's executor order) is stored in the same transaction once this was the last
        artifact it waited for. Returns `artifact_id`.

        Raises
        ------
        UnsafePathError
            For a path outside ``artifacts/`` or through a symbolic link.
        KeyNotFoundError
            When no file is at `path`.
        IntegrityError
            When the file does not hash to `content_hash`.
        """
        self._session.check_writable()
        artifact_id = _records.parse_text(artifact_id, what="artifact_id") or ""
        relative = check_relative(path)
        digest = parse_content_hash(content_hash)
        fmt = _records.parse_text(format, what="format") or ""
        size = _records.parse_int(size_bytes, what="size_bytes", minimum=0)
        with self._write() as conn:
            if conn.execute(
                "SELECT 1 FROM artifacts WHERE artifact_id = ?", [artifact_id]
            ).fetchall():
                return artifact_id
            data = self._read_registered(relative)
            verify(data, digest, where=str(self._files.absolute(relative)))
            conn.execute(
                "INSERT INTO artifacts (artifact_id, artifact_path, content_hash, operator_class, "
                "artifact_type, format, size_bytes, ref_count, created_at, signature) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                [artifact_id, relative, digest, _text(operator_class, "operator_class"),
                 _text(artifact_type, "artifact_type"), fmt, size, _records.utc_now(),
                 _signing.sign(digest, fmt)],
            )  # fmt: skip
            stored = self._pending.insert_ready(conn, artifact_id)
        self._pending.forget(stored)
        return artifact_id

    def _read_registered(self, relative: str) -> bytes:
        path = self._files.absolute(relative)
        link = first_link(self._files.root, relative.split("/"))
        if link is not None:
            raise UnsafePathError(
                f"artifact path {relative!r} passes through the symbolic link {link}; "
                "holdall registers only files inside artifacts/",
                path=str(link),
            )
        if not path.is_file():
            raise KeyNotFoundError(
                f"no artifact file at {path} to register (write it first)", key=relative
            )
        return path.read_bytes()

    def update_artifact_cache_key(
        self, artifact_id: str, chain_path_hash: str, input_data_hash: str, dataset_hash: str
    ) -> None:
        """Attach a cross-run cache key to a stored artifact (unknown id: `KeyNotFoundError`)."""
        self._session.check_writable()
        key = (
            _text(chain_path_hash, "chain_path_hash"),
            _text(input_data_hash, "input_data_hash"),
            _text(dataset_hash, "dataset_hash"),
        )
        with self._write() as conn:
            self._require(conn, "artifacts", "artifact_id", artifact_id)
            self._set_cache_key(conn, artifact_id, key)

    @staticmethod
    def _set_cache_key(
        conn: duckdb.DuckDBPyConnection,
        artifact_id: str,
        key: tuple[str | None, str | None, str | None],
    ) -> None:
        conn.execute(
            "UPDATE artifacts SET chain_path_hash = ?, input_data_hash = ?, dataset_hash = ? "
            "WHERE artifact_id = ?",
            [*key, artifact_id],
        )

    def find_cached_artifact(self, chain_path_hash: str, input_data_hash: str) -> str | None:
        """The id of a live artifact stored under this cache key, or None on a miss.

        When several match, the newest is returned.
        """
        row = self._fetch_dict(
            "SELECT artifact_id FROM artifacts WHERE chain_path_hash = ? AND input_data_hash = ? "
            "AND ref_count > 0 ORDER BY created_at DESC, artifact_id LIMIT 1",
            [chain_path_hash, input_data_hash],
        )
        return None if row is None else str(row["artifact_id"])

    def invalidate_dataset_cache(self, dataset_hash: str) -> int:
        """Clear the cache keys of every artifact made from a dataset; return how many.

        The artifacts themselves stay; only future cache hits on them are prevented (call it
        when the dataset's content changed).
        """
        self._session.check_writable()
        with self._write() as conn:
            rows = conn.execute(
                "UPDATE artifacts SET chain_path_hash = NULL, input_data_hash = NULL "
                "WHERE dataset_hash = ? AND chain_path_hash IS NOT NULL RETURNING 1",
                [dataset_hash],
            ).fetchall()
        return len(rows)

    def _artifact_location(self, artifact_id: str) -> tuple[str, str, str, str | None]:
        """(relative path, SHA-256, format, signature) of a stored artifact."""
        row = self._fetch_dict(
            "SELECT artifact_path, content_hash, format, signature FROM artifacts "
            "WHERE artifact_id = ?",
            [artifact_id],
        )
        if row is None:
            raise KeyNotFoundError(
                f"no artifact with id {artifact_id!r} in workspace {self._root}", key=artifact_id
            )
        relative, digest, fmt = row["artifact_path"], row["content_hash"], row["format"]
        own = fmt in ("joblib", "cloudpickle", "npy") and relative == ArtifactFiles.relative_path(
            digest, parse_format(fmt)
        )
        if not own and artifact_id == digest:
            raise CorruptedFileError(
                f"artifact {artifact_id!r} points to {relative!r}, outside its content "
                f"address; refusing to load it", path=str(self._root / "store.duckdb"),
            )  # fmt: skip
        try:
            check_relative(relative)
        except UnsafePathError as err:
            raise CorruptedFileError(
                f"artifact {artifact_id!r} points to {relative!r}, outside artifacts/; "
                "refusing to load it",
                path=str(self._root / "store.duckdb"),
            ) from err
        return relative, digest, fmt, row["signature"]

    def artifact_is_signed(self, artifact_id: str) -> bool:
        """True when the artifact was written by a workspace holding this user's signing key.

        Only those load without ``trust=True`` when their format unpickles (joblib,
        cloudpickle, pickle); ``npy`` never needs trust. Unknown id raises `KeyNotFoundError`.
        """
        _relative, digest, fmt, signature = self._artifact_location(artifact_id)
        return _signing.signature_ok(signature, digest, fmt)

    def load_artifact(self, artifact_id: str, *, trust: bool = False) -> Any:
        """Load an artifact, checking its SHA-256 first (`IntegrityError` on mismatch).

        Pickled artifacts (joblib, cloudpickle, pickle) are unpickled, which runs code: they
        load only when signed by this user's key (saved by this user's holdall) or when
        `trust` is True.

        Raises
        ------
        UntrustedArtifactError
            For an unsigned or foreign pickle without ``trust=True``.
        """
        with self._session.connection():  # hold the lock: no gc can remove the file meanwhile
            relative, digest, fmt, signature = self._artifact_location(artifact_id)
            loader = loader_of(fmt)
            if not trust and loader in _signing.PICKLE_FORMATS:
                check_trusted(signature, digest, fmt, what=f"artifact {artifact_id!r}",
                              path=str(self._files.absolute(relative)))  # fmt: skip
            data = self._files.read_verified(relative, digest)
        return deserialize(data, loader)

    def get_artifact_path(self, artifact_id: str) -> Path:
        """The file of a stored artifact; unknown id raises `KeyNotFoundError`."""
        return self._files.absolute(self._artifact_location(artifact_id)[0])

    def gc_artifacts(self) -> int:
        """Remove unreferenced artifacts; return how many files were removed.

        Removes rows with ``ref_count == 0`` that no chain references, files without a row
        (left by a crash between file and row, or after a delete), and temporary files of
        killed writers. Runs under the write lock, so no writer is mid-way.
        """
        self._session.check_writable()
        # Rows go first, in a committed transaction; files after, still inside the lease (no
        # other process can save meanwhile). A crash in between leaves files without rows,
        # which the next collection removes, never rows without files.
        with self._session.connection():
            with self._write() as conn:
                conn.execute(
                    "UPDATE artifacts SET ref_count = r.n FROM (SELECT a, count(*) AS n FROM "
                    "(SELECT unnest(artifact_ids) AS a FROM chains) GROUP BY a) r "
                    "WHERE artifacts.artifact_id = r.a AND artifacts.ref_count < r.n"
                )
                freed = conn.execute(
                    "DELETE FROM artifacts WHERE ref_count <= 0 RETURNING artifact_path"
                ).fetchall()
                live = {
                    r[0] for r in conn.execute("SELECT artifact_path FROM artifacts").fetchall()
                }
            registered = {r[0] for r in freed} - live  # files of other names (registered ones)
            candidates = set(self._files.files()) | registered
            return sum(self._files.remove(rel) for rel in sorted(candidates - live))

    def cleanup_transient_artifacts(
        self, run_id: str, dataset_name: str, winning_pipeline_ids: list[str]
    ) -> int:
        """Release the per-fold artifacts a refit made redundant; return the files removed.

        nirs4all 0.7.1's meaning, for the pipelines of `run_id` on `dataset_name`: a losing
        pipeline (not in `winning_pipeline_ids`) releases its fold and shared artifacts, a
        winning one only its cross-validation fold models (not ``final``/``avg``/``w_avg``);
        anything a stored prediction needs to replay is kept. Chains and predictions stay;
        the released references leave the chains' reference lists, then `gc_artifacts` runs.
        """
        self._session.check_writable()
        winners = set(winning_pipeline_ids)
        with self._write() as conn:
            chains = conn.execute(
                "SELECT c.chain_id, c.pipeline_id, c.fold_artifacts, c.shared_artifacts, "
                "c.artifact_ids FROM chains c JOIN pipelines p USING (pipeline_id) "
                "WHERE p.run_id = ? AND p.dataset_name = ?",
                [run_id, dataset_name],
            ).fetchall()
            protected: dict[str, set[str]] = {}
            for chain_id, fold_id in conn.execute(
                "SELECT p.chain_id, p.fold_id FROM predictions p JOIN pipelines pl "
                "USING (pipeline_id) WHERE pl.run_id = ? AND p.dataset_name = ? "
                "AND p.chain_id IS NOT NULL",
                [run_id, dataset_name],
            ).fetchall():
                fold = "" if fold_id is None else str(fold_id)
                protected.setdefault(chain_id, set()).add(
                    "__all__" if fold in _AVERAGED_FOLDS else fold
                )
            for chain_id, pipeline_id, fold_raw, shared_raw, artifact_ids in chains:
                released = _transient_ids(
                    _records.load_json(fold_raw) or {},
                    _records.load_json(shared_raw) or {},
                    winner=pipeline_id in winners,
                    protected=protected.get(chain_id),
                )
                kept = [a for a in artifact_ids if a not in released]
                if len(kept) == len(artifact_ids):
                    continue
                conn.execute(
                    "UPDATE chains SET artifact_ids = ? WHERE chain_id = ?", [kept, chain_id]
                )
                for artifact_id in set(artifact_ids) - set(kept):
                    conn.execute(
                        "UPDATE artifacts SET ref_count = greatest(ref_count - ?, (SELECT count(*) "
                        "FROM (SELECT unnest(artifact_ids) AS a FROM chains) WHERE a = ?)) "
                        "WHERE artifact_id = ?",
                        [artifact_ids.count(artifact_id), artifact_id, artifact_id],
                    )
        return self.gc_artifacts()


def _ids(value: Any) -> Iterable[str]:
    for item in value if isinstance(value, list | tuple) else [value]:
        if isinstance(item, str) and item:
            yield item


def _fold_protected(fold_key: str, protected: set[str]) -> bool:
    """True when a prediction needs this fold's model ("0" and "fold_0" are one fold)."""
    if "__all__" in protected or fold_key in protected:
        return True
    if fold_key.startswith("fold_"):
        return fold_key[5:] in protected
    return f"fold_{fold_key}" in protected


def _transient_ids(
    fold: dict[str, Any], shared: dict[str, Any], *, winner: bool, protected: set[str] | None
) -> set[str]:
    """The artifact ids of one chain that `cleanup_transient_artifacts` releases."""
    needed = protected or set()
    released = {
        artifact_id
        for key, value in fold.items()
        if not (winner and key in _PERMANENT_FOLDS) and not _fold_protected(str(key), needed)
        for artifact_id in _ids(value)
    }
    if not winner and protected is None:
        released |= {
            artifact_id
            for key, value in shared.items()
            if not str(key).startswith("_")  # metadata entries such as "_source_map"
            for artifact_id in _ids(value)
        }
    return released
