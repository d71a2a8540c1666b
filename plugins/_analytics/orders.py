"""Orders imported from a shop's CSV export: one of the ways a conversion is known (the
others are the operator's 成交 command and an order keyword in a customer's message).

An order belongs to a contact found by contact id, or by remark name (alias) or nickname
when exactly one contact has it. Import is idempotent by order id (a re-import of the same
file changes nothing); rows that cannot be matched are reported with their line numbers,
never guessed. Orders are personal data: a contact's erasure deletes theirs (rights.py
sweeps every table holding the id)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from pond import UTCDateTime

TABLE = "analytics_orders"
# Header names a shop export may use, per field (first match wins; case-insensitive).
HEADERS = {
    "order_id": ("order_id", "订单号", "订单编号", "订单id"),
    "contact": ("contact_id", "联系人id", "客户id", "微信id", "wxid", "备注名", "昵称", "客户"),
    "at": ("time", "date", "下单时间", "付款时间", "成交时间", "时间", "日期"),
    "amount": ("amount", "金额", "实付金额", "订单金额", "实付款"),
}
MAX_ERRORS_LISTED = 20


def define_table(metadata: sa.MetaData) -> sa.Table:
    if TABLE in metadata.tables:
        return metadata.tables[TABLE]
    return sa.Table(
        TABLE,
        metadata,
        sa.Column("order_id", sa.String(128), primary_key=True),
        sa.Column("contact_id", sa.String(128), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("amount", sa.Float, nullable=False, default=0.0),
        sa.Column("source", sa.String(64), nullable=False, default=""),
        sa.Index("ix_analytics_orders_contact", "contact_id"),
        sa.Index("ix_analytics_orders_at", "at"),
    )


@dataclass
class ImportResult:
    added: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)
    error_count: int = 0

    def fail(self, line: int, why: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_LISTED:
            self.errors.append(f"第 {line} 行：{why}")


def _pick(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [h.strip().lower().lstrip("\ufeff") for h in header]
    for name in names:
        if name.lower() in lowered:
            return lowered.index(name.lower())
    return None


def _parse_time(text: str, tz: ZoneInfo) -> datetime:
    value = text.strip().replace("/", "-")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"时间「{text}」看不懂（例：2026-11-05 14:30）") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment


def _parse_amount(text: str) -> float:
    value = text.strip().replace(",", "").lstrip("¥￥").strip()
    if not value:
        return 0.0
    try:
        amount = float(value)
    except ValueError:
        raise ValueError(f"金额「{text}」不是数字") from None
    if amount < 0 or amount != amount:
        raise ValueError(f"金额「{text}」不能为负数")
    return amount


def _contact_index(engine: sa.Engine, customers: sa.Table) -> dict[str, str | None]:
    """id / alias / name -> contact id; None where a name is shared (ambiguous)."""
    index: dict[str, str | None] = {}
    c = customers.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(c.id, c.alias, c.name)).all()
    for cid, alias, name in rows:
        for key in (alias, name):
            if key:
                index[key] = None if key in index and index[key] != cid else cid
    for cid, _, _ in rows:
        index[cid] = cid
    return index


def import_csv(
    engine: sa.Engine,
    table: sa.Table,
    customers: sa.Table,
    path: Path,
    tz: ZoneInfo,
    *,
    source: str = "csv",
) -> ImportResult:
    """Read a UTF-8 (or UTF-8 with BOM, or GB18030 as Excel saves it) CSV and add new orders."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("gb18030")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise ValueError(f"{path}: 文件是空的")
    columns = {key: _pick(header, names) for key, names in HEADERS.items()}
    missing = [HEADERS[k][1] for k in ("order_id", "contact", "at") if columns[k] is None]
    if missing:
        raise ValueError(f"{path}: 缺少列 {'、'.join(missing)}（表头现在是：{', '.join(header)}）")
    index = _contact_index(engine, customers)
    result = ImportResult()
    found: dict[str, dict[str, object]] = {}
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue

        def cell(key: str, row: list[str] = row) -> str:
            i = columns[key]
            return row[i].strip() if i is not None and i < len(row) else ""

        order_id, who = cell("order_id"), cell("contact")
        if not order_id:
            result.fail(line, "没有订单号")
            continue
        contact_id = index.get(who)
        if contact_id is None:
            why = "有多位客户叫这个名字，请改用联系人id" if who in index else "客户表里找不到"
            result.fail(line, f"客户「{who}」{why}")
            continue
        try:
            at = _parse_time(cell("at"), tz)
            amount = _parse_amount(cell("amount"))
        except ValueError as error:
            result.fail(line, str(error))
            continue
        found[order_id] = {
            "order_id": order_id,
            "contact_id": contact_id,
            "at": at,
            "amount": amount,
            "source": source,
        }
    with engine.begin() as conn:
        have = (
            {
                oid
                for (oid,) in conn.execute(
                    sa.select(table.c.order_id).where(table.c.order_id.in_(list(found)))
                )
            }
            if found
            else set()
        )
        new = [row for oid, row in found.items() if oid not in have]
        if new:
            conn.execute(sa.insert(table), new)
    result.added = len(new)
    result.unchanged = len(found) - len(new)
    return result
