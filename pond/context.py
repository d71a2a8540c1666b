"""What a handler gets besides its event: everything a plugin may use of the kernel.
Context is the whole plugin API: the plugin's typed config and state, its stores, the
customer book, pauses, admins and alerts, the persona and the outbox. Customer-facing text
only comes from persona keys the plugin declared."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, cast

from apscheduler.triggers.base import BaseTrigger

from pond import rights as _rights
from pond.actions import Action, ActionClass, ActionKind, Media
from pond.commands import Admins, Command, Commands
from pond.customers import CustomerBook
from pond.events import Contact, Event, Message, Room
from pond.ledger import Ledger
from pond.outbox import Outcome
from pond.pauses import Pauses
from pond.persona import PersonaError, Rendered
from pond.plugin import CfgT, StT
from pond.problems import Problem
from pond.store import SqlStore
from pond.transports.base import Mode, mode_of

if TYPE_CHECKING:
    from pond.app import App
    from pond.health.common import Liveness
    from pond.plugin import AgendaItem, Plugin, ReviewItem

# Kernel copy any plugin may render (a command's usage when its arguments are wrong).
KERNEL_KEYS = frozenset({"core/command_usage"})
_NO_STATE = object()


class Context(Generic[CfgT, StT]):
    """`Context[Config, State]` in a handler's signature types ctx.config and ctx.state."""

    def __init__(
        self,
        app: App,
        plugin: Plugin[Any, Any],
        event: Event | Command | None = None,
        fire_time: datetime | None = None,
        matched: Any = None,
    ) -> None:
        self._app = app
        self.plugin = plugin
        self.event = event
        self.fire_time = fire_time  # scheduled jobs: the fire time being served
        self.matched = matched  # what the route's filters found (a rule, a word), if said
        self.settings = app.settings
        self.config = cast(CfgT, app.plugin_configs.get(plugin.name))
        self.store = app.store.namespace(plugin.name)
        self.persona = app.persona
        self.clock = app.clock
        self.outbox = app.outbox
        self.log = logging.getLogger(f"pond.plugins.{plugin.name}")

    @property
    def state(self) -> StT:
        """The plugin's state for this App, built at start-up by Plugin(state=...)."""
        found = self._app.plugin_states.get(self.plugin.name, _NO_STATE)
        if found is _NO_STATE:
            raise RuntimeError(f"plugin {self.plugin.name}: no state (Plugin(state=...)) yet")
        return cast(StT, found)

    @property
    def now(self) -> datetime:
        return self.clock.now()

    # -- the kernel's services -------------------------------------------------------------
    @property
    def book(self) -> CustomerBook:
        return self._app.book

    @property
    def pauses(self) -> Pauses:
        return self._app.pauses

    @property
    def admins(self) -> Admins:
        return self._app.admins

    @property
    def ledger(self) -> Ledger:
        """The send journal and bulk jobs (opt-outs, job status, rows)."""
        return self._app.ledger

    @property
    def sql(self) -> SqlStore:
        """The SQL store: the event log, the plugin's own tables (on sql.metadata, named
        <plugin>_<table>, created at start-up), key/value rows."""
        return self._app.store.sql

    @property
    def commands(self) -> Commands:
        return self._app.commands

    @property
    def rng(self) -> random.Random:
        return self._app.rng

    @property
    def self_id(self) -> str:
        return self._app.transport.self_id

    @property
    def transport_name(self) -> str:
        return self._app.transport.name

    @property
    def running(self) -> bool:
        """False from the command line (scripts/admin.py): no transport, no scheduler."""
        return self._app.started_at is not None

    @property
    def rights(self) -> DataRights:
        """Data rights (pond.rights) on this App: fingerprint, suppression, export, erasure."""
        return DataRights(self._app)

    def can(self, capability: str) -> bool:
        return capability in self._app.transport.capabilities

    def mode(self, kind: str) -> Mode:
        """How the transport carries out `kind` ("send", "broadcast", "post", "kick"...): at
        once, in a window, as a task staff confirm, or not at all (DESIGN.md section 7)."""
        return mode_of(self._app.transport, kind)

    def is_room(self, chat_id: str) -> bool:
        return self._app.is_room(chat_id)

    def plugin_config(self, name: str) -> Any:
        """Another plugin's config (read-only), or None when that plugin is not loaded."""
        return self._app.plugin_configs.get(name)

    def plugin_state(self, name: str) -> Any:
        """Another plugin's state (a shared service such as core's opt-out words), or None
        when that plugin is not loaded or its state is not built (the command line)."""
        return self._app.plugin_states.get(name)

    def has_job(self, job_id: str) -> bool:
        return job_id in self._app.jobs

    def set_trigger(self, job_id: str, trigger: BaseTrigger) -> None:
        """A job whose times come from data (a content calendar): see App.set_trigger."""
        self._app.set_trigger(job_id, trigger)

    async def reload(self) -> dict[str, list[str]]:
        """The operator's reload of persona, command names and every plugin's data."""
        return await self._app.reload()

    def alert(self, key: str, *, also: Iterable[str] = (), **variables: Any) -> None:
        """Tell every admin (and the contact ids in `also`) in the service voice, at alert
        priority: the one way a plugin tells the people who run the bot."""
        self._check_declared(key)
        self._app.alert(key, also=also, plugin=self.plugin.name, **variables)

    def check_keys(self, keys: Iterable[str]) -> list[Problem]:
        """Persona keys named by the plugin's data (checked when the data loads): each must
        be declared (Plugin(persona=...) or persona_prefixes) and have a template."""
        found = []
        for key in dict.fromkeys(keys):
            if not self.plugin.declares(key):
                found.append(self._undeclared(key))
            elif not self.persona.has(key):
                found.append(Problem("persona.missing_key", "no template for {key!r}", key=key))
        return found

    # -- for front ends (the web admin): the same paths chat and the CLI use -------------
    @property
    def checking(self) -> bool:
        """`bot.py --check`: start-up is only checked; serve nothing, bind no port."""
        return self._app.checking

    def on_transport_status(self, watcher: Callable[[str, dict[str, Any]], None]) -> None:
        """Follow the transport's news (login, a new QR code to scan, logout...)."""
        self._app.status_watchers.append(watcher)

    async def run_command(self, command: Command) -> list[tuple[str, str]]:
        """Run an operator command as the CLI does (origin "cli": audit, argument checks,
        errors) and return its answers as (persona key, text) instead of printing them."""
        return [(key, text) for key, text, _ in await self._app.run_command_captured(command)]

    async def run_command_data(self, command: Command) -> list[tuple[str, str, dict[str, Any]]]:
        """run_command with each answer's template variables too (key, text, variables): a
        web page can draw what the text tells (a month grid, a progress bar)."""
        return await self._app.run_command_captured(command)

    async def dispatch(self, event: Event) -> None:
        """Hand an event to the kernel as a transport does (journaled, deduplicated,
        routed): e.g. a HumanTakeover when staff answer a customer from a web page."""
        await self._app.dispatch(event)

    async def status(self) -> dict[str, Any]:
        """Every plugin's status part (Plugin.status_source), merged: what `status` shows."""
        from pond.health.sources import collect_status

        return await collect_status(self._app)

    async def reload_persona(self) -> list[str]:
        """The hot reload the poller and the reload command run; problems in Chinese."""
        return [str(error) for error in await self._app.reload_persona_in_worker()]

    def plugin_configs(self) -> dict[str, Any]:
        """Every loaded plugin's effective config (read-only), by plugin name."""
        return dict(self._app.plugin_configs)

    @property
    def strict(self) -> bool:
        """True in tests and the command-line tools: a failure raises instead of being logged."""
        return self._app.strict

    async def agenda(self, *, failed: list[str] | None = None) -> list[tuple[str, AgendaItem]]:
        """Every plugin's agenda (see Plugin.agenda_source) as (plugin, item), in time order;
        a failing source is logged, left out, and its plugin added to `failed`."""
        from pond.health.sources import collect_agenda  # health builds on Context

        found, errors = await collect_agenda(self._app)
        if failed is not None:
            failed.extend(errors)
        return found

    async def reviews(self, *, failed: list[str] | None = None) -> list[tuple[str, ReviewItem]]:
        """Every plugin's review items (Plugin.review_source) as (plugin, item), oldest
        first; failing sources as in agenda()."""
        from pond.health.sources import collect_reviews

        found, errors = await collect_reviews(self._app)
        if failed is not None:
            failed.extend(errors)
        return found

    async def summaries(
        self, day: date, *, failed: list[str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Every plugin's headline numbers for `day` (Plugin.summary_source) by section;
        failing sources as in agenda()."""
        from pond.health.sources import collect_summaries

        found, errors = await collect_summaries(self._app, day)
        if failed is not None:
            failed.extend(errors)
        return found

    def liveness(self) -> Liveness:
        """Whether the bot runs, since when, connected or not (the heartbeat's view from
        the command line, this process's own values in the running bot)."""
        from pond.health.common import liveness

        return liveness(self._app)

    def record(self, kind: str, **data: Any) -> None:
        """An analytics/audit event in the event store (never message text)."""
        self._app.record(f"{self.plugin.name}.{kind}", plugin=self.plugin.name, **data)

    def render(
        self,
        key: str,
        *,
        chat_id: str,
        contact_id: str | None = None,
        room_id: str | None = None,
        **variables: Any,
    ) -> Rendered:
        self._check_declared(key)
        tags = self._app.book.tags(contact_id) if contact_id else frozenset[str]()
        return self.persona.render(
            key, chat_id=chat_id, contact_id=contact_id, room_id=room_id, tags=tags, **variables
        )

    async def reply(
        self,
        key: str,
        *,
        mention: Iterable[Contact] | None = None,
        media: Media | None = None,
        cls: ActionClass | None = None,
        **variables: Any,
    ) -> asyncio.Future[Outcome]:
        """Answer in the chat the event came from. In a room the sender is @-mentioned
        unless `mention` says otherwise."""
        event = self.event
        if event is None:
            raise RuntimeError("reply() needs an event; scheduled jobs use send()")
        room: Room | None = getattr(event, "room", None)
        contact: Contact | None = getattr(event, "sender", None) or getattr(event, "contact", None)
        if mention is None:
            mention = [contact] if room is not None and contact is not None else []
        if isinstance(event, Command) and event.origin == "cli":
            # The operator is at the terminal: print, do not message anyone.
            rendered = self.render(key, chat_id=event.chat_id, **variables)
            self._app.print_cli(rendered.key, rendered.text, dict(variables))
            done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
            done.set_result(Outcome("sent", "cli"))
            return done
        if cls is None:
            answering = isinstance(event, Message | Command)
            cls = ActionClass.REPLY if answering else ActionClass.SERVICE
        return await self.send(
            room or event.chat_id,
            key,
            mentions=[m.id for m in mention],
            media=media,
            cls=cls,
            contact_id=contact.id if contact else None,
            **variables,
        )

    async def send(
        self,
        to: Contact | Room | str,
        key: str,
        *,
        cls: ActionClass = ActionClass.SERVICE,
        mentions: Iterable[str] = (),
        media: Media | None = None,
        contact_id: str | None = None,
        job: str = "",
        **variables: Any,
    ) -> asyncio.Future[Outcome]:
        action = self.compose(
            to,
            key,
            cls=cls,
            mentions=mentions,
            media=media,
            contact_id=contact_id,
            job=job,
            **variables,
        )
        return self.outbox.submit(action)

    def compose(
        self,
        to: Contact | Room | str,
        key: str,
        *,
        cls: ActionClass = ActionClass.SERVICE,
        mentions: Iterable[str] = (),
        media: Media | None = None,
        contact_id: str | None = None,
        job: str = "",
        **variables: Any,
    ) -> Action:
        """Render and build a send action without queueing it (bulk jobs journal these)."""
        chat_id = to if isinstance(to, str) else to.id
        is_room = isinstance(to, Room) or self._app.is_room(chat_id)
        if not is_room and contact_id is None:
            contact_id = chat_id
        rendered = self.render(
            key,
            chat_id=chat_id,
            contact_id=contact_id,
            room_id=chat_id if is_room else None,
            **variables,
        )
        return Action(
            kind=ActionKind.SEND,
            to=chat_id,
            cls=cls,
            text=rendered.text,
            key=key,
            mentions=tuple(mentions),
            media=media,
            plugin=self.plugin.name,
            job=job,
            contact_id="" if is_room else (contact_id or ""),
        )

    def _check_declared(self, key: str) -> None:
        if not self.plugin.declares(key) and key not in KERNEL_KEYS:
            raise PersonaError(f"plugins/{self.plugin.name}", None, self._undeclared(key))

    def _undeclared(self, key: str) -> Problem:
        return Problem(
            "persona.undeclared",
            "plugin {plugin!r} renders {key!r} but does not declare it in Plugin(persona=...)",
            plugin=self.plugin.name,
            key=key,
        )

    def act(self, action: Action) -> asyncio.Future[Outcome]:
        """Non-text actions (accept a friend, invite, kick, post) go through the same outbox."""
        if action.kind is ActionKind.SEND and action.text and not action.key:
            raise ValueError("customer-facing text must come from a persona key")
        return self.outbox.submit(replace(action, plugin=self.plugin.name))


class DataRights:
    """pond.rights bound to one App (ctx.rights), so a plugin never holds the App itself."""

    is_empty = staticmethod(_rights.is_empty)
    summary = staticmethod(_rights.summary)

    def __init__(self, app: App) -> None:
        self._app = app

    def fingerprint(self, contact_id: str) -> str:
        return _rights.fingerprint(self._app, contact_id)

    def suppressed(self, contact_id: str) -> dict[str, Any] | None:
        return _rights.suppressed(self._app, contact_id)

    def reapply(self, contact_id: str) -> bool:
        return _rights.reapply(self._app, contact_id)

    def export_contact(self, contact_id: str, *, by: str = "", origin: str = "") -> dict[str, Any]:
        return _rights.export_contact(self._app, contact_id, by=by, origin=origin)

    def write_export(self, data: dict[str, Any], folder: Path, fmt: str = "json") -> Path:
        return _rights.write_export(self._app, data, folder, fmt)

    def erase_contact(self, contact_id: str, *, by: str = "", origin: str = "") -> _rights.Erasure:
        return _rights.erase_contact(self._app, contact_id, by=by, origin=origin)

    def purge_message_data(
        self, days: float, *, tag_sources: tuple[str, ...] = ("keyword",)
    ) -> dict[str, int]:
        return _rights.purge_message_data(self._app, days, tag_sources=tag_sources)
