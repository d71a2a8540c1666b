"""Neutral, frozen inbound events. Transports convert their own objects into these;
plugins never see a transport's types."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class MessageType(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    FILE = "file"
    LINK = "link"
    MINI_PROGRAM = "mini_program"
    CONTACT_CARD = "contact_card"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Contact:
    id: str
    name: str = ""
    alias: str = ""  # the remark the account gave this contact (备注名)
    is_friend: bool = True

    @property
    def display(self) -> str:
        return self.alias or self.name or self.id


@dataclass(frozen=True, slots=True)
class Room:
    id: str
    topic: str = ""
    member_count: int = 0


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    sender: Contact
    text: str
    timestamp: datetime
    room: Room | None = None
    type: MessageType = MessageType.TEXT
    mentions: tuple[str, ...] = ()  # ids of contacts @-mentioned
    mentions_self: bool = False
    url: str = ""  # for links, files and images when the transport gives one
    # Images and files: a local copy the transport saved ("" when it could not or did not),
    # for plugins that look inside (the groups plugin decodes QR codes). Not kept forever.
    file: str = ""

    kind = "message"

    @property
    def chat_id(self) -> str:
        return self.room.id if self.room else self.sender.id

    @property
    def is_private(self) -> bool:
        return self.room is None


@dataclass(frozen=True, slots=True)
class FriendRequest:
    id: str
    contact: Contact
    hello: str
    timestamp: datetime

    kind = "friend_request"

    @property
    def chat_id(self) -> str:
        return self.contact.id


@dataclass(frozen=True, slots=True)
class MemberJoined:
    room: Room
    members: tuple[Contact, ...]
    timestamp: datetime
    inviter: Contact | None = None
    id: str = ""

    kind = "member_joined"

    @property
    def chat_id(self) -> str:
        return self.room.id


@dataclass(frozen=True, slots=True)
class MemberLeft:
    room: Room
    members: tuple[Contact, ...]
    timestamp: datetime
    remover: Contact | None = None
    id: str = ""

    kind = "member_left"

    @property
    def chat_id(self) -> str:
        return self.room.id


@dataclass(frozen=True, slots=True)
class HumanTakeover:
    """The account's owner typed in a chat from the phone (the transport saw our own
    account send a message the outbox did not send)."""

    chat_id: str
    timestamp: datetime
    id: str = ""
    room: Room | None = None
    sender: Contact | None = field(default=None)

    kind = "human_takeover"


Event = Message | FriendRequest | MemberJoined | MemberLeft | HumanTakeover
