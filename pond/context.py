"""What a handler gets besides its event: the plugin's settings, store, persona and the
outbox. Customer-facing text only comes from persona keys the plugin declared."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pond.actions import Action, ActionClass, ActionKind, Media
from pond.commands import Command
from pond.events import Contact, Event, Message, Room
from pond.outbox import Outcome
from pond.persona import PersonaError, Rendered
from pond.problems import Problem

if TYPE_CHECKING:
    from pond.app import App
    from pond.plugin import AgendaItem, Plugin


class Context:
    def __init__(
        self,
        app: App,
        plugin: Plugin,
        event: Event | Command | None = None,
        fire_time: datetime | None = None,
    ) -> None:
        self.app = app
        self.plugin = plugin
        self.event = event
        self.fire_time = fire_time  # scheduled jobs: the fire time being served
        self.settings = app.settings
        self.config: Any = app.plugin_configs.get(plugin.name)
        self.store = app.store.namespace(plugin.name)
        self.persona = app.persona
        self.clock = app.clock
        self.outbox = app.outbox
        self.log = logging.getLogger(f"pond.plugins.{plugin.name}")

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def can(self, capability: str) -> bool:
        return capability in self.app.transport.capabilities

    async def agenda(self) -> list[tuple[str, AgendaItem]]:
        """Every plugin's agenda (see Plugin.agenda_source) as (plugin, item), in time order;
        a failing source is logged and left out."""
        from pond.health.status import collect_agenda  # health builds on Context

        found, _failed = await collect_agenda(self.app)
        return found

    def record(self, kind: str, **data: Any) -> None:
        """An analytics/audit event in the event store (never message text)."""
        self.app.record(f"{self.plugin.name}.{kind}", plugin=self.plugin.name, **data)

    def render(
        self,
        key: str,
        *,
        chat_id: str,
        contact_id: str | None = None,
        room_id: str | None = None,
        **variables: Any,
    ) -> Rendered:
        if key not in self.plugin.persona_keys:
            raise PersonaError(
                f"plugins/{self.plugin.name}",
                None,
                Problem(
                    "persona.undeclared",
                    "plugin {plugin!r} renders {key!r} but does not declare it in "
                    "Plugin(persona=...)",
                    plugin=self.plugin.name,
                    key=key,
                ),
            )
        tags = self.app.book.tags(contact_id) if contact_id else frozenset[str]()
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
            self.app.cli_output(rendered.key, rendered.text)
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
        is_room = isinstance(to, Room) or self.app.is_room(chat_id)
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

    def act(self, action: Action) -> asyncio.Future[Outcome]:
        """Non-text actions (accept a friend, invite, kick, post) go through the same outbox."""
        if action.kind is ActionKind.SEND and action.text and not action.key:
            raise ValueError("customer-facing text must come from a persona key")
        return self.outbox.submit(replace(action, plugin=self.plugin.name))
