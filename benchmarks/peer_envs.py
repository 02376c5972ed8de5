"""The peers' Python environments in ``benchmarks/.envs``: nirs4all 0.7.1, nirs4all 1.4.10, mltraq.

The benchmarks measure these peers, and the workspace tests run nirs4all itself (its writers,
its pipeline code on holdall's store), each in an environment of its own. Each is a venv whose
path also ends with the site-packages of the interpreter that builds it (one line in a
``.pth`` file), so pip installs only what that interpreter lacks: about 15 s and 150 MB an
environment, where a full one takes a minute and 1.2 GB. The peer's own packages (nirs4all,
DuckDB 1.5 for nirs4all 0.7.1) come first on its path; the shared directory is only appended,
so its own ``.pth`` files (holdall's editable install among them) do not run there.

``make test`` builds the two nirs4all environments, so that the tests that need them run in
CI; ``python -m benchmarks.peer_envs [NAME ...]`` builds any of them.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ENVS = Path(__file__).resolve().parent / ".envs"
PEERS = {
    "n4a071": ("nirs4all==0.7.1", "duckdb<2", "scikit-learn==1.9.1"),
    "n4alatest": ("nirs4all==1.4.10", "scikit-learn==1.9.1"),
    "mltraq": ("mltraq==0.1.165",),
}
"""Environment name -> what pip installs there. scikit-learn is pinned to the version that
pickled the nirs4all bundles in ``tests/workspace/fixtures``."""
_BUILDING = ".holdall-building"
"""Present while an environment is being built: a folder that still has it was left by a
build that did not finish, and is built again."""


class PeerEnvError(RuntimeError):
    """A peer's environment could not be built (pip failed, or its folder is not ours)."""


def peer_python(name: str) -> Path:
    """The interpreter of peer environment `name`, built first where it is missing.

    An environment that exists is used as it is (it may have been built by hand, with every
    package of its own). Raises `PeerEnvError` when it cannot be built.
    """
    folder = ENVS / name
    python = folder / "bin" / "python"
    if python.exists() and not (folder / _BUILDING).exists():
        return python
    if folder.exists():
        if not (folder / _BUILDING).exists():
            raise PeerEnvError(
                f"{folder} exists but holds no Python environment; remove it to have it built"
            )
        shutil.rmtree(folder)
    _build(folder, PEERS[name])
    return python


def _build(folder: Path, requirements: tuple[str, ...]) -> None:
    folder.mkdir(parents=True)
    (folder / _BUILDING).touch()
    venv.create(folder, with_pip=False, symlinks=True)
    shared = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (folder / "lib" / version / "site-packages" / "_holdall_shared_base.pth").write_text(
        "".join(f"{path}\n" for path in sorted(shared))
    )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(folder / "bin" / "python"), "install",
         "--quiet", *requirements],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise PeerEnvError(
            f"pip could not install {' '.join(requirements)} into {folder}:\n{done.stderr[-4000:]}"
        )
    (folder / _BUILDING).unlink()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"{', '.join(PEERS)} (default: all)"
    )
    names = parser.parse_args(argv).names or list(PEERS)
    if unknown := sorted(set(names) - set(PEERS)):
        parser.error(f"unknown environment {', '.join(unknown)}; known: {', '.join(PEERS)}")
    for name in names:
        try:
            print(f"{name}: {peer_python(name)}")
        except PeerEnvError as err:
            sys.exit(str(err))


if __name__ == "__main__":
    main()
