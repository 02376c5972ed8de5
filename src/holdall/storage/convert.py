"""`convert_storage`: copy every data key and all metadata between any two backends (seed 000)."""

from __future__ import annotations

from holdall._core.progress import progress
from holdall.errors import ConversionError, HoldallError
from holdall.storage.base import SIZES_METADATA_KEY, DataStorage

__all__ = ["convert_storage"]


def convert_storage(
    source_handler: DataStorage, dest_handler: DataStorage, verbose: bool | None = False
) -> None:
    """Copy all data and metadata from `source_handler` into `dest_handler`, values unchanged.

    Uses only the `DataStorage` interface, so it works between any two backends (OptStorage,
    JsonStorageHandler, MemoryStorage, or your own). Size records (``file_sizes_KB``) are
    recomputed by the destination rather than copied, since they describe its own bytes.

    Parameters
    ----------
    source_handler
        Store to read from.
    dest_handler
        Store to write into (existing keys with the same names are replaced).
    verbose
        Show progress on stderr: True always (a bar on a terminal, a line per update
        elsewhere), False never, None only when stderr is a terminal.

    Raises
    ------
    ConversionError
        The source holds no data keys, or a key could not be copied (the message names it).
        Also a `RuntimeError`, as the seed documents.
    """
    keys = source_handler.get_keys()
    if not keys:
        raise ConversionError(f"nothing to convert: {source_handler!r} holds no data keys")
    for key in progress(keys, total=len(keys), label="convert", enabled=verbose):
        try:
            dest_handler.save_data(key, source_handler.load_data(key))
        except HoldallError as err:
            raise ConversionError(
                f"converting key {key!r} from {source_handler!r} to {dest_handler!r} failed: {err}",
                key=key,
            ) from err
    metadata = source_handler.load_metadata()
    for name, value in metadata.items():
        if name == SIZES_METADATA_KEY:
            continue
        try:
            dest_handler.save_metadata(name, value)
        except HoldallError as err:
            raise ConversionError(f"converting metadata {name!r} failed: {err}", key=name) from err
