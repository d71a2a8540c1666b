"""The catalogue of operator-facing validation problems (persona/core/problems.toml): every
code the code raises has Chinese text, the text has no English left, and operators who make
the mistakes of the field reports read Chinese that names what and where."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from harness import ROOT, ChatSim

from pond import Problem, StartupError, problems
from pond.persona.templates import _SYNTAX

CODE = re.compile(
    r"""(?:Problem|_say|bad|fail|problem|__init__)\(\s*(?:where,\s*[^,]+,\s*)?"([a-z_]+(?:\.[a-z_]+)+)\""""
)
# SegmentError and the calendar's parser take the code without its group.
GROUPED = {
    "pond/segments.py": (re.compile(r"""(?:SegmentError|fail)\(\s*"([a-z_]+)\""""), "segment"),
    "plugins/_calendar/parse.py": (re.compile(r"""SegmentError\(\s*"([a-z_]+)\""""), "segment"),
    "plugins/_referral/rules.py": (re.compile(r"""_problem\(\s*"([a-z_]+)\""""), "referral"),
    "plugins/_friends/data.py": (re.compile(r"""_say\(\s*"([a-z_]+)\""""), "friends"),
    "plugins/_auto_reply/data.py": (re.compile(r"""say\(\s*"([a-z_]+)\""""), "auto_reply"),
    "plugins/_auto_reply/toml.py": (re.compile(r"""say\(\s*"([a-z_]+)\""""), "auto_reply"),
    **{
        f"pond/persona/{name}.py": (re.compile(r"""\bsay\(\s*"([a-z_]+)\""""), "persona")
        for name in ("engine", "errors", "files", "guards", "state", "templates")
    },
}
# Render limits: RenderLimitError("steps", ...) is persona.limit_steps.
LIMITS = re.compile(r"""RenderLimitError\(\s*"([a-z_]+)\"""")
# Words an operator types as they are (file syntax, command words, sample values).
ALLOWED = {
    *("and", "or", "not", "vip", "churned", "new", "engaged", "customer", "repeat"),
    *("id", "csv", "utf", "gbk", "contact", "marketing", "consent_source", "name", "tags"),
    *("persona", "friends", "toml", "segment"),
    # the calendar file's own words: its fields and values, typed as they are
    *("offset", "cron", "time", "on", "at", "rooms", "fallback", "broadcast", "link", "url"),
    *("title", "description", "vars", "images", "replaces", "true", "false", "product"),
    *("calendar", "launch", "step", "post", "key", "chatroom", "last", "lunar", "holidays"),
    *("term", "nth_weekday", "aliases", "date"),
    *("now", "error", "defaults", "rooms", "moderation", "layers", "groups", "rules"),
    *("groups_rooms_file", "units"),
    # a call to action's [reply] table, in campaign files and calendar posts
    *("reply", "keywords", "answer", "days", "notify", "broadcasts", "reply_new_tea"),
    # optout.toml's tables (退订 / 恢复订阅 / 要确认的说法 / guards)
    *("optout", "optin", "ambiguous", "guards"),
    # the referral rules file's tables and fields
    *("words", "validity", "issue", "threshold"),
    # the friends plugin's data files (persona/friends/*.toml): tables, keys and values
    *("accept", "words", "scope", "private", "all", "anchor", "friend_added", "purchased"),
    *("joined_room", "tagged", "steps", "after", "fu_day"),
    # the auto-reply files (rules.toml, catalog.toml)
    *("price", "any", "all", "exact", "regex", "room_mention", "room", "hours", "open"),
    *("always", "oolong", "longjing", "auto_reply", "https", "key", "table", "name"),
    # template syntax copywriters type ({% if %}, loop.index, |join, |yuan...), persona.toml's
    # keys, and the names of the template engine and units
    *("if", "include", "loop", "index", "first", "join", "namespace", "none", "round", "int"),
    *("range", "yuan", "voice", "brand", "contacts", "jinja", "cpu", "kb"),
}


