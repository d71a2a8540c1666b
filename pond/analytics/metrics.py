"""The numbers: every table of the report, computed from a Source for a Scope.

Definitions (also shown in the report, so operators and tests agree on them):
- New friend: a `friends.accepted` (request accepted) or `friends.add_accepted` (our add
  request accepted) event; a contact counts once, on their first such day in the range.
  Channel: the contact's first-touch channel in the customer book, else the event's.
- Funnel (contacts added in the range): tagged = has a tag not given automatically on
  adding (source not `friends:*`); joined a group = a `groups.join` after being added;
  active in 7 days = an inbound message within 7 days after being added; converted = a
  conversion after being added. Everything is counted up to the end of the range.
- Active contact: sent at least one message (private or in a room) in the range.
- Retention: contacts added in week W (Monday first) who sent a message in week k after
  their own add day (days 7k..7k+6); only contacts whose week k has begun are counted.
- Conversion: one of the configured sources (operator's 成交, an order keyword in a
  customer's message, an imported order). Repurchase rate: of the contacts who converted in
  the range, those who have converted on two or more days (earlier days count too).
- Campaign reactions: a private reply within 24 h after the contact's own message went
  out, an opt-out within 24 h, a conversion within 7 days.
Operators' own chats are left out everywhere."""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from . import keywords
from .data import NEW_FRIEND_KINDS, Source
from .scope import Scope
from .tables import Column, Table, rate

DAY = 86400.0
REPLY_WINDOW = DAY
OPTOUT_WINDOW = DAY
CONVERSION_WINDOW = 7 * DAY
ACTIVE_AFTER_ADD = 7 * DAY
AUTO_TAG_PREFIX = "friends:"
CONVERSION_SOURCES = ("purchase", "keyword", "orders")
CONVERSION_KINDS = {"purchase": "friends.purchase", "keyword": "analytics.order_keyword"}
UNKNOWN_CHANNEL = ""
TOP_KEYWORDS = 50
KEYWORD_MIN_COUNT = 2  # a word said once is more likely a name or a typo than a topic
HOURS = tuple(range(24))


@dataclass(frozen=True, slots=True)
class Names:
    rooms: Mapping[str, str] = field(default_factory=dict)
    channels: Mapping[str, str] = field(default_factory=dict)

    def room(self, room_id: str) -> str:
        return self.rooms.get(room_id) or room_id

    def channel(self, code: str) -> str:
        if not code:
            return "未标注渠道"
        return self.channels.get(code) or code


@dataclass
class Report:
    scope: Scope
    names: Names
    generated_at: datetime
    headline: dict[str, Any]
    tables: dict[str, Table]
    conversion_sources: tuple[str, ...]
    has_data: bool


@dataclass(frozen=True, slots=True)
class Conversion:
    contact_id: str
    ts: float
    source: str
    amount: float


def _true(value: str) -> bool:
    return value.lower() in ("1", "true")


class _Activity:
    """Inbound messages of the range, grouped the ways the metrics read them. With a channel
    filter only that channel's contacts count, in rooms too; with a room filter only those
    rooms' messages count as room messages."""

    def __init__(self, source: Source, scope: Scope, channels: Mapping[str, str]) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)  # contact -> message times
        self.private_times: dict[str, list[float]] = defaultdict(list)
        self.per_day: dict[date, set[str]] = defaultdict(set)
        self.heat: Counter[tuple[str, int]] = Counter()
        self.room_messages: Counter[str] = Counter()
        self.room_speakers: dict[str, set[str]] = defaultdict(set)
        self.private_messages = 0
        self.room_total = 0
        tz = scope.tz
        for e in source.events_of(("in.message",), scope.start, scope.end):
            cid = e.contact_id
            if not cid or cid in scope.operators:
                continue
            if scope.channels and not scope.channel_ok(channels.get(cid) or UNKNOWN_CHANNEL):
                continue
            ts = e.ts.timestamp()
            local = e.ts.astimezone(tz)
            self.times[cid].append(ts)
            self.per_day[local.date()].add(cid)
            if e.room_id:
                if scope.room_ok(e.room_id):
                    self.room_total += 1
                    self.heat[e.room_id, local.hour] += 1
                    self.room_messages[e.room_id] += 1
                    self.room_speakers[e.room_id].add(cid)
            else:
                self.private_messages += 1
                self.private_times[cid].append(ts)
        for bucket in (self.times, self.private_times):
            for values in bucket.values():
                values.sort()

    @staticmethod
    def any_between(times: list[float] | None, start: float, end: float) -> bool:
        """Is there a time in (start, end]?"""
        if not times:
            return False
        i = bisect.bisect_right(times, start)
        return i < len(times) and times[i] <= end


