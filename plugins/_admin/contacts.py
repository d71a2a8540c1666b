"""Finding a contact's id from a name, remark or part of the id (operators on a phone know
names; every command takes ids). Export and erase are the friends plugin's (pond/rights.py)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pond import Context

_SAFE = re.compile(r"[^A-Za-z0-9_.@-]+")


def find(ctx: Context, text: str, limit: int = 10) -> tuple[list[dict[str, Any]], int]:
    """Contacts whose id, name or remark contains `text` (exact id first); and how many
    matched in all. Names are only for finding: every command then takes the id."""
    matches, total = ctx.book.search(text, limit)
    views = [
        {
            "id": customer.id,
            "name": customer.name,
            "alias": customer.alias,
            "tags": sorted(customer.tags)[:6],
            "last": _day(ctx, customer.last_inbound),
        }
        for customer in matches
    ]
    return views, total


def _day(ctx: Context, ts: float | None) -> str:
    return datetime.fromtimestamp(ts, ctx.settings.bot.timezone).strftime("%m-%d") if ts else ""
