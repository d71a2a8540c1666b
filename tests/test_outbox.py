"""The outbound governor, on a fake clock: every rule that keeps the account safe."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from harness import ChatSim

from pond import Action, ActionClass, ActionKind
from pond.ledger import RowStatus
from pond.transports.base import TransportError


def send(to: str, cls: ActionClass = ActionClass.SERVICE, text: str = "x", **kw: str) -> Action:
    contact = "" if to.startswith("r") else to
    return Action(
        ActionKind.SEND,
        to=to,
        cls=cls,
        text=text,
        key="test/key",
        contact_id=kw.pop("contact_id", contact),
        **kw,
    )


async def make(tmp_path: Path, **env: str) -> ChatSim:
    return await ChatSim.create(tmp_path / "data", env=env)


async def test_same_chat_waits_the_per_chat_gap(tmp_path: Path) -> None:
    sim = await make(tmp_path, OUTBOX_TYPING_MAX_S="0")
    sim.app.outbox.submit(send("alice"))
    sim.app.outbox.submit(send("alice"))
    sent = await sim.drain()
    gap = (sent.sent[1].at - sent.sent[0].at).total_seconds()
    assert gap >= 1.5
    await sim.close()


async def test_switching_recipient_waits_a_random_gap_in_range(tmp_path: Path) -> None:
    sim = await make(tmp_path, OUTBOX_TYPING_MAX_S="0", OUTBOX_SWITCH_GAP_S="3-8")
    for who in ["alice", "bob", "carol", "dave"]:
        sim.app.outbox.submit(send(who))
    sent = await sim.drain()
    gaps = [(b.at - a.at).total_seconds() for a, b in zip(sent.sent, sent.sent[1:], strict=False)]
    assert all(3.0 <= g <= 8.0 for g in gaps), gaps
    assert len(set(gaps)) > 1  # random, not a fixed beat
    await sim.close()


async def test_typing_delay_grows_with_text_length(tmp_path: Path) -> None:
    sim = await make(tmp_path, OUTBOX_TYPING_CHARS_PER_S="10", OUTBOX_TYPING_MAX_S="5")
    start = sim.clock.now()
    sim.app.outbox.submit(send("alice", text="a" * 20))
    short = (await sim.drain()).sent[0].at - start
    start = sim.clock.now() + timedelta(seconds=60)
    sim.clock.set(start)
    sim.app.outbox.submit(send("alice", text="a" * 200))
    long = (await sim.drain()).sent[0].at - start
    assert short == timedelta(seconds=2)
    assert long == timedelta(seconds=5)  # capped
    await sim.close()


async def test_token_bucket_limits_sustained_rate(tmp_path: Path) -> None:
    sim = await make(
        tmp_path,
        OUTBOX_TYPING_MAX_S="0",
        OUTBOX_SWITCH_GAP_S="0",
        OUTBOX_CHAT_GAP_S="0",
        OUTBOX_BURST="5",
        OUTBOX_RATE_PER_MIN="20",
    )
    for i in range(25):
        sim.app.outbox.submit(send(f"r{i}"))
    sent = await sim.drain()
    span = (sent.sent[-1].at - sent.sent[0].at).total_seconds()
    # 25 actions at 20/min after a nearly empty bucket take at least ~72 s.
    assert span >= 24 / 20 * 60 - 1
    await sim.close()


async def test_marketing_waits_out_quiet_hours_but_replies_do_not(tmp_path: Path) -> None:
    sim = await ChatSim.create(tmp_path / "data", start=datetime(2026, 11, 23, 23, 0))
    sim.app.outbox.submit(send("alice", ActionClass.MARKETING))
    said = await sim.say("bob", "你好")
    assert said.keys == ["greeter/hello"]  # a reply goes out at 23:00
    assert said.sent[0].at.hour == 23
    later = await sim.drain()
    assert [s.to for s in later] == ["alice"]
    assert later.sent[0].at >= datetime(2026, 11, 24, 8, 0, tzinfo=sim.clock.tz)
    await sim.close()


async def test_opted_out_contact_gets_no_marketing_until_opt_in(sim: ChatSim) -> None:
    said = await sim.say("alice", "退订")
    assert said.keys == ["core/optout_confirm"]
    assert (await sim.say("alice", "退订")).keys == []  # confirmed once only
    future = sim.app.outbox.submit(send("alice", ActionClass.MARKETING))
    assert len(await sim.drain()) == 0
    assert future.result().reason == "opt_out"
    # service and replies still reach them
    assert (await sim.say("alice", "你好")).keys == ["greeter/hello"]
    assert (await sim.say("alice", "恢复订阅")).keys == ["core/optin_confirm"]
    sim.app.outbox.submit(send("alice", ActionClass.MARKETING))
    assert [s.to for s in await sim.drain()] == ["alice"]


async def test_opt_out_needs_the_whole_message(sim: ChatSim) -> None:
    assert (await sim.say("alice", "不要再发错地址了")).keys == []
    assert not sim.app.ledger.is_opted_out("alice")


async def test_one_marketing_message_per_contact_per_interval(sim: ChatSim) -> None:
    first = sim.app.outbox.submit(send("alice", ActionClass.MARKETING))
    second = sim.app.outbox.submit(send("alice", ActionClass.MARKETING))
    await sim.drain()
    assert (first.result().status, second.result().reason) == ("sent", "frequency")
    await sim.advance(72 * 3600)
    third = sim.app.outbox.submit(send("alice", ActionClass.MARKETING))
    await sim.drain()
    assert third.result().status == "sent"


async def test_throttle_trips_breaker_holds_non_replies_and_recovers(sim: ChatSim) -> None:
    sim.transport.failures = [TransportError("操作过于频繁，请稍后再试")]
    failed = sim.app.outbox.submit(send("alice", ActionClass.SERVICE))
    alerts = await sim.advance(1)
    assert "core/breaker_alert" in alerts.keys and alerts.sent[0].to == "admin"
    assert sim.app.outbox.breaker_open()
    # a customer's own question is still answered
    assert (await sim.say("bob", "你好")).keys == ["greeter/hello"]
    held = await sim.advance(29 * 60)
    assert held.keys == []
    released = await sim.advance(2 * 60)
    assert [s.to for s in released] == ["alice"]
    assert failed.result().status == "sent"
    # a second trip doubles the pause
    sim.transport.failures = [TransportError("发送消息过于频繁")]
    sim.app.outbox.submit(send("carol"))
    await sim.advance(1)
    assert sim.app.outbox.breaker_until - sim.clock.now().timestamp() == pytest.approx(3600, abs=60)


async def test_errors_that_certainly_did_not_send_retry_once_then_fail(sim: ChatSim) -> None:
    refused = TransportError("connection refused", retryable=True)
    sim.transport.failures = [refused, None]
    ok = sim.app.outbox.submit(send("alice"))
    await sim.drain()
    assert ok.result().status == "sent"
    sim.transport.failures = [refused, refused]
    bad = sim.app.outbox.submit(send("bob"))
    await sim.drain()
    assert bad.result() == type(bad.result())("failed", "transport")


async def test_an_ambiguous_error_is_never_retried(sim: ChatSim) -> None:
    # A timeout after the request left may have delivered: a retry could send it twice.
    sim.transport.failures = [TransportError("timeout"), None]
    once = sim.app.outbox.submit(send("alice"))
    await sim.drain()
    assert once.result().reason == "transport"
    assert sim.transport.failures == [None]  # the transport was called exactly once


async def test_refused_actions_give_their_cap_slot_back(tmp_path: Path) -> None:
    sim = await make(tmp_path, OUTBOX_CAP_SEND="2")
    sim.transport.failures = [TransportError("stream closed", offline=True)] * 5
    sim.app.outbox.submit(send("alice"))
    sim.app.outbox.submit(send("bob"))
    sent = await sim.advance(120)
    assert sorted(s.to for s in sent) == ["alice", "bob"]  # five offline tries cost nothing
    assert sim.app.ledger.count(sim.clock.now().date().isoformat(), "send") == 2
    await sim.close()


async def test_daily_cap_survives_restart_and_resets_next_day(tmp_path: Path) -> None:
    sim = await make(tmp_path, OUTBOX_CAP_SEND="3")
    for i in range(2):
        sim.app.outbox.submit(send(f"c{i}"))
    await sim.drain()
    await sim.restart()
    futures = [sim.app.outbox.submit(send(f"d{i}")) for i in range(3)]
    await sim.drain()
    assert [f.result().status for f in futures] == ["sent", "skipped", "skipped"]
    assert futures[1].result().reason == "cap:send"
    assert sim.app.ledger.count(sim.clock.now().date().isoformat(), "send") == 3
    await sim.advance(24 * 3600)
    nxt = sim.app.outbox.submit(send("e"))
    await sim.drain()
    assert nxt.result().status == "sent"
    await sim.close()


async def test_bulk_rows_left_sending_become_unknown_and_the_rest_continue(
    tmp_path: Path,
) -> None:
    sim = await make(tmp_path)
    actions = [send(f"c{i}", ActionClass.MARKETING, job="j1") for i in range(5)]
    sim.app.outbox.enqueue_bulk("j1", actions)
    await sim.app.outbox.step()  # c0 sent
    # Simulate a crash between the durable "sending" mark and the transport's answer.
    sim.app.ledger.mark("j1", "c1", RowStatus.SENDING, 0.0, expect=RowStatus.PENDING)
    await sim.restart()
    assert sim.app.ledger.summary("j1")["unknown"] == 1
    sent = await sim.drain()
    customers = sorted(s.to for s in sent if s.to != "admin")
    assert customers == ["c2", "c3", "c4"]  # c1 is never re-sent silently
    assert [s.key for s in sent if s.to == "admin"] == ["core/unknown_alert"]
    assert sim.app.ledger.summary("j1") == {"sent": 4, "unknown": 1}
    assert sim.app.ledger.job_status("j1").value == "done"  # type: ignore[union-attr]
    await sim.close()


async def test_bulk_cap_defers_the_remainder_to_the_next_day(tmp_path: Path) -> None:
    sim = await make(tmp_path, OUTBOX_CAP_BROADCAST="3", OUTBOX_MARKETING_MIN_INTERVAL_H="0")
    actions = [send(f"c{i}", ActionClass.MARKETING, job="j") for i in range(5)]
    sim.app.outbox.enqueue_bulk("j", actions)
    today = await sim.advance(3600)
    assert len(today) == 3
    assert sim.app.ledger.summary("j") == {"sent": 3, "pending": 2}
    tomorrow = await sim.advance(24 * 3600)
    assert [s.to for s in tomorrow] == ["c3", "c4"]
    assert all(s.at.date() > today.sent[0].at.date() for s in tomorrow)
    await sim.close()


async def test_bulk_job_replayed_does_not_duplicate_rows(sim: ChatSim) -> None:
    actions = [send(f"c{i}", ActionClass.MARKETING, job="j") for i in range(3)]
    assert sim.app.outbox.enqueue_bulk("j", actions) == 3
    assert sim.app.outbox.enqueue_bulk("j", actions) == 0
    assert len(await sim.drain()) == 3


async def test_inbound_duplicates_are_dropped_across_restart(sim: ChatSim) -> None:
    assert (await sim.say("alice", "你好", msg_id="wx-1")).keys == ["greeter/hello"]
    await sim.restart()
    assert (await sim.say("alice", "你好", msg_id="wx-1")).keys == []


async def test_backlog_older_than_cutoff_is_recorded_not_answered(sim: ChatSim) -> None:
    old = sim.clock.now() - timedelta(minutes=10)
    assert (await sim.say("alice", "你好", at=old)).keys == []
    events = sim.app.store.sql.events(kind="in.message")
    assert events[-1]["data"]["stale"] is True  # type: ignore[index]


async def test_decisions_are_recorded_without_message_text(sim: ChatSim) -> None:
    await sim.say("alice", "你好")
    sent = sim.app.store.sql.events(kind="out.sent")
    assert sent and sent[-1]["data"]["key"] == "greeter/hello"  # type: ignore[index]
    assert all("你好" not in str(e) for e in sim.app.store.sql.events())


async def test_actions_wait_while_offline_and_none_is_lost(sim: ChatSim) -> None:
    sim.transport.connected = False
    reply = await sim.say("alice", "你好")
    assert reply.keys == []
    held = await sim.advance(60)
    assert held.keys == []
    sim.transport.connected = True
    back = await sim.advance(10)
    assert back.keys == ["greeter/hello"]
    deferred = sim.app.store.sql.events(kind="out.deferred")
    assert len(deferred) == 1  # recorded once, not once per retry


async def test_an_offline_error_mid_bulk_puts_the_row_back_not_unknown(sim: ChatSim) -> None:
    sim.transport.failures = [TransportError("stream closed", offline=True)]
    sim.app.outbox.enqueue_bulk("j", [send("c0", ActionClass.MARKETING, job="j")])
    sent = await sim.advance(60)
    assert [s.to for s in sent] == ["c0"]
    assert sim.app.ledger.summary("j") == {"sent": 1}


async def test_bulk_work_takes_a_longer_pause_every_n_recipients(tmp_path: Path) -> None:
    sim = await make(
        tmp_path,
        OUTBOX_BULK_PAUSE_EVERY="3",
        OUTBOX_BULK_PAUSE_S="60-90",
        OUTBOX_SWITCH_GAP_S="3-8",
        OUTBOX_MARKETING_MIN_INTERVAL_H="0",
    )
    actions = [send(f"c{i}", ActionClass.MARKETING, job="j") for i in range(7)]
    sim.app.outbox.enqueue_bulk("j", actions)
    sent = (await sim.drain()).sent
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(sent)]
    long_gaps = [i for i, gap in enumerate(gaps) if gap >= 60]
    assert long_gaps == [2, 5]  # after the 3rd and the 6th recipient
    assert all(gap <= 8 for i, gap in enumerate(gaps) if i not in long_gaps)
    await sim.close()
