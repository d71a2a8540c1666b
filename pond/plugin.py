"""Plugin registry: a plugin is a named set of routes, jobs and the persona keys it uses."""

from __future__ import annotations

import itertools
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import TypeVar

from pond.commands import Arg, CommandHandler, CommandSpec
from pond.events import FriendRequest, HumanTakeover, MemberJoined, MemberLeft, Message
from pond.filters import Filter

if TYPE_CHECKING:
    from pond.context import Context

EventHandler = Callable[[Any, "Context"], Awaitable[None]]
JobHandler = Callable[["Context"], Awaitable[None]]
# Operator reload: returns problems (operator-readable, file:line style) or None; raising
# is reported as a problem too. The plugin keeps its last good data on any problem.
ReloadHandler = Callable[["Context"], Awaitable[Iterable[str] | None]]
ReviewSource = Callable[["Context"], Awaitable[list["ReviewItem"]]]
AgendaSource = Callable[["Context"], Awaitable[list["AgendaItem"]]]
# One day's headline numbers (JSON-friendly), or None when there are none to give.
SummarySource = Callable[["Context", date], Awaitable[dict[str, Any] | None]]
StatusSource = Callable[["Context"], Awaitable[dict[str, Any]]]
# A plugin's config dataclass and its per-App state; bare `Context` means Context[Any, Any].
CfgT = TypeVar("CfgT", default=Any)
StT = TypeVar("StT", default=Any)
# Builds the plugin's state for one App at start-up, before its filters are bound; may be
# async. Raising stops start-up with the plugin's name, like an on_startup hook.
StateFactory = Callable[["Context[Any, Any]"], Any]
H = TypeVar("H", bound=EventHandler)
J = TypeVar("J", bound=JobHandler)
C = TypeVar("C", bound=CommandHandler)
RL = TypeVar("RL", bound=ReloadHandler)
RV = TypeVar("RV", bound=ReviewSource)
AG = TypeVar("AG", bound=AgendaSource)
SM = TypeVar("SM", bound=SummarySource)
SS = TypeVar("SS", bound=StatusSource)

_order = itertools.count()
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
DEFAULT_PRIORITY = 100


@dataclass(frozen=True, slots=True)
class Route:
    plugin: str
    event_type: type
    handler: EventHandler
    filters: tuple[Filter, ...]
    priority: int
    order: int
    listen_in_rooms: bool
    block: bool
    when_paused: bool

    @property
    def name(self) -> str:
        return f"{self.plugin}.{getattr(self.handler, '__name__', 'handler')}"


@dataclass(frozen=True, slots=True)
class Job:
    id: str  # "<plugin>.<function>"; config key JOB_<PLUGIN>_<FUNCTION>_CRON overrides cron
    plugin: str
    cron: str
    handler: JobHandler


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """Something waiting for a human decision, listed by the operator's review command and
    counted in the daily summary (a friend request to approve, a delivery nobody can vouch
    for, a post staff must publish by hand...). Never message text: ids, keys, counts.

    `kind` is a short English word; its Chinese label is copy (persona/admin/_labels.j2,
    falling back to the word itself). `command`/`args` tell the operator what to type to
    settle it (an English command name; its Chinese display name is shown)."""

    kind: str
    ref: str  # stable id of the item inside its plugin
    at: float | None = None  # epoch seconds it started waiting
    contact_id: str = ""
    room_id: str = ""
    detail: str = ""  # short and id-like (a job id, a key), shown as is
    command: str = ""
    args: tuple[str, ...] = ()
    title: str = ""  # the operator's own name for it (a post's or campaign's title), if any


@dataclass(frozen=True, slots=True)
class AgendaItem:
    """Work scheduled for the rest of today (a post, a broadcast, a follow-up batch), shown
    in the operator's morning summary. `kind` is labelled like ReviewItem.kind."""

    at: datetime
    kind: str
    ref: str
    detail: str = ""  # id-like: what the operator types to look at or act on it
    count: int = 0  # recipients or items, when known
    title: str = ""  # the operator's own name for it, if any