def raised_codes() -> set[str]:
    found: set[str] = set()
    for path in [*ROOT.joinpath("pond").rglob("*.py"), *ROOT.joinpath("plugins").rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        found.update(CODE.findall(text))
        grouped = GROUPED.get(path.relative_to(ROOT).as_posix())
        if grouped:
            found.update(f"{grouped[1]}.{code}" for code in grouped[0].findall(text))
    for path in ROOT.joinpath("pond", "persona").glob("*.py"):
        found.update(f"persona.limit_{c}" for c in LIMITS.findall(path.read_text("utf-8")))
    # Jinja's syntax errors and tomllib's messages, translated by their own tables
    found.update(f"persona.syntax_{code}" for _, code in _SYNTAX)
    found.add("persona.syntax_expected_name")
    # tomllib's messages, translated by pond.problems.toml_problem
    found.update(f"toml.{code}" for _, code in problems._TOML_WHAT)
    return found


def test_every_problem_raised_has_chinese_text_in_the_catalogue() -> None:
    catalogue = problems.load(ROOT / "persona" / problems.CATALOGUE)
    raised = raised_codes()
    assert {"segment.ends_early", "customer.bad_stage", "csv.no_consent"} <= raised
    assert {"friends.anchor", "friends.line", "toml.unclosed_array", "duration.bad"} <= raised
    assert {"auto_reply.where_key", "auto_reply.synonym_unknown", "auto_reply.llm_needs"} <= raised
    assert {"persona.no_sample", "persona.limit_steps", "persona.syntax_unknown_tag"} <= raised
    assert {"persona.kind_loop", "persona.layer_both", "persona.limit_cpu"} <= raised
    assert sorted(raised - set(catalogue)) == []
    for code, text in catalogue.items():
        outside = re.sub(
            # placeholders, addresses, file names, [[tables]] and config names (BOT_PLUGINS)
            r"\{[a-z_]+\}|[a-z]+://\S+|[\w./<>-]+\.(?:toml|csv|j2)|\[\[[\w.]+\]\]"
            r"|\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b",
            "",
            text,
        )
        english = {w.lower() for w in re.findall(r"[A-Za-z_]{2,}", outside)} - ALLOWED
        assert not english, f"{code}: English left in {text!r}"


def test_a_missing_catalogue_or_code_falls_back_to_the_english_text(tmp_path: Path) -> None:
    problem = Problem("segment.ends_early", "segment {text!r} ends early", text="vip and", pos=8)
    assert str(problem) == "人群条件「vip and」没写完：第 8 个字符处还缺一个标签"
    assert problem.english == "segment 'vip and' ends early"
    assert str(Problem("nowhere.at_all", "plain {x}", x=1)) == "plain 1"
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "problems.toml").write_text('[segment]\nends_early = "坏了 {text}"\n')
    problems.use(tmp_path)
    try:
        assert str(problem) == "坏了 vip and"
        (tmp_path / "core" / "problems.toml").write_text("[segment\n")  # broken: keep last
        assert str(problem) == "坏了 vip and"
    finally:
        problems.use(ROOT / "persona")


@pytest.fixture
async def sim(tmp_path: Path) -> ChatSim:
    return await ChatSim.create(tmp_path / "data", plugins=["friends"])


async def test_operators_read_segment_stage_and_csv_mistakes_in_chinese(
    sim: ChatSim, tmp_path: Path
) -> None:
    segment = (await sim.say("admin", "人群 vip and")).texts[0]
    assert "「vip and」没写完：第 8 个字符处还缺一个标签" in segment
    assert "ends too early" not in segment and "position" not in segment
    await sim.say("alice", "你好")
    stage = (await sim.say("admin", "阶段 alice vip客户")).texts[0]
    assert "vip客户" in stage and "one of" not in stage
    csv = tmp_path / "people.csv"
    csv.write_text(
        "id,name,consent_source,stage\np001,客户1,,\np002,客户2,门店登记表,\n", encoding="utf-8"
    )
    added = (await sim.say("admin", f"批量加好友 {csv}")).texts[0]
    assert "第 2 行：consent_source（同意来源）是空的" in added
    assert "say where" not in added
    book = tmp_path / "book.csv"
    book.write_text("id,name,stage,tags\np003,客户3,vip客户,a b\n", encoding="utf-8")
    imported = (await sim.say("admin", f"导入客户 {book}")).texts[0]
    assert "没有「vip客户」这个客户阶段" in imported and "one of" not in imported
    await sim.close()


async def test_help_headings_are_the_plugins_chinese_titles(tmp_path: Path) -> None:
    names = sorted(p.stem for p in (ROOT / "plugins").glob("*.py") if p.stem != "__init__")
    sim = await ChatSim.create(tmp_path / "data", plugins=names)
    help_text = (await sim.say("admin", "帮助")).texts[0]
    headings = re.findall(r"【([^】]+)】", help_text)
    assert "数据报表" in headings and "社群" in headings
    assert not [h for h in headings if re.search(r"[A-Za-z]", h) or h == "其他功能"]
    await sim.close()


# -- operators' view: no English left in what they read -------------------------------------
# What may stay in a Chinese message as it is: file names and paths, ids, keys, the words of a
# file's syntax (ALLOWED), template syntax. Everything else with 4+ ASCII letters is English.
TOKEN = re.compile(r"\S*[/\\.]\S*|[\w-]+@chatroom|\{[%#{].*?[%#}]\}|--[a-z-]+")


def english_words(text: str, *also: str) -> set[str]:
    words = {w.lower() for w in re.findall(r"[A-Za-z_]{4,}", TOKEN.sub(" ", text))}
    return words - ALLOWED - {w.lower() for w in also}


def run_tool(tool: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / tool), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "POND_NO_VENV": "1", **env},
        timeout=120,
        cwd=ROOT,
    )