def _conversions(
    source: Source, scope: Scope, sources: Iterable[str]
) -> dict[str, list[Conversion]]:
    """Every conversion up to the end of the range (earlier ones make a repurchase)."""
    found: dict[str, list[Conversion]] = defaultdict(list)
    wanted = [s for s in sources if s in CONVERSION_KINDS]
    kinds = {CONVERSION_KINDS[s]: s for s in wanted}
    if kinds:
        for e in source.events_of(tuple(kinds), None, scope.end, fields=("amount",)):
            if e.contact_id and e.contact_id not in scope.operators:
                amount = float(e.values[0]) if e.values[0] else 0.0
                found[e.contact_id].append(
                    Conversion(e.contact_id, e.ts.timestamp(), kinds[e.kind], amount)
                )
    if "orders" in sources:
        for cid, at, amount, _ in source.orders_between(scope.end):
            found[cid].append(Conversion(cid, at.timestamp(), "orders", amount))
    for items in found.values():
        items.sort(key=lambda c: c.ts)
    return found


def _new_friends(
    source: Source, scope: Scope, channels: Mapping[str, str]
) -> dict[str, tuple[float, str]]:
    """contact -> (first add time in range, channel), filtered by channel."""
    added: dict[str, tuple[float, str]] = {}
    events = source.events_of(NEW_FRIEND_KINDS, scope.start, scope.end, fields=("channel",))
    for e in sorted(events, key=lambda e: e.ts):
        cid = e.contact_id
        if not cid or cid in added or cid in scope.operators:
            continue
        channel = channels.get(cid) or e.values[0] or UNKNOWN_CHANNEL
        if scope.channel_ok(channel):
            added[cid] = (e.ts.timestamp(), channel)
    return added


def _distinct_days(scope: Scope, items: Iterable[Conversion]) -> int:
    return len({scope.local_day(datetime.fromtimestamp(c.ts, UTC)) for c in items})


def _day_label(day: date) -> str:
    return day.isoformat()


