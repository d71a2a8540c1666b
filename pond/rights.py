"""Data rights (PIPL): export everything stored about one contact, erase it, and purge the
message-derived data of contacts who went silent.

"Everything" is found, not listed by hand: the customer book, the governor's ledger
(opt-out, marketing frequency, bulk deliveries), the events, every plugin's key/values and
TinyDB documents, every other SQL table (plugins' own), and files under the data dir. A
value names the contact when it holds the contact id as a token.

Erasure deletes what is about the contact (their rows, pending deliveries, entries whose
top-level field is their id, export files) and rewrites the rest (events, delivered bulk
rows, other plugins' records that mention them) with a random token in place of the id and
without their name, so counts stay right and nothing names them. SQLite is then vacuumed
and its WAL truncated, so no deleted bytes linger in the files, and TinyDB backups are
rolled forward. Files that cannot be rewritten safely (logs) are reported, not touched.

What remains is a keyed one-way hash (namespace "rights"): if the person comes back, their
earlier opt-out is honoured again (suppressed()). Both requests are audited as events
without personal data (who asked, from where, what was found or done).

Plugins hear about an erasure through the customer book (BookChange "deleted"), before any
other record is touched, so they can keep what they must (as a hash, see fingerprint())."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from tinydb.table import Document

from pond.commands import REDACTED
from pond.ledger import RowStatus, action_from_json, action_to_json

if TYPE_CHECKING:
    from pond.app import App

log = logging.getLogger("pond.rights")

NAMESPACE = "rights"
FORMAT = "pond.contact-export/1"
# Tables whose meaning is known here; every other table is swept generically.
KERNEL_TABLES = frozenset(
    {
        "customers",
        "customer_tags",
        "events",
        "kv",
        "seen_messages",
        "out_counters",
        "out_optout",
        "out_marketing",
        "out_jobs",
        "out_rows",
        "inbox",
        "out_queue",
        "out_row_parts",
    }
)
AUDIT_KIND = "admin.command"
# The command line's requests and answers in flight (pond/health/mailbox.py): an answer may
# quote the person (a note shown by 客户资料); it is gone rather than half scrubbed.
_MAILBOX = ("health", "cli:")
_SQLITE_FILES = re.compile(r".*\.(sqlite3?|db)(-wal|-shm|-journal)?$")


def token_re(contact_id: str) -> re.Pattern[str]:
    # Ids are ASCII words: a token is not glued to other id characters ("alice" is not in
    # "alice2", but is in "greetings:alice").
    return re.compile(r"(?<![A-Za-z0-9_-])" + re.escape(contact_id) + r"(?![A-Za-z0-9_-])")


def _like(contact_id: str) -> str:
    escaped = contact_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass
class Scrubber:
    contact_id: str
    token: str = ""
    names: tuple[str, ...] = ()
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        self.pattern = token_re(self.contact_id)
        # One-character names would cut through unrelated text.
        self.names = tuple(n for n in self.names if n and len(n) >= 2)

    def mentions(self, value: Any) -> bool:
        if isinstance(value, str):
            return bool(self.pattern.search(value))
        if isinstance(value, dict):
            return any(self.mentions(k) or self.mentions(v) for k, v in value.items())
        if isinstance(value, list | tuple):
            return any(self.mentions(v) for v in value)
        return False

    def about(self, value: Any) -> bool:
        """A record about the contact: their id is one of its top-level values."""
        if isinstance(value, dict):
            return any(v == self.contact_id for v in value.values())
        return bool(value == self.contact_id)

    def text(self, value: str) -> str:
        value = self.pattern.sub(self.token, value)
        for name in self.names:
            value = value.replace(name, "")
        return value

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                self.text(str(k)): self.scrub(v) for k, v in value.items() if k != self.contact_id
            }
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value if v != self.contact_id]
        return value


# -- suppression of erased contacts -----------------------------------------------------------
def fingerprint(app: App, contact_id: str) -> str:
    """A keyed one-way hash of a contact id (the key is random per installation)."""
    kv = app.store.namespace(NAMESPACE)
    salt = kv.get("salt")
    if not isinstance(salt, str):
        salt = secrets.token_hex(16)
        kv.set("salt", salt)
    return hashlib.sha256(f"{salt}:{contact_id}".encode()).hexdigest()[:32]


def suppressed(app: App, contact_id: str) -> dict[str, Any] | None:
    """What an erased contact had asked for ({"opted_out": bool, "at": ...}), or None."""
    kv = app.store.namespace(NAMESPACE)
    if kv.get("salt") is None:
        return None  # nobody was ever erased here
    value = kv.get("erased:" + fingerprint(app, contact_id))
    return value if isinstance(value, dict) else None


def reapply(app: App, contact_id: str) -> bool:
    """An erased contact is back (new friend, new message): honour their opt-out again."""
    found = suppressed(app, contact_id)
    if found and found.get("opted_out") and not app.ledger.is_opted_out(contact_id):
        app.outbox.opt_out(contact_id, source="suppression")
        return True
    return False


# -- finding ----------------------------------------------------------------------------------
def _is_text(column: sa.Column[Any]) -> bool:
    return isinstance(column.type, sa.String | sa.JSON)


def _iso(ts: float | None, tz: Any) -> str | None:
    return datetime.fromtimestamp(ts, tz).isoformat() if ts is not None else None


def _safe(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    return value


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if isinstance(v, str) and v[:1] in "[{":
            with contextlib.suppress(ValueError):
                v = json.loads(v)
        out[k] = v
    return out


def _events(app: App, s: Scrubber) -> list[dict[str, Any]]:
    sql = app.store.sql
    sql.flush()
    ev = sql.events_table
    cid = s.contact_id
    with sql.engine.connect() as conn:
        rows = conn.execute(
            sa.select(ev)
            .where(
                sa.or_(
                    ev.c.contact_id == cid,
                    ev.c.chat_id == cid,
                    ev.c.room_id == cid,
                    sa.cast(ev.c.data, sa.Text).like(_like(cid), escape="\\"),
                )
            )
            .order_by(ev.c.id)
        ).mappings()
        found = [dict(r) for r in rows]
    return [
        r
        for r in found
        if cid in (r["contact_id"], r["chat_id"], r["room_id"]) or s.mentions(r["data"])
    ]


def _kv(app: App, s: Scrubber) -> list[dict[str, Any]]:
    kv = app.store.sql.kv_table
    with app.store.sql.engine.connect() as conn:
        rows = conn.execute(
            sa.select(kv).where(
                kv.c.namespace != NAMESPACE,
                sa.or_(
                    kv.c.key.like(_like(s.contact_id), escape="\\"),
                    sa.cast(kv.c.value, sa.Text).like(_like(s.contact_id), escape="\\"),
                ),
            )
        ).mappings()
        found = [dict(r) for r in rows]
    return [r for r in found if s.mentions(r["key"]) or s.mentions(r["value"])]


def _docs(app: App, s: Scrubber) -> list[tuple[str, str, int, dict[str, Any]]]:
    docs = app.store.docs
    found: list[tuple[str, str, int, dict[str, Any]]] = []
    if not docs.docs_dir.is_dir():
        return found
    for path in sorted(docs.docs_dir.glob("*.json")):
        try:
            raw = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if s.contact_id not in raw:
            continue
        try:
            db = docs.db(path.stem)
        except Exception as error:  # a corrupt or foreign file: reported, never touched
            log.warning("data rights: cannot read %s: %s", path, error)
            continue
        for name in sorted(db.tables()):
            for doc in db.table(name).all():
                if s.mentions(dict(doc)):
                    found.append((path.stem, name, doc.doc_id, dict(doc)))
    return found


def _other_tables(app: App, s: Scrubber) -> dict[str, tuple[sa.Table, list[dict[str, Any]]]]:
    engine = app.store.sql.engine
    reflected = sa.MetaData()
    reflected.reflect(bind=engine)
    found: dict[str, tuple[sa.Table, list[dict[str, Any]]]] = {}
    for table in reflected.sorted_tables:
        if table.name in KERNEL_TABLES or table.name.startswith("sqlite_"):
            continue
        cols = [c for c in table.columns if _is_text(c)]
        if not cols:
            continue
        conds = [sa.cast(c, sa.Text).like(_like(s.contact_id), escape="\\") for c in cols]
        with engine.connect() as conn:
            rows = [
                dict(r) for r in conn.execute(sa.select(table).where(sa.or_(*conds))).mappings()
            ]
        rows = [r for r in rows if s.mentions(_decoded(r))]
        if rows:
            found[table.name] = (table, rows)
    return found


def _deliveries(app: App, s: Scrubber) -> list[dict[str, Any]]:
    rows = app.ledger.rows
    with app.store.sql.engine.connect() as conn:
        found = [
            dict(r)
            for r in conn.execute(
                sa.select(rows).where(
                    sa.or_(
                        rows.c.recipient == s.contact_id,
                        rows.c.action.like(_like(s.contact_id), escape="\\"),
                    )
                )
            ).mappings()
        ]
    return [r for r in found if r["recipient"] == s.contact_id or s.mentions(r["action"])]


def _files(app: App, s: Scrubber) -> list[Path]:
    """Files under the data dir that mention the contact (not the database, not docs)."""
    root = app.settings.bot.data_dir
    docs = app.store.docs.docs_dir
    out: list[Path] = []
    if not root.is_dir():
        return out
    needle = s.contact_id.encode()
    for path in sorted(root.rglob("*")):
        if not path.is_file() or docs in path.parents or _SQLITE_FILES.match(path.name):
            continue
        with contextlib.suppress(OSError):
            if path.stat().st_size < 200_000_000 and needle in path.read_bytes():
                out.append(path)
    return out


# -- export -----------------------------------------------------------------------------------
def export_contact(app: App, contact_id: str, *, by: str = "", origin: str = "") -> dict[str, Any]:
    """Everything stored about one contact, JSON-friendly. The request is audited (who
    asked, from where, whether anything was found), without personal data."""
    tz = app.clock.tz
    s = Scrubber(contact_id)
    customer = app.book.get(contact_id)
    ledger = app.ledger
    with app.store.sql.engine.connect() as conn:
        opt = (
            conn.execute(sa.select(ledger.optout).where(ledger.optout.c.contact_id == contact_id))
            .mappings()
            .first()
        )
    deliveries = []
    for r in _deliveries(app, s):
        action = action_from_json(r["action"])
        deliveries.append(
            {
                "job": r["job"],
                "status": r["status"],
                "reason": r["reason"],
                "updated_at": _iso(r["updated_at"], tz),
                "kind": action.kind.value,
                "key": action.key,
                "text": action.text,
            }
        )
    events = [
        {
            "ts": r["ts"].astimezone(tz).isoformat(),
            "kind": r["kind"],
            "plugin": r["plugin"],
            "chat_id": r["chat_id"],
            "room_id": r["room_id"],
            "data": r["data"],
        }
        for r in _events(app, s)
    ]
    tables = {
        name: [_safe(_decoded(r)) for r in rows]
        for name, (_, rows) in _other_tables(app, s).items()
    }
    data: dict[str, Any] = {
        "format": FORMAT,
        "contact_id": contact_id,
        "exported_at": app.clock.now().isoformat(),
        "customer": _customer(customer.as_dict(), tz) if customer else None,
        "tags": [
            {**d, "added_at": _iso(d["added_at"], tz)} for d in app.book.tag_details(contact_id)
        ],
        "consent": {
            k: {**v, "at": _iso(v.get("at"), tz)} if isinstance(v, dict) else v
            for k, v in (customer.consent if customer else {}).items()
        },
        "opt_out": {"at": _iso(opt["at"], tz), "source": opt["source"]} if opt else None,
        "marketing_last_at": _iso(ledger.last_marketing(contact_id), tz),
        "deliveries": deliveries,
        "events": _safe(events),
        "plugin_data": {
            "kv": [
                {"namespace": r["namespace"], "key": r["key"], "value": _safe(r["value"])}
                for r in _kv(app, s)
            ],
            "docs": [
                {"namespace": ns, "table": name, "doc_id": doc_id, "doc": _safe(doc)}
                for ns, name, doc_id, doc in _docs(app, s)
            ],
            "tables": tables,
        },
        "files": [str(p.relative_to(app.settings.bot.data_dir)) for p in _files(app, s)],
    }
    app.record("rights.export", by=by, origin=origin, found=not is_empty(data), **summary(data))
    return data


def _customer(record: dict[str, Any], tz: Any) -> dict[str, Any]:
    out = dict(record)
    for key in ("stage_at", "first_seen", "last_inbound", "last_outbound", "purged_at"):
        out[key] = _iso(out.get(key), tz)
    out.pop("consent", None)
    return out


def is_empty(data: dict[str, Any]) -> bool:
    plugin = data["plugin_data"]
    return (
        data["customer"] is None
        and data["opt_out"] is None
        and not any(data[k] for k in ("tags", "deliveries", "events"))
        and not any(plugin[k] for k in ("kv", "docs", "tables"))
    )


def summary(data: dict[str, Any]) -> dict[str, int]:
    plugin = data["plugin_data"]
    return {
        "tags": len(data["tags"]),
        "events": len(data["events"]),
        "deliveries": len(data["deliveries"]),
        "records": len(plugin["kv"])
        + len(plugin["docs"])
        + sum(map(len, plugin["tables"].values())),
    }


def to_csv(data: dict[str, Any]) -> str:
    """One row per value: section, item, field, value (for spreadsheets)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "item", "field", "value"])

    def walk(section: str, item: str, value: Any, prefix: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(section, item, v, f"{prefix}{k}.")
            return
        text = json.dumps(value, ensure_ascii=False) if isinstance(value, list) else value
        writer.writerow([section, item, prefix.rstrip("."), "" if text is None else text])

    walk("meta", "", {"contact_id": data["contact_id"], "exported_at": data["exported_at"]})
    for section in ("customer", "consent", "opt_out"):
        walk(section, "", data.get(section) or {})
    walk("meta", "", {"marketing_last_at": data["marketing_last_at"]})
    for section in ("tags", "deliveries", "events"):
        for i, item in enumerate(data[section]):
            walk(section, str(i + 1), item)
    for kind in ("kv", "docs"):
        for i, item in enumerate(data["plugin_data"][kind]):
            walk(f"plugin_{kind}", str(i + 1), item)
    for name, rows in data["plugin_data"]["tables"].items():
        for i, item in enumerate(rows):
            walk(f"table:{name}", str(i + 1), item)
    for i, name in enumerate(data["files"]):
        writer.writerow(["files", str(i + 1), "path", name])
    return out.getvalue()


def write_export(app: App, data: dict[str, Any], folder: Path, fmt: str = "json") -> Path:
    """Write an export under `folder` (relative to the data dir), owner-only. The file name
    is random: a file name must not name the person either."""
    folder = folder if folder.is_absolute() else app.settings.bot.data_dir / folder
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(folder, 0o700)
    path = folder / f"contact-{secrets.token_hex(6)}.{fmt}"
    text = to_csv(data) if fmt == "csv" else json.dumps(data, ensure_ascii=False, indent=2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8-sig" if fmt == "csv" else "utf-8", newline="") as f:
        f.write(text)
    return path


# -- erasure ----------------------------------------------------------------------------------
@dataclass
class Erasure:
    found: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    left: list[str] = field(default_factory=list)  # files that still mention them (logs)

    def add(self, kind: str, n: int) -> None:
        if n:
            self.counts[kind] = self.counts.get(kind, 0) + n


def erase_contact(app: App, contact_id: str, *, by: str = "", origin: str = "") -> Erasure:
    """Delete or anonymise everything about a contact (see the module docstring)."""
    app.book.flush()
    app.store.sql.flush()
    customer = app.book.get(contact_id)
    names = tuple(n for n in (customer.name, customer.alias) if n) if customer else ()
    s = Scrubber(contact_id, f"erased-{secrets.token_hex(4)}", names)
    done = Erasure(found=customer is not None or app.ledger.is_opted_out(contact_id))
    opted_out = app.ledger.is_opted_out(contact_id)
    app.store.namespace(NAMESPACE).set(
        "erased:" + fingerprint(app, contact_id),
        {"at": app.clock.now().timestamp(), "opted_out": opted_out},
    )
    # First the book: its subscribers (plugins) hear "deleted" while everything else is
    # still there to look at.
    done.add("customer", int(app.book.delete(contact_id)))
    done.add("queued_actions", app.outbox.forget(contact_id))
    app.pauses.resume(contact_id)
    app.admins.unbind(contact_id)
    ledger = app.ledger
    with app.store.sql.engine.begin() as conn:
        for table in (ledger.optout, ledger.marketing):
            done.add(
                table.name,
                conn.execute(sa.delete(table).where(table.c.contact_id == contact_id)).rowcount,
            )
    done.add("deliveries", _erase_deliveries(app, s))
    done.add("journal", app.inbox.erase(contact_id))
    done.add("events", _erase_events(app, s))
    done.add("records", _erase_kv(app, s))
    done.add("records", _erase_docs(app, s))
    done.add("records", _erase_tables(app, s))
    _erase_jobs_meta(app, s)
    done.add("files", _erase_files(app, s, done))
    app.book.forget_cached(contact_id)
    _compact(app)
    done.found = done.found or bool(done.counts)
    # Audited without personal data: who asked, from where, how much went.
    app.record("rights.erase", by=by, origin=origin, found=done.found, **done.counts)
    return done


def _erase_deliveries(app: App, s: Scrubber) -> int:
    rows = app.ledger.rows
    n = 0
    with app.store.sql.engine.begin() as conn:
        for r in _deliveries(app, s):
            where = sa.and_(rows.c.job == r["job"], rows.c.recipient == r["recipient"])
            mine = r["recipient"] == s.contact_id
            if mine and r["status"] in (RowStatus.PENDING.value, RowStatus.HELD.value):
                n += conn.execute(sa.delete(rows).where(where)).rowcount  # never sent: gone
                continue
            data = json.loads(action_to_json(action_from_json(r["action"])))
            if mine:
                data.update(text="", ticket="")  # what we sent them may quote them
            for key in ("to", "contact_id", "member_id"):
                if data.get(key) == s.contact_id:
                    data[key] = s.token
            data = s.scrub(data)
            n += conn.execute(
                sa.update(rows)
                .where(where)
                .values(
                    recipient=s.token if mine else r["recipient"],
                    action=json.dumps(data, ensure_ascii=False),
                )
            ).rowcount
    return n


def _erase_events(app: App, s: Scrubber) -> int:
    sql = app.store.sql
    ev = sql.events_table
    found = _events(app, s)
    with sql.engine.begin() as conn:
        for r in found:
            values: dict[str, Any] = {
                col: s.token if r[col] == s.contact_id else s.text(r[col])
                for col in ("contact_id", "chat_id", "room_id")
            }
            values["data"] = s.scrub(r["data"])
            if r["kind"] == AUDIT_KIND and isinstance(r["data"], dict):
                values["data"]["args"] = _audit_args(app, s, r["data"].get("args"))
            conn.execute(sa.update(ev).where(ev.c.id == r["id"]).values(**values))
    return len(found)


def _audit_args(app: App, s: Scrubber, args: Any) -> list[str]:
    """A command that named the person may have carried free text about them next to their
    id (a note with a phone number and an address): audit rows written before arguments
    were minimised, or by a command that keeps its words. Only other known ids stay."""
    if not isinstance(args, list):
        return []
    return [
        s.token if a == s.contact_id else a if app.is_known_id(str(a)) else REDACTED for a in args
    ]


def _erase_kv(app: App, s: Scrubber) -> int:
    kv = app.store.sql.kv_table
    found = _kv(app, s)
    with app.store.sql.engine.begin() as conn:
        for r in found:
            where = sa.and_(kv.c.namespace == r["namespace"], kv.c.key == r["key"])
            transient = (r["namespace"], str(r["key"])[:4]) == _MAILBOX
            if s.mentions(r["key"]) or s.about(r["value"]) or transient:
                conn.execute(sa.delete(kv).where(where))
            else:
                conn.execute(sa.update(kv).where(where).values(value=s.scrub(r["value"])))
    app.store.sql.forget_cached()  # written behind the store's key/value cache
    return len(found)


def _erase_docs(app: App, s: Scrubber) -> int:
    docs = app.store.docs
    found = _docs(app, s)
    touched = set()
    for ns, name, doc_id, doc in found:
        table = docs.db(ns).table(name)
        table.remove(doc_ids=[doc_id])
        if not s.about(doc):
            table.insert(Document(s.scrub(doc), doc_id=doc_id))
        touched.add(ns)
    if docs.docs_dir.is_dir():
        for bak in docs.docs_dir.glob("*.json.bak"):
            with contextlib.suppress(OSError):
                if s.contact_id.encode() in bak.read_bytes():
                    touched.add(bak.name.removesuffix(".json.bak"))
    for ns in touched:
        # Write the (clean) current version again, so the .bak backup is clean too.
        try:
            storage = docs.db(ns).storage
            current = storage.read()
            if current is not None:
                storage.write(current)
        except Exception as error:
            log.warning("data rights: cannot roll docs/%s.json forward: %s", ns, error)
    return len(found)


def _erase_tables(app: App, s: Scrubber) -> int:
    n = 0
    engine = app.store.sql.engine
    for table, rows in _other_tables(app, s).values():
        keys = list(table.primary_key.columns) or list(table.columns)
        text_cols = [c for c in table.columns if _is_text(c)]
        with engine.begin() as conn:
            for row in rows:
                where = sa.and_(
                    *(c.is_(None) if row[c.name] is None else c == row[c.name] for c in keys)
                )
                if any(row[c.name] == s.contact_id for c in text_cols):
                    conn.execute(sa.delete(table).where(where))  # a row about them
                    n += 1
                    continue
                decoded = _decoded(row)
                values = {}
                for c in text_cols:
                    if s.mentions(decoded[c.name]):
                        new = s.scrub(decoded[c.name])
                        if isinstance(row[c.name], str) and not isinstance(new, str):
                            new = json.dumps(new, ensure_ascii=False)
                        values[c.name] = new
                try:
                    with conn.begin_nested():
                        conn.execute(sa.update(table).where(where).values(**values))
                except sa.exc.IntegrityError:
                    conn.execute(sa.delete(table).where(where))
                n += 1
    return n


def _erase_jobs_meta(app: App, s: Scrubber) -> None:
    jobs = app.ledger.jobs
    with app.store.sql.engine.begin() as conn:
        rows = conn.execute(
            sa.select(jobs.c.job, jobs.c.meta).where(
                sa.cast(jobs.c.meta, sa.Text).like(_like(s.contact_id), escape="\\")
            )
        ).all()
        for job, meta in rows:
            if s.mentions(meta):
                conn.execute(sa.update(jobs).where(jobs.c.job == job).values(meta=s.scrub(meta)))


def _erase_files(app: App, s: Scrubber, done: Erasure) -> int:
    """JSON exports about them go; CSV files lose their lines; anything else is reported."""
    n = 0
    for path in _files(app, s):
        name = str(path.relative_to(app.settings.bot.data_dir))
        try:
            raw = path.read_bytes()
            if s.mentions(path.name) or f"meta,,contact_id,{s.contact_id}".encode() in raw:
                path.unlink()  # an export of this very contact
            elif path.suffix == ".json":
                data = json.loads(raw.decode("utf-8"))
                person = data.get("contact") if isinstance(data, dict) else None
                if s.about(data) or (isinstance(person, dict) and s.about(person)):
                    path.unlink()
                else:
                    path.write_text(json.dumps(s.scrub(data), ensure_ascii=False, indent=2))
            elif path.suffix == ".csv":
                text = raw.decode("utf-8-sig")
                kept = [line for line in text.splitlines(True) if not s.pattern.search(line)]
                path.write_text("".join(kept), encoding="utf-8-sig")
            else:
                done.left.append(name)
                continue
        except (OSError, ValueError):
            done.left.append(name)
            continue
        n += 1
    return n


def _compact(app: App) -> None:
    """Deleted rows leave bytes in free pages and in the WAL: rebuild and truncate."""
    sql = app.store.sql
    sql.flush()
    if not sql.is_sqlite:
        return
    with sql.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM")
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


# -- audit rows of older versions ---------------------------------------------------------------
AUDIT_VERSION = 1


def minimise_audit(app: App) -> int:
    """Audit rows written before command arguments were minimised keep notes, names and
    phone numbers verbatim: rewrite them once by the rule new rows follow (only known ids,
    or every word of a command that declared its arguments plain). Returns rows changed."""
    kv = app.store.namespace(NAMESPACE)
    if kv.get("audit_minimised") == AUDIT_VERSION:
        return 0
    sql = app.store.sql
    sql.flush()
    ev = sql.events_table
    changed = 0
    with sql.engine.begin() as conn:
        rows = conn.execute(sa.select(ev.c.id, ev.c.data).where(ev.c.kind == AUDIT_KIND)).all()
        for row_id, data in rows:
            if not isinstance(data, dict) or not isinstance(data.get("args"), list):
                continue
            spec = app.commands.specs.get(str(data.get("command")))
            keep = spec is not None and spec.keep_args
            args = [
                a if keep or a == REDACTED or app.is_known_id(str(a)) else REDACTED
                for a in data["args"]
            ]
            if args != data["args"]:
                conn.execute(
                    sa.update(ev).where(ev.c.id == row_id).values(data={**data, "args": args})
                )
                changed += 1
    kv.set("audit_minimised", AUDIT_VERSION)
    if changed:
        log.info("audit log: %d older command rows now keep only ids", changed)
        _compact(app)  # the old text must not linger in free pages
    return changed


# -- retention --------------------------------------------------------------------------------
def purge_message_data(
    app: App, days: float, *, tag_sources: tuple[str, ...] = ("keyword",), batch: int = 500
) -> dict[str, int]:
    """Drop message-derived data (tags added from message contents, inbound message events)
    of contacts silent for `days`. Their book record, channel and consent stay."""
    now = app.clock.now()
    cutoff = now.timestamp() - days * 86400
    sql = app.store.sql
    sql.flush()
    ev = sql.events_table
    totals = {"contacts": 0, "tags": 0, "events": 0}
    moment = datetime.fromtimestamp(cutoff, app.clock.tz)
    for _ in range(20):  # at most 20 batches a run; the rest next time
        ids = app.book.inactive(cutoff, limit=batch)
        if not ids:
            break
        for cid in ids:
            for source in tag_sources:
                totals["tags"] += len(app.book.untag_by_source(cid, source))
            with sql.engine.begin() as conn:
                totals["events"] += conn.execute(
                    sa.delete(ev).where(
                        ev.c.contact_id == cid, ev.c.kind.startswith("in."), ev.c.ts < moment
                    )
                ).rowcount
            app.book.upsert(cid, now, purged_at=now.timestamp())
            totals["contacts"] += 1
    if totals["contacts"]:
        app.record("rights.retention_purge", days=days, **totals)
    return totals
