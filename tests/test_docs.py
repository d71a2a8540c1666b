"""The documented commands run as written: every `python3 bot.py …` / `python3 scripts/….py …`
line in README.md and persona/README.md names a tool that exists, bootstraps itself, answers
--help in Chinese and accepts the options the docs give it; the cheap ones are run for real."""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "README.md", ROOT / "persona" / "README.md")
_COMMAND = re.compile(
    r"(?:^|\|\s*|`)(?:python3?|\.venv/bin/python) ((?:bot|scripts/[\w]+)\.py)([^`#\n]*)"
)


def documented() -> list[tuple[str, str, str]]:
    """(doc, tool, arguments) for every command line in a code block or inline code."""
    found: list[tuple[str, str, str]] = []
    for doc in DOCS:
        for line in doc.read_text(encoding="utf-8").splitlines():
            for match in _COMMAND.finditer(line):
                found.append((doc.name, match[1], match[2].strip()))
    return found


COMMANDS = documented()
TOOLS = sorted({tool for _, tool, _ in COMMANDS})


def run(args: list[str], *, cwd: Path = ROOT, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POND_NO_VENV": "1"}  # this interpreter is the project's venv
    env.pop("WECHATY_PUPPET_SERVICE_TOKEN", None)
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@functools.cache
def help_of(tool: str) -> subprocess.CompletedProcess[str]:
    return run([tool, "--help"])


def test_the_docs_name_the_tools_operators_and_copywriters_use() -> None:
    assert {"bot.py", "scripts/persona_preview.py", "scripts/report.py"} <= set(TOOLS)
    assert ("README.md", "scripts/persona_preview.py", "--html 预览.html") in COMMANDS


@pytest.mark.parametrize("tool", TOOLS)
def test_every_documented_tool_bootstraps_and_answers_help_in_chinese(tool: str) -> None:
    source = (ROOT / tool).read_text(encoding="utf-8")
    # Run as `python3 scripts/x.py`, a tool first re-runs itself inside .venv.
    assert re.search(r"_env\.bootstrap\(|ensure_venv\(", source), tool
    result = help_of(tool)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("用法：")
    assert "show this help" not in result.stdout and "options:" not in result.stdout


@pytest.mark.parametrize(("doc", "tool", "arguments"), COMMANDS)
def test_documented_options_exist(doc: str, tool: str, arguments: str) -> None:
    helped = help_of(tool).stdout
    for word in shlex.split(arguments):
        if word.startswith("--"):
            assert word.split("=")[0] in helped, f"{doc}: {tool} has no option {word}"


def test_persona_preview_commands_run_as_written(tmp_path: Path) -> None:
    # The copywriters' commands write into the folder they are run from: run them from a
    # folder that mirrors the project, so the repository gets no stray files.
    for name in ("bot.py", "scripts", "persona", "pond", "plugins", "tests"):
        (tmp_path / name).symlink_to(ROOT / name)
    lines = [args for _, tool, args in COMMANDS if tool == "scripts/persona_preview.py"]
    assert len(lines) >= 4
    for arguments in lines:
        result = run(["scripts/persona_preview.py", *shlex.split(arguments)], cwd=tmp_path)
        assert result.returncode == 0, (arguments, result.stderr)
        assert "=== greeter/hello" in result.stdout
    assert (tmp_path / "persona-preview.html").exists() and (tmp_path / "预览.html").exists()


def test_console_quick_try_runs_as_written() -> None:
    line = next(a for _, tool, a in COMMANDS if tool == "bot.py" and "--script -" in a)
    assert line == "--console --script -"
    result = run(["bot.py", *shlex.split(line)], stdin="alice: 你好\nalice: 退订\n")
    assert result.returncode == 0, result.stderr
    assert "[greeter/hello]" in result.stdout and "[core/optout_confirm]" in result.stdout


def test_filtered_report_example_works_on_demo_data_and_empty_dates_are_warned(
    tmp_path: Path,
) -> None:
    demo_line = next(a for _, t, a in COMMANDS if t == "scripts/demo_data.py" and "--end" in a)
    report_line = next(a for _, t, a in COMMANDS if t == "scripts/report.py" and "--channel" in a)
    demo = tmp_path / "demo"
    small = ["--data-dir", str(demo), "--contacts", "300"]  # the same month, fewer people
    made = run(["scripts/demo_data.py", *shlex.split(demo_line), *small])
    assert made.returncode == 0, made.stderr
    args = shlex.split(report_line.replace("data/demo", str(demo)))
    result = run(["scripts/report.py", *args])
    assert result.returncode == 0, result.stderr
    assert "报表已生成" in result.stdout
    assert "没有任何记录" not in result.stderr  # the example shows real numbers
    # Dates the data does not cover: the report is still written, with a warning that says
    # what was chosen and which data was read.
    october = [a.replace("2026-11-", "2026-10-") for a in args]
    result = run(["scripts/report.py", *october])
    assert result.returncode == 0, result.stderr
    assert "注意：2026-10-01 到 2026-10-30，群 小鱼塘茶友演示群，渠道 直播间 没有任何记录" in (
        result.stderr
    )
    assert str(demo) in result.stderr
