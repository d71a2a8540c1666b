"""Charts for the offline analytics report, drawn as inline SVG strings in Python.

Each function returns one `<svg class="chart">` element (no XML declaration) that scales
with its container (`viewBox` + `width="100%"`). Data marks (bars, points, lines, cells,
slices) carry `class="mark"` and a <title> child, which browsers show as a tooltip. Charts
without data (no categories, or every value zero/missing) render a framed box with the
`empty` text and `class="chart empty"`. Values: None, NaN and infinities are missing,
negatives are clipped to 0; none of the functions raise on odd input."""

from __future__ import annotations

import math
from collections.abc import Sequence

from plugins._analytics._svg import (
    FS,
    LIMIT_COLOUR,
    LIMIT_DASHES,
    WIDTH,
    LegendItem,
    category_labels,
    clean,
    colour,
    empty_box,
    esc,
    fmt,
    fmt_tick,
    label,
    legend,
    nice_ticks,
    num,
    root,
    text_width,
)

# None (like NaN) marks a missing value: no mark is drawn for it and lines break there
Series = tuple[str, Sequence[float | None]]
Values = list[float | None]

PLOT_H = 200.0
HEAT_LOW = (255, 255, 255)
HEAT_HIGH = (14, 116, 144)  # cyan-700: the highest value in a heatmap
HEAT_MISSING = "#e5e7eb"


def _prepare(series: Sequence[Series], n: int) -> list[tuple[str, Values]]:
    """Series padded/cut to n values, cleaned (missing -> None, negative -> 0)."""
    out: list[tuple[str, Values]] = []
    for name, values in series:
        vals: Values = [clean(v) for v in list(values)[:n]]
        out.append((str(name), vals + [None] * (n - len(vals))))
    return out


def _mark(v: float) -> str:
    # zero-valued bars are zero-sized on purpose; the class lets a drawing check skip them
    return "mark" if v else "mark zero"


def _peak(data: Sequence[tuple[str, Values]]) -> float:
    return max((v for _, vals in data for v in vals if v is not None), default=0.0)


def _header(items: Sequence[LegendItem], unit: str, percent: bool = False) -> tuple[str, float]:
    """Legend and unit caption under the title; returns (svg, y where the plot may start)."""
    svg, height = legend(items, 32)
    y = 32 + height
    if unit and not percent:
        svg += label(10, y + 10, f"单位：{unit}", 200, cls="ax")
        y += 14
    return svg, y + 14


def _y_axis(ticks: Sequence[float], x0: float, x1: float, y0: float, percent: bool) -> str:
    """Horizontal gridlines with tick labels left of x0; y0 is the plot bottom."""
    parts = []
    for t in ticks:
        y = y0 - t / ticks[-1] * PLOT_H
        cls = "axis" if t == 0 else "grid"
        parts.append(
            f'<line class="{cls}" x1="{num(x0)}" y1="{num(y)}" x2="{num(x1)}" y2="{num(y)}"/>'
        )
        parts.append(label(x0 - 6, y + 4, fmt_tick(t, percent), x0 - 8, anchor="end", cls="ax"))
    return "".join(parts)


def _tick_room(ticks: Sequence[float], percent: bool = False) -> float:
    return max(text_width(fmt_tick(t, percent)) for t in ticks) + 18


