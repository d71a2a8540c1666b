"""Persona code cache: a restart reuses compiled templates, never a stale or unchecked one."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pond.persona import Persona, PersonaError
from pond.persona import engine as persona_engine
from tests.test_persona import BASIC, edit, write


def start(root: Path, cache: Path) -> Persona:
    """A fresh process: nothing kept in memory from the last start, only the data dir."""
    persona_engine._BUILT.clear()
    return Persona(root, rng=random.Random(7), code_cache=cache)


def hello(persona: Persona) -> set[str]:
    return {persona.render("greeter/hello", chat_id=f"c{n}", name="小美").text for n in range(9)}


def test_second_start_uses_the_cache_and_renders_the_same(tmp_path: Path) -> None:
    root = write(tmp_path / "persona", BASIC)
    cache = tmp_path / "data" / "cache" / "persona-code.bin"
    first = start(root, cache)
    assert cache.exists()
    assert first._cache is not None and first._cache.hits == 0
    again = start(root, cache)
    assert again._cache is not None and again._cache.misses == 0 and again._cache.hits > 0
    assert hello(again) == hello(first) == {"你好 小美", "嗨 小美", "小美，欢迎光临小鱼塘"}


def test_an_edited_file_is_compiled_again(tmp_path: Path) -> None:
    root = write(tmp_path / "persona", BASIC)
    cache = tmp_path / "persona-code.bin"
    start(root, cache)
    edit(root, "greeter/hello.j2", '{# 示例变量\nname = "小美"\n#}\n早上好 {{ name }}\n')
    persona = start(root, cache)
    assert hello(persona) == {"早上好 小美"}


def test_a_brand_change_is_compiled_again(tmp_path: Path) -> None:
    root = write(tmp_path / "persona", BASIC)
    cache = tmp_path / "persona-code.bin"
    start(root, cache)
    toml = BASIC["persona.toml"].replace('"小鱼塘"', '"大鱼塘"')
    edit(root, "persona.toml", toml)
    persona = start(root, cache)
    assert "小美，欢迎光临大鱼塘" in hello(persona)


def test_a_cached_template_still_needs_its_sample_values(tmp_path: Path) -> None:
    """The cache keeps compiled code, not the verdict: the variable check and the trial
    render run at every start (here the sample block is gone, the variant text unchanged)."""
    files = {**BASIC, "greeter/bye.j2": '{# 示例变量\nname = "小美"\n#}\n再见 {{ name }}\n'}
    root = write(tmp_path / "persona", files)
    cache = tmp_path / "persona-code.bin"
    start(root, cache)
    edit(root, "greeter/bye.j2", "{# 示例变量\n#}\n再见 {{ name }}\n")
    with pytest.raises(PersonaError) as caught:
        start(root, cache)
    assert "greeter/bye.j2:3" in str(caught.value)
    assert "变量 name，但没有示例值" in str(caught.value)


def test_a_damaged_cache_file_is_ignored_and_rewritten(tmp_path: Path) -> None:
    root = write(tmp_path / "persona", BASIC)
    cache = tmp_path / "persona-code.bin"
    cache.write_bytes(b"\x00garbage" * 100)
    persona = start(root, cache)
    assert hello(persona) == {"你好 小美", "嗨 小美", "小美，欢迎光临小鱼塘"}
    again = start(root, cache)
    assert again._cache is not None and again._cache.misses == 0


def test_an_unwritable_cache_only_costs_speed(tmp_path: Path) -> None:
    root = write(tmp_path / "persona", BASIC)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    persona = start(root, blocker / "cache" / "persona-code.bin")
    assert hello(persona) == {"你好 小美", "嗨 小美", "小美，欢迎光临小鱼塘"}


def test_versions_edited_away_leave_the_cache_file(tmp_path: Path) -> None:
    root = write(tmp_path / "persona", BASIC)
    cache = tmp_path / "persona-code.bin"
    start(root, cache)
    size = cache.stat().st_size
    for n in range(5):
        text = f'{{# 示例变量\nname = "小美"\n#}}\n第{n}版 {{{{ name }}}}\n'
        edit(root, "greeter/hello.j2", text)
        start(root, cache)
    assert cache.stat().st_size <= size  # one variant now, where there were three
