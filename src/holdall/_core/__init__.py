"""Shared machinery that no user imports directly: keys, locations, atomic writes, codecs."""
