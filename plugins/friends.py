"""Friends and the customer book: friend request rules with channel attribution, tagging,
segments, follow-up sequences (SOP), paced friend adding, churn detection, data rights.

Events:
- FriendRequest: blocked (ids, words) -> ignored; a channel code or word in the hello
  ("A1", "来自门店A1") -> accepted, tagged channel:A1, greeted; an accept keyword -> accepted;
  anything else -> review queue, admins notified (accept / reject / block commands).
- every message (observer, rooms too): keyword tag rules; room membership for adding.
- MemberJoined / MemberLeft (observers): membership; the joined_room follow-up anchor.
Jobs: friends.tick (every 5 minutes: data reload, follow-ups, paced adding, review expiry,
capped accepts, last outbound and deleted-us detection), friends.retention (daily).
Data (persona/friends/): requests.toml, channels.toml, tags.toml, followups.toml, csv.toml.
Commands: see persona/friends/commands.toml. CLI: scripts/contacts.py.
Config: FRIENDS_* (FriendsConfig, config.example.env).
Review queue (pending friend requests, paused adding) and today's agenda (follow-ups due,
friend requests to send) for the operators' commands; pending_requests(app) for others.
Data rights (export, erasure, retention) live in pond.rights; the tag and data-rights
commands, scripts/contacts.py and the retention job here.
Helpers live in plugins/_friends/.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any

from plugins._friends import adds, admin, followups, requests, rights_commands, sync
from plugins._friends.data import DataError
from plugins._friends.state import FriendsState
from pond import (
    AgendaItem,
    App,
    Command,
    Context,
    DailyWindow,
    Event,
    FriendRequest,
    MemberJoined,
    MemberLeft,
    Message,
    Plugin,
    Problem,
    Range,
    ReviewItem,
    filters,
    rights,
)
from pond.customers import BookChange

log = logging.getLogger("pond.plugins.friends")


@dataclass(frozen=True)
class FriendsConfig:
    greet: bool = True
    greet_delay_s: Range = field(default_factory=lambda: Range(5.0, 20.0))
    review_expire_h: float = 72.0
    add_daily_cap: int = 15
    add_gap_min: Range = field(default_factory=lambda: Range(20.0, 60.0))
    add_hours: DailyWindow = field(default_factory=lambda: DailyWindow(time(9, 30), time(20, 30)))
    add_expire_days: float = 7.0
    retention_days: float = 365.0
    exports_dir: Path = Path("exports")


plugin = Plugin(
    "friends",
    persona=[
        "friends/cmd_tags_changed",
        "friends/cmd_contact_exported",
        "friends/cmd_erase_confirm",
        "friends/cmd_erased",
        "friends/welcome",
        "friends/review_alert",
        "friends/add_hello",
        "friends/adds_paused",
        "friends/data_alert",
        "friends/cmd_usage",
        "friends/cmd_unknown_contact",
        "friends/cmd_unknown_room",
        "friends/cmd_bad_input",
        "friends/cmd_requests",
        "friends/cmd_no_request",
        "friends/cmd_accepting",
        "friends/cmd_accept_failed",
        "friends/cmd_rejected",
        "friends/cmd_blocked",
        "friends/cmd_contact",
        "friends/cmd_noted",
        "friends/cmd_stage",
        "friends/cmd_bad_stage",
        "friends/cmd_purchase",
        "friends/cmd_segment",
        "friends/cmd_bad_segment",
        "friends/cmd_followups",
        "friends/cmd_followups_stopped",
        "friends/cmd_imported",
        "friends/cmd_book_exported",
        "friends/cmd_adds_queued",
        "friends/cmd_adds_status",
        "friends/cmd_adds_changed",
    ],
    config=FriendsConfig,
    description="friend requests, channels, tags, segments, follow-ups, adding, data rights",
)

# One state per App (tests run many Apps in one process).
_STATES: weakref.WeakKeyDictionary[App, FriendsState] = weakref.WeakKeyDictionary()


def state_for(app: App) -> FriendsState:
    """The plugin's state for `app`, loading the data files on first use (the CLI uses
    this without starting the App). Raises DataError for a bad data file."""
    st = _STATES.get(app)
    if st is None:
        config = app.plugin_configs.get(plugin.name) or FriendsConfig()
        st = FriendsState(app, plugin, config)
        st.data.load()
        st.use_followup_keys()
        app.book.subscribe(lambda change: _book_changed(st, change))
        _STATES[app] = st
    return st


def state(ctx: Context) -> FriendsState:
    return state_for(ctx.app)


@plugin.on_startup()
async def start(ctx: Context) -> None:
    try:
        st = state(ctx)
    except DataError as error:
        raise Problem(
            "startup.fix_file", "{error} (fix the file and start again)", error=error
        ) from None
    for warning in followups.frequency_warnings(st, ctx.settings.outbox.marketing_min_interval_h):
        log.warning("%s", warning)
    sync.outbound(ctx, st)  # the first run starts its cursor here, not from years back


def _book_changed(st: FriendsState, change: BookChange) -> None:
    """Anchors for follow-ups from whoever changed the book (any plugin, CSV, admin); an
    erased contact who comes back; a contact being erased."""
    if change.kind == "created":
        rights.reapply(st.app, change.contact_id)
    elif change.kind == "deleted":
        # Erasure: a block must outlive the record, so keep it as a keyed hash only.
        if requests.is_blocked(st, change.contact_id):
            fp = rights.fingerprint(st.app, change.contact_id)
            st.kv.set(requests.BLOCKED_HASH + fp, {"at": st.app.clock.now().timestamp()})
        st.kv.delete(requests.BLOCK + change.contact_id)
    elif change.kind == "tagged":
        for tag in change.tags:
            followups.enrol(st, change.contact_id, f"tagged:{tag}", change.at)
    elif change.kind == "stage":
        if change.stage in ("customer", "repeat"):
            followups.enrol(st, change.contact_id, "purchased", change.at)
        elif change.stage == "churned":
            followups.stop(st, change.contact_id, "churned")


# -- events ---------------------------------------------------------------------------------
def _blocked_request(ctx: Context) -> filters.Filter:
    # The state is read when a request comes, not here: filters are built before the
    # plugin starts, and a broken data file must be told as the plugin's start-up problem.
    def check(event: Event) -> bool:
        return (
            isinstance(event, FriendRequest)
            and requests.decide(state(ctx), event.contact.id, event.hello).verdict == "block"
        )

    return check


# A blocked person stays blocked whichever plugin would accept the request (a referral
# code in the hello must not open the door an operator closed): this route runs first.
@plugin.on_friend_request(filters.configured(_blocked_request), priority=10)
async def blocked_request(event: FriendRequest, ctx: Context) -> None:
    await requests.handle(event, ctx, state(ctx))


@plugin.on_friend_request(priority=50)
async def friend_request(event: FriendRequest, ctx: Context) -> None:
    await requests.handle(event, ctx, state(ctx))


@plugin.on_message(priority=5, block=False, listen_in_rooms=True)
async def observe(event: Message, ctx: Context) -> None:
    """Cheap on purpose (every message): one regex scan, a dict write for rooms, and a
    book write only when a rule adds a tag the contact does not have."""
    st = state(ctx)
    sender = event.sender
    if event.room is not None:
        st.note_member(
            event.room.id, sender.id, sender.name, sender.is_friend, event.timestamp.timestamp()
        )
    tags = st.data.tags.match(event.text, private=event.room is None)
    if not tags:
        return
    new = ctx.app.book.tag(sender.id, tags, ctx.now, source="keyword")
    if new:
        ctx.record("tagged", contact_id=sender.id, tags=new, source="keyword")


@plugin.on_member_joined(priority=5, block=False)
async def joined(event: MemberJoined, ctx: Context) -> None:
    st = state(ctx)
    at = event.timestamp.timestamp()
    for member in event.members:
        st.note_member(event.room.id, member.id, member.name, member.is_friend, at)
        customer = ctx.app.book.get(member.id) if member.is_friend else None
        if customer is not None and customer.is_friend:
            followups.enrol(st, member.id, f"joined_room:{event.room.id}", ctx.now.timestamp())


@plugin.on_member_left(priority=5, block=False)
async def left(event: MemberLeft, ctx: Context) -> None:
    st = state(ctx)
    for member in event.members:
        st.note_member(
            event.room.id,
            member.id,
            member.name,
            member.is_friend,
            event.timestamp.timestamp(),
            left=True,
        )


# -- jobs -----------------------------------------------------------------------------------
@plugin.scheduled("*/5 * * * *")
async def tick(ctx: Context) -> None:
    st = state(ctx)
    await _reload(ctx, st)
    st.flush_members()
    sync.outbound(ctx, st)
    if st.ticks == 0:
        await requests.recover(ctx, st)
    st.ticks += 1
    requests.expire_reviews(ctx, st)
    await requests.settle_accepts(ctx, st)
    requests.retry_waiting(ctx, st)
    counts = followups.drain(ctx, st)
    if any(counts.values()):
        ctx.record("followups", **counts)
    await adds.tick(ctx, st)


@plugin.scheduled("40 3 * * *")
async def retention(ctx: Context) -> None:
    st = state(ctx)
    if st.config.retention_days <= 0:
        return
    rights.purge_message_data(ctx.app, st.config.retention_days, tag_sources=("keyword",))


async def _reload(ctx: Context, st: FriendsState) -> None:
    reloaded, errors = st.data.reload_if_changed()
    if reloaded:
        st.use_followup_keys()
        ctx.record("data_reload", ok=True, files=reloaded)
        log.info("friends data reloaded: %s", ", ".join(reloaded))
    for error in errors:
        log.error("friends data refused, the last good version keeps serving: %s", error)
        ctx.record("data_reload", ok=False, file=error.file, line=error.line or 0)
        ctx.app.alert(
            "friends/data_alert", file=error.file, line=error.line or 0, reason=str(error.reason)
        )


# -- the operators' control: reload, review queue, agenda -----------------------------------
@plugin.on_reload()
async def reload(ctx: Context) -> list[str]:
    st = state(ctx)
    reloaded, errors = st.data.reload_if_changed(force=True)
    st.use_followup_keys()
    if reloaded:
        ctx.record("data_reload", ok=not errors, files=reloaded)
    return [str(error) for error in errors]


@plugin.review_source()
async def reviews(ctx: Context) -> list[ReviewItem]:
    st = state(ctx)
    items = [
        ReviewItem(
            kind="friend_request",
            ref=item["ticket"],
            at=item.get("at"),
            contact_id=item["contact_id"],
            detail=f"#{item['n']}",
            command="accept",
            args=(str(item["n"]),),
        )
        for item in requests.reviews(st)
    ]
    paused = adds.get_state(st)
    if paused.get("paused") and paused.get("reason") == "throttled":
        items.append(ReviewItem(kind="friend_adds_paused", ref="adds", command="adds_resume"))
    return items


@plugin.agenda_source()
async def agenda(ctx: Context) -> list[AgendaItem]:
    st = state(ctx)
    now = ctx.now
    end = now.replace(hour=23, minute=59, second=59, microsecond=0)
    items = [
        AgendaItem(at=at, kind="followup", ref=sequence, detail=sequence, count=count)
        for sequence, at, count in followups.due_between(st, now, end)
    ]
    planned = adds.planned_today(st, now)
    if planned:
        at, count = planned
        items.append(AgendaItem(at=at, kind="friend_add", ref="adds", count=count))
    return items


# -- for other plugins and the CLI ------------------------------------------------------------
def pending_requests(app: App) -> list[dict[str, Any]]:
    """Friend requests waiting for an admin (the operators' review queue lists these)."""
    return requests.pending(state_for(app), app.clock.now().timestamp())


# -- operator commands (Chinese names: persona/friends/commands.toml) --------------------------
def _command(name: str, handler: admin.Handler) -> None:
    async def run(cmd: Command, ctx: Context) -> None:
        await handler(cmd, ctx, state(ctx))

    run.__name__ = f"cmd_{name}"
    plugin.command(name)(run)


for _name, _handler in {**admin.COMMANDS, **rights_commands.COMMANDS}.items():
    _command(_name, _handler)
