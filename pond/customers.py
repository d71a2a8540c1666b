"""The customer book: who each contact is, where they came from, their tags, consent,
lifecycle stage and notes.

Keyed by contact id, never by display name. Lives in SQL next to the events (it grows with
the audience). Per-message touches (name seen, last inbound) are buffered and written in
batches; everything else is written at once.

Opt-out is NOT stored here: the governor's ledger (`out_optout`) is the single source of
truth, read (never copied) when a segment or an export needs it.

Plugins may `subscribe()` to changes (tags added or removed, stage changes, deletions), e.g.
to start a follow-up sequence when a tag is added by anyone."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pond.problems import Problem
from pond.segments import Segment
from pond.store.fast import Prepared, Reader

log = logging.getLogger("pond.customers")

STAGES = ("new", "engaged", "customer", "repeat", "churned")
# Words every contact gets besides its tags, usable in segments (derived, never stored).
DERIVED = ("opted_out", "friend", "churned", "stage:<stage>", "channel:<channel>")
NOTES_MAX = 4000
FIELDS = frozenset(
    {
        "name",
        "alias",
        "channel",
        "stage",
        "stage_at",
        "notes",
        "is_friend",
        "consent",
        "first_seen",
        "last_inbound",
        "last_outbound",
        "purged_at",
    }
)


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
    stage_at: float | None = None
    purged_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "alias": self.alias,
            "channel": self.channel,
            "stage": self.stage,
            "stage_at": self.stage_at,
            "first_seen": self.first_seen,
            "last_inbound": self.last_inbound,
            "last_outbound": self.last_outbound,
            "is_friend": self.is_friend,
            "notes": self.notes,
            "consent": dict(self.consent),
            "tags": sorted(self.tags),
            "purged_at": self.purged_at,
        }


@dataclass(frozen=True, slots=True)
class BookChange:
    """What subscribers hear: kind is created | tagged | untagged | stage | deleted."""

    kind: str
    contact_id: str
    at: float
    tags: tuple[str, ...] = ()
    stage: str = ""
    previous: str = ""
    source: str = ""


Listener = Callable[[BookChange], None]


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
        # Added later: nullable, so older databases get them with ALTER TABLE ADD COLUMN.
        sa.Column("stage_at", sa.Float),
        sa.Column("purged_at", sa.Float),  # retention: message-derived data purged then
        sa.Index("ix_customers_channel", "channel"),
        sa.Index("ix_customers_last_inbound", "last_inbound"),
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


def _add_missing_columns(engine: sa.Engine, table: sa.Table) -> None:
    """A tiny forward migration: nullable columns added to the model after a database was
    created are added to the table (portable ALTER TABLE ... ADD COLUMN)."""
    have = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
    missing = [c for c in table.columns if c.name not in have]
    if not missing:
        return
    with engine.begin() as conn:
        for column in missing:
            if not column.nullable:
                raise RuntimeError(f"{table.name}.{column.name}: cannot add a NOT NULL column")
            kind = column.type.compile(dialect=engine.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")
            log.info("customer book: added column %s.%s", table.name, column.name)


class CustomerBook:
    def __init__(self, engine: sa.Engine, metadata: sa.MetaData) -> None:
        self.engine = engine
        self.metadata = metadata
        self.customers, self.tags_table = define_tables(metadata)
        metadata.create_all(engine, tables=[self.customers, self.tags_table])
        _add_missing_columns(engine, self.customers)
        self._touched: dict[str, tuple[str, float, bool | None]] = {}
        self._tag_cache: dict[str, frozenset[str]] = {}
        # Channel codes as stored (a per-message read of analytics); every write of a
        # channel goes through upsert(), which forgets the entry.
        self._channels: dict[str, str] = {}
        self._listeners: list[Listener] = []
        t = self.tags_table
        c = self.customers.c
        self._reader = Reader.of(engine)  # closed by the SqlStore of this engine
        self._q_tags = Prepared(
            engine, sa.select(t.c.tag).where(t.c.contact_id == sa.bindparam("cid"))
        )
        self._q_channel = Prepared(engine, sa.select(c.channel).where(c.id == sa.bindparam("cid")))
        self._q_insert_touched = Prepared(engine, sa.insert(self.customers), _INSERT_COLUMNS)
        self._q_touch: dict[tuple[bool, bool, bool], Prepared] = {}

    # -- subscribers ----------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def _tell(self, change: BookChange) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # a subscriber's bug must not break the book's writer
                log.exception("customer book subscriber failed on %s", change.kind)

    # -- per-message (buffered) ---------------------------------------------------------
    def touch(
        self, contact_id: str, name: str, at: datetime, is_friend: bool | None = None
    ) -> None:
        """A contact spoke: remember their name and last inbound time (write-behind).
        `is_friend`: True when the message proves friendship (a private chat)."""
        self._touched[contact_id] = (name, at.timestamp(), is_friend)

    def flush(self) -> None:
        if not self._touched:
            return
        touched, self._touched = self._touched, {}
        c = self.customers
        engaged: list[tuple[str, float]] = []
        updates: dict[tuple[bool, bool, bool], list[dict[str, Any]]] = {}
        inserts: list[dict[str, Any]] = []
        with self.engine.begin() as conn:
            known = dict(
                conn.execute(sa.select(c.c.id, c.c.stage).where(c.c.id.in_(list(touched)))).all()
            )
            for contact_id, (name, ts, friend) in touched.items():
                if contact_id in known:
                    # Someone who talks to us is engaged (lifecycle: new -> engaged).
                    new = known[contact_id] == "new"
                    if new:
                        engaged.append((contact_id, ts))
                    shape = (bool(name), bool(friend), new)
                    updates.setdefault(shape, []).append(
                        {"b_id": contact_id, "b_ts": ts, "b_name": name}
                    )
                else:
                    inserts.append(_touched_row(contact_id, name, ts, friend))
            # One executemany per kind of change, not one statement per contact.
            for shape, rows in updates.items():
                self._touch_statement(shape).execute(conn, rows)
            self._q_insert_touched.execute(conn, inserts)
        for row in inserts:
            self._tell(BookChange("created", row["id"], row["first_seen"], stage="engaged"))
        for contact_id, ts in engaged:
            self._tell(BookChange("stage", contact_id, ts, stage="engaged", previous="new"))

    def _touch_statement(self, shape: tuple[bool, bool, bool]) -> Prepared:
        prepared = self._q_touch.get(shape)
        if prepared is None:
            named, friend, engaged = shape
            c = self.customers.c
            values: dict[str, Any] = {"last_inbound": sa.bindparam("b_ts")}
            if named:
                values["name"] = sa.bindparam("b_name")
            if friend:
                values["is_friend"] = True
            if engaged:
                values.update(stage="engaged", stage_at=sa.bindparam("b_ts"))
            prepared = Prepared(
                self.engine,
                sa.update(self.customers).where(c.id == sa.bindparam("b_id")).values(**values),
            )
            self._q_touch[shape] = prepared
        return prepared

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

    def channel(self, contact_id: str) -> str:
        """First-touch channel code ('' unknown). Cheap: one indexed read, no flush (the
        per-message buffer never changes a channel)."""
        cached = self._channels.get(contact_id)
        if cached is not None:
            return cached
        row = self._reader.first(self._q_channel, {"cid": contact_id})
        channel = str((row[0] if row else "") or "")
        if len(self._channels) > 100_000:
            self._channels.clear()
        self._channels[contact_id] = channel
        return channel

    def exists(self, contact_id: str) -> bool:
        if contact_id in self._touched:
            return True
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(self.customers.c.id).where(self.customers.c.id == contact_id)
            ).first()
        return found is not None

    def tags(self, contact_id: str) -> frozenset[str]:
        cached = self._tag_cache.get(contact_id)
        if cached is not None:
            return cached
        tags = frozenset(str(r[0]) for r in self._reader.all(self._q_tags, {"cid": contact_id}))
        if len(self._tag_cache) > 50_000:
            self._tag_cache.clear()
        self._tag_cache[contact_id] = tags
        return tags

    def tag_details(self, contact_id: str) -> list[dict[str, Any]]:
        """Each tag with when and by what it was added (for exports and the contact card)."""
        t = self.tags_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.tag, t.c.added_at, t.c.source)
                .where(t.c.contact_id == contact_id)
                .order_by(t.c.added_at, t.c.tag)
            ).all()
        return [{"tag": tag, "added_at": at, "source": source} for tag, at, source in rows]

    def opted_out_ids(self) -> set[str]:
        """Read from the governor's ledger table (the single source of truth)."""
        table = self.metadata.tables.get("out_optout")
        if table is None:
            return set()
        with self.engine.connect() as conn:
            return {str(cid) for cid in conn.execute(sa.select(table.c.contact_id)).scalars()}

    def is_opted_out(self, contact_id: str) -> bool:
        table = self.metadata.tables.get("out_optout")
        if table is None:
            return False
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(table.c.contact_id).where(table.c.contact_id == contact_id)
            ).first()
        return found is not None

    def facts(self, contact_id: str) -> frozenset[str]:
        """Tags plus the derived words (DERIVED) of one contact, for segment tests."""
        customer = self.get(contact_id)
        if customer is None:
            return frozenset()
        return facts_of(customer.tags, customer, self.is_opted_out(contact_id))

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

    def all_facts(self) -> dict[str, frozenset[str]]:
        """contact id -> tags plus derived words, for every contact (three queries)."""
        tags = self.all_tags()
        optout = self.opted_out_ids()
        c = self.customers
        result: dict[str, frozenset[str]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(c.c.id, c.c.stage, c.c.is_friend, c.c.channel))
            for cid, stage, friend, channel in rows:
                words = set(tags.get(cid, ()))
                words.add(f"stage:{stage}")
                if channel:
                    words.add(f"channel:{channel}")
                if friend:
                    words.add("friend")
                if stage == "churned":
                    words.add("churned")
                if cid in optout:
                    words.add("opted_out")
                result[cid] = frozenset(words)
        return result

    def select(self, segment: Segment | str) -> list[str]:
        """Contact ids in the segment, sorted (stable order for bulk jobs). Segments see
        tags and the derived words (opted_out, friend, churned, stage:X, channel:X)."""
        seg = Segment.parse(segment) if isinstance(segment, str) else segment
        return sorted(cid for cid, words in self.all_facts().items() if seg.matches(words))

    def count(self) -> int:
        self.flush()
        with self.engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(self.customers)).scalar_one()
            )

    def search(self, text: str, limit: int = 10) -> tuple[list[Customer], int]:
        """Customers whose id, name or remark contains `text` (the exact id first), at most
        `limit`, and how many matched in all. Names only find: commands take the id."""
        wanted = text.strip().lower()
        exact: list[Customer] = []
        found: list[Customer] = []
        for customer in self.iter_all():
            fields = (customer.id.lower(), customer.name.lower(), customer.alias.lower())
            if any(wanted in f for f in fields):
                (exact if customer.id.lower() == wanted else found).append(customer)
        return (exact + found)[:limit], len(exact) + len(found)

    def iter_all(self, chunk: int = 2000) -> Iterator[Customer]:
        """Every customer with tags, by id, in chunks (CSV export of a big book)."""
        self.flush()
        c, t = self.customers, self.tags_table
        after = ""
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(c).where(c.c.id > after).order_by(c.c.id).limit(chunk)
                ).all()
                if not rows:
                    return
                ids = [r.id for r in rows]
                tags: dict[str, set[str]] = {}
                for cid, tag in conn.execute(
                    sa.select(t.c.contact_id, t.c.tag).where(t.c.contact_id.in_(ids))
                ):
                    tags.setdefault(cid, set()).add(tag)
            for row in rows:
                yield _customer(row, frozenset(tags.get(row.id, ())))
            after = ids[-1]

    def inactive(self, before: float, limit: int = 500) -> list[str]:
        """Contacts silent since `before` whose message-derived data was not purged since
        they last spoke (retention)."""
        self.flush()
        c = self.customers
        last = sa.func.coalesce(c.c.last_inbound, c.c.first_seen, 0.0)
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(c.c.id)
                    .where(last < before, sa.or_(c.c.purged_at.is_(None), c.c.purged_at < last))
                    .order_by(c.c.id)
                    .limit(limit)
                ).scalars()
            )

    # -- writes -------------------------------------------------------------------------
    def upsert(self, contact_id: str, at: datetime, **values: Any) -> bool:
        """Create or update one customer's fields (see FIELDS). True when created."""
        unknown = set(values) - FIELDS
        if unknown:
            raise Problem(
                "customer.unknown_fields",
                "unknown customer fields: {fields}",
                fields=sorted(unknown),
            )
        if "stage" in values and values["stage"] not in STAGES:
            raise bad_stage(str(values["stage"]))
        if not contact_id or len(contact_id) > 128:
            raise Problem("customer.bad_id", "a contact id has 1-128 characters", id=contact_id)
        self.flush()
        self._channels.pop(contact_id, None)
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
                        **{
                            "first_seen": at.timestamp(),
                            "stage_at": at.timestamp(),
                            "consent": {},
                            **values,
                        },
                    )
                )
        if not updated:
            self._tell(BookChange("created", contact_id, at.timestamp(), source="upsert"))
        return not updated

    def set_stage(self, contact_id: str, stage: str, at: datetime, source: str = "") -> str:
        """Move a contact to a lifecycle stage; returns the previous stage ("" if new)."""
        if stage not in STAGES:
            raise bad_stage(stage)
        before = self.get(contact_id)
        previous = before.stage if before else ""
        if previous == stage:
            return previous
        self.upsert(contact_id, at, stage=stage, stage_at=at.timestamp())
        self._tell(
            BookChange(
                "stage", contact_id, at.timestamp(), stage=stage, previous=previous, source=source
            )
        )
        return previous

    def record_consent(
        self,
        contact_id: str,
        purpose: str,
        at: datetime,
        *,
        how: str,
        source: str = "",
        granted: bool = True,
    ) -> dict[str, Any]:
        """What the contact agreed to (purpose), when, and how we know (how/source).
        The latest record per purpose is kept on the customer; plugins record the history
        as events."""
        if not purpose or len(purpose) > 32:
            raise Problem(
                "customer.bad_purpose",
                "a consent purpose is a short word like contact or marketing",
                purpose=purpose,
            )
        customer = self.get(contact_id)
        consent = dict(customer.consent) if customer else {}
        entry = {"granted": granted, "at": at.timestamp(), "how": how, "source": source}
        consent[purpose] = entry
        self.upsert(contact_id, at, consent=consent)
        return entry

    def add_note(self, contact_id: str, text: str, at: datetime) -> str:
        """Append a dated line to the operator notes (the oldest lines give way past
        NOTES_MAX characters). Returns the notes."""
        text = " ".join(text.split())
        if not text:
            raise Problem("customer.empty_note", "an empty note")
        customer = self.get(contact_id)
        lines = [line for line in (customer.notes if customer else "").split("\n") if line]
        lines.append(f"{at:%Y-%m-%d %H:%M} {text}")
        while len(lines) > 1 and len("\n".join(lines)) > NOTES_MAX:
            lines.pop(0)
        notes = "\n".join(lines)[-NOTES_MAX:]
        self.upsert(contact_id, at, notes=notes)
        return notes

    def mark_outbound(self, last: Mapping[str, float]) -> int:
        """Set last_outbound for contacts we reached (batch); unknown ids are ignored."""
        c = self.customers
        changed = 0
        with self.engine.begin() as conn:
            for contact_id, ts in last.items():
                changed += conn.execute(
                    sa.update(c)
                    .where(
                        c.c.id == contact_id,
                        sa.or_(c.c.last_outbound.is_(None), c.c.last_outbound < ts),
                    )
                    .values(last_outbound=ts)
                ).rowcount
        return changed

    def tag(
        self, contact_id: str, tags: Iterable[str], at: datetime, source: str = ""
    ) -> list[str]:
        """Add tags; returns the ones that were new."""
        have = self.tags(contact_id)
        new = [t for t in dict.fromkeys(tags) if t and t not in have]
        for t in new:
            check_tag(t)
        if not new:
            return []
        self.upsert(contact_id, at)
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(self.tags_table),
                [
                    {
                        "contact_id": contact_id,
                        "tag": t,
                        "added_at": at.timestamp(),
                        "source": source[:64],
                    }
                    for t in new
                ],
            )
        self._tag_cache.pop(contact_id, None)
        self._tell(BookChange("tagged", contact_id, at.timestamp(), tuple(new), source=source))
        return new

    def untag(self, contact_id: str, tags: Iterable[str], source: str = "") -> list[str]:
        have = self.tags(contact_id)
        gone = [t for t in dict.fromkeys(tags) if t in have]
        if gone:
            t = self.tags_table
            with self.engine.begin() as conn:
                conn.execute(sa.delete(t).where(t.c.contact_id == contact_id, t.c.tag.in_(gone)))
            self._tag_cache.pop(contact_id, None)
            self._tell(BookChange("untagged", contact_id, 0.0, tuple(gone), source=source))
        return gone

    def untag_by_source(self, contact_id: str, source_prefix: str) -> list[str]:
        """Remove the tags a given kind of source added (e.g. "keyword" for tags derived
        from messages): retention purges."""
        t = self.tags_table
        with self.engine.begin() as conn:
            gone = list(
                conn.execute(
                    sa.select(t.c.tag).where(
                        t.c.contact_id == contact_id,
                        t.c.source.startswith(source_prefix, autoescape=True),
                    )
                ).scalars()
            )
            if gone:
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
        self._channels.pop(contact_id, None)
        self._touched.pop(contact_id, None)
        self._tell(BookChange("deleted", contact_id, 0.0))
        return bool(gone)

    def forget_cached(self, contact_id: str) -> None:
        """Drop in-memory traces of a contact (after its rows were rewritten elsewhere)."""
        self._tag_cache.pop(contact_id, None)
        self._channels.pop(contact_id, None)
        self._touched.pop(contact_id, None)


