"""The App wires settings, store, persona, outbox, scheduler and plugins, and routes
inbound events to handlers. One place handles every handler error."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import inspect
import logging
import random
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from sqlalchemy.exc import SQLAlchemyError

from pond import binding, problems, rights
from pond.actions import Action, ActionClass, ActionKind
from pond.clock import Clock, SystemClock
from pond.commands import (
    Admins,
    Command,
    CommandCatalog,
    CommandError,
    Commands,
    UsageError,
    audit_data,
    parse_args,
)
from pond.config import ConfigError, Settings
from pond.context import Context
from pond.cron import cron_trigger
from pond.customers import BookChange, CustomerBook, valid_tag
from pond.events import Event, FriendRequest, HumanTakeover, Message
from pond.filters import Configured
from pond.journal import Inbox, OutQueue, clean_event, event_from_json, origin
from pond.ledger import Ledger, RowStatus
from pond.outbox import Outbox
from pond.pauses import ALL, Pauses
from pond.persona import Persona, PersonaError
from pond.persona import lint as persona_lint
from pond.plugin import Job, Plugin, Route
from pond.store import Store, StoreError
from pond.transports.base import TAG, Transport

log = logging.getLogger("pond.app")
# Answers (key, text, template variables) of a command run for a front end, per task.
_captured: contextvars.ContextVar[list[tuple[str, str, dict[str, Any]]] | None] = (
    contextvars.ContextVar("pond_captured", default=None)
)


class StartupError(Exception):
    """Start-up cannot go on; the message says what and where, in the operator's terms."""


def plugin_failed(plugin: str, error: Exception) -> StartupError:
    """A plugin's start-up (its state, a filter, an on_startup hook) failed: its problem."""
    return StartupError(
        problems.Problem(
            "startup.plugin_failed",
            "plugin {plugin} failed to start: {error}",
            plugin=plugin,
            error=error,
        )
    )


class HandlerError(Exception):
    """Raised in strict mode (tests) when a handler fails."""


