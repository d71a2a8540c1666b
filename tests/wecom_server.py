"""A fake 企业微信 API on loopback: a real HTTP server (Starlette + uvicorn, in the test's
event loop) answering the documented request and response shapes of the calls pond makes,
with errcodes and token expiry. It also plays WeCom's side of callbacks: it encrypts
events with the app's key and POSTs them to pond's real endpoint.

What it enforces, like WeCom: a token is needed and expires (42001), a WelcomeCode is good
for one message (41051), a kf reply needs the customer's message first (95xxx-style 95018
here), tags must exist (40068), frequency errors can be scripted (45009)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pond.transports.wecom_crypto import WecomCrypto

# A valid 1x1 PNG: what the QR download returns.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@dataclass
class Call:
    path: str
    body: dict[str, Any]
    token: str


@dataclass
class FakeWecom:
    corp_id: str
    secret: str
    token_ttl_s: int = 7200
    calls: list[Call] = field(default_factory=list)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (wall)
    fail: dict[str, list[int]] = field(default_factory=dict)  # path -> errcodes to answer
    welcome_codes: dict[str, str] = field(default_factory=dict)  # code -> external_userid
    used_codes: set[str] = field(default_factory=set)
    contacts: dict[str, str] = field(default_factory=dict)  # external_userid -> name
    tags: dict[str, str] = field(default_factory=dict)  # tag id -> name
    marked: list[tuple[str, str, str]] = field(default_factory=list)  # (userid, ext, tag id)
    kf_messages: list[dict[str, Any]] = field(default_factory=list)
    kf_sent: list[dict[str, Any]] = field(default_factory=list)
    welcomed: list[dict[str, Any]] = field(default_factory=list)
    app_messages: list[dict[str, Any]] = field(default_factory=list)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    ways: dict[str, dict[str, Any]] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)  # 群发 tasks by msgid
    moments: dict[str, dict[str, Any]] = field(default_factory=dict)  # 朋友圈 tasks by jobid
    staff_tags: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # ext -> tags
    published: dict[str, set[str]] = field(default_factory=dict)  # moment_id -> staff who did
    port: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    # -- the API --------------------------------------------------------------------------
    def app(self) -> Starlette:
        routes = [
            Route("/cgi-bin/gettoken", self.gettoken, methods=["GET"]),
            Route("/qr/{config_id}.png", self.qr_image, methods=["GET"]),
            Route("/cgi-bin/{path:path}", self.api, methods=["GET", "POST"]),
        ]
        return Starlette(routes=routes)

    async def gettoken(self, request: Request) -> Response:
        q = request.query_params
        self.calls.append(Call("gettoken", {}, ""))
        if q.get("corpid") != self.corp_id or q.get("corpsecret") != self.secret:
            return JSONResponse({"errcode": 40001, "errmsg": "invalid credential"})
        scripted = self.fail.get("gettoken")
        if scripted:
            return JSONResponse({"errcode": scripted.pop(0), "errmsg": "scripted"})
        token = "tok-" + secrets.token_hex(8)
        self.tokens[token] = time.time() + self.token_ttl_s
        return JSONResponse(
            {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": self.token_ttl_s}
        )

    def expire_tokens(self) -> None:
        """Every token issued so far expires now (WeCom may end one early too)."""
        for token in self.tokens:
            self.tokens[token] = 0.0

    async def qr_image(self, request: Request) -> Response:
        return Response(PNG, media_type="image/png")

    async def api(self, request: Request) -> Response:
        path = request.path_params["path"]
        token = request.query_params.get("access_token", "")
        body: dict[str, Any] = {}
        if request.method == "POST":
            raw = await request.body()
            body = json.loads(raw) if raw else {}
        else:
            body = dict(request.query_params)
            body.pop("access_token", None)
        self.calls.append(Call(path, body, token))
        if token not in self.tokens:
            return JSONResponse({"errcode": 40014, "errmsg": "invalid access_token"})
        if self.tokens[token] < time.time():
            return JSONResponse({"errcode": 42001, "errmsg": "access_token expired"})
        scripted = self.fail.get(path)
        if scripted:
            return JSONResponse({"errcode": scripted.pop(0), "errmsg": "scripted"})
        handler = getattr(self, "do_" + path.replace("/", "_"), None)
        if handler is None:
            return JSONResponse({"errcode": 404, "errmsg": f"not faked: {path}"})
        answer: dict[str, Any] = handler(body)
        return JSONResponse({"errcode": 0, "errmsg": "ok", **answer})

    def paths(self) -> list[str]:
        return [c.path for c in self.calls]

    # -- 客户联系 ------------------------------------------------------------------------------
    def do_externalcontact_get(self, body: dict[str, Any]) -> dict[str, Any]:
        ext = body.get("external_userid", "")
        follow = [{"userid": "zhangsan", "tags": self.staff_tags.get(ext, [])}]
        return {
            "external_contact": {"external_userid": ext, "name": self.contacts.get(ext, "")},
            "follow_user": follow,
        }

    def do_externalcontact_send_welcome_msg(self, body: dict[str, Any]) -> dict[str, Any]:
        code = body.get("welcome_code", "")
        if code not in self.welcome_codes or code in self.used_codes:
            raise _Err(41051, "welcome_code used or invalid")
        self.used_codes.add(code)
        self.welcomed.append(body)
        return {}

    def do_externalcontact_get_corp_tag_list(self, body: dict[str, Any]) -> dict[str, Any]:
        tags = [{"id": i, "name": n} for i, n in self.tags.items()]
        return {"tag_group": [{"group_id": "g1", "group_name": "pond", "tag": tags}]}

    def do_externalcontact_add_corp_tag(self, body: dict[str, Any]) -> dict[str, Any]:
        made = []
        for tag in body.get("tag", []):
            tag_id = f"et{next(self._ids)}"
            self.tags[tag_id] = tag["name"]
            made.append({"id": tag_id, "name": tag["name"]})
        return {"tag_group": {"group_id": "g1", "group_name": body.get("group_name"), "tag": made}}

    def do_externalcontact_mark_tag(self, body: dict[str, Any]) -> dict[str, Any]:
        for tag_id in body.get("add_tag", []):
            if tag_id not in self.tags:
                raise _Err(40068, "invalid tagid")
            self.marked.append((body["userid"], body["external_userid"], tag_id))
        return {}

    def do_externalcontact_add_contact_way(self, body: dict[str, Any]) -> dict[str, Any]:
        config_id = f"cfg{next(self._ids)}"
        qr = f"http://127.0.0.1:{self.port}/qr/{config_id}.png"
        self.ways[config_id] = {**body, "qr_code": qr}
        return {"config_id": config_id, "qr_code": qr}

    def do_externalcontact_groupchat_get(self, body: dict[str, Any]) -> dict[str, Any]:
        group = self.groups[body["chat_id"]]
        return {"group_chat": group}

    def do_externalcontact_add_msg_template(self, body: dict[str, Any]) -> dict[str, Any]:
        msgid = f"msgTASK{next(self._ids)}"
        self.templates[msgid] = {**body, "results": {}}
        return {"msgid": msgid, "fail_list": []}

    def do_externalcontact_get_groupmsg_send_result(self, body: dict[str, Any]) -> dict[str, Any]:
        task = self.templates[body["msgid"]]
        rows = [
            {"external_userid": e, "userid": body["userid"], "status": task["results"].get(e, 0)}
            for e in task["external_userid"]
        ]
        return {"next_cursor": "", "send_list": rows}

    def do_externalcontact_add_moment_task(self, body: dict[str, Any]) -> dict[str, Any]:
        jobid = f"job{next(self._ids)}"
        self.moments[jobid] = body
        return {"jobid": jobid}

    def do_externalcontact_get_moment_task_result(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "status": 3,
            "type": "add_moment_task",
            "result": {"errcode": 0, "errmsg": "ok", "moment_id": "mom" + body["jobid"]},
        }

    def do_externalcontact_get_moment_task(self, body: dict[str, Any]) -> dict[str, Any]:
        moment_id = body["moment_id"]
        jobid = moment_id.removeprefix("mom")
        staff = self.moments[jobid].get("visible_range", {}).get("sender_list", {})
        done = self.published.get(moment_id, set())
        rows = [{"userid": u, "publish_status": int(u in done)} for u in staff.get("user_list", [])]
        return {"next_cursor": "", "task_list": rows}

    def staff_publishes(self, moment_id: str, userid: str) -> None:
        """A staff member pressed 发表 on the 朋友圈 task in the client."""
        self.published.setdefault(moment_id, set()).add(userid)

    def staff_confirms(self, msgid: str, results: dict[str, int]) -> None:
        """The staff member pressed 发送: per customer 1 sent, 2 not a friend, 3 over quota."""
        self.templates[msgid]["results"].update(results)

    # -- 微信客服 ------------------------------------------------------------------------------
    def do_kf_sync_msg(self, body: dict[str, Any]) -> dict[str, Any]:
        start = int(body.get("cursor") or 0)
        batch = self.kf_messages[start : start + 2]  # small pages: has_more is exercised
        nxt = start + len(batch)
        return {
            "next_cursor": str(nxt),
            "has_more": int(nxt < len(self.kf_messages)),
            "msg_list": batch,
        }

    def do_kf_customer_batchget(self, body: dict[str, Any]) -> dict[str, Any]:
        found = [
            {"external_userid": e, "nickname": self.contacts[e]}
            for e in body.get("external_userid_list", [])
            if e in self.contacts
        ]
        return {"customer_list": found, "invalid_external_userid": []}

    def do_kf_send_msg(self, body: dict[str, Any]) -> dict[str, Any]:
        wrote = any(m["external_userid"] == body["touser"] for m in self.kf_messages)
        if not wrote:
            raise _Err(95018, "send msg not allowed: the customer has not written")
        self.kf_sent.append(body)
        return {"msgid": f"out{next(self._ids)}"}

    def do_message_send(self, body: dict[str, Any]) -> dict[str, Any]:
        self.app_messages.append(body)
        return {"invaliduser": ""}

    # -- WeCom's side of the callbacks -------------------------------------------------------
    def kf_customer_writes(self, open_kfid: str, external: str, text: str) -> None:
        self.kf_messages.append(
            {
                "msgid": f"kfmsg{next(self._ids)}",
                "open_kfid": open_kfid,
                "external_userid": external,
                "send_time": int(time.time()),
                "origin": 3,
                "msgtype": "text",
                "text": {"content": text},
            }
        )


def servicer_writes(fake: FakeWecom, open_kfid: str, external: str, text: str) -> None:
    """A person answers the customer from the WeCom client (origin 5)."""
    fake.kf_customer_writes(open_kfid, external, text)
    fake.kf_messages[-1]["origin"] = 5


class _Err(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def _errors(app: Starlette) -> Starlette:
    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Err)
        return JSONResponse({"errcode": exc.code, "errmsg": exc.msg})

    app.add_exception_handler(_Err, handler)
    return app


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serving(fake: FakeWecom):  # type: ignore[no-untyped-def]
    config = uvicorn.Config(
        _errors(fake.app()), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the fake WeCom server did not start"
        await asyncio.sleep(0.02)
    fake.port = int(server.servers[0].sockets[0].getsockname()[1])
    try:
        yield fake
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@dataclass
class Callbacks:
    """WeCom's callback sender: encrypts an event and POSTs it to pond's endpoint."""

    crypto: WecomCrypto
    url: str
    corp_id: str

    async def post(self, xml: str, times: int = 1) -> list[int]:
        timestamp, nonce = str(int(time.time())), secrets.token_hex(4)
        body = self.crypto.encrypt_body(xml.encode(), timestamp, nonce)
        signature = self.crypto.signature(timestamp, nonce, _encrypt_of(body))
        params = {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce}
        statuses = []
        async with httpx.AsyncClient(trust_env=False) as client:
            for _ in range(times):  # a retry carries the same body and signature
                response = await client.post(self.url, params=params, content=body)
                statuses.append(response.status_code)
        return statuses

    def event(self, event: str, **values: str) -> str:
        parts = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in values.items())
        return (
            f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
            f"<FromUserName><![CDATA[sys]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[{event}]]></Event>{parts}</xml>"
        )


def _encrypt_of(body: bytes) -> str:
    start = body.index(b"<Encrypt><![CDATA[") + len(b"<Encrypt><![CDATA[")
    return body[start : body.index(b"]]>", start)].decode()
