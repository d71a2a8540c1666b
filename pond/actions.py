"""Outbound actions: the only things that can reach a transport, and only via the Outbox."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ActionKind(StrEnum):
    SEND = "send"  # text, image, file or link card to a contact or a room
    ACCEPT_FRIEND = "accept_friend"
    ADD_FRIEND = "add_friend"
    INVITE = "invite"  # invite a contact into a room
    KICK = "kick"  # remove a member from a room
    POST = "post"  # Moments-style post, where the transport can
    TAG = "tag"  # tag a customer on the platform itself (ticket = the tag), where it keeps tags


class ActionClass(StrEnum):
    """Why we act, which decides the rules that apply (issue: outbound governor)."""

    REPLY = "reply"  # answering a customer's own message: immediate, no quiet hours
    SERVICE = "service"  # notifications the recipient expects (welcome, hand-off, alerts)
    MARKETING = "marketing"  # posts, broadcasts, follow-ups: quiet hours, opt-out, frequency


class MediaKind(StrEnum):
    IMAGE = "image"
    FILE = "file"
    LINK = "link"


@dataclass(frozen=True, slots=True)
class Media:
    kind: MediaKind
    path: str = ""  # local file for images and files
    url: str = ""  # for link cards
    title: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    to: str  # chat id: a contact id or a room id
    cls: ActionClass = ActionClass.SERVICE
    text: str = ""
    key: str = ""  # persona key the text came from ("" for operator-typed text)
    mentions: tuple[str, ...] = ()
    media: Media | None = None
    member_id: str = ""  # INVITE / KICK: the contact being invited or removed
    # ACCEPT_FRIEND: the transport's request id; ADD_FRIEND: the hello text; TAG: the tag
    ticket: str = ""
    plugin: str = ""
    job: str = ""  # bulk job id (broadcast/campaign) when part of one
    contact_id: str = ""  # the person this reaches, for opt-out and frequency (private chats)

    @property
    def is_bulk(self) -> bool:
        return bool(self.job)

    def describe(self) -> str:
        """A log-safe description: never the message text."""
        parts = [self.kind.value, f"to={self.to}", f"class={self.cls.value}"]
        if self.key:
            parts.append(f"key={self.key}")
        if self.member_id:
            parts.append(f"member={self.member_id}")
        if self.job:
            parts.append(f"job={self.job}")
        return " ".join(parts)
