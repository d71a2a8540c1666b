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
friend requests to send) for the operators' commands; pending_requests(ctx) for others.
Data rights (export, erasure, retention) live in pond.rights (ctx.rights); the tag and
data-rights commands, scripts/contacts.py and the retention job here.
Helpers live in plugins/_friends/.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from plugins._friends import adds, admin, followups, requests, rights_commands, sync
from plugins._friends.config import FriendsConfig
from plugins._friends.data import DataError
from plugins._friends.state import Ctx, FriendsState, key_checker
from pond import (
    AgendaItem,
    BookChange,
    Event,
    FriendRequest,
    MemberJoined,
    MemberLeft,
    Message,
    Plugin,
    Problem,
    ReviewItem,
    filters,
)

log = logging.getLogger("pond.plugins.friends")
__all__ = ["FriendsConfig", "open_state", "pending_requests", "plugin"]


def open_state(ctx: Ctx) -> FriendsState:
    """The tables, the data files and the book listener; raises DataError for a bad data
    file. Tools that do not start the App (scripts/contacts.py) open it themselves."""
    st = FriendsState(ctx.sql, ctx.store, ctx.config, Path(ctx.settings.bot.persona_dir))
    st.data.load(key_checker(ctx))
    ctx.book.subscribe(lambda change: _book_changed(ctx, change))
    return st


def build_state(ctx: Ctx) -> FriendsState:
    """Once per App, before its filters are bound: a bad data file stops start-up, in
    Chinese, naming the file and line."""
    try:
        return open_state(ctx)
    except DataError as error:
        raise Problem(
            "startup.fix_file", "{error} (fix the file and start again)", error=error
        ) from None


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
    # Follow-up steps name their copy in persona/friends/followups.toml (checked on load).
    persona_prefixes=["friends/"],
    config=FriendsConfig,
    state=build_state,
    description="friend requests, channels, tags, segments, follow-ups, adding, data rights",
)


@plugin.on_startup()
async def start(ctx: Ctx) -> None:
    interval_h = ctx.settings.outbox.marketing_min_interval_h
    for warning in followups.frequency_warnings(ctx, interval_h):
        log.warning("%s", warning)
    sync.outbound(ctx)  # the first run starts its cursor here, not from years back


def _book_changed(ctx: Ctx, change: BookChange) -> None:
    """Anchors for follow-ups from whoever changed the book (any plugin, CSV, admin); an
    erased contact who comes back; a contact being erased."""
    st = ctx.state
    if change.kind == "created":
        ctx.rights.reapply(change.contact_id)
    elif change.kind == "deleted":
        # Erasure: a block must outlive the record, so keep it as a keyed hash only.
        if requests.is_blocked(ctx, change.contact_id):
            fp = ctx.rights.fingerprint(change.contact_id)
            st.kv.set(requests.BLOCKED_HASH + fp, {"at": ctx.now.timestamp()})
        st.kv.delete(requests.BLOCK + change.contact_id)
    elif change.kind == "tagged":
        for tag in change.tags:
            followups.enrol(ctx, change.contact_id, f"tagged:{tag}", change.at)
    elif change.kind == "stage":
        if change.stage in ("customer", "repeat"):
            followups.enrol(ctx, change.contact_id, "purchased", change.at)
        elif change.stage == "churned":
            followups.stop(ctx, change.contact_id, "churned")


# -- events ---------------------------------------------------------------------------------
def _blocked_request(ctx: Ctx) -> filters.Filter:
    def check(event: Event) -> bool:
        return (
            isinstance(event, FriendRequest)
            and requests.decide(ctx, event.contact.id, event.hello).verdict == "block"
        )

    return check


# A blocked person stays blocked whichever plugin would accept the request (a referral
# code in the hello must not open the door an operator closed): this route runs first.
@plugin.on_friend_request(filters.configured(_blocked_request), priority=10)
async def blocked_request(event: FriendRequest, ctx: Ctx) -> None:
    await requests.handle(event, ctx)


@plugin.on_friend_request(priority=50)
async def friend_request(event: FriendRequest, ctx: Ctx) -> None:
    await requests.handle(event, ctx)


