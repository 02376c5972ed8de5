"""Every objects test runs in its own working directory with default options."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from holdall.objects import options


@pytest.fixture(autouse=True)
def _fresh_cwd_and_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    options().reset()
    yield work
    options().reset()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The default datastore folder of the test's working directory."""
    return tmp_path / "work" / "holdall.datastore"
