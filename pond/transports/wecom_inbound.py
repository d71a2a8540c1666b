"""企业微信 callbacks -> pond's neutral events.

Callbacks are at-least-once (WeCom retries 3 times when it gets no answer in 5 s), so every
event carries an id made of what WeCom sends each time (change type, ids, CreateTime): a
redelivery gets the same id and the App's inbox drops it. Callbacks carry events, never chat
text; kf (微信客服) messages are pulled with kf/sync_msg from a persisted cursor.

Mapping:
- add_external_contact / add_half_external_contact -> FriendRequest (hello = State, the
  channel code of the QR code; the WelcomeCode is kept for the greeting);
- del_external_contact / del_follow_user -> "contact_gone" status (churn in the book);
- change_external_chat create / update (add_member, del_member) / dismiss -> members kept,
  MemberJoined / MemberLeft by comparing with groupchat/get;
- change_external_tag -> the tag-id cache is dropped;
- kf_msg_or_event -> one Message per customer text; a servicer's own message in the
  WeCom client -> HumanTakeover (the bot pauses in that chat);
- a staff member writing to the app -> a private Message (admins use commands this way)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, tzinfo
from typing import Any

from pond.events import (
    Contact,
    Event,
    FriendRequest,
    HumanTakeover,
    MemberJoined,
    MemberLeft,
    Message,
    Room,
)
from pond.transports import wecom_store as ks
from pond.transports.base import StatusListener
from pond.transports.wecom_api import WecomApi
from pond.transports.wecom_store import WecomStore

log = logging.getLogger("pond.transports.wecom")

KF_ORIGIN_CUSTOMER = 3  # sync_msg: origin 3 = sent by the WeChat customer
KF_ORIGIN_SERVICER = 5  # origin 5 = a servicer typed it in the WeCom client


class Inbound:
    def __init__(
        self,
        api: WecomApi,
        store: WecomStore,
        *,
        timezone: tzinfo,
        wall: Callable[[], float],
        mono: Callable[[], float],
        status: Callable[[], StatusListener],
    ) -> None:
        self.api = api
        self.store = store
        self.tz = timezone
        self.wall = wall
        self.mono = mono
        self.status = status
        self._kf_locks: dict[str, asyncio.Lock] = {}
        self.welcome_seen: dict[str, float] = {}  # external_userid -> monotonic receipt

    def _time(self, fields: dict[str, str]) -> datetime:
        try:
            ts = float(fields.get("CreateTime", "") or self.wall())
        except ValueError:
            ts = self.wall()
        return datetime.fromtimestamp(ts, self.tz)

    async def handle(
        self, fields: dict[str, str], sink: Callable[[Event], Awaitable[None]]
    ) -> None:
        msg_type = fields.get("MsgType", "")
        event = fields.get("Event", "")
        if msg_type == "event" and event == "change_external_contact":
            await self._contact(fields, sink)
        elif msg_type == "event" and event == "change_external_chat":
            await self._chat(fields, sink)
        elif msg_type == "event" and event == "change_external_tag":
            for name, _ in self.store.items(ks.TAG_ID):
                self.store.delete(ks.TAG_ID + name)
        elif msg_type == "event" and event == "kf_msg_or_event":
            await self.sync_kf(fields.get("OpenKfId", ""), fields.get("Token", ""), sink)
        elif msg_type == "text" and fields.get("FromUserName"):
            sender = fields["FromUserName"]
            await sink(
                Message(
                    id="app:" + (fields.get("MsgId") or f"{sender}:{fields.get('CreateTime')}"),
                    sender=Contact(id=sender, name=sender),
                    text=fields.get("Content", ""),
                    timestamp=self._time(fields),
                )
            )
        else:
            log.debug("wecom callback %s/%s ignored", msg_type, event)

    # -- 客户联系 ----------------------------------------------------------------------------
    async def _contact(
        self, fields: dict[str, str], sink: Callable[[Event], Awaitable[None]]
    ) -> None:
        change = fields.get("ChangeType", "")
        user, external = fields.get("UserID", ""), fields.get("ExternalUserID", "")
        if not external:
            return
        ident = f"{change}:{user}:{external}:{fields.get('CreateTime', '')}"
        if change in ("add_external_contact", "add_half_external_contact"):
            self.store.set(ks.FOLLOW + external, user)
            code = fields.get("WelcomeCode", "")
            known = self.store.get(ks.WELCOME + external) or {}
            if code and known.get("code") != code:
                # Kept before dispatch: the greeting the App sends may follow within seconds.
                self.store.set(
                    ks.WELCOME + external, {"code": code, "at": self.wall(), "used": False}
                )
                self.welcome_seen[external] = self.mono()
            name = await self._name(external)
            await sink(
                FriendRequest(
                    id=ident,
                    contact=Contact(id=external, name=name),
                    hello=fields.get("State", ""),
                    timestamp=self._time(fields),
                )
            )
        elif change == "edit_external_contact":
            await self._tags_of(external, user)
        elif change in ("del_external_contact", "del_follow_user"):
            self.status()("contact_gone", {"contact_id": external, "how": change, "id": ident})

    async def _tags_of(self, external: str, user: str) -> None:
        """Staff edited a customer (tags, remark): API changes fire no callback, so this is
        a person's change; the customer's corp tags on that staff member go to the book."""
        data = await self.api.call(
            "/cgi-bin/externalcontact/get",
            method="GET",
            params={"external_userid": external},
            retryable=True,
        )
        for follow in data.get("follow_user", []):
            if str(follow.get("userid", "")) != user:
                continue
            names = sorted({str(t.get("tag_name", "")) for t in follow.get("tags", [])} - {""})
            for name in names:
                tag_id = next(
                    (str(t.get("tag_id")) for t in follow["tags"] if t.get("tag_name") == name), ""
                )
                if tag_id:
                    self.store.set(ks.TAG_ID + name, tag_id)
            self.status()("contact_tags", {"contact_id": external, "tags": "\n".join(names)})

    async def _name(self, external: str) -> str:
        """The customer's WeChat name, for the greeting; unknown is fine."""
        try:
            data = await self.api.call(
                "/cgi-bin/externalcontact/get",
                method="GET",
                params={"external_userid": external},
                retryable=True,
            )
        except Exception as error:  # a greeting without a name beats no greeting
            log.info("wecom: no name for a new contact (%s)", type(error).__name__)
            return ""
        contact = data.get("external_contact") or {}
        return str(contact.get("name", "")) if isinstance(contact, dict) else ""

    # -- customer groups --------------------------------------------------------------------
    async def _chat(self, fields: dict[str, str], sink: Callable[[Event], Awaitable[None]]) -> None:
        chat_id, change = fields.get("ChatId", ""), fields.get("ChangeType", "")
        if not chat_id:
            return
        if change == "dismiss":
            self.store.delete(ks.ROOM + chat_id)
            return
        before = self.store.get(ks.ROOM + chat_id) or {"name": "", "members": {}}
        data = await self.api.call(
            "/cgi-bin/externalcontact/groupchat/get",
            {"chat_id": chat_id, "need_name": 1},
            retryable=True,
        )
        group = data.get("group_chat") or {}
        members: dict[str, str] = {
            str(m.get("userid", "")): str(m.get("name", "") or m.get("group_nickname", ""))
            for m in group.get("member_list", [])
            if m.get("userid")
        }
        room = Room(id=chat_id, topic=str(group.get("name", "")), member_count=len(members))
        self.store.set(ks.ROOM + chat_id, {"name": room.topic, "members": members})
        if change != "update":
            return  # create: the starting members are no joins
        old: dict[str, str] = before.get("members", {})
        ts = self._time(fields)
        stamp = fields.get("CreateTime", "")
        joined = [
            Contact(id=m, name=n, is_friend=False) for m, n in members.items() if m not in old
        ]
        left = [Contact(id=m, name=n, is_friend=False) for m, n in old.items() if m not in members]
        if joined:
            ids = ",".join(sorted(c.id for c in joined))
            await sink(MemberJoined(room, tuple(joined), ts, id=f"join:{chat_id}:{stamp}:{ids}"))
        if left:
            ids = ",".join(sorted(c.id for c in left))
            await sink(MemberLeft(room, tuple(left), ts, id=f"left:{chat_id}:{stamp}:{ids}"))

    # -- 微信客服 ----------------------------------------------------------------------------
    async def sync_kf(
        self, open_kfid: str, token: str, sink: Callable[[Event], Awaitable[None]]
    ) -> int:
        """Pull every new kf message from the persisted cursor; returns how many texts."""
        lock = self._kf_locks.setdefault(open_kfid, asyncio.Lock())
        count = 0
        async with lock:  # one pull at a time per kf account: the cursor is sequential
            while True:
                cursor = self.store.get(ks.CURSOR + open_kfid, "")
                body: dict[str, Any] = {"cursor": cursor, "limit": 1000, "open_kfid": open_kfid}
                if token:
                    body["token"] = token
                data = await self.api.call("/cgi-bin/kf/sync_msg", body, retryable=True)
                for msg in data.get("msg_list", []):
                    if await self._kf_message(msg, sink):
                        count += 1
                # After the batch is handed to the inbox: a crash re-reads it, the ids dedupe.
                self.store.set(ks.CURSOR + open_kfid, str(data.get("next_cursor", cursor)))
                if not data.get("has_more"):
                    return count

    async def _kf_name(self, external: str) -> str:
        """The customer's WeChat nickname, for replies that greet by name; kept once known."""
        known = self.store.get(ks.KF_NAME + external)
        if known is not None:
            return str(known)
        try:
            data = await self.api.call(
                "/cgi-bin/kf/customer/batchget",
                {"external_userid_list": [external], "need_enter_session_context": 0},
                retryable=True,
            )
        except Exception as error:  # an answer without the name beats no answer
            log.info("wecom: no kf nickname (%s)", type(error).__name__)
            return ""
        for customer in data.get("customer_list", []):
            if customer.get("external_userid") == external:
                name = str(customer.get("nickname", ""))
                self.store.set(ks.KF_NAME + external, name)
                return name
        return ""

    async def _kf_message(
        self, msg: dict[str, Any], sink: Callable[[Event], Awaitable[None]]
    ) -> bool:
        origin = int(msg.get("origin", 0) or 0)
        external = str(msg.get("external_userid", ""))
        if origin == KF_ORIGIN_SERVICER and external:
            # A person answered from the WeCom client: the bot steps back in this chat.
            try:
                sent_at = float(msg.get("send_time", 0) or self.wall())
            except (TypeError, ValueError):
                sent_at = self.wall()
            await sink(
                HumanTakeover(
                    chat_id=external,
                    timestamp=datetime.fromtimestamp(sent_at, self.tz),
                    id="kf:" + str(msg.get("msgid", "")),
                )
            )
            return False
        if origin != KF_ORIGIN_CUSTOMER:
            return False
        open_kfid = str(msg.get("open_kfid", ""))
        if not external:
            return False
        try:
            sent_at = float(msg.get("send_time", 0) or self.wall())
        except (TypeError, ValueError):
            sent_at = self.wall()
        # Any customer message opens (or re-opens) the reply window; a message read again
        # after a crash (same or older time) does not reset the count of replies.
        window = self.store.get(ks.KF + external) or {}
        msgid = str(msg.get("msgid", ""))
        last_in = float(window.get("last_in", 0))
        if last_in < sent_at or (last_in == sent_at and window.get("msgid") != msgid):
            self.store.set(
                ks.KF + external,
                {"open_kfid": open_kfid, "last_in": sent_at, "sent": 0, "msgid": msgid},
            )
        if msg.get("msgtype") != "text":
            return False
        text = str((msg.get("text") or {}).get("content", ""))
        ts = datetime.fromtimestamp(sent_at, self.tz)
        await sink(
            Message(
                id="kf:" + msgid,
                sender=Contact(id=external, name=await self._kf_name(external)),
                text=text,
                timestamp=ts,
            )
        )
        return True
