"""`tmpdir_ctx`: run a block inside a fresh temporary working directory (as the seed's examples do)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

__all__ = ["tmpdir_ctx"]


@contextlib.contextmanager
def tmpdir_ctx() -> Iterator[str]:
    """Create a temporary folder, make it the working directory, and remove it on exit.

    The previous working directory is restored even when the block raises. The default
    datastore (``holdall.datastore``) and any relative paths therefore land inside it.
    """
    previous = os.getcwd()
    folder = tempfile.mkdtemp(prefix="holdall-")
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(previous)
        shutil.rmtree(folder, ignore_errors=True)
