"""Moderation rules: which rule (if any) a room message breaks, and the escalation ladder.

Pure functions over the message and the room's rules, so they are easy to test and can
never fail a handler on a message type they do not know: such messages break no content
rule (they still count toward a flood)."""

from __future__ import annotations

import re
from collections import deque
from urllib.parse import urlsplit

from pond import Message, MessageType

from .rooms import Moderation

# Links in plain text: a scheme or www., or a bare domain with a common TLD. The lookbehind
# (not \b) matters: Chinese characters count as word characters, so "加我abc.com" has no \b.
_TLDS = (
    "com|cn|net|org|top|xyz|vip|cc|me|io|info|club|shop|site|online|link|ly|co|app|tk|ml|ink"
    "|fun|live|store|tech|wang|ltd|work|pub|biz|tv"
)
_LINK = re.compile(
    r"(?:https?://|www\.)[^\s<>\"'\uff0c\u3002\uff01\uff1f\u3001]+"
    rf"|(?<![a-z0-9.@-])(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)+(?:{_TLDS})(?![a-z0-9-])"
    r"(?:[/?#][^\s<>\"'\uff0c\u3002\uff01\uff1f\u3001]*)?",
    re.IGNORECASE,
)
_SQUASH = re.compile(r"[\W_]+")  # spaces and punctuation: "加 微-信" still says 加微信

TEXT_TYPES = frozenset({MessageType.TEXT, MessageType.LINK})


def type_name(message: Message) -> str:
    kind = message.type
    return str(getattr(kind, "value", kind) or "other")


def _host(url: str) -> str:
    text = url if "://" in url else f"http://{url}"
    try:
        host = urlsplit(text).hostname or ""
    except ValueError:
        return ""
    return host.lower().removeprefix("www.")


def _allowed(url: str, domains: tuple[str, ...]) -> bool:
    host = _host(url)
    return bool(host) and any(host == d or host.endswith("." + d) for d in domains)


def has_foreign_link(message: Message, rules: Moderation) -> bool:
    """A link card, or a URL in the text, to a domain the room does not allow."""
    if message.type == MessageType.LINK:
        return not (message.url and _allowed(message.url, rules.allowed_domains))
    if message.type != MessageType.TEXT:
        return False
    return any(
        not _allowed(match.group(0), rules.allowed_domains)
        for match in _LINK.finditer(message.text)
    )


def squash(text: str) -> str:
    return _SQUASH.sub("", text.lower())


def has_banned_words(message: Message, rules: Moderation) -> bool:
    if message.type not in TEXT_TYPES or not message.text:
        return False
    squashed = squash(message.text)
    if any(word and squash(word) in squashed for word in rules.banned_keywords):
        return True
    return any(pattern.search(message.text) for pattern in rules.banned_patterns)


def qr_in_scope(message: Message, rules: Moderation, joined_at: float | None) -> bool:
    """Whether this image is to be decoded at all: "all" images, or only those of members
    who joined less than new_member_hours ago ("new_members", where QR ads come from)."""
    if message.type != MessageType.IMAGE or rules.qr_images == "off":
        return False
    if rules.qr_images == "all":
        return True
    if joined_at is None:
        return False
    return message.timestamp.timestamp() - joined_at < rules.new_member_hours * 3600


def content_rule(message: Message, rules: Moderation, qr: bool | None = None) -> str | None:
    """The first content rule the message breaks, or None. `qr` is the decoder's verdict
    on an image in scope (qr.py): only a decoded QR code is a QR ad."""
    if rules.contact_cards and message.type == MessageType.CONTACT_CARD:
        return "contact_card"
    if rules.mini_programs and message.type == MessageType.MINI_PROGRAM:
        return "mini_program"
    if qr is True and message.type == MessageType.IMAGE and rules.qr_images != "off":
        return "qr_image"
    if rules.links and has_foreign_link(message, rules):
        return "link"
    if has_banned_words(message, rules):
        return "banned_keyword"
    return None


def escalation(strikes: int, rule: str, rules: Moderation) -> str:
    """warn -> final_warn -> remove: with warnings=2, strike 1 warns, strike 2 is the final
    warning, strike 3 removes. Rules listed in instant_remove skip the warnings."""
    if rule in rules.instant_remove or strikes > rules.warnings:
        return "remove"
    return "final_warn" if strikes == rules.warnings else "warn"


class FloodTracker:
    """Recent message times per (room, member), in memory: a restart forgets a flood in
    progress, which only delays the next strike."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], deque[float]] = {}

    def hit(self, room_id: str, contact_id: str, at: float, limit: int, window: float) -> bool:
        """Count one message; True when it makes `limit` messages within `window` seconds.
        The count starts over after a flood, so one burst is one strike."""
        times = self._seen.setdefault((room_id, contact_id), deque())
        times.append(at)
        while times and times[0] <= at - window:
            times.popleft()
        if limit and len(times) >= limit:
            times.clear()
            return True
        return False

    def forget(self, room_id: str, contact_id: str) -> None:
        self._seen.pop((room_id, contact_id), None)

    def prune(self, now: float, horizon: float = 3600.0) -> None:
        stale = [key for key, times in self._seen.items() if not times or times[-1] < now - horizon]
        for key in stale:
            del self._seen[key]
