"""The WeChat transport's inbound half: the service's payloads become pond's neutral events.

No wechaty import here: the gRPC stub is passed in and read by attribute. Contacts, rooms
and room nicknames are cached for a while (the service is asked again after `ttl_s`, or
when it says a payload changed)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Protocol

import pond.transports.wechaty_support as ws
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

log = logging.getLogger("pond.transports.wechaty")


class Account(Protocol):
    """Who is logged in (the transport)."""

    self_id: str
    self_name: str


class Inbound:
    def __init__(
        self,
        account: Account,
        *,
        tz: tzinfo,
        sent: ws.SentLog,
        call_timeout_s: float,
        explain: Callable[[BaseException], str],
        ttl_s: float = 600.0,
        media_dir: Path | None = None,
    ) -> None:
        self.account = account
        self.media = ws.MediaFiles(media_dir) if media_dir is not None else None
        self.tz = tz
        self.sent = sent
        self.call_timeout_s = call_timeout_s
        self.explain = explain
        self.seen = ws.RecentIds()
        self.contacts: ws.TtlCache[Contact] = ws.TtlCache(ttl_s)
        self.rooms: ws.TtlCache[Room] = ws.TtlCache(ttl_s)
        self.member_names: ws.TtlCache[str] = ws.TtlCache(ttl_s)
        self.official: set[str] = set()

    async def _call(self, awaitable: Any) -> Any:
        return await ws.call(awaitable, self.call_timeout_s)

    def forget(self, key: str) -> None:
        """The service says this contact's or room's payload changed."""
        self.contacts.drop(key)
        self.rooms.drop(key)

    def reset(self) -> None:
        """Another account logged in: nothing cached is known to be true for it."""
        self.contacts.clear()
        self.rooms.clear()
        self.member_names.clear()

    def is_room(self, chat_id: str) -> bool:
        return chat_id.endswith("@chatroom") or self.rooms.get(chat_id) is not None

    # -- events ---------------------------------------------------------------------------------
    async def message(self, stub: Any, message_id: str) -> Event | None:
        if not message_id or not self.seen.add("m:" + message_id):
            return None
        self_id = self.account.self_id
        if not self_id:  # before the first login we cannot tell our own messages
            log.debug("message %s before login ignored", message_id)
            return None
        p = await self._call(stub.message_payload(id=message_id))
        talker, room_id, raw_type = str(p.from_id), str(p.room_id), int(p.type)
        text = str(p.text or "")
        timestamp = ws.to_datetime(int(p.timestamp or 0), self.tz)
        room = await self.room(stub, room_id) if room_id else None
        if talker and talker == self_id:
            # The account hears its own messages: ours, or typed by a human on the phone.
            chat = room_id or str(p.to_id)
            is_text = raw_type == ws.MESSAGE_TEXT
            if not chat or self.sent.match(chat, text, message_id, is_text=is_text):
                return None
            log.info("the account's owner typed in %s on the phone", chat)
            return HumanTakeover(chat_id=chat, timestamp=timestamp, id=message_id, room=room)
        if not talker:
            return None
        sender = await self.contact(stub, talker, room_id)
        if talker in self.official:
            log.debug("message from official account %s ignored", talker)
            return None
        kind = ws.MESSAGE_TYPES.get(raw_type, MessageType.OTHER)
        url = ""
        if kind is MessageType.LINK:
            with contextlib.suppress(Exception):
                link = json.loads((await self._call(stub.message_url(id=message_id))).url_link)
                url = str(link.get("url") or "")
                text = text or str(link.get("title") or "")
        elif kind in {MessageType.IMAGE, MessageType.FILE} and p.filename:
            text = str(p.filename)
        file = ""
        if kind is MessageType.IMAGE and room is not None and self.media is not None:
            # Room images are saved for plugins that look inside them (QR-code ads); a
            # failed download leaves "" and the image is simply not checked.
            file = await self.image(stub, message_id)
        mention_ids = tuple(str(m) for m in p.mention_ids)
        mentions_self = room is None or (
            self_id in mention_ids or ws.mentions_name(text, self.account.self_name)
        )
        return Message(
            id=message_id,
            sender=sender,
            text=text,
            timestamp=timestamp,
            room=room,
            type=kind,
            mentions=tuple(m for m in mention_ids if m != self_id),
            mentions_self=mentions_self,
            url=url,
            file=file,
        )

    async def image(self, stub: Any, message_id: str) -> str:
        assert self.media is not None
        try:
            async with asyncio.timeout(self.call_timeout_s):
                return await self.media.save(
                    message_id, stub.message_image_stream(id=message_id, type=ws.IMAGE_HD)
                )
        except Exception as error:
            log.warning("image %s not downloaded: %s", message_id, self.explain(error))
            return ""

    async def friendship(self, stub: Any, friendship_id: str) -> Event | None:
        if not friendship_id or not self.seen.add("f:" + friendship_id):
            return None
        p = await self._call(stub.friendship_payload(id=friendship_id))
        kind, contact_id = int(p.type), str(p.contact_id)
        if kind == ws.FRIENDSHIP_CONFIRM:
            self.contacts.drop(contact_id)
            log.info("%s is now a friend", contact_id)
            return None
        if kind != ws.FRIENDSHIP_RECEIVE or not contact_id:
            return None
        contact = dataclasses.replace(await self.contact(stub, contact_id), is_friend=False)
        return FriendRequest(
            id=str(p.id or friendship_id),
            contact=contact,
            hello=str(p.hello or ""),
            timestamp=datetime.now(self.tz),  # the payload has no time: it is news now
        )

    async def room_change(self, stub: Any, data: dict[str, Any], *, joined: bool) -> Event | None:
        room_id = str(data.get("roomId") or "")
        ids = [str(i) for i in data.get("inviteeIdList" if joined else "removeeIdList") or []]
        actor_id = str(data.get("inviterId" if joined else "removerId") or "")
        stamp = data.get("timestamp") or 0
        key = f"{room_id}:{'join' if joined else 'leave'}:{stamp}:{','.join(ids)}"
        if not room_id or not ids or not self.seen.add(key):
            return None
        self.rooms.drop(room_id)
        room = await self.room(stub, room_id)
        self_id = self.account.self_id
        if self_id in ids:
            log.info("the account %s room %s", "joined" if joined else "left", room_id)
        others = [i for i in ids if i != self_id]
        if not others:
            return None
        members = tuple(await asyncio.gather(*(self.contact(stub, i, room_id) for i in others)))
        actor = await self.contact(stub, actor_id, room_id) if actor_id else None
        timestamp = ws.to_datetime(float(stamp), self.tz)
        if joined:
            return MemberJoined(room, members, timestamp, inviter=actor, id=key)
        return MemberLeft(room, members, timestamp, remover=actor, id=key)

    # -- payloads -------------------------------------------------------------------------------
    async def contact(self, stub: Any, contact_id: str, room_id: str = "") -> Contact:
        cached = self.contacts.get(contact_id)
        if cached is not None:
            return cached
        try:
            p = await self._call(stub.contact_payload(id=contact_id))
            contact = Contact(
                id=contact_id,
                name=str(p.name or ""),
                alias=str(p.alias or ""),
                is_friend=bool(p.friend),
            )
            if int(p.type) == ws.CONTACT_OFFICIAL:
                self.official.add(contact_id)
        except Exception as error:
            if not room_id:
                log.debug("no contact payload for %s: %s", contact_id, self.explain(error))
                return Contact(id=contact_id, is_friend=False)
            try:  # strangers in a room: the room knows their names
                m = await self._call(stub.room_member_payload(id=room_id, member_id=contact_id))
                contact = Contact(id=contact_id, name=str(m.name or ""), is_friend=False)
            except Exception:
                return Contact(id=contact_id, is_friend=False)
        self.contacts.put(contact_id, contact)
        return contact

    async def room(self, stub: Any, room_id: str) -> Room:
        cached = self.rooms.get(room_id)
        if cached is not None:
            return cached
        try:
            p = await self._call(stub.room_payload(id=room_id))
            room = Room(id=room_id, topic=str(p.topic or ""), member_count=len(p.member_ids))
        except Exception as error:
            log.debug("no room payload for %s: %s", room_id, self.explain(error))
            return Room(id=room_id)
        self.rooms.put(room_id, room)
        return room

    async def member_name(self, stub: Any, room_id: str, member_id: str) -> str:
        """How to @-mention someone in a room: their room nickname, else their name."""
        key = f"{room_id}/{member_id}"
        cached = self.member_names.get(key)
        if cached is not None:
            return cached
        name = ""
        with contextlib.suppress(Exception):
            m = await self._call(stub.room_member_payload(id=room_id, member_id=member_id))
            name = str(m.room_alias or m.name or "")
        if not name:
            name = (await self.contact(stub, member_id, room_id)).name or member_id
        self.member_names.put(key, name)
        return name
