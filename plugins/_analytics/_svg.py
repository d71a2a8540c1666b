"""Small SVG building blocks for plugins._analytics.charts: number formatting, nice ticks, text
width estimates, the colour palette, the chart frame, legends and category labels.

Charts are plain strings: the report is one offline HTML file, so there is no JS and no
dependency. Nothing here uses element ids, because several charts share one page; the one
<style> block is scoped to `svg.chart` and identical in every chart, so repeating it is
harmless."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape

FONT = "-apple-system, 'PingFang SC', 'Microsoft YaHei', 'Noto Sans CJK SC', sans-serif"
WIDTH = 640
FS = 11  # base font size (px in viewBox units)
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#76b7b2",
    "#b07aa1", "#9c755f", "#ff9da7", "#c9a227", "#17becf",
)  # fmt: skip
LIMIT_COLOUR = "#9ca3af"
LIMIT_DASHES = ("6 4", "2 3", "8 3 2 3")
STYLE = (
    "<style>"
    "svg.chart text{fill:#374151}"
    "svg.chart text.t{font-size:14px;font-weight:600;fill:#111827}"
    "svg.chart text.ax{fill:#6b7280}"
    "svg.chart text.inv{fill:#fff}"
    "svg.chart .grid{stroke:#e5e7eb;stroke-width:1}"
    "svg.chart .axis{stroke:#9ca3af;stroke-width:1}"
    "svg.chart .mark:hover{opacity:.8}"
    "</style>"
)


def esc(text: object) -> str:
    return escape(str(text), quote=True)


def num(x: float) -> str:
    """A coordinate, compact: one decimal at most, no trailing zeros."""
    s = f"{x:.1f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def clean(value: object) -> float | None:
    """A data value: None, NaN, infinities and non-numbers are missing; negatives clip at 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    if not math.isfinite(v):
        return None
    return max(v, 0.0)


def fmt(value: float, unit: str = "", percent: bool = False) -> str:
    """A value for people: 12,345 / 3.14 / 42.1%; `unit` appended as written (e.g. 人)."""
    if percent:
        s = f"{value * 100:.1f}".rstrip("0").rstrip(".")
        return f"{s}%"
    if float(value).is_integer():
        return f"{int(value):,}{unit}"
    return f"{value:,.2f}".rstrip("0").rstrip(".") + unit


def fmt_tick(value: float, percent: bool = False) -> str:
    """An axis tick: short, and in 万 from ten thousand on, as Chinese operators read it."""
    if percent:
        return fmt(value, percent=True)
    if value >= 10_000:
        return fmt(round(value / 10_000, 4)).replace(",", "") + "万"
    return fmt(round(value, 10))


def nice_ticks(top: float) -> list[float]:
    """4-6 ticks from 0 with a step of 1, 2 or 5 x 10^k whose last tick is >= top."""
    if not top > 0:
        return [0.0, 1.0, 2.0, 3.0]
    k = math.floor(math.log10(top)) - 2
    while True:
        for m in (1, 2, 5):
            step = m * 10.0**k
            n = max(math.ceil(top / step - 1e-9), 3)
            if n <= 5:
                # round() strips float noise such as 0.30000000000000004
                return [round(i * step, 12) for i in range(n + 1)]
        k += 1


def text_width(text: str, size: float = FS) -> float:
    """Estimated rendered width: CJK and full-width characters are one em, others ~0.6 em."""
    return sum(size if ord(c) >= 0x2E80 else size * 0.6 for c in text)


def truncate(text: str, max_width: float, size: float = FS) -> str:
    if text_width(text, size) <= max_width:
        return text
    out = ""
    for c in text:
        if text_width(out + c + "…", size) > max_width:
            break
        out += c
    return out + "…"


