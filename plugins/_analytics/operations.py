"""Tables about the account's operations: group activity by hour and per room, outbound
volume against the governor's caps, campaign results, and customers' keywords."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from . import keywords
from .facts import CONVERSION_WINDOW, DAY, Facts, day_label, is_true
from .tables import Column, Table, rate

REPLY_WINDOW = DAY
OPTOUT_WINDOW = DAY
TOP_KEYWORDS = 50
KEYWORD_MIN_COUNT = 2  # a word said once is more likely a name or a typo than a topic
HOURS = tuple(range(24))


def group_heatmap(facts: Facts) -> Table:
    activity, names = facts.activity, facts.names
    rooms = sorted(activity.room_messages, key=lambda r: (-activity.room_messages[r], r))
    rows = []
    for room_id in rooms:
        row: dict[str, Any] = {"room_id": room_id, "room": names.room(room_id)}
        row.update({f"h{h:02d}": activity.heat[room_id, h] for h in HOURS})
        row["total"] = activity.room_messages[room_id]
        rows.append(row)
    columns = [Column("room_id", "群id", "text"), Column("room", "群", "text")]
    columns += [Column(f"h{h:02d}", f"{h}时") for h in HOURS]
    columns.append(Column("total", "合计"))
    return Table("group_heatmap", "群活跃时段（消息数，群 × 小时）", tuple(columns), rows)


def room_activity(facts: Facts) -> Table:
    source, scope, names, activity = facts.source, facts.scope, facts.names, facts.activity
    joins: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for e in source.scan(("groups.join", "groups.leave"), scope.start, scope.end):
        if scope.room_ok(e.room_id):
            (joins if e.kind == "groups.join" else leaves)[e.room_id] += 1
    room_ids = sorted(
        set(activity.room_messages) | set(joins) | set(leaves),
        key=lambda r: (-activity.room_messages[r], r),
    )
    sizes = source.room_sizes(scope.end)
    rows = []
    for room_id in room_ids:
        members = sizes.get(room_id)
        speakers = len(activity.room_speakers.get(room_id, ()))
        rows.append(
            {
                "room_id": room_id,
                "room": names.room(room_id),
                "members": members,
                "speakers": speakers,
                "active_ratio": rate(speakers, members) if members else None,
                "messages": activity.room_messages[room_id],
                "joins": joins[room_id],
                "leaves": leaves[room_id],
            }
        )
    return Table(
        "room_activity",
        "各群活跃率",
        (
            Column("room_id", "群id", "text"),
            Column("room", "群", "text"),
            Column("members", "群人数（期末）"),
            Column("speakers", "发言人数"),
            Column("active_ratio", "活跃率", "pct"),
            Column("messages", "消息数"),
            Column("joins", "进群"),
            Column("leaves", "退群"),
        ),
        rows,
        note="活跃率 = 本期发过言的人数 ÷ 期末群人数（群人数来自进退群和每小时汇总记录）。",
    )


OUT_KINDS = (
    ("send", "发消息"),
    ("broadcast", "群发/批量"),
    ("accept_friend", "通过好友"),
    ("add_friend", "加好友"),
    ("invite", "拉人进群"),
    ("kick", "移出群"),
    ("post", "发朋友圈"),
)


def outbound(facts: Facts, caps: Mapping[str, int]) -> Table:
    source, scope = facts.source, facts.scope
    have = {
        (day, kind): n
        for day, kind, n in source.counts(scope.since.isoformat(), scope.until.isoformat())
    }
    labels = dict(OUT_KINDS)
    rows = []
    for day in scope.days:
        for kind, _ in OUT_KINDS:
            n = have.get((day.isoformat(), kind), 0)
            cap = caps.get(kind)
            rows.append(
                {
                    "day": day_label(day),
                    "kind": kind,
                    "kind_name": labels[kind],
                    "n": n,
                    "cap": cap,
                    "share": rate(n, cap) if cap else None,
                }
            )
    return Table(
        "outbound",
        "每日外发量与上限",
        (
            Column("day", "日期", "text"),
            Column("kind", "动作", "text"),
            Column("kind_name", "动作名", "text"),
            Column("n", "次数"),
            Column("cap", "每日上限"),
            Column("share", "占上限", "pct"),
        ),
        rows,
        note="次数来自发送总闸的计数（和限额用的是同一个数）；上限是当前配置。",
    )


def _campaign_label(job: str, meta: Mapping[str, Any]) -> tuple[str, str]:
    if meta.get("campaign"):
        return "群发", str(meta.get("title") or meta["campaign"])
    if meta.get("plugin") == "calendar":
        return "内容日历", f"{meta.get('post_id', job)} {str(meta.get('at', ''))[:10]}".strip()
    if meta.get("kind") == "followup":
        parts = job.split(".")
        if len(parts) >= 6:
            return "跟进", f"{parts[2]} 第{parts[-2].lstrip('s')}步"
        return "跟进", job
    return str(meta.get("plugin") or "批量"), job


def campaigns(facts: Facts) -> Table:
    source, scope, activity, conversions = (
        facts.source,
        facts.scope,
        facts.activity,
        facts.conversions,
    )
    start, end = scope.start.timestamp(), scope.end.timestamp()
    jobs = {
        job: (at, meta)
        for job, at, meta in source.bulk_jobs(start, end)
        if meta.get("kind") != "add_friend"
    }
    optouts: dict[str, list[float]] = defaultdict(list)
    for e in source.scan(("contact.opt_out",), scope.start, scope.end, fields=("new",)):
        if is_true(e.values[0]):
            optouts[e.contact_id].append(e.ts.timestamp())
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for job, to, status, at in source.bulk_rows(jobs):
        if not facts.contact_ok(to):
            continue
        created, meta = jobs[job]
        kind, name = _campaign_label(job, meta)
        g = groups.setdefault(
            (kind, name),
            {"type": kind, "name": name, "first": created, **dict.fromkeys(CAMPAIGN_COUNTS, 0)},
        )
        g["first"] = min(g["first"], created)
        g["recipients"] += 1
        if status in ("sent", "failed", "skipped", "unknown"):
            g[status] += 1
        if status != "sent":
            continue
        g["replied"] += activity.any_between(
            activity.private_times.get(to), at, min(at + REPLY_WINDOW, end)
        )
        g["opted_out"] += any(at <= t <= at + OPTOUT_WINDOW for t in optouts.get(to, ()))
        g["converted"] += any(
            at <= c.ts <= min(at + CONVERSION_WINDOW, end) for c in conversions.get(to, ())
        )
    rows = []
    for g in sorted(groups.values(), key=lambda g: (g["first"], g["name"])):
        g["started"] = facts.day(g.pop("first")).isoformat()
        g["reply_rate"] = rate(g["replied"], g["sent"])
        g["optout_rate"] = rate(g["opted_out"], g["sent"])
        g["conversion_rate"] = rate(g["converted"], g["sent"])
        rows.append(g)
    return Table(
        "campaigns",
        "群发、内容日历与跟进的效果",
        (
            Column("type", "类型", "text"),
            Column("name", "名称", "text"),
            Column("started", "开始日期", "text"),
            Column("recipients", "对象人数"),
            Column("sent", "已发送"),
            Column("failed", "失败"),
            Column("skipped", "跳过"),
            Column("unknown", "状态不明"),
            Column("replied", "24小时内回复"),
            Column("reply_rate", "回复率", "pct"),
            Column("opted_out", "24小时内退订"),
            Column("optout_rate", "退订率", "pct"),
            Column("converted", "7天内成交"),
            Column("conversion_rate", "成交率", "pct"),
        ),
        rows,
        note="比例的分母是已发送人数。",
    )


CAMPAIGN_COUNTS = (
    "recipients",
    "sent",
    "failed",
    "skipped",
    "unknown",
    "replied",
    "opted_out",
    "converted",
)


def top_keywords(facts: Facts) -> Table:
    source, scope = facts.source, facts.scope
    rows: list[dict[str, Any]] = []
    if source.has(source.keywords):
        top = keywords.top_words(
            source.engine,
            source.keywords,
            scope.since.isoformat(),
            (scope.until + timedelta(days=1)).isoformat(),
            room_ids=scope.rooms or None,
            channels=scope.channels or None,
            scope="rooms" if scope.rooms else "all",
            limit=TOP_KEYWORDS,
            min_count=KEYWORD_MIN_COUNT,
        )
        rows = [{"rank": i, "word": w, "n": n} for i, (w, n) in enumerate(top, start=1)]
    return Table(
        "keywords",
        "客户消息热词",
        (Column("rank", "排名"), Column("word", "词", "text"), Column("n", "出现在几条消息里")),
        rows,
        note="分词后去掉停用词、数字和单字；只保存每天的词频，不保存消息原文。",
    )
