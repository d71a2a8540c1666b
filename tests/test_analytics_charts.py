"""Inline SVG charts of the analytics report: well-formed, marks match the data."""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET

import pytest

from plugins._analytics import _svg
from plugins._analytics.charts import bars, donut, funnel, heatmap, lines

NS = "{http://www.w3.org/2000/svg}"
EVIL = "<b>&\"渠道'</b>"


def parse(svg: str) -> ET.Element:
    assert svg.startswith("<svg ") and svg.endswith("</svg>")
    return ET.fromstring(svg)


def marks(root: ET.Element, tag: str = "rect") -> list[ET.Element]:
    return [e for e in root.iter(NS + tag) if "mark" in e.get("class", "").split()]


def title_of(e: ET.Element) -> str:
    t = e.find(NS + "title")
    assert t is not None and t.text
    return t.text


def f(e: ET.Element, attr: str) -> float:
    return float(e.get(attr, "nan"))


def shown(t: ET.Element) -> str:
    """What a <text> displays: its own text, not the <title> tooltip inside it."""
    return (t.text or "") + "".join(c.tail or "" for c in t)


def texts(root: ET.Element) -> list[str]:
    return [shown(t) for t in root.iter(NS + "text")]


def test_root_is_a_scalable_accessible_chart() -> None:
    svg = bars(["a"], [("s", [1])], title="标题 <1>")
    root = parse(svg)
    assert root.tag == NS + "svg"
    assert root.get("class") == "chart"
    assert root.get("width") == "100%"
    assert root.get("role") == "img"
    assert root.get("aria-label") == "标题 <1>"
    assert root.get("viewBox", "").startswith("0 0 640 ")
    assert "PingFang SC" in root.get("font-family", "")
    assert svg.count("font-family") == 1
    assert "<?xml" not in svg and " id=" not in svg


def test_grouped_bars_one_mark_per_value_heights_proportional() -> None:
    root = parse(bars(["a", "b", "c"], [("s1", [10, 20, 5]), ("s2", [40, 0, 15])], title="t"))
    rects = marks(root)
    assert len(rects) == 6
    heights = {title_of(r): f(r, "height") for r in rects}
    scale = heights["a · s2：40"] / 40
    assert scale > 0
    for key, value in [("a · s1：10", 10), ("b · s1：20", 20), ("c · s2：15", 15)]:
        assert heights[key] == pytest.approx(value * scale, abs=0.1)
    assert heights["b · s2：0"] == 0
    zero = next(r for r in rects if title_of(r) == "b · s2：0")
    assert "zero" in zero.get("class", "")
    # side by side in one category, all bars end on the same baseline
    a1, a2 = (r for r in rects if title_of(r).startswith("a "))
    assert f(a1, "x") + f(a1, "width") <= f(a2, "x") + 0.1
    bottoms = {round(f(r, "y") + f(r, "height")) for r in rects}
    assert len(bottoms) == 1
    # two series: both are in the legend, in distinct colours
    assert {"s1", "s2"} <= set(texts(root))
    assert len({r.get("fill") for r in rects}) == 2


def test_single_series_has_no_legend() -> None:
    root = parse(bars(["a", "b"], [("唯一系列", [1, 2])], title="t"))
    assert "唯一系列" not in texts(root)


def test_stacked_bars_stack_to_the_category_total() -> None:
    root = parse(
        bars(
            ["a", "b"],
            [("x", [3, 1]), ("y", [2, 4]), ("z", [5, None])],
            title="t",
            stacked=True,
            unit="人",
        )
    )
    rects = marks(root)
    assert len(rects) == 5  # the missing value draws nothing
    by_cat: dict[str, list[ET.Element]] = {}
    for r in rects:
        by_cat.setdefault(title_of(r).split(" · ")[0], []).append(r)
    assert "a · x：3人" in [title_of(r) for r in rects]
    bottom = f(rects[0], "y") + f(rects[0], "height")
    scale = f(rects[0], "height") / 3
    for cat, total in [("a", 10), ("b", 5)]:
        col = by_cat[cat]
        assert len({r.get("x") for r in col}) == 1
        top = min(f(r, "y") for r in col)
        assert bottom - top == pytest.approx(total * scale, abs=0.2)
        assert sum(f(r, "height") for r in col) == pytest.approx(total * scale, abs=0.2)
    # the axis reaches the biggest stack (10), not the biggest single value (5)
    assert "10" in texts(root)


