"""The referral plugin's settings (REFERRAL_*; documented in config.example.env)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time

from pond import DailyWindow, setting


@dataclass(frozen=True)
class ReferralConfig:
    code_length: int = setting(6, ge=4, le=12)
    channel: str = "referral"  # first-touch channel code of friends who came with a code
    greet: bool = True
    room_ids: tuple[str, ...] = ()  # rooms whose joins count; empty: every room
    font: str = ""  # a CJK font file for the poster; empty: found through fontconfig
    poster_background: str = ""  # an image (resized to 750x1334); empty: the brand colours
    poster_qr: str = ""  # what the QR code holds, {code} replaced; empty: the code itself
    top_n: int = setting(10, ge=1, le=100)
    # Requests over the daily accept cap are tried again the next day, in these hours only.
    accept_hours: DailyWindow = field(
        default_factory=lambda: DailyWindow(time(9, 30), time(20, 30))
    )
