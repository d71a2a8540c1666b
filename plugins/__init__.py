"""Capabilities, one module each, chosen by BOT_PLUGINS. `core` is always loaded."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

from pond import Plugin, StartupError

ALWAYS = ("core",)


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(names: Iterable[str]) -> list[Plugin]:
    """Import plugins by name; an unknown name stops start-up listing what exists."""
    wanted = list(dict.fromkeys([*ALWAYS, *names]))
    known = available()
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise StartupError(
            f"BOT_PLUGINS names unknown plugin(s): {', '.join(unknown)}. "
            f"Available: {', '.join(known)}"
        )
    plugins = []
    for name in wanted:
        module = importlib.import_module(f"plugins.{name}")
        plugin = getattr(module, "plugin", None)
        if not isinstance(plugin, Plugin):
            raise StartupError(f"plugins/{name}.py has no module-level `plugin = Plugin(...)`")
        plugins.append(plugin)
    return plugins