def test_horizontal_bars_widths_proportional() -> None:
    root = parse(
        bars(["茶友群", "VIP", "新人群"], [("消息", [300, 1200, 0])], title="t", horizontal=True)
    )
    rects = marks(root)
    widths = [f(r, "width") for r in rects]
    assert widths[1] == pytest.approx(widths[0] * 4, abs=0.2)
    assert widths[2] == 0
    assert len({r.get("height") for r in rects}) == 1
    assert len({r.get("x") for r in rects}) == 1


def test_labels_are_escaped_in_markup_and_read_back_intact() -> None:
    svg = bars([EVIL, "b"], [(EVIL, [1, 2]), ("s", [3, 4])], title=EVIL)
    assert "<b>" not in svg
    assert "&lt;b&gt;&amp;&quot;渠道&#x27;&lt;/b&gt;" in svg
    root = parse(svg)
    assert root.get("aria-label") == EVIL
    assert f"{EVIL} · {EVIL}：1" in [title_of(r) for r in marks(root)]


@pytest.mark.parametrize(
    "svg",
    [
        bars([], [], title="t"),
        bars(["a", "b"], [], title="t"),
        bars(["a", "b"], [("s", [0, 0])], title="t"),
        bars(["a", "b"], [("s", [None, math.nan])], title="t"),
        bars(["a"], [("s", [-5])], title="t"),
        lines([], [("s", [])], title="t"),
        lines(["a"], [("s", [0])], title="t", limits=[("上限", [100])]),
        heatmap([], [], [], title="t"),
        heatmap(["r"], ["c1", "c2"], [[None, 0]], title="t"),
        funnel([], title="t"),
        funnel([("a", 0), ("b", 0)], title="t"),
        donut([], title="t"),
        donut([("a", 0), ("b", math.inf)], title="t"),
    ],
)
def test_no_data_draws_the_framed_empty_box(svg: str) -> None:
    root = parse(svg)
    assert root.get("class") == "chart empty"
    frame = next(root.iter(NS + "rect"))
    assert f(frame, "width") > 100 and f(frame, "height") > 50
    assert frame.get("stroke")
    assert "暂无数据" in texts(root)
    assert not marks(root) and not marks(root, "circle") and not marks(root, "path")


def test_empty_text_is_configurable_and_escaped() -> None:
    root = parse(donut([], title="t", empty="本期 <无> 新好友"))
    assert "本期 <无> 新好友" in texts(root)


def test_single_category_and_odd_values_do_not_raise() -> None:
    root = parse(bars(["only"], [("s", [5, 99, 100])], title="t"))  # extra values ignored
    (rect,) = marks(root)
    assert f(rect, "width") <= 48 and f(rect, "height") > 0
    root = parse(bars(["a", "b", "c"], [("s", [-3, math.nan, 4])], title="t"))
    assert [title_of(r) for r in marks(root)] == ["a · s：0", "c · s：4"]
    root = parse(lines(["a", "b", "c"], [("s", [2])], title="t"))  # short series: padded
    assert len(marks(root, "circle")) == 1
    assert not marks(root, "path")  # a lone point has no line


def test_lines_points_gaps_limits_and_legend() -> None:
    cats = [f"11-{d:02d}" for d in range(1, 6)]
    root = parse(
        lines(
            cats,
            [("发送", [10, 20, None, 40, 50]), ("通过", [1, 2, 3, 4, 5])],
            title="t",
            unit="条",
            limits=[("日上限", [60] * 5)],
        )
    )
    circles = marks(root, "circle")
    assert len(circles) == 9
    assert "11-02 · 发送：20条" in [title_of(c) for c in circles]
    ys = {title_of(c): f(c, "cy") for c in circles}
    # y distances from the baseline are proportional to values
    y10, y20, y40 = ys["11-01 · 发送：10条"], ys["11-02 · 发送：20条"], ys["11-04 · 发送：40条"]
    assert (y10 - y20) * 2 == pytest.approx(y20 - y40, abs=0.2)
    line = next(p for p in marks(root, "path") if title_of(p) == "发送")
    assert line.get("d", "").count("M") == 2  # the missing value breaks the line
    (limit,) = [p for p in root.iter(NS + "path") if p.get("class") == "limit"]
    assert limit.get("stroke-dasharray") and limit.get("stroke") == _svg.LIMIT_COLOUR
    assert title_of(limit) == "日上限：60条"
    assert {"发送", "通过", "日上限", "单位：条"} <= set(texts(root))
    assert "60" in texts(root)  # the axis covers the cap


