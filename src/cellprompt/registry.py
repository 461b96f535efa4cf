"""Names to implementations, one style for every pluggable part of cellprompt.

Sandbox backends, model providers, executors, evolution strategies and graders are
each a `Registry`: an implementation is added by decorating, in the module that owns
the name, a factory that imports what it needs (an optional SDK, a heavy module)
only when that name is asked for. Listing the names never imports an implementation,
so `--help` and error messages stay fast and work without the optional extras.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """An ordered mapping of names to entries (factories or classes), filled by `register`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # what an entry is, for messages: "sandbox backend", "grader"…
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding its target under `name`; a second entry for a name replaces the first."""

        def add(entry: T) -> T:
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T | None:
        return self._entries.get(name)

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def unknown(self, name: object) -> str:
        """The message for a name nobody registered: what was asked, and what exists."""
        return f"unknown {self.kind} {name!r}: use one of {', '.join(self._entries)}"