def label(
    x: float,
    y: float,
    text: str,
    max_width: float,
    *,
    anchor: str = "start",
    cls: str = "",
    extra: str = "",
) -> str:
    """A text element, truncated to `max_width` with the full text in a <title>."""
    short = truncate(text, max_width)
    tip = f"<title>{esc(text)}</title>" if short != text else ""
    c = f' class="{cls}"' if cls else ""
    a = "" if anchor == "start" else f' text-anchor="{anchor}"'
    return f'<text x="{num(x)}" y="{num(y)}"{c}{a}{extra}>{tip}{esc(short)}</text>'


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def root(title: str, height: float, body: Iterable[str], cls: str = "chart") -> str:
    h = num(math.ceil(height))
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{cls}" viewBox="0 0 {WIDTH} {h}" '
        f'width="100%" role="img" aria-label="{esc(title)}" font-family="{FONT}" '
        f'font-size="{FS}">'
    )
    heading = label(10, 20, title, WIDTH - 20, cls="t")
    return head + STYLE + heading + "".join(body) + "</svg>"


def empty_box(title: str, text: str) -> str:
    """What a chart without data shows: a framed box with the reason, still 'drawn'."""
    box = (
        f'<rect class="frame" x="10" y="32" width="{WIDTH - 20}" height="100" rx="6" '
        'fill="#f9fafb" stroke="#d1d5db"/>'
        f'<text class="ax" x="{WIDTH // 2}" y="87" text-anchor="middle">{esc(text)}</text>'
    )
    return root(title, 142, [box], cls="chart empty")


LegendItem = tuple[str, str, str]  # (label, colour, kind: "box" | "line" | a dash pattern)


def legend(items: Sequence[LegendItem], y: float) -> tuple[str, float]:
    """Legend entries laid out left to right, wrapping; returns (svg, height used)."""
    parts: list[str] = []
    x, row = 10.0, 0
    for text, col, kind in items:
        short = truncate(text, 160)
        w = 22 + text_width(short)
        if x > 10 and x + w > WIDTH - 10:
            x, row = 10.0, row + 1
        cy = y + row * 18 + 6
        if kind == "box":
            parts.append(
                f'<rect x="{num(x)}" y="{num(cy - 5)}" width="10" height="10" rx="2" fill="{col}"/>'
            )
        else:
            dash = "" if kind == "line" else f' stroke-dasharray="{kind}"'
            parts.append(
                f'<line x1="{num(x - 2)}" y1="{num(cy)}" x2="{num(x + 12)}" '
                f'y2="{num(cy)}" stroke="{col}" stroke-width="2"{dash}/>'
            )
        parts.append(label(x + 16, cy + 4, text, 160))
        x += w + 14
    return "".join(parts), (row + 1) * 18 if items else 0.0


def category_labels(cats: Sequence[str], x0: float, slot: float, y: float) -> tuple[str, float]:
    """Category labels under a plot whose slots start at x0. Labels that do not fit are
    thinned (every k-th), and when even that would drop too many they are rotated 45
    degrees, so they never overlap. Returns (svg, height used below y)."""
    n = len(cats)
    widest = max((text_width(c) for c in cats), default=0.0)
    step = max(1, math.ceil((widest + 6) / slot))
    rotate = step > 3
    if rotate:
        # rotated labels stack diagonally: neighbours need about 1.5 line heights apart
        step = max(1, math.ceil(FS * 1.6 / slot))
        widest = min(widest, 90.0)
    parts = []
    for i in range(0, n, step):
        cx = x0 + (i + 0.5) * slot
        if rotate:
            # the first labels run left towards the viewBox edge: shorten them to stay inside
            room = min(90.0, (cx - 2) / 0.71)
            parts.append(
                label(
                    cx + 3,
                    y + 8,
                    cats[i],
                    room,
                    anchor="end",
                    cls="ax",
                    extra=f' transform="rotate(-45 {num(cx + 3)} {num(y + 8)})"',
                )
            )
        else:
            parts.append(label(cx, y + 12, cats[i], slot * step - 4, anchor="middle", cls="ax"))
    height = widest * 0.71 + 16 if rotate else 18.0
    return "".join(parts), height
