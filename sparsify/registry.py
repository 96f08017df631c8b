"""Name -> object registries; a failed lookup lists what is registered."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from sparsify.errors import SparsifyError

T = TypeVar("T")


def canonical_key(name: str) -> str:
    """Case, '-', '_' and spaces are ignored when matching names."""
    return "".join(ch for ch in name.lower() if ch not in "-_ ")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, item: T, aliases: tuple[str, ...] = ()) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        for alias in (name, *aliases):
            self._aliases[canonical_key(alias)] = name
        return item

    def decorator(self, name: str, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        def wrap(item: T) -> T:
            return self.register(name, item, aliases)

        return wrap

    def resolve(self, name: str) -> str | None:
        """The registered name for `name` or one of its aliases, else None."""
        return self._aliases.get(canonical_key(name))

    def get(self, name: str) -> T:
        resolved = self.resolve(name)
        if resolved is None:
            raise SparsifyError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}"
                + self._alias_hint()
            )
        return self._items[resolved]

    def names(self) -> list[str]:
        return sorted(self._items)

    def aliases_of(self, name: str) -> list[str]:
        return sorted(a for a, n in self._aliases.items() if n == name and a != canonical_key(name))

    def _alias_hint(self) -> str:
        extra = {n: self.aliases_of(n) for n in self.names() if self.aliases_of(n)}
        if not extra:
            return ""
        return " (aliases: " + "; ".join(f"{n}: {', '.join(a)}" for n, a in extra.items()) + ")"

    def __contains__(self, name: str) -> bool:
        return self.resolve(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
