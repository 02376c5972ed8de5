"""A dict whose values are also attributes: ``fields.loss = 0.1`` is ``fields["loss"] = 0.1``."""

from __future__ import annotations

from typing import Any

__all__ = ["Bunch"]


class Bunch(dict[Any, Any]):
    """A dict with attribute access, as mltraq's ``Bunch`` (run and experiment fields).

    Names that are dict methods (``items``, ``keys``...) still read as the methods; store
    such values with ``bunch["items"] = ...`` and read them the same way.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__} has no attribute or key {name!r}; keys are "
                f"{sorted(map(str, self))}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no key {name!r}") from None

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *(key for key in self if isinstance(key, str))})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"
