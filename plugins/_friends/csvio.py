"""CSV for operators who live in spreadsheets: import and export of the customer book, and
the people to add (with the consent source of each row).

Excel on Chinese Windows saves CSV as GBK, elsewhere as UTF-8 (often with a BOM): both are
read. Exports are UTF-8 with a BOM so Excel shows Chinese correctly. Headers may be the
English names or the aliases in persona/friends/csv.toml. A bad row is reported with its
line number and the reason; the other rows go in."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from plugins._friends.adds import AddRow
from plugins._friends.rules import Columns
from plugins._friends.state import Ctx
from pond import STAGES, Problem, bad_stage, check_tag

_SPLIT = re.compile(r"[;,\s\u3001\uff0c\uff1b]+")  # ; , space 、 ， ；
_ID = re.compile(r"^[^\s]{1,128}$")
EXPORT_COLUMNS = (
    "id",
    "name",
    "alias",
    "channel",
    "stage",
    "tags",
    "notes",
    "first_seen",
    "last_inbound",
    "last_outbound",
    "is_friend",
    "opted_out",
    "consent_source",
    "consent_at",
    "consent",
)
IGNORED_ON_IMPORT = ("last_inbound", "last_outbound", "consent")


@dataclass
class Report:
    rows: int = 0
    imported: int = 0
    created: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "imported": self.imported,
            "created": self.created,
            "errors": [{"line": line, "reason": reason} for line, reason in self.errors],
            "warnings": [{"line": line, "reason": reason} for line, reason in self.warnings],
        }


def _say(code: str, english: str, **values: Any) -> str:
    """A warning or row error for the import report, in the operator's language."""
    return str(Problem(code, english, **values))


