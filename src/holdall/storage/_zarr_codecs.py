"""Encode and decode Zarr arrays directly with numcodecs, without zarr-python's per-array cost.

zarr-python spends milliseconds creating each array; a per-part store of 50 small arrays
would take a quarter second. `ArraySpec` describes one array's on-disk layout (the fields of
a Zarr v2 ``.zarray`` or v3 ``zarr.json`` document); `encode_array` turns a numpy array into
those documents plus its chunk bytes, and `decode_array` reads them back, decompressing
chunks in parallel straight into the output. What comes out is standard Zarr that
zarr-python and xarray read. Layouts this module does not handle (sharding, a transpose after
other codecs, exotic filters) are reported by `parse_array_document` returning None, and the
caller falls back to zarr-python.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from typing import Any, Literal

import google_crc32c
import numcodecs
import numpy as np
from numcodecs.abc import Codec

from holdall._core.values import has_nan, nan_error
from holdall.errors import CorruptedFileError, IntegrityError

__all__ = [
    "ArraySpec",
    "Compression",
    "array_documents",
    "choose_chunks",
    "codec_pool",
    "decode_array",
    "dumps_document",
    "encode_array",
    "group_documents",
    "parse_array_document",
]

ZarrFormat = Literal[2, 3]
#: Codec presets: "default" (chosen per array by measurement, see `choose_compressor` and
#: docs/benchmarks.md), "zstd12" (the seeds' compressor, Zstd level 12; their delta filter on
#: integers, outside the Zarr v3 core spec, is the separate `delta` opt-in) and "none".
Compression = Literal["default", "zstd12", "none"]
#: Arrays up to this many bytes get the fast fixed default codec without sampling.
SMALL_ARRAY_BYTES = 1024 * 1024
#: Bytes of the first chunk compressed by each candidate codec when choosing one.
_SAMPLE_BYTES = 128 * 1024
#: A candidate within this fraction of Zstd-12's sampled ratio counts as reaching it (the sample
#: is a small part of the array; 1% keeps ties from flipping on noise).
_RATIO_TOLERANCE = 0.01

_V3_TYPES = {
    "b": {1: "bool"},
    "i": {1: "int8", 2: "int16", 4: "int32", 8: "int64"},
    "u": {1: "uint8", 2: "uint16", 4: "uint32", 8: "uint64"},
    "f": {2: "float16", 4: "float32", 8: "float64"},
    "c": {8: "complex64", 16: "complex128"},
}
_V3_NAMES = {
    name: (kind, size) for kind, sizes in _V3_TYPES.items() for size, name in sizes.items()
}
_BLOSC_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
_BLOSC_SHUFFLE_NAMES = {value: name for name, value in _BLOSC_SHUFFLE.items()}

#: Target uncompressed bytes per chunk (measured: see docs/benchmarks.md).
DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024


@lru_cache(maxsize=1)
def codec_pool() -> ThreadPoolExecutor:
    """Threads for chunk (de)compression; numcodecs releases the GIL while it works."""
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="holdall-codec")


@dataclass(frozen=True, slots=True)
class ArraySpec:
    """The on-disk layout of one Zarr array."""

    shape: tuple[int, ...]
    """Array shape."""
    dtype: np.dtype[Any]
    """Stored dtype with its byte order (object for variable-length strings)."""
    chunks: tuple[int, ...]
    """Chunk shape of the regular grid."""
    filters: tuple[Codec, ...]
    """Array-to-array codecs applied before serialization (for example Delta)."""
    compressor: Codec | None
    """Bytes-to-bytes codec applied after serialization."""
    zarr_format: ZarrFormat
    """2 or 3."""
    separator: str = "/"
    """Chunk key separator."""
    v2_keys: bool = False
    """For format 3: the "v2" chunk key encoding (no ``c`` prefix)."""
    order: Literal["C", "F"] = "C"
    """Memory order of chunks (format 2 only)."""
    fill_value: Any = 0
    """Value of chunks that were never written."""
    checksum: bool = False
    """Each chunk ends with the CRC-32C of its bytes (the Zarr v3 core ``crc32c`` codec)."""
    transpose: tuple[int, ...] | None = None
    """For format 3: the order of the core ``transpose`` codec applied to each chunk first."""

    @property
    def is_string(self) -> bool:
        """True for variable-length UTF-8 strings."""
        return self.dtype.kind == "O"

    def grid(self) -> tuple[int, ...]:
        """Number of chunks along each axis."""
        return tuple(
            math.ceil(s / c) if s else 0 for s, c in zip(self.shape, self.chunks, strict=True)
        )

    def chunk_indices(self) -> Iterator[tuple[int, ...]]:
        """Every chunk index in C order."""
        return product(*(range(n) for n in self.grid()))

    def chunk_key(self, index: tuple[int, ...]) -> str:
        """The store key of chunk `index`, relative to the array's folder."""
        if self.zarr_format == 3 and not self.v2_keys:
            return "c" + "".join(f"{self.separator}{i}" for i in index)
        return self.separator.join(str(i) for i in index) if index else "0"

    def region(self, index: tuple[int, ...]) -> tuple[slice, ...]:
        """The part of the array that chunk `index` covers."""
        return tuple(
            slice(i * c, min((i + 1) * c, s))
            for i, c, s in zip(index, self.chunks, self.shape, strict=True)
        )

    def encode_chunk(self, block: np.ndarray[Any, Any]) -> tuple[bytes, ...]:
        """The stored bytes of one chunk (padded to the full chunk shape when at an edge).

        They come in parts to write one after the other, the payload and then its CRC-32C:
        appending the checksum to the payload would copy megabytes per chunk.
        """
        if block.shape != self.chunks:
            padded = np.full(self.chunks, self.fill_value, dtype=block.dtype)
            padded[tuple(slice(0, n) for n in block.shape)] = block
            block = padded
        if self.is_string:
            raw: Any = np.frombuffer(
                _VLEN_UTF8.encode(np.ascontiguousarray(block, dtype=object).ravel()), dtype=np.uint8
            )
        else:
            if self.transpose is not None:
                block = block.transpose(self.transpose)
            values = np.ascontiguousarray(block, dtype=self.dtype.newbyteorder("="))
            for codec in self.filters:
                values = codec.encode(values)
            raw = np.ascontiguousarray(values, dtype=self.dtype)
        encoded = bytes(raw.data) if self.compressor is None else bytes(self.compressor.encode(raw))
        if self.checksum:
            return encoded, struct.pack("<I", google_crc32c.value(encoded))
        return (encoded,)

    def chunk_nbytes(self) -> int:
        """Uncompressed bytes of one full chunk (0 for strings, whose size varies)."""
        return 0 if self.is_string else math.prod(self.chunks) * self.dtype.itemsize

    def decode_chunk(self, data: bytes, *, path: str) -> np.ndarray[Any, Any]:
        """The full chunk array stored in `data`.

        The checksum is verified and the compressed frame's header checked against the chunk's
        expected size before any C decoder sees the bytes, so a truncated or damaged chunk is
        an error (`IntegrityError`, `CorruptedFileError`) naming it, never a crash or wrong data.
        """
        expected = self.chunk_nbytes()
        if self.checksum:
            data = verify_crc32c(data, path=path)
        if isinstance(self.compressor, numcodecs.Blosc):
            check_blosc_header(data, expected=expected, path=path)
        try:
            if isinstance(self.compressor, numcodecs.Blosc) and not self.is_string:
                # Straight into a new writable array (its header size was checked above):
                # no second copy to make the result writable.
                raw: Any = np.empty(expected, dtype=np.uint8)
                self.compressor.decode(data, out=raw)
            else:
                raw = self.compressor.decode(data) if self.compressor is not None else data
            if not self.is_string and memoryview(raw).nbytes != expected:
                raise ValueError(f"it holds {memoryview(raw).nbytes} bytes, expected {expected}")
            if self.is_string:
                flat = _VLEN_UTF8.decode(raw)
                return np.asarray(flat, dtype=object).reshape(self.chunks, order=self.order)
            values = np.frombuffer(raw, dtype=self.dtype)
            values = values.astype(self.dtype.newbyteorder("="), copy=False)
            for codec in reversed(self.filters):
                values = np.frombuffer(codec.decode(values), dtype=values.dtype)
            if self.transpose is not None:
                return _untranspose(values, self.chunks, self.transpose)
            return values.reshape(self.chunks, order=self.order)
        except (RuntimeError, ValueError, TypeError) as err:
            raise CorruptedFileError(f"chunk {path} cannot be decoded: {err}", path=path) from err


