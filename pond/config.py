"""Settings built from a mapping (os.environ in bot.py, a dict in tests).

Each section is a frozen dataclass; a field `foo` of a section with prefix `BOT` is read
from the key `BOT_FOO` (or from `metadata={"env": ...}`). The field's type decides the
parser; its range is declared beside it with `setting(...)` (see `Bounds`), so a value is
checked where the field is defined, not by ifs scattered through the code. Numbers are
finite and 0 or more unless the field says otherwise. A malformed or out-of-range value
raises ConfigError naming the key, the value and the expected form, in Chinese."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad setting: the one message an operator sees (key, value, expected form)."""

    def __init__(self, key: str, expected: str, got: str, *, message: str = "") -> None:
        super().__init__(message or f"配置项 {key} 的值「{got}」不对，应为：{expected}")
        self.key = key
        self.expected = expected
        self.got = got


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


# -- declared ranges ---------------------------------------------------------------------------
# A check returns None for a good value, else the expected form (Chinese) for the message.
Check = Callable[[Any], str | None]


def setting(
    default: Any = dataclasses.MISSING,
    *,
    env: str | None = None,
    ge: float | None = 0.0,
    gt: float | None = None,
    le: float | None = None,
    choices: Iterable[str] | None = None,
    check: Check | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A settings field with its range: numbers are >= `ge` (0 unless told; None = any
    sign), > `gt` where a 0 would divide or spin, <= `le`; strings are one of `choices`
    (compared case-insensitively, stored as the choice is spelled); `check` for the rest."""
    metadata: dict[str, Any] = {"ge": ge, "gt": gt, "le": le, "check": check}
    if env:
        metadata["env"] = env
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


_DEFAULT_BOUNDS: Mapping[str, Any] = {"ge": 0.0, "gt": None, "le": None, "check": None}


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _number_form(noun: str, meta: Mapping[str, Any]) -> str:
    parts = []
    if meta.get("gt") is not None:
        parts.append(f"大于 {_num(meta['gt'])}")
    elif meta.get("ge") is not None:
        parts.append(f"不小于 {_num(meta['ge'])}")
    if meta.get("le") is not None:
        parts.append(f"不大于 {_num(meta['le'])}")
    return ("、".join(parts) + " 的" if parts else "") + noun


def _in_bounds(value: float, meta: Mapping[str, Any]) -> bool:
    if not math.isfinite(value):
        return False
    if meta.get("gt") is not None and not value > meta["gt"]:
        return False
    if meta.get("ge") is not None and not value >= meta["ge"]:
        return False
    return not (meta.get("le") is not None and value > meta["le"])


def _parse_time(text: str) -> time:
    hours, _, minutes = text.strip().partition(":")
    return time(int(hours), int(minutes or 0))


def _parse_value(kind: Any, raw: str, key: str, meta: Mapping[str, Any] = _DEFAULT_BOUNDS) -> Any:
    text = raw.strip()
    if kind is str:
        choices = meta.get("choices")
        if choices:
            canonical = {c.lower(): c for c in choices}.get(text.lower())
            if canonical is None:
                raise ConfigError(key, "以下之一：" + "、".join(choices), raw)
            return canonical
        return text
    if kind is int:
        form = _number_form("整数", meta)
        try:
            number = int(text)
        except ValueError:
            raise ConfigError(key, form, raw) from None
        if not _in_bounds(number, meta):
            raise ConfigError(key, form, raw)
        return number
    if kind is float:
        form = _number_form("数（有限的数，可带小数）", meta)
        try:
            number_f = float(text)
        except ValueError:
            raise ConfigError(key, form, raw) from None
        if not _in_bounds(number_f, meta):
            raise ConfigError(key, form, raw)
        return number_f
    if kind is bool:
        lowered = text.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(key, "true 或 false", raw)
    if kind is Path:
        if not text:
            raise ConfigError(key, "一个路径", raw)
        return Path(text)
    if kind is Range:
        form = "一个数或 3-8 这样的范围（有限的数，0 ≤ 下限 ≤ 上限）"
        low_text, sep, high_text = text.partition("-")
        try:
            low = float(low_text)
            high = float(high_text) if sep else low
        except ValueError:
            raise ConfigError(key, form, raw) from None
        bounds = {**meta, "ge": meta.get("ge") if meta.get("ge") is not None else 0.0}
        if not (_in_bounds(low, bounds) and _in_bounds(high, bounds)) or high < low:
            raise ConfigError(key, form, raw)
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
            raise ConfigError(key, "22:00-08:00 这样的每日时段，或 off", raw) from None
    if kind is ZoneInfo:
        try:
            return ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ConfigError(key, "IANA 时区名，如 Asia/Shanghai", raw) from None
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
        meta = {**_DEFAULT_BOUNDS, **f.metadata}
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):  # "X | None": parse as X, empty means None
            inner = next(a for a in typing.get_args(kind) if a is not type(None))
            value = _parse_value(inner, env[key], key, meta) if env[key].strip() else None
        else:
            value = _parse_value(kind, env[key], key, meta)
        check: Check | None = meta.get("check")
        if check is not None and value is not None:
            expected = check(value)
            if expected is not None:
                raise ConfigError(key, expected, env[key])
        values[f.name] = value
    return cls(**values)


# -- keys nobody reads -------------------------------------------------------------------------
# Read by libraries people commonly have in their environment for wechaty; harmless to pond.
_FOREIGN_KEYS = frozenset({"WECHATY_PUPPET", "WECHATY_LOG"})


def check_keys(env: Mapping[str, str], known: Iterable[str], prefixes: Iterable[str]) -> None:
    """Refuse keys that look like ours (a known prefix, in any case) but are not a known
    key: a misspelled key must not be ignored silently, nor a lower-case one."""
    known_set = set(known)
    heads = tuple(f"{p.upper()}_" for p in prefixes)
    problems: list[str] = []
    first = ""
    for key in sorted(env):
        if key in known_set or key in _FOREIGN_KEYS or not key.upper().startswith(heads):
            continue
        first = first or key
        if key.upper() in known_set:
            problems.append(f"{key}（配置项名要大写：{key.upper()}）")
            continue
        near = difflib.get_close_matches(key.upper(), sorted(known_set), n=1, cutoff=0.6)
        hint = f"是不是 {near[0]}？" if near else "没有相近的配置项，见 config.example.env"
        problems.append(f"{key}（{hint}）")
    if problems:
        raise ConfigError(
            first,
            "",
            env[first],
            message="未知的配置项：" + "；".join(problems) + "。请改正或删除后再启动。",
        )


# -- checks of single values ------------------------------------------------------------------
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TRANSPORTS = ("auto", "console", "wechaty", "wecom")
_DB_FORM = (
    "留空（用数据目录里的 SQLite），或 sqlite:///文件路径，或 postgresql://用户:密码@主机/库名"
)


def _check_database_url(text: str) -> str | None:
    if not text:
        return None
    from sqlalchemy.engine import make_url  # only when one is configured
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        return _DB_FORM
    if url.get_backend_name() not in {"sqlite", "postgresql"}:
        return _DB_FORM
    try:
        url.get_dialect()  # an unknown driver name ("postgresql+foo") fails here
    except NoSuchModuleError:
        return _DB_FORM
    return None  # whether its driver is installed is checked at start (bot.preflight)


@dataclass(frozen=True, slots=True)
class BotSettings:
    plugins: tuple[str, ...] = ("greeter", "auto_reply", "friends", "groups", "admin", "analytics")
    transport: str = setting("auto", choices=TRANSPORTS)
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    data_dir: Path = Path("data")
    persona_dir: Path = Path("persona")
    persona_max_chars: int = setting(1500, ge=2)  # the persona needs room for "…"
    persona_reload_s: float = setting(2.0, gt=0)  # a poll interval: 0 would spin
    admin_ids: tuple[str, ...] = ()
    admin_code_ttl_min: float = 15.0  # the binding code expires (pond/binding.py)
    admin_code_tries: int = 5  # wrong binding attempts of one sender before a lock
    admin_code_tries_total: int = 20  # ... of everyone together
    admin_code_lock_min: float = 60.0  # the window they count in, and the lock's length
    takeover_pause_min: float = 30.0
    known_bot_ids: tuple[str, ...] = ()
    log_level: str = setting("INFO", choices=LOG_LEVELS)
    log_file: str = ""
    database_url: str = setting("", env="DATABASE_URL", check=_check_database_url)


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    burst: int = setting(5, ge=1)  # 0 would hold every action forever
    rate_per_min: float = setting(20.0, gt=0)  # divides: the pace of the token bucket
    chat_gap_s: float = 1.5
    switch_gap_s: Range = Range(3.0, 8.0)
    typing_chars_per_s: float = setting(8.0, gt=0)  # divides: typing time = length / speed
    typing_max_s: float = 6.0
    bulk_pause_every: int = 20  # 0 = no bulk pauses
    bulk_pause_s: Range = Range(30.0, 90.0)
    quiet_hours: DailyWindow = DailyWindow(time(22, 0), time(8, 0))
    marketing_min_interval_h: float = 72.0
    cap_send: int = 800  # caps: 0 means "none of this kind today", never negative
    cap_broadcast: int = 300
    cap_accept_friend: int = 25
    cap_add_friend: int = 15
    cap_invite: int = 30
    cap_kick: int = 20
    cap_post: int = 10
    cap_tag: int = 500  # tags mirrored to the platform (企业微信 mark_tag)
    optout_keywords: tuple[str, ...] = ("退订", "TD", "不要再发")
    optin_keywords: tuple[str, ...] = ("恢复订阅",)
    breaker_patterns: tuple[str, ...] = ("操作过于频繁", "发送消息过于频繁", "too frequent")
    breaker_cooldown_min: float = setting(30.0, gt=0)  # a throttle signal must pause sending
    retry_backoff_s: float = 5.0
    stop_grace_s: float = setting(5.0)  # a clean stop drains for this long (0: not at all)
    # 0 would forget message ids at once (a redelivered message answered twice) and call
    # every live message stale (nothing answered).
    seen_ttl_days: float = setting(7.0, env="INBOUND_SEEN_TTL_DAYS", gt=0)
    startup_cutoff_s: float = setting(120.0, env="INBOUND_STARTUP_CUTOFF_S", gt=0)

    def caps(self) -> dict[str, int]:
        """The daily caps by action kind ("broadcast": bulk sends of any kind), in the order
        operators read them."""
        return {
            "send": self.cap_send,
            "broadcast": self.cap_broadcast,
            "accept_friend": self.cap_accept_friend,
            "add_friend": self.cap_add_friend,
            "invite": self.cap_invite,
            "kick": self.cap_kick,
            "post": self.cap_post,
        }


@dataclass(frozen=True, slots=True)
class WechatySettings:
    puppet_service_token: str = ""
    puppet_service_endpoint: str = ""


@dataclass(frozen=True, slots=True)
class WecomSettings:
    """企业微信 self-built app (BOT_TRANSPORT=wecom); checked by the transport at start."""

    corp_id: str = ""
    secret: str = ""  # from the environment only; never logged
    agent_id: str = ""
    token: str = ""  # the callback Token
    aes_key: str = ""  # the callback EncodingAESKey (43 characters)
    api_base: str = "https://qyapi.weixin.qq.com"
    callback_host: str = "127.0.0.1"
    callback_port: int = setting(8081, ge=1, le=65535)
    callback_path: str = "/wecom/callback"
    staff_ids: tuple[str, ...] = ()  # staff userids the channel QR codes add (渠道活码)
    kf_window_h: float = setting(48.0, gt=0)
    kf_window_replies: int = setting(5, ge=1)
    welcome_window_s: float = setting(20.0, gt=0)


@dataclass(frozen=True, slots=True)
class BackupSettings:
    """Automatic online backups of the data directory (pond/store/backup.py)."""

    enabled: bool = True
    every_h: float = setting(24.0, gt=0)
    keep: int = setting(7, ge=1)
    dir: Path | None = None  # empty: <BOT_DATA_DIR>/backups; relative: inside BOT_DATA_DIR


SECTIONS: tuple[tuple[str, type], ...] = (
    ("BOT", BotSettings),
    ("OUTBOX", OutboxSettings),
    ("WECHATY", WechatySettings),
    ("WECOM", WecomSettings),
    ("BACKUP", BackupSettings),
)
# Prefixes whose every key must be known: the sections above, INBOUND_* (in OUTBOX), the
# single DATABASE_URL, and the kernel's other sections (HEALTH, BACKUP) and JOB_*_CRON.
CORE_PREFIXES = (
    "BOT",
    "OUTBOX",
    "WECHATY",
    "WECOM",
    "INBOUND",
    "DATABASE",
    "HEALTH",
    "BACKUP",
    "JOB",
)


@dataclass(frozen=True, slots=True)
class Settings:
    bot: BotSettings = field(default_factory=BotSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    wechaty: WechatySettings = field(default_factory=WechatySettings)
    wecom: WecomSettings = field(default_factory=WecomSettings)
    backup: BackupSettings = field(default_factory=BackupSettings)
    raw: Mapping[str, str] = field(default_factory=dict)  # for plugin sections, parsed later

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            bot=parse_section(BotSettings, "BOT", env),
            outbox=parse_section(OutboxSettings, "OUTBOX", env),
            wechaty=parse_section(WechatySettings, "WECHATY", env),
            wecom=parse_section(WecomSettings, "WECOM", env),
            backup=parse_section(BackupSettings, "BACKUP", env),
            raw=dict(env),
        )

    def plugin_config(self, plugin_name: str, config_type: type[T]) -> T:
        return parse_section(config_type, plugin_name.upper(), self.raw)

    def all_keys(self) -> list[str]:
        return [key for prefix, cls in SECTIONS for key in section_keys(cls, prefix)]


def config_sections() -> list[tuple[str, type]]:
    """The kernel's setting sections (prefix, dataclass), for a page that lists them."""
    return list(SECTIONS)
