"""The 裂变 (referral) tables, from the referral plugin's events (never its tables, so the
report reads any data dir the same way, plugin enabled or not):

- `referral.invited` (contact = the invitee; inviter, path): an invite was attributed.
- `referral.settled` (contact = the invitee; status valid | invalid | churned, reason) and
  `referral.voided` (an operator's decision): the invite's state from then on.

Definitions (shown in the report):
- Invites: attributions in the range, by the day they were made.
- Valid: of those, the ones whose last state before the end of the range is valid (stayed
  the required hours, not self / loop / not new, not voided, not churned since).
- Valid share = valid / invites. K-factor = new customers brought (valid invites) per
  inviting customer (inviters with at least one invite in the range).
- Top inviters: by valid invites, then invites; ids and nicknames only in the CSV.
Operators are left out as inviters and invitees; a channel filter applies to invitees."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from .facts import Facts, day_label
from .tables import Column, Table, rate

TOP_INVITERS = 50
INVITED = "referral.invited"
SETTLED = ("referral.settled", "referral.voided")


@dataclass
class _Invite:
    inviter: str
    ts: float
    path: str
    status: str = "pending"


def _invites(facts: Facts) -> dict[str, _Invite]:
    scope, source = facts.scope, facts.source
    found: dict[str, _Invite] = {}
    for e in source.scan((INVITED,), scope.start, scope.end, fields=("inviter", "path")):
        inviter, path = e.values
        if not facts.contact_ok(e.contact_id) or inviter in scope.operators:
            continue
        if e.room_id and not scope.room_ok(e.room_id):
            continue
        found.setdefault(e.contact_id, _Invite(inviter, e.ts.timestamp(), path))
    if not found:
        return found
    # The state at the end of the range: the last settle/void, in time order.
    for e in sorted(
        source.scan(SETTLED, scope.start, scope.end, fields=("status",)), key=lambda e: e.ts
    ):
        inv = found.get(e.contact_id)
        if inv is not None:
            inv.status = "void" if e.kind == "referral.voided" else e.values[0]
    return found


def tables(facts: Facts) -> list[Table]:
    invites = _invites(facts)
    per_day: dict[str, Counter[str]] = defaultdict(Counter)
    per_inviter: dict[str, Counter[str]] = defaultdict(Counter)
    for inv in invites.values():
        day = day_label(facts.day(inv.ts))
        per_day[day]["invites"] += 1
        per_day[day][inv.status] += 1
        per_day[day][inv.path] += 1
        per_inviter[inv.inviter]["invites"] += 1
        per_inviter[inv.inviter]["valid"] += inv.status == "valid"
    daily = [
        {
            "day": day,
            "invites": c["invites"],
            "friend_request": c["friend_request"],
            "room_join": c["room_join"],
            "valid": c["valid"],
            "valid_share": rate(c["valid"], c["invites"]),
            "pending": c["pending"] + c["held"],
            "not_counted": c["invalid"] + c["void"] + c["churned"],
        }
        for day, c in sorted(per_day.items())
    ]
    valid = sum(c["valid"] for c in per_day.values())
    total = len(invites)
    summary = [
        {
            "invites": total,
            "valid": valid,
            "valid_share": rate(valid, total),
            "inviters": len(per_inviter),
            "k_factor": rate(valid, len(per_inviter)),
        }
    ]
    names = facts.source.names(per_inviter) if per_inviter else {}
    ranked = sorted(per_inviter.items(), key=lambda kv: (-kv[1]["valid"], -kv[1]["invites"], kv[0]))
    top = [
        {
            "rank": n,
            "inviter_id": cid,
            "nickname": names.get(cid, ""),
            "invites": c["invites"],
            "valid": c["valid"],
        }
        for n, (cid, c) in enumerate(ranked[:TOP_INVITERS], 1)
    ]
    return [
        Table(
            "referrals",
            "每日邀请（裂变）",
            (
                Column("day", "日期", "text"),
                Column("invites", "邀请"),
                Column("friend_request", "邀请码加好友"),
                Column("room_join", "拉进群"),
                Column("valid", "有效"),
                Column("valid_share", "有效占比", "pct"),
                Column("pending", "待确认"),
                Column("not_counted", "不计数"),
            ),
            daily,
            note="有效：被邀请人是新客户，保持好友 / 留在群里满规定时长，不是自己邀请自己、"
            "互相邀请，也没有被作废或之后删除好友；按邀请发生的日期统计，状态截至所选日期的最后一天。",
        ),
        Table(
            "referrals_summary",
            "裂变汇总",
            (
                Column("invites", "邀请"),
                Column("valid", "有效邀请（带来的新客户）"),
                Column("valid_share", "有效占比", "pct"),
                Column("inviters", "发起邀请的客户"),
                Column("k_factor", "K 因子（每位邀请人带来的新客户）", "ratio"),
            ),
            summary,
            note=_summary_note(total, valid, len(per_inviter)),
        ),
        Table(
            "referral_top",
            "邀请人排行",
            (
                Column("rank", "名次"),
                Column("inviter_id", "邀请人 id", "text"),
                Column("nickname", "昵称", "text"),
                Column("invites", "邀请"),
                Column("valid", "有效"),
            ),
            top,
        ),
    ]


def _summary_note(invites: int, valid: int, inviters: int) -> str:
    share = rate(valid, invites)
    k = rate(valid, inviters)
    numbers = (
        f"本期邀请 {invites} 次，有效 {valid} 次"
        + (f"（{share * 100:.1f}%）" if share is not None else "")
        + f"，{inviters} 位客户发起邀请"
        + (f"，K 因子 {k:.2f}（每位邀请人带来的新客户）" if k is not None else "")
    )
    return numbers + "。邀请人排行（含客户 id 和昵称）只写在 csv/referral_top.csv，不出现在网页里。"