_VLEN_UTF8 = numcodecs.VLenUTF8()


def _untranspose(
    values: np.ndarray[Any, Any], chunks: tuple[int, ...], order: tuple[int, ...]
) -> np.ndarray[Any, Any]:
    """The chunk in C order from its `order`-transposed bytes.

    Component-major chunks (holdall's own layout, last axis first) are filled one component
    at a time: numpy's copy of the transposed view walks memory in an order 3-4x slower
    (measured: 3.2 against 0.86 ms for 350,000 points of 3 float32). Other orders (written by
    other tools) come back as a view.
    """
    stored = values.reshape([chunks[axis] for axis in order])
    if order != (len(chunks) - 1, *range(len(chunks) - 1)):
        return stored.transpose(tuple(np.argsort(order)))
    out = np.empty(chunks, dtype=stored.dtype)
    for component in range(chunks[-1]):
        out[..., component] = stored[component]
    return out


def verify_crc32c(data: bytes, *, path: str) -> bytes:
    """`data` without its trailing CRC-32C, or `IntegrityError` when the checksum differs."""
    if len(data) < 4:
        raise IntegrityError(
            f"chunk {path} is truncated: {len(data)} bytes, too short to hold its checksum",
            path=path,
        )
    body = bytes(data[:-4])
    stored = struct.unpack("<I", data[-4:])[0]
    actual = google_crc32c.value(body)
    if stored != actual:
        raise IntegrityError(
            f"chunk {path} is damaged: its CRC-32C is {actual:08x}, the stored one {stored:08x}",
            path=path,
            expected=stored,
            got=actual,
        )
    return body


