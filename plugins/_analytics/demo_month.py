"""The steps of a demo month (see demo.py): friends added, messages, purchases, opt-outs and
churn, rooms, campaigns, in the event shapes and tables the bot itself writes."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from pond import Action, ActionClass, ActionKind, Ledger, Store, action_to_json

from . import keywords

CHANNELS = (("A1", 0.25), ("A2", 0.2), ("LIVE", 0.3), ("POSTER", 0.15), ("", 0.1))
# (room id, topic or None for the sample persona's configured room, members who never speak)
ROOMS = (("r1", None, 180), ("r-tea-2", "小鱼塘茶友2群", 320), ("r-vip", "小鱼塘VIP群", 90))
OPERATOR = "wxid_demo_boss"
ACCEPTS_PER_DAY = 24  # under the default accept cap (25)
BULK_PER_DAY = 120  # under the default broadcast cap (300), leaving room for follow-ups
PRODUCTS = ("桂花乌龙", "明前龙井", "正山小种", "老白茶", "茶具", "试喝装", "礼盒")
ASKS = (
    "请问{p}多少钱",
    "{p}还有货吗",
    "{p}什么时候发货",
    "想买{p}送人，有礼盒包装吗",
    "{p}和龙井哪个好喝",
    "双十一{p}有优惠吗",
    "快递到哪了，{p}还没收到",
    "{p}怎么泡比较好",
    "昨天买的{p}很好喝",
    "{p}可以开发票吗",
    "有没有{p}的优惠券",
    "我想退货，{p}包装破了",
)
CHAT = (
    "今天的茶会几点开始",
    "群里的活动怎么参加",
    "直播间的优惠还有吗",
    "门店地址在哪里",
    "周末门店营业吗",
)
# Hour-of-day weights: lunch and evening peaks, quiet nights.
HOUR_WEIGHTS = (1, 0, 0, 0, 0, 0, 1, 2, 4, 5, 5, 6, 8, 7, 5, 5, 5, 6, 7, 9, 11, 12, 9, 4)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = (
    "小茶",
    "阿花",
    "晓雨",
    "大海",
    "静静",
    "思远",
    "一鸣",
    "佳怡",
    "子轩",
    "梓涵",
    "欣怡",
    "浩然",
)


@dataclass
class DemoResult:
    contacts: int = 0
    events: int = 0
    orders: int = 0
    kinds: Counter[str] = field(default_factory=Counter)


class Writer:
    """Events through the event store's own `record_event` (the bot's path, so the rows are
    the bot's rows); other tables' rows buffered and written in large batches."""

    def __init__(self, store: Store, batch: int = 20000) -> None:
        self.sql = store.sql
        self.batch = batch
        self.rows: dict[sa.Table, list[dict[str, Any]]] = defaultdict(list)
        self.result = DemoResult()

    def event(
        self,
        name: str,
        ts: float,
        /,
        *,
        contact_id: str = "",
        room_id: str = "",
        chat_id: str = "",
        plugin: str = "",
        **data: Any,
    ) -> None:
        self.sql.record_event(
            name,
            ts=datetime.fromtimestamp(ts, UTC),
            plugin=plugin or name.split(".")[0],
            chat_id=chat_id or room_id or contact_id,
            contact_id=contact_id,
            room_id=room_id,
            data=data,
        )
        self.result.events += 1
        self.result.kinds[name] += 1

    def add(self, table: sa.Table, row: dict[str, Any]) -> None:
        rows = self.rows[table]
        rows.append(row)
        if len(rows) >= self.batch:
            self.flush(table)

    def flush(self, table: sa.Table | None = None) -> None:
        if table is None:
            self.sql.flush()
        for t in [table] if table is not None else list(self.rows):
            rows, self.rows[t] = self.rows[t], []
            if rows:
                with self.sql.engine.begin() as conn:
                    conn.execute(sa.insert(t), rows)


@dataclass
class Contact:
    id: str
    name: str
    channel: str
    added: float | None  # None: a friend from before the month
    zeal: float  # how chatty, 0..1
    tags: set[str] = field(default_factory=set)
    stage: str = "new"
    is_friend: bool = True
    last_inbound: float | None = None
    rooms: list[str] = field(default_factory=list)


class Month:
    """The month being written: its days, the writer, and what the steps share (room sizes,
    who spoke in which room each hour, the governor's daily counters, keyword counts)."""

    def __init__(
        self,
        rng: random.Random,
        w: Writer,
        tz: ZoneInfo,
        days: list[date],
        orders: sa.Table,
        words: WordCounts,
    ) -> None:
        self.rng, self.w, self.tz, self.days = rng, w, tz, days
        self.orders, self.words = orders, words
        self.start_ts = datetime.combine(days[0], time(0), tz).timestamp()
        self.end_ts = datetime.combine(days[-1] + timedelta(days=1), time(0), tz).timestamp()
        self.sizes = {room_id: size for room_id, _, size in ROOMS}
        self.room_messages: dict[tuple[str, int], list[str]] = defaultdict(list)  # (room, hour)
        self.sends: Counter[tuple[str, str]] = Counter()  # (day, kind): the governor's counters

    def sent(
        self,
        ts: float,
        to: str,
        kind: str = "send",
        cls: str = "reply",
        key: str = "",
        job: str = "",
    ) -> None:
        self.w.event(
            "out.sent", ts, plugin="outbox", kind=kind, cls=cls, to=to, key=key, job=job, reason=""
        )
        day = datetime.fromtimestamp(ts, self.tz).date().isoformat()
        self.sends[day, kind] += 1
        if job:
            self.sends[day, "broadcast"] += 1

    def at(self, day: date, hours: tuple[int, ...] = HOUR_WEIGHTS) -> float:
        """A moment of `day`, at an hour drawn from `hours` (weights)."""
        hour = self.rng.choices(range(24), hours)[0]
        moment = datetime.combine(
            day, time(hour, self.rng.randrange(60), self.rng.randrange(60)), self.tz
        )
        return moment.timestamp()

    def joins_and_tags(self, c: Contact) -> None:
        rng, w, end_ts = self.rng, self.w, self.end_ts
        assert c.added is not None
        if rng.random() < 0.4:
            tag_at = c.added + rng.uniform(600, 5 * 86400)
            c.tags.add(rng.choice(("oolong", "green", "gift", "black")))
            w.event("auto_reply.tagged", min(tag_at, end_ts - 1), contact_id=c.id, count=1)
        if rng.random() < 0.35:
            room_id = rng.choice([r for r, _, _ in ROOMS])
            joined = c.added + rng.uniform(300, 7 * 86400)
            if joined < end_ts:
                self.sizes[room_id] += 1
                c.rooms.append(room_id)
                w.event(
                    "groups.join",
                    joined,
                    contact_id=c.id,
                    room_id=room_id,
                    members=self.sizes[room_id],
                    invited=True,
                    inviter="",
                )
                w.event("in.member_joined", joined, contact_id=c.id, room_id=room_id, stale=False)

    def leaves(self) -> None:
        for room_id, _, _ in ROOMS:
            for _ in range(max(1, self.sizes[room_id] // 40)):
                ts = self.at(self.rng.choice(self.days))
                self.sizes[room_id] -= 1
                self.w.event(
                    "groups.leave",
                    ts,
                    contact_id=f"wxid_demo_left_{self.rng.randrange(10**6)}",
                    room_id=room_id,
                    members=self.sizes[room_id],
                    removed=False,
                    by_us=False,
                )

    def friend_added(self, c: Contact) -> None:
        rng, w, sent = self.rng, self.w, self.sent
        assert c.added is not None
        at = c.added
        if rng.random() < 0.1:  # our own add request, from a consented list
            w.event("friends.add_requesting", at - 3600, contact_id=c.id, job=f"friends.add.{c.id}")
            sent(at - 3600, c.id, kind="add_friend", cls="service", job=f"friends.add.{c.id}")
            w.event("friends.add_accepted", at, contact_id=c.id)
            c.tags.add(f"channel:{c.channel}" if c.channel else "list")
            return
        w.event("in.friend_request", at - 60, contact_id=c.id, chat_id=c.id, stale=False)
        rule = "channel" if c.channel else "keyword"
        w.event(
            "friends.request",
            at - 59,
            contact_id=c.id,
            verdict="accept",
            rule=rule,
            channel=c.channel,
        )
        sent(at, c.id, kind="accept_friend", cls="service")
        w.event("friends.accepted", at, contact_id=c.id, rule=rule, channel=c.channel, tags=[])
        sent(at + 40, c.id, cls="service", key="friends/welcome")

    def active_on(self, c: Contact, day_ts: float) -> bool:
        rng = self.rng
        if c.added is not None:
            if day_ts + 86400 <= c.added:
                return False
            age = max(0.0, (day_ts - c.added) / 86400)
            chance = c.zeal * (0.25 + 0.75 * math.exp(-age / 6))  # retention decays from the add
            return rng.random() < (0.45 if age < 1 else chance)
        return rng.random() < c.zeal * 0.25

    def messages(self, c: Contact) -> None:
        rng, w, tz, sent, words = self.rng, self.w, self.tz, self.sent, self.words
        start_ts, end_ts = self.start_ts, self.end_ts
        for day in self.days:
            day_ts = datetime.combine(day, time(0), tz).timestamp()
            if not c.is_friend or not self.active_on(c, day_ts):
                continue
            for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
                ts = self.at(day)
                if c.added is not None and ts < c.added:
                    ts = c.added + rng.uniform(60, 3600)
                if not start_ts <= ts < end_ts:
                    continue
                in_room = bool(c.rooms) and rng.random() < 0.45
                text = (
                    rng.choice(ASKS).format(p=rng.choice(PRODUCTS))
                    if rng.random() < 0.75
                    else rng.choice(CHAT)
                )
                length = len(text)
                if in_room:
                    room_id = rng.choice(c.rooms)
                    w.event(
                        "in.message",
                        ts,
                        contact_id=c.id,
                        room_id=room_id,
                        stale=False,
                        type="text",
                        length=length,
                        mentions_self=False,
                    )
                    w.event("groups.message", ts, contact_id=c.id, room_id=room_id, type="text")
                    self.room_messages[room_id, int(ts // 3600) * 3600].append(c.id)
                    words.add(ts, tz, room_id, c.channel, text)
                else:
                    w.event(
                        "in.message",
                        ts,
                        contact_id=c.id,
                        stale=False,
                        type="text",
                        length=length,
                        mentions_self=False,
                    )
                    words.add(ts, tz, "", c.channel, text)
                    if rng.random() < 0.7:
                        sent(ts + rng.uniform(2, 20), c.id, key="auto_reply/price")
                c.last_inbound = max(c.last_inbound or 0, ts)

    def outcomes(self, c: Contact) -> None:
        rng, w, start_ts, end_ts = self.rng, self.w, self.start_ts, self.end_ts
        base = c.added if c.added is not None else start_ts
        if rng.random() < 0.08 + c.zeal * 0.12:
            buys = 1 + (rng.random() < 0.25) + (rng.random() < 0.1)
            for n in range(buys):
                ts = base + rng.uniform(3600, 20 * 86400) * (n + 1)
                if ts >= end_ts:
                    break
                source = rng.choices(("purchase", "keyword", "orders"), (3, 2, 5))[0]
                if source == "purchase":
                    stage = "repeat" if c.stage in ("customer", "repeat") else "customer"
                    w.event("friends.purchase", ts, contact_id=c.id, stage=stage)
                elif source == "keyword":
                    w.event("analytics.order_keyword", ts, contact_id=c.id, chat_id=c.id)
                else:
                    w.add(
                        self.orders,
                        {
                            "order_id": f"TB{int(ts)}{rng.randrange(1000):03d}",
                            "contact_id": c.id,
                            "at": datetime.fromtimestamp(ts, UTC),
                            "amount": float(rng.choice((68, 98, 128, 168, 268, 398, 588))),
                            "source": "csv",
                        },
                    )
                    w.result.kinds["orders"] += 1
                c.stage = "repeat" if c.stage in ("customer", "repeat") else "customer"
                c.tags.add("purchased")
        if rng.random() < 0.012:
            ts = rng.uniform(max(base, start_ts), end_ts - 1)
            w.event(
                "contact.opt_out", ts, plugin="outbox", contact_id=c.id, source="keyword", new=True
            )
            if rng.random() < 0.1:
                w.event(
                    "contact.opt_in", ts + 86400, plugin="outbox", contact_id=c.id, cleared=True
                )
        if rng.random() < 0.02:
            ts = rng.uniform(max(base, start_ts), end_ts - 1)
            c.is_friend, c.stage = False, "churned"
            w.event("friends.churned", ts, contact_id=c.id, reason="deleted_us")

    def hourly(self) -> None:
        """Each room's hourly summary, as groups/activity.py writes it."""
        w, tz, sizes, end_ts = self.w, self.tz, self.sizes, self.end_ts
        hour = self.start_ts
        while hour < end_ts:
            for room_id, _, _ in ROOMS:
                speakers = self.room_messages.get((room_id, int(hour)), [])
                w.event(
                    "groups.hourly",
                    hour + 3600,
                    room_id=room_id,
                    hour=datetime.fromtimestamp(hour, tz).isoformat(),
                    messages=len(speakers),
                    active_members=len(set(speakers)),
                    joins=0,
                    leaves=0,
                    moderation=0,
                    moderation_dry_run=0,
                    members=sizes[room_id],
                )
            hour += 3600

    def operator(self) -> None:
        """The shop owner talks to the bot daily: commands, never counted as customers."""
        for day in self.days:
            ts = self.at(day)
            self.w.event(
                "in.message",
                ts,
                contact_id=OPERATOR,
                stale=False,
                type="text",
                length=2,
                mentions_self=False,
            )
            self.w.event(
                "admin.command",
                ts,
                plugin="core",
                contact_id=OPERATOR,
                command="status",
                origin="chat",
            )

    def campaigns(self, ledger: Ledger, people: list[Contact]) -> None:
        """Two broadcasts and weekly follow-ups, journaled and paced as the governor would."""
        rng, w, tz, sent, end_ts, month = (
            self.rng,
            self.w,
            self.tz,
            self.sent,
            self.end_ts,
            self.days,
        )
        friends = [c for c in people if c.is_friend]
        plans: list[tuple[str, dict[str, Any], date, list[Contact]]] = []
        if len(month) >= 12:
            pick = rng.sample(friends, min(len(friends), max(10, len(friends) // 3)))
            plans.append(
                (
                    "broadcasts.double11",
                    {
                        "campaign": "double11",
                        "copy": "broadcasts/copy_new_tea",
                        "title": "双11 囤茶节",
                    },
                    month[-20],
                    pick,
                )
            )
            pick = rng.sample(friends, min(len(friends), max(5, len(friends) // 8)))
            plans.append(
                (
                    "broadcasts.tea_room",
                    {
                        "campaign": "tea_room",
                        "copy": "broadcasts/copy_tea_room",
                        "title": "周末茶会邀请",
                    },
                    month[-6],
                    pick,
                )
            )
        for day in month[::7]:
            new = [
                c
                for c in friends
                if c.added is not None and c.added < datetime.combine(day, time(0), tz).timestamp()
            ]
            if new:
                job = f"friends.fu.welcome.r1.s2.{day.strftime('%Y%m%d')}"
                plans.append((job, {"plugin": "friends", "kind": "followup"}, day, new[-40:]))
        for job, meta, day, recipients in plans:
            created = self.at(day, tuple(int(9 <= h <= 20) for h in range(24)))
            w.add(ledger.jobs, {"job": job, "status": "done", "created_at": created, "meta": meta})
            w.event("job.created", created, plugin="outbox", job=job, rows=len(recipients))
            for seq, c in enumerate(recipients):
                status = rng.choices(("sent", "failed", "skipped"), (95, 2, 3))[0]
                # Paced by the governor: at most BULK_PER_DAY bulk messages a day.
                ts = created + 30 + (seq // BULK_PER_DAY) * 86400 + (seq % BULK_PER_DAY) * 30
                if ts >= end_ts:
                    status = "pending"
                w.add(
                    ledger.rows,
                    {
                        "job": job,
                        "recipient": c.id,
                        "seq": seq,
                        "status": status,
                        "reason": "" if status != "skipped" else "opted_out",
                        "updated_at": ts,
                        "action": action_to_json(
                            Action(
                                ActionKind.SEND,
                                to=c.id,
                                cls=ActionClass.MARKETING,
                                text="(demo)",
                                job=job,
                                key=str(meta.get("copy", "friends/fu_value")),
                                contact_id=c.id,
                            )
                        ),
                    },
                )
                if status != "sent":
                    continue
                sent(
                    ts,
                    c.id,
                    cls="marketing",
                    key=str(meta.get("copy", "friends/fu_value")),
                    job=job,
                )
                if rng.random() < 0.12 and ts + 3600 < end_ts:
                    reply = ts + rng.uniform(60, 20 * 3600)
                    w.event(
                        "in.message",
                        min(reply, end_ts - 1),
                        contact_id=c.id,
                        stale=False,
                        type="text",
                        length=6,
                        mentions_self=False,
                    )
                if rng.random() < 0.006:
                    w.event(
                        "contact.opt_out",
                        min(ts + rng.uniform(60, 7200), end_ts - 1),
                        plugin="outbox",
                        contact_id=c.id,
                        source="keyword",
                        new=True,
                    )


class WordCounts:
    """Keyword counts as the analytics plugin keeps them: per day, room and channel; each
    distinct demo text is segmented once (the same few hundred texts repeat)."""

    def __init__(self, segmenter: keywords.Segmenter | None) -> None:
        self.segmenter = segmenter
        self.cache: dict[str, list[str]] = {}
        self.counts: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)

    def add(self, ts: float, tz: ZoneInfo, room_id: str, channel: str, text: str) -> None:
        if self.segmenter is None:
            return
        if text not in self.cache:
            self.cache[text] = self.segmenter.words(text)  # distinct words of one message
        day = datetime.fromtimestamp(ts, tz).date().isoformat()
        self.counts[day, room_id, channel].update(self.cache[text])

    def write(self, store: Store) -> None:
        """Through the plugin's own writer (KeywordCounter.add_counts)."""
        if self.segmenter is None:
            return
        counter = keywords.KeywordCounter(store.sql.engine, store.sql.metadata, self.segmenter)
        for (day, room_id, channel), counts in self.counts.items():
            counter.add_counts(day, room_id, channel, counts)