def decode(raw: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise Problem("csv.encoding", "the file is neither UTF-8 nor GBK text: save it as CSV UTF-8")


def read(path: Path, columns: Columns, report: Report) -> list[tuple[int, dict[str, str]]]:
    """Rows as {canonical column: cell}, with the line each starts on. Unknown headers are
    warned about and ignored; a file without an id column is refused."""
    try:
        text = decode(path.read_bytes())
    except OSError as error:
        raise Problem(
            "csv.unreadable",
            "cannot read {path}: {error}",
            path=path,
            error=error.strerror or error,
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise Problem(
            "csv.empty", "{path} is empty: the first line must name the columns", path=path
        ) from None
    except csv.Error as error:
        raise Problem("csv.header", "{path}:1: {error}", path=path, error=error) from None
    names: list[str | None] = []
    for cell in header:
        canonical = columns.canonical(cell)
        if canonical is None and cell.strip():
            unknown = _say(
                "csv.unknown_column",
                "column {column!r} is not known and is ignored",
                column=cell.strip(),
            )
            report.warnings.append((1, unknown))
        names.append(canonical)
    if "id" not in names:
        raise Problem(
            "csv.no_id_column",
            "{path}:1: no id column; the first line must name the columns, e.g. "
            "id,name,tags (see persona/friends/csv.toml for the accepted names)",
            path=path,
        )
    rows = []
    line = 1
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            report.errors.append(
                (start, _say("csv.broken", "cannot be read as CSV: {error}", error=error))
            )
            break
        line = start
        if not any(c.strip() for c in cells):
            continue
        report.rows += 1
        if len(cells) > len(names) and any(c.strip() for c in cells[len(names) :]):
            too_many = _say(
                "csv.too_many_cells",
                "{cells} cells but the header names {columns} columns "
                "(a comma inside a cell needs quotes)",
                cells=len(cells),
                columns=len(names),
            )
            report.errors.append((line, too_many))
            continue
        row = {n: c.strip() for n, c in zip(names, cells, strict=False) if n is not None}
        rows.append((line, row))
    return rows


def split_tags(cell: str) -> list[str]:
    return [t for t in _SPLIT.split(cell.strip()) if t]


def parse_time(cell: str, tz: Any) -> float | None:
    cell = cell.strip()
    if not cell:
        return None
    try:
        moment = datetime.fromisoformat(cell.replace("/", "-"))
    except ValueError:
        raise Problem(
            "csv.bad_date", "{cell!r} is not a date like 2026-11-23 or 2026-11-23 10:00", cell=cell
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.timestamp()


def _check_id(cell: str) -> str:
    if not cell:
        raise Problem("csv.empty_id", "id is empty")
    if not _ID.match(cell):
        raise Problem(
            "csv.bad_id",
            "id {id!r}: a contact id has no spaces and at most 128 characters",
            id=cell,
        )
    return cell


# -- the customer book -------------------------------------------------------------------------
def import_book(ctx: Ctx, path: Path) -> Report:
    """Create or update customers. Empty cells change nothing; tags are added ("-tag"
    removes one); opted_out=yes opts the person out (a CSV never opts anyone back in)."""
    st = ctx.state
    report = Report()
    tz = ctx.clock.tz
    seen: dict[str, int] = {}
    for line, row in read(path, st.data.columns, report):
        try:
            plan = _plan(row, st.data.columns, tz)
        except ValueError as error:
            report.errors.append((line, str(error)))
            continue
        cid = plan["id"]
        if cid in seen:
            twice = _say(
                "csv.id_again",
                "id {id} is also on line {line}; both applied",
                id=cid,
                line=seen[cid],
            )
            report.warnings.append((line, twice))
        seen[cid] = line
        now = ctx.now
        created = ctx.book.upsert(cid, now, **plan["fields"])
        if plan["channel"]:
            ctx.book.tag(cid, [f"channel:{plan['channel']}"], now, source="import")
        if plan["add"]:
            ctx.book.tag(cid, plan["add"], now, source="import")
        if plan["remove"]:
            ctx.book.untag(cid, plan["remove"], source="import")
        if plan["note"]:
            customer = ctx.book.get(cid)
            if customer is None or plan["note"] not in customer.notes:
                ctx.book.add_note(cid, plan["note"], now)
        if plan["consent"]:
            at = plan["consent_at"] or now.timestamp()
            ctx.book.record_consent(
                cid,
                "contact",
                datetime.fromtimestamp(at, tz),
                how="import",
                source=plan["consent"],
            )
        if plan["opted_out"]:
            ctx.outbox.opt_out(cid, source="import")
        report.imported += 1
        report.created += int(created)
    ctx.record("book_import", **_numbers(report))
    return report


def _plan(row: dict[str, str], columns: Columns, tz: Any) -> dict[str, Any]:
    """Validate a whole row before anything is written: a bad row changes nothing."""
    cid = _check_id(row.get("id", ""))
    fields: dict[str, Any] = {}
    for name in ("name", "alias"):
        if row.get(name):
            fields[name] = row[name][:255]
    channel = row.get("channel", "")
    if channel:
        check_tag(f"channel:{channel}")
        fields["channel"] = channel[:64]
    stage = row.get("stage", "")
    if stage:
        if stage not in STAGES:
            raise bad_stage(stage)
        fields["stage"] = stage
    first = parse_time(row.get("first_seen", ""), tz)
    if first is not None:
        fields["first_seen"] = first
    friend = columns.boolean(row.get("is_friend", ""))
    if friend is not None:
        fields["is_friend"] = friend
    add: list[str] = []
    remove: list[str] = []
    for tag in split_tags(row.get("tags", "")):
        target = remove if tag.startswith("-") and len(tag) > 1 else add
        tag = tag[1:] if target is remove else tag
        check_tag(tag)
        target.append(tag)
    opted = columns.boolean(row.get("opted_out", ""))
    return {
        "id": cid,
        "fields": fields,
        "channel": channel,
        "add": add,
        "remove": remove,
        "note": " ".join(row.get("notes", "").split()),
        "consent": row.get("consent_source", "")[:255],
        "consent_at": parse_time(row.get("consent_at", ""), tz),
        "opted_out": bool(opted),
    }


def export_book(ctx: Ctx, path: Path) -> int:
    tz = ctx.clock.tz
    opted = ctx.book.opted_out_ids()
    n = 0

    def when(ts: float | None) -> str:
        return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M") if ts else ""

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(EXPORT_COLUMNS)
        for c in ctx.book.iter_all():
            consent: Any = c.consent.get("contact") or next(iter(c.consent.values()), {})
            writer.writerow(
                [
                    c.id,
                    c.name,
                    c.alias,
                    c.channel,
                    c.stage,
                    ";".join(sorted(c.tags)),
                    c.notes,
                    when(c.first_seen),
                    when(c.last_inbound),
                    when(c.last_outbound),
                    "yes" if c.is_friend else "no",
                    "yes" if c.id in opted else "",
                    consent.get("source", "") if isinstance(consent, dict) else "",
                    when(consent.get("at")) if isinstance(consent, dict) else "",
                    json.dumps(c.consent, ensure_ascii=False) if c.consent else "",
                ]
            )
            n += 1
    ctx.record("book_export", rows=n)
    return n


# -- people to add -----------------------------------------------------------------------------
def read_adds(ctx: Ctx, path: Path) -> tuple[list[AddRow], Report]:
    """Rows for the paced adding queue. Each needs an id and a consent source (where the
    person agreed to be contacted); rows without one are refused."""
    st = ctx.state
    report = Report()
    rows: list[AddRow] = []
    seen: set[str] = set()
    for line, row in read(path, st.data.columns, report):
        try:
            cid = _check_id(row.get("id", ""))
            consent = row.get("consent_source", "")
            if not consent:
                raise Problem(
                    "csv.no_consent",
                    "consent_source is empty: say where this person agreed to be contacted "
                    "(e.g. the store sign-up sheet)",
                )
            tags = split_tags(row.get("tags", ""))
            for tag in tags:
                check_tag(tag)
            channel = row.get("channel", "")
            if channel:
                check_tag(f"channel:{channel}")
        except ValueError as error:
            report.errors.append((line, str(error)))
            continue
        if cid in seen:
            twice = _say("csv.id_twice", "id {id} is listed twice; the first row counts", id=cid)
            report.warnings.append((line, twice))
            continue
        seen.add(cid)
        rows.append(AddRow(cid, row.get("name", ""), consent, tuple(tags), channel, line))
    return rows, report


def _numbers(report: Report) -> dict[str, int]:
    return {
        "rows": report.rows,
        "imported": report.imported,
        "created": report.created,
        "errors": len(report.errors),
    }