def valid_tag(tag: str) -> bool:
    return bool(tag) and len(tag) <= 64 and not any(ch.isspace() or ch in "()" for ch in tag)


_INSERT_COLUMNS = [
    "id",
    "name",
    "alias",
    "channel",
    "stage",
    "first_seen",
    "last_inbound",
    "last_outbound",
    "is_friend",
    "notes",
    "consent",
    "stage_at",
    "purged_at",
]


def _touched_row(contact_id: str, name: str, ts: float, friend: bool | None) -> dict[str, Any]:
    """A contact first seen speaking: every column given (a prepared insert applies no
    column defaults)."""
    return {
        "id": contact_id,
        "name": name,
        "alias": "",
        "channel": "",
        "stage": "engaged",
        "first_seen": ts,
        "last_inbound": ts,
        "last_outbound": None,
        "is_friend": friend is not False,
        "notes": "",
        "consent": {},
        "stage_at": ts,
        "purged_at": None,
    }


def check_tag(tag: str) -> None:
    if not valid_tag(tag):
        raise Problem(
            "customer.bad_tag", "tag {tag!r}: 1-64 characters, no spaces or parentheses", tag=tag
        )


def bad_stage(stage: str) -> Problem:
    return Problem(
        "customer.bad_stage", "stage {stage!r}: one of {stages}", stage=stage, stages=STAGES
    )


def facts_of(tags: frozenset[str], customer: Customer, opted_out: bool) -> frozenset[str]:
    words = set(tags)
    words.add(f"stage:{customer.stage}")
    if customer.channel:
        words.add(f"channel:{customer.channel}")
    if customer.is_friend:
        words.add("friend")
    if customer.stage == "churned":
        words.add("churned")
    if opted_out:
        words.add("opted_out")
    return frozenset(words)


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
        stage_at=row.stage_at,
        purged_at=row.purged_at,
    )
