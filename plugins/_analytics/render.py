"""The report on disk: one self-contained HTML file (inline SVG charts and CSS, no script,
no fonts or libraries from the network, so it opens offline and can be mailed) and one CSV
file per table under csv/."""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from . import charts
from .metrics import CONVERSION_SOURCES, FUNNEL_STEPS, OUT_KINDS, Report
from .tables import Column, Table, cell_text, write_csv

MAX_HEATMAP_ROOMS = 30
MAX_CHART_CAMPAIGNS = 15
KEYWORDS_CHARTED = 20
MAX_HTML_ROWS = 400
SOURCE_NAMES = {"purchase": "管理员记录", "keyword": "下单关键词", "orders": "导入订单"}

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["cell"] = cell_text


@dataclass(frozen=True)
class Written:
    html: Path
    csv: list[Path]


def _series(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [float(r.get(key) or 0) for r in rows]


def _new_friends_charts(report: Report) -> list[str]:
    table = report.tables["new_friends"]
    days = [d.isoformat() for d in report.scope.days]
    per_channel: dict[str, dict[str, float]] = defaultdict(dict)
    for row in table.rows:
        per_channel[row["channel_name"]][row["day"]] = row["n"]
    series = [
        (name, [by_day.get(d, 0) for d in days]) for name, by_day in sorted(per_channel.items())
    ]
    share = [(name, sum(values)) for name, values in series]
    return [
        charts.bars([d[5:] for d in days], series, title="每日新增好友（按渠道）", stacked=True),
        charts.donut(share, title="新增好友渠道占比"),
    ]


def _funnel_charts(report: Report) -> list[str]:
    rows = report.tables["funnel"].rows
    total = rows[-1] if rows else {}
    steps = [100 * float(total.get(f"{key}_rate") or 0) for key, _ in FUNNEL_STEPS[1:]]
    channels = rows[:-1]
    rates = [
        (label, [100 * float(r.get(f"{key}_rate") or 0) for r in channels])
        for key, label in FUNNEL_STEPS[1:]
    ]
    return [
        # Steps are counted independently (a customer may buy without joining a group), so
        # bars of "share of new friends" rather than a funnel's "share of previous step".
        charts.bars(
            [label for _, label in FUNNEL_STEPS[1:]],
            [("占新增好友", steps)],
            title=f"转化漏斗（新增好友 {int(total.get('added') or 0)} 人）",
            horizontal=True,
            unit="%",
        ),
        charts.bars([r["channel_name"] for r in channels], rates, title="各渠道各步占比", unit="%"),
    ]


def _activity_charts(report: Report) -> list[str]:
    active = report.tables["daily_active"].rows
    retention = report.tables["retention"]
    weeks = [c for c in retention.columns if c.kind == "pct"]
    return [
        charts.lines(
            [r["day"][5:] for r in active],
            [("活跃客户", _series(active, "active"))],
            title="每日活跃客户",
        ),
        charts.heatmap(
            [f"{r['cohort']}（{r['size']}人）" for r in retention.rows],
            [c.label for c in weeks],
            [[r.get(c.key) for c in weeks] for r in retention.rows],
            title="每周留存",
            percent=True,
        ),
    ]


def _group_charts(report: Report) -> list[str]:
    heat = report.tables["group_heatmap"].rows[:MAX_HEATMAP_ROOMS]
    rooms = report.tables["room_activity"].rows
    with_ratio = [r for r in rooms if r["active_ratio"] is not None][:MAX_HEATMAP_ROOMS]
    return [
        charts.heatmap(
            [r["room"] for r in heat],
            [f"{h}" for h in range(24)],
            [[float(r[f"h{h:02d}"]) for h in range(24)] for r in heat],
            title="群活跃时段（消息数）",
            unit="条",
        ),
        charts.bars(
            [r["room"] for r in with_ratio],
            [("活跃率", [100 * float(r["active_ratio"]) for r in with_ratio])],
            title="各群活跃率",
            horizontal=True,
            unit="%",
        ),
    ]


def _keyword_chart(report: Report) -> list[str]:
    rows = report.tables["keywords"].rows[:KEYWORDS_CHARTED]
    return [
        charts.bars(
            [r["word"] for r in rows],
            [("消息数", _series(rows, "n"))],
            title=f"热词前 {KEYWORDS_CHARTED}",
            horizontal=True,
        )
    ]


def _conversion_charts(report: Report) -> list[str]:
    rows = report.tables["conversions"].rows
    series = [
        (SOURCE_NAMES[s], _series(rows, s))
        for s in CONVERSION_SOURCES
        if s in report.conversion_sources
    ]
    return [
        charts.bars([r["day"][5:] for r in rows], series, title="每日成交（按来源）", stacked=True)
    ]


def _campaign_charts(report: Report) -> list[str]:
    rows = report.tables["campaigns"].rows[-MAX_CHART_CAMPAIGNS:]
    rates = [
        (label, [100 * float(r.get(key) or 0) for r in rows])
        for key, label in (
            ("reply_rate", "回复率"),
            ("optout_rate", "退订率"),
            ("conversion_rate", "成交率"),
        )
    ]
    return [
        charts.bars(
            [f"{r['type']}·{r['name']}" for r in rows],
            rates,
            title="群发与跟进效果",
            horizontal=True,
            unit="%",
        )
    ]


def _care_charts(report: Report) -> list[str]:
    rows = report.tables["optouts_churn"].rows
    out = report.tables["outbound"].rows
    days = [d.isoformat() for d in report.scope.days]
    shares: list[tuple[str, list[float]]] = []
    for kind, label in OUT_KINDS:
        by_day = {r["day"]: r for r in out if r["kind"] == kind}
        if any(by_day[d]["n"] for d in days if d in by_day):
            shares.append((label, [float(by_day[d]["share"] or 0) for d in days]))
    return [
        charts.bars(
            [r["day"][5:] for r in rows],
            [
                ("退订", _series(rows, "optouts")),
                ("删除好友", _series(rows, "churned")),
                ("恢复订阅", _series(rows, "optins")),
            ],
            title="退订与流失",
        ),
        charts.lines(
            [d[5:] for d in days],
            shares,
            title="外发量占每日上限",
            percent=True,
            limits=[("上限", [1.0] * len(days))],
        ),
    ]


def _referral_charts(report: Report) -> list[str]:
    rows = report.tables["referrals"].rows
    return [
        charts.bars(
            [r["day"][5:] for r in rows],
            [
                ("有效", _series(rows, "valid")),
                ("其他", [float(r["invites"] - r["valid"]) for r in rows]),
            ],
            title="每日邀请（有效 / 其他）",
            stacked=True,
        )
    ]


SECTIONS = (
    ("friends", "新增好友", ("new_friends",), _new_friends_charts),
    ("funnel", "渠道转化漏斗", ("funnel",), _funnel_charts),
    ("activity", "活跃与留存", ("daily_active", "retention"), _activity_charts),
    ("groups", "社群活跃", ("room_activity", "group_heatmap"), _group_charts),
    ("keywords", "客户在问什么", ("keywords",), _keyword_chart),
    ("sales", "成交与复购", ("conversions",), _conversion_charts),
    ("campaigns", "群发与跟进", ("campaigns",), _campaign_charts),
    ("care", "退订、流失与账号安全", ("optouts_churn", "outbound"), _care_charts),
    # referral_top (ids and nicknames) is written to the CSV only.
    ("referrals", "裂变", ("referrals_summary", "referrals"), _referral_charts),
)


def render_html(report: Report) -> str:
    sections = []
    if report.has_data:
        for anchor, title, names, make in SECTIONS:
            if anchor == "referrals" and not report.tables["referrals"].rows:
                continue  # no referral plugin, or no invites yet: no empty section
            tables: list[Table] = [report.tables[n] for n in names]
            sections.append(
                {
                    "anchor": anchor,
                    "title": title,
                    "charts": [Markup(svg) for svg in make(report)],
                    "tables": tables,
                }
            )
    scope = report.scope
    filters = []
    if scope.rooms:
        filters.append("群：" + "、".join(report.names.room(r) for r in sorted(scope.rooms)))
    if scope.channels:
        filters.append(
            "渠道：" + "、".join(report.names.channel(c) for c in sorted(scope.channels))
        )
    return _env.get_template("report.html.j2").render(
        report=report,
        scope=scope,
        headline=report.headline,
        sections=sections,
        filters=filters,
        sources=[SOURCE_NAMES[s] for s in report.conversion_sources],
        headline_items=HEADLINE,
        max_rows=MAX_HTML_ROWS,
        generated=report.generated_at.astimezone(scope.tz).strftime("%Y-%m-%d %H:%M"),
    )


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file owner-only; a report is meant to be shared like the CSVs.
        # (Not os.umask: the bot builds reports in a thread, and umask is process-wide.)
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(report: Report, folder: Path) -> Written:
    folder.mkdir(parents=True, exist_ok=True)
    csv_dir = folder / "csv"
    csv_dir.mkdir(exist_ok=True)
    files = [write_csv(table, csv_dir) for table in report.tables.values()]
    files.append(write_csv(headline_table(report), csv_dir))
    html = folder / "report.html"
    _atomic_write(html, render_html(report))
    return Written(html, files)


HEADLINE = (
    ("new_friends", "新增好友", "int"),
    ("churned", "删除好友（流失）", "int"),
    ("optouts", "退订", "int"),
    ("friends", "好友总数（现在）", "int"),
    ("active_contacts", "活跃客户", "int"),
    ("active_ratio", "活跃占比", "pct"),
    ("inbound_private", "私聊消息", "int"),
    ("inbound_rooms", "群消息", "int"),
    ("converted", "成交客户", "int"),
    ("conversion_rate", "新好友成交率", "pct"),
    ("repurchase_rate", "复购率", "pct"),
    ("revenue", "订单金额", "money"),
    ("sent", "发出消息", "int"),
)


def headline_table(report: Report) -> Table:
    return Table(
        "summary",
        "核心指标",
        (Column("metric", "指标", "text"), Column("value", "数值", "text")),
        [
            {"metric": label, "value": cell_text(report.headline.get(key), kind)}
            for key, label, kind in HEADLINE
        ],
    )