def bars(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    stacked: bool = False,
    horizontal: bool = False,
    unit: str = "",
    empty: str = "暂无数据",
) -> str:
    """Bar chart; several series are grouped side by side, or stacked."""
    cats = [str(c) for c in categories]
    data = _prepare(series, len(cats))
    if not cats or not _peak(data):
        return empty_box(title, empty)
    ns = len(data)
    if stacked:
        top = max(sum(vals[i] or 0.0 for _, vals in data) for i in range(len(cats)))
    else:
        top = _peak(data)
    ticks = nice_ticks(top)
    vmax = ticks[-1]
    items = [(name, colour(j), "box") for j, (name, _) in enumerate(data)] if ns > 1 else []
    head, top_y = _header(items, unit)
    body = [head]
    if horizontal:
        widest = max(text_width(c) for c in cats)
        x0 = min(widest, 150.0) + 18
        plot_w = WIDTH - x0 - 24
        slot = 24.0 if stacked else max(24.0, 10.0 * ns + 10)
        y0 = top_y + 4
        y1 = y0 + slot * len(cats)
        for t in ticks:
            x = x0 + t / vmax * plot_w
            body.append(
                f'<line class="{"axis" if t == 0 else "grid"}" x1="{num(x)}" '
                f'y1="{num(y0)}" x2="{num(x)}" y2="{num(y1)}"/>'
            )
            body.append(label(x, y1 + 14, fmt_tick(t), 60, anchor="middle", cls="ax"))
        for i, c in enumerate(cats):
            body.append(label(x0 - 6, y0 + (i + 0.5) * slot + 4, c, x0 - 14, anchor="end"))
        height = y1 + 24
    else:
        x0 = _tick_room(ticks)
        plot_w = WIDTH - x0 - 12
        slot = plot_w / len(cats)
        y0 = top_y + PLOT_H
        body.append(_y_axis(ticks, x0, WIDTH - 12, y0, False))
        xl, lh = category_labels(cats, x0, slot, y0)
        body.append(xl)
        height = y0 + lh + 8
    band = min(slot * 0.8 / (1 if stacked else ns), 48.0)
    group = band if stacked else band * ns
    for i, c in enumerate(cats):
        base = 0.0
        for j, (name, vals) in enumerate(data):
            v = vals[i]
            if v is None:
                continue
            lo, hi = (base, base + v) if stacked else (0.0, v)
            base = hi
            off = (slot - group) / 2 + (0 if stacked else j * band)
            tip = f"<title>{esc(c)} · {esc(name)}：{esc(fmt(v, unit))}</title>"
            if horizontal:
                x, w = x0 + lo / vmax * plot_w, (hi - lo) / vmax * plot_w
                y, h = y0 + i * slot + off, band
            else:
                x, w = x0 + i * slot + off, band
                y, h = y0 - hi / vmax * PLOT_H, (hi - lo) / vmax * PLOT_H
            body.append(
                f'<rect class="{_mark(v)}" x="{num(x)}" y="{num(y)}" width="{num(w)}" '
                f'height="{num(h)}" fill="{colour(j)}">{tip}</rect>'
            )
    return root(title, height, body)


def lines(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    unit: str = "",
    percent: bool = False,
    empty: str = "暂无数据",
    limits: Sequence[Series] = (),
) -> str:
    """Line chart with points; `limits` are grey dashed reference lines (e.g. daily caps);
    percent=True reads values as fractions 0..1."""
    cats = [str(c) for c in categories]
    data = _prepare(series, len(cats))
    refs = _prepare(limits, len(cats))
    if not cats or not _peak(data):
        return empty_box(title, empty)
    ticks = nice_ticks(max(_peak(data), _peak(refs)))
    vmax = ticks[-1]
    items: list[LegendItem] = []
    if len(data) > 1 or refs:
        items = [(name, colour(j), "line") for j, (name, _) in enumerate(data)]
        items += [
            (name, LIMIT_COLOUR, LIMIT_DASHES[k % len(LIMIT_DASHES)])
            for k, (name, _) in enumerate(refs)
        ]
    head, top_y = _header(items, unit, percent)
    x0 = _tick_room(ticks, percent)
    slot = (WIDTH - x0 - 12) / len(cats)
    y0 = top_y + PLOT_H
    xl, lh = category_labels(cats, x0, slot, y0)
    body = [head, _y_axis(ticks, x0, WIDTH - 12, y0, percent), xl]

    def xy(i: int, v: float) -> str:
        return f"{num(x0 + (i + 0.5) * slot)} {num(y0 - v / vmax * PLOT_H)}"

    def path(vals: Values) -> str:
        d, pen = [], False
        for i, v in enumerate(vals):
            if v is None:
                pen = False
                continue
            d.append(("L" if pen else "M") + xy(i, v))
            pen = True
        return "".join(d)

    for k, (name, vals) in enumerate(refs):
        present = {v for v in vals if v is not None}
        tip = f"{name}：{fmt(present.pop(), unit, percent)}" if len(present) == 1 else name
        body.append(
            f'<path class="limit" d="{path(vals)}" fill="none" stroke="{LIMIT_COLOUR}" '
            f'stroke-width="1.5" stroke-dasharray="{LIMIT_DASHES[k % len(LIMIT_DASHES)]}">'
            f"<title>{esc(tip)}</title></path>"
        )
    for j, (name, vals) in enumerate(data):
        d = path(vals)
        if "L" in d:  # isolated points have no line; their circles show them
            body.append(
                f'<path class="mark line" d="{d}" fill="none" stroke="{colour(j)}" '
                f'stroke-width="2" stroke-linejoin="round"><title>{esc(name)}</title>'
                "</path>"
            )
        for i, v in enumerate(vals):
            if v is None:
                continue
            cx, cy = xy(i, v).split()
            tip = f"{cats[i]} · {name}：{fmt(v, unit, percent)}"
            body.append(
                f'<circle class="mark" cx="{cx}" cy="{cy}" r="3" fill="{colour(j)}" '
                f'stroke="#fff" stroke-width="1"><title>{esc(tip)}</title></circle>'
            )
    return root(title, y0 + lh + 8, body)


