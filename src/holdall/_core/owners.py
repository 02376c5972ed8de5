"""Who wrote a temporary file or folder: a short tag of host and process id, and a test for death.

Temporary files and scratch folders carry the tag of the process that made them in their
name (``...-<tag>``). The next holdall process that opens the same place removes the ones
whose owner is a dead process on this host, and only those: a live owner, or one on another
host sharing the filesystem, is left alone.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket

from holdall._core.locks import pid_is_alive

__all__ = ["OWNER_TAG_PATTERN", "owner_is_dead", "owner_tag"]

#: A tag as `owner_tag` writes it: 8 hex digits of the host, ``p``, the decimal pid.
OWNER_TAG_PATTERN = re.compile(r"h([0-9a-f]{8})p([0-9]+)")


def _host_hash() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def owner_tag() -> str:
    """The tag of this process, such as ``h1a2b3c4dp12345`` (read anew after a fork)."""
    return f"h{_host_hash()}p{os.getpid()}"


def owner_is_dead(name: str) -> bool:
    """True when `name` holds an owner tag of this host whose process no longer exists.

    Names without a tag, tags of other hosts and tags of live processes are not dead: only
    what is known to be abandoned may be removed.
    """
    match = OWNER_TAG_PATTERN.search(name)
    if match is None or match.group(1) != _host_hash():
        return False
    pid = int(match.group(2))
    return pid != os.getpid() and not pid_is_alive(pid)
