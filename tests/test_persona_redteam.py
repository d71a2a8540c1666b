"""Red team: hostile persona templates are refused at start and at reload, cheaply, and never
reach a customer; the bot keeps answering while an edit is checked.

Each hostile folder is loaded in a forked child with an address-space and CPU ceiling, so a
template that escaped the limits fails its test instead of taking the machine down. The child
reports the CPU time it spent and how much its peak RSS grew (VmHWM, reset before loading).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import re
import resource
import shutil
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
from harness import ROOT, ChatSim

import pond.persona.engine as engine
import pond.persona.limits as limits
from pond.persona import Persona, PersonaError

MB = 1024 * 1024
GOOD = '{# name = "小美" #}\n你好 {{ name }}\n'
HOSTILE_FILE = "evil/x.j2"

BASIC = {
    "persona.toml": '[brand]\nbrand_name = "小鱼塘"\n',
    "_voice.j2": "{% macro sign() %}—— 阿鱼{% endmacro %}\n",
    "greeter/hello.j2": GOOD,
}

# name -> the hostile file's source, or several files (shared `_*.j2` files included)
HOSTILE: dict[str, str | dict[str, str]] = {
    # measured in issue 18
    "nested range(100000) loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
    ),
    "nested loops within the range limit": (
        "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    ),
    "'%0999999999d' % 1": "{{ '%0999999999d' % 1 }}",
    "|center(999999999)": "{{ 'x'|center(999999999) }}",
    "'{0:>999999999}'.format(1)": "{{ '{0:>999999999}'.format(1) }}",
    "{{ range }}": "{{ range }}",
    "{{ loop }}": "{% for i in [1] %}{{ loop }}{% endfor %}",
    "{{ dict }}": "{{ dict }}",
    # recursion and fan-out
    "a macro calling itself": "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}",
    "a macro calling itself twice": (
        "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(25) }}"
    ),
    "a shared file including itself twice": {
        "_loop.j2": "{% include '_loop.j2' %}{% include '_loop.j2' %}",
        HOSTILE_FILE: "{% include '_loop.j2' %}",
    },
    "a recursive loop fed its own list": (
        "{% set l = range(1000)|list %}{% for x in l recursive %}{{ loop(l) }}{% endfor %}"
    ),
    "nested loops over loop.cycle": (
        "{% for a in range(1000) %}{% for b in loop.cycle(range(1000), range(999)) %}"
        "{% for c in range(1000) %}{% endfor %}{% endfor %}{% endfor %}"
    ),
    # ranges, lists, joins
    "range with a huge step": "{{ range(0, 10 ** 18, 10 ** 9)|length }}",
    "range too large for len()": "{{ range(10 ** 30)|length }}",
    "a list repeated into a huge nested list": "{{ ([[1] * 10000] * 10000)|length }}",
    "a join of a huge lazy list": "{{ range(10000)|map('string')|map('center', 1000)|join }}",
    "str.join with a huge separator": "{{ ('x' * 50000).join(['a'] * 1000) }}",
    "|sum of lists": "{{ range(3000)|map('string')|map('list')|sum(start=[])|length }}",
    "|batch padding a billion fills": "{{ [1]|batch(999999999, 'x')|list|length }}",
    "|slice into a billion slices": "{{ [1]|slice(999999999)|list|length }}",
    "dict.fromkeys with a huge value": "{{ dict.fromkeys(range(10000), 'x' * 90000)|length }}",
    # strings built in loops, namespaces
    "namespace text doubling": (
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}"
    ),
    "namespace list doubling": (
        "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}"
        "{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}"
    ),
    "set blocks doubling": (
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set t %}{{ ns.s }}{{ ns.s }}{% endset %}{% set ns.s = t %}{% endfor %}"
        "{{ ns.s|length }}"
    ),
    "literal text repeated by a macro": (
        "{% macro m() %}" + "很长的文字" * 2000 + "{% endmacro %}"
        "{% for i in range(5000) %}{% set x = m() %}{% endfor %}"
    ),
    # formatting
    "|format with a huge width": "{{ '%-999999999s'|format('x') }}",
    "'%' repeating one long argument": "{{ ('%(a)s' * 5000) % {'a': 'x' * 90000} }}",
    "str.format repeating one long argument": "{{ ('{0}' * 5000).format('x' * 99999) }}",
    "'%*d' with a dynamic width": "{{ '%*d' % (999999999, 1) }}",
    "format_map with a nested width": ("{{ '{x:>{w}}'.format_map({'x': 1, 'w': 999999999}) }}"),
    "|attr('format') on a huge width": "{{ ('{0:>99999999}'|attr('format'))(1) }}",
    "|map(attribute='format')": ("{{ (['{:>999999999}']|map(attribute='format')|first)(1) }}"),
    "str.ljust": "{{ 'x'.ljust(999999999) }}",
    "Markup.center": "{{ ('x'|safe).center(999999999) }}",
    "Markup.replace": "{{ (('x' * 50000)|e).replace('x', '&' * 10) }}",
    "str.replace amplification": "{{ ('a' * 50000).replace('a', 'bbbbbbbbbb') }}",
    "str.expandtabs": "{{ ('\\t' * 50000).expandtabs(999) }}",
    "|replace amplification": "{{ ('a' * 50000)|replace('a', 'bbbbbbbbbb') }}",
    "|wordwrap with a huge wrapstring": ("{{ ('a ' * 10000)|wordwrap(1, wrapstring='x' * 900) }}"),
    "|indent with a huge width": "{{ ('\\n' * 50000)|indent(1000) }}",
    "|filesizeformat of a huge number": "{{ (10 ** 999)|filesizeformat }}",
    "|tojson with a huge indent": "{{ [1]|tojson(indent=999999999) }}",
    "|string of a huge list": ("{% set l = ['x' * 60000, 'y' * 60000] %}{{ l|string|length }}"),
    # numbers
    "|round to -999999999 digits": "{{ 5|round(-999999999) }}",
    "|round(…, 'ceil') with a huge precision": "{{ 5|round(999999999, 'ceil') }}",
    "chained powers": "{{ ((10 ** 1000) ** 1000) ** 10 }}",
    "|yuan of 1e999999999": "{{ '1e999999999'|yuan }}",
    "|yuan of 1e99999": "{{ '1e99999'|yuan }}",
    "int.to_bytes": "{{ (1).to_bytes(999999999, 'big')|length }}",
    "a huge int multiplied up in a loop": (
        "{% set ns = namespace(n=10 ** 900) %}{% for i in range(100) %}"
        "{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n|string|length }}"
    ),
    # the source itself: parser and compiler recursion, size
    "deeply nested brackets": "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
    "deeply nested ifs": "{% if 1 %}" * 1000 + "x" + "{% endif %}" * 1000,
    "25 nested loops": "{% for i in [1] %}" * 25 + "x" + "{% endfor %}" * 25,
    "a deeply nested sample block": "{# x = " + "[" * 2000 + "]" * 2000 + " #}\nhi",
    "a 5 MB file": "x" * 5_000_000,
    "1300 undeclared variables": (
        "{{ " + " ~ ".join(f"(a{i}|default(1) + 1)" for i in range(1300)) + " }}"
    ),
    # CPU in work the counters cannot see: the CPU clock stops it
    "substring searches in long text": (
        "{% set s = 'a' * 99990 %}{% set n = 'a' * 999 ~ 'b' %}"
        "{% for i in range(10000) %}{% for j in range(4) %}{{ 'x' if n in s else '' }}"
        "{% endfor %}{% endfor %}"
    ),
}

# name -> what the refusal says (a regular expression)
REFUSED_FOR: dict[str, str] = {
    "nested range(100000) loops": r"range\(\) is limited to 10000 numbers",
    "nested loops within the range limit": r"more than 20000 steps",
    "'%0999999999d' % 1": r"a width of 999999999 is over the limit of 1000",
    "|center(999999999)": r"\|center: a width of 999999999",
    "'{0:>999999999}'.format(1)": r"str.format: a width of 999999999",
    "{{ range }}": r"cannot print a function",
    "{{ loop }}": r"cannot print the loop object",
    "{{ dict }}": r"cannot print the type 'dict'",
    "a macro calling itself": r"calls nest more than 32 deep",
    "a macro calling itself twice": r"more than 20000 steps|CPU time",
    "a shared file including itself twice": r"nests too deeply",
    "a recursive loop fed its own list": r"calls nest more than 32 deep",
    "nested loops over loop.cycle": r"more than 20000 steps",
    "range with a huge step": r"range\(\) is limited",
    "range too large for len()": r"range\(\) is limited",
    "a list repeated into a huge nested list": r"\* would build more than",
    "a join of a huge lazy list": r"\|join would build more than",
    "str.join with a huge separator": r"str.join\(\) would build more than",
    "|sum of lists": r"characters or items in all",
    "|batch padding a billion fills": r"\|batch: 999999999 is over the limit",
    "|slice into a billion slices": r"\|slice: 999999999 is over the limit",
    "dict.fromkeys with a huge value": r"fromkeys\(\) would build more than",
    "namespace text doubling": r"~ would build more than",
    "namespace list doubling": r"\+ would build more than",
    "set blocks doubling": r"\{\{ \}\} would build more than",
    "literal text repeated by a macro": r"characters or items in all",
    "|format with a huge width": r"a width of 999999999",
    "'%' repeating one long argument": r"% would build more than 100000",
    "str.format repeating one long argument": r"str.format would build more than 100000",
    "'%*d' with a dynamic width": r"'\*' width is not allowed",
    "format_map with a nested width": r"str.format: a width of 999999999",
    "|attr('format') on a huge width": r"str.format: a width of 99999999",
    "|map(attribute='format')": r"str.format: a width of 999999999",
    "str.ljust": r"str.ljust\(\): a width of 999999999",
    "Markup.center": r"Markup.center\(\): a width of 999999999",
    "Markup.replace": r"Markup.replace\(\) would build more than",
    "str.replace amplification": r"str.replace\(\) would build more than",
    "str.expandtabs": r"str.expandtabs\(\) would build more than",
    "|replace amplification": r"\|replace would build more than",
    "|wordwrap with a huge wrapstring": r"\|wordwrap would build more than",
    "|indent with a huge width": r"\|indent would build more than",
    "|filesizeformat of a huge number": r"OverflowError",
    "|tojson with a huge indent": r"\|tojson: a width of 999999999",
    "|string of a huge list": r"\|string was given more than",
    "|round to -999999999 digits": r"\|round: a precision of -999999999",
    "|round(…, 'ceil') with a huge precision": r"\|round: a precision of 999999999",
    "chained powers": r"would build a number over",
    "|yuan of 1e999999999": r"yuan expects a price below 10\^15",
    "|yuan of 1e99999": r"yuan expects a price below 10\^15",
    "int.to_bytes": r"int.to_bytes\(\) is not available",
    "a huge int multiplied up in a loop": r"would build a number over",
    "deeply nested brackets": r"nested too deeply to compile",
    "deeply nested ifs": r"nested too deeply to compile",
    "25 nested loops": r"nested too deeply to compile",
    "a deeply nested sample block": r"the sample block is nested too deeply",
    "a 5 MB file": r"is larger than 32 KB",
    "1300 undeclared variables": r"uses variable 'a0', which has no sample value",
    "substring searches in long text": r"CPU time|more than 20000 steps",
}


def test_every_hostile_case_says_why_it_is_refused() -> None:
    assert REFUSED_FOR.keys() == HOSTILE.keys()
    assert len(HOSTILE) >= 15


def files_of(name: str) -> dict[str, str]:
    case = HOSTILE[name]
    return dict(case) if isinstance(case, dict) else {HOSTILE_FILE: case}


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


_mtime = 2_100_000_000


def edit(root: Path, files: dict[str, str]) -> None:
    """Change files and move their mtimes forward, without sleeping."""
    global _mtime
    write(root, files)
    for rel in files:
        _mtime += 10
        os.utime(root / rel, (_mtime, _mtime))


# --------------------------------------------------------------------------- the child


def _status(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        found = re.search(rf"^{key}:\s+(\d+) kB", status.read(), re.MULTILINE)
    assert found is not None
    return int(found.group(1)) * 1024


def _in_child(conn: Connection, job: Callable[[], dict[str, Any]]) -> None:
    # Ceilings: a template that escapes the limits dies here instead of hurting the machine.
    resource.setrlimit(resource.RLIMIT_AS, (_status("VmSize") + 1024 * MB, resource.RLIM_INFINITY))
    resource.setrlimit(resource.RLIMIT_CPU, (20, resource.RLIM_INFINITY))
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
        clear.write("5")  # reset the peak RSS to the current RSS
    rss = _status("VmRSS")
    cpu = time.process_time()
    try:
        report = job()
    except BaseException as exc:  # reported to the parent, which fails the test
        report = {"crashed": f"{type(exc).__name__}: {exc}"}
    report["cpu_s"] = time.process_time() - cpu
    report["extra_rss"] = _status("VmHWM") - rss
    conn.send(report)
    conn.close()


def run_in_child(job: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    context = multiprocessing.get_context("fork")
    mine, theirs = context.Pipe(duplex=False)
    child = context.Process(target=_in_child, args=(theirs, job))
    child.start()
    theirs.close()
    try:
        if not mine.poll(120):  # a hang guard, not a timing assertion
            child.kill()
            pytest.fail("the child did not finish")
        report: dict[str, Any] = mine.recv()
    except EOFError:
        report = {"crashed": f"the child died (exit {child.exitcode})"}
    child.join()
    return report


def assert_cheap(report: dict[str, Any]) -> None:
    assert "crashed" not in report, report
    assert report["cpu_s"] < 2.0, report
    assert report["extra_rss"] < 50 * MB, report


# --------------------------------------------------------------------------- at start


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_template_is_refused_at_start(tmp_path: Path, name: str) -> None:
    root = write(tmp_path / "persona", {**BASIC, **files_of(name)})

    def start() -> dict[str, Any]:
        try:
            Persona(root, rng=random.Random(1))
        except PersonaError as err:
            return {"refused": err.english, "shown": str(err)}
        return {"loaded": True}

    report = run_in_child(start)
    assert_cheap(report)
    assert "refused" in report, report
    assert report["refused"].startswith("persona/evil/x.j2:"), report
    assert re.search(REFUSED_FOR[name], report["refused"]), report  # the developers' text
    shown = report["shown"]  # what the operator reads: the same place, in Chinese
    assert shown.startswith(report["refused"].split(" ")[0]), report
    assert re.search(r"[\u4e00-\u9fff]", shown), report


# --------------------------------------------------------------------------- at reload


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_edit_is_refused_at_reload_and_the_last_good_copy_serves(
    tmp_path: Path, name: str
) -> None:
    root = write(tmp_path / "persona", {**BASIC, HOSTILE_FILE: GOOD})
    persona = Persona(root, rng=random.Random(1))
    edit(root, files_of(name))

    def reload() -> dict[str, Any]:
        errors = persona.reload_if_changed()
        served = persona.render("evil/x", chat_id="c", name="阿明").text
        return {"errors": [e.english for e in errors], "shown": str(errors[0]), "served": served}

    report = run_in_child(reload)
    assert_cheap(report)
    assert re.search(REFUSED_FOR[name], report["errors"][0]), report
    assert "the last good version keeps serving" in report["errors"][0]
    assert "继续使用上一个正确版本" in report["shown"], report
    assert report["served"] == "你好 阿明"  # the customer gets the last good copy


# --------------------------------------------------------------------------- messages


def refused(tmp_path: Path, source: str) -> str:
    with pytest.raises(PersonaError) as caught:
        Persona(write(tmp_path / "persona", {**BASIC, HOSTILE_FILE: source}))
    return str(caught.value)


def test_printing_python_objects_is_refused_with_a_hint(tmp_path: Path) -> None:
    assert "不能输出循环对象 loop（请用 loop.index 或 loop.first）" in refused(
        tmp_path / "a", "{% for i in [1] %}{{ loop }}{% endfor %}"
    )
    assert "{{ ... }} 不能输出函数：发给客户的只能是文字、数字和日期" in refused(
        tmp_path / "b", "{{ range }}"
    )
    assert "不能输出类型 dict" in refused(tmp_path / "c", "{{ dict }}")
    assert "不能输出没有调用的宏 sign（请写成 sign()）" in refused(
        tmp_path / "d", "{{ voice.sign }}"
    )
    assert "不能输出整个 list（请用 |join 连起来" in refused(tmp_path / "e", "{{ [1, 2] }}")
    assert "不能输出空值 None" in refused(tmp_path / "f", "{{ none }}")
    with pytest.raises(PersonaError) as caught:
        Persona(write(tmp_path / "g" / "persona", {**BASIC, HOSTILE_FILE: "{{ range }}"}))
    assert "cannot print a function" in caught.value.english


def test_refusals_name_the_file_line_and_the_limit(tmp_path: Path) -> None:
    text = refused(tmp_path, "第一行\n{{ 'x'|center(999999999) }}")
    assert text == "persona/evil/x.j2:2: 模板：超出模板限制：|center：宽度 999999999 超过上限 1000"


def test_recursion_is_a_render_error(tmp_path: Path) -> None:
    text = refused(tmp_path, "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}")
    assert "调用嵌套超过 32 层（是不是有宏或递归循环调用了自己？）" in text


def test_loading_a_folder_that_takes_too_long_is_stopped_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each render is bounded; a folder of many slow-but-allowed ones is bounded as a
    # whole (30 s). Here the time is already up when loading starts.
    @contextmanager
    def time_is_up(seconds: float) -> Iterator[threading.Event]:
        stop = threading.Event()
        stop.set()
        yield stop

    monkeypatch.setattr(engine, "_stopped_after", time_is_up)
    stopped = refused(tmp_path, '{# name = "x" #}\n{{ name|upper }}')
    assert "模板被停止了：加载用时太长" in stopped


def test_running_out_of_memory_is_a_render_error(tmp_path: Path) -> None:
    root = write(tmp_path / "persona", {**BASIC, HOSTILE_FILE: "{{ 'x' * 400000000 }}"})

    def start() -> dict[str, Any]:
        # Lift the size limits and lower the memory ceiling, so the allocation itself fails.
        limits.LIMITS = limits.Limits(value=10**10, units=10**11)
        resource.setrlimit(
            resource.RLIMIT_AS, (_status("VmSize") + 200 * MB, resource.RLIM_INFINITY)
        )
        try:
            Persona(root, rng=random.Random(1))
        except PersonaError as err:
            return {"refused": str(err)}
        return {"loaded": True}

    report = run_in_child(start)
    assert report["refused"] == (
        "persona/evil/x.j2:1: 模板：需要的内存超过了机器人能用的（字符串或列表太大？）"
    )


def test_ordinary_copy_still_renders(tmp_path: Path) -> None:
    source = textwrap.dedent(
        """\
        {#
        name = "小美"
        items = [{ title = "茶", price = 68 }, { title = "杯", price = 12.5 }]
        #}
        {% set ns = namespace(total=0) %}
        {{ name }}，您好！{{ "%s 件商品" % items|length }}：
        {% for item in items %}
        {{ loop.index }}. {{ item.title|center(4) }} {{ item.price|yuan }}{{ '、'.join([]) }}
        {% set ns.total = ns.total + item.price %}
        {% endfor %}
        合计 {{ ns.total|yuan }}，{% block end %}{{ '{:>3}'.format('好') ~ ''.join([]) }}
        {%- endblock %}
        {{- voice.sign().replace('阿鱼', '阿鱼！').center(2) }}
        """
    )
    persona = Persona(write(tmp_path / "persona", {**BASIC, HOSTILE_FILE: source}))
    items = [{"title": "壶", "price": 5}]
    text = persona.render("evil/x", chat_id="c", name="阿明", items=items).text
    assert text.splitlines() == [
        "阿明，您好！1 件商品：",
        "1.  壶   ¥5",
        "合计 ¥5，  好—— 阿鱼！",
    ]


def test_a_long_list_used_in_every_iteration_still_renders(tmp_path: Path) -> None:
    source = (
        '{# items = [{ name = "茶", note = "x" }] #}\n'
        "{% for item in items %}{{ loop.index }}/{{ items|length }} {{ item.name }}"
        "{{ items|map(attribute='note')|first }}\n{% endfor %}"
    )
    persona = Persona(write(tmp_path / "persona", {**BASIC, HOSTILE_FILE: source}))
    items = [{"name": f"茶{i}", "note": "好茶" * 20} for i in range(400)]
    text = persona.render("evil/x", chat_id="c", items=items).text
    assert text.startswith("1/400 茶0好茶")  # the list is measured once, not 400 times


# --------------------------------------------------------------------------- the live bot


def copy_persona(tmp_path: Path) -> Path:
    target = tmp_path / "persona"
    shutil.copytree(ROOT / "persona", target)
    return target


def touch(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))


HOSTILE_HELLO = "{#\nname = \"x\"\n#}\n{{ '%0999999999d' % 1 }} {{ name }}\n"


async def test_customers_are_answered_while_a_hostile_edit_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    persona = copy_persona(tmp_path)
    sim = await ChatSim.create(tmp_path / "data", env={"BOT_PERSONA_DIR": str(persona)})
    # Hold the worker inside the reload until bob has been answered, so the test shows
    # the order of events without depending on how fast anything runs.
    started, release = threading.Event(), threading.Event()
    build = engine._build

    def held_build(*args: Any) -> Any:
        started.set()
        release.wait(60)
        return build(*args)

    monkeypatch.setattr(engine, "_build", held_build)
    touch(persona / "greeter" / "hello.j2", HOSTILE_HELLO)
    reload = asyncio.create_task(sim.app.reload())  # the operator's reload
    await asyncio.to_thread(started.wait, 60)
    poll = asyncio.create_task(sim.app.reload_persona_in_worker())  # the poller, meanwhile

    said = await sim.say("bob", "你好")
    assert said.keys == ["greeter/hello"]  # answered while the edit is being checked
    assert "bob" in said.texts[0]
    assert not reload.done()

    release.set()
    problems = await reload
    [problem] = problems["persona"]
    assert [str(error) for error in await poll] == [problem]  # one check, seen by both
    assert "greeter/hello.j2:4" in problem
    assert "模板：超出模板限制：%：宽度 999999999 超过上限 1000；继续使用上一个正确版本" in problem
    said = await sim.say("carol", "你好")
    assert said.keys == ["core/template_alert", "greeter/hello"]  # the operator is told once
    assert said.texts[0] == (
        "【pond 提醒】人设模板 persona/greeter/hello.j2 第 4 行修改后有错误（模板：超出模板限制："
        "%：宽度 999999999 超过上限 1000；继续使用上一个正确版本），已继续使用上一个正确版本。"
        "请修改后保存。"
    )
    assert said.sent[0].to == "admin"
    assert "carol" in said.texts[1]
    assert "0000" not in said.texts[1]
    await sim.close()


async def test_a_reload_that_takes_too_long_is_stopped_and_refused(tmp_path: Path) -> None:
    root = write(tmp_path / "persona", {**BASIC, HOSTILE_FILE: GOOD})
    persona = Persona(root, rng=random.Random(1))
    edit(root, {HOSTILE_FILE: '{# name = "x" #}\n新版 {{ name }}\n'})
    release = threading.Event()
    load = persona._load

    def held_load(*args: Any) -> Any:
        release.wait(60)
        return load(*args)

    persona._load = held_load  # type: ignore[method-assign]
    try:
        [error] = await persona.reload_in_worker(timeout=0.01)
    finally:
        release.set()
    assert str(error) == "persona: 重新加载停止了：加载超过 0.01 秒，继续使用之前的人设"
    assert "reload stopped: loading took longer than 0.01 s" in error.english
    assert persona.render("evil/x", chat_id="c", name="阿明").text == "你好 阿明"
    assert persona.version == 1
    assert await persona.reload_in_worker() == []  # not retried until the files change again


async def test_a_live_value_that_breaks_the_limits_never_reaches_the_customer(
    tmp_path: Path,
) -> None:
    persona = copy_persona(tmp_path)
    # The sample name is short, so the trial render passes; a customer's long name does not.
    touch(persona / "greeter" / "hello.j2", '{#\nname = "x"\n#}\n你好 {{ name * 1000 }}\n')
    sim = await ChatSim.create(tmp_path / "data", env={"BOT_PERSONA_DIR": str(persona)})
    sim.app.strict = False  # the failed render is logged, as in production
    said = await sim.say("名" * 200, "你好")
    assert "greeter/hello" not in said.keys
    assert all("名名名" not in text for text in said.texts)
    said = await sim.say("阿明", "你好")
    assert said.keys == ["greeter/hello"]
    await sim.close()
