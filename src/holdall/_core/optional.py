"""Import optional dependencies at use time, with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from holdall.errors import BackendUnavailableError

__all__ = ["import_optional"]


def import_optional(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import `module`, or raise `BackendUnavailableError` naming ``holdall[extra]``.

    Parameters
    ----------
    module
        Dotted module name, for example ``"s3fs"``.
    extra
        The holdall extra that installs it, for example ``"s3"``.
    purpose
        What the caller was doing, for the message (``"reading s3:// locations"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise BackendUnavailableError(
            f"{purpose} needs the optional package {module!r}, which is not installed; "
            f"install it with: pip install 'holdall[{extra}]'",
            extra=extra,
        ) from err
