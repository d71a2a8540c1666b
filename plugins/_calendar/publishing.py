"""Publishing one occurrence by the transport's capabilities (a Moments post, a Moments-style
broadcast to rooms and a segment, or a hand-off to the admins) and tracking the posts handed
to staff until they confirm. Mixed into the Runtime (runtime.py).

Every message goes through the outbox journal (`enqueue_bulk`), one job per part of the post:
`calendar:<post id>@<time>#<part>`. The journal adds a recipient to a job at most once, so a
repeated publish of the same occurrence cannot reach anyone twice."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from plugins._calendar.model import FALLBACKS, Calendar, Entry, Occurrence
from pond import (
    Action,
    ActionClass,
    ActionKind,
    Context,
    Media,
    MediaKind,
    Mode,
    Namespace,
    PersonaError,
    Plugin,
    capabilities,
    setting,
)

log = logging.getLogger("pond.plugins.calendar")

MOMENTS_CHAT = "moments"  # the chat id Moments posts are rendered and performed for
JOB_PREFIX = "calendar:"


def _job(occ_id: str, part: str) -> str:
    return f"{JOB_PREFIX}{occ_id}#{part}"


def ceil_minute(moment: datetime) -> datetime:
    floor = moment.replace(second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(minutes=1)


@dataclass(frozen=True)
class CalendarConfig:
    # Relative to BOT_PERSONA_DIR; holidays.toml is read from the same folder.
    file: str = "calendar/calendar.toml"
    # Where the transport cannot post to Moments: "staff" (admins post by hand) or
    # "broadcast" (send to the post's rooms/segment). A post's `fallback` overrides it.
    fallback: str = setting("staff", choices=FALLBACKS)
    grace_min: float = 30.0
    remind_min: float = 60.0
    reload_min: int = 5


@dataclass
class Settings:
    """The plugin's configuration, checked (plugins/calendar.py builds it)."""

    path: Path
    fallback: str
    grace: timedelta
    remind: timedelta
    reload_min: int
    own_keys: frozenset[str] = field(default_factory=frozenset)


