"""Settings built from a mapping (os.environ in bot.py, a dict in tests).

Each section is a frozen dataclass; a field `foo` of a section with prefix `BOT` is read
from the key `BOT_FOO` (or from `metadata={"env": ...}`). The field's type decides the
parser, and a malformed value raises ConfigError naming the key and the expected form."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

T = TypeVar("T")


class ConfigError(ValueError):
    def __init__(self, key: str, expected: str, got: str) -> None:
        super().__init__(f"config {key}: expected {expected}, got {got!r}")
        self.key = key


@dataclass(frozen=True, slots=True)
class Range:
    """'3-8' -> low 3, high 8 (seconds, usually); a single number is a fixed value."""

    low: float
    high: float


@dataclass(frozen=True, slots=True)
class DailyWindow:
    """'22:00-08:00'; wraps past midnight; '' or 'off' is an empty window."""

    start: time
    end: time
    enabled: bool = True

    def contains(self, moment: time) -> bool:
        if not self.enabled or self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


def _parse_time(text: str) -> time:
    hours, _, minutes = text.strip().partition(":")
    return time(int(hours), int(minutes or 0))


def _parse_value(kind: Any, raw: str, key: str) -> Any:
    text = raw.strip()
    if kind is str:
        return text
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(key, "a whole number", raw) from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(key, "a number", raw) from None
    if kind is bool:
        lowered = text.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(key, "true or false", raw)
    if kind is Path:
        if not text:
            raise ConfigError(key, "a path", raw)
        return Path(text)
    if kind is Range:
        low_text, sep, high_text = text.partition("-")
        try:
            low = float(low_text)
            high = float(high_text) if sep else low
        except ValueError:
            raise ConfigError(key, "a number or a range like 3-8", raw) from None
        if low < 0 or high < low:
            raise ConfigError(key, "a range low-high with 0 <= low <= high", raw)
        return Range(low, high)
    if kind is DailyWindow:
        if text.lower() in {"", "off", "none"}:
            return DailyWindow(time(0), time(0), enabled=False)
        start, sep, end = text.partition("-")
        try:
            if not sep:
                raise ValueError
            return DailyWindow(_parse_time(start), _parse_time(end))
        except ValueError:
            raise ConfigError(key, "a daily window like 22:00-08:00, or off", raw) from None
    if kind is ZoneInfo:
        try:
            return ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(key, "an IANA timezone like Asia/Shanghai", raw) from None
    if typing.get_origin(kind) is tuple:
        # Operators type lists in Chinese input methods too: accept the full-width comma.
        items = [item.strip() for item in text.replace("，", ",").split(",")]
        return tuple(item for item in items if item)
    raise TypeError(f"config {key}: unsupported field type {kind!r}")


def env_key(prefix: str, f: dataclasses.Field[Any]) -> str:
    explicit = f.metadata.get("env")
    return str(explicit) if explicit else f"{prefix}_{f.name}".upper()


def section_keys(cls: type, prefix: str) -> list[str]:
    return [env_key(prefix, f) for f in dataclasses.fields(cls)]


def parse_section(cls: type[T], prefix: str, env: Mapping[str, str]) -> T:
    """Build the dataclass `cls` from `env`, keeping defaults for absent keys."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = env_key(prefix, f)
        if key not in env:
            continue
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):  # "X | None": parse as X, empty means None
            inner = next(a for a in typing.get_args(kind) if a is not type(None))
            values[f.name] = _parse_value(inner, env[key], key) if env[key].strip() else None
        else:
            values[f.name] = _parse_value(kind, env[key], key)
    return cls(**values)


@dataclass(frozen=True, slots=True)
class BotSettings:
    plugins: tuple[str, ...] = ("greeter", "auto_reply", "friends", "groups", "admin", "analytics")
    transport: str = "auto"  # auto | console | wechaty
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    data_dir: Path = Path("data")
    persona_dir: Path = Path("persona")
    persona_max_chars: int = 1500
    persona_reload_s: float = 2.0
    admin_ids: tuple[str, ...] = ()
    takeover_pause_min: float = 30.0
    known_bot_ids: tuple[str, ...] = ()
    log_level: str = "INFO"
    log_file: str = ""
    database_url: str = field(default="", metadata={"env": "DATABASE_URL"})


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    burst: int = 5
    rate_per_min: float = 20.0
    chat_gap_s: float = 1.5
    switch_gap_s: Range = Range(3.0, 8.0)
    typing_chars_per_s: float = 8.0
    typing_max_s: float = 6.0
    bulk_pause_every: int = 20
    bulk_pause_s: Range = Range(30.0, 90.0)
    quiet_hours: DailyWindow = DailyWindow(time(22, 0), time(8, 0))
    marketing_min_interval_h: float = 72.0
    cap_send: int = 800
    cap_broadcast: int = 300
    cap_accept_friend: int = 25
    cap_add_friend: int = 15
    cap_invite: int = 30
    cap_kick: int = 20
    cap_post: int = 10
    optout_keywords: tuple[str, ...] = ("退订", "TD", "不要再发")
    optin_keywords: tuple[str, ...] = ("恢复订阅",)
    breaker_patterns: tuple[str, ...] = ("操作过于频繁", "发送消息过于频繁", "too frequent")
    breaker_cooldown_min: float = 30.0
    retry_backoff_s: float = 5.0
    stop_grace_s: float = 5.0
    seen_ttl_days: float = field(default=7.0, metadata={"env": "INBOUND_SEEN_TTL_DAYS"})
    startup_cutoff_s: float = field(default=120.0, metadata={"env": "INBOUND_STARTUP_CUTOFF_S"})


@dataclass(frozen=True, slots=True)
class WechatySettings:
    puppet_service_token: str = ""
    puppet_service_endpoint: str = ""


SECTIONS: tuple[tuple[str, type], ...] = (
    ("BOT", BotSettings),
    ("OUTBOX", OutboxSettings),
    ("WECHATY", WechatySettings),
)


@dataclass(frozen=True, slots=True)
class Settings:
    bot: BotSettings = field(default_factory=BotSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    wechaty: WechatySettings = field(default_factory=WechatySettings)
    raw: Mapping[str, str] = field(default_factory=dict)  # for plugin sections, parsed later

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            bot=parse_section(BotSettings, "BOT", env),
            outbox=parse_section(OutboxSettings, "OUTBOX", env),
            wechaty=parse_section(WechatySettings, "WECHATY", env),
            raw=dict(env),
        )

    def plugin_config(self, plugin_name: str, config_type: type[T]) -> T:
        return parse_section(config_type, plugin_name.upper(), self.raw)

    def all_keys(self) -> list[str]:
        return [key for prefix, cls in SECTIONS for key in section_keys(cls, prefix)]
