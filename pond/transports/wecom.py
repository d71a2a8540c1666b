"""企业微信 (WeCom) through the official server API: 客户联系 + 微信客服, for a self-built app.

The official route has no ban risk, but its own rules, which this transport declares as a
capability *mode* per action kind (`modes`, see base.Mode) and enforces itself:
- no API sends a staff member's 1:1 message to a customer. A SEND to a customer goes out
  as `send_welcome_msg` when it is the greeting within 20 s of the add event (once: the
  WelcomeCode is marked used before the call), else as a 微信客服 reply (`kf/send_msg`)
  inside the window the customer opened (48 h, at most 5 replies); anything else is
  refused (the outbox records it as skipped with the reason; nothing is sent);
- tags pond gives are mirrored with `mark_tag` (TAG actions, through the outbox);
- there is no kick API: a KICK is refused and staff are alerted to do it by hand;
- a SEND to a staff member (an admin alert, a command's answer) is an app message.

Inbound: a callback endpoint (a mountable Starlette app; served by uvicorn on
WECOM_CALLBACK_HOST:PORT until the web admin mounts it) verifies, decrypts and answers; see
wecom_inbound for the events. The secret, the token and the AES key are never logged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from datetime import tzinfo
from pathlib import Path
from types import MappingProxyType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pond.actions import Action, ActionKind, MediaKind
from pond.app import StartupError
from pond.config import ConfigError, WecomSettings
from pond.transports import wecom_store as ks
from pond.transports.base import (
    BROADCAST,
    DM,
    FRIEND_REQUESTS,
    MOMENTS,
    REPLY,
    ROOMS,
    TAG,
    TAGS,
    WELCOME,
    EventSink,
    Mode,
    StatusListener,
    TransportError,
)
from pond.transports.wecom_api import WecomApi, WecomApiError, WecomPermissionError
from pond.transports.wecom_crypto import CallbackRefused, WecomCrypto, decode_aes_key, fields
from pond.transports.wecom_inbound import Inbound
from pond.transports.wecom_store import WecomStore
from pond.transports.wecom_tasks import StaffTasks

log = logging.getLogger("pond.transports.wecom")

MAX_BODY = 256 * 1024  # callbacks are small XML documents
WELCOME_MARGIN_S = 1.0  # the API call itself takes time: stop trying a little early
BAD_CREDENTIALS = frozenset({40001, 40013, 40091, 40056, 41002, 41004})
_CHANNEL = re.compile(r"^[A-Za-z0-9_-]{1,30}$")  # WeCom's `state`: at most 30 characters

EXPECTED = {
    "WECOM_CORP_ID": "企业ID（管理后台「我的企业 → 企业信息」最下方，ww 开头）",
    "WECOM_SECRET": "自建应用的 Secret（管理后台「应用管理 → 自建应用」里查看；"
    "只放在环境变量或 .env 中）",
    "WECOM_AGENT_ID": "自建应用的 AgentId（一串数字）",
    "WECOM_TOKEN": "自建应用「接收消息 → 设置API接收」里的 Token",
    "WECOM_AES_KEY": "自建应用「接收消息 → 设置API接收」里的 EncodingAESKey（43 位字母和数字）",
}


def _refuse(action: Action, reason: str, why: str) -> TransportError:
    return TransportError(f"{action.describe()}: {why}", refused=reason)


def check_settings(settings: WecomSettings) -> None:
    """The one config message for a missing or malformed WECOM_* key (never the secret)."""
    values = {
        "WECOM_CORP_ID": settings.corp_id,
        "WECOM_SECRET": settings.secret,
        "WECOM_AGENT_ID": settings.agent_id,
        "WECOM_TOKEN": settings.token,
        "WECOM_AES_KEY": settings.aes_key,
    }
    for key, value in values.items():
        if not value.strip():
            raise ConfigError(key, EXPECTED[key], "")
    if not settings.agent_id.strip().isdigit():
        raise ConfigError("WECOM_AGENT_ID", EXPECTED["WECOM_AGENT_ID"], settings.agent_id)
    try:
        decode_aes_key(settings.aes_key)
    except ValueError:
        # Never echo a key, not even a wrong one: say its length only.
        got = f"{len(settings.aes_key.strip())} 个字符（内容不显示）"
        raise ConfigError("WECOM_AES_KEY", EXPECTED["WECOM_AES_KEY"], got) from None
    if not settings.api_base.startswith(("https://", "http://")):
        raise ConfigError("WECOM_API_BASE", "以 https:// 开头的地址", settings.api_base)


class _QuietServer(uvicorn.Server):
    """uvicorn in pond's loop: the bot owns SIGINT / SIGTERM, not the callback server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class WecomTransport:
    name = "wecom"
    # Private chats (kf, welcome, staff), customer groups (events only), new customers, tags,
    # 朋友圈 (as tasks staff publish: see modes).
    capabilities = frozenset({DM, ROOMS, FRIEND_REQUESTS, TAGS, MOMENTS})
    modes: Mapping[str, Mode] = MappingProxyType(
        {
            ActionKind.SEND.value: Mode.WINDOW,
            REPLY: Mode.WINDOW,
            WELCOME: Mode.AUTO,
            TAG: Mode.AUTO,
            ActionKind.ACCEPT_FRIEND.value: Mode.AUTO,
            BROADCAST: Mode.STAFF_CONFIRM,
            ActionKind.POST.value: Mode.STAFF_CONFIRM,
            ActionKind.KICK.value: Mode.NONE,
            ActionKind.INVITE.value: Mode.NONE,
            ActionKind.ADD_FRIEND.value: Mode.NONE,
        }
    )
    atomic_media = False

    def __init__(
        self,
        settings: WecomSettings,
        *,
        data_dir: Path,
        timezone: tzinfo,
        serve: bool = True,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        max_age_s: float = 300.0,
        timeout_s: float = 10.0,
        tasks_every_s: float = 60.0,
        task_gather_s: float = 5.0,
    ) -> None:
        check_settings(settings)
        self.settings = settings
        self.data_dir = data_dir
        self._serve = serve
        self._wall = wall
        self._mono = monotonic
        self.self_id = f"wecom-agent:{settings.agent_id.strip()}"
        self.connected = False
        self.status_listener: StatusListener = lambda status, data: None
        self.crypto = WecomCrypto(
            settings.token.strip(),
            settings.aes_key.strip(),
            settings.corp_id.strip(),
            max_age_s=max_age_s,
            now=wall,
        )
        self.api = WecomApi(
            settings.corp_id.strip(),
            settings.secret.strip(),
            base=settings.api_base,
            timeout_s=timeout_s,
            monotonic=monotonic,
        )
        self.store = WecomStore(data_dir / "wecom.sqlite3")
        self.inbound = Inbound(
            self.api,
            self.store,
            timezone=timezone,
            wall=wall,
            mono=monotonic,
            status=lambda: self.status_listener,
        )
        self.tasks = StaffTasks(
            self.api,
            self.store,
            wall=wall,
            status=lambda: self.status_listener,
            gather_s=task_gather_s,
        )
        self._tasks_every_s = tasks_every_s
        self._tasks_loop: asyncio.Task[None] | None = None
        self.sink: EventSink | None = None
        self.refused = 0  # callbacks refused (bad signature, stale, wrong corp)
        self._server: uvicorn.Server | None = None
        self._server_task: asyncio.Task[None] | None = None
        self.callback_port = settings.callback_port
        self._told: set[tuple[str, int]] = set()

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, sink: EventSink) -> None:
        self.sink = sink
        try:
            await self.api.token()
        except WecomApiError as error:
            if error.code in BAD_CREDENTIALS:
                raise StartupError(
                    f"企业微信拒绝了 WECOM_CORP_ID / WECOM_SECRET（errcode {error.code}）："
                    "请核对企业ID和自建应用的 Secret"
                ) from None
            log.warning("wecom: no access token yet (%s); calls will retry", error)
        except WecomPermissionError as error:
            raise StartupError(f"企业微信接口没有权限：{error.hint}") from None
        except TransportError as error:
            log.warning("wecom: API not reachable yet (%s); calls will retry", error)
        if self._serve:
            await self._start_server()
        self._tasks_loop = asyncio.create_task(self._run_tasks())
        self.connected = True

    async def _run_tasks(self) -> None:
        """Staff-confirm tasks: create the gathered ones, poll the open ones' results."""
        while True:
            await asyncio.sleep(self._tasks_every_s)
            try:
                await self.tasks.tick()
            except Exception as error:  # the next round tries again; never the loop's end
                log.warning("wecom: staff-confirm tasks not polled (%s)", type(error).__name__)

    async def _start_server(self) -> None:
        host, port = self.settings.callback_host, self.settings.callback_port
        config = uvicorn.Config(
            self.callback_app(),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,  # query strings carry signatures: no request lines in logs
            lifespan="off",
        )
        self._server = _QuietServer(config)
        self._server_task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._server_task.done():
                raise StartupError(
                    f"企业微信回调服务无法监听 {host}:{port}（端口被占用或无权限），"
                    "请修改 WECOM_CALLBACK_HOST / WECOM_CALLBACK_PORT"
                )
            await asyncio.sleep(0.02)
        sockets = [s for server in self._server.servers for s in server.sockets]
        if sockets:
            self.callback_port = int(sockets[0].getsockname()[1])
        log.info(
            "wecom callback listening on %s:%d%s",
            host,
            self.callback_port,
            self.settings.callback_path,
        )

    async def stop(self) -> None:
        self.connected = False
        self.sink = None
        if self._tasks_loop is not None:
            self._tasks_loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tasks_loop
            self._tasks_loop = None
        if self._server is not None and self._server_task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server_task, 10)
            self._server = self._server_task = None
        await self.api.aclose()
        self.store.close()

    # -- the callback endpoint ------------------------------------------------------------------
    def callback_app(self) -> Starlette:
        """Mountable as is (the web admin can mount it at its root)."""
        return Starlette(
            routes=[Route(self.settings.callback_path, self._callback, methods=["GET", "POST"])]
        )

    async def _callback(self, request: Request) -> Response:
        q = request.query_params
        sig, ts, nonce = q.get("msg_signature", ""), q.get("timestamp", ""), q.get("nonce", "")
        try:
            if request.method == "GET":
                echo = self.crypto.verify_url(sig, ts, nonce, q.get("echostr", ""))
                return PlainTextResponse(echo)
            size = int(request.headers.get("content-length", "0") or 0)
            if size > MAX_BODY:
                raise CallbackRefused("too_large")
            body = await request.body()
            if len(body) > MAX_BODY:
                raise CallbackRefused("too_large")
            found = fields(self.crypto.decrypt_body(sig, ts, nonce, body))
        except CallbackRefused as refused:
            self.refused += 1
            log.warning("wecom callback refused: %s", refused.reason)
            return PlainTextResponse("", status_code=403)
        except ValueError:
            self.refused += 1
            return PlainTextResponse("", status_code=400)
        sink = self.sink
        if sink is None:
            return PlainTextResponse("", status_code=503)  # WeCom retries later
        try:
            await self.inbound.handle(found, sink)
        except Exception as error:
            # Not answered 200: WeCom delivers it again, and the inbox drops what it has.
            log.warning("wecom callback not handled (%s); WeCom will retry", type(error).__name__)
            if isinstance(error, WecomPermissionError):
                self._permission(error)
            return PlainTextResponse("", status_code=500)
        return PlainTextResponse("success")

    # -- outbound ------------------------------------------------------------------------------
    async def perform(self, action: Action) -> None:
        try:
            await self._perform(action)
        except WecomPermissionError as error:
            self._permission(error)
            raise

    def _permission(self, error: WecomPermissionError) -> None:
        what = str(error).split(":", 1)[0]
        if (what, error.code) in self._told:
            return  # once per API and code: the alert itself may need the same API
        self._told.add((what, error.code))
        self.status_listener(
            "staff_needed", {"reason": "permission", "hint": error.hint, "code": error.code}
        )

    async def _perform(self, action: Action) -> None:
        kind = action.kind
        if kind is ActionKind.SEND:
            await self._send(action)
        elif kind is ActionKind.ACCEPT_FRIEND:
            # The add event means the customer is already a contact: nothing to accept.
            if self.store.get(ks.FOLLOW + action.to) is None:
                raise _refuse(action, "wecom:not_a_contact", "not a customer of this corp")
        elif kind is ActionKind.TAG:
            await self._tag(action)
        elif kind is ActionKind.POST:
            await self._post(action)
        elif kind is ActionKind.KICK:
            self.status_listener(
                "staff_needed",
                {"reason": "no_kick_api", "group": action.to, "member": action.member_id},
            )
            raise _refuse(action, "wecom:no_kick_api", "WeCom has no API to remove a member")
        else:
            raise _refuse(action, "wecom:no_api", f"WeCom has no API for {kind.value}")

    async def _post(self, action: Action) -> None:
        """朋友圈 only as a task staff publish from the client (staff_confirm)."""
        media = action.media
        link = None
        if media is not None and media.kind is MediaKind.LINK and media.url:
            link = {"title": media.title or media.url, "url": media.url}
        elif media is not None:
            raise _refuse(action, "wecom:no_media", "images need an upload pond does not do yet")
        if not action.text and link is None:
            raise _refuse(action, "wecom:empty", "nothing to post")
        jobid = await self.tasks.moment(
            action.text,
            link,
            list(self.settings.staff_ids),
            job=action.job,
            contact_id=action.to or action.contact_id,
        )
        self.status_listener(
            "staff_needed",
            {
                "reason": "staff_confirm",
                "hint": "朋友圈任务已创建：请员工在企业微信客户端「客户朋友圈」里确认发表",
                "task": jobid,
            },
        )
        # The outcome says "waits for staff" (skipped with that reason), not "posted".
        raise _refuse(action, "wecom:staff_confirm", "becomes a task staff publish")

    def is_customer(self, chat_id: str) -> bool:
        return any(
            self.store.get(prefix + chat_id) is not None
            for prefix in (ks.FOLLOW, ks.KF, ks.WELCOME)
        )

    async def _send(self, action: Action) -> None:
        to, text = action.to, action.text
        if self.store.get(ks.ROOM + to) is not None:
            raise _refuse(
                action, "wecom:no_group_send_api", "no API posts into a customer group directly"
            )
        if action.media is not None or not text:
            raise _refuse(action, "wecom:no_media", "only text goes out through WeCom for now")
        if not self.is_customer(to):
            await self.api.call(
                "/cgi-bin/message/send",
                {
                    "touser": to,
                    "msgtype": "text",
                    "agentid": int(self.settings.agent_id),
                    "text": {"content": text},
                },
            )
            return
        user = self.store.get(ks.FOLLOW + to)
        if action.is_bulk and user:
            # 群发: only as a task staff confirm in the client; results come by polling.
            self.tasks.add(action.job, text, str(user), to)
            raise _refuse(action, "wecom:staff_confirm", "becomes a task staff confirm")
        if await self._welcome(to, text):
            return
        window = self.store.get(ks.KF + to)
        if window is None:
            raise _refuse(action, "wecom:no_dm_api", "no API sends a staff member's 1:1 message")
        if self._wall() - float(window["last_in"]) > self.settings.kf_window_h * 3600:
            self.status_listener("window_closed", {"contact_id": to, "why": "expired"})
            raise _refuse(action, "wecom:kf_window_closed", "the 48 h kf window has closed")
        if int(window["sent"]) >= self.settings.kf_window_replies:
            self.status_listener("window_closed", {"contact_id": to, "why": "full"})
            raise _refuse(action, "wecom:kf_window_full", "the kf window's replies are used up")
        # Counted before the call: an answer lost in transit still used a reply.
        self.store.set(ks.KF + to, {**window, "sent": int(window["sent"]) + 1})
        await self.api.call(
            "/cgi-bin/kf/send_msg",
            {
                "touser": to,
                "open_kfid": window["open_kfid"],
                "msgtype": "text",
                "text": {"content": text},
            },
        )

    async def _welcome(self, to: str, text: str) -> bool:
        welcome = self.store.get(ks.WELCOME + to)
        if not welcome or welcome.get("used"):
            return False
        seen = self.inbound.welcome_seen.get(to)
        age = self._mono() - seen if seen is not None else self._wall() - float(welcome["at"])
        if age > self.settings.welcome_window_s - WELCOME_MARGIN_S:
            self.store.set(ks.WELCOME + to, {**welcome, "used": True, "missed": True})
            log.info("wecom: welcome window missed by %.1f s", age)
            return False
        # Marked before the call: a WelcomeCode is good for one message, ever.
        self.store.set(ks.WELCOME + to, {**welcome, "used": True})
        await self.api.call(
            "/cgi-bin/externalcontact/send_welcome_msg",
            {"welcome_code": welcome["code"], "text": {"content": text}},
            done=frozenset({41051}),
        )
        return True

    async def _tag(self, action: Action) -> None:
        # Only 客户联系 customers carry corp tags (a kf customer may be no one's contact).
        user = self.store.get(ks.FOLLOW + action.to)
        if not user:
            raise _refuse(action, "wecom:not_a_contact", "no staff member follows this customer")
        tag_id = await self._tag_id(action.ticket)
        await self.api.call(
            "/cgi-bin/externalcontact/mark_tag",
            {"userid": user, "external_userid": action.to, "add_tag": [tag_id]},
            retryable=True,
        )

    async def _tag_id(self, name: str) -> str:
        cached = self.store.get(ks.TAG_ID + name)
        if cached:
            return str(cached)
        data = await self.api.call("/cgi-bin/externalcontact/get_corp_tag_list", {}, retryable=True)
        for group in data.get("tag_group", []):
            for tag in group.get("tag", []):
                self.store.set(ks.TAG_ID + str(tag.get("name")), str(tag.get("id")))
        cached = self.store.get(ks.TAG_ID + name)
        if cached:
            return str(cached)
        made = await self.api.call(
            "/cgi-bin/externalcontact/add_corp_tag",
            {"group_name": "pond", "tag": [{"name": name}]},
        )
        tags = (made.get("tag_group") or {}).get("tag") or []
        if not tags:
            raise TransportError(f"add_corp_tag: no tag id for a new tag ({len(name)} chars)")
        tag_id = str(tags[0].get("id"))
        self.store.set(ks.TAG_ID + name, tag_id)
        return tag_id

    # -- channel QR codes (渠道活码) --------------------------------------------------------------
    async def channel_qr(self, channel: str, user_ids: Sequence[str] = ()) -> dict[str, Any]:
        """A contact way whose `state` is the channel code: customers who scan it arrive as
        friend requests with that code (the friends plugin tags them with the channel)."""
        if not _CHANNEL.match(channel):
            raise ValueError(f"渠道码「{channel}」只能用字母、数字、- 和 _，最多 30 个字符")
        known = self.store.get(ks.WAY + channel)
        if known and Path(known.get("file", "")).is_file():
            return dict(known)
        users = [u for u in (user_ids or self.settings.staff_ids) if u]
        if not users:
            raise ValueError("请先在 WECOM_STAFF_IDS 里填写渠道活码要添加的员工账号（userid）")
        if known:
            config_id, qr_code = known["config_id"], known["qr_code"]
        else:
            data = await self.api.call(
                "/cgi-bin/externalcontact/add_contact_way",
                {
                    "type": 1 if len(users) == 1 else 2,
                    "scene": 2,
                    "state": channel,
                    "user": users,
                    "skip_verify": True,
                    "remark": f"pond {channel}",
                },
            )
            config_id, qr_code = str(data["config_id"]), str(data.get("qr_code", ""))
            # Kept at once: a lost download must not create a second contact way.
            self.store.set(
                ks.WAY + channel,
                {
                    "config_id": config_id,
                    "qr_code": qr_code,
                    "file": "",
                    "users": users,
                    "at": self._wall(),
                },
            )
        if not qr_code:
            data = await self.api.call(
                "/cgi-bin/externalcontact/get_contact_way", {"config_id": config_id}, retryable=True
            )
            qr_code = str((data.get("contact_way") or {}).get("qr_code", ""))
        image = await self.api.fetch_bytes(qr_code)
        folder = self.data_dir / "wecom" / "qr"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{channel}.png"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(image)
        os.replace(tmp, path)
        record = {
            "config_id": config_id,
            "qr_code": qr_code,
            "file": str(path),
            "users": users,
            "at": self._wall(),
        }
        self.store.set(ks.WAY + channel, record)
        return record

    def channel_qrs(self) -> list[tuple[str, dict[str, Any]]]:
        return self.store.items(ks.WAY)