class Publisher:
    """Needs, from the Runtime: ctx (the calendar's Context), plugin, settings, kv,
    calendar, _remind_at."""

    ctx: Context[CalendarConfig, Any]
    plugin: Plugin[CalendarConfig, Any]
    settings: Settings
    kv: Namespace
    calendar: Calendar | None
    _remind_at: dict[str, datetime]

    def _note(self, occ: Occurrence, status: str, now: datetime, **more: Any) -> dict[str, Any]:
        record = {
            "post_id": occ.entry.id,
            "at": occ.at.isoformat(),
            "status": status,
            "noted_at": now.isoformat(),
            **more,
        }
        self.kv.set(f"occ:{occ.id}", record)
        return record

    def modes(self, entry: Entry) -> list[str]:
        """How the entry publishes on this transport: moments, broadcast and/or staff."""
        # Where a post becomes a task staff publish (企业微信 add_moment_task), it is still
        # posted by the bot: the task waits for staff and the operator sees it in 待办.
        can_post = self.ctx.can(capabilities.MOMENTS) or (
            self.ctx.mode(ActionKind.POST.value) is Mode.STAFF_CONFIRM
        )
        fallback = entry.fallback or self.settings.fallback
        modes: list[str] = []
        substitute = False  # a Moments-style broadcast stands in for the Moments post
        if entry.channel in ("moments", "both"):
            if can_post:
                modes.append("moments")
            elif fallback == "broadcast" and entry.has_targets:
                substitute = True
            else:
                modes.append("staff")
        if entry.channel in ("broadcast", "both") or substitute:
            modes.append("broadcast")
        return modes

    def publish(self, ctx: Context, occ: Occurrence, now: datetime) -> None:
        entry = occ.entry
        variables = {**occ.builtins(), **entry.vars}
        modes = self.modes(entry)
        jobs: list[str] = []
        rows = 0
        try:
            if "moments" in modes:
                rows += self._post(ctx, occ, variables, jobs)
            if "broadcast" in modes:
                rows += self._broadcast(ctx, occ, variables, jobs)
            if "staff" in modes:
                rows += self._hand_to_staff(ctx, occ, variables, jobs, now)
        except (PersonaError, _NoStaff) as error:
            reason = "no_admins" if isinstance(error, _NoStaff) else "render"
            log.error("calendar post %s at %s not published: %s", entry.id, occ.at, error)
            self._note(occ, "failed", now, modes=modes, jobs=jobs, reason=reason)
            ctx.record("failed", post_id=entry.id, at=occ.at.isoformat(), reason=reason)
            ctx.alert("calendar/failed_alert", post_id=entry.id, title=entry.title, reason=reason)
            return
        status = "handed" if "staff" in modes else "published"
        self._note(occ, status, now, modes=modes, jobs=jobs, rows=rows)
        ctx.record(
            status,
            post_id=entry.id,
            at=occ.at.isoformat(),
            modes=modes,
            rows=rows,
            late_s=int((now - occ.at).total_seconds()),
        )

    def _media(self, entry: Entry) -> list[Media]:
        media = [Media(MediaKind.IMAGE, path=str(path)) for path in entry.images]
        if entry.link is not None:
            link = entry.link
            media.append(
                Media(MediaKind.LINK, url=link.url, title=link.title, description=link.description)
            )
        return media

    def _action(
        self,
        occ: Occurrence,
        to: str,
        job: str,
        *,
        text: str = "",
        media: Media | None = None,
        kind: ActionKind = ActionKind.SEND,
        contact_id: str = "",
    ) -> Action:
        return Action(
            kind=kind,
            to=to,
            cls=ActionClass.MARKETING,
            text=text,
            key=occ.entry.key,
            media=media,
            plugin=self.plugin.name,
            job=job,
            contact_id=contact_id,
        )

    def _post(
        self, ctx: Context, occ: Occurrence, variables: dict[str, Any], jobs: list[str]
    ) -> int:
        """A Moments post: one journaled POST action (text and its first picture or link;
        the Action carries one Media, see the report on multi-picture posts)."""
        text = ctx.render(occ.entry.key, chat_id=MOMENTS_CHAT, **variables).text
        media = self._media(occ.entry)
        if len(media) > 1:
            log.warning(
                "post %s: a POST action carries one picture; %d more are not posted",
                occ.entry.id,
                len(media) - 1,
            )
        job = _job(occ.id, "m")
        action = self._action(
            occ,
            MOMENTS_CHAT,
            job,
            text=text,
            media=media[0] if media else None,
            kind=ActionKind.POST,
        )
        jobs.append(job)
        self._enqueue(job, [action], occ, "moments")
        return 1

    def _broadcast(
        self, ctx: Context, occ: Occurrence, variables: dict[str, Any], jobs: list[str]
    ) -> int:
        """A Moments-style broadcast. Rooms get the text, then each picture; a person gets one
        message (text with the first picture or link), since the marketing frequency rule
        counts messages per person and would skip the rest."""
        entry = occ.entry
        rooms = list(entry.rooms)
        people = (
            [c for c in ctx.book.select(entry.segment) if c not in rooms] if (entry.segment) else []
        )
        media = self._media(entry)
        first: list[Action] = []
        job = _job(occ.id, "b01")
        for room in rooms:
            text = ctx.render(entry.key, chat_id=room, room_id=room, **variables).text
            first.append(self._action(occ, room, job, text=text))
        for person in people:
            # The person's persona layer (their tags) applies, as for a reply.
            text = ctx.render(entry.key, chat_id=person, contact_id=person, **variables).text
            first.append(
                self._action(
                    occ,
                    person,
                    job,
                    text=text,
                    media=media[0] if media else None,
                    contact_id=person,
                )
            )
        if not first:
            log.warning("calendar post %s: its rooms/segment reach nobody", entry.id)
            return 0
        jobs.append(job)
        self._enqueue(job, first, occ, "broadcast")
        for number, item in enumerate(media if rooms else [], 2):
            extra = _job(occ.id, f"b{number:02d}")
            jobs.append(extra)
            self._enqueue(
                extra,
                [self._action(occ, room, extra, media=item) for room in rooms],
                occ,
                "broadcast",
            )
        return len(first)

    def _hand_to_staff(
        self,
        ctx: Context,
        occ: Occurrence,
        variables: dict[str, Any],
        jobs: list[str],
        now: datetime,
    ) -> int:
        """The admins get what to post (instructions, the text alone so it copies cleanly,
        then each picture) and confirm with a command. Sent as marketing without a contact:
        quiet hours hold it like the post itself; opt-out and frequency are for customers."""
        admins = ctx.admins.ids()
        if not admins:
            raise _NoStaff("no admins to hand the post to (BOT_ADMIN_IDS)")
        entry = occ.entry
        text = ctx.render(entry.key, chat_id=MOMENTS_CHAT, **variables).text
        media = self._media(entry)
        words = self.command_words()
        instructions = []
        job = _job(occ.id, "s01")
        for admin in admins:
            action = ctx.compose(
                admin,
                "calendar/staff_post",
                cls=ActionClass.MARKETING,
                contact_id="",
                job=job,
                **brief(occ),
                images=[p.name for p in entry.images],
                link=entry.link.url if entry.link else "",
                confirm=words["post_done"],
                skip=words["post_skip"],
            )
            instructions.append(action)
        parts: list[tuple[str, list[Action]]] = [(job, instructions)]
        body = _job(occ.id, "s02")
        parts.append((body, [self._action(occ, a, body, text=text) for a in admins]))
        for number, item in enumerate(media, 3):
            part = _job(occ.id, f"s{number:02d}")
            parts.append((part, [self._action(occ, a, part, media=item) for a in admins]))
        for name, actions in parts:
            jobs.append(name)
            self._enqueue(name, actions, occ, "staff")
        self._expire_older(ctx, entry.id, now)
        remind_at = ceil_minute(self._delivery_time(now) + self.settings.remind)
        self.kv.set(
            f"staff:{occ.id}",
            {
                "occ": occ.id,
                "post_id": entry.id,
                "at": occ.at.isoformat(),
                "handed_at": now.isoformat(),
                "job": job,
                "remind_at": remind_at.isoformat(),
                "reminded": False,
            },
        )
        self._remind_at[occ.id] = remind_at
        return len(admins) * len(parts)

    def _enqueue(self, job: str, actions: list[Action], occ: Occurrence, mode: str) -> None:
        meta: dict[str, Any] = {
            "plugin": self.plugin.name,
            "post_id": occ.entry.id,
            "at": occ.at.isoformat(),
        }
        if occ.entry.reply:  # its recipients' reply word is answered (auto_reply) for a while
            meta["reply"] = dict(occ.entry.reply)
        self.ctx.outbox.enqueue_bulk(job, actions, meta={**meta, "mode": mode})

    def _delivery_time(self, now: datetime) -> datetime:
        """When the governor will let a marketing message out: now, or the end of quiet hours."""
        window = self.ctx.settings.outbox.quiet_hours
        if not window.contains(now.time()):
            return now
        end = datetime.combine(now.date(), window.end, now.tzinfo)
        return end if end > now else end + timedelta(days=1)

    def command_words(self) -> dict[str, str]:
        catalog = self.ctx.commands.catalog
        return {name: catalog.info(name).display for name in ("post_done", "post_skip")}

    # -- staff confirmation -----------------------------------------------------------------
    def pending(self) -> list[dict[str, Any]]:
        items = [dict(v) for _, v in self.kv.items("staff:") if isinstance(v, dict)]
        return sorted(items, key=lambda p: (p["at"], p["post_id"]))

    def refresh_reminders(self) -> None:
        self._remind_at = {
            p["occ"]: datetime.fromisoformat(p["remind_at"])
            for p in self.pending()
            if not p.get("reminded")
        }

    def remind(self, ctx: Context, now: datetime) -> None:
        if not any(t <= now for t in self._remind_at.values()):
            return  # the pending posts are read at start-up and kept in _remind_at
        for item in self.pending():
            if item.get("reminded") or datetime.fromisoformat(item["remind_at"]) > now:
                continue
            occ_id = item["occ"]
            # Marked first: a crash after this line loses a reminder, never doubles it.
            self.kv.set(
                f"staff:{occ_id}", {**item, "reminded": True, "reminded_at": now.isoformat()}
            )
            self._remind_at.pop(occ_id, None)
            entry = self.calendar.entries.get(item["post_id"]) if self.calendar else None
            waited = now - datetime.fromisoformat(item["handed_at"])
            words = self.command_words()
            for admin in ctx.admins.ids():
                action = ctx.compose(
                    admin,
                    "calendar/staff_reminder",
                    cls=ActionClass.MARKETING,
                    contact_id="",
                    post_id=item["post_id"],
                    title=entry.title if entry else "",
                    **when_fields(datetime.fromisoformat(item["at"])),
                    minutes=int(waited.total_seconds() // 60),
                    confirm=words["post_done"],
                    skip=words["post_skip"],
                )
                ctx.act(action)
            ctx.record("reminded", post_id=item["post_id"], at=item["at"])

    def resolve(self, post: str, now: datetime, status: str, by: str) -> dict[str, Any] | None:
        """Close the pending staff post with this id (or title) as confirmed or skipped."""
        matches = [p for p in self.pending() if p["post_id"] == post]
        if not matches and self.calendar is not None:
            titled = {e.id for e in self.calendar.entries.values() if e.title and e.title == post}
            matches = [p for p in self.pending() if p["post_id"] in titled]
        if len(matches) != 1:
            return None
        item = matches[0]
        occ_id = item["occ"]
        handed = datetime.fromisoformat(item["handed_at"])
        record = self.kv.get(f"occ:{occ_id}")
        record = dict(record) if isinstance(record, dict) else {"post_id": item["post_id"]}
        record.update(status=status, closed_at=now.isoformat(), closed_by=by)
        self.kv.set(f"occ:{occ_id}", record)
        self.kv.delete(f"staff:{occ_id}")
        self._remind_at.pop(occ_id, None)
        delay = int((now - handed).total_seconds() // 60)
        self.ctx.record(
            status, contact_id=by, post_id=item["post_id"], at=item["at"], delay_min=delay
        )
        return {**item, "delay_min": delay}

    def _expire_older(self, ctx: Context, post_id: str, now: datetime) -> None:
        """A newer handoff of the same post makes an unconfirmed older one stale."""
        for item in self.pending():
            if item["post_id"] != post_id:
                continue
            occ_id = item["occ"]
            record = self.kv.get(f"occ:{occ_id}")
            if isinstance(record, dict):
                self.kv.set(f"occ:{occ_id}", {**record, "status": "expired"})
            self.kv.delete(f"staff:{occ_id}")
            self._remind_at.pop(occ_id, None)
            ctx.record("expired", post_id=post_id, at=item["at"])


class _NoStaff(Exception):
    pass


def when_fields(moment: datetime) -> dict[str, Any]:
    return {
        "month": moment.month,
        "day": moment.day,
        "date": moment.strftime("%m-%d"),
        "time": moment.strftime("%H:%M"),
        "weekday": moment.isoweekday(),
    }


def brief(occ: Occurrence) -> dict[str, Any]:
    return {"post_id": occ.entry.id, "title": occ.entry.title, **when_fields(occ.at)}
