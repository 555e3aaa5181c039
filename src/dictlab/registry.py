"""String-keyed registries: methods, solvers, generators, tasks and model kinds are looked up by name.

A registry may name an entry-point group (``plugins``): the first time a name is missing, every module of
that group is imported (their imports register entries), then the lookup is tried again. This is how a lower
layer finds what a higher one registers without importing it by name — ``dictlab.models`` loads the SAE
kinds through the group ``dictlab.models`` declared in ``pyproject.toml`` — and how another installed
package adds a generator, task or model kind of its own.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")

_LOADED_GROUPS: set[str] = set()


def load_plugins(group: str) -> None:
    """Import every module of entry-point group ``group`` once per process (each registers on import)."""
    if group in _LOADED_GROUPS:
        return
    _LOADED_GROUPS.add(group)  # before importing: a plugin that looks itself up must not recurse
    for point in entry_points(group=group):
        importlib.import_module(point.value.split(":", 1)[0])


class Registry(Generic[T]):
    """A named table of objects (factories, functions) with a readable error for unknown names.

    >>> SOLVERS = Registry("solver")
    >>> @SOLVERS.register("fista")
    ... def fista(...): ...
    >>> SOLVERS["fista"]
    """

    def __init__(self, kind: str, *, plugins: str | None = None) -> None:
        self.kind = kind
        self.plugins = plugins
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def _load(self) -> None:
        if self.plugins is not None:
            load_plugins(self.plugins)

    def __getitem__(self, name: str) -> T:
        if not isinstance(name, str):
            raise ValueError(f"a {self.kind} is named by a string, got {type(name).__name__} {name!r}")
        if name not in self._entries:
            self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}") from None

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str) and name not in self._entries:
            self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._load()
        return sorted(self._entries)

    def in_order(self) -> list[tuple[str, T]]:
        """(name, entry) pairs in registration order (where order matters: the columns of a record)."""
        self._load()
        return list(self._entries.items())

    def remove(self, name: str) -> T:
        """Unregister ``name`` (a test's or a session's temporary entry); ValueError if it is not registered."""
        entry = self[name]
        del self._entries[name]
        return entry
