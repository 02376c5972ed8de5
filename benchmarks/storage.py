"""Storage benchmark: OptStorage side by side with zarr-python, h5py, np.savez and the seeds' Zstd-12.

Run with ``make bench`` or ``.venv/bin/python -m benchmarks.storage`` (``--quick`` for a smoke
run). Writes section ``storage`` of docs/benchmarks.md.

Large arrays: 256 MiB each of smooth float32 (sums of sines), random float32 and index-like
int32 (sorted indices with small gaps), written and read whole; GB/s of uncompressed data and
compression ratio. Small stores: per-part stores of 50 small arrays (the demo's CAD parts),
written + compressed into their archive and read back; stores/s, files per store, bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np

from benchmarks._report import machine_line, markdown_table, median_seconds, write_section
from holdall import OptStorage
from holdall.demo import make_part

MiB = 1024 * 1024


def large_arrays(nbytes: int) -> dict[str, np.ndarray[Any, Any]]:
    """The three 256 MiB arrays of the issue."""
    n = nbytes // 4
    rng = np.random.default_rng(0)
    x = np.linspace(0, 400 * np.pi, n)
    smooth = (np.sin(x) * 100 + np.sin(0.37 * x) * 20 + np.cos(0.011 * x) * 5).astype(np.float32)
    random = rng.random(n, dtype=np.float32)
    index = np.cumsum(rng.integers(0, 4, n)).astype(np.int32)
    return {"smooth float32": smooth, "random float32": random, "index int32": index}


def _dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _zarr_codecs(array: np.ndarray[Any, Any], preset: str) -> dict[str, Any]:
    """zarr-python codecs equal to what OptStorage writes for `array` (CRC-32C included)."""
    from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec
    from zarr.codecs.numcodecs import Delta

    from holdall.storage._zarr_codecs import new_spec

    if preset == "zstd12":
        filters = [Delta(dtype=str(array.dtype))] if array.dtype.kind in "iu" else []
        return {"filters": filters, "compressors": [ZstdCodec(level=12), Crc32cCodec()]}
    spec = new_spec(array, zarr_format=3, compression="default", chunk_bytes=4 * MiB)
    assert spec.compressor is not None
    config = spec.compressor.get_config()
    if config["id"] == "blosc":
        shuffle = {0: "noshuffle", 1: "shuffle", 2: "bitshuffle"}[config["shuffle"]]
        codec: Any = BloscCodec(cname=config["cname"], clevel=config["clevel"], shuffle=shuffle)
    else:
        codec = ZstdCodec(level=config["level"])
    return {"filters": [], "compressors": [codec, Crc32cCodec()]}


def bench_large(work: Path, nbytes: int, repeats: int) -> tuple[str, dict[str, Any]]:
    import h5py
    import zarr

    rows = []
    checks: dict[str, Any] = {}
    chunk_elems = (4 * MiB) // 4

    def one(name: str, array: np.ndarray[Any, Any]) -> None:
        target = work / "large"

        def fresh() -> None:
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()

        def opt_write(compression: str) -> Callable[[], None]:
            def run() -> None:
                options: dict[str, Any] = {"delta": compression == "zstd12"}
                with OptStorage(
                    target / "s.zarr", mode="w", compression=compression, **options
                ) as store:  # type: ignore[arg-type]
                    store.save_data("x", array)

            return run

        def opt_read() -> None:
            with OptStorage(target / "s.zarr") as store:
                store.load_data("x")

        def zarr_write(preset: str) -> Callable[[], None]:
            def run() -> None:
                with _quiet():
                    z = zarr.create_array(
                        str(target / "z.zarr"),
                        shape=array.shape,
                        dtype=array.dtype,
                        chunks=(chunk_elems,),
                        **_zarr_codecs(array, preset),
                    )
                    z[:] = array

            return run

        def zarr_read() -> None:
            with _quiet():
                zarr.open_array(str(target / "z.zarr"), mode="r")[:]

        def h5_write() -> None:
            with h5py.File(target / "a.h5", "w") as f:
                f.create_dataset("x", data=array)

        def h5_read() -> None:
            with h5py.File(target / "a.h5", "r") as f:
                f["x"][()]

        def savez(compressed: bool) -> Callable[[], None]:
            def run() -> None:
                (np.savez_compressed if compressed else np.savez)(target / "a.npz", x=array)

            return run

        def load_npz() -> None:
            with np.load(target / "a.npz") as f:
                f["x"]

        cases: list[tuple[str, Callable[[], None], Callable[[], None], str, int]] = [
            ("holdall OptStorage (default)", opt_write("default"), opt_read, "s.zarr", repeats),
            ("zarr-python, same codec", zarr_write("default"), zarr_read, "z.zarr", repeats),
            ("holdall OptStorage zstd12 (seeds)", opt_write("zstd12"), opt_read, "s.zarr", 1),
            ("zarr-python, zstd12 (seeds)", zarr_write("zstd12"), zarr_read, "z.zarr", 1),
            ("h5py (uncompressed)", h5_write, h5_read, "a.h5", repeats),
            ("np.savez", savez(False), load_npz, "a.npz", repeats),
            ("np.savez_compressed", savez(True), load_npz, "a.npz", 1),
        ]
        results = {}
        for label, write, read, output, n in cases:
            write_s = median_seconds(write, repeats=n, setup=fresh)
            read_s = median_seconds(read, repeats=n)
            ratio = array.nbytes / _dir_size(target / output)
            results[label] = (write_s, read_s, ratio)
            rows.append(
                [
                    name,
                    label,
                    f"{array.nbytes / write_s / 1e9:.2f}",
                    f"{array.nbytes / read_s / 1e9:.2f}",
                    f"{ratio:.2f}",
                ]
            )
            print(rows[-1], flush=True)
        default, same, seeds = (
            results[k]
            for k in (
                "holdall OptStorage (default)",
                "zarr-python, same codec",
                "holdall OptStorage zstd12 (seeds)",
            )
        )
        checks[name] = {
            "write vs zarr": same[0] / default[0],
            "read vs zarr": same[1] / default[1],
            "write vs zstd12": seeds[0] / default[0],
            "ratio vs zstd12": default[2] / seeds[2],
        }

    for name, array in large_arrays(nbytes).items():
        one(name, array)

    table = markdown_table(["data", "method", "write GB/s", "read GB/s", "ratio"], rows)
    return table, checks


def bench_small(work: Path, stores: int, zarr_stores: int) -> tuple[str, dict[str, float]]:
    import h5py
    import zarr
    from zarr.codecs import ZstdCodec

    rng = np.random.default_rng(1)
    parts = []
    for _ in range(stores):
        part = make_part(rng)
        flat: dict[str, np.ndarray[Any, Any]] = {}
        for group, values in part.items():
            if isinstance(values, dict):
                for key, value in values.items():
                    flat[f"{group}/{key}"] = np.asarray(value)
        # ~50 arrays per store, as an encoder pushing many small attributes would.
        for extra in range(50 - len(flat)):
            flat[f"attributes/a{extra}"] = rng.random(int(rng.integers(10, 300))).astype(np.float32)
        parts.append(flat)
    arrays = len(parts[0])
    raw = sum(sum(a.nbytes for a in p.values()) for p in parts)
    rows = []
    rates: dict[str, float] = {}

    def one_round(
        label: str,
        write: Callable[[Path, dict[str, Any]], None],
        read: Callable[[Path], None],
        count: int,
    ) -> tuple[float, float, Path]:
        folder = work / label.replace(" ", "_")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        start = time.perf_counter()
        for index in range(count):
            write(folder / f"part_{index:04d}", parts[index])
        write_rate = count / (time.perf_counter() - start)
        start = time.perf_counter()
        for index in range(count):
            read(folder / f"part_{index:04d}")
        return write_rate, count / (time.perf_counter() - start), folder

    def measure(
        methods: list[
            tuple[
                str,
                Callable[[Path, dict[str, Any]], None],
                Callable[[Path], None],
                int,
                Callable[[Path], int],
                Callable[[Path], int],
            ]
        ],
        rounds: int,
    ) -> None:
        """Run the methods in turn, `rounds` times, so load changes hit all of them alike."""
        results: dict[str, list[tuple[float, float]]] = {m[0]: [] for m in methods}
        folders: dict[str, Path] = {}
        for _ in range(rounds):
            for label, write, read, count, _files, _size in methods:
                write_rate, read_rate, folders[label] = one_round(label, write, read, count)
                results[label].append((write_rate, read_rate))
        for label, _write, _read, count, files, size in methods:
            write_rate = float(np.median([r[0] for r in results[label]]))
            read_rate = float(np.median([r[1] for r in results[label]]))
            folder = folders[label]
            stored = sum(size(folder / f"part_{i:04d}") for i in range(count)) / count
            rates[label] = write_rate
            rates[label + " read"] = read_rate
            rows.append(
                [
                    label,
                    count,
                    f"{write_rate:.0f}",
                    f"{read_rate:.0f}",
                    files(folder / "part_0000"),
                    f"{stored / 1024:.1f}",
                    f"{raw / stores / stored:.2f}",
                ]
            )
            print(rows[-1], flush=True)

    def opt_write(path: Path, part: dict[str, Any]) -> None:
        with OptStorage(f"{path}.zarr", mode="w") as store:
            for key, value in part.items():
                store.save_data(key, value)
            store.compress_store()

    def opt_read(path: Path) -> None:
        with OptStorage(f"{path}.zarr") as store:
            for key in store.get_keys():
                store.load_data(key)

    def h5_write(path: Path, part: dict[str, Any]) -> None:
        with h5py.File(f"{path}.h5", "w") as f:
            for key, value in part.items():
                f.create_dataset(key, data=value)

    def h5_read(path: Path) -> None:
        with h5py.File(f"{path}.h5", "r") as f:

            def load(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset):
                    obj[()]

            f.visititems(load)

    def zarr_write(path: Path, part: dict[str, Any]) -> None:
        with _quiet():
            group = zarr.open_group(f"{path}.zarr", mode="w")
            for key, value in part.items():
                is_int = value.dtype.kind in "iu"
                from zarr.codecs.numcodecs import Delta

                group.create_array(
                    key,
                    data=value,
                    compressors=[ZstdCodec(level=12)],
                    filters=[Delta(dtype=str(value.dtype))] if is_int else [],
                )

    def zarr_read(path: Path) -> None:
        with _quiet():
            group = zarr.open_group(f"{path}.zarr", mode="r")
            for _, array in group.arrays():
                array[...]
            for _, sub in group.groups():
                for _, array in sub.arrays():
                    array[...]

    def count_files(suffix: str) -> Callable[[Path], int]:
        def run(path: Path) -> int:
            target = Path(f"{path}{suffix}")
            return 1 if target.is_file() else sum(1 for p in target.rglob("*") if p.is_file())

        return run

    def size_of(suffix: str) -> Callable[[Path], int]:
        return lambda path: _dir_size(Path(f"{path}{suffix}"))

    measure(
        [
            (
                "holdall OptStorage -> archive",
                opt_write,
                opt_read,
                stores,
                count_files(".zarr.data"),
                size_of(".zarr.data"),
            ),
            (
                "h5py one file per store (uncompressed)",
                h5_write,
                h5_read,
                stores,
                count_files(".h5"),
                size_of(".h5"),
            ),
        ],
        rounds=3,
    )
    measure(
        [
            (
                "zarr-python directory, zstd12 (seeds)",
                zarr_write,
                zarr_read,
                zarr_stores,
                count_files(".zarr"),
                size_of(".zarr"),
            )
        ],
        rounds=1,
    )
    table = markdown_table(
        ["method", "stores", "written/s", "read/s", "files per store", "KiB per store", "ratio"],
        rows,
    )
    return (
        f"{stores} stores of {arrays} arrays ({raw / stores / 1024:.0f} KiB uncompressed each); "
        "holdall and h5py run in turn, three rounds, medians.\n\n"
        f"{table}",
        rates,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--stores", type=int, default=200, help="per-part stores (default 200)")
    args = parser.parse_args()
    numcodecs.blosc.set_nthreads(1)
    nbytes = 16 * MiB if args.quick else 256 * MiB
    stores = 50 if args.quick else args.stores
    with tempfile.TemporaryDirectory(prefix="holdall-bench-", dir=".") as tmp:
        work = Path(tmp)
        large_table, checks = bench_large(work, nbytes, repeats=1 if args.quick else 3)
        small_table, rates = bench_small(work, stores, zarr_stores=10 if args.quick else 50)
    lines = []
    for data, ratios in checks.items():
        lines.append(
            f"- {data}: write {ratios['write vs zarr']:.2f}x and read {ratios['read vs zarr']:.2f}x zarr-python with the "
            f"same codec (target >= 0.90x); write {ratios['write vs zstd12']:.1f}x the Zstd-12 configuration "
            f"(target >= 10x) at {ratios['ratio vs zstd12']:.2f}x its compression ratio (target >= 1.00x)"
        )
    opt, h5, seeds = (
        rates[k]
        for k in (
            "holdall OptStorage -> archive",
            "h5py one file per store (uncompressed)",
            "zarr-python directory, zstd12 (seeds)",
        )
    )
    opt_r, h5_r = (
        rates["holdall OptStorage -> archive read"],
        rates["h5py one file per store (uncompressed)"],
    )
    lines.append(
        f"- small stores: written {opt / h5:.2f}x and read {opt_r / h5_r:.2f}x h5py (target >= 1.00x), "
        f"written {opt / seeds:.0f}x the Zstd-12 zarr directory configuration (target >= 25x)"
    )
    body = "\n".join(
        [
            "## Storage (issue: storage core)",
            "",
            f"Command: `.venv/bin/python -m benchmarks.storage{' --quick' if args.quick else ''}` on {machine_line()}.",
            "Write times include creating, writing and closing the store (for OptStorage: encode, flush "
            "or compress); read times open the store and load every value. Medians of 3 repeats for fast "
            "methods, 1 for the slow Zstd-12 and savez_compressed runs. Blosc runs single-threaded inside "
            "holdall's and zarr's own thread pools. Nothing is fsynced (like zarr and h5py's defaults).",
            "",
            "### Large arrays (256 MiB each)"
            if not args.quick
            else "### Large arrays (quick run: 16 MiB)",
            "",
            large_table,
            "",
            "### Per-part stores",
            "",
            small_table,
            "",
            "### Targets",
            "",
            *lines,
        ]
    )
    write_section("storage", body)
    print(body)


if __name__ == "__main__":
    main()
