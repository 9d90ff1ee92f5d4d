"""Named factories with one rule for every registry in the package (strategies, pipeline parts, ...).

A factory is registered under a name once; registering the name again is an error unless
``replace=True``. A factory given as ``"module:attr"`` is imported on first use, so optional
extras stay optional. An unknown name is an error that lists the known ones;
:meth:`Registry.build` also refuses options the factory does not take.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Generic, Iterator, Mapping, TypeVar

__all__ = ["Registry", "resolve_import"]

T = TypeVar("T")


def resolve_import(target: str, *, what: str = "factory") -> Any:
    """``"package.module:attr"`` -> the attribute (imported now)."""
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{what} must look like 'module:attr', got {target!r}")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """``name -> factory`` for one kind of thing (``kind`` names it in error messages)."""

    def __init__(self, kind: str, entries: Mapping[str, T | str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        for name, factory in (entries or {}).items():
            self.register(name, factory)

    def register(self, name: str, factory: T | str, *, replace: bool = False) -> None:
        """Add ``factory`` under ``name``; a name already taken is refused unless ``replace=True``."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if isinstance(factory, str):
            if ":" not in factory:
                raise ValueError(f"{self.kind} {name!r}: a lazy factory must look like 'module:attr', got {factory!r}")
        elif not callable(factory):
            raise ValueError(f"{self.kind} {name!r}: factory must be callable or 'module:attr', got {factory!r}")
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered (pass replace=True to replace it)")
        self._entries[name] = factory

    def unregister(self, name: str) -> None:
        """Remove ``name`` (an unknown name is an error)."""
        self._check(name)
        del self._entries[name]

    def get(self, name: str) -> T:
        """The factory registered as ``name`` (imported now if it was given as ``"module:attr"``)."""
        self._check(name)
        factory = self._entries[name]
        if isinstance(factory, str):
            factory = resolve_import(factory, what=f"{self.kind} {name!r}")
            self._entries[name] = factory
        return factory  # type: ignore[return-value]

    def build(self, spec: Any, *args: Any, instance_of: type | tuple[type, ...] | None = None,
              **options: Any) -> Any:
        """``get(spec)(*args, **options)``, with the options checked against the factory's signature.

        With ``instance_of``, an instance given as ``spec`` is returned as is (options are then
        an error) and the factory must return one.
        """
        if instance_of is not None and isinstance(spec, instance_of):
            if options:
                raise ValueError(f"options are only accepted with a {self.kind} name, got {sorted(options)} with {spec!r}")
            return spec
        factory = self.get(spec)
        try:
            sig = inspect.signature(factory)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            sig = None
        if sig is not None and not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            unknown = sorted(set(options) - set(sig.parameters))
            if unknown:
                raise ValueError(f"{self.kind} {spec!r} does not take option(s) {unknown}; "
                                 f"it takes {sorted(sig.parameters)}")
        obj = factory(*args, **options)  # type: ignore[operator]
        if instance_of is not None and not isinstance(obj, instance_of):
            names = instance_of.__name__ if isinstance(instance_of, type) else " or ".join(t.__name__ for t in instance_of)
            raise ValueError(f"{self.kind} factory for {spec!r} must return a {names}, got {type(obj).__name__}")
        return obj

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def _check(self, name: str) -> None:
        if not isinstance(name, str) or name not in self._entries:
            raise ValueError(f"{self.kind} must be one of {', '.join(self._entries) or '(none registered)'}, "
                             f"got {name!r}")

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()!r})"

