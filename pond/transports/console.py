"""Console transport and chat simulator: try every plugin in a terminal without WeChat.

The script grammar (one line each, also typed interactively) is HELP below, in the
operators' language. Time is simulated (pond.simulation.SimDriver): `/advance` fires every
job due on the way, in the order the real scheduler would. The transcript prints a date line
whenever the simulated day changes, and alerts for admins as readable lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import re
import select
import sys
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

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
from pond.persona import PersonaError
from pond.simulation import SimDriver
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


HELP = """控制台模拟器：不连微信，在终端里试用全部插件。每行一条（脚本文件也这样写）：
    alice: 你好                 alice 私聊机器人说「你好」
    alice@r1: 群规              alice 在群 r1 里说话；文字里写 @bot 表示 @了机器人
    /friend bob 我想了解一下     bob 发来好友申请，验证消息「我想了解一下」
    /join r1 carol dave         carol 和 dave 进群 r1；      /leave r1 carol  carol 退群
    /join r1 carol by=alice     alice 把 carol 拉进群 r1（裂变：记到 alice 名下）
    /image alice[@r1] [文件]    alice 发一张图片（可带图片文件，例如二维码图片）
    /link alice[@r1] 网址       alice 发一个链接
    /takeover alice             账号主人在手机上接手了和 alice 的聊天
    /admin boss                 让 boss 成为管理员（模拟器里代替绑定码）
    /jobs                       列出定时任务和下次运行时间
    /tick 任务ID                 立即运行一个定时任务
    /advance 2h                 模拟时间前进（90s、15m、2h、1d、1h30m），途中到点的任务都会运行
    /until 09:00                前进到下一个 9 点（也可以写日期：/until 2026-12-01 09:00）
    # 注释、空行                 忽略；/help 显示本说明；/quit 退出（Ctrl-C、Ctrl-D 也可以）"""

MAX_ADVANCE_S = 31 * 86400  # one step of simulated time; longer runs take minutes of real time
_WEEKDAYS = "一二三四五六日"


class ConsoleError(ValueError):
    """A script line that cannot be understood; the simulator prints it and goes on."""


def day_label(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d} 周{_WEEKDAYS[moment.weekday()]}"


def when_label(moment: datetime) -> str:
    return f"{moment:%m-%d} 周{_WEEKDAYS[moment.weekday()]} {moment:%H:%M}"


