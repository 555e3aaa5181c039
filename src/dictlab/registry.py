"""String-keyed registries: methods, solvers and metrics are looked up by name, never by if/elif."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of objects (factories, functions) with a readable error for unknown names.

    >>> SOLVERS = Registry("solver")
    >>> @SOLVERS.register("fista")
    ... def fista(...): ...
    >>> SOLVERS["fista"]
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            allowed = ", ".join(sorted(self._entries))
            raise ValueError(f"unknown {self.kind} {name!r}; allowed: {allowed}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        return sorted(self._entries)
