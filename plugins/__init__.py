"""Capabilities, one module each, chosen by BOT_PLUGINS. `core` is always loaded.

A name is either one of the modules here (`greeter`) or a plugin from anywhere on the import
path, `package.module:attribute` (`examples.points.plugin:plugin`): users keep their own
plugins in their own packages, with their own templates (Plugin(persona_dir=...))."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterable

from pond import Plugin, Problem, StartupError

ALWAYS = ("core",)
_EXTERNAL = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def unknown(names: Iterable[str]) -> list[str]:
    """Names that are neither a plugin here nor written as package.module:attribute."""
    known = available()
    return [name for name in names if name not in known and not _EXTERNAL.match(name)]


def load(names: Iterable[str]) -> list[Plugin]:
    """Import plugins by name; an unknown name stops start-up listing what exists."""
    wanted = list(dict.fromkeys([*ALWAYS, *names]))
    known = available()
    if unknown(wanted):
        raise StartupError(
            Problem(
                "startup.unknown_plugins",
                "BOT_PLUGINS names unknown plugin(s): {names}. Available: {known}",
                names=unknown(wanted),
                known=known,
            )
        )
    return [_import(name) for name in wanted]


def _import(name: str) -> Plugin:
    module_name, _, attribute = name.partition(":")
    if not attribute:
        module_name, attribute = f"plugins.{name}", "plugin"
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        if error.name is None or not module_name.startswith(error.name):
            raise  # the plugin itself imports something missing: its own traceback says what
        raise StartupError(
            Problem(
                "startup.plugin_not_found",
                "BOT_PLUGINS: cannot import {module} (is its folder on the path?)",
                module=module_name,
            )
        ) from None
    plugin = getattr(module, attribute, None)
    if not isinstance(plugin, Plugin):
        raise StartupError(
            Problem(
                "startup.not_a_plugin",
                "BOT_PLUGINS: {module} has no module-level `{attribute} = Plugin(...)`",
                module=module_name,
                attribute=attribute,
            )
        )
    return plugin
