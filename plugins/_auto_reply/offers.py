"""Calls to action of recent broadcasts and calendar posts ("回复“新茶”帮你留一份"): the
sending plugin stores the declaration (plugins/_core/cta.py) in the bulk job's meta; here
the words become answers for that job's recipients, for `days` after their copy was sent.

The list is re-read from the outbox ledger when a job this process has not seen becomes
active, and every REFRESH_S anyway; whether one person received one job is asked only for
a message that names one of the words, so ordinary chats cost one set lookup."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from plugins._core.cta import MAX_DAYS
from plugins._core.intent import asks_for
from pond import Context

REFRESH_S = 300.0


@dataclass(frozen=True, slots=True)
class Offer:
    job: str
    keywords: tuple[str, ...]
    answer: str  # persona key
    days: float
    notify: bool
    title: str


class Offers:
    def __init__(self) -> None:
        self.items: tuple[Offer, ...] = ()
        self.jobs: frozenset[str] = frozenset()
        self.checked_at = -math.inf

    def refresh(self, ctx: Context[Any, Any], *, force: bool = False) -> None:
        """Re-read the declarations if needed."""
        ledger = ctx.ledger
        now = ctx.now.timestamp()
        unseen = any(job not in self.jobs for job in ledger.active_jobs())
        if not (force or unseen or now - self.checked_at >= REFRESH_S):
            return
        self.checked_at = now
        found: list[Offer] = []
        jobs: set[str] = set()
        for job, _, meta in ledger.jobs_since(now - MAX_DAYS * 86400):
            jobs.add(job)
            reply = meta.get("reply") if isinstance(meta, dict) else None
            if not isinstance(reply, dict) or not reply.get("keywords"):
                continue
            found.append(
                Offer(
                    job=job,
                    keywords=tuple(str(w) for w in reply["keywords"]),
                    answer=str(reply.get("answer", "")),
                    days=float(reply.get("days", 7)),
                    notify=bool(reply.get("notify", False)),
                    title=str(meta.get("title") or meta.get("post_id") or job),
                )
            )
        self.jobs = frozenset(jobs)
        self.items = tuple(found)

    def find(
        self, ctx: Context[Any, Any], text: str, recipient: str | None
    ) -> tuple[Offer, str] | None:
        """The call to action `text` answers, for a `recipient` (a private chat's contact,
        or a room the copy went to) who received it lately, and the word used. With no
        recipient (the operator's preview) any offer whose word is asked for counts."""
        if not self.items:
            return None
        now = ctx.now.timestamp()
        for offer in self.items:  # newest first: a word reused by a later campaign wins
            word = asks_for(ctx, text, offer.keywords)
            if word is None:
                continue
            if recipient is None:
                return offer, word
            sent = ctx.ledger.sent_at(offer.job, recipient)
            if sent is not None and now - sent <= offer.days * 86400:
                return offer, word
        return None
