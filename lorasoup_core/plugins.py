"""Named plugin registries: composers, filters, benchmarks, model sources, stores, data sources.

Each plugin is one small module that registers itself with a decorator; looking up an unknown
name fails loudly and lists what exists (mergekit's pattern).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownPluginError(KeyError):
    """Raised for a name no plugin registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


class Registry(Generic[T]):
    """A name -> object table filled by the ``register`` decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            for key in (name, *aliases):
                if key in self._items and self._items[key] is not obj:
                    raise ValueError(f"{self.kind} {key!r} is registered twice")
                self._items[key] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise UnknownPluginError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def load_plugins(names: list[str]) -> None:
    """Import plugin modules so the methods, composers, filters ... they register can be named: a dotted
    module name, or the path of a .py file (imported once per process, under a name derived from its path).
    One ValueError naming the plugin that cannot be imported."""
    import hashlib
    import importlib
    import importlib.util
    import sys
    from pathlib import Path

    for name in names:
        try:
            if name.endswith(".py") or "/" in name:
                path = Path(name).expanduser().resolve()
                module = f"lorasoup_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
                if module in sys.modules:
                    continue
                spec = importlib.util.spec_from_file_location(module, path)
                if spec is None or spec.loader is None or not path.is_file():
                    raise ImportError(f"no Python file at {path}")
                loaded = importlib.util.module_from_spec(spec)
                sys.modules[module] = loaded
                try:
                    spec.loader.exec_module(loaded)
                except BaseException:
                    del sys.modules[module]
                    raise
            else:
                importlib.import_module(name)
        except Exception as err:  # noqa: BLE001  (any import failure is this plugin's)
            raise ValueError(f"plugin {name!r} cannot be imported: {type(err).__name__}: {err}") from None
