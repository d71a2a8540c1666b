"""人设文案预览：每个文案键、每个人设分层，用文件开头的示例变量渲染出来。

    python3 scripts/persona_preview.py                      在终端列出全部文案
    python3 scripts/persona_preview.py --html preview.html  另外写一个网页（分组、目录、搜索）
    python3 scripts/persona_preview.py --key greeter/       只看以这个前缀开头的键

某个分层有自己的覆盖文件、或它的变量让文字不同时，才单独列出；否则写「与品牌默认相同」。
退出码：0 全部正常，1 有变体渲染出错，2 人设目录加载失败。
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    import _env  # scripts/ is sys.path[0] when run as a program

    _env.bootstrap()
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import html  # noqa: E402
from dataclasses import dataclass  # noqa: E402

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


def layer_name(layer: str) -> str:
    return "品牌默认" if layer == BRAND else f"分层 {layer}"


def print_text(table: dict[str, list[Cell]]) -> None:
    for key, cells in table.items():
        print(f"=== {key}")
        for cell in cells:
            if cell.same_as_brand:
                print(f"  [{layer_name(cell.layer)}] 与品牌默认相同")
                continue
            where = f"覆盖文件 {cell.file}" if cell.overridden else cell.file
            print(f"  [{layer_name(cell.layer)}] {where}")
            if cell.error:
                print(f"    渲染出错：{cell.error}")
            for number, text in enumerate(cell.texts, 1):
                print(f"    变体 {number}/{len(cell.texts)}：")
                for line in text.splitlines():
                    print(f"      {line}")
        print()


_CSS = """
body { font-family: -apple-system, "PingFang SC", "Microsoft YaHei", sans-serif;
       margin: 0; color: #222; background: #f6f7f5; }
header { position: sticky; top: 0; z-index: 2; background: #f6f7f5ee; padding: .8em 2em;
         border-bottom: 1px solid #e3e5e0; display: flex; gap: 1em; align-items: center; }
header h1 { font-size: 1.3em; margin: 0; }
#search { flex: 1; max-width: 420px; font-size: 1em; padding: .4em .7em; border: 1px solid #ccc;
          border-radius: 6px; }
#found { color: #666; font-size: .9em; }
.wrap { display: flex; align-items: flex-start; gap: 1.5em; padding: 0 2em 2em; }
nav { position: sticky; top: 4.2em; max-height: calc(100vh - 5em); overflow: auto;
      width: 240px; flex: none; font-size: .85em; padding-top: 1em; }
nav h2 { font-size: 1em; margin: .2em 0; }
nav ul { list-style: none; margin: 0 0 .8em; padding: 0; }
nav li a { display: block; padding: .1em .4em; color: #2f5d1f; text-decoration: none;
           font-family: monospace; border-radius: 3px; }
nav li a:hover { background: #e8f0e4; }
nav .count, summary .count { color: #888; font-weight: normal; }
main { flex: 1; min-width: 0; }
details.plugin { margin: 1em 0; }
details.plugin > summary { font-size: 1.2em; font-weight: bold; cursor: pointer; padding: .3em 0; }
.key { background: #fff; border-radius: 8px; padding: 1em 1.2em; margin: 1em 0;
       box-shadow: 0 1px 3px rgba(0,0,0,.08); }
.key h3 { font-size: 1.05em; margin: 0 0 .6em; font-family: monospace; }
.layer { border-top: 1px solid #eee; padding: .6em 0; }
.layer h4 { font-size: .95em; margin: 0 0 .4em; color: #555; }
.tag { display: inline-block; font-size: .8em; padding: 0 .5em; border-radius: 4px;
       background: #e8f0e4; color: #3c6e2f; margin-left: .5em; }
.tag.override { background: #fff1d6; color: #8a5a00; }
.tag.error { background: #fde7ea; color: #b00020; }
.variants { display: flex; flex-wrap: wrap; gap: .8em; }
.bubble { background: #95ec69; border-radius: 6px; padding: .6em .8em; white-space: pre-wrap;
          max-width: 320px; line-height: 1.5; }
.bubble small { display: block; color: #3d6b26; font-size: .75em; margin-bottom: .2em; }
.same { color: #888; font-size: .9em; }
.error { color: #b00020; white-space: pre-wrap; font-family: monospace; }
.file { color: #999; font-size: .8em; font-family: monospace; }
.hidden { display: none; }
"""

# Search: a key stays visible when the words typed appear in its name or in its copy; a group
# opens when it holds a match. Clicking a key in the contents opens its group first.
_JS = """
(function () {
  const box = document.getElementById("search");
  const found = document.getElementById("found");
  const keys = Array.from(document.querySelectorAll("section.key"));
  const groups = Array.from(document.querySelectorAll("details.plugin"));
  const links = Array.from(document.querySelectorAll("nav a[data-key]"));
  function filter() {
    const words = box.value.trim().toLowerCase().split(/\\s+/).filter(Boolean);
    let shown = 0;
    for (const key of keys) {
      const text = key.textContent.toLowerCase();
      const hit = words.every((w) => text.includes(w));
      key.classList.toggle("hidden", !hit);
      if (hit) shown++;
    }
    for (const link of links) {
      const key = document.getElementById(link.dataset.key);
      link.parentElement.classList.toggle("hidden", key.classList.contains("hidden"));
    }
    for (const group of groups) {
      const any = group.querySelector("section.key:not(.hidden)") !== null;
      group.classList.toggle("hidden", !any);
      if (words.length) group.open = any;
    }
    found.textContent = words.length ? "找到 " + shown + " 个" : "共 " + keys.length + " 个";
  }
  box.addEventListener("input", filter);
  for (const link of links) {
    link.addEventListener("click", () => {
      const key = document.getElementById(link.dataset.key);
      key.closest("details").open = true;
    });
  }
  if (location.hash) {
    const key = document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if (key) { key.closest("details").open = true; key.scrollIntoView(); }
  }
  filter();
})();
"""


def group_by_plugin(table: dict[str, list[Cell]]) -> dict[str, dict[str, list[Cell]]]:
    groups: dict[str, dict[str, list[Cell]]] = {}
    for key in sorted(table):
        plugin = key.split("/", 1)[0] if "/" in key else "（其他）"
        groups.setdefault(plugin, {})[key] = table[key]
    return groups


def _key_html(key: str, cells: list[Cell]) -> list[str]:
    esc = html.escape
    parts = [f'<section class="key" id="{esc(key)}"><h3>{esc(key)}</h3>']
    for cell in cells:
        tag = '<span class="tag override">有覆盖文件</span>' if cell.overridden else ""
        if cell.error:
            tag += '<span class="tag error">渲染出错</span>'
        parts.append(f'<div class="layer"><h4>{esc(layer_name(cell.layer))}{tag}</h4>')
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
    return parts


def render_html(table: dict[str, list[Cell]], source: str) -> str:
    """One self-contained page: keys grouped by plugin (folded), a contents list, a search
    box (inline script, no network)."""
    esc = html.escape
    groups = group_by_plugin(table)
    failed = {key for key, cells in table.items() if any(c.error for c in cells)}
    nav = ["<nav><h2>目录</h2>"]
    body: list[str] = []
    for plugin, keys in groups.items():
        nav.append(
            f'<h2><a href="#group-{esc(plugin)}">{esc(plugin)}</a>'
            f' <span class="count">{len(keys)}</span></h2><ul>'
        )
        for key in keys:
            mark = " ⚠" if key in failed else ""
            nav.append(
                f'<li><a href="#{esc(key)}" data-key="{esc(key)}">'
                f"{esc(key.split('/', 1)[-1])}{mark}</a></li>"
            )
        nav.append("</ul>")
        opened = " open" if failed & set(keys) else ""  # problems are not folded away
        body.append(
            f'<details class="plugin" id="group-{esc(plugin)}"{opened}>'
            f'<summary>{esc(plugin)} <span class="count">{len(keys)} 个文案键</span></summary>'
        )
        for key, cells in keys.items():
            body.extend(_key_html(key, cells))
        body.append("</details>")
    nav.append("</nav>")
    summary = (
        f"人设目录：<code>{esc(source)}</code>，{len(groups)} 个插件、{len(table)} 个文案键"
        + (f"，<b>{len(failed)} 个渲染出错</b>" if failed else "")
        + "。每个气泡是一个变体（示例变量来自文件开头的示例块）。点插件名展开。"
    )
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="zh-CN"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>人设文案预览</title>",
            f"<style>{_CSS}</style></head><body>",
            "<header><h1>人设文案预览</h1>",
            '<input id="search" type="search" placeholder="搜索文案键或文字，如 欢迎、greeter/">',
            '<span id="found"></span></header>',
            f'<div class="wrap">{"".join(nav)}<main><p>{summary}</p>',
            *body,
            "</main></div>",
            f"<script>{_JS}</script>",
            "</body></html>",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="persona_preview.py",
        description="人设文案预览：用示例变量渲染每个文案键、每个人设分层。",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--persona", type=Path, default=ROOT / "persona", metavar="目录", help="人设目录"
    )
    parser.add_argument(
        "--html", type=Path, metavar="文件", help="另外写一个网页（可离线打开，按插件分组）"
    )
    parser.add_argument("--key", default="", metavar="前缀", help="只看以这个前缀开头的键")
    args = parser.parse_args(argv)
    try:
        persona = Persona(args.persona)
    except PersonaError as err:
        print(f"人设模板错误：{err}", file=sys.stderr)
        return 2
    table = collect(persona, args.key)
    print_text(table)
    print("\n".join(lint_lines(args.persona)))
    if args.html:
        args.html.write_text(render_html(table, str(args.persona)), encoding="utf-8")
        print(f"已写入 {args.html}")
    failed = sum(1 for cells in table.values() for cell in cells if cell.error)
    if failed:
        print(f"{failed} 处渲染出错（见上面的「渲染出错」）", file=sys.stderr)
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
