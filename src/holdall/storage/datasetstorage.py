"""Import path of seed code: ``from hoops_ai.storage.datasetstorage import SchemaBuilder``.

An alias of `holdall.schema`, so switching is a one-word edit of the import.
"""

from __future__ import annotations

from holdall.schema import SchemaBuilder, SchemaGroup

__all__ = ["SchemaBuilder", "SchemaGroup"]
