"""Groups: batched welcomes, rules, moderation with audit, keyword invites, activity data.

Rooms come from a rooms file written per test (GROUPS_ROOMS_FILE), so each test reads like
the operator's configuration plus a transcript of what happened in the rooms."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from harness import ROOT, ChatSim

from plugins.groups import GroupsState
from pond import Contact, MemberJoined, MessageType, Room, StartupError
from pond.transports.base import INVITE, KICK
from pond.transports.memory import ALL_BUT_MOMENTS

ROOMS = """
[defaults]
rules_keywords = ["群规"]
welcome_cooldown_s = 300
[defaults.moderation]
banned_keywords = ["加微信"]
flood_messages = 5
flood_seconds = 10
allowed_domains = ["xiaoyutang.com"]

[rooms."roomA"]
name = "茶友1群"
role = "admin"
invite_keywords = ["进群"]
invite_order = 1
member_limit = 3
admins = ["staff"]

[rooms."roomB"]
name = "茶友2群"
role = "admin"
invite_keywords = ["进群"]
invite_order = 2
rules_cron = "0 9 * * *"
welcome_dm_rules = true
"""

LINK = "好东西 http://spam.example.cn/x 快来"


async def make(tmp_path: Path, rooms: str = ROOMS, **env: str) -> ChatSim:
    path = tmp_path / "rooms.toml"
    path.write_text(rooms, encoding="utf-8")
    return await ChatSim.create(
        tmp_path / "data", plugins=["groups"], env={"GROUPS_ROOMS_FILE": str(path), **env}
    )


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ChatSim]:
    chat = await make(tmp_path)
    yield chat
    await chat.close()


def events(sim: ChatSim, kind: str) -> list[dict[str, Any]]:
    return sim.app.store.sql.events(kind=f"groups.{kind}")


def groups_state(sim: ChatSim) -> GroupsState:
    state: GroupsState = sim.app.context("groups").state
    return state


def audit(sim: ChatSim) -> list[dict[str, Any]]:
    return groups_state(sim).db.audit_rows()


def moderation(sim: ChatSim) -> list[str]:
    return [e["data"]["action"] for e in events(sim, "moderation")]


# -- welcome ---------------------------------------------------------------------------------
async def test_three_joins_within_the_window_get_one_welcome_mentioning_all(sim: ChatSim) -> None:
    assert len(await sim.join("roomA", "alice")) == 0
    await sim.advance(10)
    await sim.join("roomA", "bob")
    await sim.advance(10)
    assert len(await sim.join("roomA", "carol")) == 0  # still inside the 30 s window
    said = await sim.advance(60)
    assert said.keys == ["groups/welcome"]
    assert said.sent[0].to == "roomA"
    assert said.sent[0].mentions == ("alice", "bob", "carol")
    assert "3" in said.texts[0]
    assert "groups/welcome" not in (await sim.advance(600)).keys  # sent once


async def test_a_join_after_the_cooldown_gets_its_own_welcome(sim: ChatSim) -> None:
    await sim.join("roomA", "alice")
    assert (await sim.advance(60)).keys == ["groups/welcome"]
    await sim.advance(100)
    await sim.join("roomA", "bob")  # inside the 300 s cooldown: waits for it
    assert (await sim.advance(60)).keys == []
    waited = await sim.advance(200)
    assert waited.keys == ["groups/welcome"]
    assert waited.sent[0].mentions == ("bob",)
    await sim.advance(400)
    await sim.join("roomA", "carol")  # after the cooldown: its own welcome, promptly
    said = await sim.advance(90)
    assert said.keys == ["groups/welcome"]
    assert said.sent[0].mentions == ("carol",)


async def test_unconfigured_room_gets_nothing(sim: ChatSim) -> None:
    assert len(await sim.join("elsewhere", "alice", "bob")) == 0
    assert len(await sim.say("spammer", LINK, room="elsewhere")) == 0
    assert len(await sim.say("bob", "群规", room="elsewhere")) == 0
    assert (await sim.advance(120)).keys == []
    assert events(sim, "join") == [] and events(sim, "message") == []


async def test_the_next_event_in_the_room_sends_a_due_welcome(sim: ChatSim) -> None:
    await sim.join("roomA", "alice")
    await sim.advance(40)  # window closed, no minute tick yet
    said = await sim.say("bob", "大家好", room="roomA")
    assert said.keys == ["groups/welcome"]


async def test_someone_who_left_before_the_welcome_is_not_greeted(sim: ChatSim) -> None:
    await sim.join("roomA", "alice", "bob")
    await sim.leave("roomA", "bob")
    said = await sim.advance(60)
    assert said.sent[0].mentions == ("alice",)


async def test_a_spammer_being_removed_is_not_welcomed_after_the_removal(tmp_path: Path) -> None:
    rooms = ROOMS.replace(
        "[defaults.moderation]", '[defaults.moderation]\ninstant_remove = ["link"]'
    )
    sim = await make(tmp_path, rooms, OUTBOX_TYPING_MAX_S="5")
    await sim.join("roomA", "alice", "frank")
    await sim.advance(40)  # the welcome window closed; it goes out with the next event
    said = await sim.say("frank", LINK, room="roomA")
    assert said.sent[0].kind == "kick"
    assert "groups/removed" in said.keys
    [welcome] = [s for s in said if s.key == "groups/welcome"]
    assert welcome.mentions == ("alice",) and "frank" not in welcome.text
    assert "groups/welcome" not in (await sim.advance(600)).keys
    await sim.close()


async def test_a_member_removed_by_hand_is_not_welcomed_either(tmp_path: Path) -> None:
    rooms = ROOMS.replace(
        'role = "admin"\ninvite_keywords = ["进群"]\ninvite_order = 1',
        'role = "member"\ninvite_keywords = ["进群"]\ninvite_order = 1',
    )
    rooms = rooms.replace(
        "[defaults.moderation]", '[defaults.moderation]\ninstant_remove = ["link"]'
    )
    sim = await make(tmp_path, rooms)
    await sim.join("roomA", "alice", "frank")
    said = await sim.say("frank", LINK, room="roomA")  # inside the window
    assert said.keys == ["groups/admin_remove"]  # the bot is no room admin: staff remove him
    welcome = await sim.advance(60)
    assert welcome.keys == ["groups/welcome"] and welcome.sent[0].mentions == ("alice",)
    await sim.close()


async def test_a_pending_welcome_survives_a_restart(sim: ChatSim) -> None:
    await sim.join("roomA", "alice")
    await sim.restart()
    assert (await sim.advance(60)).sent[0].mentions == ("alice",)


async def test_rules_go_privately_to_joiners_who_are_friends(sim: ChatSim) -> None:
    friend, stranger = Contact("fran", "fran"), Contact("stan", "stan", is_friend=False)
    joined = MemberJoined(Room("roomB"), (friend, stranger), sim.clock.now(), id="j1")
    await sim.send_event(joined)
    said = await sim.advance(60)
    assert said.keys == ["groups/welcome", "groups/rules"]
    assert said.sent[1].to == "fran"


# -- rules ---------------------------------------------------------------------------------------
async def test_rules_keyword_posts_the_rules_once_per_cooldown(sim: ChatSim) -> None:
    said = await sim.say("alice", "群规", room="roomA")
    assert said.keys == ["groups/rules"]
    assert said.sent[0].to == "roomA" and said.sent[0].mentions == ("alice",)
    assert (await sim.say("bob", "群规", room="roomA")).keys == []  # still on screen
    await sim.advance(130)
    assert (await sim.say("bob", "@阿鱼 群规", room="roomA")).keys == ["groups/rules"]
    assert (await sim.say("bob", "别违反群规", room="roomA")).keys == []  # not the keyword


async def test_rules_are_posted_on_the_room_schedule(tmp_path: Path) -> None:
    sim = await make(tmp_path, ROOMS.replace('"0 9 * * *"', '"5 10 * * *"'))
    said = await sim.advance(6 * 60)  # the clock starts at 10:00
    assert said.keys == ["groups/rules"]
    assert said.sent[0].to == "roomB"
    assert (await sim.advance(30 * 60)).keys == []
    await sim.close()


# -- moderation ----------------------------------------------------------------------------------
async def test_link_spam_is_warned_warned_then_removed(sim: ChatSim) -> None:
    assert (await sim.say("spammer", LINK, room="roomA")).keys == ["groups/warn"]
    assert (await sim.say("spammer", LINK, room="roomA")).keys == ["groups/warn_final"]
    third = await sim.say("spammer", LINK, room="roomA")
    assert [s.kind for s in third] == ["kick", "send"]
    assert third.keys == ["groups/removed"]
    kick = sim.transport.performed[-2].action
    assert (kick.to, kick.member_id) == ("roomA", "spammer")
    assert moderation(sim) == ["warn", "final_warn", "remove"]
    rows = audit(sim)
    assert [r["action"] for r in rows] == ["warn", "final_warn", "remove"]
    assert {(r["rule"], r["msg_type"], r["contact_id"]) for r in rows} == {
        ("link", "text", "spammer")
    }
    assert all(r["at"] and r["message_id"] for r in rows)
    assert "spam.example" not in json.dumps([rows, events(sim, "moderation")], default=str)


async def test_without_kick_capability_the_admins_are_asked(sim: ChatSim) -> None:
    sim.transport.capabilities = ALL_BUT_MOMENTS - {KICK}
    await sim.say("spammer", LINK, room="roomA")
    await sim.say("spammer", LINK, room="roomA")
    third = await sim.say("spammer", LINK, room="roomA")
    assert [s.kind for s in third] == ["send"]
    assert third.keys == ["groups/admin_remove"] and third.sent[0].to == "admin"
    assert moderation(sim)[-1] == "notify_admins"
    assert audit(sim)[-1]["detail"] == "no_kick_capability"


async def test_the_room_notify_list_is_asked_too_and_each_person_once(tmp_path: Path) -> None:
    rooms = ROOMS.replace('role = "admin"', 'role = "member"').replace(
        'admins = ["staff"]', 'admins = ["staff"]\nnotify = ["owner", "admin"]'
    )
    sim = await make(tmp_path, rooms)
    for _ in range(3):
        said = await sim.say("spammer", LINK, room="roomA")
    assert said.keys == ["groups/admin_remove", "groups/admin_remove"]
    assert sorted(s.to for s in said.sent) == ["admin", "owner"]
    assert all("spammer" in s.text for s in said.sent)
    await sim.close()


async def test_a_member_account_cannot_kick_so_it_asks(tmp_path: Path) -> None:
    sim = await make(tmp_path, ROOMS.replace('role = "admin"', 'role = "member"'))
    for _ in range(3):
        said = await sim.say("spammer", "加 微 信 领福利", room="roomA")
    assert said.keys == ["groups/admin_remove"]
    assert audit(sim)[-1]["detail"] == "not_room_admin"
    assert audit(sim)[-1]["rule"] == "banned_keyword"
    await sim.close()


async def test_admins_staff_and_allowed_links_are_never_moderated(sim: ChatSim) -> None:
    for who in ("admin", "staff"):
        for _ in range(6):
            assert len(await sim.say(who, LINK, room="roomA")) == 0
    ours = "新品上架 https://shop.xiaoyutang.com/tea 看看"
    assert len(await sim.say("alice", ours, room="roomA")) == 0
    assert audit(sim) == []


async def test_dry_run_records_decisions_and_does_nothing(sim: ChatSim) -> None:
    assert (await sim.say("admin", "开启群管试运行")).keys == ["groups/cmd_dry_run"]
    for _ in range(3):
        assert len(await sim.say("spammer", LINK, room="roomA")) == 0
    rows = audit(sim)
    assert [r["action"] for r in rows] == ["warn", "final_warn", "remove"]
    assert all(r["dry_run"] for r in rows)
    assert all(e["data"]["dry_run"] for e in events(sim, "moderation"))
    said = await sim.say("admin", "违规记录")
    assert said.keys == ["groups/cmd_strikes"] and "spammer" in said.texts[0]
    # Back to real moderation: dry-run strikes do not count toward removal.
    await sim.say("admin", "关闭群管试运行")
    assert (await sim.say("spammer", LINK, room="roomA")).keys == ["groups/warn"]


async def test_dry_run_for_one_room_only(sim: ChatSim) -> None:
    await sim.say("admin", "开启群管试运行 roomB")
    assert len(await sim.say("spammer", LINK, room="roomB")) == 0
    assert (await sim.say("spammer", LINK, room="roomA")).keys == ["groups/warn"]
    assert (await sim.say("admin", "开启群管试运行 nowhere")).keys == ["groups/cmd_unknown_room"]


async def test_undo_removes_a_strike(sim: ChatSim) -> None:
    await sim.say("spammer", LINK, room="roomA")
    await sim.say("spammer", LINK, room="roomA")
    first = audit(sim)[0]["strike_id"]
    said = await sim.say("admin", f"撤销违规 {first}")
    assert said.keys == ["groups/cmd_unstrike"]
    assert audit(sim)[-1]["action"] == "undo" and audit(sim)[-1]["actor"] == "admin"
    assert events(sim, "strike_undone")[0]["data"]["strike_id"] == first
    # One strike left in force, so the next link is the final warning, not a removal.
    assert (await sim.say("spammer", LINK, room="roomA")).keys == ["groups/warn_final"]
    # By member id: the latest strike; then nothing left to undo under that number.
    assert (await sim.say("admin", "撤销违规 spammer roomA")).keys == ["groups/cmd_unstrike"]
    again = await sim.say("admin", f"撤销违规 {first}")
    assert again.keys == ["groups/cmd_unstrike_missing"]


async def test_a_flood_is_one_strike(sim: ChatSim) -> None:
    for n in range(4):
        assert len(await sim.say("chatty", f"哈哈{n}", room="roomA")) == 0
    said = await sim.say("chatty", "哈哈哈", room="roomA")  # 5 in 10 s
    assert said.keys == ["groups/warn"]
    assert audit(sim)[-1]["rule"] == "flood"
    assert len(await sim.say("chatty", "好", room="roomA")) == 0  # the count started over


@pytest.mark.parametrize(
    ("kind", "rule"),
    [
        (MessageType.CONTACT_CARD, "contact_card"),
        (MessageType.MINI_PROGRAM, "mini_program"),
        (MessageType.LINK, "link"),
    ],
)
async def test_cards_mini_programs_and_link_cards(
    sim: ChatSim, kind: MessageType, rule: str
) -> None:
    assert (await sim.say("bob", "", room="roomA", type=kind)).keys == ["groups/warn"]
    assert audit(sim)[-1]["rule"] == rule
    assert audit(sim)[-1]["msg_type"] == kind.value


@pytest.fixture
def pictures(tmp_path: Path) -> dict[str, Path]:
    """Made at test time: a WeChat-style QR code (PNG), a tea photo without one (JPEG), and
    the QR code printed on such a photo (JPEG, as a phone would send it)."""
    import qrcode
    from PIL import Image, ImageDraw

    rng = random.Random(5)
    photo = Image.new("RGB", (1200, 900), (176, 134, 82))
    draw = ImageDraw.Draw(photo)
    for _ in range(400):
        x, y, r = rng.randrange(1200), rng.randrange(900), rng.randrange(4, 90)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x, y, x + r, y + r), fill=colour)
    code = qrcode.make("https://u.wechat.com/EJxYz-spam").get_image().convert("RGB")
    paths = {"qr": tmp_path / "qr.png", "tea": tmp_path / "tea.jpg", "ad": tmp_path / "ad.jpg"}
    code.save(paths["qr"])
    photo.save(paths["tea"], quality=85)
    photo.paste(code.resize((300, 300)), (700, 450))
    photo.save(paths["ad"], quality=70)
    return paths


async def test_only_images_that_decode_as_qr_codes_are_qr_ads(
    sim: ChatSim, pictures: dict[str, Path]
) -> None:
    await sim.join("roomA", "newbie")
    await sim.advance(60)  # the welcome
    tea = await sim.say("newbie", "", room="roomA", type=MessageType.IMAGE, file=pictures["tea"])
    assert len(tea) == 0  # a tea photo from a new member is just a photo
    unseen = await sim.say("newbie", "", room="roomA", type=MessageType.IMAGE)
    assert len(unseen) == 0  # no picture file to look at: never treated as an ad
    assert audit(sim) == []
    said = await sim.say("newbie", "", room="roomA", type=MessageType.IMAGE, file=pictures["qr"])
    assert said.keys == ["groups/warn"]
    assert "二维码" in said.texts[0]
    assert audit(sim)[-1]["rule"] == "qr_image"
    again = await sim.say("newbie", "", room="roomA", type=MessageType.IMAGE, file=pictures["ad"])
    assert again.keys == ["groups/warn_final"]  # a QR code on a photo: the second strike
    verdicts = [e["data"]["verdict"] for e in events(sim, "qr_checked")]
    assert verdicts == [False, None, True, True]


async def test_qr_codes_from_long_time_members_are_checked_only_when_all_images_are(
    tmp_path: Path, pictures: dict[str, Path]
) -> None:
    sim = await make(tmp_path)
    await sim.say("oldtimer", "早", room="roomA")  # here before we watched: not new
    qr = pictures["qr"]
    assert len(await sim.say("oldtimer", "", room="roomA", type=MessageType.IMAGE, file=qr)) == 0
    await sim.close()
    every = ROOMS.replace("[defaults.moderation]", '[defaults.moderation]\nqr_images = "all"')
    (tmp_path / "all").mkdir()
    sim = await make(tmp_path / "all", every)
    await sim.say("oldtimer", "早", room="roomA")
    said = await sim.say("oldtimer", "", room="roomA", type=MessageType.IMAGE, file=qr)
    assert said.keys == ["groups/warn"]
    await sim.close()


async def test_types_the_rules_do_not_know_are_passed(sim: ChatSim) -> None:
    for kind in (MessageType.FILE, MessageType.OTHER):
        assert len(await sim.say("bob", "http://x.cn 加微信", room="roomA", type=kind)) == 0
    assert audit(sim) == []


async def test_an_operator_pause_stops_moderation_but_a_takeover_does_not(sim: ChatSim) -> None:
    sim.app.pauses.pause("roomA", minutes=None, reason="operator")
    assert len(await sim.say("spammer", LINK, room="roomA")) == 0
    sim.app.pauses.pause("roomA", minutes=30, reason="takeover")
    assert (await sim.say("spammer", LINK, room="roomA")).keys == ["groups/warn"]


# -- invites ---------------------------------------------------------------------------------------
async def test_invite_overflows_to_the_next_room_when_the_first_is_full(sim: ChatSim) -> None:
    await sim.join("roomA", "a1", "a2", "a3")  # roomA: member_limit 3
    said = await sim.say("newbie", "进群")
    assert said.keys == ["groups/invite_sent"]
    invites = [p.action for p in sim.transport.performed if p.action.kind.value == "invite"]
    assert [(a.to, a.member_id) for a in invites] == [("roomB", "newbie")]
    assert events(sim, "invite")[-1]["data"]["status"] == "invited"


async def test_pending_invites_hold_seats(sim: ChatSim) -> None:
    await sim.join("roomA", "a1", "a2")  # one seat left
    await sim.say("n1", "进群")
    await sim.say("n2", "进群")
    invites = [p.action for p in sim.transport.performed if p.action.kind.value == "invite"]
    assert [(a.to, a.member_id) for a in invites] == [("roomA", "n1"), ("roomB", "n2")]
    assert (await sim.say("n1", "进群")).keys == ["groups/invite_pending"]
    await sim.join("roomA", "n1")
    assert (await sim.say("n1", "进群")).keys == ["groups/invite_already"]
    assert [e["data"]["invited"] for e in events(sim, "join")][-1] is True


async def test_a_member_of_a_room_is_told_so(sim: ChatSim) -> None:
    await sim.say("bob", "大家好", room="roomB")
    assert (await sim.say("bob", "进群")).keys == ["groups/invite_already"]


async def test_all_rooms_full_tells_the_customer_and_the_admins(tmp_path: Path) -> None:
    sim = await make(
        tmp_path, ROOMS.replace("invite_order = 2", "invite_order = 2\nmember_limit = 1")
    )
    await sim.join("roomA", "a1", "a2", "a3")
    await sim.join("roomB", "b1")
    said = await sim.say("newbie", "进群")
    assert sorted(said.keys) == ["groups/admin_rooms_full", "groups/invite_full"]
    assert (await sim.say("late", "进群")).keys == ["groups/invite_full"]  # admins told once
    await sim.close()


async def test_without_invite_capability_a_person_is_asked(sim: ChatSim) -> None:
    sim.transport.capabilities = ALL_BUT_MOMENTS - {INVITE}
    said = await sim.say("newbie", "进群")
    assert sorted(said.keys) == ["groups/admin_invite", "groups/invite_manual"]
    assert all(s.kind == "send" for s in said)


async def test_asking_to_join_in_own_words_gets_the_same_invite(sim: ChatSim) -> None:
    said = await sim.say("newbie", "我想进群看看")
    assert said.keys == ["groups/invite_sent"]
    invites = [p.action for p in sim.transport.performed if p.action.kind.value == "invite"]
    assert [(a.to, a.member_id) for a in invites] == [("roomA", "newbie")]
    assert (await sim.say("newbie", "能拉我进群吗")).keys == ["groups/invite_pending"]


async def test_other_private_messages_are_not_invites(sim: ChatSim) -> None:
    assert len(await sim.say("newbie", "我不想进群")) == 0
    long = "群里有人说你们家的龙井今年特别香，想进群之前先问问价格"
    assert len(await sim.say("newbie", long)) == 0
    assert len(await sim.say("newbie", "你好")) == 0


# -- activity data ---------------------------------------------------------------------------------
async def test_joins_leaves_messages_per_hour_and_moderation_are_recorded(
    sim: ChatSim, pictures: dict[str, Path]
) -> None:
    await sim.join("roomA", "alice", "bob")
    await sim.say("alice", "早上好", room="roomA")
    await sim.say("alice", "今天喝什么", room="roomA", type=MessageType.TEXT)
    await sim.say("bob", "", room="roomA", type=MessageType.IMAGE, file=pictures["qr"])
    await sim.leave("roomA", "bob")
    await sim.say("carol", LINK, room="roomA")
    joins = events(sim, "join")
    assert [(e["room_id"], e["contact_id"]) for e in joins] == [
        ("roomA", "alice"),
        ("roomA", "bob"),
    ]
    assert events(sim, "leave")[0]["contact_id"] == "bob"
    messages = events(sim, "message")
    assert [e["data"]["type"] for e in messages] == ["text", "text", "image", "text"]
    assert len(events(sim, "moderation")) == 2  # bob's QR code, carol's link
    await sim.advance(3600)
    hourly = {e["room_id"]: e["data"] for e in events(sim, "hourly")}
    assert hourly["roomA"]["messages"] == 4
    assert hourly["roomA"]["active_members"] == 3
    assert (hourly["roomA"]["joins"], hourly["roomA"]["leaves"]) == (2, 1)
    assert hourly["roomA"]["moderation"] == 2
    assert hourly["roomA"]["hour"].startswith("2026-11-23T10:00")
    assert hourly["roomB"]["messages"] == 0
    stored = json.dumps(sim.app.store.sql.events(), default=str, ensure_ascii=False)
    assert "早上好" not in stored and "spam.example" not in stored


# -- configuration -------------------------------------------------------------------------------
BAD = [
    ('flood_messages = "ten"', "roomA", "moderation.flood_messages"),
    ("banned_patterns = ['([unclosed']", "roomA", "moderation.banned_patterns"),
    ("colour = 3", "roomA", "moderation.colour"),
]


@pytest.mark.parametrize(("line", "room", "key"), BAD)
async def test_a_bad_room_stops_start_up_naming_room_and_key(
    tmp_path: Path, line: str, room: str, key: str
) -> None:
    rooms = ROOMS.replace("member_limit = 3", f"member_limit = 3\n[rooms.roomA.moderation]\n{line}")
    with pytest.raises(StartupError) as raised:
        await make(tmp_path, rooms)
    assert f"群 {room}" in str(raised.value) and key in str(raised.value)


async def test_a_bad_edit_keeps_that_rooms_last_good_config(sim: ChatSim, tmp_path: Path) -> None:
    path = tmp_path / "rooms.toml"
    edited = ROOMS.replace('name = "茶友1群"', 'name = "改名了"\nwelcome_cooldown_s = "soon"')
    edited = edited.replace('name = "茶友2群"', 'name = "新名字"')
    path.write_text(edited, encoding="utf-8")
    said = await sim.advance(60)
    assert said.keys == ["groups/config_alert"] and said.sent[0].to == "admin"
    assert "群 roomA，welcome_cooldown_s：「soon」不对，应为数字" in said.texts[0]
    rooms = groups_state(sim).rooms
    assert rooms["roomA"].name == "茶友1群" and rooms["roomA"].member_limit == 3  # last good
    assert rooms["roomB"].name == "新名字"  # the others moved on
    assert (await sim.say("spammer", LINK, room="roomA")).keys == ["groups/warn"]
    reload = await sim.say("admin", "重载群配置")
    assert reload.keys == ["groups/cmd_reload"] and "welcome_cooldown_s" in reload.texts[0]


async def test_a_room_can_be_added_while_running(sim: ChatSim, tmp_path: Path) -> None:
    path = tmp_path / "rooms.toml"
    path.write_text(ROOMS + '\n[rooms."roomC"]\nname = "新群"\n', encoding="utf-8")
    assert (await sim.say("admin", "重载群配置")).keys == ["groups/cmd_reload"]
    await sim.join("roomC", "alice")
    assert (await sim.advance(60)).keys == ["groups/welcome"]


async def test_status_lists_the_rooms(sim: ChatSim) -> None:
    await sim.join("roomA", "alice")
    said = await sim.say("admin", "群状态")
    assert said.keys == ["groups/cmd_status"]
    assert "茶友1群" in said.texts[0] and "roomB" in said.texts[0]
    assert "茶友1群（roomA）：已有 1 人，上限 3 人" in said.texts[0]  # not "1/3"


async def test_the_shipped_rooms_file_loads(tmp_path: Path) -> None:
    sim = await ChatSim.create(tmp_path / "data", plugins=["groups"])
    assert "r1" in groups_state(sim).rooms
    await sim.join("r1", "alice")
    assert (await sim.advance(60)).keys == ["groups/welcome"]
    await sim.close()


async def test_a_broken_defaults_table_keeps_every_room(sim: ChatSim, tmp_path: Path) -> None:
    path = tmp_path / "rooms.toml"
    path.write_text(ROOMS.replace("flood_seconds = 10", "flood_seconds = 0"), encoding="utf-8")
    said = await sim.advance(60)
    assert said.keys == ["groups/config_alert"]
    assert "[defaults]（所有群的默认设置），moderation.flood_seconds：「0」不对" in said.texts[0]
    assert set(groups_state(sim).rooms) == {"roomA", "roomB"}
    assert (await sim.advance(60)).keys == []  # told once per change, not every minute


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ('persona_layer = "vip"', "persona_layer"),  # a tag layer: does not list this room
        ('rules_key = "groups/nope"', "rules_key"),
        ('rules_cron = "every friday"', "rules_cron"),
        ('role = "boss"', "role"),
    ],
)
async def test_room_keys_that_point_nowhere_are_refused(
    tmp_path: Path, extra: str, needle: str
) -> None:
    with pytest.raises(StartupError) as raised:
        await make(tmp_path, f'{ROOMS}\n[rooms."roomC"]\n{extra}\n')
    assert f"群 roomC，{needle}" in str(raised.value)


async def test_a_room_can_have_its_own_rules_text(tmp_path: Path) -> None:
    sim = await make(
        tmp_path, ROOMS.replace('name = "茶友2群"', 'name = "茶友2群"\nrules_key = "groups/rules"')
    )
    assert (await sim.say("bob", "群规", room="roomB")).keys == ["groups/rules"]
    await sim.close()


async def test_a_kick_the_governor_refuses_goes_to_the_admins(tmp_path: Path) -> None:
    sim = await make(tmp_path, OUTBOX_CAP_KICK="0")
    for _ in range(3):
        said = await sim.say("spammer", LINK, room="roomA")
    assert "groups/admin_remove" in said.keys and "groups/removed" not in said.keys
    assert audit(sim)[-1]["action"] == "remove_failed"
    assert audit(sim)[-1]["detail"] == "cap:kick"
    await sim.close()


async def test_an_invite_the_governor_refuses_frees_the_seat(tmp_path: Path) -> None:
    sim = await make(tmp_path, OUTBOX_CAP_INVITE="0")
    said = await sim.say("newbie", "进群")
    assert "groups/invite_failed" in said.keys
    assert events(sim, "invite")[-1]["data"]["status"] == "failed"
    assert (await sim.say("newbie", "进群")).keys[0] == "groups/invite_sent"  # not "pending"
    await sim.close()


async def test_the_welcome_speaks_in_the_rooms_persona_layer(tmp_path: Path) -> None:
    persona = tmp_path / "persona"
    shutil.copytree(ROOT / "persona", persona)
    with (persona / "persona.toml").open("a", encoding="utf-8") as toml:
        toml.write('\n[layers.tea_room]\nrooms = ["roomA"]\n')
    override = persona / "_layers" / "tea_room" / "groups" / "welcome.j2"
    override.parent.mkdir(parents=True)
    override.write_text("茶室专属欢迎", encoding="utf-8")
    rooms = ROOMS.replace('name = "茶友1群"', 'name = "茶友1群"\npersona_layer = "tea_room"')
    sim = await make(tmp_path, rooms, BOT_PERSONA_DIR=str(persona))
    await sim.join("roomA", "alice")
    await sim.join("roomB", "bob")
    await sim.restart()  # the App has not seen the rooms since: the layer still applies
    said = await sim.advance(60)
    welcome = {s.to: s.text for s in said.sent}
    assert welcome["roomA"] == "茶室专属欢迎" and welcome["roomB"] != "茶室专属欢迎"
    await sim.close()


def test_the_console_sends_a_real_picture_and_only_the_qr_code_is_warned(
    tmp_path: Path, pictures: dict[str, Path]
) -> None:
    from test_app import run_bot

    script = "\n".join(
        [
            "/join r1 newbie",
            "/advance 2m",
            f"/image newbie@r1 {pictures['tea']}",
            f"/image newbie@r1 {pictures['qr']}",
            "/image newbie@r1",
            f"/image newbie@r1 {tmp_path / 'missing.png'}",
        ]
    )
    result = run_bot(
        "--console", "--script", "-", stdin=script, env={"BOT_DATA_DIR": str(tmp_path / "d")}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("[groups/warn]") == 1
    assert "二维码" in result.stdout
    assert "找不到图片文件" in result.stdout


async def test_the_moderation_audit_reads_back_in_chat(tmp_path: Path) -> None:
    sim = await make(tmp_path)
    await sim.say("spammer", LINK, room="roomA")
    await sim.say("spammer", LINK, room="roomA")
    await sim.say("bob", "加微信 123", room="roomB")
    assert (await sim.say("admin", "撤销违规 bob")).keys == ["groups/cmd_unstrike"]
    said = await sim.say("admin", "群管记录")
    assert said.keys == ["groups/cmd_audit"]
    lines = said.texts[0].splitlines()
    assert "最近 4 条" in lines[0]
    assert "撤销违规" in lines[1] and "admin 撤销了" in lines[1]  # newest first
    assert "茶友2群 · bob：发广告 → 提醒（第 1 次）" in lines[2]
    assert "spammer：发外部链接 → 最后警告（第 2 次）" in lines[3]
    assert "spammer：发外部链接 → 提醒（第 1 次）" in lines[4]
    one_room = (await sim.say("admin", "群管记录 roomA 1")).texts[0]
    assert "茶友1群的群管记录（最近 1 条" in one_room and "最后警告" in one_room
    assert "只显示了 1 条" in one_room
    assert "spammer" in (await sim.say("admin", "群管日志 spammer")).texts[0]
    assert "还没有群管记录" in (await sim.say("admin", "群管记录 nobody")).texts[0]
    await sim.close()
