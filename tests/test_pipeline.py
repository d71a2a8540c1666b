"""The durable pipeline, on a fake clock: inbox, durable outbox, lanes, composite actions,
monotonic pacing, a robust event log, disk trouble. (Kills of a real process: see
test_pipeline_kill.py.)"""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from harness import ChatSim

from pond import Action, ActionClass, ActionKind, Contact
from pond.actions import Media, MediaKind
from pond.journal import InboxStatus
from pond.ledger import JobStatus, RowStatus
from pond.transports.base import TransportError


def send(to: str, cls: ActionClass = ActionClass.SERVICE, **kw: Any) -> Action:
    return Action(ActionKind.SEND, to=to, cls=cls, text="x", key="test/key", contact_id=to, **kw)


def customers(transcript: Any) -> list[str]:
    return [s.to for s in transcript if s.to != "admin"]


# -- inbox ---------------------------------------------------------------------------------


async def test_replies_owed_at_a_clean_stop_go_out_once_after_restart(sim: ChatSim) -> None:
    sim.transport.connected = False  # owed: queued, not sent
    for who in ["alice", "bob", "carol"]:
        assert (await sim.say(who, "你好", msg_id=f"wx-{who}")).keys == []
    await sim.restart()  # queued on disk; the new connection is up
    sent = await sim.advance(60)
    assert sorted(customers(sent)) == ["alice", "bob", "carol"]
    # The transport redelivers the same messages after a reconnect: no-ops.
    for who in ["alice", "bob", "carol"]:
        assert (await sim.say(who, "你好", msg_id=f"wx-{who}")).keys == []
    assert (await sim.drain()).keys == []


async def test_an_event_received_but_not_handled_is_handled_at_start(sim: ChatSim) -> None:
    await sim.say("alice", "你好", msg_id="wx-1")
    inbox = sim.app.inbox.table
    with sim.app.store.sql.engine.begin() as conn:  # as if we died before it was handled
        conn.execute(sa.insert(inbox).values(**_received_row(sim, "wx-2", "bob")))
    await sim.restart()
    sent = await sim.drain()
    assert sent.keys == ["greeter/hello"] and customers(sent) == ["bob"]
    assert sim.app.inbox.counts() == {"handled": 2}


async def test_handling_again_after_a_crash_queues_nothing_twice(sim: ChatSim) -> None:
    """The reply was queued and sent, the "handled" mark was lost: the event is handled
    again at start, and its reply is recognised by (event, ordinal), not sent again."""
    said = await sim.say("alice", "你好", msg_id="wx-1")
    assert said.keys == ["greeter/hello"]
    t = sim.app.inbox.table
    with sim.app.store.sql.engine.begin() as conn:
        payload = _received_row(sim, "wx-1", "alice")["payload"]
        conn.execute(
            sa.update(t).where(t.c.key == "message:wx-1").values(status="received", payload=payload)
        )
    await sim.restart()
    assert (await sim.drain()).keys == []
    assert sim.app.inbox.counts() == {"handled": 1}


async def test_unhandled_events_older_than_the_cutoff_are_stale(sim: ChatSim) -> None:
    t = sim.app.inbox.table
    row = _received_row(sim, "wx-9", "bob")
    row["received_at"] -= 600
    with sim.app.store.sql.engine.begin() as conn:
        conn.execute(sa.insert(t).values(**row))
    await sim.restart()
    assert (await sim.drain()).keys == []
    assert sim.app.inbox.counts() == {InboxStatus.STALE.value: 1}


def _received_row(sim: ChatSim, msg_id: str, who: str) -> dict[str, Any]:
    from pond.events import Message
    from pond.journal import event_to_json

    event = Message(msg_id, Contact(who, who), "你好", sim.clock.now(), mentions_self=True)
    return {
        "key": f"message:{msg_id}",
        "status": "received",
        "received_at": sim.clock.now().timestamp(),
        "handled_at": None,
        "payload": event_to_json(event),
    }


# -- lanes -------------------------------------------------------------------------------