def compute(
    source: Source,
    scope: Scope,
    names: Names,
    *,
    conversion_sources: Iterable[str] = CONVERSION_SOURCES,
    caps: Mapping[str, int] | None = None,
    now: datetime | None = None,
) -> Report:
    sources = tuple(s for s in conversion_sources if s in CONVERSION_SOURCES)
    channels = source.channels()
    activity = _Activity(source, scope, channels)
    conversions = _conversions(source, scope, sources)
    added = _new_friends(source, scope, channels)
    start, end = scope.start.timestamp(), scope.end.timestamp()

    def channel_of(cid: str) -> str:
        return channels.get(cid) or UNKNOWN_CHANNEL

    def contact_ok(cid: str) -> bool:
        return bool(cid) and cid not in scope.operators and scope.channel_ok(channel_of(cid))

    tables: dict[str, Table] = {}
    tables["new_friends"] = _table_new_friends(scope, names, added)
    tables["funnel"] = _table_funnel(source, scope, names, added, activity, conversions)
    tables["retention"] = _table_retention(scope, added, activity)
    tables["daily_active"] = _table_daily_active(scope, activity, contact_ok)
    tables["group_heatmap"] = _table_heatmap(scope, names, activity)
    tables["room_activity"] = _table_rooms(source, scope, names, activity)
    tables["conversions"] = _table_conversions(scope, conversions, contact_ok)
    tables["optouts_churn"] = _table_optouts(source, scope, contact_ok)
    tables["outbound"] = _table_outbound(source, scope, caps or {})
    tables["campaigns"] = _table_campaigns(source, scope, activity, conversions, contact_ok)
    tables["keywords"] = _table_keywords(source, scope)

    in_range = {
        cid
        for cid, items in conversions.items()
        if contact_ok(cid) and any(start <= c.ts < end for c in items)
    }
    active = {cid for cid in activity.times if contact_ok(cid)}
    friends_now = source.friends_count(scope.channels)
    churn_rows = tables["optouts_churn"].rows
    funnel_total = tables["funnel"].rows[-1] if tables["funnel"].rows else {}
    headline: dict[str, Any] = {
        "new_friends": len(added),
        "churned": sum(r["churned"] for r in churn_rows),
        "optouts": sum(r["optouts"] for r in churn_rows),
        "friends": friends_now,
        "active_contacts": len(active),
        "active_ratio": rate(len(active), friends_now),
        "inbound_private": activity.private_messages,
        "inbound_rooms": activity.room_total,
        "converted": len(in_range),
        "repurchase_rate": rate(
            sum(1 for cid in in_range if _distinct_days(scope, conversions[cid]) >= 2),
            len(in_range),
        ),
        "conversion_rate": funnel_total.get("converted_rate"),
        "revenue": sum(
            c.amount for cid in in_range for c in conversions[cid] if start <= c.ts < end
        ),
        "sent": sum(r["n"] for r in tables["outbound"].rows if r["kind"] == "send"),
    }
    has_data = source.first_event() is not None
    return Report(
        scope=scope,
        names=names,
        generated_at=now or datetime.now(UTC),
        headline=headline,
        tables=tables,
        conversion_sources=sources,
        has_data=has_data,
    )


# -- tables -------------------------------------------------------------------------------


def _table_new_friends(scope: Scope, names: Names, added: Mapping[str, tuple[float, str]]) -> Table:
    counts: Counter[tuple[date, str]] = Counter()
    for ts, channel in added.values():
        counts[scope.local_day(datetime.fromtimestamp(ts, UTC)), channel] += 1
    rows = [
        {
            "day": _day_label(day),
            "channel": channel,
            "channel_name": names.channel(channel),
            "n": n,
        }
        for (day, channel), n in sorted(counts.items())
    ]
    return Table(
        "new_friends",
        "每日新增好友（按渠道）",
        (
            Column("day", "日期", "text"),
            Column("channel", "渠道代码", "text"),
            Column("channel_name", "渠道", "text"),
            Column("n", "新增好友"),
        ),
        rows,
    )


def _table_funnel(
    source: Source,
    scope: Scope,
    names: Names,
    added: Mapping[str, tuple[float, str]],
    activity: _Activity,
    conversions: Mapping[str, list[Conversion]],
) -> Table:
    tagged = source.tagged_contacts(AUTO_TAG_PREFIX) if added else set()
    joins: dict[str, list[float]] = defaultdict(list)
    if added:
        for e in source.events_of(("groups.join",), scope.start, scope.end):
            if e.contact_id in added and scope.room_ok(e.room_id):
                joins[e.contact_id].append(e.ts.timestamp())
    end = scope.end.timestamp()
    steps: dict[str, Counter[str]] = defaultdict(Counter)
    for cid, (at, channel) in added.items():
        step = steps[channel]
        step["added"] += 1
        step["tagged"] += cid in tagged
        step["joined"] += any(t >= at for t in joins.get(cid, ()))
        step["active"] += activity.any_between(
            activity.times.get(cid), at, min(at + ACTIVE_AFTER_ADD, end)
        )
        step["converted"] += any(at <= c.ts < end for c in conversions.get(cid, ()))
    rows = [
        _funnel_row(channel, names.channel(channel), step)
        for channel, step in sorted(steps.items())
    ]
    if rows:
        total: Counter[str] = Counter()
        for step in steps.values():
            total.update(step)
        rows.append(_funnel_row("*", "合计", total))
    columns = [Column("channel", "渠道代码", "text"), Column("channel_name", "渠道", "text")]
    for key, label in FUNNEL_STEPS:
        columns.append(Column(key, label))
        if key != "added":
            columns.append(Column(f"{key}_rate", f"{label}占比", "pct"))
    return Table(
        "funnel",
        "渠道转化漏斗（本期新增好友）",
        tuple(columns),
        rows,
        note="占比 = 该步人数 ÷ 本期新增好友；每一步独立统计，计到本期最后一天。",
    )


