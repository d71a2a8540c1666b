"""Tables about customers: new friends by channel, the channel funnel, activity and weekly
retention, conversions and repurchase, opt-outs and churn."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, timedelta
from typing import Any

from .facts import ACTIVE_AFTER_ADD, CONVERSION_SOURCES, DAY, Facts, day_label, is_true
from .tables import Column, Table, rate

AUTO_TAG_PREFIX = "friends:"


def new_friends(facts: Facts) -> Table:
    counts: Counter[tuple[date, str]] = Counter()
    for ts, channel in facts.added.values():
        counts[facts.day(ts), channel] += 1
    names = facts.names
    rows = [
        {
            "day": day_label(day),
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


def funnel(facts: Facts) -> Table:
    source, scope, added = facts.source, facts.scope, facts.added
    activity, conversions, names = facts.activity, facts.conversions, facts.names
    tagged = source.tagged_contacts(AUTO_TAG_PREFIX) if added else set()
    joins: dict[str, list[float]] = defaultdict(list)
    if added:
        for e in source.scan(("groups.join",), scope.start, scope.end):
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


def retention(facts: Facts) -> Table:
    scope, activity = facts.scope, facts.activity
    end = scope.end.timestamp()
    cohorts: dict[date, list[tuple[str, float]]] = defaultdict(list)
    for cid, (at, _) in facts.added.items():
        cohorts[_week_start(facts.day(at))].append((cid, at))
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


def daily_active(facts: Facts) -> Table:
    per_day = facts.activity.per_day
    rows = [
        {
            "day": day_label(day),
            "active": sum(1 for cid in per_day.get(day, ()) if facts.contact_ok(cid)),
        }
        for day in facts.scope.days
    ]
    return Table(
        "daily_active",
        "每日活跃客户",
        (Column("day", "日期", "text"), Column("active", "发过消息的客户")),
        rows,
    )


def conversions(facts: Facts) -> Table:
    scope = facts.scope
    start, end = scope.start.timestamp(), scope.end.timestamp()
    per_day: dict[date, Counter[str]] = defaultdict(Counter)
    amounts: dict[date, float] = defaultdict(float)
    contacts: dict[date, set[str]] = defaultdict(set)
    for cid, items in facts.conversions.items():
        if not facts.contact_ok(cid):
            continue
        first_day = facts.day(items[0].ts)  # items are sorted by time
        for c in items:
            if not start <= c.ts < end:
                continue
            day = facts.day(c.ts)
            per_day[day][c.source] += 1
            amounts[day] += c.amount
            contacts[day].add(cid)
            if day > first_day:
                per_day[day]["repeat"] += 1
    rows = []
    for day in scope.days:
        counts = per_day.get(day, Counter())
        row: dict[str, Any] = {"day": day_label(day), "contacts": len(contacts.get(day, ()))}
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


def optouts_churn(facts: Facts) -> Table:
    scope = facts.scope
    kinds = ("contact.opt_out", "contact.opt_in", "friends.churned")
    counts: dict[date, Counter[str]] = defaultdict(Counter)
    events = facts.source.scan(kinds, scope.start, scope.end, fields=("new", "cleared"))
    for e in events:
        if not facts.contact_ok(e.contact_id):
            continue
        day = scope.local_day(e.ts)
        if e.kind == "contact.opt_out" and is_true(e.values[0]):
            counts[day]["optouts"] += 1
        elif e.kind == "contact.opt_in" and is_true(e.values[1]):
            counts[day]["optins"] += 1
        elif e.kind == "friends.churned":
            counts[day]["churned"] += 1
    rows = [
        {
            "day": day_label(day),
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
