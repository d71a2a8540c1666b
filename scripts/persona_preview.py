"""Preview every persona key in every layer, rendered with the sample values of each file.

    python scripts/persona_preview.py                      text listing in the terminal
    python scripts/persona_preview.py --html preview.html  also one self-contained HTML page
    python scripts/persona_preview.py --key greeter/       only keys starting with a prefix

A layer is listed under a key when it has its own override file or when its variables change
the text; otherwise the listing says the layer reads the same as the brand default.
Exit status: 0 all good, 1 some variant failed to render, 2 the persona did not load.
"""

from __future__ import annotations

import argparse
import html
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pond.persona import BRAND, Persona, PersonaError  # noqa: E402


@dataclass(frozen=True)
class Cell:
    """What one layer says for one key."""

    layer: str
    file: str
    overridden: bool
    same_as_brand: bool
    texts: list[str]
    error: str | None = None


def collect(persona: Persona, prefix: str) -> dict[str, list[Cell]]:
    table: dict[str, list[Cell]] = {}
    keys = [key for key in persona.keys() if key.startswith(prefix)]  # noqa: SIM118
    for key in keys:
        cells: list[Cell] = []
        brand_texts: list[str] | None = None
        base_file = persona.file_for(key)
        for layer in persona.layer_names():
            file = persona.file_for(key, layer)
            try:
                texts = [r.text for r in persona.render_sample(key, layer)]
                error = None
            except PersonaError as err:
                texts, error = [], str(err)
            if layer == BRAND:
                brand_texts = texts
            cells.append(
                Cell(
                    layer=layer,
                    file=file,
                    overridden=layer != BRAND and file != base_file,
                    same_as_brand=layer != BRAND and error is None and texts == brand_texts,
                    texts=texts,
                    error=error,
                )
            )
        table[key] = cells
    return table


def print_text(table: dict[str, list[Cell]]) -> None:
    for key, cells in table.items():
        print(f"=== {key}")
        for cell in cells:
            if cell.same_as_brand:
                print(f"  [{cell.layer}] same as brand")
                continue
            where = f"override {cell.file}" if cell.overridden else cell.file
            print(f"  [{cell.layer}] {where}")
            if cell.error:
                print(f"    ERROR {cell.error}")
            for number, text in enumerate(cell.texts, 1):
                print(f"    variant {number}/{len(cell.texts)}:")
                for line in text.splitlines():
                    print(f"      {line}")
        print()


_CSS = """
body { font-family: -apple-system, "PingFang SC", "Microsoft YaHei", sans-serif;
       margin: 2em auto; max-width: 1100px; color: #222; background: #f6f7f5; }
h1 { font-size: 1.6em; } h2 { font-size: 1.15em; margin: 0 0 .6em; font-family: monospace; }
.key { background: #fff; border-radius: 8px; padding: 1em 1.2em; margin: 1.2em 0;
       box-shadow: 0 1px 3px rgba(0,0,0,.08); }
.layer { border-top: 1px solid #eee; padding: .6em 0; }
.layer h3 { font-size: .95em; margin: 0 0 .4em; color: #555; }
.tag { display: inline-block; font-size: .8em; padding: 0 .5em; border-radius: 4px;
       background: #e8f0e4; color: #3c6e2f; margin-left: .5em; }
.tag.override { background: #fff1d6; color: #8a5a00; }
.variants { display: flex; flex-wrap: wrap; gap: .8em; }
.bubble { background: #95ec69; border-radius: 6px; padding: .6em .8em; white-space: pre-wrap;
          max-width: 320px; line-height: 1.5; }
.bubble small { display: block; color: #3d6b26; font-size: .75em; margin-bottom: .2em; }
.same { color: #888; font-size: .9em; }
.error { color: #b00020; white-space: pre-wrap; font-family: monospace; }
.file { color: #999; font-size: .8em; font-family: monospace; }
"""


def render_html(table: dict[str, list[Cell]], source: str) -> str:
    esc = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        "<title>人设文案预览</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>人设文案预览</h1>",
        f"<p>目录：<code>{esc(source)}</code>，共 {len(table)} 个文案键。"
        "每个气泡是一个变体（示例变量来自文件开头的示例块）。</p>",
    ]
    for key, cells in table.items():
        parts.append(f'<section class="key" id="{esc(key)}"><h2>{esc(key)}</h2>')
        for cell in cells:
            name = "品牌默认" if cell.layer == BRAND else f"分层 {cell.layer}"
            tag = '<span class="tag override">有覆盖文件</span>' if cell.overridden else ""
            parts.append(f'<div class="layer"><h3>{esc(name)}{tag}</h3>')
            if cell.same_as_brand:
                parts.append('<p class="same">与品牌默认相同</p></div>')
                continue
            parts.append(f'<p class="file">{esc(cell.file)}</p>')
            if cell.error:
                parts.append(f'<p class="error">渲染出错：{esc(cell.error)}</p>')
            parts.append('<div class="variants">')
            for number, text in enumerate(cell.texts, 1):
                parts.append(
                    f'<div class="bubble"><small>变体 {number}/{len(cell.texts)}</small>'
                    f"{esc(text)}</div>"
                )
            parts.append("</div></div>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Preview all persona copy with sample values.")
    parser.add_argument("--persona", type=Path, default=ROOT / "persona", help="persona folder")
    parser.add_argument("--html", type=Path, help="also write one self-contained HTML page")
    parser.add_argument("--key", default="", help="only keys starting with this prefix")
    args = parser.parse_args(argv)
    try:
        persona = Persona(args.persona)
    except PersonaError as err:
        print(err, file=sys.stderr)
        return 2
    table = collect(persona, args.key)
    print_text(table)
    print("\n".join(lint_lines(args.persona)))
    if args.html:
        args.html.write_text(render_html(table, str(args.persona)), encoding="utf-8")
        print(f"wrote {args.html}")
    failed = sum(1 for cells in table.values() for cell in cells if cell.error)
    if failed:
        print(f"{failed} layer(s) failed to render", file=sys.stderr)
        return 1
    return 0


def lint_lines(persona_dir: Path) -> list[str]:
    """The persona lint (scripts/persona_lint.py): 回复“X” in the copy that no rule answers."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        from persona_lint import report

        found = report(persona_dir)
    except Exception as error:  # the preview still shows the copy when the bot cannot start
        return [f"文案检查没有运行（机器人没能启动：{error}）"]
    if not found:
        return ["文案检查：所有“回复XX”都有规则回答。"]
    return [f"文案检查：{len(found)} 处“回复XX”没有规则回答：", *("  " + f for f in found)]


if __name__ == "__main__":
    sys.exit(main())