class App:
    def __init__(
        self,
        settings: Settings,
        transport: Transport,
        *,
        clock: Clock | None = None,
        store: Store | None = None,
        persona: Persona | None = None,
        rng: random.Random | None = None,
        strict: bool = False,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.clock = clock or SystemClock(settings.bot.timezone)
        self.rng = rng or random.Random()
        self.strict = strict
        self.store = store or Store(settings.bot.data_dir, settings.bot.database_url or None)
        self.persona = persona or Persona(
            settings.bot.persona_dir,
            max_chars=settings.bot.persona_max_chars,
            rng=self.rng,
            code_cache=settings.bot.data_dir / "cache" / "persona-code.bin",
        )
        self.ledger = Ledger(self.store.sql.engine, self.store.sql.metadata)
        self.book = CustomerBook(self.store.sql.engine, self.store.sql.metadata)
        self.inbox = Inbox(self.store.sql)
        self.outbox = Outbox(
            transport,
            self.clock,
            settings.outbox,
            self.ledger,
            self.store.namespace("outbox"),
            queue=OutQueue(self.store.sql),
            record=lambda kind, data: self.record(kind, **data),
            rng=self.rng,
        )
        self.outbox.alert = self.alert
        self.pauses = Pauses(self.store.namespace("core"), self.clock)
        # "Pause everything" also holds the outbox's own initiatives (bulk, service,
        # marketing); replies, command answers and alerts still go out.
        self.outbox.hold = lambda: self.pauses.reason(ALL) is not None
        self.admins = Admins(
            settings.bot.admin_ids,
            self.store.namespace("core"),
            binding.Limits.of(settings),
            self.clock.now,
        )
        self.persona_folders: list[Path] = []  # plugins' own templates (Plugin(persona_dir=))
        self.commands = Commands(CommandCatalog.load_dir(settings.bot.persona_dir))
        problems.use(settings.bot.persona_dir)  # operators read validation problems in Chinese
        transport.status_listener = self._transport_status
        if TAG in (getattr(transport, "modes", None) or {}):
            # The platform keeps its own tags (企业微信): what pond tags is mirrored there.
            self.book.subscribe(self._mirror_tags)
        self.outbox.on_error = lambda error: self._handler_failed("outbox", "action", error)
        self.plugins: dict[str, Plugin] = {}
        self.plugin_configs: dict[str, Any] = {}
        self.plugin_states: dict[str, Any] = {}
        self.routes: list[Route] = []
        self.jobs: dict[str, Job] = {}
        self.triggers: dict[str, BaseTrigger] = {}
        self.errors: list[BaseException] = []
        self.rooms: set[str] = set()
        self.started_at: datetime | None = None
        # bot.py --check: start-up hooks check what they would serve but serve nothing
        # (the web admin binds no port and prints no setup link).
        self.checking = False
        self.cli_output: Callable[[str, str], None] = lambda key, text: print(text)
        # Front ends (the web admin) that follow the transport's news (a new login QR).
        self.status_watchers: list[Callable[[str, dict[str, Any]], None]] = []
        # A front end that shows alerts itself (the console simulator) instead of the log.
        self.alert_listener: Callable[[str, dict[str, Any]], None] | None = None
        self._chat_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._scheduler: AsyncIOScheduler | None = None
        self._stopped = asyncio.Event()
        self._persona_reload: asyncio.Future[list[PersonaError]] | None = None

    # -- wiring ---------------------------------------------------------------------------
    def include(self, plugin: Plugin) -> None:
        if plugin.name in self.plugins:
            raise StartupError(f"plugin {plugin.name} is included twice")
        self.plugins[plugin.name] = plugin
        if plugin.persona_dir is not None:
            self._add_persona_folder(plugin.persona_dir)
        if plugin.config_type is not None:
            self.plugin_configs[plugin.name] = self.settings.plugin_config(
                plugin.name, plugin.config_type
            )
        for spec in plugin.commands:
            try:
                self.commands.register(spec)
            except CommandError as error:
                raise StartupError(str(error)) from error
        self.routes.extend(plugin.routes)
        self.routes.sort(key=lambda r: (r.priority, r.order))
        for job in plugin.jobs:
            key = "JOB_" + job.id.upper().replace(".", "_") + "_CRON"
            cron = self.settings.raw.get(key, job.cron).strip()
            if cron.lower() == "off":
                continue
            try:
                trigger = cron_trigger(cron, self.settings.bot.timezone)
            except ValueError as error:
                raise ConfigError(key, "五段式 cron 表达式，如 0 9 * * *，或 off", cron) from error
            self.jobs[job.id] = job
            self.triggers[job.id] = trigger

    def _add_persona_folder(self, folder: Path) -> None:
        """A plugin's own templates and command names, under the brand's persona folder."""
        refused = self.persona.add_folder(folder)
        if refused:
            raise StartupError(str(refused[0]))
        self.persona_folders = [*self.persona_folders, folder]
        try:
            catalog = CommandCatalog.load_dir(self.settings.bot.persona_dir, self.persona_folders)
        except CommandError as error:
            raise StartupError(str(error)) from error
        self.commands.catalog = catalog

    def set_trigger(self, job_id: str, trigger: BaseTrigger) -> None:
        """Give a code-defined job a trigger computed from data (a content calendar fires at
        its posts' times instead of a fixed cron). Call it from a startup hook; a running
        scheduler picks the new trigger up at once. Replays stay no-ops: run_job still keys
        each run by (job id, fire time)."""
        if job_id not in self.jobs:
            raise KeyError(f"unknown job {job_id!r}")
        self.triggers[job_id] = trigger
        if self._scheduler is not None:
            self._scheduler.reschedule_job(job_id, trigger=trigger)

    async def start(self) -> None:
        """Check everything a customer could hit, recover the outbox, connect the transport."""
        for plugin in self.plugins.values():
            try:
                self.persona.require(plugin.persona_keys, owner=plugin.name)
            except PersonaError as error:
                raise StartupError(str(error)) from error
        await self.build_states()
        self._bind_configured_filters()
        # Read every existing document file now: a corrupt one stops start-up naming it,
        # rather than failing the first customer whose message touches it.
        for path in sorted(self.store.docs.docs_dir.glob("*.json")):
            with contextlib.suppress(ValueError):  # not a namespace of ours: not ours to read
                self.store.docs.db(path.stem)
        self.started_at = self.clock.now()
        self.outbox.recover()
        rights.minimise_audit(self)
        for plugin in self.plugins.values():
            for hook in plugin.startup:
                try:
                    await hook(Context(self, plugin))
                except Exception as error:
                    raise plugin_failed(plugin.name, error) from error
        persona_lint.warn(self)  # copy telling customers to reply a word nothing answers
        self._resume_inbox()
        await self.transport.start(self.dispatch)

    def _resume_inbox(self) -> None:
        """Events received but not handled at the last stop are handled now (their actions
        already queued are not queued again); those older than the cut-off are stale."""
        now = self.clock.now()
        for key, received_at, payload in self.inbox.unhandled():
            try:
                event = event_from_json(payload)
            except (ValueError, KeyError, TypeError) as error:
                log.error("inbox entry %s cannot be read (%s): skipped", key, error)
                self.inbox.mark_stale(key, now.timestamp())
                continue
            age = now.timestamp() - received_at
            if age > self.settings.outbox.startup_cutoff_s:
                self.inbox.mark_stale(key, now.timestamp())
                self.record("in.resumed", chat_id=event.chat_id, stale=True)
                log.info("unhandled %s from %.0f s ago is stale: not answered", event.kind, age)
                continue
            self.record("in.resumed", chat_id=event.chat_id, stale=False)
            self._spawn(event, key, replay=True)

    def context(self, plugin: str) -> Context:
        """A plugin's Context outside any event (scripts, tests, the command line)."""
        return Context(self, self.plugins[plugin])

    async def build_states(self, on_error: Callable[[str, Exception], None] | None = None) -> None:
        """Each plugin's state (Plugin(state=...)), once. A failure stops start-up, unless
        `on_error` takes it (the command line: that plugin is left out, the others work)."""
        for plugin in self.plugins.values():
            if plugin.state_factory is None or plugin.name in self.plugin_states:
                continue
            try:
                state = plugin.state_factory(Context(self, plugin))
                if inspect.isawaitable(state):
                    state = await state
            except Exception as error:
                if on_error is None:
                    raise plugin_failed(plugin.name, error) from error
                on_error(plugin.name, error)
                continue
            self.plugin_states[plugin.name] = state

    def _bind_configured_filters(self) -> None:
        bound = []
        for route in self.routes:
            if any(isinstance(f, Configured) for f in route.filters):
                ctx = Context(self, self.plugins[route.plugin])
                try:
                    fs = tuple(
                        f.make(ctx) if isinstance(f, Configured) else f for f in route.filters
                    )
                except Exception as error:  # a filter reads the plugin's data: its problem
                    raise plugin_failed(route.plugin, error) from error
                route = dataclasses.replace(route, filters=fs)
            bound.append(route)
        self.routes = bound

    # -- inbound --------------------------------------------------------------------------
    async def dispatch(self, event: Event) -> None:
        """Entry point for transports. Returns once the event is queued for its chat."""
        # Ids and text every store can hold (a lone surrogate from a broken transport
        # must not stop this or any later message); usually the same object.
        event, payload = clean_event(event)
        room = getattr(event, "room", None)
        if room is not None:
            self.rooms.add(room.id)
        try:
            admitted = self._admit(event, payload)
        except (SQLAlchemyError, StoreError, OSError) as error:
            # Storage trouble (disk full...) must not silence the bot: answer without the
            # dedup record; the worst case is a second answer if this very message is
            # delivered again before the disk recovers.
            log.error(
                "cannot record inbound %s (%s); answering without dedup",
                event.kind,
                str(getattr(error, "orig", None) or error).splitlines()[0],
            )
            admitted = ""
            self._spawn(event, "")
        if not admitted:
            return
        self._spawn(event, admitted)

    def _spawn(self, event: Event, key: str, *, replay: bool = False) -> None:
        task = asyncio.create_task(self._handle_in_order(event, key, replay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _admit(self, event: Event, payload: dict[str, Any] | None = None) -> str:
        """Noise gate shared by all transports: self, known bots, duplicates, stale backlog.
        An admitted event is journaled in the inbox as received; returns its inbox key
        ("" when it is not to be handled)."""
        sender = getattr(event, "sender", None)
        room = getattr(event, "room", None)
        if sender is not None and sender.id == self.transport.self_id:
            return ""
        if sender is not None and sender.id in self.settings.bot.known_bot_ids:
            self.record("in.ignored", reason="known_bot", chat_id=event.chat_id)
            return ""
        key = self.inbox.key_of(event)
        if self.inbox.known(key):
            log.debug("duplicate %s dropped", event.kind)
            return ""
        now = self.clock.now()
        age = (now - event.timestamp).total_seconds()
        stale = age > self.settings.outbox.startup_cutoff_s
        self.inbox.received(key, event, now.timestamp(), stale=stale, payload=payload)
        contact = sender or getattr(event, "contact", None)
        data: dict[str, Any] = {"stale": stale}
        if isinstance(event, Message):
            data.update(
                type=event.type.value, length=len(event.text), mentions_self=event.mentions_self
            )
        self.record(
            f"in.{event.kind}",
            chat_id=event.chat_id,
            contact_id=contact.id if contact else "",
            room_id=room.id if room else "",
            **data,
        )
        if contact is not None and not isinstance(event, FriendRequest):
            # Only friends can write in a private chat; in rooms, trust the transport.
            friend = contact.is_friend if room is not None else True
            self.book.touch(contact.id, contact.name, event.timestamp, is_friend=friend)
        if stale:
            log.info("stale %s from %.0f s ago recorded, not answered", event.kind, age)
            return ""
        return key

    async def _handle_in_order(self, event: Event, key: str = "", replay: bool = False) -> None:
        lock = self._chat_locks.setdefault(event.chat_id, asyncio.Lock())
        try:
            async with lock:
                self.store.sql.flush_if_overdue()  # a burst's receipts: durable soon
                with origin(key or self.inbox.key_of(event), replay=replay):
                    await self.handle(event)
                if key:
                    # Same group commit as what the handlers queued and stored, when they
                    # finished within one batch window; "seen" means this mark.
                    self.inbox.handled(key, self.clock.now().timestamp())
        finally:
            if not lock.locked() and self._chat_locks.get(event.chat_id) is lock:
                del self._chat_locks[event.chat_id]

    async def handle(self, event: Event) -> None:
        """Route to handlers by (priority, order); the first blocking match ends the search.
        In a paused chat only observers and when_paused routes run."""
        in_room = getattr(event, "room", None) is not None
        if isinstance(event, HumanTakeover):
            self.pauses.pause(
                event.chat_id, minutes=self.settings.bot.takeover_pause_min, reason="takeover"
            )
            self.record("chat.takeover", chat_id=event.chat_id)
        if isinstance(event, Message) and event.room is None and await self._operator(event):
            return
        paused = self.pauses.reason(event.chat_id)
        for route in self.routes:
            if not isinstance(event, route.event_type):
                continue
            if paused and route.block and not route.when_paused:
                continue
            if (
                isinstance(event, Message)
                and in_room
                and not route.listen_in_rooms
                and not event.mentions_self
            ):
                continue
            matched: Any = None
            for check in route.filters:
                found = check(event)
                if not found:
                    break
                if found is not True:
                    matched = found  # a filter that says what it matched hands it on
            else:
                found = True
            if not found:
                continue
            plugin = self.plugins[route.plugin]
            try:
                await route.handler(event, Context(self, plugin, event, matched=matched))
            except Exception as error:
                self._handler_failed(route.name, event.kind, error)
            if route.block:
                return

    async def _operator(self, message: Message) -> bool:
        """Admin commands and binding attempts; True when the message was one."""
        try:
            if await binding.attempt(self, message):
                return True
        except Exception as error:  # storage trouble: the message is then no binding
            self._handler_failed("core.binding", "message", error)
            return True
        if not self.admins.is_admin(message.sender.id):
            return False
        command = self.commands.parse(message)
        if command is None:
            return False
        await self.run_command(command)
        return True

    def print_cli(self, key: str, text: str, variables: dict[str, Any]) -> None:
        """A command's answer to an operator who is not in a chat (terminal or web page)."""
        found = _captured.get()
        if found is None:
            self.cli_output(key, text)
        else:
            found.append((key, text, variables))

    async def run_command_captured(self, command: Command) -> list[tuple[str, str, dict[str, Any]]]:
        """run_command for a front end: the answers (key, text, template variables) are
        returned, not printed."""
        found: list[tuple[str, str, dict[str, Any]]] = []
        token = _captured.set(found)
        try:
            await self.run_command(command)
        finally:
            _captured.reset(token)
        return found

    async def run_command(self, command: Command) -> None:
        """Run an operator command (from chat or the CLI), audit-logged either way."""
        spec = self.commands.specs[command.name]
        audit = audit_data(command, spec.keep_args, self.is_known_id)
        self.record("admin.command", contact_id=command.sender.id, **audit)
        ctx = Context(self, self.plugins[spec.plugin], command)
        if spec.args is not None:
            try:
                command = dataclasses.replace(command, values=parse_args(spec.args, command))
            except UsageError as wrong:
                info = self.commands.catalog.info(command.name)
                await ctx.reply(
                    "core/command_usage",
                    name=info.display,
                    usage=info.usage,
                    reason=wrong.reason,
                    value=wrong.value[:30],
                )
                return
            ctx = Context(self, self.plugins[spec.plugin], command)
        try:
            await spec.handler(command, ctx)
        except Exception as error:
            self._handler_failed(f"{spec.plugin}.{command.name}", "command", error)

    def is_known_id(self, value: str) -> bool:
        """A contact, room or admin id this bot knows (kept verbatim in the audit log)."""
        return self.admins.is_admin(value) or self.is_room(value) or self.book.exists(value)

    def _handler_failed(self, where: str, kind: str, error: Exception) -> None:
        log.error(
            "%s failed on %s: %s: %s",
            where,
            kind,
            type(error).__name__,
            error,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
        self.record("handler.error", where=where, event=kind, error=type(error).__name__)
        if self.strict:
            self.errors.append(error)

    # -- scheduled jobs ---------------------------------------------------------------------
    async def run_job(self, job_id: str, fire_time: datetime | None = None) -> bool:
        """Run a job for one fire time. A fire time already served is a no-op (replays,
        double firings after a restart). Returns whether the job ran."""
        job = self.jobs.get(job_id)
        if job is None:
            known = ", ".join(sorted(self.jobs)) or "(none)"
            raise KeyError(f"unknown job {job_id!r}; known jobs: {known}")
        fire_time = (fire_time or self.clock.now()).replace(second=0, microsecond=0)
        if not self.store.sql.mark_seen(f"job:{job_id}@{fire_time.isoformat()}", self.clock.now()):
            log.info("job %s for %s already ran", job_id, fire_time.isoformat())
            return False
        self.record("job.fired", job=job_id, fire_time=fire_time.isoformat())
        try:
            await job.handler(Context(self, self.plugins[job.plugin], fire_time=fire_time))
        except Exception as error:
            self._handler_failed(job_id, "job", error)
            self.alert("core/job_alert", job=job_id)
        return True

    def _transport_status(self, status: str, data: dict[str, Any]) -> None:
        """Connection news from the transport: recorded, logged, and told to the admins."""
        safe: dict[str, Any] = {
            k: v for k, v in data.items() if isinstance(v, str | int | float | bool)
        }
        self.record(f"transport.{status}", **safe)
        log.info("transport %s %s", status, safe)
        for watcher in self.status_watchers:
            watcher(status, dict(data))
        key = {
            "login": "core/login_alert",
            "logout": "core/logout_alert",
            "reconnected": "core/reconnect_alert",
            "staff_needed": "core/platform_alert",  # no API for it: staff must act by hand
        }.get(status)
        if key:
            self.alert(key, **safe)
        if status == "task_result":
            self._task_result(safe)
        if status == "contact_tags" and isinstance(safe.get("contact_id"), str):
            # Tags staff gave on the platform itself (not mirrored back: source "platform").
            tags = [t for t in str(safe.get("tags", "")).split("\n") if valid_tag(t)]
            if tags:
                self.book.tag(safe["contact_id"], tags, self.clock.now(), source="platform")
        if status == "contact_gone" and isinstance(safe.get("contact_id"), str):
            # They removed the account (or staff removed them): churn in the customer book.
            self.book.upsert(safe["contact_id"], self.clock.now(), is_friend=False)
            self.book.set_stage(safe["contact_id"], "churned", self.clock.now(), source="platform")
        self.outbox.wake()

    def _task_result(self, data: dict[str, Any]) -> None:
        """A staff-confirm task's result for one recipient (企业微信 群发) into the journal."""
        job, contact_id = str(data.get("job", "")), str(data.get("contact_id", ""))
        status, reason = {
            "sent": (RowStatus.SENT, "staff_confirmed"),
            "not_friend": (RowStatus.FAILED, "not_friend"),
            "over_quota": (RowStatus.SKIPPED, "over_quota"),
            "not_confirmed": (RowStatus.FAILED, "not_confirmed"),
        }.get(str(data.get("result", "")), (RowStatus.FAILED, "task_failed"))
        if job and contact_id:
            self.ledger.mark(job, contact_id, status, self.clock.now().timestamp(), reason)

    def _mirror_tags(self, change: BookChange) -> None:
        if change.kind != "tagged" or change.source == "platform":
            return
        for tag in change.tags:
            self.outbox.submit(
                Action(
                    ActionKind.TAG,
                    to=change.contact_id,
                    ticket=tag,
                    cls=ActionClass.SERVICE,
                    contact_id=change.contact_id,
                )
            )

    # -- outbound helpers ---------------------------------------------------------------------
    def record(self, name: str, /, **data: Any) -> None:
        fields = {
            k: str(data.pop(k, "") or "") for k in ("plugin", "chat_id", "contact_id", "room_id")
        }
        self.store.sql.record_event(name, ts=self.clock.now(), data=data, **fields)

    def is_room(self, chat_id: str) -> bool:
        return chat_id in self.rooms

    def alert(
        self,
        key: str,
        data: dict[str, Any] | None = None,
        *,
        also: Iterable[str] = (),
        plugin: str = "core",
        **more: Any,
    ) -> None:
        """Tell every admin (and the ids in `also`), in the service voice. A broken alert
        template is logged, never raised: alerts happen exactly when things are already
        going wrong."""
        variables = {**(data or {}), **more}
        if self.alert_listener is not None:
            self.alert_listener(key, variables)
        else:
            # The key says what happened; the values (names, counts) only at DEBUG: a log
            # line is not the place for a dict of customer data.
            log.warning("alert %s", key)
            log.debug("alert %s %s", key, {k: v for k, v in variables.items() if k != "text"})
        for admin in dict.fromkeys([*self.admins.ids(), *also]):
            try:
                text = self.persona.render(key, chat_id=admin, contact_id=admin, **variables).text
            except PersonaError as error:
                log.error("alert template %s: %s", key, error)
                continue
            self.outbox.submit_alert(
                Action(
                    ActionKind.SEND,
                    to=admin,
                    cls=ActionClass.SERVICE,
                    text=text,
                    key=key,
                    plugin=plugin,
                )
            )

    # -- running -------------------------------------------------------------------------------
    def in_flight(self) -> list[asyncio.Task[None]]:
        """Handlers running now (a simulation waits for them; production never needs to)."""
        return list(self._tasks)

    def raise_errors(self) -> None:
        """Strict mode (tests): raise the handler errors collected since the last call."""
        if self.strict and self.errors:
            errors, self.errors = self.errors, []
            raise HandlerError(f"{len(errors)} handler error(s)") from errors[0]

    def reload_persona(self) -> list[PersonaError]:
        """Pick up edited persona files; a broken edit is refused and the operator told."""
        version = self.persona.version
        return self._persona_reloaded(version, self.persona.reload_if_changed())

    async def reload_persona_in_worker(self) -> list[PersonaError]:
        """`reload_persona` with the trial renders in a worker thread: the bot keeps
        answering while a (possibly hostile) edit is checked. A caller that comes while a
        reload runs (the poller and the operator's reload) gets that reload's problems,
        and the operator is alerted once."""
        running = self._persona_reload
        if running is None or running.done():
            running = self._persona_reload = asyncio.ensure_future(self._reload_in_worker())
        return await asyncio.shield(running)

    async def _reload_in_worker(self) -> list[PersonaError]:
        version = self.persona.version
        return self._persona_reloaded(version, await self.persona.reload_in_worker())

    def _persona_reloaded(self, version: int, errors: list[PersonaError]) -> list[PersonaError]:
        for error in errors:
            log.error("template change refused: %s", error)
            self.alert(
                "core/template_alert",
                file=error.file,
                line=error.line or 0,
                reason=str(error.reason),
            )
        if self.persona.version != version:
            persona_lint.warn(self)
        return errors

    async def reload(self) -> dict[str, list[str]]:
        """The operator's reload: persona files, command names (persona/**/commands.toml),
        then every plugin's on_reload hooks. Returns the problems by part ("persona",
        "commands" or a plugin name); a part with problems keeps its last good version."""
        problems: dict[str, list[str]] = {}
        refused = await self.reload_persona_in_worker()
        if refused:
            problems["persona"] = [str(error) for error in refused]
        try:
            commands = Commands(
                CommandCatalog.load_dir(self.settings.bot.persona_dir, self.persona_folders)
            )
            for spec in self.commands.specs.values():
                commands.register(spec)
        except CommandError as error:
            problems["commands"] = [str(error)]
        else:
            self.commands = commands
        for plugin in self.plugins.values():
            for hook in plugin.reloaders:
                try:
                    found = list(await hook(Context(self, plugin)) or [])
                except Exception as error:
                    self._handler_failed(f"{plugin.name}.reload", "reload", error)
                    found = [f"{type(error).__name__}: {error}"]
                if found:
                    problems.setdefault(plugin.name, []).extend(str(p) for p in found)
        self.record("app.reloaded", problems=sum(len(p) for p in problems.values()))
        persona_lint.warn(self)  # rules may have changed as well as copy
        return problems

    async def _reload_persona_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.bot.persona_reload_s)
            await self.reload_persona_in_worker()

    async def _flush_book_forever(self) -> None:
        try:
            while True:
                await asyncio.sleep(1.0)
                self.book.flush()
        finally:
            self.book.flush()

    async def _prune_forever(self) -> None:
        while True:
            ttl = timedelta(days=self.settings.outbox.seen_ttl_days)
            horizon = self.clock.now() - ttl
            try:
                pruned = self.store.sql.prune_seen(horizon)
                pruned += self.inbox.prune(horizon.timestamp())
                pruned += self.outbox.queue.prune(horizon.timestamp())
            except (SQLAlchemyError, OSError) as error:
                log.error("pruning the journals failed (%s)", type(error).__name__)
            else:
                if pruned:
                    log.info("pruned %d journal rows older than %s", pruned, horizon.date())
            await asyncio.sleep(3600)

    def start_background(self, *, outbox: bool = True, scheduler: bool = True) -> None:
        factories = [
            self.store.sql.run_flusher,
            self._flush_book_forever,
            self._reload_persona_forever,
            self._prune_forever,
        ]
        if outbox:
            factories.append(self.outbox.run)
        self._background = [asyncio.create_task(f()) for f in factories]
        if scheduler and self.jobs:
            self._scheduler = AsyncIOScheduler(timezone=self.settings.bot.timezone)
            for job_id, trigger in self.triggers.items():
                self._scheduler.add_job(
                    self.run_job,
                    trigger,
                    args=[job_id],
                    id=job_id,
                    coalesce=True,
                    max_instances=1,
                    misfire_grace_time=300,
                )
            self._scheduler.start()

    async def run(self) -> None:
        """Production: start, then serve until stop() is called."""
        await self.start()
        self.start_background()
        log.info(
            "pond is running: transport=%s plugins=%s", self.transport.name, ",".join(self.plugins)
        )
        await self._stopped.wait()

    def request_stop(self) -> None:
        self._stopped.set()

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        for plugin in self.plugins.values():
            for hook in plugin.shutdown:
                try:
                    async with asyncio.timeout(10):
                        await hook(Context(self, plugin))
                except Exception as error:  # a plugin must not block the stop
                    self._handler_failed(plugin.name, "shutdown", error)
        grace = self.settings.outbox.stop_grace_s
        if self._tasks:
            # Handlers in flight get the grace period; the rest are handled at the next
            # start (their events are journaled as received, not handled).
            await asyncio.wait(list(self._tasks), timeout=grace)
        outbox_ran = bool(self._background)
        for task in self._background:
            task.cancel()
        if self._persona_reload is not None:
            self._persona_reload.cancel()  # its worker thread stops at its next step
        if self._background:
            # Bounded: a task that ignores its cancel must not keep the process alive.
            _, stuck = await asyncio.wait(self._background, timeout=10)
            for task in stuck:
                log.error("background task %s did not stop", task.get_coro())
        if outbox_ran:
            await self.outbox.close(grace)
        for task in list(self._tasks):
            task.cancel()  # its event stays "received": handled again at the next start
        with contextlib.suppress(Exception):
            async with asyncio.timeout(15):
                await self.transport.stop()
        self.book.flush()
        self.store.close()