FUNNEL_STEPS = (
    ("added", "新增好友"),
    ("tagged", "已打标签"),
    ("joined", "已进群"),
    ("active", "7天内活跃"),
    ("converted", "已成交"),
)


def _funnel_row(channel: str, name: str, step: Counter[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"channel": channel, "channel_name": name}
    for key, _ in FUNNEL_STEPS:
        row[key] = step[key]
        if key != "added":
            row[f"{key}_rate"] = rate(step[key], step["added"])
    return row


def _week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _table_retention(
    scope: Scope, added: Mapping[str, tuple[float, str]], activity: _Activity
) -> Table:
    end = scope.end.timestamp()
    cohorts: dict[date, list[tuple[str, float]]] = defaultdict(list)
    for cid, (at, _) in added.items():
        cohorts[_week_start(scope.local_day(datetime.fromtimestamp(at, UTC)))].append((cid, at))
    weeks = max(1, ((scope.until - scope.since).days + 6) // 7 + 1)
    rows = []
    for week, members in sorted(cohorts.items()):
        row: dict[str, Any] = {"cohort": f"{week.isoformat()} 周", "size": len(members)}
        for k in range(weeks):
            eligible = [(cid, at) for cid, at in members if at + k * 7 * DAY < end]
            kept = sum(
                activity.any_between(
                    activity.times.get(cid),
                    # Week 0 starts at the add itself: any_between excludes its start.
                    at + k * 7 * DAY - (1 if k == 0 else 0),
                    min(at + (k + 1) * 7 * DAY, end),
                )
                for cid, at in eligible
            )
            row[f"w{k}"] = rate(kept, len(eligible))
        rows.append(row)
    columns = [Column("cohort", "加好友周", "text"), Column("size", "人数")]
    columns += [Column(f"w{k}", f"第{k}周", "pct") for k in range(weeks)]
    return Table(
        "retention",
        "每周留存（按加好友的周分组）",
        tuple(columns),
        rows,
        note="第k周 = 加好友后第 7k ~ 7k+6 天内发过消息的比例；时间还没到的格子留空。",
    )


def _table_daily_active(scope: Scope, activity: _Activity, contact_ok: Any) -> Table:
    rows = [
        {
            "day": _day_label(day),
            "active": sum(1 for cid in activity.per_day.get(day, ()) if contact_ok(cid)),
        }
        for day in scope.days
    ]
    return Table(
        "daily_active",
        "每日活跃客户",
        (Column("day", "日期", "text"), Column("active", "发过消息的客户")),
        rows,
    )


def _table_heatmap(scope: Scope, names: Names, activity: _Activity) -> Table:
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


def _table_rooms(source: Source, scope: Scope, names: Names, activity: _Activity) -> Table:
    joins: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for e in source.events_of(("groups.join", "groups.leave"), scope.start, scope.end):
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


def _table_conversions(
    scope: Scope, conversions: Mapping[str, list[Conversion]], contact_ok: Any
) -> Table:
    start, end = scope.start.timestamp(), scope.end.timestamp()
    per_day: dict[date, Counter[str]] = defaultdict(Counter)
    amounts: dict[date, float] = defaultdict(float)
    contacts: dict[date, set[str]] = defaultdict(set)
    for cid, items in conversions.items():
        if not contact_ok(cid):
            continue
        days_before = {scope.local_day(datetime.fromtimestamp(c.ts, UTC)) for c in items}
        for c in items:
            if not start <= c.ts < end:
                continue
            day = scope.local_day(datetime.fromtimestamp(c.ts, UTC))
            per_day[day][c.source] += 1
            amounts[day] += c.amount
            contacts[day].add(cid)
            first_day = min(days_before)
            if day > first_day:
                per_day[day]["repeat"] += 1
    rows = []
    for day in scope.days:
        counts = per_day.get(day, Counter())
        row: dict[str, Any] = {"day": _day_label(day), "contacts": len(contacts.get(day, ()))}
        for s in CONVERSION_SOURCES:
            row[s] = counts[s]
        row["repeat"] = counts["repeat"]
        row["amount"] = float(amounts[day])
        rows.append(row)
    return Table(
        "conversions",
        "每日成交",
        (
            Column("day", "日期", "text"),
            Column("contacts", "成交客户"),
            Column("purchase", "成交（管理员记录）"),
            Column("keyword", "成交（下单关键词）"),
            Column("orders", "成交（导入订单）"),
            Column("repeat", "其中复购"),
            Column("amount", "订单金额", "money"),
        ),
        rows,
        note="复购 = 该客户在更早的日子已经成交过。",
    )


def _table_optouts(source: Source, scope: Scope, contact_ok: Any) -> Table:
    kinds = ("contact.opt_out", "contact.opt_in", "friends.churned")
    counts: dict[date, Counter[str]] = defaultdict(Counter)
    events = source.events_of(kinds, scope.start, scope.end, fields=("new", "cleared"))
    for e in events:
        if not contact_ok(e.contact_id):
            continue
        day = scope.local_day(e.ts)
        if e.kind == "contact.opt_out" and _true(e.values[0]):
            counts[day]["optouts"] += 1
        elif e.kind == "contact.opt_in" and _true(e.values[1]):
            counts[day]["optins"] += 1
        elif e.kind == "friends.churned":
            counts[day]["churned"] += 1
    rows = [
        {
            "day": _day_label(day),
            "optouts": counts[day]["optouts"],
            "optins": counts[day]["optins"],
            "churned": counts[day]["churned"],
        }
        for day in scope.days
    ]
    return Table(
        "optouts_churn",
        "退订与流失",
        (
            Column("day", "日期", "text"),
            Column("optouts", "退订"),
            Column("optins", "恢复订阅"),
            Column("churned", "删除好友（流失）"),
        ),
        rows,
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


def _table_outbound(source: Source, scope: Scope, caps: Mapping[str, int]) -> Table:
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
                    "day": _day_label(day),
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


def _table_campaigns(
    source: Source,
    scope: Scope,
    activity: _Activity,
    conversions: Mapping[str, list[Conversion]],
    contact_ok: Any,
) -> Table:
    start, end = scope.start.timestamp(), scope.end.timestamp()
    jobs = {
        job: (at, meta)
        for job, at, meta in source.bulk_jobs(start, end)
        if meta.get("kind") != "add_friend"
    }
    optouts: dict[str, list[float]] = defaultdict(list)
    for e in source.events_of(("contact.opt_out",), scope.start, scope.end, fields=("new",)):
        if _true(e.values[0]):
            optouts[e.contact_id].append(e.ts.timestamp())
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for job, to, status, at in source.bulk_rows(jobs):
        if not contact_ok(to):
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
        g["started"] = scope.local_day(datetime.fromtimestamp(g.pop("first"), UTC)).isoformat()
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


def _table_keywords(source: Source, scope: Scope) -> Table:
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
