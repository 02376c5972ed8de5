"""Finding a pipeline's input files: providers (local, listed, fsspec) and `CADFileRetriever`."""

from __future__ import annotations

from holdall.files.providers import (
    FileEntry,
    FsspecStorageProvider,
    LocalStorageProvider,
    StorageProvider,
)
from holdall.files.retriever import CADFileRetriever

__all__ = [
    "CADFileRetriever",
    "FileEntry",
    "FsspecStorageProvider",
    "LocalStorageProvider",
    "StorageProvider",
]