def _heat(t: float) -> str:
    rgb = (round(lo + (hi - lo) * t) for lo, hi in zip(HEAT_LOW, HEAT_HIGH, strict=True))
    return "#" + "".join(f"{c:02x}" for c in rgb)


def heatmap(
    rows: Sequence[str],
    columns: Sequence[str],
    values: Sequence[Sequence[float | None]],
    *,
    title: str,
    unit: str = "",
    percent: bool = False,
    empty: str = "暂无数据",
) -> str:
    """rows x columns grid shaded white -> cyan by value; missing cells light grey."""
    rnames, cnames = [str(r) for r in rows], [str(c) for c in columns]
    grid = _prepare(
        [("", list(values[r]) if r < len(values) else []) for r in range(len(rnames))], len(cnames)
    )
    peak = _peak(grid)
    if not rnames or not cnames or not peak:
        return empty_box(title, empty)
    x0 = min(max(text_width(r) for r in rnames), 130.0) + 18
    cw = (WIDTH - x0 - 12) / len(cnames)
    ch = 26.0 if len(rnames) <= 12 else 18.0
    texts = [fmt(v, unit, percent) for _, vals in grid for v in vals if v is not None]
    show = cw >= 36 and all(text_width(t, FS - 1) + 4 <= cw for t in texts)
    y0 = 52.0
    body = []
    step = max(1, math.ceil((max(text_width(c) for c in cnames) + 4) / cw))
    for k in range(0, len(cnames), step):
        body.append(
            label(x0 + (k + 0.5) * cw, y0 - 8, cnames[k], cw * step - 2, anchor="middle", cls="ax")
        )
    for r, (rname, (_, vals)) in enumerate(zip(rnames, grid, strict=True)):
        y = y0 + r * ch
        body.append(label(x0 - 6, y + ch / 2 + 4, rname, x0 - 14, anchor="end"))
        for k, v in enumerate(vals):
            x = x0 + k * cw
            geo = (
                f'x="{num(x + 0.5)}" y="{num(y + 0.5)}" width="{num(cw - 1)}" '
                f'height="{num(ch - 1)}"'
            )
            where = f"{rname} · {cnames[k]}"
            if v is None:
                body.append(
                    f'<rect class="mark na" {geo} fill="{HEAT_MISSING}">'
                    f"<title>{esc(where)}：无数据</title></rect>"
                )
                continue
            t = v / peak
            shown = fmt(v, unit, percent)
            body.append(
                f'<rect class="mark" {geo} fill="{_heat(t)}" stroke="#e5e7eb" '
                f'stroke-width=".5"><title>{esc(where)}：{esc(shown)}</title></rect>'
            )
            if show:
                inv = ' class="inv"' if t > 0.55 else ""
                body.append(
                    f'<text x="{num(x + cw / 2)}" y="{num(y + ch / 2 + 4)}"{inv} '
                    f'text-anchor="middle" font-size="{FS - 1}">{esc(shown)}</text>'
                )
    # scale: five swatches from 0 to the peak, since gradients would need document ids
    ys = y0 + len(rnames) * ch + 12
    body.append(
        label(x0, ys + 9, fmt(0, unit, percent), 60, anchor="end", cls="ax", extra=' dx="-4"')
    )
    for s in range(5):
        body.append(
            f'<rect x="{num(x0 + s * 16)}" y="{num(ys)}" width="16" height="12" '
            f'fill="{_heat(s / 4)}" stroke="#e5e7eb" stroke-width=".5"/>'
        )
    body.append(label(x0 + 84, ys + 10, fmt(peak, unit, percent), 120, cls="ax"))
    return root(title, ys + 22, body)


