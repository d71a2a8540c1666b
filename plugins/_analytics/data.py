"""Read-only access to what the report counts: events, the customer book, the governor's
journal and counters, keyword counts and imported orders.

Only the columns a metric needs are selected, and JSON fields are read in SQL where one
field is needed (portable `data["field"]` on SQLite and PostgreSQL), so a million events
stay a few seconds of work. Nothing here writes."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from pond import SqlStore, customers, ledger

from . import keywords, orders

# referral.accepted: a request carrying an invite code, accepted by the referral plugin.
NEW_FRIEND_KINDS = ("friends.accepted", "friends.add_accepted", "referral.accepted")
SIZE_LOOKBACK = timedelta(days=31)


@dataclass(frozen=True, slots=True)
class Event:
    ts: datetime
    kind: str
    contact_id: str
    room_id: str
    values: tuple[str, ...]  # the JSON fields the query asked for, as text ('' when absent)


class Source:
    """The tables of one data dir's database. Tables that do not exist yet (a new data
    dir, a plugin never enabled) read as empty."""

    def __init__(self, sql: SqlStore) -> None:
        self.sql = sql
        self.engine = sql.engine
        metadata = sql.metadata
        self.events = sql.events_table
        self.kv = sql.kv_table
        self.customers, self.tags = customers.define_tables(metadata)
        journal = ledger.define_tables(metadata)
        self.jobs, self.rows, self.counters = (
            journal["out_jobs"],
            journal["out_rows"],
            journal["out_counters"],
        )
        self.keywords = keywords.define_table(metadata)
        self.orders = orders.define_table(metadata)
        self.present = set(sa.inspect(self.engine).get_table_names())

    def has(self, table: sa.Table) -> bool:
        return table.name in self.present

    def _run(self, query: sa.Select[Any]) -> Iterator[Any]:
        with self.engine.connect() as conn:
            yield from conn.execute(query)

    # -- events ---------------------------------------------------------------------------
    def scan(
        self,
        kinds: Collection[str],
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        fields: tuple[str, ...] = (),
    ) -> Iterator[Event]:
        """Events of the given kinds with start <= ts < end, streamed (a month of a large
        account is a million rows: never all in memory at once)."""
        if not self.has(self.events):
            return
        t = self.events.c
        values = [t.data[name].as_string() for name in fields]
        query = sa.select(t.ts, t.kind, t.contact_id, t.room_id, *values).where(
            t.kind.in_(list(kinds))
        )
        if start is not None:
            query = query.where(t.ts >= start)
        if end is not None:
            query = query.where(t.ts < end)
        for row in self._run(query):
            yield Event(
                row[0], row[1], row[2], row[3], tuple("" if v is None else str(v) for v in row[4:])
            )

    def room_sizes(self, end: datetime) -> dict[str, int]:
        """Each room's newest known member count before `end`: the groups plugin writes it on
        every join, leave and hourly summary, so the last SIZE_LOOKBACK suffices (and a
        year of hourly rows is not read for a one-day morning summary)."""
        newest: dict[str, tuple[datetime, int]] = {}
        kinds = ("groups.hourly", "groups.join", "groups.leave")
        for e in self.scan(kinds, end - SIZE_LOOKBACK, end, fields=("members",)):
            if not e.values[0]:
                continue
            known = newest.get(e.room_id)
            if known is None or e.ts >= known[0]:
                newest[e.room_id] = (e.ts, int(float(e.values[0])))
        return {room: size for room, (_, size) in newest.items()}

    def has_events(self) -> bool:
        if not self.has(self.events):
            return False
        with self.engine.connect() as conn:
            return conn.execute(sa.select(self.events.c.id).limit(1)).first() is not None

    def room_ids(self) -> set[str]:
        if not self.has(self.events):
            return set()
        t = self.events.c
        query = sa.select(t.room_id).where(t.room_id != "").distinct()
        return {room for (room,) in self._run(query)}

    # -- customer book --------------------------------------------------------------------
    def channels(self) -> dict[str, str]:
        """contact id -> first-touch channel code ('' unknown), for every known contact."""
        if not self.has(self.customers):
            return {}
        c = self.customers.c
        return {cid: channel or "" for cid, channel in self._run(sa.select(c.id, c.channel))}

    def channel_codes(self) -> set[str]:
        """Every first-touch channel code in the book."""
        if not self.has(self.customers):
            return set()
        c = self.customers.c
        query = sa.select(c.channel).where(c.channel != "").distinct()
        return {code for (code,) in self._run(query)}

    def friends_count(self, channels: Collection[str] = ()) -> int:
        if not self.has(self.customers):
            return 0
        c = self.customers.c
        query = sa.select(sa.func.count()).where(c.is_friend.is_(True), c.stage != "churned")
        if channels:
            query = query.where(c.channel.in_(list(channels)))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def names(self, ids: Collection[str]) -> dict[str, str]:
        """contact id -> nickname (the account's remark, else their WeChat name)."""
        if not ids or not self.has(self.customers):
            return {}
        c = self.customers.c
        found: dict[str, str] = {}
        wanted = list(ids)
        for i in range(0, len(wanted), 500):  # bounded IN lists
            query = sa.select(c.id, c.alias, c.name).where(c.id.in_(wanted[i : i + 500]))
            found.update((cid, alias or name or "") for cid, alias, name in self._run(query))
        return found

    def tagged_contacts(self, ignore_prefix: str) -> set[str]:
        """Contacts with at least one tag not given automatically (source not ignore_prefix*)."""
        if not self.has(self.tags):
            return set()
        t = self.tags.c
        query = (
            sa.select(t.contact_id)
            .where(sa.not_(t.source.startswith(ignore_prefix, autoescape=True)))
            .distinct()
        )
        return {cid for (cid,) in self._run(query)}

    # -- governor -------------------------------------------------------------------------
    def counts(self, first_day: str, last_day: str) -> list[tuple[str, str, int]]:
        if not self.has(self.counters):
            return []
        c = self.counters.c
        query = sa.select(c.day, c.kind, c.n).where(c.day >= first_day, c.day <= last_day)
        return [(day, kind, int(n)) for day, kind, n in self._run(query)]

    def bulk_jobs(self, start: float, end: float) -> list[tuple[str, float, dict[str, Any]]]:
        if not self.has(self.jobs):
            return []
        j = self.jobs.c
        query = sa.select(j.job, j.created_at, j.meta).where(
            j.created_at >= start, j.created_at < end
        )
        return [
            (job, float(at), meta if isinstance(meta, dict) else {})
            for job, at, meta in self._run(query)
        ]

    def bulk_rows(self, jobs: Collection[str]) -> list[tuple[str, str, str, float]]:
        """(job, recipient, status, updated_at) of the given jobs."""
        if not jobs or not self.has(self.rows):
            return []
        r = self.rows.c
        found: list[tuple[str, str, str, float]] = []
        names = list(jobs)
        for i in range(0, len(names), 500):  # bounded IN lists
            query = sa.select(r.job, r.recipient, r.status, r.updated_at).where(
                r.job.in_(names[i : i + 500])
            )
            found.extend((j, to, s, float(at)) for j, to, s, at in self._run(query))
        return found

    # -- keywords, orders, names ----------------------------------------------------------
    def kv_items(self, namespace: str, prefix: str) -> list[tuple[str, object]]:
        if not self.has(self.kv):
            return []
        return self.sql.kv_items(namespace, prefix)

    def orders_between(self, end: datetime) -> list[tuple[str, datetime, float, str]]:
        """(contact id, time, amount, order id) of every imported order before `end`."""
        if not self.has(self.orders):
            return []
        o = self.orders.c
        query = sa.select(o.contact_id, o.at, o.amount, o.order_id).where(o.at < end)
        return [(cid, at, float(amount or 0), oid) for cid, at, amount, oid in self._run(query)]