def test_percent_lines_show_percent_ticks_and_tooltips() -> None:
    root = parse(lines(["w1", "w2"], [("回复率", [0.425, 1.0])], title="t", percent=True))
    assert [title_of(c) for c in marks(root, "circle")] == [
        "w1 · 回复率：42.5%",
        "w2 · 回复率：100%",
    ]
    assert {"0%", "20%", "40%", "60%", "80%", "100%"} <= set(texts(root))


def test_heatmap_one_cell_per_value_missing_cells_grey() -> None:
    hours = [str(h) for h in range(24)]
    values: list[list[float | None]] = [[float(h) for h in hours], [None] * 12 + [0.0] * 12]
    root = parse(heatmap(["群A", "群B"], hours, values, title="t"))
    cells = marks(root)
    assert len(cells) == 48
    missing = [c for c in cells if "na" in c.get("class", "").split()]
    assert len(missing) == 12
    assert {c.get("fill") for c in missing} == {"#e5e7eb"}
    assert title_of(missing[0]) == "群B · 0：无数据"
    fills = {title_of(c): c.get("fill") for c in cells}
    assert fills["群A · 23：23"] == "#0e7490"
    assert fills["群A · 0：0"] == fills["群B · 12：0"] == "#ffffff"
    assert fills["群A · 10：10"] not in ("#ffffff", "#0e7490")
    assert len({c.get("width") for c in cells}) == 1
    # 24 narrow columns: no values printed in the cells, tooltips only
    assert "23" in texts(root) and "群A" in texts(root)
    # column labels plus both ends of the colour scale, nothing per cell
    assert sum(1 for t in texts(root) if t.isdigit()) == 24 + 2


def test_heatmap_retention_prints_percent_values_in_large_cells() -> None:
    weeks = [f"第{w}周" for w in range(4)]
    root = parse(
        heatmap(
            ["11-01", "11-08"],
            weeks,
            [[1.0, 0.5, 0.25, 0.125], [1.0, 0.4]],
            title="留存",
            percent=True,
        )
    )
    cells = marks(root)
    assert len(cells) == 8
    seen = texts(root)
    for v in ["100%", "50%", "25%", "12.5%", "40%"]:
        assert v in seen
    assert title_of(cells[-1]) == "11-08 · 第3周：无数据"


def test_heatmap_long_row_label_is_truncated_with_full_title() -> None:
    name = "一个名字非常非常非常非常非常长的群聊 & <朋友们>"
    root = parse(heatmap([name], ["0", "1"], [[1, 2]], title="t"))
    (label,) = [t for t in root.iter(NS + "text") if t.find(NS + "title") is not None]
    assert title_of(label) == name
    short = shown(label)
    assert short.endswith("…") and name.startswith(short[:-1]) and len(short) > 4


def test_heatmap_fifty_rows_stays_reasonably_small() -> None:
    hours = [str(h) for h in range(24)]
    svg = heatmap(
        [f"群{i}" for i in range(50)],
        hours,
        [[float(i * h % 37) for h in range(24)] for i in range(50)],
        title="t",
    )
    assert len(marks(parse(svg))) == 1200
    assert len(svg) < 200_000


def test_funnel_widths_relative_to_first_step_with_percents() -> None:
    root = parse(
        funnel([("添加好友", 1000), ("首次对话", 620), ("下单", 0), ("复购", 5)], title="转化")
    )
    rects = marks(root)
    assert len(rects) == 4
    w = [f(r, "width") for r in rects]
    assert w[1] == pytest.approx(w[0] * 0.62, abs=0.2)
    assert w[2] == 0
    seen = texts(root)
    assert "1,000 · 占首步 100%" in seen
    assert "620 · 占首步 62% · 较上步 62%" in seen
    assert "0 · 占首步 0% · 较上步 0%" in seen
    assert "5 · 占首步 0.5% · 较上步 —" in seen  # no percent of a zero step
    assert title_of(rects[1]) == "首次对话：620 · 占首步 62% · 较上步 62%"


