"""Registries: named things of one kind (architectures, losses, feature extractors, recognisers, report
sections) looked up by the name a config or a flag gives, instead of if/else on strings.

One mechanism for all of them, so each refuses a duplicate name the same way (a second registration
never silently replaces the first: a plug-in could otherwise change what "face" or "stable" means
under the same cache keys and configs) and each names the known choices when a name is unknown.
Core module: no torch.
"""
from __future__ import annotations

from typing import Generic, Iterator, TypeVar

from facegan.errors import FaceganError

T = TypeVar("T")


class DuplicateNameError(FaceganError, ValueError):
    """A name registered twice: a programming error (ValueError) that still reads as one line (FaceganError)."""


class Registry(Generic[T]):
    """Named items of one kind, in registration order.

    `kind` names the thing in messages ("architecture"); `unknown` formats the error for a name not
    registered, with `{name}` and `{known}` (comma-separated names) filled in.
    """

    def __init__(self, kind: str, unknown: str | None = None) -> None:
        self.kind = kind
        self._unknown = unknown or f"unknown {kind} '{{name}}' (known: {{known}})"
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        """Register `item` as `name`; a name already taken raises DuplicateNameError. Returns `item`."""
        if not isinstance(name, str) or not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"{self.kind} names are short words (letters, digits, - and _), got {name!r}")
        if name in self._items:
            raise DuplicateNameError(f"a {self.kind} named '{name}' is already registered; choose another name, or unregister it first")
        self._items[name] = item
        return item

    def remove(self, name: str) -> None:
        """Forget `name` (tests and plug-ins that register for a while); unknown names are ignored."""
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        """The item registered as `name`; an unknown name is one FaceganError line listing the choices."""
        self.check(name)
        return self._items[name]

    def check(self, name: str) -> None:
        """Raise the one-line FaceganError for a name that is not registered."""
        if name not in self._items:
            raise FaceganError(self._unknown.format(name=name, known=", ".join(self._items)))

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)
