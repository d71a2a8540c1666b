"""Persona engine: template files, variants, layers, trial render at load, hot reload."""

from __future__ import annotations

import itertools
import logging
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pond.persona import Persona, PersonaError, Rendered

REPO = Path(__file__).resolve().parent.parent

BASIC = {
    "persona.toml": """
        [brand]
        brand_name = "小鱼塘"
        signature = "—— 阿鱼"
        title = "B"
    """,
    "_voice.j2": """
        {% macro sign() %}{{ signature }}{% endmacro %}
        {% macro call(name) %}{{ name }}{% endmacro %}
    """,
    "greeter/hello.j2": """
        {# 示例变量
        name = "小美"
        #}
        你好 {{ name }}
        ---
        嗨 {{ name }}
        ---
        {{ name }}，欢迎光临{{ brand_name }}
    """,
}


def write(root: Path, files: dict[str, str]) -> Path:
    """Write a persona folder; each text is dedented and its leading newline dropped, so the
    first line of the literal is line 1 of the file."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def make(tmp_path: Path, files: dict[str, str], **kwargs: object) -> Persona:
    root = write(tmp_path / "persona", {**BASIC, **files})
    return Persona(root, rng=random.Random(7), **kwargs)  # type: ignore[arg-type]


def load_error(tmp_path: Path, files: dict[str, str]) -> PersonaError:
    with pytest.raises(PersonaError) as caught:
        make(tmp_path, files)
    return caught.value


_tick = 2_000_000_000


def edit(root: Path, rel: str, text: str | None) -> None:
    """Change (or with None, delete) a file and move its mtime forward, without sleeping."""
    global _tick
    path = root / rel
    if text is None:
        path.unlink()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    _tick += 10
    os.utime(path, (_tick, _tick))


# --------------------------------------------------------------------------- keys and files


def test_files_map_to_plugin_slash_name_keys(tmp_path: Path) -> None:
    persona = make(
        tmp_path,
        {
            "groups/welcome.j2": "欢迎",
            "groups/_parts.j2": "{% macro x() %}x{% endmacro %}",  # shared helper, not a key
            "_drafts/idea.j2": "{{ broken",  # folders starting with _ are ignored
            ".git/x.j2": "{{ broken",  # hidden folders too
            "greeter/notes.txt": "not a template",
        },
    )
    assert persona.keys() == ["greeter/hello", "groups/welcome"]
    assert persona.has("groups/welcome")
    assert not persona.has("groups/_parts")
    assert persona.layer_names() == ["brand"]


def test_template_outside_a_plugin_folder_is_refused(tmp_path: Path) -> None:
    err = load_error(tmp_path, {"hello.j2": "你好"})
    assert err.file == "persona/hello.j2"
    assert "模板要放在插件文件夹里：<插件>/<名字>.j2" in str(err.reason)


def test_file_names_with_spaces_are_refused(tmp_path: Path) -> None:
    err = load_error(tmp_path, {"greeter/hello copy.j2": "你好"})
    assert err.file == "persona/greeter/hello copy.j2"


def test_error_string_is_file_colon_line_colon_reason() -> None:
    assert str(PersonaError("persona/a/b.j2", 3, "boom")) == "persona/a/b.j2:3: boom"
    assert str(PersonaError("persona/a/b.j2", None, "boom")) == "persona/a/b.j2: boom"


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    err = load_error(tmp_path, {"a/one.j2": "{{ x }}", "a/two.j2": "{{ y }}"})
    assert [e.file for e in err.errors] == ["persona/a/one.j2", "persona/a/two.j2"]
    assert "persona/a/two.j2:1" in str(err)


# --------------------------------------------------------------------------- rendering


def test_render_returns_key_text_layer_and_variant(tmp_path: Path) -> None:
    persona = make(tmp_path, {"core/fallback.j2": "  收到，{{ voice.sign() }}  \n\n"})
    rendered = persona.render("core/fallback", chat_id="c1")
    assert rendered == Rendered(key="core/fallback", text="收到，—— 阿鱼", layer="brand", variant=0)


def test_unknown_key_is_a_key_error_naming_the_expected_file(tmp_path: Path) -> None:
    persona = make(tmp_path, {})
    with pytest.raises(KeyError) as caught:
        persona.render("greeter/bye", chat_id="c1")
    assert isinstance(caught.value, PersonaError)
    assert caught.value.file == "persona/greeter/bye.j2"


def test_missing_call_variable_names_key_file_line_and_variable(tmp_path: Path) -> None:
    persona = make(tmp_path, {})
    with pytest.raises(PersonaError) as caught:
        persona.render("greeter/hello", chat_id="c1")
    err = caught.value
    assert err.file == "persona/greeter/hello.j2"
    assert err.line in (4, 6, 8)  # the line of whichever variant was picked
    assert "greeter/hello" in str(err.reason)
    assert "变量 name 没有定义" in str(err.reason)


def test_output_is_capped_and_the_cut_is_logged_without_the_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    persona = make(tmp_path, {"a/long.j2": "一二三四五六七八九十ABCDEFG"}, max_chars=10)
    with caplog.at_level(logging.DEBUG, logger="pond.persona"):
        text = persona.render("a/long", chat_id="c1").text
    assert text == "一二三四五六七八九…"
    assert len(text) == 10
    warnings = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert any("cut to 10" in r.getMessage() for r in warnings)
    assert not any("一二三" in r.getMessage() for r in warnings)


def test_yuan_filter_formats_prices(tmp_path: Path) -> None:
    persona = make(
        tmp_path,
        {
            "shop/price.j2": """
                {# price = 68
                half = 12.5 #}
                {{ price | yuan }} / {{ half | yuan }}
            """
        },
    )
    assert persona.render("shop/price", chat_id="c", price=68, half=12.5).text == "¥68 / ¥12.50"


def test_voice_macros_and_explicit_import(tmp_path: Path) -> None:
    persona = make(
        tmp_path,
        {"a/x.j2": '{% import "_voice.j2" as v %}{{ v.call("小美") }} {{ voice.sign() }}'},
    )
    assert persona.render("a/x", chat_id="c").text == "小美 —— 阿鱼"


# --------------------------------------------------------------------------- variants


def test_variants_never_repeat_in_a_row_within_one_chat(tmp_path: Path) -> None:
    persona = make(tmp_path, {})
    picks = [persona.render("greeter/hello", chat_id="c1", name="小美").variant for _ in range(200)]
    assert all(a != b for a, b in itertools.pairwise(picks))
    assert set(picks) == {0, 1, 2}


def test_chats_pick_variants_independently(tmp_path: Path) -> None:
    persona = make(tmp_path, {})
    last: dict[str, int] = {}
    seen_same_as_other_chat = False
    for i in range(200):
        chat = "a" if i % 2 else "b"
        variant = persona.render("greeter/hello", chat_id=chat, name="x").variant
        assert variant != last.get(chat)
        other = last.get("b" if chat == "a" else "a")
        seen_same_as_other_chat |= variant == other
        last[chat] = variant
    assert seen_same_as_other_chat  # another chat's last pick does not constrain this chat


def test_seeded_rng_makes_picks_reproducible(tmp_path: Path) -> None:
    root = write(tmp_path / "persona", BASIC)

    def picks() -> list[int]:
        persona = Persona(root, rng=random.Random(42))
        return [persona.render("greeter/hello", chat_id="c", name="x").variant for _ in range(30)]

    assert picks() == picks()


def test_variant_memory_is_bounded(tmp_path: Path) -> None:
    persona = make(tmp_path, {}, variant_memory=3)
    for chat in "abcdef":
        persona.render("greeter/hello", chat_id=chat, name="x")
    assert len(persona._last) == 3
    assert list(persona._last) == [
        ("d", "greeter/hello"),
        ("e", "greeter/hello"),
        ("f", "greeter/hello"),
    ]


# --------------------------------------------------------------------------- sample block


def test_sample_label_line_is_skipped_and_all_variants_share_the_samples(tmp_path: Path) -> None:
    persona = make(
        tmp_path,
        {
            "shop/item.j2": """
                {# vars:
                product = { name = "桂花乌龙", price = 68 }
                #}
                {{ product.name }} {{ product.price | yuan }}
                ---
                {{ product.name }}只要{{ product.price | yuan }}
            """
        },
    )
    samples = persona.render_sample("shop/item")
    assert [r.text for r in samples] == ["桂花乌龙 ¥68", "桂花乌龙只要¥68"]
    assert [r.variant for r in samples] == [0, 1]


def test_one_line_comment_is_a_label_with_no_samples(tmp_path: Path) -> None:
    persona = make(tmp_path, {"core/ok.j2": "{# 兜底回复 #}\n收到"})
    assert persona.render_sample("core/ok")[0].text == "收到"


def test_invalid_toml_in_sample_block_reports_its_line(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        {
            "a/x.j2": """
                {# 示例变量
                name = "小美"
                count = = 3
                #}
                {{ name }}{{ count }}
            """
        },
    )
    assert (err.file, err.line) == ("persona/a/x.j2", 3)
    assert "开头的示例变量块写法不对：" in str(err.reason)
    assert "the sample block: not valid TOML" in err.english


def test_undefined_variable_is_reported_at_its_file_line(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        {
            "a/x.j2": """
                {# 示例变量
                name = "小美"
                #}
                你好 {{ name }}
                ---
                第二个变体
                {{ nope }}
            """
        },
    )
    assert str(err).startswith("persona/a/x.j2:7: 第 2 个变体用到了变量 nope，但没有示例值")
    assert err.english.startswith("persona/a/x.j2:7: variant 2 uses variable 'nope'")


def test_undefined_variable_in_an_untaken_branch_is_still_caught(tmp_path: Path) -> None:
    err = load_error(tmp_path, {"a/x.j2": "hi\n{% if false %}\n{{ ghost }}\n{% endif %}"})
    assert (err.line, "ghost" in str(err.reason)) == (3, True)


def test_missing_attribute_of_a_sample_is_reported_from_the_trial_render(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        {
            "shop/item.j2": """
                {# product = { name = "桂花乌龙" } #}
                {{ product.name }}
                ---
                {{ product.name }}
                重量 {{ product.weight }}
            """
        },
    )
    assert (err.file, err.line) == ("persona/shop/item.j2", 5)
    assert "weight" in str(err.reason)


def test_variable_used_without_any_sample_block_is_an_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, {"a/x.j2": "你好\n{{ name }}"})
    assert (err.file, err.line) == ("persona/a/x.j2", 2)
    assert "用到了变量 name，但没有示例值" in str(err.reason)


def test_syntax_error_line_counts_the_header(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        {
            "a/x.j2": """
                {# 示例变量
                name = "小美"
                #}
                {{ name + }}
            """
        },
    )
    assert (err.file, err.line) == ("persona/a/x.j2", 4)
    assert "模板语法错误（第 4 行）：" in str(err.reason)


def test_syntax_error_line_in_the_second_variant(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        {
            "a/x.j2": """
                {# name = "小美" #}
                你好 {{ name }}
                再见
                ---
                嗨
                {% if name %}{{ name }}{% endfor %}
            """
        },
    )
    assert (err.line, str(err.reason)) == (
        6,
        "模板语法错误（第 6 行，第 2 个变体）：这里写了 {% endfor %}，"
        "但前面的 {% if %} 还没有结束：应该先写 {% endif %}",
    )


def test_empty_variant_is_an_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, {"a/x.j2": "你好\n---\n\n"})
    assert (err.line, "第 2 个变体是空的（是不是多写了一行 ---" in str(err.reason)) == (3, True)


def test_variant_that_renders_empty_is_an_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, {"a/x.j2": "{# vip = false #}\n{% if vip %}尊贵的客人{% endif %}"})
    assert (err.line, "模板用示例变量生成的是空文字" in str(err.reason)) == (2, True)


# --------------------------------------------------------------------------- sandbox


def test_sandbox_blocks_dunder_access_at_load(tmp_path: Path) -> None:
    err = load_error(tmp_path, {"a/x.j2": "ok\n{{ ''.__class__.__mro__ }}"})
    assert (err.file, err.line) == ("persona/a/x.j2", 2)
    assert "模板里不允许这样写，被安全沙箱拦下了" in str(err.reason)
    assert "blocked by the sandbox" in err.english


def test_sandbox_blocks_huge_repetition(tmp_path: Path) -> None:
    err = load_error(tmp_path, {"a/x.j2": "{{ 'x' * 100000000 }}"})
    assert str(err.reason) == "模板：超出模板限制：* 会生成超过 100000 个元素"


@pytest.mark.parametrize("target", ["greeter/hello.j2", "../../etc/passwd", "/etc/passwd"])
def test_only_shared_underscore_files_can_be_included(tmp_path: Path, target: str) -> None:
    err = load_error(tmp_path, {"a/x.j2": f'{{% include "{target}" %}}'})
    assert (err.file, err.line) == ("persona/a/x.j2", 1)
    assert "只能引入 _voice.j2 或 <插件>/_<名字>.j2 这样的共享文件" in str(err.reason)


def test_plugin_helper_file_can_be_imported(tmp_path: Path) -> None:
    persona = make(
        tmp_path,
        {
            "a/_bits.j2": "{% macro hi() %}嗨{% endmacro %}",
            "a/x.j2": '{% from "a/_bits.j2" import hi %}{{ hi() }}',
        },
    )
    assert persona.render("a/x", chat_id="c").text == "嗨"


# --------------------------------------------------------------------------- layers

LAYERED = {
    "persona.toml": """
        [brand]
        brand_name = "小鱼塘"
        title = "B"
        signature = "品牌落款"

        [layers.vip]
        tags = ["vip"]
        vars = { title = "V" }

        [layers.newbie]
        tags = ["new"]
        vars = { title = "N" }

        [layers.tea_room]
        rooms = ["r_tea"]
        vars = { title = "R" }

        [layers.boss]
        contacts = ["wxid_boss"]
        vars = { title = "X", signature = "老板落款" }
    """,
    "a/title.j2": "{{ title }}|{{ voice.sign() }}",
}


def test_layers_resolve_contact_room_segments_brand(tmp_path: Path) -> None:
    persona = make(tmp_path, LAYERED)
    assert persona.layer_names() == ["brand", "vip", "newbie", "tea_room", "boss"]
    order = persona.layers_for(contact_id="wxid_boss", room_id="r_tea", tags=["new", "vip"])
    assert order == ["boss", "tea_room", "vip", "newbie", "brand"]
    assert persona.layers_for(contact_id="wxid_x", room_id=None, tags=[]) == ["brand"]


def test_layer_vars_override_brand_and_call_vars_override_all(tmp_path: Path) -> None:
    persona = make(tmp_path, LAYERED)

    def title(**kw: object) -> str:
        return persona.render("a/title", chat_id="c", **kw).text  # type: ignore[arg-type]

    assert title() == "B|品牌落款"
    assert title(tags=["vip"]) == "V|品牌落款"
    assert title(tags=["vip", "new"]) == "V|品牌落款"  # vip comes first in persona.toml
    assert title(tags=["vip"], room_id="r_tea") == "R|品牌落款"
    assert title(tags=["vip"], room_id="r_tea", contact_id="wxid_boss") == "X|老板落款"
    assert title(contact_id="wxid_boss", title="C") == "C|老板落款"


def test_layer_override_file_serves_that_layer(tmp_path: Path) -> None:
    persona = make(
        tmp_path,
        {**LAYERED, "_layers/vip/greeter/hello.j2": '{# name = "小美" #}\n贵宾 {{ name }}'},
    )
    vip = persona.render("greeter/hello", chat_id="c", tags=["vip"], name="小美")
    assert (vip.text, vip.layer) == ("贵宾 小美", "vip")
    plain = persona.render("greeter/hello", chat_id="c", tags=["other"], name="小美")
    assert plain.layer == "brand"
    assert persona.file_for("greeter/hello", "vip") == "persona/_layers/vip/greeter/hello.j2"
    assert persona.file_for("greeter/hello", "boss") == "persona/greeter/hello.j2"
    assert persona.render_sample("greeter/hello", "vip")[0].text == "贵宾 小美"


def test_layer_override_file_must_trial_render(tmp_path: Path) -> None:
    err = load_error(tmp_path, {**LAYERED, "_layers/vip/greeter/hello.j2": "{{ nobody }}"})
    assert (err.file, err.line) == ("persona/_layers/vip/greeter/hello.j2", 1)


def test_override_in_unknown_layer_dir_is_an_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, {"_layers/gold/greeter/hello.j2": "hi"})
    assert err.file == "persona/_layers/gold/greeter/hello.j2"
    assert "[layers.gold]" in str(err.reason)


def test_override_without_base_file_is_an_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, {**LAYERED, "_layers/vip/greeter/bye.j2": "hi"})
    assert "persona/greeter/bye.j2" in str(err.reason)


def test_layer_without_tags_rooms_or_contacts_is_an_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, {"persona.toml": "[layers.vip]\nvars = { title = 'V' }\n"})
    assert (err.file, err.line) == ("persona/persona.toml", 1)
    assert "layers.vip" in str(err.reason)


def test_wrong_types_in_persona_toml_name_the_key(tmp_path: Path) -> None:
    err = load_error(tmp_path, {"persona.toml": '[brand]\nx = 1\n\n[layers.vip]\ntags = "vip"\n'})
    assert (err.file, err.line) == ("persona/persona.toml", 5)
    assert "layers.vip.tags" in str(err.reason)
    err = load_error(tmp_path, {"persona.toml": "[layer.vip]\ntags = ['vip']\n"})
    assert "layer" in str(err.reason)  # a typo'd table name is not silently ignored


def test_persona_toml_syntax_error_has_a_line(tmp_path: Path) -> None:
    err = load_error(tmp_path, {"persona.toml": '[brand]\nname = "x\n'})
    assert (err.file, err.line) == ("persona/persona.toml", 2)


# --------------------------------------------------------------------------- require


def test_require_names_owner_and_expected_file(tmp_path: Path) -> None:
    persona = make(tmp_path, {})
    persona.require(["greeter/hello"], owner="greeter")
    with pytest.raises(PersonaError) as caught:
        persona.require(["greeter/hello", "greeter/bye", "greeter/later"], owner="greeter")
    err = caught.value
    assert err.file == "persona/greeter/bye.j2"
    assert "插件「greeter」需要的文案没有模板文件" in str(err.reason)
    assert "persona/greeter/later.j2" in str(err.reason)


# --------------------------------------------------------------------------- hot reload


def test_reload_without_changes_does_nothing(tmp_path: Path) -> None:
    persona = make(tmp_path, {})
    assert persona.reload_if_changed() == []
    assert persona.version == 1


def test_reload_good_change_takes_effect(tmp_path: Path) -> None:
    persona = make(tmp_path, {"a/x.j2": "旧"})
    edit(tmp_path / "persona", "a/x.j2", "新")
    assert persona.reload_if_changed() == []
    assert persona.render("a/x", chat_id="c").text == "新"
    assert persona.version == 2


def test_reload_broken_change_keeps_last_good_version(tmp_path: Path) -> None:
    root = tmp_path / "persona"
    persona = make(tmp_path, {"a/x.j2": "旧", "a/y.j2": "y1"})
    edit(root, "a/x.j2", "第一行\n{{ oops }}")
    edit(root, "a/y.j2", "y2")
    errors = persona.reload_if_changed()
    assert [(e.file, e.line) for e in errors] == [("persona/a/x.j2", 2)]
    assert "；继续使用上一个正确版本" in str(errors[0].reason)
    assert persona.render("a/x", chat_id="c").text == "旧"
    assert persona.render("a/y", chat_id="c").text == "y2"  # the good change next to it applies
    assert persona.reload_if_changed() == []  # reported once, not on every poll
    edit(root, "a/x.j2", "修好了")
    assert persona.reload_if_changed() == []
    assert persona.render("a/x", chat_id="c").text == "修好了"


def test_reload_picks_up_new_and_removed_files(tmp_path: Path) -> None:
    root = tmp_path / "persona"
    persona = make(tmp_path, {"a/x.j2": "x"})
    edit(root, "a/new.j2", "新文件")
    assert persona.reload_if_changed() == []
    assert persona.render("a/new", chat_id="c").text == "新文件"
    edit(root, "a/x.j2", None)
    assert persona.reload_if_changed() == []
    assert not persona.has("a/x")


def test_reload_new_broken_file_is_reported_and_not_added(tmp_path: Path) -> None:
    persona = make(tmp_path, {})
    edit(tmp_path / "persona", "a/new.j2", "{{ ")
    errors = persona.reload_if_changed()
    assert [e.file for e in errors] == ["persona/a/new.j2"]
    assert not persona.has("a/new")
    assert persona.version == 1


def test_reload_broken_persona_toml_keeps_whole_state(tmp_path: Path) -> None:
    root = tmp_path / "persona"
    persona = make(tmp_path, {"a/x.j2": "x1"})
    edit(root, "persona.toml", "[brand\n")
    edit(root, "a/x.j2", "x2")
    errors = persona.reload_if_changed()
    assert [(e.file, e.line) for e in errors] == [("persona/persona.toml", 1)]
    assert persona.render("a/x", chat_id="c").text == "x1"
    assert persona.version == 1
    edit(root, "persona.toml", '[brand]\nbrand_name = "新"\nsignature = "s"\n')
    assert persona.reload_if_changed() == []
    assert persona.render("a/x", chat_id="c").text == "x2"


def test_reload_refuses_toml_change_that_breaks_working_templates(tmp_path: Path) -> None:
    root = tmp_path / "persona"
    persona = make(tmp_path, {})
    edit(root, "persona.toml", '[brand]\nsignature = "s"\n')  # drops `brand_name`
    errors = persona.reload_if_changed()
    assert "没有重新加载：这次修改会让原本正常的模板出错" in str(errors[0].reason)
    assert [(e.file, e.line) for e in errors[1:]] == [("persona/greeter/hello.j2", 8)]
    assert "brand_name" in str(errors[1].reason)
    assert persona.render("greeter/hello", chat_id="c", name="x").text
    assert persona.version == 1


def test_reload_broken_voice_keeps_whole_state(tmp_path: Path) -> None:
    root = tmp_path / "persona"
    persona = make(tmp_path, {"a/x.j2": "{{ voice.sign() }}"})
    edit(root, "_voice.j2", "{% macro sign() %}{{ signature }")
    errors = persona.reload_if_changed()
    assert [e.file for e in errors] == ["persona/_voice.j2"]
    assert persona.render("a/x", chat_id="c").text == "—— 阿鱼"


def test_reload_variant_count_change_is_safe(tmp_path: Path) -> None:
    persona = make(tmp_path, {"a/x.j2": "1\n---\n2\n---\n3"})
    for _ in range(5):
        persona.render("a/x", chat_id="c")
    edit(tmp_path / "persona", "a/x.j2", "only")
    persona.reload_if_changed()
    assert persona.render("a/x", chat_id="c").text == "only"


# --------------------------------------------------------------------------- shipped persona


def test_shipped_persona_loads_and_renders_every_sample() -> None:
    persona = Persona(REPO / "persona")
    persona.require(["greeter/hello", "greeter/seen_before", "core/fallback"], owner="shipped")
    assert "vip" in persona.layer_names()
    for key in persona.keys():  # noqa: SIM118 (a list, not a dict)
        for layer in persona.layer_names():
            assert all(r.text for r in persona.render_sample(key, layer))
    vip = persona.render("greeter/hello", chat_id="c", tags=["vip"], name="小美")
    assert vip.layer == "vip"


def test_preview_script_runs_on_the_shipped_persona(tmp_path: Path) -> None:
    out = tmp_path / "preview.html"
    result = subprocess.run(
        [sys.executable, "scripts/persona_preview.py", "--html", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "greeter/hello" in result.stdout
    page = out.read_text(encoding="utf-8")
    assert "greeter/hello" in page
    assert "人设文案预览" in page


def test_preview_script_exits_2_on_a_broken_persona(tmp_path: Path) -> None:
    root = write(tmp_path / "persona", {"a/x.j2": "{{ nope }}"})
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/persona_preview.py"), "--persona", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "persona/a/x.j2:1" in result.stderr


def test_sandbox_refuses_numbers_that_would_exhaust_cpu() -> None:
    import jinja2.exceptions

    from pond.persona.sandbox import _Env

    env = _Env()
    assert env.from_string("{{ 2 ** 10 }}").render() == "1024"
    with pytest.raises(jinja2.exceptions.SecurityError):
        env.from_string("{{ ((10 ** 1000) ** 1000) ** 10 }}").render()
