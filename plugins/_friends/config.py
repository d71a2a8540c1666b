"""The friends plugin's settings (FRIENDS_*; documented in config.example.env)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from pathlib import Path

from pond import DailyWindow, Range


@dataclass(frozen=True)
class FriendsConfig:
    greet: bool = True
    greet_delay_s: Range = field(default_factory=lambda: Range(5.0, 20.0))
    review_expire_h: float = 72.0
    add_daily_cap: int = 15
    add_gap_min: Range = field(default_factory=lambda: Range(20.0, 60.0))
    add_hours: DailyWindow = field(default_factory=lambda: DailyWindow(time(9, 30), time(20, 30)))
    add_expire_days: float = 7.0
    retention_days: float = 365.0
    exports_dir: Path = Path("exports")
