"""End to end: the real bot (App + WechatyTransport) against the reference TypeScript puppet
server (npm wechaty-puppet-service's PuppetServer serving wechaty-puppet-mock), started per
test on a free loopback port with an insecure token (tests/puppet_server/server.mjs).

Assertions are on what the server recorded as sent by the bot. Nothing here asserts on
timing: waits have deadlines only so a broken bot fails instead of hanging."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import plugins as plugin_modules
from pond import (
    Action,
    ActionKind,
    App,
    ConfigError,
    Context,
    Event,
    FriendRequest,
    HumanTakeover,
    Media,
    MediaKind,
    MemberJoined,
    MemberLeft,
    Message,
    Plugin,
    Settings,
    StartupError,
    SystemClock,
    filters,
)
from pond.transports.wechaty import WechatyTransport

ROOT = Path(__file__).resolve().parent.parent
SERVER_DIR = ROOT / "tests" / "puppet_server"
BOT_ID, BOT_NAME = "wxid_pond_bot", "小塘"
ALICE, BOB, CAROL, DAVE = "wxid_alice", "wxid_bob", "wxid_carol", "wxid_dave"
ROOM = "room-1@chatroom"
ADMIN = CAROL
DEADLINE_S = 20.0


def node_problem() -> str | None:
    """Why the reference server cannot run here, if it cannot."""
    node = shutil.which("node")
    if node is None:
        return (
            "Node.js is not installed: these tests run the reference TypeScript puppet server "
            "(scripts/test.py installs Node where it can; see README)"
        )
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
        major = int(version.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.SubprocessError):
        return None  # let the tests say what is wrong
    return None if major >= 16 else f"Node.js {major} is too old for the puppet server (16+)"


NODE_PROBLEM = node_problem()
needs_node = pytest.mark.skipif(NODE_PROBLEM is not None, reason=NODE_PROBLEM or "")


# -- the reference puppet server ------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_server_installed() -> None:
    if (SERVER_DIR / "node_modules" / "wechaty-puppet-service").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is missing: run `npm ci` in tests/puppet_server (or scripts/test.py)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=SERVER_DIR, check=True)


class PuppetServer:
    """server.mjs in a subprocess: commands on stdin, answers and "sent" records on stdout."""

    def __init__(
        self,
        port: int,
        token: str,
        *,
        tls: bool = False,
        autologin: bool = True,
        hide_login: bool = False,
    ) -> None:
        self.port, self.token, self.tls, self.autologin = port, token, tls, autologin
        self.hide_login = hide_login
        self.proc: asyncio.subprocess.Process | None = None
        self.sent: list[dict[str, Any]] = []
        self.output: list[str] = []  # everything the server printed, every run
        self._ids = itertools.count(1)
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._readers: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()

    async def start(self) -> None:
        env = {
            **os.environ,
            "POND_MOCK_PORT": str(self.port),
            "POND_MOCK_TOKEN": self.token,
            "POND_MOCK_TLS": "1" if self.tls else "0",
            "POND_MOCK_AUTOLOGIN": "1" if self.autologin else "0",
            "POND_MOCK_HIDE_LOGIN": "1" if self.hide_login else "0",
            "WECHATY_LOG": "info",
        }
        self._ready.clear()
        self.proc = await asyncio.create_subprocess_exec(
            "node",
            "server.mjs",
            cwd=SERVER_DIR,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read_stdout(self.proc.stdout)),
            asyncio.create_task(self._read_stderr(self.proc.stderr)),
        ]
        await until(self._ready.is_set, what="the puppet server to listen", timeout=60)

    async def _read_stdout(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode("utf-8", "replace")
            self.output.append(text)
            try:
                obj = json.loads(text)
            except ValueError:
                continue
            if obj.get("event") == "ready":
                self._ready.set()
            elif obj.get("event") == "sent":
                self.sent.append(obj)
            elif "id" in obj and obj["id"] in self._answers:
                self._answers.pop(obj["id"]).set_result(obj)

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.output.append(line.decode("utf-8", "replace"))

    async def command(self, cmd: str, **args: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        request_id = next(self._ids)
        answer = asyncio.get_running_loop().create_future()
        self._answers[request_id] = answer
        line = json.dumps({"id": request_id, "cmd": cmd, **args}, ensure_ascii=False) + "\n"
        self.proc.stdin.write(line.encode())
        await self.proc.stdin.drain()
        reply = await asyncio.wait_for(answer, DEADLINE_S)
        assert reply["ok"], reply
        return reply

    async def say(
        self,
        who: str,
        text: str,
        *,
        room: str | None = None,
        mentions: Iterable[str] = (),
        message_id: str | None = None,
    ) -> str:
        args: dict[str, Any] = {"from": who, "text": text, "mentions": list(mentions)}
        if room:
            args["room"] = room
        if message_id:
            args["messageId"] = message_id
        return str((await self.command("say", **args))["messageId"])

    def sent_to(self, chat: str, kind: str = "text") -> list[dict[str, Any]]:
        return [s for s in self.sent if s.get("to") == chat and s["kind"] == kind]

    async def wait_sent(
        self, predicate: Callable[[dict[str, Any]], bool], what: str
    ) -> dict[str, Any]:
        await until(lambda: any(predicate(s) for s in self.sent), what=what)
        return next(s for s in self.sent if predicate(s))

    async def kill(self) -> None:
        """Die like a crashed process (no goodbye to clients)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        for task in self._readers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
        await self.kill()

    @property
    def logs(self) -> str:
        return "".join(self.output)


