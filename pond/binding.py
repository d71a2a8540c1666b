"""Becoming an admin with the binding code (some puppets change contact ids at each login,
so ids in BOT_ADMIN_IDS can go stale).

The code is "pond-" and 16 characters of Crockford base32 in groups of four: 80 bits from
`secrets`, lower case, without i/l/o/u, so it reads aloud and types on a phone keyboard.
Typed back, case, spaces and dashes do not matter and o/i/l count as 0/1/1. It is made at
start-up and on request (scripts/admin.py code [--new]), expires after
BOT_ADMIN_CODE_TTL_MIN, and is used up by the binding it makes.

A private message from a non-admin is a binding attempt when it is "pond", a dash or space,
and a few letters or digits (or the 16 characters right after "pond"); anything else is an
ordinary customer message and can never bind. Wrong attempts are counted per sender and for
everyone together, in the kv (so a restart does not reset them): past BOT_ADMIN_CODE_TRIES
wrong attempts of one sender, or BOT_ADMIN_CODE_TRIES_TOTAL of everyone, within
BOT_ADMIN_CODE_LOCK_MIN, attempts are refused unchecked for that long and the admins are
alerted once. A new code from the terminal lifts the lock for everyone (the operator is at
the server). Every attempt is an event with the sender's id and the outcome, never the text
typed; every binding is alerted to the admins there were before it."""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pond.config import ConfigError, Settings
from pond.events import Message
from pond.store import Namespace

if TYPE_CHECKING:
    from pond.app import App

log = logging.getLogger("pond.binding")

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32
LENGTH, GROUP = 16, 4  # 80 bits
PREFIX = "pond"
_READ_AS = str.maketrans({"o": "0", "i": "1", "l": "1"})
_SEPARATORS = re.compile(r"[\s\-_:.\u2010-\u2015\u2212\uff0d\uff1a\u3000]+")
_ATTEMPT = re.compile(r"^pond[0-9a-z]{0,40}$")
SENDER_KEY, TOTAL_KEY = "bind:fail:", "bind:total"


@dataclass(frozen=True, slots=True)
class BindingCode:
    value: str  # as shown: pond-xxxx-xxxx-xxxx-xxxx
    expires_at: datetime

    @property
    def chars(self) -> str:
        return self.value.removeprefix(PREFIX + "-").replace("-", "")


@dataclass(frozen=True, slots=True)
class Limits:
    ttl: timedelta
    tries: int  # wrong attempts of one sender
    tries_total: int  # wrong attempts of everyone
    lock: timedelta  # the window the attempts are counted in, and how long a lock lasts

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        bot = settings.bot
        checks = (
            ("BOT_ADMIN_CODE_TTL_MIN", bot.admin_code_ttl_min, 0.0),
            ("BOT_ADMIN_CODE_TRIES", bot.admin_code_tries, 1),
            ("BOT_ADMIN_CODE_TRIES_TOTAL", bot.admin_code_tries_total, 1),
            ("BOT_ADMIN_CODE_LOCK_MIN", bot.admin_code_lock_min, 0.0),
        )
        for key, value, low in checks:
            # NaN fails every comparison: "not value > low" refuses it too.
            if not value > low or value == float("inf"):
                expected = "a whole number >= 1" if isinstance(low, int) else "minutes > 0"
                raise ConfigError(key, expected, str(value))
        return cls(
            timedelta(minutes=bot.admin_code_ttl_min),
            bot.admin_code_tries,
            bot.admin_code_tries_total,
            timedelta(minutes=bot.admin_code_lock_min),
        )


def new_code(now: datetime, ttl: timedelta) -> BindingCode:
    chars = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    groups = [chars[i : i + GROUP] for i in range(0, LENGTH, GROUP)]
    return BindingCode("-".join([PREFIX, *groups]), now + ttl)


def attempt_chars(text: str) -> str | None:
    """The code characters of a binding attempt, or None when `text` is no attempt."""
    if len(text) > 80:
        return None
    lowered = text.strip().lower()
    squeezed = _SEPARATORS.sub("", lowered)
    if not _ATTEMPT.match(squeezed):
        return None
    chars = squeezed.removeprefix(PREFIX)
    # "pond-..." or "pond ..." is an attempt; so is the code typed without separators, but
    # not an English word that happens to start with "pond" ("ponder").
    if not _SEPARATORS.match(lowered, len(PREFIX)) and len(chars) != LENGTH:
        return None
    return chars.translate(_READ_AS)


@dataclass(frozen=True, slots=True)
class Lock:
    scope: str  # "sender" or "total"
    until: float
    tries: int


