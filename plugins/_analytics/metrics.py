"""The numbers: every table of the report, computed from a Source for a Scope.

Definitions (also shown in the report, so operators and tests agree on them):
- New friend: a `friends.accepted` or `referral.accepted` (request accepted) or
  `friends.add_accepted` (our add request accepted) event; a contact counts once, on their
  first such day in the range.
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
- 裂变 (referrals): see referrals.py (invites, valid share, K-factor, top inviters).
Operators' own chats are left out everywhere."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import growth, operations, referrals
from .data import Source
from .facts import CONVERSION_SOURCES, Facts, Names, distinct_days
from .growth import FUNNEL_STEPS
from .operations import OUT_KINDS
from .scope import Scope
from .tables import Table, rate

__all__ = ["CONVERSION_SOURCES", "FUNNEL_STEPS", "OUT_KINDS", "Names", "Report", "compute"]


@dataclass
class Report:
    scope: Scope
    names: Names
    generated_at: datetime
    headline: dict[str, Any]
    tables: dict[str, Table]
    conversion_sources: tuple[str, ...]
    has_data: bool


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
    facts = Facts.read(source, scope, names, sources)
    tables = {
        table.name: table
        for table in (
            growth.new_friends(facts),
            growth.funnel(facts),
            growth.retention(facts),
            growth.daily_active(facts),
            operations.group_heatmap(facts),
            operations.room_activity(facts),
            growth.conversions(facts),
            growth.optouts_churn(facts),
            operations.outbound(facts, caps or {}),
            operations.campaigns(facts),
            operations.top_keywords(facts),
            *referrals.tables(facts),
        )
    }
    return Report(
        scope=scope,
        names=names,
        generated_at=now or datetime.now(UTC),
        headline=_headline(facts, tables),
        tables=tables,
        conversion_sources=sources,
        has_data=source.has_events(),
    )


def _headline(facts: Facts, tables: Mapping[str, Table]) -> dict[str, Any]:
    scope, conversions, activity = facts.scope, facts.conversions, facts.activity
    contact_ok = facts.contact_ok
    start, end = scope.start.timestamp(), scope.end.timestamp()
    in_range = {
        cid
        for cid, items in conversions.items()
        if contact_ok(cid) and any(start <= c.ts < end for c in items)
    }
    active = {cid for cid in activity.times if contact_ok(cid)}
    friends_now = facts.source.friends_count(scope.channels)
    churn_rows = tables["optouts_churn"].rows
    funnel_total = tables["funnel"].rows[-1] if tables["funnel"].rows else {}
    return {
        "new_friends": len(facts.added),
        "churned": sum(r["churned"] for r in churn_rows),
        "optouts": sum(r["optouts"] for r in churn_rows),
        "friends": friends_now,
        "active_contacts": len(active),
        "active_ratio": rate(len(active), friends_now),
        "inbound_private": activity.private_messages,
        "inbound_rooms": activity.room_total,
        "converted": len(in_range),
        "repurchase_rate": rate(
            sum(1 for cid in in_range if distinct_days(scope, conversions[cid]) >= 2),
            len(in_range),
        ),
        "conversion_rate": funnel_total.get("converted_rate"),
        "revenue": sum(
            c.amount for cid in in_range for c in conversions[cid] if start <= c.ts < end
        ),
        "sent": sum(r["n"] for r in tables["outbound"].rows if r["kind"] == "send"),
    }