class Transcript:
    """Stamps transcript lines with the simulated time, and prints the date on its own line
    whenever the day changes, so a multi-day transcript says which day each line belongs to."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._day: date | None = None

    def line(self, moment: datetime, text: str) -> None:
        if moment.date() != self._day:
            self._day = moment.date()
            print(f"—— {day_label(moment)} ——", file=self.out)
        print(f"{moment:%H:%M:%S}  {text}", file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self.out, flush=True)


class ConsoleTransport:
    name = "console"
    capabilities = frozenset(
        {DM, ROOMS, MENTIONS, MEDIA, FRIEND_REQUESTS, TAGS, KICK, INVITE, ADD_FRIEND, MOMENTS}
    )

    def __init__(self, now: Callable[[], datetime], out: TextIO | None = None) -> None:
        self._now = now
        self.out = out or sys.stdout
        self.transcript = Transcript(self.out)
        self.self_id = "bot"
        self.sink: EventSink | None = None
        self.connected = True
        self.status_listener: StatusListener = lambda status, data: None

    async def start(self, sink: EventSink) -> None:
        self.sink = sink

    async def perform(self, action: Action) -> None:
        if action.kind in (ActionKind.SEND, ActionKind.POST):
            mentions = "".join(f" @{m}" for m in action.mentions)
            media = (
                f" [{action.media.kind.value}: {action.media.path or action.media.url}]"
                if (action.media)
                else ""
            )
            text = action.text.replace("\n", "\n" + " " * 12)
            target = "发朋友圈" if action.kind is ActionKind.POST else f"→ {action.to}{mentions}"
            line = f"{target}  [{action.key or '-'}]  {text}{media}"
        else:
            target = f"{action.member_id} → {action.to}" if action.member_id else action.to
            line = f"✓ {_VERB.get(action.kind, action.kind.value)} {target}"
        self.transcript.line(self._now(), line)

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
        self.driver = SimDriver(app, clock)
        transcript = getattr(app.transport, "transcript", None)
        if out is None and isinstance(transcript, Transcript):
            self.transcript = transcript  # one date line per day for both sides of the chat
        else:
            self.transcript = Transcript(out or sys.stdout)
        self.out = self.transcript.out
        self.rooms: dict[str, set[str]] = {}
        self._ids = itertools.count(1)
        app.alert_listener = self._alert

    def _print(self, text: str) -> None:
        self.transcript.note(text)

    def _alert(self, key: str, variables: dict[str, Any]) -> None:
        """Admins get alerts as messages (shown as → lines); with no admin yet, show the
        alert itself, so a console user sees what an admin would be told."""
        if self.app.admins.ids():
            return
        try:
            text = self.app.persona.render(key, chat_id="", **variables).text
        except PersonaError as error:
            text = f"（提醒 {key} 的文案有错：{error}）"
        text = text.replace("\n", "\n" + " " * 12)
        self.transcript.line(
            self.clock.now(), f"⚑ 给管理员的提醒（还没有管理员，/admin 名字 可指定）  {text}"
        )

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
            words = line[1:].split()
            if not words:
                raise ConsoleError("斜杠后面要写命令，比如 /help")
            verb, args = words[0], words[1:]
            if verb == "friend":
                if not args:
                    raise ConsoleError("用法: /friend 名字 验证消息")
                who, hello = args[0], line.split(None, 2)[2] if len(args) > 1 else ""
                return FriendRequest(self._next_id(), self._contact(who), hello, now)
            if verb in {"join", "leave"}:
                if len(args) < 2:
                    raise ConsoleError(f"用法: /{verb} 群ID 名字 [名字...]")
                room_id, names = args[0], [n for n in args[1:] if not n.startswith("by=")]
                by = next((n[3:] for n in args[1:] if n.startswith("by=") and n[3:]), "")
                members = self.rooms.setdefault(room_id, set())
                if verb == "join":
                    members.update(names)
                    return MemberJoined(
                        self._room(room_id),
                        tuple(map(self._contact, names)),
                        now,
                        inviter=self._contact(by) if by else None,
                        id=self._next_id(),
                    )
                members.difference_update(names)
                return MemberLeft(
                    self._room(room_id), tuple(map(self._contact, names)), now, id=self._next_id()
                )
            if verb in {"image", "link"}:
                if not args or (verb == "link" and len(args) < 2):
                    more = " 网址" if verb == "link" else " [图片文件]"
                    raise ConsoleError(f"用法：/{verb} 名字[@群ID]{more}")
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
            raise ConsoleError(f"看不懂这一行：{line}（写法见 /help）")
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

    async def feed(self, line: str, number: int | None = None) -> bool:
        """Handle one line (`number`: its line in a script file, named in errors); False
        means quit."""
        where = f"第 {number} 行：" if number is not None else ""
        try:
            parsed = self.parse(line)
            if parsed is None:
                return True
            if isinstance(parsed, tuple):
                return await self._command(*parsed)
        except ConsoleError as error:
            self._print(f"！{where}{error}")
            return True
        self.transcript.line(self.clock.now(), line.strip())
        await self.app.dispatch(parsed)
        await self.driver.settle()
        return True

    async def _command(self, verb: str, args: list[str]) -> bool:
        """Raises ConsoleError for a command used wrongly."""
        if verb in {"quit", "exit", "q"}:
            return False
        if verb == "help":
            self._print(HELP)
        elif verb == "admin":
            if not args:
                raise ConsoleError("用法: /admin 名字")
            self.app.admins.bind(args[0], self.clock.now(), args[0])
            self._print(f"（{args[0]} 现在是管理员，私聊发「帮助」查看命令）")
        elif verb == "jobs":
            self._jobs()
        elif verb == "tick":
            if not args:
                raise ConsoleError("用法: /tick 任务ID（/jobs 列出全部）")
            if args[0] not in self.app.jobs:
                raise ConsoleError(f"没有定时任务「{args[0]}」（/jobs 列出全部）")
            if not await self.app.run_job(args[0]):
                self._print("（这个任务在这一分钟已经运行过了）")
            await self.driver.settle()
        elif verb == "advance":
            await self.advance(advance_seconds(args))
        elif verb == "until":
            await self.advance(until_seconds(self.clock.now(), args))
        else:
            raise ConsoleError(f"没有 /{verb} 这个命令（写法见 /help）")
        return True

    def _jobs(self) -> None:
        upcoming = self.driver.upcoming()
        if not upcoming:
            self._print("  （没有定时任务）")
            return
        self._print("  定时任务和下次运行时间：")
        width = max(len(job_id) for job_id, _ in upcoming)
        for job_id, nxt in upcoming:
            shown = when_label(nxt) if nxt is not None else "不会再运行"
            self._print(f"  {job_id:<{width}}  {shown}")

    async def advance(self, seconds: float) -> None:
        await self.driver.advance(seconds)
        self._print(f"（时间前进到 {when_label(self.clock.now())}）")

    def summary(self) -> str | None:
        waiting = self.app.outbox.pending_count()
        if waiting:
            return f"（还有 {waiting} 个动作在等待：安静时段、熔断或上限，/advance 可让时间前进）"
        return None

    async def play(self, lines: list[str | None]) -> None:
        """Play script lines in order; None stands for a line that could not be read."""
        for number, line in enumerate(lines, 1):
            if line is None:
                self._print(f"！第 {number} 行不是 UTF-8 编码的文字，已跳过（请用 UTF-8 保存脚本）")
                continue
            if not await self.feed(line, number):
                break
        note = self.summary()
        if note:
            self._print(note)

    async def play_bytes(self, data: bytes) -> None:
        """A script as read from its file: a line that is not UTF-8 text is skipped with an
        error naming it; the others play."""
        lines: list[str | None] = []
        for raw in data.split(b"\n"):
            try:
                lines.append(raw.decode("utf-8").removeprefix("\ufeff"))
            except UnicodeDecodeError:
                lines.append(None)
        await self.play(lines)

    async def play_file(self, path: str) -> None:
        """Play a script file (`-`: standard input). ConsoleError when it cannot be read."""
        if path == "-":
            await self.play_bytes(sys.stdin.buffer.read())
            return
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise ConsoleError(f"读不了脚本文件 {path}：{error.strerror or error}") from None
        await self.play_bytes(data)

    async def interactive(self, stdin: TextIO | BinaryIO | None = None) -> None:
        """Read lines until /quit or end of input. Ctrl-C cancels the waiting read at once
        (no reader thread that would wait for Enter)."""
        self._print(HELP)
        async for raw in _read_lines(stdin or sys.stdin, self.out):
            try:
                line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            except UnicodeDecodeError:
                self._print("！这一行不是 UTF-8 编码的文字，已跳过")
                continue
            if not await self.feed(line):
                break


def until_seconds(now: datetime, args: list[str]) -> float:
    """Seconds from `now` to the next HH:MM, or to a date and time (YYYY-MM-DD HH:MM)."""
    text = " ".join(args)
    try:
        if len(args) == 2:
            moment = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=now.tzinfo)
        elif len(args) == 1:
            clock = datetime.strptime(text, "%H:%M").time()
            moment = datetime.combine(now.date(), clock, now.tzinfo)
            if moment <= now:
                moment += timedelta(days=1)
        else:
            raise ValueError(text)
    except ValueError:
        raise ConsoleError("用法: /until 09:00（下一个 9 点）或 /until 2026-12-01 09:00") from None
    seconds = (moment - now).total_seconds()
    if seconds < 0:
        raise ConsoleError(f"/until {text} 已经过去了：时间只能往前走")
    if seconds > MAX_ADVANCE_S:
        raise ConsoleError(f"/until 一次最多前进 {MAX_ADVANCE_S // 86400} 天，可以分几次")
    return seconds


def advance_seconds(args: list[str]) -> float:
    if not args:
        raise ConsoleError("用法: /advance 时长（如 90s、15m、2h、1d、1h30m）")
    if args[0].startswith("-"):
        raise ConsoleError(f"/advance 的时长「{args[0]}」不对：时间只能往前走")
    try:
        seconds = parse_duration(args[0])
    except ValueError:
        raise ConsoleError(
            f"/advance 看不懂时长「{args[0]}」：写成 90s、15m、2h、1d 或 1h30m"
        ) from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ConsoleError(f"/advance 的时长「{args[0]}」不对：时间只能往前走")
    if seconds > MAX_ADVANCE_S:
        raise ConsoleError(f"/advance 一次最多前进 {MAX_ADVANCE_S // 86400} 天，可以分几次")
    return seconds


async def _read_lines(stream: TextIO | BinaryIO, out: TextIO) -> AsyncIterator[str | bytes]:
    """Lines of `stream` with a prompt before each; a pipe or terminal is read without
    blocking the event loop, anything else (files, test streams) directly."""
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    try:
        fd = stream.fileno()
        loop.add_reader(fd, readable.set)
    except (OSError, ValueError, AttributeError, NotImplementedError):
        fd = -1
    if fd < 0:
        while True:
            out.write("> ")
            out.flush()
            line = stream.readline()
            if not line:
                return
            yield line
    buffer = b""
    try:
        while True:
            out.write("> ")
            out.flush()
            while b"\n" not in buffer:
                await readable.wait()
                readable.clear()
                # The reader callback may be stale (data already read): never block here.
                if not select.select([fd], [], [], 0)[0]:
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    if buffer:
                        yield buffer
                    return
                buffer += chunk
            line, buffer = buffer.split(b"\n", 1)
            yield line
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(fd)
