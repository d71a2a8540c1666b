"""Project rules that code review would otherwise have to remember."""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

from harness import ROOT

import plugins
from pond.config import SECTIONS, Settings, section_keys

CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")


def test_pond_and_all_plugins_import_without_wechaty() -> None:
    names = ",".join(plugins.available())
    code = (
        "import sys; sys.path.insert(0, '.'); import pond, plugins; "
        f"plugins.load({names!r}.split(',')); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'wechaty', 'wechaty_puppet'}); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_plugins_hold_no_chinese_string_literals() -> None:
    """Customer-facing copy lives in persona/; trigger words in data or config."""
    offenders = []
    for path in sorted((ROOT / "plugins").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and CJK.search(node.value)
            ):
                offenders.append(f"{path.name}:{node.lineno}: {node.value!r}")
    assert offenders == []


def example_env() -> dict[str, str]:
    values = {}
    for line in (ROOT / "config.example.env").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_example_env_documents_every_key_with_its_real_default() -> None:
    example = example_env()
    documented = set(example)
    for prefix, cls in SECTIONS:
        assert set(section_keys(cls, prefix)) <= documented, prefix
    for plugin in plugins.load(plugins.available()):
        if plugin.config_type is not None:
            keys = section_keys(plugin.config_type, plugin.name.upper())
            assert set(keys) <= documented, plugin.name
    # The example's values are the defaults, so copying it changes nothing.
    assert Settings.from_mapping(example).bot == Settings().bot
    assert Settings.from_mapping(example).outbox == Settings().outbox
    for plugin in plugins.load(plugins.available()):
        if plugin.config_type is not None:
            parsed = Settings.from_mapping(example).plugin_config(plugin.name, plugin.config_type)
            assert parsed == plugin.config_type(), plugin.name


def test_only_the_wechaty_transport_module_imports_wechaty() -> None:
    for path in [*ROOT.glob("pond/**/*.py"), *ROOT.glob("plugins/*.py"), ROOT / "bot.py"]:
        if path.parent.name == "transports" and path.name.startswith("wechaty"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                assert not any(n.startswith("wechaty") for n in names), path


def test_every_plugin_declares_persona_keys_that_exist() -> None:
    from pond import Persona

    persona = Persona(ROOT / "persona")
    for plugin in plugins.load(plugins.available()):
        persona.require(plugin.persona_keys, owner=plugin.name)
        assert dataclasses.is_dataclass(plugin.config_type) or plugin.config_type is None


def _plugin_files() -> list[Path]:
    loader = ROOT / "plugins" / "__init__.py"
    found = [p for p in (ROOT / "plugins").rglob("*.py") if p != loader]
    return sorted(found) + sorted((ROOT / "examples").rglob("plugin.py"))


def _owner(path: Path) -> str:
    """The plugin a file belongs to: plugins/x.py and plugins/_x/* belong to x."""
    rel = path.relative_to(ROOT).parts
    if rel[0] == "examples":
        return ".".join(rel[:-1])
    return rel[1].removesuffix(".py").lstrip("_") if len(rel) > 2 else rel[1].removesuffix(".py")


def test_plugins_reach_the_kernel_only_through_pond_and_their_context() -> None:
    """Context is the whole plugin API: a plugin imports `pond` (never a pond submodule),
    its own private package, never another plugin's; it never holds the App."""
    offenders = []
    for path in _plugin_files():
        text = path.read_text(encoding="utf-8")
        owner = _owner(path)
        where = path.relative_to(ROOT)
        for word in ("ctx.app", "WeakKeyDictionary", "ctx._app"):
            if word in text:
                offenders.append(f"{where}: uses {word}")
        for node in ast.walk(ast.parse(text)):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "pond" and len(parts) > 1:
                    offenders.append(f"{where}:{node.lineno}: imports {name}")
                # plugins._core: helpers of the always-loaded core plugin shared by the
                # others (intents such as "how to buy", calls to action), not private state.
                if parts[0] == "plugins" and parts[1:2] not in ([f"_{owner}"], ["_core"]):
                    offenders.append(f"{where}:{node.lineno}: imports {name}")
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "pond"
                and any(a.name == "App" for a in node.names)
            ):
                offenders.append(f"{where}:{node.lineno}: imports App")
    assert offenders == []


def test_type_ignores_stay_few() -> None:
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in [*ROOT.glob("pond/**/*.py"), *ROOT.glob("plugins/**/*.py")]
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if "type: ignore" in line
    ]
    assert len(found) < 10, found
