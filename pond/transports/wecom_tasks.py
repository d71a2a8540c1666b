"""Staff-confirm tasks (群发): WeCom sends marketing to customers only as a task a staff
member confirms in the client (`add_msg_template`), and reports per-customer results later
(`get_groupmsg_send_result`: 0 not sent yet, 1 sent, 2 not a friend, 3 over the customer's
quota of broadcasts).

The outbox hands a broadcast over one recipient at a time; here recipients of one job, one
text and one owning staff member are gathered into one task (staff confirm once, not per
customer) once no new recipient came for `gather_s`. Results are polled and told to the App
as "task_result" statuses (job, contact_id, result), which land in the send journal. A task
WeCom no longer reports after `expire_s` leaves its unsent customers as "not_confirmed"."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

from pond.transports.base import StatusListener, TransportError
from pond.transports.wecom_api import WecomApi
from pond.transports.wecom_store import WecomStore

log = logging.getLogger("pond.transports.wecom")

BATCH = "batch:"  # job|text hash|staff -> {job, text, user, recipients, last}
TASK = "task:"  # msgid -> {job, user, recipients, created, reported}
MOMENT = "moment:"  # jobid -> {created, key}: 朋友圈 tasks until WeCom has made them
RESULTS = {1: "sent", 2: "not_friend", 3: "over_quota"}
MAX_RECIPIENTS = 10000  # add_msg_template takes at most this many external_userids


class StaffTasks:
    def __init__(
        self,
        api: WecomApi,
        store: WecomStore,
        *,
        wall: Callable[[], float],
        status: Callable[[], StatusListener],
        gather_s: float = 5.0,
        expire_s: float = 3 * 86400.0,
    ) -> None:
        self.api = api
        self.store = store
        self.wall = wall
        self.status = status
        self.gather_s = gather_s
        self.expire_s = expire_s

    def add(self, job: str, text: str, user: str, contact_id: str) -> None:
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
        key = f"{BATCH}{job}|{digest}|{user}"
        batch = self.store.get(key) or {"job": job, "text": text, "user": user, "recipients": []}
        if contact_id not in batch["recipients"]:
            batch["recipients"].append(contact_id)
        batch["last"] = self.wall()
        self.store.set(key, batch)

    async def moment(
        self,
        text: str,
        link: dict[str, str] | None,
        staff: list[str],
        *,
        job: str = "",
        contact_id: str = "",
    ) -> str:
        """朋友圈: add_moment_task makes a task each staff member publishes from the client.
        With `job`, the journal row (job, contact_id) gets the task's result: "sent" once a
        staff member has published it, "not_confirmed" when nobody did in time."""
        body: dict[str, Any] = {"text": {"content": text}}
        if link:
            body["attachments"] = [{"msgtype": "link", "link": link}]
        if staff:
            body["visible_range"] = {"sender_list": {"user_list": staff}}
        data = await self.api.call("/cgi-bin/externalcontact/add_moment_task", body)
        jobid = str(data.get("jobid", ""))
        self.store.set(
            MOMENT + jobid, {"created": self.wall(), "job": job, "contact_id": contact_id}
        )
        return jobid

    async def _poll_moment(self, jobid: str, task: dict[str, Any]) -> None:
        if task.get("moment_id"):
            await self._poll_published(jobid, task)
            return
        data = await self.api.call(
            "/cgi-bin/externalcontact/get_moment_task_result",
            method="GET",
            params={"jobid": jobid},
            retryable=True,
        )
        if int(data.get("status", 0) or 0) != 3:  # 1 started, 2 running, 3 done
            if self.wall() - float(task["created"]) > self.expire_s:
                self.store.delete(MOMENT + jobid)
            return
        self.store.delete(MOMENT + jobid)
        result = data.get("result") or {}
        moment_id = str(result.get("moment_id", ""))
        errcode = int(result.get("errcode", 0) or 0)
        self.status()("moment_result", {"jobid": jobid, "moment_id": moment_id, "errcode": errcode})
        if not task.get("job"):
            return
        if errcode or not moment_id:
            self._moment_done(task, "task_failed")
            return
        # Made: now it waits for a staff member to publish it from the client.
        self.store.set(MOMENT + jobid, {**task, "moment_id": moment_id})

    async def _poll_published(self, jobid: str, task: dict[str, Any]) -> None:
        """get_moment_task: per staff member, publish_status 0 not yet, 1 published."""
        cursor, published = "", False
        while True:
            body: dict[str, Any] = {"moment_id": task["moment_id"], "limit": 1000}
            if cursor:
                body["cursor"] = cursor
            data = await self.api.call(
                "/cgi-bin/externalcontact/get_moment_task", body, retryable=True
            )
            rows = data.get("task_list", [])
            published = published or any(int(r.get("publish_status", 0) or 0) for r in rows)
            cursor = str(data.get("next_cursor", "") or "")
            if published or not cursor:
                break
        if published:
            self.store.delete(MOMENT + jobid)
            self._moment_done(task, "sent")
        elif self.wall() - float(task["created"]) > self.expire_s:
            self.store.delete(MOMENT + jobid)
            self._moment_done(task, "not_confirmed")

    def _moment_done(self, task: dict[str, Any], result: str) -> None:
        self.status()(
            "task_result",
            {"job": task["job"], "contact_id": task.get("contact_id", ""), "result": result},
        )

    def waiting(self) -> list[dict[str, Any]]:
        """Tasks created and not finished: what the operator sees as waiting for staff."""
        return [{"msgid": msgid, **task} for msgid, task in self.store.items(TASK)]

    async def tick(self) -> None:
        """Create the tasks whose gathering is over, then poll the open ones."""
        now = self.wall()
        for key, batch in self.store.items(BATCH):
            full = len(batch["recipients"]) >= MAX_RECIPIENTS
            if full or now - float(batch.get("last", 0)) >= self.gather_s:
                await self._create(BATCH + key, batch)
        for msgid, task in self.store.items(TASK):
            await self._poll(msgid, task)
        for jobid, moment in self.store.items(MOMENT):
            await self._poll_moment(jobid, moment)

    async def _create(self, key: str, batch: dict[str, Any]) -> None:
        # Deleted first: a lost answer must not create a second task for the same customers
        # (at most once); the rows stay "skipped: staff_confirm" and the operator sees it.
        self.store.delete(key)
        try:
            data = await self.api.call(
                "/cgi-bin/externalcontact/add_msg_template",
                {
                    "chat_type": "single",
                    "external_userid": batch["recipients"],
                    "sender": batch["user"],
                    "text": {"content": batch["text"]},
                },
            )
        except TransportError as error:
            log.warning("wecom: broadcast task not created (%s)", type(error).__name__)
            for cid in batch["recipients"]:
                self.status()(
                    "task_result",
                    {"job": batch["job"], "contact_id": cid, "result": "task_failed"},
                )
            return
        msgid = str(data.get("msgid", ""))
        failed = [str(x) for x in data.get("fail_list", [])]
        for cid in failed:
            self.status()(
                "task_result", {"job": batch["job"], "contact_id": cid, "result": "not_friend"}
            )
        recipients = [cid for cid in batch["recipients"] if cid not in failed]
        self.store.set(
            TASK + msgid,
            {
                "job": batch["job"],
                "user": batch["user"],
                "recipients": recipients,
                "created": self.wall(),
                "reported": failed,
            },
        )
        self.status()(
            "staff_needed",
            {
                "reason": "staff_confirm",
                "hint": f"群发任务已创建：请员工 {batch['user']} 在企业微信客户端"
                f"「客户联系 → 群发助手」确认发送（{len(recipients)} 位客户）",
                "job": batch["job"],
                "task": msgid,
            },
        )

    async def _poll(self, msgid: str, task: dict[str, Any]) -> None:
        reported: set[str] = set(task.get("reported", []))
        cursor = ""
        while True:
            body: dict[str, Any] = {"msgid": msgid, "userid": task["user"], "limit": 1000}
            if cursor:
                body["cursor"] = cursor
            data = await self.api.call(
                "/cgi-bin/externalcontact/get_groupmsg_send_result", body, retryable=True
            )
            for row in data.get("send_list", []):
                cid = str(row.get("external_userid", ""))
                result = RESULTS.get(int(row.get("status", 0) or 0))
                if result and cid in task["recipients"] and cid not in reported:
                    reported.add(cid)
                    self.status()(
                        "task_result", {"job": task["job"], "contact_id": cid, "result": result}
                    )
            cursor = str(data.get("next_cursor", "") or "")
            if not cursor:
                break
        done = reported >= set(task["recipients"])
        if not done and self.wall() - float(task["created"]) > self.expire_s:
            for cid in set(task["recipients"]) - reported:
                self.status()(
                    "task_result",
                    {"job": task["job"], "contact_id": cid, "result": "not_confirmed"},
                )
            done = True
        if done:
            self.store.delete(TASK + msgid)
        else:
            self.store.set(TASK + msgid, {**task, "reported": sorted(reported)})
