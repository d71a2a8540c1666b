"""ChatSim: drive the real App through the memory transport on a fake clock.

    async def test_hello(sims) -> None:          # the fixture closes every App it made
        sim = await sims(plugins=["greeter"])    # or "package.module:plugin", or a Plugin
        said = await sim.say("alice", "你好")
        assert said.keys == ["greeter/hello"]
        assert sim.events("in.message")          # what the bot recorded
        sim.state("greeter")                     # a plugin's state (Plugin(state=...))

Every call returns what the bot did in response (keys, texts, recipients, fake times).
No real sleeps, no network, no threads; a handler error fails the test. `persona=` overlays
templates for one test ({"greeter/hello": "..."}) on a copy of the persona folder."""

from __future__ import annotations

import importlib.util
import itertools
import random
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import plugins as plugin_modules
from pond import (
    App,
    Contact,
    Event,
    FakeClock,
    FriendRequest,
    MemberJoined,
    MemberLeft,
    Message,
    MessageType,
    Plugin,
    Room,
    Settings,
)
from pond.actions import ActionKind
from pond.simulation import SimDriver
from pond.transports.memory import MemoryTransport, Performed

ROOT = Path(__file__).resolve().parent.parent


def load_script(name: str, as_module: str) -> Any:
    """scripts/<name>.py as a module (the tools are programs, not a package). Registered in
    sys.modules: dataclasses look their module up by name."""
    spec = importlib.util.spec_from_file_location(as_module, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


START = datetime(2026, 11, 23, 10, 0, 0)


def overlay_persona(target: Path, templates: Mapping[str, str]) -> Path:
    """A copy of the shipped persona folder with some templates replaced ("key": text)."""
    shutil.copytree(ROOT / "persona", target, dirs_exist_ok=True)
    for key, text in templates.items():
        path = target / f"{key}.j2"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target


@dataclass(frozen=True)
class Sent:
    at: datetime
    kind: str
    to: str
    key: str
    text: str
    mentions: tuple[str, ...]
    cls: str

    @classmethod
    def of(cls, performed: Performed) -> Sent:
        a = performed.action
        return cls(performed.at, a.kind.value, a.to, a.key, a.text, a.mentions, a.cls.value)


@dataclass
class Transcript:
    sent: list[Sent] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return [s.key for s in self.sent if s.kind == ActionKind.SEND.value]

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.sent if s.kind == ActionKind.SEND.value]

    def __len__(self) -> int:
        return len(self.sent)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.sent)


