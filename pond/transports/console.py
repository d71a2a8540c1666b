"""Console transport and chat simulator: try every plugin in a terminal without WeChat.

Script grammar (one line each; also typed interactively):
    alice: 你好                 alice says in private chat
    alice@r1: 群规              alice says in room r1; "@bot" in the text mentions the bot
    /friend bob 我想了解一下     friend request from bob with that hello
    /join r1 carol dave         carol and dave join room r1;   /leave r1 carol
    /image alice[@r1] [FILE]    alice sends an image (FILE: a picture to send, e.g. a QR code)
    /link alice[@r1] URL        alice sends a link card
    /takeover alice             the account's owner typed in alice's chat from the phone
    /admin boss                 make boss an admin (simulator shortcut for the binding code)
    /tick JOB_ID                run a scheduled job now;        /jobs lists them
    /advance 2h                 move the simulated clock (due jobs fire on the way)
    # comment, blank lines      ignored;                        /help, /quit
"""

from __future__ import annotations

import asyncio
import itertools
import re
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from pond.actions import Action, ActionKind
from pond.clock import FakeClock, parse_duration
from pond.events import (
    Contact,
    Event,
    FriendRequest,
    HumanTakeover,
    MemberJoined,
    MemberLeft,
    Message,
    MessageType,
    Room,
)
from pond.transports.base import (
    ADD_FRIEND,
    DM,
    FRIEND_REQUESTS,
    INVITE,
    KICK,
    MEDIA,
    MENTIONS,
    MOMENTS,
    ROOMS,
    TAGS,
    EventSink,
    StatusListener,
)

if TYPE_CHECKING:
    from pond.app import App

_SAY = re.compile(r"^(?P<who>[^\s:@：]+)(?:@(?P<room>[^\s:：]+))?\s*[:：]\s?(?P<text>.*)$")
_VERB = {
    ActionKind.ACCEPT_FRIEND: "通过好友",
    ActionKind.ADD_FRIEND: "添加好友",
    ActionKind.INVITE: "邀请进群",
    ActionKind.KICK: "移出群聊",
    ActionKind.POST: "发朋友圈",
}


class ConsoleError(ValueError):
    """A script line that cannot be understood; the simulator prints it and goes on."""


class ConsoleTransport:
    name = "console"
    capabilities = frozenset(
        {DM, ROOMS, MENTIONS, MEDIA, FRIEND_REQUESTS, TAGS, KICK, INVITE, ADD_FRIEND, MOMENTS}
    )

    def __init__(self, now: Callable[[], datetime], out: TextIO | None = None) -> None:
        self._now = now
        self.out = out or sys.stdout
        self.self_id = "bot"
        self.sink: EventSink | None = None
        self.connected = True
        self.status_listener: StatusListener = lambda status, data: None

    async def start(self, sink: EventSink) -> None:
        self.sink = sink

    async def perform(self, action: Action) -> None:
        stamp = self._now().strftime("%H:%M:%S")
        if action.kind is ActionKind.SEND:
            mentions = "".join(f" @{m}" for m in action.mentions)
            media = (
                f" [{action.media.kind.value}: {action.media.path or action.media.url}]"
                if (action.media)
                else ""
            )
            text = action.text.replace("\n", "\n" + " " * 12)
            line = f"{stamp}  → {action.to}{mentions}  [{action.key or '-'}]  {text}{media}"
        else:
            target = f"{action.member_id} → {action.to}" if action.member_id else action.to
            line = f"{stamp}  ✓ {_VERB.get(action.kind, action.kind.value)} {target}"
        print(line, file=self.out, flush=True)

    async def stop(self) -> None:
        self.sink = None


