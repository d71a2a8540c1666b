"""Data rights as operators use them: what an operator typed about a customer (a note with a
phone number and an address) never reaches the audit log, and after 删除客户 nothing about
the customer is left in any table of the database, read raw."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from harness import ChatSim, load_script

from pond import Contact, health, rights

WHO = "wxid_li4si"
NAME = "李四测试"
PHONE = "13800138000"
STREET = "南京西路1266号"
NOTE = f"电话 {PHONE} 住静安区{STREET} 周末送货"


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ChatSim]:
    chat = await ChatSim.create(
        tmp_path / "data",
        plugins=["friends", "auto_reply", "admin"],
        env={"OUTBOX_QUIET_HOURS": "off", "FRIENDS_GREET_DELAY_S": "10"},
    )
    yield chat
    await chat.close()


def raw_tables(sim: ChatSim) -> dict[str, str]:
    """Every table of the database, every row, as the database holds it."""
    sim.app.book.flush()
    sim.app.store.sql.flush()
    out = {}
    with sim.app.store.sql.engine.connect() as conn:
        names = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")
        for (name,) in names.all():
            rows = conn.exec_driver_sql(f'SELECT * FROM "{name}"').all()
            out[name] = json.dumps([list(r) for r in rows], ensure_ascii=False, default=str)
    return out


def tables_with(sim: ChatSim, *needles: str) -> list[str]:
    return sorted(
        f"{table}: {needle}"
        for table, text in raw_tables(sim).items()
        for needle in needles
        if needle in text
    )


def audits(sim: ChatSim) -> list[object]:
    return [e["data"] for e in sim.app.store.sql.events(kind="admin.command")]


async def customer_with_a_note(sim: ChatSim) -> None:
    await sim.friend_request(Contact(WHO, name=NAME), "A1")  # accepted: a channel code
    await sim.say(Contact(WHO, name=NAME), "你好，想买乌龙")
    said = await sim.say("admin", f"备注 {WHO} {NOTE}")
    assert said.keys == ["friends/cmd_noted"]


async def test_a_note_is_in_the_customer_book_but_its_text_not_in_the_audit_log(
    sim: ChatSim,
) -> None:
    await customer_with_a_note(sim)
    assert PHONE in sim.app.book.get(WHO).notes  # type: ignore[union-attr]
    assert audits(sim) == [{"command": "note", "args": [WHO, "…", "…", "…", "…"], "origin": "chat"}]
    assert tables_with(sim, PHONE, STREET) == ["customers: " + PHONE, "customers: " + STREET]
    # A name looked up, and a phone number typed where an id belongs, are no ids either.
    await sim.say("admin", f"找客户 {NAME}")
    await sim.say("admin", f"客户资料 {PHONE}")
    assert audits(sim)[1:] == [
        {"command": "find", "args": ["…"], "origin": "chat"},
        {"command": "contact", "args": ["…"], "origin": "chat"},
    ]
    assert tables_with(sim, NAME) == ["customers: " + NAME]


async def test_deleting_a_customer_leaves_nothing_about_them_in_any_table(sim: ChatSim) -> None:
    await customer_with_a_note(sim)
    # They send a new friend request with their phone number: it waits for review.
    said = await sim.friend_request(Contact(WHO, name=NAME), f"我是{NAME} {PHONE}")
    assert [s.key for s in said] == ["friends/review_alert"]
    said = await sim.say(Contact(WHO, name=NAME), f"转人工，我住{STREET}")  # a hand-off ticket
    assert "auto_reply/handoff" in said.keys
    # An audit row written verbatim before arguments were minimised, by an older version.
    sim.app.record(
        "admin.command", contact_id="admin", command="note", args=[WHO, NOTE], origin="chat"
    )
    # The note in the book, the old audit row, the request waiting for review:
    assert tables_with(sim, PHONE, STREET) == [
        f"customers: {PHONE}",
        f"customers: {STREET}",
        f"events: {PHONE}",
        f"events: {STREET}",
        f"kv: {PHONE}",
    ]

    assert (await sim.say("admin", f"删除客户 {WHO}")).keys == ["friends/cmd_erase_confirm"]
    said = await sim.say("admin", f"删除客户 {WHO} {WHO}")
    assert said.keys == ["friends/cmd_erased"]
    assert "客户档案 1 条" in said.texts[0] and "customer" not in said.texts[0]

    assert tables_with(sim, WHO, NAME, PHONE, STREET, "静安", "送货") == []
    commands = [a["command"] for a in audits(sim)]  # type: ignore[index]
    assert commands == ["note", "note", "delete_contact", "delete_contact"]
    assert all(set(a["args"]) <= {"…"} or a["args"][0].startswith("erased-") for a in audits(sim))  # type: ignore[index]
    # The erasure itself is audited without personal data.
    [erase] = sim.app.store.sql.events(kind="rights.erase")
    assert erase["data"]["by"] == "admin" and erase["data"]["found"] is True  # type: ignore[index]


async def test_the_command_line_erasure_is_the_same(sim: ChatSim) -> None:
    await customer_with_a_note(sim)
    cli = load_script("admin", "admin_cli_rights")
    await sim.app.stop()
    code = await cli.run(["delete", WHO, WHO], settings=sim.settings(), clock=sim.clock)
    assert code == 0
    await sim.restart()
    assert tables_with(sim, WHO, NAME, PHONE, STREET) == []
    assert [a["origin"] for a in audits(sim)] == ["chat", "cli"]  # type: ignore[index]


async def test_other_customers_keep_their_audit_ids_when_one_is_erased(sim: ChatSim) -> None:
    await customer_with_a_note(sim)
    await sim.say("bob", "你好")
    await sim.say("admin", f"暂停 {WHO} 2h")
    await sim.say("admin", "暂停 bob 2h")
    rights.erase_contact(sim.app, WHO, by="admin", origin="test")
    pauses = [a["args"] for a in audits(sim) if a["command"] == "pause"]  # type: ignore[index]
    assert pauses[1] == ["bob", "2h"]
    assert pauses[0][0].startswith("erased-") and pauses[0][1:] == ["…"]


async def test_a_command_line_answer_nobody_collected_goes_with_the_erasure(
    sim: ChatSim,
) -> None:
    await customer_with_a_note(sim)
    beat = health.Heartbeat(sim.app)
    await beat.start()
    request = {"command": "contact", "args": [WHO], "rest": WHO, "user": "ops"}
    sim.app.store.namespace("health").set("cli:req:t1", request)
    await beat.serve_mailbox()  # the bot answered 客户资料; the command line had given up
    assert tables_with(sim, PHONE) == [f"customers: {PHONE}", f"kv: {PHONE}"]
    await sim.say("admin", f"删除客户 {WHO} {WHO}")
    assert tables_with(sim, WHO, NAME, PHONE, STREET) == []
    beat.close()


async def test_audit_rows_of_an_older_version_are_minimised_once_at_start(sim: ChatSim) -> None:
    await customer_with_a_note(sim)
    # What older versions wrote for 备注 and 找客户: every argument verbatim.
    sim.app.record("admin.command", contact_id="admin", command="note", args=[WHO, NOTE])
    sim.app.record("admin.command", contact_id="admin", command="find", args=[NAME])
    sim.app.record("admin.command", contact_id="admin", command="pause", args=["all", "2h"])
    sim.app.store.namespace("rights").delete("audit_minimised")  # data of an older version
    await sim.restart()
    assert [a["args"] for a in audits(sim)] == [  # type: ignore[index]
        [WHO, "…", "…", "…", "…"],
        [WHO, "…"],
        ["…"],
        ["all", "2h"],  # plain words stay
    ]
    assert tables_with(sim, PHONE, STREET, NAME) == sorted(
        [f"customers: {NAME}", f"customers: {PHONE}", f"customers: {STREET}"]
    )