async def bulk_in_pause(tmp_path: Path) -> ChatSim:
    """A broadcast to c0..c5 that pauses 60-90 s after every 2 rows; returns in the pause."""
    sim = await ChatSim.create(
        tmp_path / "data",
        env={
            "OUTBOX_BULK_PAUSE_EVERY": "2",
            "OUTBOX_BULK_PAUSE_S": "60-90",
            "OUTBOX_MARKETING_MIN_INTERVAL_H": "0",
        },
    )
    rows = [send(f"c{i}", ActionClass.MARKETING, job="j") for i in range(6)]
    sim.app.outbox.enqueue_bulk("j", rows)
    first = await sim.advance(25)
    assert customers(first) == ["c0", "c1"]  # then the bulk pause
    return sim


async def test_opt_out_during_a_bulk_pause_stops_the_next_message(tmp_path: Path) -> None:
    sim = await bulk_in_pause(tmp_path)
    assert (await sim.say("c2", "退订")).keys == ["core/optout_confirm"]
    rest = await sim.advance(600)
    assert customers(rest) == ["c3", "c4", "c5"]
    assert sim.app.ledger.skipped_reasons("j") == {"opt_out": 1}
    await sim.close()


async def test_a_reply_never_waits_behind_a_bulk_pause(tmp_path: Path) -> None:
    sim = await bulk_in_pause(tmp_path)
    asked = sim.clock.now()
    said = await sim.say("bob", "你好")
    assert said.keys == ["greeter/hello"]
    s = sim.app.settings.outbox
    assert (said.sent[0].at - asked).total_seconds() <= s.chat_gap_s + s.typing_max_s
    assert sim.app.ledger.summary("j") == {"sent": 2, "pending": 4}  # still pausing
    await sim.close()


# -- monotonic pacing ----------------------------------------------------------------------


@pytest.mark.parametrize("step", [-3600, 3600, -86400, 86400])
async def test_a_wall_clock_step_neither_stalls_nor_bursts(tmp_path: Path, step: float) -> None:
    sim = await ChatSim.create(tmp_path / "data", env={"OUTBOX_SWITCH_GAP_S": "3-8"})
    monos: list[float] = []
    perform = sim.transport.perform

    async def timed(action: Action) -> None:
        monos.append(sim.clock.monotonic())
        await perform(action)

    sim.transport.perform = timed  # type: ignore[method-assign]
    for i in range(4):
        sim.app.outbox.submit(send(f"c{i}"))
    await sim.app.outbox.step()
    sim.clock.step_wall(step)  # NTP or a VM resume, between two sends
    start = sim.clock.monotonic()
    sent = await sim.drain()
    assert customers(sent)[-3:] == ["c1", "c2", "c3"]
    assert sim.clock.monotonic() - start < 60  # no stall (it was 3,607 s / 86,407 s)
    gaps = [b - a for a, b in itertools.pairwise(monos)]
    assert all(g >= 3.0 for g in gaps), gaps  # no burst
    alerts = [s for s in sent if s.to == "admin"]
    assert [a.key for a in alerts] == ["core/clock_alert"]
    await sim.close()


# -- composite actions ----------------------------------------------------------------------


async def card_sim(tmp_path: Path) -> tuple[ChatSim, Action]:
    sim = await ChatSim.create(tmp_path / "data")
    sim.transport.atomic_media = False  # as on WeChat: text, then the picture
    image = tmp_path / "tea.jpg"
    image.write_bytes(b"\xff\xd8\xff")
    card = send("alice", media=Media(MediaKind.IMAGE, path=str(image)))
    return sim, card


@pytest.mark.parametrize(
    "error",
    [
        TransportError("UNAVAILABLE", offline=True),
        TransportError("操作过于频繁"),
    ],
)
async def test_part_two_refused_never_resends_part_one(tmp_path: Path, error: Exception) -> None:
    sim, card = await card_sim(tmp_path)
    sim.transport.failures = [None, error]
    future = sim.app.outbox.submit(card)
    await sim.drain()
    done = [p.action for p in sim.transport.performed]
    sent = [a for a in done if a.to == "admin"]
    parts = [(a.to, bool(a.text), a.media is not None) for a in done if a.to == "alice"]
    assert parts == [("alice", True, False), ("alice", False, True)]  # each part once
    assert future.result().status == "sent"
    # one send counted against the cap for the card, one per alert to the operator
    assert sim.app.ledger.count(sim.clock.now().date().isoformat(), "send") == 1 + len(sent)
    await sim.close()


