"""Collecting what every plugin declared for the people who run the bot: review items,
today's agenda, a day's headline numbers, status parts. A failing source is logged and
named; the others still count."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import date
from typing import TYPE_CHECKING, Any, TypeVar

from pond.context import Context
from pond.plugin import AgendaItem, ReviewItem

if TYPE_CHECKING:
    from pond.app import App

log = logging.getLogger("pond.health")
T = TypeVar("T")


async def _ask(
    what: str,
    plugin: str,
    source: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    failed: list[str],
) -> T | None:
    try:
        return await source(*args)
    except Exception as error:
        log.error("%s source of %s failed: %s: %s", what, plugin, type(error).__name__, error)
        failed.append(plugin)
        return None


async def collect_reviews(app: App) -> tuple[list[tuple[str, ReviewItem]], list[str]]:
    """Every plugin's review items as (plugin, item), oldest first, and the plugins whose
    source failed (logged; the others are still listed)."""
    found: list[tuple[str, ReviewItem]] = []
    failed: list[str] = []
    for plugin in app.plugins.values():
        for source in plugin.review_sources:
            ctx = Context(app, plugin)
            items = await _ask("review", plugin.name, source, (ctx,), failed)
            found.extend((plugin.name, item) for item in items or ())
    found.sort(key=lambda pair: (pair[1].at or 0.0, pair[0], pair[1].ref))
    return found, failed


async def collect_agenda(app: App) -> tuple[list[tuple[str, AgendaItem]], list[str]]:
    found: list[tuple[str, AgendaItem]] = []
    failed: list[str] = []
    for plugin in app.plugins.values():
        for source in plugin.agenda_sources:
            ctx = Context(app, plugin)
            items = await _ask("agenda", plugin.name, source, (ctx,), failed)
            found.extend((plugin.name, item) for item in items or ())
    found.sort(key=lambda pair: (pair[1].at, pair[0], pair[1].ref))
    return found, failed


async def collect_summaries(app: App, day: date) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every plugin's headline numbers for `day` by section (sections without numbers are
    left out), and the plugins whose source failed."""
    found: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    for plugin in app.plugins.values():
        for section, source in plugin.summary_sources:
            ctx = Context(app, plugin)
            numbers = await _ask("summary", plugin.name, source, (ctx, day), failed)
            if numbers is not None:
                found[section] = numbers
    return found, failed


async def collect_status(app: App) -> dict[str, Any]:
    """Every plugin's status part, merged (what `status --json` prints)."""
    found: dict[str, Any] = {}
    failed: list[str] = []
    for plugin in app.plugins.values():
        for source in plugin.status_sources:
            ctx = Context(app, plugin)
            found.update(await _ask("status", plugin.name, source, (ctx,), failed) or {})
    return found
