"""Signatures that tell a pickle this user's workspaces wrote from one planted in them.

Unpickling runs code, and the SHA-256 a workspace records only proves that a file matches
its row, not who wrote both. So every artifact a workspace writes is signed with an HMAC
keyed by a per-user secret kept *outside* any workspace (by default
``$XDG_CONFIG_HOME/holdall/artifact-signing.key``, else ``~/.config/holdall/...``; the
``HOLDALL_SIGNING_KEY`` environment variable names another file). Someone who can write into
a workspace but not read that key cannot make `load_artifact` unpickle their file without
the caller's explicit ``trust=True``.

The key is 32 random bytes, created on first use with mode 0600 and never overwritten
(created under a temporary name and hard-linked into place, so two processes creating it at
once agree on one key).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from holdall.errors import UnsafePathError

__all__ = ["KEY_ENV", "PICKLE_FORMATS", "key_path", "sign", "signature_ok"]

KEY_ENV = "HOLDALL_SIGNING_KEY"
"""Environment variable naming the key file (tests point it at a temporary file)."""

PICKLE_FORMATS = frozenset({"joblib", "cloudpickle"})
"""Artifact formats whose loading can run code, hence need a valid signature or trust."""

_KEY_BYTES = 32
_DOMAIN = b"holdall-artifact-signature/1\0"
_keys: dict[Path, bytes] = {}


def key_path() -> Path:
    """Where this user's signing key is (or will be created)."""
    named = os.environ.get(KEY_ENV)
    if named:
        return Path(named).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "holdall" / "artifact-signing.key"


def _read_key(path: Path) -> bytes:
    if path.is_symlink():
        raise UnsafePathError(
            f"the artifact signing key {path} is a symbolic link; holdall reads only a regular "
            "file there (remove the link, or point HOLDALL_SIGNING_KEY at the real file)",
            path=str(path),
        )
    data = path.read_bytes()
    if len(data) != _KEY_BYTES:
        raise UnsafePathError(
            f"the artifact signing key {path} holds {len(data)} bytes, expected {_KEY_BYTES}; "
            "it was truncated or replaced (move it away and holdall creates a new one, after "
            "which artifacts signed with the old key need trust=True)",
            path=str(path),
        )
    return data


def _create_key(path: Path) -> None:
    """Write a fresh key unless one appears meanwhile (then that one wins)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(_KEY_BYTES))
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _key() -> bytes:
    path = key_path()
    cached = _keys.get(path)
    if cached is not None:
        return cached
    if not path.exists() and not path.is_symlink():
        _create_key(path)
    _keys[path] = key = _read_key(path)
    return key


def sign(content_hash: str, fmt: str) -> str:
    """The hex HMAC-SHA256 of an artifact's content hash and format under this user's key."""
    message = _DOMAIN + fmt.encode() + b"\0" + content_hash.encode()
    return hmac.new(_key(), message, hashlib.sha256).hexdigest()


def signature_ok(signature: object, content_hash: str, fmt: str) -> bool:
    """True when `signature` was made by `sign` with this user's key for this content."""
    return isinstance(signature, str) and hmac.compare_digest(signature, sign(content_hash, fmt))