class Guard:
    """Counts wrong attempts per sender and in total; the counts live in the kv."""

    def __init__(self, kv: Namespace, limits: Limits) -> None:
        self.kv = kv
        self.limits = limits

    def _entry(self, key: str, now: float) -> dict[str, Any]:
        found = self.kv.get(key)
        entry = found if isinstance(found, dict) else {}
        until = float(entry.get("until") or 0)
        since = float(entry.get("since") or 0)
        window = self.limits.lock.total_seconds()
        if (until and now >= until) or (not until and now - since >= window):
            return {"n": 0, "since": now, "until": 0.0, "told": False}
        return entry

    def locked(self, sender: str, now: float) -> Lock | None:
        for key, scope in ((SENDER_KEY + sender, "sender"), (TOTAL_KEY, "total")):
            entry = self._entry(key, now)
            if entry.get("until"):
                return Lock(scope, float(entry["until"]), int(entry.get("n", 0)))
        return None

    def first_refusal(self, sender: str, lock: Lock, now: float) -> bool:
        """Whether this sender hears about `lock` now (once per lock, so a flood of
        attempts does not become a flood of replies)."""
        key = SENDER_KEY + sender
        entry = self._entry(key, now)
        if float(entry.get("told_until") or 0) >= lock.until:
            return False
        self.kv.set(key, {**entry, "told_until": lock.until})
        return True

    def forget(self, sender: str) -> None:
        """The right secret at last: that sender's wrong attempts no longer count."""
        self.kv.delete(SENDER_KEY + sender)

    def failed(self, sender: str, now: float) -> tuple[int, Lock | None]:
        """Count a wrong attempt; returns the sender's count and the lock it started."""
        started: Lock | None = None
        count = 0
        for key, scope, limit in (
            (SENDER_KEY + sender, "sender", self.limits.tries),
            (TOTAL_KEY, "total", self.limits.tries_total),
        ):
            entry = self._entry(key, now)
            entry["n"] = int(entry.get("n", 0)) + 1
            if entry["n"] >= limit and not entry.get("until"):
                entry["until"] = now + self.limits.lock.total_seconds()
                started = started or Lock(scope, entry["until"], entry["n"])
            if scope == "total" and entry["n"] == 1:
                self._prune(now)  # a new window: the old senders' counts are spent
            self.kv.set(key, entry)
            if scope == "sender":
                count = entry["n"]
        return count, started

    def _prune(self, now: float) -> None:
        for key, _ in self.kv.items(SENDER_KEY):
            if self._entry(key, now).get("n") == 0:
                self.kv.delete(key)

    def lift_total(self) -> None:
        self.kv.delete(TOTAL_KEY)


def _minutes(until: float, now: float) -> int:
    return max(1, int((until - now + 59) // 60))


async def attempt(app: App, message: Message) -> bool:
    """Handle a binding attempt; False when the message is none (or comes from an admin)."""
    sender = message.sender
    if app.admins.is_admin(sender.id):
        return False
    chars = attempt_chars(message.text)
    if chars is None:
        return False
    now = app.clock.now()
    ts = now.timestamp()
    guard = app.admins.guard
    lock = guard.locked(sender.id, ts)
    if lock is not None:
        app.record("admin.bind_refused", contact_id=sender.id, scope=lock.scope)
        if guard.first_refusal(sender.id, lock, ts):
            await _reply(app, message, "core/admin_code_locked", minutes=_minutes(lock.until, ts))
        return True
    outcome = app.admins.check_code(chars, now)
    if outcome == "ok":
        # Told to the admins there were before: the new one does not need to hear it.
        app.alert(
            "core/admin_bound_alert",
            who=sender.id,
            name=sender.display,
            at=now.strftime("%m-%d %H:%M"),
        )
        app.admins.bind(sender.id, now, sender.display)
        app.record("admin.bound", contact_id=sender.id)
        log.warning("admin bound with the binding code: %s", sender.id)
        await _reply(app, message, "core/admin_bound")
        return True
    if outcome == "expired":
        app.record("admin.bind_failed", contact_id=sender.id, reason="expired")
        await _reply(app, message, "core/admin_code_expired")
        return True
    tries, started = guard.failed(sender.id, ts)
    app.record("admin.bind_failed", contact_id=sender.id, reason="wrong", tries=tries)
    log.warning("wrong binding code from %s (%d in a row)", sender.id, tries)
    if started is None:
        await _reply(app, message, "core/admin_code_wrong")
        return True
    minutes = _minutes(started.until, ts)
    guard.first_refusal(sender.id, started, ts)  # told now, with the alert
    app.record("admin.bind_locked", contact_id=sender.id, scope=started.scope, tries=started.tries)
    app.alert(
        "core/admin_code_alert",
        scope=started.scope,
        who=sender.id,
        name=sender.display,
        tries=started.tries,
        minutes=minutes,
    )
    await _reply(app, message, "core/admin_code_locked", minutes=minutes)
    return True


async def _reply(app: App, message: Message, key: str, **variables: Any) -> None:
    from pond.context import Context  # the Context imports the App's world; late on purpose

    core = app.plugins.get("core")
    if core is not None:
        await Context(app, core, message).reply(key, **variables)