def broken_persona(tmp_path: Path, rel: str, text: str) -> Path:
    folder = tmp_path / "persona"
    shutil.copytree(ROOT / "persona", folder)
    (folder / rel).write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("source", "said"),
    [
        (
            "你好\n{% if name %}\n{{ name }}",
            "hello.j2:3: 模板语法错误（第 3 行）：模板结束了，{% if %} 还没有结束："
            "请在后面加上 {% endif %}",
        ),
        (
            "你好\n{% foreach x in y %}",
            "hello.j2:2: 模板语法错误（第 2 行）：不认识的标签 {% foreach %}",
        ),
        ("你好\n{{ brand_name ", "hello.j2:2: 模板语法错误（第 2 行）：变量的 {{ 没有用 }} 结束"),
        (
            "你好 {{ brand name }}",
            "hello.j2:1: 模板语法错误（第 1 行）：这里应该是「}}」，却写了「name」",
        ),
        ("你好 {{ customer }}", "hello.j2:1: 模板用到了变量 customer，但没有示例值"),
        (
            "{% for i in range(100) %}{% for j in range(100) %}{% for k in range(100) %}"
            "{{ k }}{% endfor %}{% endfor %}{% endfor %}",
            "hello.j2:1: 模板：超出模板限制：模板运行超过 20000 步",
        ),
    ],
)
def test_a_broken_template_stops_the_bot_with_a_chinese_reason(
    tmp_path: Path, source: str, said: str
) -> None:
    folder = broken_persona(tmp_path, "greeter/hello.j2", source)
    env = {"BOT_PERSONA_DIR": str(folder), "BOT_PLUGINS": "greeter"}
    result = run_tool(
        "bot.py", "--check", "--data-dir", str(tmp_path / "d"), "--env-file", "none", env=env
    )
    assert result.returncode == 2
    [line] = [x for x in result.stderr.splitlines() if x.startswith("人设模板错误：")]
    assert line.startswith("人设模板错误：persona/greeter/") and said in line, line
    assert english_words(line, "name", "customer", "foreach") == set(), line
    preview = run_tool("scripts/persona_preview.py", "--persona", str(folder), env={})
    assert preview.returncode == 2
    assert said in preview.stderr and "人设模板错误：" in preview.stderr


async def test_operators_read_data_file_problems_in_chinese(tmp_path: Path) -> None:
    """Friends and auto-reply data files, start-up and reload, read by an operator."""
    folder = broken_persona(
        tmp_path,
        "friends/followups.toml",
        '[welcome]\nanchor = "friend_added"\n[[welcome.steps]]\nafter = "1 天"\nkey = "x"\n',
    )
    with pytest.raises(StartupError) as caught:
        await ChatSim.create(
            tmp_path / "d1", plugins=["friends"], env={"BOT_PERSONA_DIR": str(folder)}
        )
    shown = str(caught.value)
    assert shown == (
        "「friends」插件没能启动：persona/friends/followups.toml 第 4 行：after：时长「1 天」不对："
        "请写成 90s、15m、2h、1d 或 1h30m 这样（s 秒、m 分、h 时、d 天）（改好这个文件后再启动）"
    )
    assert english_words(shown) == set()

    folder = broken_persona(
        tmp_path / "b", "auto_reply/catalog.toml", '[[product]]\nid = "Bad Id"\n'
    )
    with pytest.raises(StartupError) as caught:
        await ChatSim.create(
            tmp_path / "d2", plugins=["auto_reply"], env={"BOT_PERSONA_DIR": str(folder)}
        )
    shown = str(caught.value)
    assert (
        "persona/auto_reply/catalog.toml 第 2 行：第 1 个 [[product]]（id = Bad Id） 的 id："
        in shown
    )
    assert "商品 id 只能用小写字母、数字和 _，现在是 Bad Id" in shown
    assert english_words(shown) == set()

    folder = broken_persona(tmp_path / "c", "friends/tags.toml", '[[rules]]\nwords = ["乌龙"\n')
    with pytest.raises(StartupError) as caught:
        await ChatSim.create(
            tmp_path / "d3", plugins=["friends"], env={"BOT_PERSONA_DIR": str(folder)}
        )
    shown = str(caught.value)
    assert "persona/friends/tags.toml 第 2 行：文件末尾写法不对：列表的方括号“]”没有闭合" in shown
    assert english_words(shown) == set()


async def test_a_yes_no_cell_that_is_neither_is_named_in_chinese(tmp_path: Path) -> None:
    sim = await ChatSim.create(tmp_path / "data", plugins=["friends"])
    book = tmp_path / "book.csv"
    book.write_text("id,name,is_friend\np009,客户9,也许\n", encoding="utf-8")
    said = (await sim.say("admin", f"导入客户 {book}")).texts[0]
    assert "「也许」不是“是/否”：是写 " in said
    assert "yes/no" not in said
    await sim.close()
