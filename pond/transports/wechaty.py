"""WeChat through a wechaty puppet service (gRPC): the only module that imports wechaty.

It speaks the puppet-service protocol with python-wechaty's own gRPC client package
(`wechaty-grpc`, imported lazily) and owns the connection itself, because the higher layers
of python-wechaty 0.10.7 lose the bot at the first hiccup (see README, "接入真实微信号"):
`Wechaty.start()` returns silently when the event stream ends, handles `login` only once per
process, opens a web server on 0.0.0.0:5000 and a SQLite job store in ./.wechaty, logs the
token, blocks the event loop in a telnet probe and retries only after 60 s.

Here:
- `start()` returns once the event stream is open (logging in may still need a QR scan, and
  may happen later); it fails with a clear StartupError when the token is rejected, or when
  the service stays unreachable for `startup_timeout_s`. After that the connection is
  watched forever: a lost stream (service restart, network, another client with the same
  token) is retried with capped exponential back-off, reported through `status_listener`
  ("disconnected", then "reconnected" with the downtime), and `perform()` raises offline
  TransportErrors meanwhile so the outbox holds actions (never lost, never sent twice).
  `stop()` closes the stream and leaves the service's WeChat session running.
- Every call to the service has a timeout; errors never carry the token or Node stack traces.
- The account's own messages come back as events: the ones this transport sent are dropped,
  the others were typed on the phone and become HumanTakeover.
- Endpoints: "host:port" (plain gRPC, as python-wechaty) or "https://host:port" (TLS with the
  wechaty community CA and the server name taken from the token, as the TypeScript SDK).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from datetime import tzinfo
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TextIO

import pond.transports.wechaty_support as ws
from pond.actions import Action
from pond.app import StartupError
from pond.config import ConfigError, WechatySettings
from pond.events import Event
from pond.transports.base import (
    ADD_FRIEND,
    DM,
    FRIEND_REQUESTS,
    INVITE,
    KICK,
    MEDIA,
    MENTIONS,
    ROOMS,
    EventSink,
    StatusListener,
    TransportError,
)
from pond.transports.wechaty_inbound import Inbound
from pond.transports.wechaty_outbound import Outbound

log = logging.getLogger("pond.transports.wechaty")

EVENT_ROUTE = "/wechaty.Puppet/Event"


def _ignore_status(status: str, data: dict[str, Any]) -> None:
    """Default status listener: nobody is listening."""


def _load_grpc() -> Any:
    """The gRPC client pieces, imported only when the transport starts."""
    try:
        import grpclib.client
        import grpclib.const
        import grpclib.exceptions
        from wechaty_grpc.wechaty import PuppetStub
        from wechaty_grpc.wechaty import puppet as pb
    except ImportError as error:
        raise StartupError(
            f"the WeChat transport needs its packages ({error.name} is missing): "
            "run `python3 bot.py` once to install requirements.txt, "
            "or `.venv/bin/pip install -r requirements.txt`"
        ) from error
    return SimpleNamespace(
        Channel=grpclib.client.Channel,
        Cardinality=grpclib.const.Cardinality,
        Status=grpclib.const.Status,
        GRPCError=grpclib.exceptions.GRPCError,
        StreamTerminatedError=grpclib.exceptions.StreamTerminatedError,
        PuppetStub=PuppetStub,
        pb=pb,
    )


class WechatyTransport:
    name = "wechaty"
    # No MOMENTS (the puppet protocol has no Moments API) and no TAGS (setters are ignored
    # by puppet-service 1.x servers): pond keeps tags and remarks in its own customer book.
    capabilities = frozenset(
        {DM, ROOMS, MENTIONS, MEDIA, FRIEND_REQUESTS, ADD_FRIEND, INVITE, KICK}
    )

    def __init__(
        self,
        settings: WechatySettings,
        *,
        data_dir: Path,
        timezone: tzinfo,
        call_timeout_s: float = 20.0,
        startup_timeout_s: float = 30.0,
        handshake_timeout_s: float = 5.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        ping_interval_s: float = 30.0,
        login_grace_s: float = 30.0,
        sent_memory_s: float = 120.0,
        qr_out: TextIO | None = None,
    ) -> None:
        self._token = settings.puppet_service_token.strip()
        if not self._token:
            raise ConfigError("WECHATY_PUPPET_SERVICE_TOKEN", "puppet 服务（或网关）的 token", "")
        raw_endpoint = settings.puppet_service_endpoint.strip()
        if not raw_endpoint:
            raise ConfigError(
                "WECHATY_PUPPET_SERVICE_ENDPOINT",
                "puppet 服务（或网关）的地址 host:port（pond 不会联网到 api.chatie.io "
                "按 token 查找地址）",
                "",
            )
        try:
            self.endpoint = ws.parse_endpoint(raw_endpoint)
        except ValueError as error:
            raise ConfigError(
                "WECHATY_PUPPET_SERVICE_ENDPOINT",
                f"host:port 形式的地址，如 127.0.0.1:8788（{error}）",
                raw_endpoint,
            ) from None
        self.data_dir = Path(data_dir)
        self.tz = timezone
        self.call_timeout_s = call_timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.handshake_timeout_s = handshake_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.ping_interval_s = ping_interval_s
        self.login_grace_s = login_grace_s
        self.qr_out = qr_out
        self.qr_png = self.data_dir / "wechaty-login-qr.png"

        self.self_id = ""
        self.self_name = ""
        self.connected = False  # logged in with a live stream: actions can be performed
        self.status_listener: StatusListener = _ignore_status

        self._g: Any = None
        self._sink: EventSink | None = None
        self._stub: Any = None
        self._channel: Any = None
        self._runner: asyncio.Task[None] | None = None
        self._delivery: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[asyncio.Task[Event | None]] = asyncio.Queue(maxsize=256)
        self._ready: asyncio.Future[None] | None = None
        self._stopping = False
        self._stream_up = False
        self._opened = False  # this session's stream was accepted by the service
        self._session_logged_in = False
        self._down_since: float | None = None
        self._logged_out = False
        self._last_event = 0.0
        self._last_qr = ""
        self._news = asyncio.Event()  # this session heard about the login state
        self._restarted_for_news = False
        sent = ws.SentLog(sent_memory_s)
        self._inbound = Inbound(
            self,
            tz=timezone,
            sent=sent,
            call_timeout_s=call_timeout_s,
            explain=self._why,
            media_dir=self.data_dir / "media-in",
        )
        self._outbound = Outbound(
            self._inbound,
            sent=sent,
            call_timeout_s=call_timeout_s,
            clean=self._clean,
            explain=self._why,
        )
        self._redaction: tuple[ws.Redactor, list[logging.Handler]] | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, sink: EventSink) -> None:
        """Connect; returns once the event stream is open (see the module docstring)."""
        if self._runner is not None:
            raise RuntimeError("WechatyTransport.start() called twice")
        self._g = _load_grpc()
        self._redaction = ws.install_redactor([self._token])
        self._sink = sink
        self._stopping = False
        self._ready = asyncio.get_running_loop().create_future()
        ready = self._ready
        self._delivery = asyncio.create_task(self._deliver_forever(), name="wechaty-deliver")
        runner = self._runner = asyncio.create_task(self._run(), name="wechaty-connection")
        try:
            await asyncio.wait({ready, runner}, return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():  # the connection task died: a bug, not a hang
                error = runner.exception() if not runner.cancelled() else None
                raise StartupError(f"the WeChat connection task failed: {error!r}")
            ready.result()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        self._stopping = True
        await ws.cancel_tasks([t for t in (self._runner, self._delivery) if t is not None])
        pending = []
        while not self._inbox.empty():
            pending.append(self._inbox.get_nowait())
        await ws.cancel_tasks(pending, timeout=1.0)
        self._close_channel()
        self._runner = self._delivery = None
        self.connected = self._stream_up = False
        if self._ready is not None and not self._ready.done():
            self._ready.cancel()
        if self._redaction is not None:
            ws.remove_redactor(*self._redaction)
            self._redaction = None

    # -- the connection -----------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._ready is not None
        delay = self.backoff_initial_s
        began = time.monotonic()
        while not self._stopping:
            session_began = time.monotonic()
            self._session_logged_in = False
            try:
                await self._session()
                reason, permanent = "the puppet service ended the event stream", False
            except asyncio.CancelledError:
                raise
            except Exception as error:
                reason, permanent = self._explain(error)
            finally:
                self._close_channel()
            if self._stopping:
                return
            self._lost(reason)
            if not self._ready.done() and (
                permanent or time.monotonic() - began >= self.startup_timeout_s
            ):
                self._ready.set_exception(
                    StartupError(f"puppet service at {self.endpoint}: {reason}")
                )
                return
            if self._session_logged_in or time.monotonic() - session_began > 60:
                delay = self.backoff_initial_s
            wait = delay * random.uniform(0.8, 1.2)
            log.info("reconnecting to the puppet service in %.1f s", wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, self.backoff_max_s)

    async def _session(self) -> None:
        g = self._g
        self._opened = False
        channel = self._make_channel()
        self._channel = channel
        metadata = {"authorization": f"Wechaty {self._token}"}
        stub = g.PuppetStub(channel, metadata=metadata)
        self._stub = stub
        self._news.clear()
        opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pump = asyncio.create_task(self._pump(channel, metadata, opened, stub))
        pinger: asyncio.Task[str] | None = None
        watch: asyncio.Task[str] | None = None
        try:
            await asyncio.wait(
                {pump, opened},
                timeout=self.handshake_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if pump.done():
                pump.result()  # the service refused the stream: raise its reason
                raise ws.Lost("the puppet service closed the event stream at once")
            # Accepted, or a quiet service that sends nothing until there is news (the
            # TypeScript client also goes on after a few seconds). Start the puppet (a no-op
            # when it runs already); it logs in, or sends a QR code to scan.
            await ws.call(stub.start(), max(self.call_timeout_s, 20.0))
            self._stream_up = True
            log.info("connected to the puppet service at %s", self.endpoint)
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
            pinger = asyncio.create_task(self._ping(stub))
            waiters: set[asyncio.Task[Any]] = {pump, pinger}
            if not self._news.is_set() and not self._restarted_for_news:
                watch = asyncio.create_task(self._login_watch(stub))
                waiters.add(watch)
            while True:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                if pinger.done():
                    raise ws.Lost(pinger.result())
                if watch is not None and watch.done():
                    waiters.discard(watch)
                    if watch.result():
                        raise ws.Lost(watch.result())
                    watch = None
                    continue
                pump.result()
                return
        finally:
            await ws.cancel_tasks([t for t in (pump, pinger, watch) if t is not None])

    async def _pump(
        self, channel: Any, metadata: dict[str, str], opened: asyncio.Future[None], stub: Any
    ) -> None:
        """Read the event stream until it ends (returns) or breaks (raises)."""
        g = self._g
        async with channel.request(
            EVENT_ROUTE,
            g.Cardinality.UNARY_STREAM,
            g.pb.EventRequest,
            g.pb.EventResponse,
            metadata=metadata,
        ) as stream:
            await stream.send_message(g.pb.EventRequest(), end=True)
            await stream.recv_initial_metadata()
            self._opened = True
            if not opened.done():
                opened.set_result(None)
            async for response in stream:
                self._last_event = time.monotonic()
                await self._on_event(stub, int(response.type), response.payload)

    async def _ping(self, stub: Any) -> str:
        """Prove a quiet connection alive with a ding; returns why it is dead."""
        while True:
            await asyncio.sleep(self.ping_interval_s)
            if time.monotonic() - self._last_event < self.ping_interval_s:
                continue
            try:
                await ws.call(stub.ding(data="pond"), self.call_timeout_s)
            except Exception as error:
                return f"the puppet service stopped answering ({self._explain(error)[0]})"

    async def _login_watch(self, stub: Any) -> str:
        """Services older than mid-2021 do not tell a new client that the account is logged
        in already, and the bot would wait forever. When a session hears nothing about the
        login state for `login_grace_s`, restart the service's session once (Stop, then
        reconnect and Start, as python-wechaty does on every start): it logs in again."""
        try:
            async with asyncio.timeout(self.login_grace_s):
                await self._news.wait()
            return ""
        except TimeoutError:
            pass
        self._restarted_for_news = True
        log.warning(
            "the puppet service said nothing about the login in %.0f s (an older service?): "
            "restarting its session once",
            self.login_grace_s,
        )
        with contextlib.suppress(Exception):
            await ws.call(stub.stop(), self.call_timeout_s)
        return "restarting the service's session to learn the login state"

    def _make_channel(self) -> Any:
        g = self._g
        endpoint = self.endpoint
        if not endpoint.tls:
            channel = g.Channel(endpoint.host, endpoint.port)
        else:
            server_name = ws.token_server_name(self._token) or endpoint.host
            channel = ws.tls_channel(g, endpoint.host, endpoint.port, server_name)
        # Puppet services read the token from :authority (python-wechaty, and the TypeScript
        # client's grpc.default_authority) or from the authorization header (newer servers).
        channel._authority = self._token
        return channel

    def _close_channel(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            with contextlib.suppress(Exception):
                channel.close()

    def _lost(self, reason: str) -> None:
        """A session ended: report it once per outage (the outage ends at the next login)."""
        was_up = self._stream_up or self.connected
        self._stream_up = self.connected = False
        if was_up and self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("lost the puppet service: %s", reason)
            self._status("disconnected", {"reason": reason})
        elif was_up:
            log.warning("lost the puppet service again: %s", reason)
        else:
            log.warning("cannot connect to the puppet service at %s: %s", self.endpoint, reason)

    def _status(self, status: str, data: dict[str, Any]) -> None:
        try:
            self.status_listener(status, data)
        except Exception as error:
            log.error("status listener failed on %s: %s: %s", status, type(error).__name__, error)

    def _clean(self, text: str) -> str:
        return ws.redact(ws.first_line(text), [self._token])

    def _explain(self, error: BaseException) -> tuple[str, bool]:
        """(why, permanent), in the operator's terms."""
        return ws.describe_error(error, self._g, self.endpoint, self._token, opened=self._opened)

    def _why(self, error: BaseException) -> str:
        return self._explain(error)[0]

    # -- inbound --------------------------------------------------------------------------------
    async def _on_event(self, stub: Any, kind: int, payload: str) -> None:
        try:
            data = json.loads(payload or "{}")
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if kind == ws.EVENT_MESSAGE:
            await self._enqueue(self._inbound.message(stub, str(data.get("messageId") or "")))
        elif kind == ws.EVENT_FRIENDSHIP:
            await self._enqueue(self._inbound.friendship(stub, str(data.get("friendshipId") or "")))
        elif kind == ws.EVENT_ROOM_JOIN:
            await self._enqueue(self._inbound.room_change(stub, data, joined=True))
        elif kind == ws.EVENT_ROOM_LEAVE:
            await self._enqueue(self._inbound.room_change(stub, data, joined=False))
        elif kind == ws.EVENT_LOGIN:
            await self._on_login(stub, str(data.get("contactId") or ""))
        elif kind == ws.EVENT_LOGOUT:
            self._on_logout(data)
        elif kind == ws.EVENT_SCAN:
            await self._on_scan(data)
        elif kind == ws.EVENT_ROOM_TOPIC:
            self._inbound.forget(str(data.get("roomId") or ""))
        elif kind == ws.EVENT_DIRTY:
            self._inbound.forget(str(data.get("payloadId") or ""))
        elif kind == ws.EVENT_ROOM_INVITE:
            log.info(
                "room invitation %s received (pond does not accept invitations by itself)",
                data.get("roomInvitationId", ""),
            )
        elif kind == ws.EVENT_ERROR:
            log.warning("the puppet service reported: %s", self._clean(str(data.get("data", data))))
        else:  # heartbeat, dong, ready, reset
            log.debug("puppet event %d", kind)

    async def _enqueue(self, conversion: Any) -> None:
        """Convert concurrently, deliver in arrival order (the queue keeps the order)."""
        await self._inbox.put(asyncio.create_task(conversion))

    async def _deliver_forever(self) -> None:
        while True:
            task = await self._inbox.get()
            try:
                event = await task
            except asyncio.CancelledError:
                if self._stopping:
                    raise
                continue
            except Exception as error:
                log.warning("an incoming event was dropped: %s", self._explain(error)[0])
                continue
            if event is None or self._sink is None:
                continue
            try:
                await self._sink(event)
            except Exception as error:
                log.error("dispatch failed on %s: %s: %s", event.kind, type(error).__name__, error)

    async def _on_login(self, stub: Any, contact_id: str) -> None:
        if not contact_id:
            return
        self._news.set()
        self._restarted_for_news = False
        if self.connected and contact_id == self.self_id:
            return
        previous = self.self_id
        if previous and previous != contact_id:
            self._inbound.reset()
        name = ""
        with contextlib.suppress(Exception):
            name = (await self._inbound.contact(stub, contact_id)).name
        self.self_id, self.self_name = contact_id, name
        self.connected = True
        self._session_logged_in = True
        self._last_qr = ""
        with contextlib.suppress(OSError):
            self.qr_png.unlink(missing_ok=True)
        if self._down_since is not None and previous == contact_id and not self._logged_out:
            downtime = time.monotonic() - self._down_since
            log.warning("back online as %s after %.0f s", name or contact_id, downtime)
            self._status("reconnected", {"downtime_s": round(downtime, 1), "name": name})
        else:
            log.info("logged in to WeChat as %s (%s)", name, contact_id)
            self._status("login", {"name": name})
        self._down_since = None
        self._logged_out = False

    def _on_logout(self, data: dict[str, Any]) -> None:
        self._news.set()
        self.connected = False
        self._logged_out = True
        reason = self._clean(str(data.get("data") or ""))
        log.warning("WeChat account %s logged out (%s)", self.self_name or self.self_id, reason)
        self._status("logout", {"name": self.self_name, "reason": reason})

    async def _on_scan(self, data: dict[str, Any]) -> None:
        self._news.set()
        status = ws.SCAN_STATUS.get(int(data.get("status") or 0), "unknown")
        code = str(data.get("qrcode") or "")
        if status in {"waiting", "timeout"} and code:
            if code == self._last_qr:
                return
            self._last_qr = code
            png = await asyncio.to_thread(ws.show_qr, code, self.qr_out, self.qr_png)
            where = f"; also saved as {png}" if png else ""
            log.warning("scan the QR code with the WeChat app to log in%s", where)
            self._status("scan", {"status": status, "qr_png": str(png or "")})
        else:
            log.info("login QR code: %s", status)
            self._status("scan", {"status": status, "qr_png": ""})

    # -- outbound ---------------------------------------------------------------------------------
    async def perform(self, action: Action) -> None:
        """Carry out one action (see wechaty_outbound for what the errors mean)."""
        stub = self._stub
        if not self.connected or stub is None:
            raise TransportError("not connected to the puppet service", offline=True)
        await self._outbound.perform(stub, self._g, action)
