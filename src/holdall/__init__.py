"""holdall: one library for the data ML and scientific pipelines produce and consume."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