def check_blosc_header(data: bytes, *, expected: int, path: str) -> None:
    """Refuse a Blosc frame whose header disagrees with its length or the chunk's size.

    The header records the uncompressed size (bytes 4-8) and the frame's own size (12-16);
    c-blosc trusts them, so a truncated frame handed to it can read past its end.
    """
    if len(data) < 16:
        raise CorruptedFileError(
            f"chunk {path} is truncated: {len(data)} bytes, shorter than a Blosc header",
            path=path,
        )
    nbytes, _blocksize, cbytes = struct.unpack_from("<III", data, 4)
    if cbytes != len(data) or (expected and nbytes != expected):
        raise CorruptedFileError(
            f"chunk {path} is damaged or truncated: its Blosc header says {cbytes} bytes "
            f"holding {nbytes}, the file has {len(data)} bytes for a chunk of {expected}",
            path=path,
        )


def choose_chunks(shape: tuple[int, ...], itemsize: int, target_bytes: int) -> tuple[int, ...]:
    """Chunk shape of about `target_bytes`, splitting the leading axes first.

    Chunks span whole trailing axes when they fit, so each chunk is one contiguous block of the
    array in C order (decoded without a copy).
    """
    chunks = [max(1, s) for s in shape]
    for axis in range(len(chunks)):
        inner = itemsize * math.prod(chunks[axis + 1 :])
        if inner * chunks[axis] <= target_bytes:
            break
        chunks[axis] = max(1, target_bytes // inner)
        if inner <= target_bytes:
            break
    return tuple(chunks)


def _fast_codec(dtype: np.dtype[Any]) -> Codec:
    """The fixed default for small arrays: Blosc-LZ4, bit shuffle for integers and bools."""
    shuffle = numcodecs.Blosc.BITSHUFFLE if dtype.kind in "biu" else numcodecs.Blosc.SHUFFLE
    return numcodecs.Blosc(cname="lz4", clevel=5, shuffle=shuffle)


def _candidates(dtype: np.dtype[Any]) -> list[Codec]:
    """Codecs tried on large arrays, fastest first (measured: docs/benchmarks.md).

    Blosc runs on 1-4 MiB blocks: its default blocks (tens of KiB) miss the repeats of
    arrays whose rows recur, which Zstd-12 finds. Byte shuffle for multi-byte items; one-byte
    items (bools) compress fastest unshuffled.
    """
    shuffle = numcodecs.Blosc.SHUFFLE if dtype.itemsize > 1 else numcodecs.Blosc.NOSHUFFLE
    return [
        numcodecs.Blosc(cname="lz4", clevel=1, shuffle=shuffle, blocksize=_MiB),
        numcodecs.Blosc(cname="zstd", clevel=1, shuffle=shuffle, blocksize=_MiB),
        numcodecs.Zstd(level=3),
        numcodecs.Blosc(cname="zstd", clevel=3, shuffle=shuffle, blocksize=4 * _MiB),
    ]


_MiB = 1024 * 1024
#: Arrays whose last axis has at most this many items (x, y, z of points; RGB) may be stored
#: transposed, that axis first, so each component's values lie together.
_MAX_COMPONENTS = 16

#: The seeds' compressor, whose ratio on the sample the default must reach.
_REFERENCE = numcodecs.Zstd(level=12)


def component_order(shape: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[int, ...] | None:
    """The transpose order putting a small last axis first, or None when it does not apply."""
    if len(shape) < 2 or not 1 < shape[-1] <= _MAX_COMPONENTS or chunks[-1] != shape[-1]:
        return None
    return (len(shape) - 1, *range(len(shape) - 1))


def choose_layout(
    chunk: np.ndarray[Any, Any],
    filters: tuple[Codec, ...],
    order: tuple[int, ...] | None,
) -> tuple[tuple[int, ...] | None, Codec]:
    """(transpose order, compressor): the fastest trial reaching Zstd level 12's ratio.

    The seeds compress everything with Zstd-12, which is slow; the default must be much faster
    without storing more bytes. No single codec is best everywhere (Blosc's shuffle wins on
    noisy floats, long-range repeats need large blocks or Zstd's window), so a large array's
    first chunk is sampled: each candidate compresses the sample as stored (`order`, when
    given, is tried first: component-major points compress far better, docs/benchmarks.md),
    and the first, in the candidates' speed order, whose ratio reaches the seeds' (Zstd-12,
    after delta on integers) on the same values wins. When none reaches it, the best ratio wins. Ratios, not timings, decide, so the
    choice is the same on every machine.
    """
    if order is None:
        flat = np.ascontiguousarray(chunk).reshape(-1)
        points = flat[: max(1, _SAMPLE_BYTES // max(flat.itemsize, 1))]
    else:
        components = chunk.shape[-1]
        rows = np.ascontiguousarray(chunk).reshape(-1, components)
        points = rows[: max(1, _SAMPLE_BYTES // max(rows.itemsize * components, 1))]
    layouts: list[tuple[tuple[int, ...] | None, np.ndarray[Any, Any]]] = [
        (None, points.reshape(-1))
    ]
    if order is not None:
        layouts.insert(0, (order, np.ascontiguousarray(points.T).reshape(-1)))
    trials = [
        (layout, codec, filtered)
        for layout, sample in layouts
        for filtered in [_filtered(sample, filters)]
        for codec in _candidates(chunk.dtype)
    ]
    # Zstd-12 runs in a codec thread while the candidates are tried here, fastest first; the
    # first that reaches its ratio ends the search, so slow candidates rarely run.
    reference = codec_pool().submit(
        _encoded_size, _REFERENCE, _filtered(points.reshape(-1), _delta_filter(chunk.dtype))
    )
    ratios: list[float] = []
    for layout, codec, values in trials:
        ratios.append(points.nbytes / max(_encoded_size(codec, values), 1))
        if ratios[-1] >= points.nbytes / max(reference.result(), 1) * (1 - _RATIO_TOLERANCE):
            return layout, codec
    best = trials[ratios.index(max(ratios))]
    return best[0], best[1]


def _delta_filter(dtype: np.dtype[Any]) -> tuple[Codec, ...]:
    """numcodecs' delta filter for an integer dtype (none for other kinds)."""
    return (numcodecs.Delta(dtype=dtype.newbyteorder("=").str),) if dtype.kind in "iu" else ()


def _encoded_size(codec: Codec, values: np.ndarray[Any, Any]) -> int:
    return len(codec.encode(values))


def _filtered(values: np.ndarray[Any, Any], filters: tuple[Codec, ...]) -> np.ndarray[Any, Any]:
    """`values` after `filters` (delta), as the compressor would see them."""
    for codec in filters:
        values = np.asarray(codec.encode(np.ascontiguousarray(values)))
    return values


def preset_codecs(
    array: np.ndarray[Any, Any],
    dtype: np.dtype[Any],
    compression: Compression,
    *,
    delta: bool,
    chunks: tuple[int, ...],
    zarr_format: ZarrFormat,
) -> tuple[tuple[Codec, ...], Codec | None, tuple[int, ...] | None]:
    """(filters, compressor, transpose order) for `array` under a preset.

    `delta` adds numcodecs' delta filter to integer arrays (outside the Zarr v3 core spec:
    zarr-python warns on open and tensorstore cannot decode it); with "zstd12" it completes the
    seeds' configuration. Only format 3 has a transpose codec.
    """
    if compression == "none":
        return (), None, None
    filters = _delta_filter(dtype) if delta else ()
    if compression == "zstd12":
        return filters, numcodecs.Zstd(level=12), None
    if dtype.kind in "OSU":
        return (), numcodecs.Zstd(level=3), None
    if array.nbytes <= SMALL_ARRAY_BYTES:
        return filters, _fast_codec(dtype), None
    first_chunk = np.asarray(array[tuple(slice(0, c) for c in chunks)])
    order = component_order(array.shape, chunks) if zarr_format == 3 else None
    transpose, compressor = choose_layout(first_chunk, filters, order)
    return filters, compressor, transpose


def _fill_json(value: Any, dtype: np.dtype[Any]) -> Any:
    if dtype.kind == "c":
        return [float(np.real(value)), float(np.imag(value))]
    if dtype.kind == "b":
        return bool(value)
    if dtype.kind == "f":
        return float(value)
    if dtype.kind in "iu":
        return int(value)
    return value


def _codec_v3(codec: Codec, dtype: np.dtype[Any]) -> dict[str, Any]:
    config = codec.get_config()
    name = config.pop("id")
    if name == "blosc":
        return {
            "name": "blosc",
            "configuration": {
                "typesize": dtype.itemsize,
                "cname": config["cname"],
                "clevel": config["clevel"],
                "shuffle": _BLOSC_SHUFFLE_NAMES[config["shuffle"]],
                "blocksize": config.get("blocksize", 0),
            },
        }
    if name == "zstd":
        return {
            "name": "zstd",
            "configuration": {"level": config["level"], "checksum": False},
        }
    if name == "delta":
        return {
            "name": "numcodecs.delta",
            "configuration": {"dtype": _V3_TYPES[dtype.kind][dtype.itemsize]},
        }
    return {"name": f"numcodecs.{name}", "configuration": config}


def _v3_data_type(dtype: np.dtype[Any]) -> Any:
    if dtype.kind == "O":
        return "string"
    if dtype.kind == "S":
        return {"name": "null_terminated_bytes", "configuration": {"length_bytes": dtype.itemsize}}
    return _V3_TYPES[dtype.kind][dtype.itemsize]


def array_documents(
    spec: ArraySpec, *, attributes: dict[str, Any], dimension_names: list[str]
) -> dict[str, dict[str, Any]]:
    """The metadata documents of `spec`: ``zarr.json`` (v3) or ``.zarray`` + ``.zattrs`` (v2)."""
    if spec.zarr_format == 3:
        codecs: list[dict[str, Any]] = []
        if spec.transpose is not None:
            codecs.append({"name": "transpose", "configuration": {"order": list(spec.transpose)}})
        codecs.extend(_codec_v3(c, spec.dtype) for c in spec.filters)
        if spec.is_string:
            codecs.append({"name": "vlen-utf8", "configuration": {}})
        elif spec.dtype.itemsize > 1 and spec.dtype.kind not in "S":
            endian = "big" if spec.dtype.byteorder == ">" else "little"
            codecs.append({"name": "bytes", "configuration": {"endian": endian}})
        else:
            codecs.append({"name": "bytes"})
        if spec.compressor is not None:
            codecs.append(_codec_v3(spec.compressor, spec.dtype))
        if spec.checksum:
            codecs.append({"name": "crc32c"})
        document: dict[str, Any] = {
            "zarr_format": 3,
            "node_type": "array",
            "shape": list(spec.shape),
            "data_type": _v3_data_type(spec.dtype),
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(spec.chunks)}},
            "chunk_key_encoding": {
                "name": "default",
                "configuration": {"separator": spec.separator},
            },
            "fill_value": _fill_json(spec.fill_value, spec.dtype)
            if spec.dtype.kind not in "OS"
            else "",
            "codecs": codecs,
            "attributes": attributes,
            "dimension_names": dimension_names,
        }
        return {"zarr.json": document}
    filters = [c.get_config() for c in spec.filters]
    if spec.is_string:
        filters.append({"id": "vlen-utf8"})
    zarray = {
        "zarr_format": 2,
        "shape": list(spec.shape),
        "chunks": list(spec.chunks),
        "dtype": "|O" if spec.is_string else spec.dtype.str,
        "fill_value": None,
        "order": "C",
        "filters": filters or None,
        "dimension_separator": spec.separator,
        "compressor": _codec_v2(spec.compressor),
    }
    zattrs = {**attributes, "_ARRAY_DIMENSIONS": dimension_names}
    return {".zarray": zarray, ".zattrs": zattrs}


def _codec_v2(codec: Codec | None) -> dict[str, Any] | None:
    """A v2 compressor document as zarr-python writes it (Zstd without a ``checksum`` member)."""
    if codec is None:
        return None
    config = dict(codec.get_config())
    if config["id"] == "zstd":
        config.pop("checksum", None)
    return config


def group_documents(attributes: dict[str, Any], zarr_format: ZarrFormat) -> dict[str, bytes]:
    """The metadata documents of a group."""
    if zarr_format == 3:
        return {
            "zarr.json": _dumps({"zarr_format": 3, "node_type": "group", "attributes": attributes})
        }
    docs = {".zgroup": _dumps({"zarr_format": 2})}
    if attributes:
        docs[".zattrs"] = _dumps(attributes)
    return docs


def dumps_document(document: dict[str, Any]) -> bytes:
    """A Zarr metadata document as compact JSON bytes."""
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


_dumps = dumps_document


def new_spec(
    array: np.ndarray[Any, Any],
    *,
    zarr_format: ZarrFormat,
    compression: Compression,
    chunk_bytes: int,
    delta: bool = False,
    checksum: bool = True,
) -> ArraySpec:
    """The layout holdall writes for `array` (checksums on v3 chunks unless `checksum` is off)."""
    dtype = np.dtype(object) if array.dtype.kind in "UO" else array.dtype
    itemsize = max(array.dtype.itemsize, 1) if dtype.kind != "O" else 16
    chunks = choose_chunks(array.shape, itemsize, chunk_bytes)
    filters, compressor, transpose = preset_codecs(
        array, dtype, compression, delta=delta, chunks=chunks, zarr_format=zarr_format
    )
    return ArraySpec(
        shape=array.shape,
        dtype=dtype,
        chunks=chunks,
        filters=filters,
        compressor=compressor,
        zarr_format=zarr_format,
        separator="/" if zarr_format == 3 else ".",
        fill_value=""
        if dtype.kind == "O"
        else (b"" if dtype.kind == "S" else np.zeros((), dtype)[()]),
        checksum=checksum and zarr_format == 3,
        transpose=transpose,
    )


def encode_array(
    spec: ArraySpec,
    array: np.ndarray[Any, Any],
    store: Callable[[str, tuple[bytes, ...]], None],
    *,
    nan_key: str | None = None,
) -> int:
    """Compress every chunk of `array` and hand (chunk key, its parts) to `store`.

    Returns the bytes stored. The parts of a chunk (`ArraySpec.encode_chunk`) are written one
    after the other. Chunks are compressed and stored in the codec threads (numcodecs and file
    writes release the GIL), so a large array's writes overlap its compression; `store` must
    be safe to call from several threads. At most two chunks per worker are in flight, so
    memory stays bounded. With `nan_key`, a chunk holding NaN stops the write with the
    `InvalidValueError` naming that key (the scan rides on the compressor's pass over the
    data). When anything fails, every chunk in flight has finished before the error is raised,
    so the caller can remove what was stored.
    """
    if array.dtype.kind == "U":
        array = array.astype(object)

    def encode_one(index: tuple[int, ...]) -> int:
        block = _block(array, spec, index)
        if nan_key is not None and has_nan(block):
            raise nan_error(array, key=nan_key)
        parts = spec.encode_chunk(block)
        store(spec.chunk_key(index), parts)
        return sum(len(part) for part in parts)

    indices = list(spec.chunk_indices())
    if len(indices) <= 1:
        return sum(encode_one(index) for index in indices)
    pool = codec_pool()
    window = 2 * (pool._max_workers or 2)
    total = 0
    pending: deque[Future[int]] = deque()
    try:
        for index in indices:
            pending.append(pool.submit(encode_one, index))
            if len(pending) >= window:
                total += pending.popleft().result()
        return total + sum(future.result() for future in pending)
    finally:
        wait(pending)


def _block(
    array: np.ndarray[Any, Any], spec: ArraySpec, index: tuple[int, ...]
) -> np.ndarray[Any, Any]:
    """The part of `array` under chunk `index`, always an array (also for 0-d arrays)."""
    selection: tuple[Any, ...] = (*spec.region(index), Ellipsis)
    return np.asarray(array[selection])


def decode_array(
    spec: ArraySpec, get_chunk: Callable[[str], bytes | None], *, path: str
) -> np.ndarray[Any, Any]:
    """Read the whole array; missing chunks hold the fill value. Chunks decode in parallel."""
    if spec.chunks == spec.shape and spec.shape and not spec.is_string:
        # One chunk holding exactly the array (every small array): decode it as the result.
        key = spec.chunk_key((0,) * len(spec.shape))
        data = get_chunk(key)
        if data is not None:
            chunk = spec.decode_chunk(data, path=f"{path}/{key}").astype(spec.dtype, copy=False)
            if not chunk.flags.c_contiguous:  # stored transposed: one copy into C order
                return np.ascontiguousarray(chunk)
            return chunk if chunk.flags.writeable else chunk.copy()
    out_dtype = spec.dtype
    out = np.empty(spec.shape, dtype=out_dtype)
    indices = list(spec.chunk_indices())

    def fill(index: tuple[int, ...]) -> None:
        key = spec.chunk_key(index)
        data = get_chunk(key)
        region = spec.region(index)
        if data is None:
            out[region] = spec.fill_value if spec.fill_value is not None else 0
            return
        chunk = spec.decode_chunk(data, path=f"{path}/{key}")
        out[region] = chunk[tuple(slice(0, r.stop - r.start) for r in region)]

    if len(indices) <= 1:
        for index in indices:
            fill(index)
    else:
        for future in [codec_pool().submit(fill, index) for index in indices]:
            future.result()
    return out


def _v3_codec(config: dict[str, Any]) -> Codec | None:
    """The numcodecs codec of a v3 codec document (shared: a store repeats a few configurations)."""
    conf = config.get("configuration", {})
    try:
        key = (config["name"], tuple(sorted(conf.items())))
        return _cached_codec(key)
    except TypeError:  # unhashable configuration values: build it every time
        return _build_codec(config["name"], dict(conf))


@lru_cache(maxsize=256)
def _cached_codec(key: tuple[str, tuple[tuple[str, Any], ...]]) -> Codec | None:
    return _build_codec(key[0], dict(key[1]))


def _build_codec(name: str, conf: dict[str, Any]) -> Codec | None:
    if name == "blosc":
        return numcodecs.Blosc(
            cname=conf["cname"],
            clevel=conf["clevel"],
            shuffle=_BLOSC_SHUFFLE[conf["shuffle"]],
            blocksize=conf.get("blocksize", 0),
        )
    if name == "zstd":
        return numcodecs.Zstd(level=conf.get("level", 0), checksum=conf.get("checksum", False))
    if name == "gzip":
        return numcodecs.GZip(level=conf.get("level", 1))
    if name.startswith("numcodecs."):
        try:
            return numcodecs.get_codec({"id": name.removeprefix("numcodecs."), **conf})
        except (ValueError, KeyError, TypeError):
            return None
    return None


def parse_array_document(documents: dict[str, Any]) -> ArraySpec | None:
    """The `ArraySpec` of parsed metadata documents, or None when only zarr-python can read it.

    `documents` holds the parsed ``zarr.json`` (v3) or ``.zarray`` (v2).
    """
    if "zarr.json" in documents:
        return _parse_v3(documents["zarr.json"])
    return _parse_v2(documents[".zarray"])


def _parse_v3(doc: dict[str, Any]) -> ArraySpec | None:
    data_type = doc["data_type"]
    grid = doc.get("chunk_grid", {})
    if grid.get("name") != "regular" or doc.get("storage_transformers"):
        return None
    encoding = doc.get("chunk_key_encoding", {"name": "default"})
    separator = encoding.get("configuration", {}).get(
        "separator", "/" if encoding["name"] == "default" else "."
    )
    filters: list[Codec] = []
    compressor: Codec | None = None
    endian = "<"
    serializer = None
    checksum = False
    transpose: tuple[int, ...] | None = None
    for position, config in enumerate(doc["codecs"]):
        name = config["name"]
        if checksum:
            return None  # a codec after the checksum: not a layout holdall decodes itself
        if name == "transpose" and position == 0:
            order = config.get("configuration", {}).get("order")
            if not isinstance(order, list) or sorted(order) != list(range(len(doc["shape"]))):
                return None  # zarr-python's own reader will report it
            transpose = tuple(order)
        elif name == "crc32c":
            if serializer is None:
                return None
            checksum = True
        elif name == "bytes":
            serializer = "bytes"
            endian = ">" if config.get("configuration", {}).get("endian") == "big" else "<"
        elif name == "vlen-utf8":
            serializer = "string"
        elif serializer is None:
            if name != "numcodecs.delta":
                return None
            codec = _v3_codec(config)
            if codec is None:
                return None
            filters.append(codec)
        else:
            if compressor is not None:
                return None
            compressor = _v3_codec(config)
            if compressor is None:
                return None
    if data_type == "string" and serializer == "string":
        dtype: np.dtype[Any] = np.dtype(object)
    elif isinstance(data_type, str) and data_type in _V3_NAMES and serializer == "bytes":
        kind, size = _V3_NAMES[data_type]
        dtype = np.dtype(f"{endian if size > 1 else '|'}{kind}{size}")
    elif isinstance(data_type, dict) and data_type.get("name") == "null_terminated_bytes":
        dtype = np.dtype(f"S{data_type['configuration']['length_bytes']}")
    else:
        return None
    fill = doc.get("fill_value", 0)
    if dtype.kind == "c" and isinstance(fill, list):
        fill = complex(float(fill[0]), float(fill[1]))
    elif dtype.kind == "f" and isinstance(fill, str):
        fill = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(fill, 0.0)
    elif dtype.kind == "S":
        fill = b""
    return ArraySpec(
        shape=tuple(doc["shape"]),
        dtype=dtype,
        chunks=tuple(grid["configuration"]["chunk_shape"]),
        filters=tuple(filters),
        compressor=compressor,
        zarr_format=3,
        separator=separator,
        v2_keys=encoding["name"] == "v2",
        fill_value=fill,
        checksum=checksum,
        transpose=transpose,
    )


def _parse_v2(doc: dict[str, Any]) -> ArraySpec | None:
    raw_dtype = doc["dtype"]
    if not isinstance(raw_dtype, str):
        return None  # structured dtypes
    filters: list[Codec] = []
    is_string = False
    for config in doc.get("filters") or []:
        if config["id"] == "vlen-utf8":
            is_string = True
        elif config["id"] == "delta" and config.get("astype", config["dtype"]) == config["dtype"]:
            filters.append(numcodecs.Delta(dtype=np.dtype(config["dtype"]).newbyteorder("=").str))
        else:
            return None
    dtype = np.dtype(object) if is_string else np.dtype(raw_dtype)
    if dtype.kind == "O" and not is_string:
        return None
    if dtype.kind not in "biufcSO":
        return None
    compressor_config = doc.get("compressor")
    try:
        compressor = numcodecs.get_codec(compressor_config) if compressor_config else None
    except (ValueError, KeyError, TypeError):
        return None
    fill = doc.get("fill_value")
    if fill is None:
        fill = "" if is_string else (b"" if dtype.kind == "S" else 0)
    elif dtype.kind == "f" and isinstance(fill, str):
        fill = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[fill]
    elif dtype.kind == "c" and isinstance(fill, list):
        fill = complex(float(fill[0]), float(fill[1]))
    return ArraySpec(
        shape=tuple(doc["shape"]),
        dtype=dtype,
        chunks=tuple(doc["chunks"]),
        filters=tuple(filters),
        compressor=compressor,
        zarr_format=2,
        separator=doc.get("dimension_separator", "."),
        order=doc.get("order", "C"),
        fill_value=fill,
    )