@plugin.on_message(priority=5, block=False, listen_in_rooms=True)
async def observe(event: Message, ctx: Ctx) -> None:
    """Cheap on purpose (every message): one regex scan, a dict write for rooms, and a
    book write only when a rule adds a tag the contact does not have."""
    st = ctx.state
    sender = event.sender
    if event.room is not None:
        st.note_member(
            event.room.id, sender.id, sender.name, sender.is_friend, event.timestamp.timestamp()
        )
    tags = st.data.tags.match(event.text, private=event.room is None)
    if not tags:
        return
    new = ctx.book.tag(sender.id, tags, ctx.now, source="keyword")
    if new:
        ctx.record("tagged", contact_id=sender.id, tags=new, source="keyword")


@plugin.on_member_joined(priority=5, block=False)
async def joined(event: MemberJoined, ctx: Ctx) -> None:
    st = ctx.state
    at = event.timestamp.timestamp()
    for member in event.members:
        st.note_member(event.room.id, member.id, member.name, member.is_friend, at)
        customer = ctx.book.get(member.id) if member.is_friend else None
        if customer is not None and customer.is_friend:
            followups.enrol(ctx, member.id, f"joined_room:{event.room.id}", ctx.now.timestamp())


@plugin.on_member_left(priority=5, block=False)
async def left(event: MemberLeft, ctx: Ctx) -> None:
    st = ctx.state
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
async def tick(ctx: Ctx) -> None:
    st = ctx.state
    await _reload(ctx)
    st.flush_members()
    sync.outbound(ctx)
    if st.ticks == 0:
        await requests.recover(ctx)
    st.ticks += 1
    requests.expire_reviews(ctx)
    await requests.settle_accepts(ctx)
    requests.retry_waiting(ctx)
    counts = followups.drain(ctx)
    if any(counts.values()):
        ctx.record("followups", **counts)
    await adds.tick(ctx)


@plugin.scheduled("40 3 * * *")
async def retention(ctx: Ctx) -> None:
    if ctx.config.retention_days <= 0:
        return
    ctx.rights.purge_message_data(ctx.config.retention_days, tag_sources=("keyword",))


async def _reload(ctx: Ctx) -> None:
    reloaded, errors = ctx.state.data.reload_if_changed(key_checker(ctx))
    if reloaded:
        ctx.record("data_reload", ok=True, files=reloaded)
        log.info("friends data reloaded: %s", ", ".join(reloaded))
    for error in errors:
        log.error("friends data refused, the last good version keeps serving: %s", error)
        ctx.record("data_reload", ok=False, file=error.file, line=error.line or 0)
        ctx.alert(
            "friends/data_alert", file=error.file, line=error.line or 0, reason=str(error.reason)
        )


# -- the operators' control: reload, review queue, agenda -----------------------------------
@plugin.on_reload()
async def reload(ctx: Ctx) -> list[str]:
    reloaded, errors = ctx.state.data.reload_if_changed(key_checker(ctx), force=True)
    if reloaded:
        ctx.record("data_reload", ok=not errors, files=reloaded)
    return [str(error) for error in errors]


@plugin.review_source()
async def reviews(ctx: Ctx) -> list[ReviewItem]:
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
        for item in requests.reviews(ctx)
    ]
    paused = adds.get_state(ctx)
    if paused.get("paused") and paused.get("reason") == "throttled":
        items.append(ReviewItem(kind="friend_adds_paused", ref="adds", command="adds_resume"))
    return items


@plugin.agenda_source()
async def agenda(ctx: Ctx) -> list[AgendaItem]:
    now = ctx.now
    end = now.replace(hour=23, minute=59, second=59, microsecond=0)
    items = [
        AgendaItem(at=at, kind="followup", ref=sequence, detail=sequence, count=count)
        for sequence, at, count in followups.due_between(ctx, now, end)
    ]
    planned = adds.planned_today(ctx, now)
    if planned:
        at, count = planned
        items.append(AgendaItem(at=at, kind="friend_add", ref="adds", count=count))
    return items


# -- for other plugins and the CLI ------------------------------------------------------------
def pending_requests(ctx: Ctx) -> list[dict[str, Any]]:
    """Friend requests waiting for an admin (the operators' review queue lists these);
    from outside the plugin: `pending_requests(app.context("friends"))`."""
    return requests.pending(ctx, ctx.now.timestamp())


# -- operator commands (Chinese names: persona/friends/commands.toml) --------------------------
for _name, _handler in {**admin.COMMANDS, **rights_commands.COMMANDS}.items():
    plugin.command(_name)(_handler)
