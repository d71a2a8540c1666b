"""Pacing for the outbox, on the monotonic clock, in lanes.

Replies, service notices and marketing (posts, broadcasts, follow-ups) each keep their own
rhythm (last recipient, the random gap when switching recipients, the bulk pause), so a
reply never waits behind a bulk pause. The account's total rate is still bounded by one
shared token bucket; marketing leaves one token in it, so a customer's reply always finds
one. The per-chat gap is shared by all lanes (it is about one chat, whoever writes)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

from pond.actions import Action, ActionClass, ActionKind
from pond.config import OutboxSettings


class Lane(StrEnum):
    REPLY = "reply"
    SERVICE = "service"
    MARKETING = "marketing"


def lane_of(action: Action, *, alert: bool = False, bulk: bool = False) -> Lane:
    if bulk or action.cls is ActionClass.MARKETING:
        return Lane.MARKETING
    if action.cls is ActionClass.REPLY and not alert:
        return Lane.REPLY
    return Lane.SERVICE


@dataclass(slots=True)
class _LaneState:
    last_at: float = -1e18
    last_to: str = ""
    next_gap: float = 0.0  # drawn once per send: waiting again must not draw again
    bulk_since_pause: int = 0
    paused_until: float = 0.0  # the bulk pause (monotonic)


@dataclass(slots=True)
class Pacer:
    settings: OutboxSettings
    rng: random.Random
    now: float  # monotonic seconds at creation
    tokens: float = 1.0  # start nearly empty: a crash loop must not get a fresh burst
    refilled_at: float = 0.0
    per_chat: dict[str, float] = field(default_factory=dict)
    lanes: dict[Lane, _LaneState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.refilled_at = self.now
        self.lanes = {lane: _LaneState() for lane in Lane}

    def _refill(self, now: float) -> None:
        s = self.settings
        rate = s.rate_per_min / 60.0
        if now > self.refilled_at:
            self.tokens = min(float(s.burst), self.tokens + (now - self.refilled_at) * rate)
            self.refilled_at = now

    def paused_until(self, lane: Lane) -> float:
        return self.lanes[lane].paused_until

    def wait(self, action: Action, lane: Lane, now: float, queued_at: float) -> float:
        """Seconds until `action` may go (0 when it may go now). Pure: nothing is spent."""
        if action.kind is ActionKind.TAG:
            # Platform bookkeeping no customer sees: it must not delay a greeting that has
            # a 20-second window (企业微信); its daily cap still applies.
            return 0.0
        s = self.settings
        self._refill(now)
        st = self.lanes[lane]
        waits = [0.0, st.paused_until - now]
        keep = 1.0 if lane is Lane.MARKETING else 0.0  # a token stays free for replies
        need = 1.0 + keep
        rate = s.rate_per_min / 60.0
        if self.tokens < need and rate > 0:
            waits.append((need - self.tokens) / rate)
        to = action.to
        if to in self.per_chat:
            waits.append(self.per_chat[to] + s.chat_gap_s - now)
        if st.last_to and st.last_to != to:
            waits.append(st.last_at + st.next_gap - now)
        if action.kind is ActionKind.SEND and action.text:
            typing = min(s.typing_max_s, len(action.text) / s.typing_chars_per_s)
            waits.append(queued_at + typing - now)
        return max(waits)

    def performed(self, action: Action, lane: Lane, now: float, *, bulk: bool) -> None:
        """Spend a token and note the send; every N bulk sends start a bulk pause."""
        if action.kind is ActionKind.TAG:
            return
        s = self.settings
        self._refill(now)
        self.tokens -= 1.0
        st = self.lanes[lane]
        st.last_at = now
        st.last_to = action.to
        st.next_gap = self.rng.uniform(s.switch_gap_s.low, s.switch_gap_s.high)
        self.per_chat[action.to] = now
        if len(self.per_chat) > 10_000:  # only recent chats matter for the per-chat gap
            horizon = now - 3600
            self.per_chat = {k: v for k, v in self.per_chat.items() if v >= horizon}
        if bulk:
            st.bulk_since_pause += 1
            if s.bulk_pause_every and st.bulk_since_pause >= s.bulk_pause_every:
                st.bulk_since_pause = 0
                st.paused_until = now + self.rng.uniform(s.bulk_pause_s.low, s.bulk_pause_s.high)

    def forget(self, chat_id: str) -> None:
        self.per_chat.pop(chat_id, None)