def test_donut_slices_and_legend() -> None:
    root = parse(donut([("扫码", 60), ("搜索", 30), ("名片", 0), ("群聊", 10)], title="渠道"))
    slices = marks(root, "path")
    assert [title_of(p) for p in slices] == [
        "扫码：60（60%）",
        "搜索：30（30%）",
        "群聊：10（10%）",
    ]
    assert len({p.get("fill") for p in slices}) == 3
    seen = texts(root)
    assert {"60 · 60%", "0 · 0%", "10 · 10%", "100", "名片"} <= set(seen)
    assert " 0 1 1 " in (slices[0].get("d") or "")  # 60% needs the large-arc flag
    assert " 0 0 1 " in (slices[1].get("d") or "")


def test_donut_single_part_is_a_full_ring() -> None:
    (ring,) = marks(parse(donut([("唯一", 7)], title="t")), "path")
    assert ring.get("fill-rule") == "evenodd"
    assert (ring.get("d") or "").count("A") == 4


@pytest.mark.parametrize(
    "top", [0.003, 0.35, 0.95, 1, 2, 3, 7, 10, 11, 49, 51, 99, 101, 999, 1234, 15000, 73_000, 2.5e6]
)
def test_nice_ticks(top: float) -> None:
    ticks = _svg.nice_ticks(top)
    assert 4 <= len(ticks) <= 6
    assert ticks[0] == 0 and ticks[-1] >= top
    step = ticks[1]
    assert all(b - a == pytest.approx(step) for a, b in itertools.pairwise(ticks))
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 6) in (1, 2, 5)
    assert ticks[-2] < top or len(ticks) == 4  # no wasted tick above the data


def test_number_formatting() -> None:
    assert _svg.fmt(1234) == "1,234"
    assert _svg.fmt(3.0, "人") == "3人"
    assert _svg.fmt(2.5) == "2.5"
    assert _svg.fmt(1 / 3) == "0.33"
    assert _svg.fmt(0.4251, percent=True) == "42.5%"
    assert _svg.fmt(1, percent=True) == "100%"
    assert _svg.fmt_tick(0.30000000000000004, percent=True) == "30%"
    assert _svg.fmt_tick(15000) == "1.5万" and _svg.fmt_tick(5000) == "5,000"
    assert _svg.num(12.34) == "12.3" and _svg.num(7.0) == "7" and _svg.num(-0.01) == "0"


def _label_spans(root: ET.Element) -> list[tuple[float, float]]:
    spans = []
    for t in root.iter(NS + "text"):
        if t.get("text-anchor") == "middle" and t.get("class") == "ax":
            w = _svg.text_width(shown(t))
            spans.append((f(t, "x") - w / 2, f(t, "x") + w / 2))
    return sorted(spans)


@pytest.mark.parametrize(
    "cats", [[f"11-{d:02d}" for d in range(1, 32)], [f"{h}时" for h in range(24)]]
)
def test_many_category_labels_are_thinned_and_do_not_overlap(cats: list[str]) -> None:
    root = parse(bars(cats, [("s", list(range(1, len(cats) + 1)))], title="t"))
    spans = _label_spans(root)
    assert 4 <= len(spans) <= len(cats)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    assert cats[0] in texts(root)


def test_long_labels_rotate_and_stay_inside_the_chart() -> None:
    cats = [f"第{i}个很长很长的分类标签" for i in range(20)]
    root = parse(bars(cats, [("s", [1.0] * 20)], title="t"))
    rotated = [t for t in root.iter(NS + "text") if "rotate(-45" in t.get("transform", "")]
    assert rotated
    for t in rotated:  # rotated labels end at their anchor and run left and down
        assert f(t, "x") - _svg.text_width(shown(t)) * 0.71 >= 0


def test_several_charts_share_a_page() -> None:
    page = (
        "<div>"
        + "".join(
            [
                bars(["a"], [("s", [1])], title="一"),
                lines(["a", "b"], [("s", [1, 2])], title="二"),
                heatmap(["r"], ["c"], [[1]], title="三"),
                funnel([("a", 2), ("b", 1)], title="四"),
                donut([("a", 1), ("b", 1)], title="五"),
                bars([], [], title="六"),
            ]
        )
        + "</div>"
    )
    doc = ET.fromstring(page)
    assert len(doc.findall(NS + "svg")) == 6
    assert " id=" not in page