async def until(check: Callable[[], Any], *, what: str, timeout: float = DEADLINE_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# -- the bot --------------------------------------------------------------------------------------
FAST_OUTBOX = {
    "OUTBOX_SWITCH_GAP_S": "0",
    "OUTBOX_CHAT_GAP_S": "0",
    "OUTBOX_TYPING_MAX_S": "0",
    "OUTBOX_BURST": "100",
    "OUTBOX_RATE_PER_MIN": "100000",
    "OUTBOX_QUIET_HOURS": "off",
    "OUTBOX_RETRY_BACKOFF_S": "0.2",
}


def make_settings(data_dir: Path, endpoint: str, token: str, **more: object) -> Settings:
    return Settings.from_mapping(
        {
            "BOT_DATA_DIR": str(data_dir),
            "BOT_PERSONA_DIR": str(ROOT / "persona"),
            "BOT_ADMIN_IDS": ADMIN,
            "WECHATY_PUPPET_SERVICE_TOKEN": token,
            "WECHATY_PUPPET_SERVICE_ENDPOINT": endpoint,
            **FAST_OUTBOX,
            **{key: str(value) for key, value in more.items()},
        }
    )


def make_transport(settings: Settings, **options: Any) -> WechatyTransport:
    options = {
        "backoff_initial_s": 0.2,
        "backoff_max_s": 1.0,
        "startup_timeout_s": 10.0,
        "qr_out": io.StringIO(),
        **options,
    }
    return WechatyTransport(
        settings.wechaty,
        data_dir=settings.bot.data_dir,
        timezone=settings.bot.timezone,
        **options,
    )


class Bot:
    """A running App on the wechaty transport, with what it received and reported."""

    def __init__(self, app: App, transport: WechatyTransport) -> None:
        self.app = app
        self.transport = transport
        self.events: list[Event] = []  # everything the transport dispatched
        self.statuses: list[tuple[str, dict[str, Any]]] = []
        original = transport.status_listener

        def listener(status: str, data: dict[str, Any]) -> None:
            self.statuses.append((status, data))
            original(status, data)

        transport.status_listener = listener
        dispatch = app.dispatch

        async def recording_dispatch(event: Event) -> None:
            self.events.append(event)
            await dispatch(event)

        app.dispatch = recording_dispatch  # type: ignore[method-assign]

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        plugins: Iterable[str] = ("greeter",),
        extra: Iterable[Plugin] = (),
        **options: Any,
    ) -> Bot:
        transport = make_transport(settings, **options)
        app = App(settings, transport, clock=SystemClock(settings.bot.timezone), strict=True)
        for plugin in [*plugin_modules.load(list(plugins)), *extra]:
            app.include(plugin)
        bot = cls(app, transport)
        await app.start()
        app.start_background(scheduler=False)
        return bot

    def of_type(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def status_names(self) -> list[str]:
        return [s for s, _ in self.statuses]

    async def logged_in(self) -> None:
        await until(lambda: self.transport.connected, what="the bot to log in")

    async def stop(self) -> None:
        # Quiet the transport first and let the outbox take any pending wake-up: on Python
        # 3.11 a task cancelled while its asyncio.wait_for completes swallows the cancel,
        # and App.stop() would wait for the outbox worker forever.
        await self.transport.stop()
        await asyncio.sleep(0.1)
        await asyncio.wait_for(self.app.stop(), DEADLINE_S)
        assert self.app.errors == [], self.app.errors


@contextlib.asynccontextmanager
async def running(settings: Settings, **options: Any) -> AsyncIterator[Bot]:
    """A started and logged-in bot, stopped (and checked for handler errors) afterwards."""
    bot = await Bot.start(settings, **options)
    try:
        await bot.logged_in()
        yield bot
    finally:
        await bot.stop()


def probe_plugin() -> tuple[Plugin, list[Event]]:
    """A test-only plugin: answers @-mentions in rooms, accepts friend requests, notes joins."""
    seen: list[Event] = []
    plugin = Plugin("e2e_probe", persona=["greeter/hello"])

    @plugin.on_message(filters.in_room())
    async def answer_in_room(event: Message, ctx: Context) -> None:
        seen.append(event)
        await ctx.reply("greeter/hello", name=event.sender.display)

    @plugin.on_friend_request()
    async def accept(event: FriendRequest, ctx: Context) -> None:
        seen.append(event)
        ctx.act(Action(ActionKind.ACCEPT_FRIEND, to=event.contact.id, ticket=event.id))

    @plugin.on_member_joined()
    async def joined(event: MemberJoined, ctx: Context) -> None:
        seen.append(event)

    @plugin.on_member_left()
    async def left(event: MemberLeft, ctx: Context) -> None:
        seen.append(event)

    return plugin, seen


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def installed() -> None:
    ensure_server_installed()


@pytest.fixture
def token() -> str:
    # "insecure_" is the prefix whose TLS server name matches the reference server's cert.
    return "insecure_" + secrets.token_hex(16)


@dataclass
class Captured:
    """Outputs a test adds to the token leak check, besides logs, stdout and stderr."""

    servers: list[PuppetServer] = field(default_factory=list)
    outputs: list[io.StringIO] = field(default_factory=list)


@pytest.fixture
def leak_check(
    token: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> Iterator[Captured]:
    """Fails the test if the token appears anywhere: pond's logs and the libraries' (all at
    DEBUG), stdout, stderr, the puppet servers' output, the printed QR codes."""
    caplog.set_level(logging.DEBUG)
    captured = Captured()
    yield captured
    out, err = capsys.readouterr()
    texts = {
        "logs": caplog.text,
        "stdout": out,
        "stderr": err,
        **{f"server {i}": s.logs for i, s in enumerate(captured.servers)},
        **{f"output {i}": o.getvalue() for i, o in enumerate(captured.outputs)},
    }
    leaks = [name for name, text in texts.items() if token in text]
    assert leaks == [], f"the token appears in: {leaks}"


@pytest.fixture
async def server(token: str, leak_check: Captured, installed: None) -> AsyncIterator[PuppetServer]:
    service = PuppetServer(free_port(), token)
    leak_check.servers.append(service)
    await service.start()
    yield service
    await service.close()


def endpoint_of(service: PuppetServer) -> str:
    return f"{'https://' if service.tls else ''}127.0.0.1:{service.port}"


# -- scenarios ------------------------------------------------------------------------------------
@needs_node
async def test_private_message_gets_its_reply_and_own_messages_are_not_dispatched(
    tmp_path: Path, server: PuppetServer, token: str
) -> None:
    async with running(make_settings(tmp_path, endpoint_of(server), token)) as bot:
        assert bot.transport.self_id == BOT_ID
        assert ("login", {"name": BOT_NAME}) in bot.statuses
        await server.wait_sent(lambda s: s["to"] == ADMIN, "the login alert to the admin")

        await server.say(ALICE, "你好")
        reply = await server.wait_sent(lambda s: s["to"] == ALICE, "the greeting")
        assert reply["kind"] == "text" and reply["text"] and reply["mentions"] == []
        await server.say(ALICE, "退订")
        await until(lambda: len(server.sent_to(ALICE)) == 2, what="the opt-out confirmation")

        messages = bot.of_type(Message)
        assert [m.text for m in messages] == ["你好", "退订"]
        first = messages[0]
        assert first.sender.id == ALICE and first.sender.name == "Alice"
        assert first.room is None and first.mentions_self
        assert first.timestamp.tzinfo is not None
        assert abs((bot.app.clock.now() - first.timestamp).total_seconds()) < 60
        # The account hears its own replies back: they are recognised and not dispatched,
        # and they are no human takeover either.
        assert all(getattr(e, "sender", None) is None or e.sender.id != BOT_ID for e in bot.events)
        assert bot.of_type(HumanTakeover) == []
        assert len(server.sent_to(ALICE)) == 2
        # python-wechaty's upper layers (web server, job store, ./.wechaty) never load.
        assert not {"wechaty", "wechaty_puppet", "wechaty_puppet_service"} & set(sys.modules)


@needs_node
async def test_room_mention_reaches_the_app_and_the_reply_mentions_the_sender(
    tmp_path: Path, server: PuppetServer, token: str
) -> None:
    probe, seen = probe_plugin()
    async with running(make_settings(tmp_path, endpoint_of(server), token), extra=[probe]) as bot:
        await server.say(BOB, "大家好", room=ROOM)
        await server.say(BOB, f"@{BOT_NAME}\u2005群规是什么", room=ROOM, mentions=[BOT_ID])
        reply = await server.wait_sent(lambda s: s["to"] == ROOM, "the answer in the room")
        assert reply["mentions"] == [BOB]
        assert reply["text"].startswith("@Bob\u2005")

        plain, mentioned = bot.of_type(Message)
        assert plain.room is not None and plain.room.id == ROOM and not plain.mentions_self
        assert mentioned.mentions_self and mentioned.room is not None
        assert mentioned.room.topic == "鱼塘测试群" and mentioned.room.member_count == 3
        assert mentioned.sender.id == BOB
        assert [e.text for e in seen if isinstance(e, Message)] == [mentioned.text]

        # A service that leaves the mention ids empty: the name in the text still counts.
        await server.say(BOB, f"@{BOT_NAME} 在吗", room=ROOM)
        await until(lambda: len(server.sent_to(ROOM)) == 2, what="the second answer")
        assert bot.of_type(Message)[-1].mentions_self
        # Our own room messages came back with their mention prefix; still recognised.
        assert bot.of_type(HumanTakeover) == []


@needs_node
async def test_the_rules_keyword_in_a_room_with_the_groups_plugin(
    tmp_path: Path, server: PuppetServer, token: str
) -> None:
    rooms = tmp_path / "rooms.toml"
    rooms.write_text(f'[rooms."{ROOM}"]\nname = "测试群"\nrules_keywords = ["群规"]\n')
    settings = make_settings(tmp_path / "data", endpoint_of(server), token, GROUPS_ROOMS_FILE=rooms)
    async with running(settings, plugins=["greeter", "groups"]) as bot:
        await server.say(BOB, "群规", room=ROOM)  # no @: the groups plugin listens in its rooms
        reply = await server.wait_sent(lambda s: s["to"] == ROOM, "the rules in the room")
        assert reply["text"]
        (asked,) = bot.of_type(Message)
        assert asked.room is not None and not asked.mentions_self


@needs_node
async def test_friend_requests_joins_and_the_other_actions(
    tmp_path: Path, server: PuppetServer, token: str
) -> None:
    probe, seen = probe_plugin()
    async with running(make_settings(tmp_path, endpoint_of(server), token), extra=[probe]) as bot:
        await server.command("friendRequest", **{"from": DAVE}, name="Dave", hello="我想了解一下")
        accepted = await server.wait_sent(
            lambda s: s["kind"] == "friendship_accept", "the accepted friend request"
        )
        (request,) = bot.of_type(FriendRequest)
        assert request.contact.id == DAVE and request.contact.name == "Dave"
        assert not request.contact.is_friend and request.hello == "我想了解一下"
        assert accepted["id"] == request.id

        await server.command("join", room=ROOM, members=[CAROL], inviter=ALICE)
        await server.command("leave", room=ROOM, members=[BOB], remover=ALICE)
        await until(lambda: len(bot.of_type(MemberLeft)) == 1, what="the leave event")
        (joined,) = bot.of_type(MemberJoined)
        assert [m.id for m in joined.members] == [CAROL] and joined.members[0].name == "Carol"
        assert joined.inviter is not None and joined.inviter.id == ALICE
        assert joined.room.id == ROOM and joined.room.topic == "鱼塘测试群"
        (gone,) = bot.of_type(MemberLeft)
        assert [m.id for m in gone.members] == [BOB]
        assert gone.remover is not None and gone.remover.id == ALICE
        assert [type(e) for e in seen] == [FriendRequest, MemberJoined, MemberLeft]

        image = tmp_path / "menu.png"
        image.write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
        outbox = bot.app.outbox
        outcomes = await asyncio.gather(
            outbox.submit(Action(ActionKind.INVITE, to=ROOM, member_id=DAVE)),
            outbox.submit(Action(ActionKind.KICK, to=ROOM, member_id=CAROL)),
            outbox.submit(Action(ActionKind.ADD_FRIEND, to=BOB, ticket="你好，我是小塘")),
            outbox.submit(
                Action(ActionKind.SEND, to=ALICE, media=Media(MediaKind.IMAGE, path=str(image)))
            ),
            outbox.submit(
                Action(
                    ActionKind.SEND,
                    to=ALICE,
                    text="新品上架",
                    media=Media(MediaKind.LINK, url="https://example.com/new", title="新品"),
                )
            ),
        )
        assert [o.status for o in outcomes] == ["sent"] * 5, outcomes
        kinds = {s["kind"]: s for s in server.sent}
        assert kinds["room_add"] == {
            "event": "sent",
            "kind": "room_add",
            "room": ROOM,
            "contactId": DAVE,
        }
        assert kinds["room_del"]["contactId"] == CAROL
        assert kinds["friendship_add"]["contactId"] == BOB
        assert kinds["friendship_add"]["hello"] == "你好，我是小塘"
        assert kinds["file"]["name"] == "menu.png" and kinds["file"]["to"] == ALICE
        assert kinds["file"]["size"] == image.stat().st_size
        assert kinds["url"]["url"] == "https://example.com/new" and kinds["url"]["title"] == "新品"
        assert server.sent_to(ALICE)[-1]["text"] == "新品上架"
        # The mock reports our invite and kick as a join and a leave done by the account.
        await until(lambda: len(bot.of_type(MemberJoined)) == 2, what="the join by the bot")
        assert bot.of_type(MemberJoined)[-1].inviter.id == BOT_ID  # type: ignore[union-attr]
        # The image came back as the account's own message: not a takeover.
        await until(lambda: len(bot.of_type(MemberLeft)) == 2, what="the kick")
        assert bot.of_type(HumanTakeover) == []


@needs_node
async def test_a_message_typed_on_the_phone_is_a_human_takeover(
    tmp_path: Path, server: PuppetServer, token: str
) -> None:
    async with running(make_settings(tmp_path, endpoint_of(server), token)) as bot:
        await server.command("selfSay", to=ALICE, text="您好，我是店长，我来为您服务")
        await until(lambda: bot.of_type(HumanTakeover), what="the takeover")
        (takeover,) = bot.of_type(HumanTakeover)
        assert takeover.chat_id == ALICE and takeover.room is None
        await until(lambda: bot.app.pauses.reason(ALICE), what="the pause")

        # Paused: the greeting stays quiet; the opt-out still works, and proves both
        # messages were handled.
        await server.say(ALICE, "你好")
        await server.say(ALICE, "退订")
        await until(lambda: server.sent_to(ALICE), what="the opt-out confirmation")
        await asyncio.sleep(0.3)
        assert len(server.sent_to(ALICE)) == 1


@needs_node
async def test_server_killed_and_restarted_the_bot_reconnects_without_duplicates(
    tmp_path: Path, server: PuppetServer, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(make_settings(tmp_path, endpoint_of(server), token)) as bot:
        first_id = await server.say(ALICE, "你好")
        await server.wait_sent(lambda s: s["to"] == ALICE, "the first greeting")

        await server.kill()
        await until(lambda: "disconnected" in bot.status_names(), what="the disconnect")
        assert not bot.transport.connected
        # Queued while the service is down: held, then delivered once.
        held = bot.app.outbox.submit(Action(ActionKind.SEND, to=BOB, text="稍后为您回复"))
        await asyncio.sleep(0.5)
        assert not held.done()

        # It comes back with another token (revoked, or reconfigured): the bot keeps trying.
        server.token = "insecure_" + secrets.token_hex(16)
        await server.start()
        await until(lambda: "rejected the token" in caplog.text, what="the rejection")
        assert not held.done() and not bot.transport.connected
        await server.kill()

        server.token = token
        await server.start()
        await until(lambda: "reconnected" in bot.status_names(), what="the reconnection")
        data = next(d for s, d in bot.statuses if s == "reconnected")
        assert data["downtime_s"] > 0
        assert (await asyncio.wait_for(held, DEADLINE_S)).status == "sent"
        assert len(server.sent_to(BOB)) == 1
        await server.wait_sent(
            lambda s: s["to"] == ADMIN and "恢复" in s["text"], "the reconnect alert"
        )

        # The service re-delivers the first message (same id): answered already.
        await server.say(ALICE, "你好", message_id=first_id)
        await server.say(ALICE, "在吗")
        await until(lambda: len(server.sent_to(ALICE)) == 2, what="the answer after the restart")
        await asyncio.sleep(0.3)
        assert len(server.sent_to(ALICE)) == 2

    # A new bot process on the same data: the seen ids persisted, a replay stays unanswered.
    async with running(make_settings(tmp_path, endpoint_of(server), token)) as bot:
        await server.say(ALICE, "你好", message_id=first_id)
        await server.say(ALICE, "hello")
        await until(lambda: len(server.sent_to(ALICE)) == 3, what="the answer after the redeploy")
        await asyncio.sleep(0.3)
        assert len(server.sent_to(ALICE)) == 3
        assert bot.of_type(Message)[0].id == first_id  # delivered, deduped by the App


@needs_node
async def test_another_client_with_the_same_token(
    tmp_path: Path, server: PuppetServer, token: str
) -> None:
    async with running(make_settings(tmp_path, endpoint_of(server), token)) as bot:
        # A second pond on the same token cannot take the stream (and does not fight).
        second = make_transport(
            make_settings(tmp_path / "second", endpoint_of(server), token), startup_timeout_s=1.0
        )

        async def ignore(event: Event) -> None:
            return None

        with pytest.raises(StartupError, match="another client"):
            await second.start(ignore)
        assert bot.transport.connected

        # python-wechaty's start() calls Stop first, which ends our stream: we come back.
        from grpclib.client import Channel
        from wechaty_grpc.wechaty import PuppetStub

        channel = Channel("127.0.0.1", server.port)
        channel._authority = token
        try:
            await asyncio.wait_for(PuppetStub(channel).stop(), DEADLINE_S)
        finally:
            channel.close()
        await until(lambda: "disconnected" in bot.status_names(), what="the lost stream")
        await until(lambda: "reconnected" in bot.status_names(), what="the way back")
        await server.say(ALICE, "你好")
        await server.wait_sent(lambda s: s["to"] == ALICE, "a greeting after the takeover")


@needs_node
async def test_an_older_service_that_does_not_repeat_the_login(
    tmp_path: Path, token: str, leak_check: Captured, installed: None
) -> None:
    service = PuppetServer(free_port(), token, hide_login=True)
    leak_check.servers.append(service)
    await service.start()
    settings = make_settings(tmp_path, endpoint_of(service), token)
    async with running(settings, login_grace_s=1.0) as bot:
        # A network blip: the connection drops, the service and its session stay up. On the
        # new stream such a service says nothing about the login: the bot restarts the
        # service's session once to hear it, instead of waiting offline forever.
        bot.transport._channel.close()
        await until(lambda: "reconnected" in bot.status_names(), what="the way back")
        await service.say(ALICE, "你好")
        await service.wait_sent(lambda s: s["to"] == ALICE, "a greeting after the blip")
        await service.close()


@needs_node
async def test_logout_holds_actions_and_a_new_login_sends_them(
    tmp_path: Path, server: PuppetServer, token: str
) -> None:
    async with running(make_settings(tmp_path, endpoint_of(server), token)) as bot:
        await server.command("logout")
        await until(lambda: "logout" in bot.status_names(), what="the logout")
        assert not bot.transport.connected
        held = bot.app.outbox.submit(Action(ActionKind.SEND, to=BOB, text="稍后为您回复"))
        await asyncio.sleep(0.5)
        assert not held.done()
        await server.command("login")
        assert (await asyncio.wait_for(held, DEADLINE_S)).status == "sent"
        assert bot.status_names().count("login") == 2
        assert "reconnected" not in bot.status_names()


@needs_node
async def test_login_qr_code_is_printed_and_saved(
    tmp_path: Path, token: str, leak_check: Captured, installed: None
) -> None:
    service = PuppetServer(free_port(), token, autologin=False)
    leak_check.servers.append(service)
    await service.start()
    qr_out = io.StringIO()
    leak_check.outputs.append(qr_out)
    bot = await Bot.start(make_settings(tmp_path, endpoint_of(service), token), qr_out=qr_out)
    try:
        assert not bot.transport.connected
        await service.command("scan", qrcode="https://login.weixin.qq.com/l/pond-test")
        await until(lambda: "scan" in bot.status_names(), what="the scan status")
        data = dict(bot.statuses)["scan"]
        png = Path(data["qr_png"])
        assert png.parent == tmp_path and png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert "▀" in qr_out.getvalue() or "█" in qr_out.getvalue()
        await service.command("login")
        await bot.logged_in()
        assert not png.exists()
    finally:
        await bot.stop()
        await service.close()


@needs_node
async def test_tls_endpoint(
    tmp_path: Path, token: str, leak_check: Captured, installed: None
) -> None:
    service = PuppetServer(free_port(), token, tls=True)
    leak_check.servers.append(service)
    await service.start()
    try:
        # Plain gRPC to a TLS service: a clear hint.
        plain = make_transport(
            make_settings(tmp_path / "plain", f"127.0.0.1:{service.port}", token),
            startup_timeout_s=0.5,
        )
        with pytest.raises(StartupError, match="https://"):
            await plain.start(_ignore)
        # A certificate for another name than the token's prefix is refused.
        other = make_transport(
            make_settings(tmp_path / "other", endpoint_of(service), "puppet_other_abc123"),
            startup_timeout_s=0.5,
        )
        with pytest.raises(StartupError, match="certificate is for insecure, not puppet_other"):
            await other.start(_ignore)

        async with running(make_settings(tmp_path, endpoint_of(service), token)):
            await service.say(ALICE, "你好")
            await service.wait_sent(lambda s: s["to"] == ALICE, "the greeting over TLS")
    finally:
        await service.close()


@needs_node
async def test_startup_errors_are_clear(
    tmp_path: Path, server: PuppetServer, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "insecure_" + secrets.token_hex(16)
    rejected = make_transport(make_settings(tmp_path, endpoint_of(server), wrong))
    with pytest.raises(StartupError, match="rejected the token") as caught:
        await rejected.start(_ignore)
    # The service echoes a wrong token in its error: it must not reach any output.
    assert wrong not in str(caught.value) and wrong not in caplog.text
    assert wrong not in server.logs

    nobody = make_transport(
        make_settings(tmp_path, f"127.0.0.1:{free_port()}", token), startup_timeout_s=0.5
    )
    with pytest.raises(StartupError, match="connection refused"):
        await nobody.start(_ignore)

    with pytest.raises(ConfigError, match="WECHATY_PUPPET_SERVICE_ENDPOINT"):
        make_transport(make_settings(tmp_path, "", token))
    with pytest.raises(ConfigError, match="WECHATY_PUPPET_SERVICE_TOKEN"):
        make_transport(make_settings(tmp_path, endpoint_of(server), ""))
    with pytest.raises(ConfigError, match="host:port"):
        make_transport(make_settings(tmp_path, "localhost", token))


async def _ignore(event: Event) -> None:
    return None


# -- the transport's helpers (no server needed) -------------------------------------------------
def test_endpoints_and_timestamps() -> None:
    from datetime import UTC, datetime

    from pond.transports import wechaty_support as ws

    assert ws.parse_endpoint("127.0.0.1:8788") == ws.Endpoint("127.0.0.1", 8788)
    assert ws.parse_endpoint("http://gw.local:80/") == ws.Endpoint("gw.local", 80)
    assert ws.parse_endpoint("https://svc.example.com:443").tls
    assert ws.parse_endpoint("[::1]:9000") == ws.Endpoint("::1", 9000)
    for bad in ("localhost", "host:0", "host:port", ""):
        with pytest.raises(ValueError):
            ws.parse_endpoint(bad)
    assert ws.token_server_name("puppet_padlocal_abc123") == "puppet_padlocal"
    assert ws.token_server_name("insecure_x") == "insecure"
    assert ws.token_server_name("plaintoken") == ""
    moment = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    seconds = moment.timestamp()
    assert ws.to_datetime(seconds, UTC) == moment  # services send seconds...
    assert ws.to_datetime(seconds * 1000, UTC) == moment  # ...or milliseconds


def test_sent_log_tells_our_echoes_from_a_human() -> None:
    from pond.transports import wechaty_support as ws

    sent = ws.SentLog(ttl_s=60)
    sent.note("room@chatroom", "@Bob\u2005欢迎")
    sent.note("alice", None)  # an image
    sent.note_id("m-1")
    assert sent.match("room@chatroom", "@Bob 欢迎", "", is_text=True)  # spaces may differ
    assert not sent.match("room@chatroom", "@Bob 欢迎", "", is_text=True)  # matched once
    sent.note("room@chatroom", "@Bob\u2005欢迎新朋友", body="欢迎新朋友")
    assert sent.match("room@chatroom", "@鲍勃 欢迎新朋友", "", is_text=True)  # names differ
    assert sent.match("alice", "", "", is_text=False)
    assert sent.match("bob", "whatever", "m-1", is_text=True)
    assert not sent.match("alice", "我是店长", "", is_text=True)  # typed on the phone
    assert ws.mentions_name("@小塘\u2005在吗", "小塘") and ws.mentions_name("hi @小塘", "小塘")
    assert not ws.mentions_name("@小塘塘 在吗", "小塘")
    assert ws.with_mentions("好", ["A", "B"]) == "@A\u2005@B\u2005好"


async def test_room_images_are_saved_for_plugins_bounded_and_swept(tmp_path: Path) -> None:
    from types import SimpleNamespace as NS

    from pond.transports import wechaty_support as ws

    def stream(*parts: tuple[str, bytes]) -> Any:
        async def chunks() -> Any:
            for name, data in parts:
                yield NS(file_box_chunk=NS(name=name, data=data))

        return chunks()

    media = ws.MediaFiles(tmp_path / "in", max_bytes=10, sweep_s=0)
    saved = await media.save("m/1", stream(("tea.JPG", b""), ("", b"12345"), ("", b"678")))
    assert Path(saved).name == "m_1.jpg" and Path(saved).read_bytes() == b"12345678"
    assert await media.save("m2", stream(("big.png", b"x" * 11))) == ""  # over the cap
    assert await media.save("m3", stream(("x.png", b""))) == ""  # nothing came
    os.utime(saved, (1, 1))  # a day old: swept before the next save
    await media.save("m4", stream(("a.png", b"1")))
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["m4.png"]


def test_redactor_cleans_messages_arguments_and_tracebacks() -> None:
    from pond.transports import wechaty_support as ws

    secret = "insecure_" + secrets.token_hex(8)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("pond.test.redactor")
    logger.addHandler(handler)
    logger.propagate = False
    redactor, handlers = ws.install_redactor([secret])
    try:
        logger.warning("token %s in args", secret)
        logger.warning(f"token {secret} in the message")
        try:
            raise ValueError(f"Invalid Wechaty TOKEN {secret!r}")
        except ValueError:
            logger.exception("failed")
    finally:
        ws.remove_redactor(redactor, handlers)
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert secret not in text and text.count("***") == 3


def test_qr_png_is_a_valid_image(tmp_path: Path) -> None:
    import struct
    import zlib

    from pond.transports import wechaty_support as ws

    matrix = ws.qr_matrix("https://login.weixin.qq.com/l/abc")
    assert matrix is not None
    path = tmp_path / "qr.png"
    ws.write_png(matrix, path, scale=2)
    data = path.read_bytes()
    width, height = struct.unpack(">II", data[16:24])
    assert width == height == len(matrix) * 2
    idat = data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8]
    assert len(zlib.decompress(idat)) == height * (width + 1)
    assert ws.qr_text(matrix).count("\n") == (len(matrix) + 1) // 2 - 1
