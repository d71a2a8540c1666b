"""The WeChat transport's outbound half: pond's actions become puppet-service calls, and
failures become TransportErrors with the flags the outbox relies on.

No wechaty import here: the gRPC stub and the gRPC error classes (`g`) are passed in."""

from __future__ import annotations

import asyncio
import base64
import json
import mimetypes
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pond.transports.wechaty_support as ws
from pond.actions import Action, ActionKind, MediaKind
from pond.transports.base import TransportError
from pond.transports.wechaty_inbound import Inbound

MAX_INLINE_FILE = 3 * 1024 * 1024  # the reference server takes gRPC messages up to 4 MB
_NOT_LOGGED_IN = re.compile(r"not log(ged)?[ -]?in|logged out|logout|未登录", re.IGNORECASE)
_NOT_A_FRIEND = re.compile(
    r"not (a |your )?friend|no longer a friend|非好友|不是.{0,6}好友|朋友验证|拉黑|blacklist",
    re.IGNORECASE,
)


class Outbound:
    def __init__(
        self,
        inbound: Inbound,
        *,
        sent: ws.SentLog,
        call_timeout_s: float,
        clean: Callable[[str], str],
        explain: Callable[[BaseException], str],
    ) -> None:
        self.inbound = inbound
        self.sent = sent
        self.call_timeout_s = call_timeout_s
        self.clean = clean
        self.explain = explain

    async def _call(self, awaitable: Any, timeout: float | None = None) -> Any:
        return await ws.call(awaitable, timeout or self.call_timeout_s)

    async def perform(self, stub: Any, g: Any, action: Action) -> None:
        """Raise TransportError flags the outbox relies on: `offline` when nothing was
        attempted (hold and retry later), `gone` when the contact is no friend any more,
        `retryable` only for actions that are harmless twice (accept, invite, kick); a send
        or friend request with an unclear outcome (timeout, connection lost mid-call, a
        server error) is never marked retryable, so it can never reach anyone twice."""
        what = action.describe()
        idempotent = action.kind in {ActionKind.ACCEPT_FRIEND, ActionKind.INVITE, ActionKind.KICK}
        try:
            await self._perform(stub, action)
        except TransportError:
            raise
        except TimeoutError:
            raise TransportError(
                f"{what}: no answer in time (it may or may not have happened)",
                retryable=idempotent,
            ) from None
        except g.GRPCError as error:
            # Keep the service's own words: the outbox matches throttle phrases in them.
            text = self.clean(error.message or "")
            offline = error.status in {g.Status.UNAVAILABLE, g.Status.UNAUTHENTICATED} or bool(
                _NOT_LOGGED_IN.search(text)
            )
            raise TransportError(
                f"{what}: {error.status.name}: {text}",
                offline=offline,
                retryable=idempotent,
                gone=bool(_NOT_A_FRIEND.search(text)),
            ) from None
        except g.StreamTerminatedError:
            raise TransportError(
                f"{what}: connection lost during the call", retryable=idempotent
            ) from None
        except OSError as error:  # the connection could not even be made: nothing was sent
            raise TransportError(f"{what}: {self.explain(error)}", offline=True) from None

    async def _perform(self, stub: Any, action: Action) -> None:
        kind = action.kind
        if kind is ActionKind.SEND:
            if action.text or action.media is None:
                await self._send_text(stub, action.to, action.text, action.mentions)
            if action.media is not None:
                await self._send_media(stub, action)
        elif kind is ActionKind.ACCEPT_FRIEND:
            await self._call(stub.friendship_accept(id=action.ticket))
        elif kind is ActionKind.ADD_FRIEND:
            await self._call(stub.friendship_add(contact_id=action.to, hello=action.ticket))
        elif kind is ActionKind.INVITE:
            await self._call(stub.room_add(id=action.to, contact_id=action.member_id))
        elif kind is ActionKind.KICK:
            await self._call(stub.room_del(id=action.to, contact_id=action.member_id))
        else:
            raise TransportError(
                f"{action.describe()}: the WeChat transport cannot do {kind.value} "
                "(no Moments API in the puppet protocol)"
            )

    async def _send_text(self, stub: Any, to: str, text: str, mentions: tuple[str, ...]) -> None:
        # The service only takes ids; WeChat clients also write "@name" into the text.
        mention_ids = [m for m in mentions if m] if self.inbound.is_room(to) else []
        body = ""
        if mention_ids:
            names = await asyncio.gather(
                *(self.inbound.member_name(stub, to, m) for m in mention_ids)
            )
            body, text = text, ws.with_mentions(text, names)
        self.sent.note(to, text, body)  # before the call: the echo may come before the answer
        response = await self._call(
            stub.message_send_text(conversation_id=to, text=text, mentonal_ids=mention_ids)
        )
        self.sent.note_id(str(getattr(response, "id", "") or ""))

    async def _send_media(self, stub: Any, action: Action) -> None:
        media = action.media
        assert media is not None
        if media.kind is MediaKind.LINK:
            link = {
                "url": media.url,
                "title": media.title or media.url,
                "description": media.description,
                "thumbnailUrl": "",
            }
            self.sent.note(action.to, None)
            response = await self._call(
                stub.message_send_url(conversation_id=action.to, url_link=json.dumps(link))
            )
        else:
            box = await self._file_box(action)
            self.sent.note(action.to, None)
            response = await self._call(
                stub.message_send_file(conversation_id=action.to, filebox=json.dumps(box)),
                self.call_timeout_s * 3,
            )
        self.sent.note_id(str(getattr(response, "id", "") or ""))

    async def _file_box(self, action: Action) -> dict[str, Any]:
        """A wechaty FileBox as JSON: base64 for a local file, a URL otherwise."""
        media = action.media
        assert media is not None
        if not media.path:
            if not media.url:
                raise TransportError(f"{action.describe()}: media without path or url")
            name = media.title or media.url.rsplit("/", 1)[-1] or "file"
            return {"boxType": 2, "type": 2, "url": media.url, "name": name}
        path = Path(media.path)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as error:
            raise TransportError(
                f"{action.describe()}: cannot read {path}: {error.strerror}"
            ) from None
        if len(data) > MAX_INLINE_FILE:
            raise TransportError(
                f"{action.describe()}: {path.name} is {len(data) // 1024} KB; files over "
                f"{MAX_INLINE_FILE // 1024 // 1024} MB must be sent by URL (Media(url=...))"
            )
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return {
            "boxType": 1,
            "type": 1,
            "name": path.name,
            "base64": base64.b64encode(data).decode("ascii"),
            "mediaType": mime,
            "size": len(data),
        }
