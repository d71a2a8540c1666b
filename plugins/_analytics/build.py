"""One call from settings and a request (dates, filters) to a Report: what scripts/report.py,
the operator's chat command and the morning summary share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path

from pond import Settings, SqlStore

from .data import Source
from .facts import Names
from .metrics import CONVERSION_SOURCES, Report, compute
from .names import load_names
from .scope import ReportError, Scope, date_range, resolve

__all__ = ["ReportError", "build_report", "open_store", "report_for"]


def open_store(settings: Settings) -> SqlStore:
    """The bot's database, without creating anything: a data dir with no database yet
    reads as an empty one (the report then says there is no data)."""
    url = settings.bot.database_url
    if url:
        return SqlStore(url)
    path = Path(settings.bot.data_dir) / "pond.sqlite3"
    return SqlStore(f"sqlite:///{path}" if path.exists() else "sqlite://")


def _operators(settings: Settings, source: Source) -> frozenset[str]:
    bound = {key.removeprefix("admin:") for key, _ in source.kv_items("core", "admin:")}
    return frozenset(settings.bot.admin_ids) | bound


def caps_of(settings: Settings) -> dict[str, int]:
    return settings.outbox.caps()


def report_for(
    settings: Settings,
    source: Source,
    *,
    since: date,
    until: date,
    rooms: frozenset[str] = frozenset(),
    channels: frozenset[str] = frozenset(),
    conversion_sources: Iterable[str] = CONVERSION_SOURCES,
    now: datetime | None = None,
    names: Names | None = None,
) -> Report:
    scope = Scope(
        since=since,
        until=until,
        tz=settings.bot.timezone,
        rooms=rooms,
        channels=channels,
        operators=_operators(settings, source),
    )
    return compute(
        source,
        scope,
        names or load_names(settings.bot.persona_dir, source),
        conversion_sources=conversion_sources,
        caps=caps_of(settings),
        now=now,
    )


def build_report(
    settings: Settings,
    source: Source,
    *,
    since: str | None = None,
    until: str | None = None,
    rooms: Sequence[str] = (),
    channels: Sequence[str] = (),
    conversion_sources: Iterable[str] = CONVERSION_SOURCES,
    now: datetime | None = None,
) -> Report:
    """From the operator's words: dates as YYYY-MM-DD, rooms and channels by id or name.
    Raises ReportError with a message for the operator."""
    moment = now or datetime.now(settings.bot.timezone)
    first, last = date_range(since, until, moment.astimezone(settings.bot.timezone).date())
    names = load_names(settings.bot.persona_dir, source)
    # What the operator may name: configured or seen. Read only when a filter is given.
    known_rooms = {**dict.fromkeys(source.room_ids() if rooms else (), ""), **names.rooms}
    known_channels = {
        **dict.fromkeys(source.channel_codes() if channels else (), ""),
        **names.channels,
    }
    return report_for(
        settings,
        source,
        since=first,
        until=last,
        rooms=resolve(rooms, known_rooms, "群"),
        channels=resolve(channels, known_channels, "渠道"),
        conversion_sources=conversion_sources,
        now=now,
        names=names,
    )
