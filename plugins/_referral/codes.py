"""Invite codes: short, from an alphabet without look-alikes (no 0/O, 1/I/L, 2/Z, 5/S, 8/B),
drawn with `secrets` so one customer's code says nothing about the next one's."""

from __future__ import annotations

import re
import secrets

ALPHABET = "34679ACDEFGHJKMNPQRTUVWXY"


def new_code(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def pattern(length: int) -> re.Pattern[str]:
    """A code as a token inside a hello ("邀请码K7QM2P", "K7QM2P 小美推荐"): not part of a
    longer run of letters and digits. Case-insensitive: people type what they see."""
    return re.compile(rf"(?<![A-Za-z0-9])([{ALPHABET}]{{{length}}})(?![A-Za-z0-9])", re.IGNORECASE)


def find(text: str, length: int) -> list[str]:
    return [m.upper() for m in pattern(length).findall(text or "")]