class ChatSim:
    def __init__(
        self,
        data_dir: Path,
        plugins: Iterable[str],
        env: Mapping[str, str],
        clock: FakeClock,
        seed: int,
    ) -> None:
        self.data_dir = data_dir
        self.plugin_names = list(plugins)
        self.env = dict(env)
        self.clock = clock
        self.seed = seed
        self._ids = itertools.count(1)
        self.closed = False
        self.app: App
        self.driver: SimDriver
        self.transport: MemoryTransport

    @classmethod
    async def create(
        cls,
        data_dir: Path,
        *,
        plugins: Iterable[str | Plugin] = ("greeter",),
        env: Mapping[str, str] | None = None,
        start: datetime = START,
        seed: int = 7,
        persona: Mapping[str, str] | None = None,
    ) -> ChatSim:
        env = dict(env or {})
        if persona:
            env["BOT_PERSONA_DIR"] = str(overlay_persona(data_dir.parent / "persona", persona))
        sim = cls(data_dir, plugins, env, FakeClock(start), seed)
        await sim._boot()
        return sim

    def state(self, plugin: str) -> Any:
        """A plugin's state in the running App (built by its Plugin(state=...))."""
        return self.app.plugin_states[plugin]

    def events(self, kind: str | None = None, **where: Any) -> list[dict[str, object]]:
        """What the bot recorded in its event log (never message text), oldest first."""
        return self.app.store.sql.events(kind=kind, **where)

    def settings(self) -> Settings:
        base = {
            "BOT_DATA_DIR": str(self.data_dir),
            "BOT_PERSONA_DIR": str(ROOT / "persona"),
            "BOT_ADMIN_IDS": "admin",
        }
        return Settings.from_mapping({**base, **self.env})

    async def _boot(self) -> None:
        self.transport = MemoryTransport(self.clock.now)
        self.app = App(
            self.settings(),
            self.transport,
            clock=self.clock,
            rng=random.Random(self.seed),
            strict=True,
        )
        self.driver = SimDriver(self.app, self.clock)
        names = [p for p in self.plugin_names if isinstance(p, str)]
        extra = [p for p in self.plugin_names if isinstance(p, Plugin)]
        for plugin in [*plugin_modules.load(names), *extra]:
            self.app.include(plugin)
        await self.app.start()

    async def restart(self) -> None:
        """Stop cleanly and start a new App on the same data (a deploy, a reboot)."""
        await self.app.stop()
        await self._boot()
        self.closed = False

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.app.stop()

    # -- building events ---------------------------------------------------------------------
    def next_id(self) -> str:
        return f"m{next(self._ids)}"

    @staticmethod
    def contact(who: str | Contact) -> Contact:
        return who if isinstance(who, Contact) else Contact(id=who, name=who)

    # -- acting --------------------------------------------------------------------------------
    async def _run(self, event: Event | None = None, *, jump: bool = False) -> Transcript:
        before = len(self.transport.performed)
        if event is not None:
            await self.app.dispatch(event)
        await self.driver.settle(jump=jump)
        return Transcript([Sent.of(p) for p in self.transport.performed[before:]])

    async def send_event(self, event: Event) -> Transcript:
        return await self._run(event)

    async def say(
        self,
        who: str | Contact,
        text: str,
        *,
        room: str | None = None,
        mention: bool = False,
        msg_id: str | None = None,
        at: datetime | None = None,
        type: MessageType = MessageType.TEXT,
        file: str | Path = "",
    ) -> Transcript:
        event = Message(
            id=msg_id or self.next_id(),
            sender=self.contact(who),
            text=text,
            timestamp=at or self.clock.now(),
            room=Room(room, topic=room) if room else None,
            mentions_self=mention or room is None,
            type=type,
            file=str(file),
        )
        return await self._run(event)

    async def friend_request(self, who: str | Contact, hello: str = "") -> Transcript:
        event = FriendRequest(self.next_id(), self.contact(who), hello, self.clock.now())
        return await self._run(event)

    async def join(self, room: str, *names: str) -> Transcript:
        members = tuple(self.contact(n) for n in names)
        return await self._run(
            MemberJoined(Room(room), members, self.clock.now(), id=self.next_id())
        )

    async def leave(self, room: str, *names: str) -> Transcript:
        members = tuple(self.contact(n) for n in names)
        return await self._run(MemberLeft(Room(room), members, self.clock.now(), id=self.next_id()))

    async def tick(self, job_id: str) -> Transcript:
        before = len(self.transport.performed)
        await self.app.run_job(job_id)
        await self.driver.settle()
        return Transcript([Sent.of(p) for p in self.transport.performed[before:]])

    async def advance(self, seconds: float) -> Transcript:
        """Move the clock; due jobs fire and deferred actions go out on the way."""
        before = len(self.transport.performed)
        await self.driver.advance(seconds)
        return Transcript([Sent.of(p) for p in self.transport.performed[before:]])

    async def drain(self) -> Transcript:
        """Let everything deferred go out, jumping the clock as far as needed."""
        return await self._run(jump=True)


Sims = Callable[..., Awaitable[ChatSim]]  # the type of the `sims` fixture


@pytest.fixture
async def sims(tmp_path: Path) -> AsyncIterator[Sims]:
    """`sim = await sims(plugins=[...], env={...}, persona={...})`: as many bots as a test
    needs, each on its own data folder; every one is stopped when the test ends."""
    made: list[ChatSim] = []

    async def make(**options: Any) -> ChatSim:
        folder = tmp_path / f"sim{len(made) + 1}"
        chat = await ChatSim.create(folder / "data", **options)
        made.append(chat)
        return chat

    yield make
    for chat in made:
        await chat.close()
