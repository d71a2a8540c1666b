"""The customer book: who each contact is, where they came from, their tags and consent.

Keyed by contact id, never by display name. Lives in SQL next to the events (it grows with
the audience). Per-message touches (name seen, last inbound) are buffered and written in
batches; everything else is written at once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pond.segments import Segment

STAGES = ("new", "engaged", "customer", "repeat", "churned")


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str = ""
    alias: str = ""
    channel: str = ""
    stage: str = "new"
    first_seen: float | None = None
    last_inbound: float | None = None
    last_outbound: float | None = None
    is_friend: bool = True
    notes: str = ""
    consent: dict[str, Any] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()


def define_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    if "customers" in metadata.tables:
        return metadata.tables["customers"], metadata.tables["customer_tags"]
    customers = sa.Table(
        "customers",
        metadata,
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, default=""),
        sa.Column("alias", sa.String(255), nullable=False, default=""),
        sa.Column("channel", sa.String(64), nullable=False, default=""),
        sa.Column("stage", sa.String(16), nullable=False, default="new"),
        sa.Column("first_seen", sa.Float),
        sa.Column("last_inbound", sa.Float),
        sa.Column("last_outbound", sa.Float),
        sa.Column("is_friend", sa.Boolean, nullable=False, default=True),
        sa.Column("notes", sa.Text, nullable=False, default=""),
        sa.Column("consent", sa.JSON, nullable=False, default=dict),
        sa.Index("ix_customers_channel", "channel"),
    )
    tags = sa.Table(
        "customer_tags",
        metadata,
        sa.Column("contact_id", sa.String(128), primary_key=True),
        sa.Column("tag", sa.String(64), primary_key=True),
        sa.Column("added_at", sa.Float, nullable=False),
        sa.Column("source", sa.String(64), nullable=False, default=""),
        sa.Index("ix_customer_tags_tag", "tag"),
    )
    return customers, tags


class CustomerBook:
    def __init__(self, engine: sa.Engine, metadata: sa.MetaData) -> None:
        self.engine = engine
        self.customers, self.tags_table = define_tables(metadata)
        metadata.create_all(engine, tables=[self.customers, self.tags_table])
        self._touched: dict[str, tuple[str, float]] = {}
        self._tag_cache: dict[str, frozenset[str]] = {}

    # -- per-message (buffered) ---------------------------------------------------------
    def touch(self, contact_id: str, name: str, at: datetime) -> None:
        """A contact spoke: remember their name and last inbound time (write-behind)."""
        self._touched[contact_id] = (name, at.timestamp())

    def flush(self) -> None:
        if not self._touched:
            return
        touched, self._touched = self._touched, {}
        c = self.customers
        with self.engine.begin() as conn:
            known = set(conn.execute(sa.select(c.c.id).where(c.c.id.in_(list(touched)))).scalars())
            for contact_id, (name, ts) in touched.items():
                if contact_id in known:
                    values: dict[str, Any] = {"last_inbound": ts}
                    if name:
                        values["name"] = name
                    conn.execute(sa.update(c).where(c.c.id == contact_id).values(**values))
                else:
                    conn.execute(
                        sa.insert(c).values(
                            id=contact_id, name=name, first_seen=ts, last_inbound=ts, consent={}
                        )
                    )

    # -- reads --------------------------------------------------------------------------
    def get(self, contact_id: str) -> Customer | None:
        self.flush()
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(self.customers).where(self.customers.c.id == contact_id)
            ).first()
        if row is None:
            return None
        return _customer(row, self.tags(contact_id))

    def tags(self, contact_id: str) -> frozenset[str]:
        cached = self._tag_cache.get(contact_id)
        if cached is not None:
            return cached
        t = self.tags_table
        with self.engine.connect() as conn:
            tags = frozenset(
                conn.execute(sa.select(t.c.tag).where(t.c.contact_id == contact_id)).scalars()
            )
        if len(self._tag_cache) > 50_000:
            self._tag_cache.clear()
        self._tag_cache[contact_id] = tags
        return tags

    def all_tags(self) -> dict[str, set[str]]:
        """contact id -> tags, for every contact in the book (one query)."""
        self.flush()
        result: dict[str, set[str]] = {}
        with self.engine.connect() as conn:
            for cid in conn.execute(sa.select(self.customers.c.id)).scalars():
                result[cid] = set()
            t = self.tags_table
            for cid, tag in conn.execute(sa.select(t.c.contact_id, t.c.tag)):
                result.setdefault(cid, set()).add(tag)
        return result

    def select(self, segment: Segment | str) -> list[str]:
        """Contact ids in the segment, sorted (stable order for bulk jobs)."""
        seg = Segment.parse(segment) if isinstance(segment, str) else segment
        return sorted(cid for cid, tags in self.all_tags().items() if seg.matches(tags))

    def count(self) -> int:
        self.flush()
        with self.engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(self.customers)).scalar_one()
            )

    # -- writes -------------------------------------------------------------------------
    def upsert(self, contact_id: str, at: datetime, **values: Any) -> None:
        """Create or update one customer's fields (name, alias, channel, stage, notes,
        is_friend, consent, last_outbound)."""
        unknown = set(values) - {
            "name",
            "alias",
            "channel",
            "stage",
            "notes",
            "is_friend",
            "consent",
            "last_outbound",
        }
        if unknown:
            raise ValueError(f"unknown customer fields: {sorted(unknown)}")
        if "stage" in values and values["stage"] not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}")
        self.flush()
        c = self.customers
        with self.engine.begin() as conn:
            updated = (
                conn.execute(sa.update(c).where(c.c.id == contact_id).values(**values)).rowcount
                if values
                else int(
                    conn.execute(
                        sa.select(sa.func.count()).where(c.c.id == contact_id)
                    ).scalar_one()
                )
            )
            if not updated:
                conn.execute(
                    sa.insert(c).values(
                        id=contact_id,
                        first_seen=at.timestamp(),
                        **{"consent": {}, **values},
                    )
                )

    def tag(
        self, contact_id: str, tags: Iterable[str], at: datetime, source: str = ""
    ) -> list[str]:
        """Add tags; returns the ones that were new."""
        self.upsert(contact_id, at)
        have = self.tags(contact_id)
        new = [t for t in dict.fromkeys(tags) if t and t not in have]
        for t in new:
            _check_tag(t)
        if new:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.insert(self.tags_table),
                    [
                        {
                            "contact_id": contact_id,
                            "tag": t,
                            "added_at": at.timestamp(),
                            "source": source,
                        }
                        for t in new
                    ],
                )
            self._tag_cache.pop(contact_id, None)
        return new

    def untag(self, contact_id: str, tags: Iterable[str]) -> list[str]:
        have = self.tags(contact_id)
        gone = [t for t in dict.fromkeys(tags) if t in have]
        if gone:
            t = self.tags_table
            with self.engine.begin() as conn:
                conn.execute(sa.delete(t).where(t.c.contact_id == contact_id, t.c.tag.in_(gone)))
            self._tag_cache.pop(contact_id, None)
        return gone

    def delete(self, contact_id: str) -> bool:
        """Erase a customer's record and tags (data-rights deletion)."""
        self.flush()
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(self.tags_table).where(self.tags_table.c.contact_id == contact_id)
            )
            gone = conn.execute(
                sa.delete(self.customers).where(self.customers.c.id == contact_id)
            ).rowcount
        self._tag_cache.pop(contact_id, None)
        return bool(gone)


def _check_tag(tag: str) -> None:
    if len(tag) > 64 or any(ch.isspace() or ch in "()" for ch in tag):
        raise ValueError(f"tag {tag!r}: at most 64 characters, no spaces or parentheses")


def _customer(row: sa.Row[Any], tags: frozenset[str]) -> Customer:
    return Customer(
        id=row.id,
        name=row.name,
        alias=row.alias,
        channel=row.channel,
        stage=row.stage,
        first_seen=row.first_seen,
        last_inbound=row.last_inbound,
        last_outbound=row.last_outbound,
        is_friend=row.is_friend,
        notes=row.notes,
        consent=dict(row.consent or {}),
        tags=tags,
    )