class Plugin(Generic[CfgT, StT]):
    """`plugin = Plugin("points", persona=["points/added"], config=Cfg, state=Points)`.

    `persona` lists every key the plugin may render: they are checked at load, so a
    missing file stops start-up instead of surprising a customer. Keys named by the
    plugin's data files (a campaign's template, a room's rules) are declared by prefix in
    `persona_prefixes` ("broadcasts/") and checked when the data loads (ctx.check_keys).
    `config` is a dataclass whose fields are read from <NAME>_<FIELD> settings (ctx.config).
    `state(ctx)` builds the plugin's state for each App (ctx.state), once, at start-up.
    `persona_dir` is a folder the plugin ships with its own templates (<dir>/<plugin>/*.j2);
    the brand's persona folder overrides any of them."""

    def __init__(
        self,
        name: str,
        *,
        persona: Iterable[str] = (),
        persona_prefixes: Iterable[str] = (),
        config: type[CfgT] | None = None,
        state: Callable[[Context[CfgT, Any]], StT | Awaitable[StT]] | None = None,
        persona_dir: Path | str | None = None,
        description: str = "",
    ) -> None:
        if not _NAME.match(name):
            raise ValueError(f"plugin name {name!r}: use lowercase letters, digits, _")
        self.name = name
        self.persona_keys: tuple[str, ...] = tuple(persona)
        self.persona_prefixes: tuple[str, ...] = tuple(persona_prefixes)
        self.config_type = config
        self.state_factory: StateFactory | None = state
        self.persona_dir = Path(persona_dir) if persona_dir is not None else None
        self.description = description
        self.routes: list[Route] = []
        self.jobs: list[Job] = []
        self.startup: list[JobHandler] = []
        self.shutdown: list[JobHandler] = []
        self.commands: list[CommandSpec] = []
        self.reloaders: list[ReloadHandler] = []
        self.review_sources: list[ReviewSource] = []
        self.agenda_sources: list[AgendaSource] = []
        self.summary_sources: list[tuple[str, SummarySource]] = []
        self.status_sources: list[StatusSource] = []

    def _route(
        self,
        event_type: type,
        filters: tuple[Filter, ...],
        priority: int,
        listen_in_rooms: bool = False,
        block: bool = True,
        when_paused: bool = False,
    ) -> Callable[[H], H]:
        def register(handler: H) -> H:
            self.routes.append(
                Route(
                    plugin=self.name,
                    event_type=event_type,
                    handler=handler,
                    filters=filters,
                    priority=priority,
                    order=next(_order),
                    listen_in_rooms=listen_in_rooms,
                    block=block,
                    when_paused=when_paused,
                )
            )
            return handler

        return register

    def on_message(
        self,
        *filters: Filter,
        priority: int = DEFAULT_PRIORITY,
        listen_in_rooms: bool = False,
        block: bool = True,
        when_paused: bool = False,
    ) -> Callable[[H], H]:
        """In rooms only @-mentions reach the handler unless listen_in_rooms=True.
        block=False observes without ending the route search (tagging, analytics).
        In a paused chat (human takeover, hand-off, operator pause) only observers and
        routes with when_paused=True run."""
        return self._route(Message, filters, priority, listen_in_rooms, block, when_paused)

    def on_friend_request(
        self, *filters: Filter, priority: int = DEFAULT_PRIORITY, block: bool = True
    ) -> Callable[[H], H]:
        return self._route(FriendRequest, filters, priority, block=block)

    def on_member_joined(
        self, *filters: Filter, priority: int = DEFAULT_PRIORITY, block: bool = True
    ) -> Callable[[H], H]:
        return self._route(MemberJoined, filters, priority, block=block)

    def on_member_left(
        self, *filters: Filter, priority: int = DEFAULT_PRIORITY, block: bool = True
    ) -> Callable[[H], H]:
        return self._route(MemberLeft, filters, priority, block=block)

    def on_human_takeover(
        self, *filters: Filter, priority: int = DEFAULT_PRIORITY, block: bool = False
    ) -> Callable[[H], H]:
        return self._route(HumanTakeover, filters, priority, block=block)

    def scheduled(self, cron: str, *, id: str | None = None) -> Callable[[J], J]:
        """Five-field cron in the bot's timezone; the job id defaults to <plugin>.<function>."""

        def register(handler: J) -> J:
            job_id = f"{self.name}.{id or handler.__name__}"
            self.jobs.append(Job(id=job_id, plugin=self.name, cron=cron, handler=handler))
            return handler

        return register

    def declares(self, key: str) -> bool:
        """The plugin may render `key`: listed in persona=, or under a persona_prefixes one."""
        return key in self.persona_keys or (
            bool(self.persona_prefixes) and key.startswith(self.persona_prefixes)
        )

    def command(
        self, name: str, *, args: Iterable[Arg] | None = None, keep_args: bool = False
    ) -> Callable[[C], C]:
        """An operator command, `async (cmd: Command, ctx)`, admins only, private chat only.
        Its Chinese names and help live in persona/_commands.toml under [name]. The audit
        log keeps its arguments only where they are known ids; `keep_args=True` says they
        are plain words (durations, "all", dates), never free text about a customer.
        `args` declares the arguments (`Arg("who")`, `Arg("n", int)`, ...): the kernel
        parses them into `cmd.values` and answers wrong ones with the command's usage."""

        def register(handler: C) -> C:
            self.commands.append(
                CommandSpec(
                    name=name,
                    plugin=self.name,
                    handler=handler,
                    keep_args=keep_args,
                    args=None if args is None else tuple(args),
                )
            )
            return handler

        return register

    def on_startup(self) -> Callable[[J], J]:
        """Runs once after load; raising here stops start-up with the plugin's name."""

        def register(handler: J) -> J:
            self.startup.append(handler)
            return handler

        return register

    def on_shutdown(self) -> Callable[[J], J]:
        """Runs once when the bot stops, before the store closes (flush what is held in
        memory); errors are logged, never stop the shutdown. Bounded by App.stop."""

        def register(handler: J) -> J:
            self.shutdown.append(handler)
            return handler

        return register

    def on_reload(self) -> Callable[[RL], RL]:
        """`async (ctx) -> list[str] | None`, run by the operator's reload command (App.reload)
        after the persona: re-read the plugin's data files and return the problems found
        (keeping the last good version), or None."""

        def register(handler: RL) -> RL:
            self.reloaders.append(handler)
            return handler

        return register

    def review_source(self) -> Callable[[RV], RV]:
        """`async (ctx) -> list[ReviewItem]`: what of this plugin waits for a human. Also called
        from the command line (scripts/admin.py) where on_startup hooks have not run, so read
        from the store rather than from start-up state."""

        def register(handler: RV) -> RV:
            self.review_sources.append(handler)
            return handler

        return register

    def agenda_source(self) -> Callable[[AG], AG]:
        """`async (ctx) -> list[AgendaItem]`: what this plugin will do from ctx.now to the end
        of today (bot timezone), for the morning summary. Same CLI caveat as review_source."""

        def register(handler: AG) -> AG:
            self.agenda_sources.append(handler)
            return handler

        return register

    def summary_source(self, section: str) -> Callable[[SM], SM]:
        """`async (ctx, day) -> dict | None`: this plugin's headline numbers for one day (bot
        timezone), as the `section` of the operator's daily summary (a variable of
        admin/report). Whoever reports asks through ctx.summaries(day); no plugin imports
        another. Same CLI caveat as review_source."""

        def register(handler: SM) -> SM:
            self.summary_sources.append((section, handler))
            return handler

        return register

    def status_source(self) -> Callable[[SS], SS]:
        """`async (ctx) -> dict`: this plugin's part of the bot's status as JSON-friendly
        values, what the command line's `status --json` prints (asked of the running bot
        through the command-line mailbox)."""

        def register(handler: SS) -> SS:
            self.status_sources.append(handler)
            return handler

        return register