class Simulator:
    """Turns script lines into events for the real App and settles it after each line."""

    def __init__(
        self, app: App, clock: FakeClock, out: TextIO | None = None, session: str = "s"
    ) -> None:
        self.app = app
        self.session = session  # message ids must not repeat across sessions on kept data
        self.clock = clock
        self.out = out or sys.stdout
        self.rooms: dict[str, set[str]] = {}
        self._ids = itertools.count(1)

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _contact(self, name: str) -> Contact:
        return Contact(id=name, name=name)

    def _room(self, room_id: str) -> Room:
        members = self.rooms.setdefault(room_id, set())
        return Room(id=room_id, topic=room_id, member_count=len(members))

    def _next_id(self) -> str:
        return f"console-{self.session}-{next(self._ids)}"

    def parse(self, line: str) -> Event | tuple[str, list[str]] | None:
        """An event to dispatch, a (command, args) pair, or None for blank/comment lines."""
        line = line.strip()
        if not line or line.startswith("#"):
            return None
        now = self.clock.now()
        if line.startswith("/"):
            verb, *args = line[1:].split()
            if verb == "friend":
                if not args:
                    raise ConsoleError("用法: /friend 名字 验证消息")
                who, hello = args[0], line.split(None, 2)[2] if len(args) > 1 else ""
                return FriendRequest(self._next_id(), self._contact(who), hello, now)
            if verb in {"join", "leave"}:
                if len(args) < 2:
                    raise ConsoleError(f"用法: /{verb} 群ID 名字 [名字...]")
                room_id, names = args[0], args[1:]
                members = self.rooms.setdefault(room_id, set())
                if verb == "join":
                    members.update(names)
                    return MemberJoined(
                        self._room(room_id),
                        tuple(map(self._contact, names)),
                        now,
                        id=self._next_id(),
                    )
                members.difference_update(names)
                return MemberLeft(
                    self._room(room_id), tuple(map(self._contact, names)), now, id=self._next_id()
                )
            if verb in {"image", "link"}:
                if not args or (verb == "link" and len(args) < 2):
                    more = " 网址" if verb == "link" else " [图片文件]"
                    raise ConsoleError(f"用法: /{verb} 名字[@群ID]{more}")
                who, _, room_id = args[0].partition("@")
                kind = MessageType.IMAGE if verb == "image" else MessageType.LINK
                url = args[1] if verb == "link" else ""
                # `/image alice@r1 photo.jpg`: the picture file, as the WeChat transport
                # hands over the image it downloaded (a bare /image has no picture).
                file = " ".join(args[1:]) if verb == "image" else ""
                if file and not Path(file).expanduser().is_file():
                    raise ConsoleError(f"找不到图片文件：{file}")
                return Message(
                    self._next_id(),
                    self._contact(who),
                    url,
                    now,
                    room=self._room(room_id) if room_id else None,
                    type=kind,
                    url=url,
                    file=str(Path(file).expanduser()) if file else "",
                )
            if verb == "takeover":
                if not args:
                    raise ConsoleError("用法: /takeover 名字或群ID")
                room = self._room(args[0]) if args[0] in self.rooms else None
                return HumanTakeover(args[0], now, id=self._next_id(), room=room)
            return (verb, args)
        match = _SAY.match(line)
        if not match:
            raise ConsoleError(f"看不懂这一行: {line!r}（输入 /help 查看写法）")
        who, room_id, text = match["who"], match["room"], match["text"]
        mentioned = re.findall(r"@(\S+)", text)
        room = None
        if room_id:
            self.rooms.setdefault(room_id, set()).add(who)
            room = self._room(room_id)
        return Message(
            self._next_id(),
            self._contact(who),
            text,
            now,
            room=room,
            mentions=tuple(m for m in mentioned if m != "bot"),
            mentions_self="bot" in mentioned or (room is None),
        )

    async def feed(self, line: str) -> bool:
        """Handle one line; False means quit."""
        try:
            parsed = self.parse(line)
        except ConsoleError as error:
            self._print(f"！{error}")
            return True
        if parsed is None:
            return True
        if isinstance(parsed, tuple):
            return await self._command(*parsed)
        self._print(f"{self.clock.now():%H:%M:%S}  {line.strip()}")
        await self.app.dispatch(parsed)
        await self.app.settle()
        return True

    async def _command(self, verb: str, args: list[str]) -> bool:
        if verb in {"quit", "exit", "q"}:
            return False
        if verb == "help":
            self._print(__doc__ or "")
        elif verb == "admin":
            if not args:
                self._print("！用法: /admin 名字")
            else:
                self.app.admins.bind(args[0], self.clock.now(), args[0])
                self._print(f"（{args[0]} 现在是管理员，私聊发「帮助」查看命令）")
        elif verb == "jobs":
            for job_id, job in sorted(self.app.jobs.items()):
                self._print(f"  {job_id}  ({job.cron})")
            if not self.app.jobs:
                self._print("  （没有定时任务）")
        elif verb == "tick":
            if not args:
                self._print("！用法: /tick 任务ID（/jobs 列出全部）")
            else:
                try:
                    ran = await self.app.run_job(args[0])
                except KeyError as error:
                    self._print(f"！{error.args[0]}")
                    return True
                if not ran:
                    self._print("（这个时间点已经运行过了）")
                await self.app.settle()
        elif verb == "advance":
            try:
                seconds = parse_duration(args[0] if args else "")
            except ValueError as error:
                self._print(f"！/advance: {error}")
                return True
            await self.advance(seconds)
        else:
            self._print(f"！未知命令 /{verb}（输入 /help 查看写法）")
        return True

    async def advance(self, seconds: float) -> None:
        await self.app.advance(self.clock, seconds)
        self._print(f"（时间前进到 {self.clock.now():%m-%d %H:%M}）")

    def summary(self) -> str | None:
        waiting = self.app.outbox.pending_count()
        if waiting:
            return f"（还有 {waiting} 个动作在等待：安静时段、熔断或上限，/advance 可让时间前进）"
        return None

    async def play(self, lines: list[str]) -> None:
        for line in lines:
            if not await self.feed(line):
                break
        note = self.summary()
        if note:
            self._print(note)

    async def interactive(self, stdin: TextIO | None = None) -> None:
        stream = stdin or sys.stdin
        self._print(__doc__ or "")
        loop = asyncio.get_running_loop()
        while True:
            self.out.write("> ")
            self.out.flush()
            line = await loop.run_in_executor(None, stream.readline)
            if not line or not await self.feed(line):
                break
