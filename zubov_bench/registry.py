"""A small name -> factory registry, shared by models, datasets and perturbations."""
from __future__ import annotations

from difflib import get_close_matches
from typing import Callable, Dict, Generic, Iterator, TypeVar

from .errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, loader: Callable[[], None] | None = None):
        self.kind = kind
        self._items: Dict[str, T] = {}
        self._loader = loader
        self._loaded = False

    def register(self, name: str, item: T | None = None, *, replace: bool = False):
        """Register `item` under `name`; usable as a decorator when `item` is omitted."""

        def add(obj: T) -> T:
            if name in self._items and not replace and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return add if item is None else add(item)

    def class_decorator(self, name: str, name_attr: str):
        """Register a class under `name` and record the name on the class as `name_attr`."""

        def add(cls):
            setattr(cls, name_attr, name)
            return self.register(name, cls)

        return add

    def _ensure_loaded(self) -> None:
        if not self._loaded and self._loader is not None:
            self._loaded = True
            self._loader()

    def get(self, name: str) -> T:
        self._ensure_loaded()
        if name not in self._items:
            hint = get_close_matches(name, list(self._items), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            known = ", ".join(sorted(self._items))
            raise UserError(f"unknown {self.kind} {name!r}{extra}; known: {known}")
        return self._items[name]

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self):
        self._ensure_loaded()
        return sorted(self._items.items())
