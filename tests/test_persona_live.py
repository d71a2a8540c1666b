"""Persona edits while the bot runs, and broken templates at start-up."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from harness import ROOT, ChatSim
from test_app import run_bot


def copy_persona(tmp_path: Path) -> Path:
    target = tmp_path / "persona"
    shutil.copytree(ROOT / "persona", target)
    return target


def edit(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))


async def test_a_broken_edit_keeps_the_last_good_copy_serving(tmp_path: Path) -> None:
    persona = copy_persona(tmp_path)
    sim = await ChatSim.create(tmp_path / "data", env={"BOT_PERSONA_DIR": str(persona)})
    hello = persona / "greeter" / "hello.j2"
    edit(hello, '{#\nname = "x"\n#}\n新版问候 {{ name }}\n')
    assert sim.app.reload_persona() == []
    assert (await sim.say("alice", "你好")).texts == ["新版问候 alice"]

    edit(hello, '{#\nname = "x"\n#}\n坏掉的 {{ name }\n')
    [error] = sim.app.reload_persona()
    assert "greeter/hello.j2:4" in str(error)
    said = await sim.say("bob", "你好")
    assert said.keys == ["core/template_alert", "greeter/hello"]  # the operator is told first
    assert said.sent[0].to == "admin"
    assert said.texts[1] == "新版问候 bob"  # the last good version keeps serving
    await sim.close()


def test_startup_with_a_broken_template_fails_naming_file_and_line(tmp_path: Path) -> None:
    persona = copy_persona(tmp_path)
    (persona / "greeter" / "hello.j2").write_text(
        '{#\nname = "x"\n#}\n你好 {{ name }}\n---\n你好 {{ nmae }}\n', encoding="utf-8"
    )
    result = run_bot("--check", env={"BOT_PERSONA_DIR": str(persona)})
    assert result.returncode == 2
    assert "greeter/hello.j2:6" in result.stderr
    assert "nmae" in result.stderr


def test_startup_with_a_syntax_error_fails_naming_file_and_line(tmp_path: Path) -> None:
    persona = copy_persona(tmp_path)
    (persona / "core" / "optin_confirm.j2").write_text("欢迎\n{% if %}\n", encoding="utf-8")
    result = run_bot("--check", env={"BOT_PERSONA_DIR": str(persona)})
    assert result.returncode == 2
    assert "core/optin_confirm.j2:2" in result.stderr