def funnel(steps: Sequence[tuple[str, float]], *, title: str, empty: str = "暂无数据") -> str:
    """One horizontal bar per step, as wide as its share of the first step, with the count,
    the percent of the first step and of the previous step."""
    names = [str(n) for n, _ in steps]
    counts = [clean(v) or 0.0 for _, v in steps]
    if not names or not max(counts):
        return empty_box(title, empty)
    first = counts[0]
    base = first or max(counts)  # a zero first step still lets later steps be drawn
    x0 = min(max(text_width(n) for n in names), 140.0) + 18
    plot_w = WIDTH - x0 - 230
    row, y0 = 34.0, 34.0
    body = []

    def pct(a: float, b: float) -> str:
        return fmt(a / b, percent=True) if b > 0 else "—"

    for i, (name, v) in enumerate(zip(names, counts, strict=True)):
        y = y0 + i * row
        w = min(v / base, 1.0) * plot_w
        note = f"{fmt(v)} · 占首步 {pct(v, first)}"
        if i:
            note += f" · 较上步 {pct(v, counts[i - 1])}"
        body.append(label(x0 - 6, y + row / 2 + 4, name, x0 - 14, anchor="end"))
        body.append(
            f'<rect class="{_mark(v)}" x="{num(x0)}" y="{num(y + 5)}" width="{num(w)}" '
            f'height="{num(row - 10)}" rx="3" fill="{colour(0)}">'
            f"<title>{esc(name)}：{esc(note)}</title></rect>"
        )
        body.append(label(x0 + w + 8, y + row / 2 + 4, note, WIDTH - x0 - w - 16))
    return root(title, y0 + len(names) * row + 10, body)


def donut(parts: Sequence[tuple[str, float]], *, title: str, empty: str = "暂无数据") -> str:
    """Shares of a whole as a ring, with a legend of counts and percents."""
    names = [str(n) for n, _ in parts]
    counts = [clean(v) or 0.0 for _, v in parts]
    total = sum(counts)
    if not total:
        return empty_box(title, empty)
    cx, cy, ro, ri = 150.0, 150.0, 100.0, 60.0
    body = []
    start = 0.0
    for j, (name, v) in enumerate(zip(names, counts, strict=True)):
        if not v:
            continue
        frac = v / total
        tip = f"<title>{esc(name)}：{esc(fmt(v))}（{fmt(frac, percent=True)}）</title>"
        if frac > 0.9999:
            # one arc cannot close a full circle: two halves per ring, hole by even-odd
            d = (
                f"M{num(cx)} {num(cy - ro)}A{num(ro)} {num(ro)} 0 1 1 {num(cx)} {num(cy + ro)}"
                f"A{num(ro)} {num(ro)} 0 1 1 {num(cx)} {num(cy - ro)}Z"
                f"M{num(cx)} {num(cy - ri)}A{num(ri)} {num(ri)} 0 1 0 {num(cx)} {num(cy + ri)}"
                f"A{num(ri)} {num(ri)} 0 1 0 {num(cx)} {num(cy - ri)}Z"
            )
        else:
            a0, a1 = start * 2 * math.pi, (start + frac) * 2 * math.pi
            big = 1 if frac > 0.5 else 0

            def pt(r: float, a: float) -> str:
                return f"{num(cx + r * math.sin(a))} {num(cy - r * math.cos(a))}"

            d = (
                f"M{pt(ro, a0)}A{num(ro)} {num(ro)} 0 {big} 1 {pt(ro, a1)}L{pt(ri, a1)}"
                f"A{num(ri)} {num(ri)} 0 {big} 0 {pt(ri, a0)}Z"
            )
        start += frac
        body.append(
            f'<path class="mark" d="{d}" fill="{colour(j)}" fill-rule="evenodd" '
            f'stroke="#fff" stroke-width="1">{tip}</path>'
        )
    body.append(
        f'<text x="{num(cx)}" y="{num(cy + 2)}" text-anchor="middle" font-size="20" '
        f'font-weight="600">{esc(fmt(total))}</text>'
    )
    body.append(label(cx, cy + 20, "合计", 80, anchor="middle", cls="ax"))
    ly = 44.0
    for j, (name, v) in enumerate(zip(names, counts, strict=True)):
        y = ly + j * 22
        body.append(
            f'<rect x="300" y="{num(y - 9)}" width="10" height="10" rx="2" fill="{colour(j)}"/>'
        )
        body.append(label(316, y, name, 170))
        body.append(
            label(WIDTH - 10, y, f"{fmt(v)} · {fmt(v / total, percent=True)}", 130, anchor="end")
        )
    return root(title, max(cy + ro + 16, ly + len(names) * 22), body)