async def test_an_unclear_part_two_is_failed_and_says_which_parts_arrived(tmp_path: Path) -> None:
    sim, card = await card_sim(tmp_path)
    sim.transport.failures = [None, TransportError("DEADLINE_EXCEEDED")]
    future = sim.app.outbox.submit(card)
    sent = await sim.drain()
    assert [bool(s.text) for s in sent] == [True]
    assert future.result().reason == "transport after 1/2 parts"
    failed = sim.app.store.sql.events(kind="out.failed")[-1]["data"]
    assert failed["parts"] == 2 and failed["parts_sent"] == 1  # type: ignore[index]
    await sim.close()


async def test_a_crash_between_parts_lists_the_action_unknown(tmp_path: Path) -> None:
    sim, card = await card_sim(tmp_path)
    sim.app.outbox.submit(card)
    sim.app.store.sql.flush()
    q = sim.app.outbox.queue
    with sim.app.store.sql.engine.begin() as conn:  # part 1 went, then we died
        q.sending(conn, next(iter(i.qid for i in sim.app.outbox._items)), 0.0, 1)
    await sim.restart()
    sent = await sim.drain()
    assert [s.key for s in sent] == ["core/unknown_alert"]
    [row] = [
        r for j in sim.app.ledger.active_jobs() + _all_jobs(sim) for r in sim.app.ledger.rows_of(j)
    ]
    assert row.status.value == "unknown" and row.reason == "crash: 1/2 parts sent"
    # The operator checks the phone: the picture did not arrive. "Resend" sends only it.
    sim.transport.atomic_media = False
    sim.app.ledger.mark(row.job, row.recipient, RowStatus.PENDING, 0.0)
    sim.app.outbox.set_job_status(row.job, JobStatus.ACTIVE)
    before = len(sim.transport.performed)
    await sim.drain()
    resent = [p.action for p in sim.transport.performed[before:]]
    assert [(bool(a.text), a.media is not None) for a in resent] == [(False, True)]
    await sim.close()


def _all_jobs(sim: ChatSim) -> list[str]:
    with sim.app.ledger.engine.connect() as conn:
        return [str(j) for j in conn.execute(sa.select(sim.app.ledger.jobs.c.job)).scalars()]


# -- robust event log, disk trouble ---------------------------------------------------------


async def test_an_unencodable_id_does_not_stop_later_messages(sim: ChatSim) -> None:
    bad = Contact("wxid_\udc80bad", "坏")
    await sim.say(bad, "你好", msg_id="m-\ud800")
    answered = [await sim.say(f"c{i}", "你好") for i in range(5)]
    assert all(t.keys == ["greeter/hello"] for t in answered)
    kinds = [e["kind"] for e in sim.app.store.sql.events()]
    assert kinds.count("in.message") == 6
    await sim.restart()
    assert (await sim.say("c9", "你好")).keys == ["greeter/hello"]


def disk(sim: ChatSim) -> list[bool]:
    """Every SQL write fails like a full disk while the flag is up (the store boundary)."""
    full = [False]

    @sa.event.listens_for(sim.app.store.sql.engine, "before_cursor_execute")
    def _full(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if full[0] and statement.lstrip().split(" ", 1)[0].upper() in {
            "INSERT",
            "UPDATE",
            "DELETE",
        }:
            raise sqlite3.OperationalError("database or disk is full")

    return full


async def test_messages_that_arrive_while_the_disk_is_full_are_answered_after(
    sim: ChatSim,
) -> None:
    full = disk(sim)
    full[0] = True
    for i in range(5):
        assert (await sim.say(f"c{i}", "你好")).keys == []  # nothing leaves undecided
    assert (await sim.advance(30)).keys == []
    full[0] = False  # space back
    later = await sim.advance(120)
    assert sorted(customers(later)) == [f"c{i}" for i in range(5)]
    assert sim.app.inbox.counts() == {"handled": 5}
    assert (await sim.advance(600)).keys == []  # exactly once
