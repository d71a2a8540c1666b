"""Helpers for the WeChat transport that need no wechaty import: puppet enums as the
service sends them, endpoint parsing, token redaction, the memory of what we sent (to tell
our own echoes from a human typing on the phone), small caches, and the login QR code."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
import struct
import sys
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Generic, TextIO, TypeVar

from pond.events import MessageType

# Enum values as a puppet service puts them on the wire: the TypeScript wechaty-puppet
# numbering. The Python gRPC stubs ship an enum numbered differently (their TEXT is 6, the
# service's Text is 7), so raw ints are read and mapped here.
MESSAGE_TYPES: dict[int, MessageType] = {
    1: MessageType.FILE,  # Attachment
    3: MessageType.CONTACT_CARD,
    6: MessageType.IMAGE,
    7: MessageType.TEXT,
    9: MessageType.MINI_PROGRAM,
    14: MessageType.LINK,  # Url
}
MESSAGE_TEXT = 7
FRIENDSHIP_CONFIRM = 1
FRIENDSHIP_RECEIVE = 2
CONTACT_OFFICIAL = 2  # official accounts (公众号): never customers
SCAN_STATUS = {0: "unknown", 1: "cancel", 2: "waiting", 3: "scanned", 4: "confirmed", 5: "timeout"}

# Event types on the stream (the gRPC EventType enum, the same on both sides).
EVENT_HEARTBEAT, EVENT_MESSAGE, EVENT_DONG = 1, 2, 3
EVENT_ERROR, EVENT_FRIENDSHIP, EVENT_ROOM_INVITE, EVENT_ROOM_JOIN = 16, 17, 18, 19
EVENT_ROOM_LEAVE, EVENT_ROOM_TOPIC, EVENT_SCAN, EVENT_READY = 20, 21, 22, 23
EVENT_RESET, EVENT_LOGIN, EVENT_LOGOUT, EVENT_DIRTY = 24, 25, 26, 27

AT_SEPARATOR = "\u2005"  # WeChat puts a four-per-em space after "@name"
_SPACES = re.compile(r"[\s\u2005]+")

T = TypeVar("T")
log = logging.getLogger("pond.transports.wechaty")


async def call(awaitable: Awaitable[T], timeout: float) -> T:
    """Every call to the service has a deadline. asyncio.timeout, not wait_for: on Python
    3.11 wait_for swallows a cancellation that arrives as the call completes, and a bot
    being stopped would then never stop."""
    async with asyncio.timeout(timeout):
        return await awaitable


class Lost(Exception):
    """A session ended for a reason the transport states itself."""


def to_datetime(stamp: float, tz: tzinfo) -> datetime:
    """A payload timestamp as an aware datetime. Services send seconds or milliseconds
    (10^10 .. 10^13 in the wild); 0 means "now"."""
    if not stamp:
        return datetime.now(tz)
    seconds = stamp / 1000.0 if stamp >= 1e11 else float(stamp)
    return datetime.fromtimestamp(seconds, tz)


_HOST_PORT = re.compile(r"\[(?P<v6>[0-9a-fA-F:.]+)\]:(?P<port>\d+)|(?P<host>[^:\s/]+):(?P<p>\d+)")


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    tls: bool = False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https://' if self.tls else ''}{host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """'host:port', 'http://host:port' or 'https://host:port' (TLS); IPv6 as '[::1]:port'."""
    raw = text.strip()
    tls = False
    for scheme, is_tls in (("https://", True), ("grpcs://", True), ("http://", False)):
        if raw.lower().startswith(scheme):
            raw, tls = raw[len(scheme) :], is_tls
            break
    raw = raw.rstrip("/")
    match = _HOST_PORT.fullmatch(raw)
    if not match:
        raise ValueError("expected host:port, e.g. 127.0.0.1:8788 (https://host:port for TLS)")
    host = match["v6"] or match["host"]
    port = int(match["port"] or match["p"])
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    return Endpoint(host, port, tls)


# -- secrets in logs --------------------------------------------------------------------------
def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class Redactor(logging.Filter):
    """A handler filter that replaces secrets in every record that passes (message,
    arguments and traceback text), whichever library logged it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__("pond-redactor")
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken log call is not ours to fix; let the handler report it
            return True
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


def install_redactor(secrets: Iterable[str]) -> tuple[Redactor, list[logging.Handler]]:
    """Attach a Redactor to every handler that exists now (the root's, pytest's capture,
    any library's own). Returns what to pass to `remove_redactor` at shutdown."""
    redactor = Redactor(secrets)
    handlers: list[logging.Handler] = []
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for handler in lg.handlers:
            if handler not in handlers:
                handler.addFilter(redactor)
                handlers.append(handler)
    return redactor, handlers


def remove_redactor(redactor: Redactor, handlers: list[logging.Handler]) -> None:
    for handler in handlers:
        handler.removeFilter(redactor)


def describe_error(
    error: BaseException, g: Any, endpoint: Endpoint, token: str, *, opened: bool
) -> tuple[str, bool]:
    """(why, permanent) for a failed connection or call, in the operator's terms, without
    the token or a stack trace. `g` holds the gRPC classes; `opened`: the event stream had
    been accepted in this session."""
    try:
        return _describe(error, g, endpoint, token, opened)
    except Exception:  # a watcher must never die of its own error message
        return type(error).__name__, False


def _describe(
    error: BaseException, g: Any, endpoint: Endpoint, token: str, opened: bool
) -> tuple[str, bool]:
    def clean(text: str) -> str:
        return redact(first_line(text), [token])

    if isinstance(error, Lost):
        return str(error), False
    if g is not None and isinstance(error, g.GRPCError):
        status, text = error.status, clean(error.message or "")
        if status is g.Status.UNAUTHENTICATED:
            return (
                "the service rejected the token (UNAUTHENTICATED): "
                "check WECHATY_PUPPET_SERVICE_TOKEN",
                True,
            )
        if status is g.Status.ALREADY_EXISTS:
            return (
                "another client is connected with this token (a second bot? a stale "
                "connection is dropped by the service after a while)",
                False,
            )
        if status is g.Status.UNIMPLEMENTED:
            return f"this endpoint is not a wechaty puppet service ({text})", True
        return f"{status.name}: {text}", False
    if g is not None and isinstance(error, g.StreamTerminatedError):
        if not opened and not endpoint.tls:
            return (
                "the connection closed during the handshake: if the service requires TLS, "
                f"set the endpoint to https://{endpoint.host}:{endpoint.port}",
                False,
            )
        return "the connection was lost", False
    if isinstance(error, ssl.SSLError):
        detail = getattr(error, "verify_message", "") or getattr(error, "reason", "")
        return f"TLS failed: {detail or error}", False
    if isinstance(error, ConnectionRefusedError):
        return (
            f"connection refused by {endpoint.host}:{endpoint.port}: is the puppet service or "
            "gateway running there? (WECHATY_PUPPET_SERVICE_ENDPOINT)",
            False,
        )
    if isinstance(error, socket.gaierror):
        return f"cannot resolve the host name {endpoint.host!r}", False
    if isinstance(error, TimeoutError):
        return f"no answer from {endpoint} in time", False
    if isinstance(error, OSError):
        return f"network error: {clean(error.strerror or str(error))}", False
    return f"{type(error).__name__}: {clean(str(error))}", False


def first_line(text: str, limit: int = 300) -> str:
    """Server errors arrive with Node stack traces attached: keep the first line."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- what we sent ----------------------------------------------------------------------------
def normalize(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


class SentLog:
    """What this transport sent recently, per chat: the account receives its own messages
    back, and only those we did not send were typed by a human on the phone. Message ids are
    used when the service returns them; otherwise (chat, text), or (chat, media) for files,
    images and links, each remembered for `ttl_s` and matched at most once. A text sent with
    @-mentions also matches an echo that spells the mentions differently (the service may
    write names its own way) as long as it ends with the same words."""

    MEDIA = "\x00media"

    def __init__(self, ttl_s: float = 120.0) -> None:
        self.ttl_s = ttl_s
        self._ids: OrderedDict[str, float] = OrderedDict()
        self._sent: deque[tuple[float, str, str, str]] = deque()  # (at, chat, text, body)

    def _prune(self, now: float) -> None:
        horizon = now - self.ttl_s
        while self._sent and self._sent[0][0] < horizon:
            self._sent.popleft()
        while self._ids and next(iter(self._ids.values())) < horizon:
            self._ids.popitem(last=False)

    def note(self, chat_id: str, text: str | None, body: str = "") -> None:
        """Before sending: `text` as sent (None for a file, image or link) and, when it
        carries @-mentions, `body`: the words after them."""
        now = time.monotonic()
        self._prune(now)
        sent = self.MEDIA if text is None else normalize(text)
        self._sent.append((now, chat_id, sent, normalize(body)))

    def note_id(self, message_id: str) -> None:
        if message_id:
            self._ids[message_id] = time.monotonic()

    def match(self, chat_id: str, text: str, message_id: str, *, is_text: bool) -> bool:
        """Is this self-message one we sent? Consumes the matching entry."""
        now = time.monotonic()
        self._prune(now)
        if message_id and self._ids.pop(message_id, None) is not None:
            return True
        echo = normalize(text) if is_text else self.MEDIA
        for entry in self._sent:
            _, chat, sent, body = entry
            if chat == chat_id and (sent == echo or (body and is_text and echo.endswith(body))):
                self._sent.remove(entry)
                return True
        return False


class TtlCache(Generic[T]):
    """A small time-bounded cache for contact and room payloads."""

    def __init__(self, ttl_s: float, size: int = 4096) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._items: OrderedDict[str, tuple[float, T]] = OrderedDict()

    def get(self, key: str) -> T | None:
        item = self._items.get(key)
        if item is None or time.monotonic() - item[0] > self.ttl_s:
            return None
        return item[1]

    def put(self, key: str, value: T) -> None:
        self._items[key] = (time.monotonic(), value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def drop(self, key: str) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()


class RecentIds:
    """Ids seen lately (puppets sometimes emit one message two or three times)."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, key: str) -> bool:
        """False when `key` was seen already."""
        if key in self._ids:
            return False
        self._ids[key] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True


def mentions_name(text: str, name: str) -> bool:
    """Does `text` hold "@name" as a mention (followed by the WeChat separator, a space
    or the end)? For services that leave the mention id list empty."""
    if not name:
        return False
    pattern = "@" + re.escape(name) + r"(?:[\s\u2005]|$)"
    return re.search(pattern, text) is not None


def with_mentions(text: str, names: Iterable[str]) -> str:
    """Prefix "@A<U+2005>@B<U+2005>" as WeChat clients write mentions (the service gets ids)."""
    prefix = "".join(f"@{name}{AT_SEPARATOR}" for name in names)
    return prefix + text


# -- login QR code -----------------------------------------------------------------------------
def qr_matrix(data: str) -> list[list[bool]] | None:
    """The QR modules for `data` (True = dark), or None when the qrcode package is missing."""
    try:
        import qrcode
    except ImportError:
        return None
    code = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_L)
    code.add_data(data)
    code.make(fit=True)
    return [[bool(cell) for cell in row] for row in code.get_matrix()]


def qr_text(matrix: list[list[bool]]) -> str:
    """Two rows per line with half blocks, light on dark-agnostic (dark modules drawn)."""
    lines = []
    for y in range(0, len(matrix), 2):
        top = matrix[y]
        bottom = matrix[y + 1] if y + 1 < len(matrix) else [False] * len(top)
        line = "".join(
            "█" if t and b else "▀" if t else "▄" if b else " "
            for t, b in zip(top, bottom, strict=True)
        )
        lines.append(line)
    return "\n".join(lines)


def show_qr(code: str, out: TextIO | None, png: Path) -> Path | None:
    """Print the login QR code in the terminal and save it as a PNG (returned)."""
    out = out or sys.stderr
    matrix = qr_matrix(code)
    if matrix is None:
        print(f"用微信扫码登录 / scan to log in (pip install qrcode to draw it): {code}", file=out)
        return None
    print("用微信扫码登录 / scan with WeChat to log in:", file=out)
    print(qr_text(matrix), file=out, flush=True)
    try:
        write_png(matrix, png)
    except OSError as error:
        log.warning("cannot save the QR code image: %s", error)
        return None
    return png


def write_png(matrix: list[list[bool]], path: Path, scale: int = 8) -> None:
    """A black-on-white grayscale PNG of `matrix`, written atomically; no Pillow needed."""
    rows = []
    for row in matrix:
        line = bytes(0 if dark else 255 for dark in row for _ in range(scale))
        rows.extend([b"\x00" + line] * scale)
    width = len(matrix[0]) * scale if matrix else 0
    height = len(rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
    png += chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(png)
    tmp.replace(path)


# The wechaty community root CA (from npm wechaty-puppet-service src/auth/ca.ts, Apache-2.0;
# valid until 2031-08). Puppet services sign their certificates with it and put the name
# from the token's prefix in the CN ("puppet_padlocal_xxx" -> "puppet_padlocal"); the
# wechaty SDKs trust it by default. Its keys are public, so it encrypts but proves little.
WECHATY_ROOT_CA = """\
-----BEGIN CERTIFICATE-----
MIIFxTCCA62gAwIBAgIUYddLAoa8JnLzJ80l2u5vGuFsaEIwDQYJKoZIhvcNAQEL
BQAwcjELMAkGA1UEBhMCVVMxFjAUBgNVBAgMDVNhbiBGcmFuY2lzY28xEjAQBgNV
BAcMCVBhbG8gQWx0bzEQMA4GA1UECgwHV2VjaGF0eTELMAkGA1UECwwCQ0ExGDAW
BgNVBAMMD3dlY2hhdHktcm9vdC1jYTAeFw0yMTA4MDkxNTQ4NTJaFw0zMTA4MDcx
NTQ4NTJaMHIxCzAJBgNVBAYTAlVTMRYwFAYDVQQIDA1TYW4gRnJhbmNpc2NvMRIw
EAYDVQQHDAlQYWxvIEFsdG8xEDAOBgNVBAoMB1dlY2hhdHkxCzAJBgNVBAsMAkNB
MRgwFgYDVQQDDA93ZWNoYXR5LXJvb3QtY2EwggIiMA0GCSqGSIb3DQEBAQUAA4IC
DwAwggIKAoICAQDulLjOZhzQ58TSQ7TfWNYgdtWhlc+5L9MnKb1nznVRhzAkZo3Q
rPLRW/HDjlv2OEbt4nFLaQgaMmc1oJTUVGDBDlrzesI/lJh7z4eA/B0z8eW7f6Cw
/TGc8lgzHvq7UIE507QYPhvfSejfW4Prw+90HJnuodriPdMGS0n9AR37JPdQm6sD
iMFeEvhHmM2SXRo/o7bll8UDZi81DoFu0XuTCx0esfCX1W5QWEmAJ5oAdjWxJ23C
lxI1+EjwBQKXGqp147VP9+pwpYW5Xxpy870kctPBHKjCAti8Bfo+Y6dyWz2UAd4w
4BFRD+18C/TgX+ECl1s9fsHMY15JitcSGgAIz8gQX1OelECaTMRTQfNaSnNW4LdS
sXMQEI9WxAU/W47GCQFmwcJeZvimqDF1QtflHSaARD3O8tlbduYqTR81LJ63bPoy
9e1pdB6w2bVOTlHunE0YaGSJERALVc1xz40QpPGcZ52mNCb3PBg462RQc77yv/QB
x/P2RC1y0zDUF2tP9J29gTatWq6+D4MhfEk2flZNyzAgJbDuT6KAIJGzOB1ZJ/MG
o1gS13eTuZYw24LElrhd1PrR6OHK+lkyYzqUPYMulUg4HzaZIDclfHKwAC4lecKm
zC5q9jJB4m4SKMKdzxvpIOfdahoqsZMg34l4AavWRqPTpwEU0C0dboNA/QIDAQAB
o1MwUTAdBgNVHQ4EFgQU0rey3QPklTOgdhMJ9VIA6KbZ5bAwHwYDVR0jBBgwFoAU
0rey3QPklTOgdhMJ9VIA6KbZ5bAwDwYDVR0TAQH/BAUwAwEB/zANBgkqhkiG9w0B
AQsFAAOCAgEAx2uyShx9kLoB1AJ8x7Vf95v6PX95L/4JkJ1WwzJ9Dlf3BcCI7VH7
Fp1dnQ6Ig7mFqSBDBAUUBWAptAnuqIDcgehI6XAEKxW8ZZRxD877pUNwZ/45tSC4
b5U5y9uaiNK7oC3LlDCsB0291b3KSOtevMeDFoh12LcliXAkdIGGTccUxrH+Cyij
cBOc+EKGJFBdLqcjLDU4M6QdMMMFOdfXyAOSpYuWGYqrxqvxQjAjvianEyMpNZWM
lajggJqiPhfF67sZTB2yzvRTmtHdUq7x+iNOVonOBcCHu31aGxa9Py91XEr9jaIQ
EBdl6sycLxKo8mxF/5tyUOns9+919aWNqTOUBmI15D68bqhhOVNyvsb7aVURIt5y
6A7Sj4gSBR9P22Ba6iFZgbvfLn0zKLzjlBonUGlSPf3rSIYUkawICtDyYPvK5mi3
mANgIChMiOw6LYCPmmUVVAWU/tDy36kr9ZV9YTIZRYAkWswsJB340whjuzvZUVaG
DgW45GPR6bGIwlFZeqCwXLput8Z3C8Sw9bE9vjlB2ZCpjPLmWV/WbDlH3J3uDjgt
9PoALW0sOPhHfYklH4/rrmsSWMYTUuGS/HqxrEER1vpIOOb0hIiAWENDT/mruq22
VqO8MHX9ebjInSxPmhYOlrSZrOgEcogyMB4Z0SOtKVqPnkWmdR5hatU=
-----END CERTIFICATE-----
"""


def token_server_name(token: str) -> str:
    """The TLS server name a wechaty token implies: its part before the last underscore."""
    cut = token.rfind("_")
    return token[:cut].lower() if cut > 0 else ""


async def cancel_tasks(tasks: list[asyncio.Task[Any]], timeout: float = 5.0) -> None:
    """Cancel and reap tasks, but never wait forever (a task that swallowed its
    cancellation, as asyncio.wait_for can on Python 3.11, is left behind with a warning)."""
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        _, stuck = await asyncio.wait(pending, timeout=timeout)
        for task in stuck:
            log.warning("task %s did not stop; left behind", task.get_name())
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" noise


def tls_channel(g: Any, host: str, port: int, server_name: str) -> Any:
    """A gRPC channel over TLS trusting the wechaty root CA (and the system's), checking that
    the certificate names `server_name`: wechaty certificates carry it in the CN only, which
    Python's own hostname check ignores, so the name is checked here."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.load_verify_locations(cadata=WECHATY_ROOT_CA)
    # Python 3.13 verifies strictly (RFC 5280) by default; the 2021 wechaty certificates
    # lack extensions that mode requires, and the TypeScript clients accept them.
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    context.check_hostname = False
    context.set_alpn_protocols(["h2"])

    class TlsChannel(g.Channel):  # type: ignore[misc]
        async def _create_connection(self) -> Any:
            transport, protocol = await self._loop.create_connection(
                self._protocol_factory, host, port, ssl=context, server_hostname=server_name
            )
            cert = transport.get_extra_info("peercert") or {}
            names = {
                v.lower() for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"
            }
            names |= {v.lower() for k, v in cert.get("subjectAltName", ()) if k == "DNS"}
            if server_name.lower() not in names and host.lower() not in names:
                transport.close()
                problem = ssl.SSLCertVerificationError(
                    f"the certificate is for {', '.join(sorted(names)) or 'no name'}, "
                    f"not {server_name}"
                )
                problem.verify_message = problem.args[0]
                raise problem
            return protocol

    return TlsChannel(host, port, ssl=context)


IMAGE_HD = 2  # the puppet protocol's ImageType.IMAGE_TYPE_HD (big enough to read a QR code)


class MediaFiles:
    """Inbound images saved for plugins to look inside, in one folder of the data dir.
    Bounded: a file larger than `max_bytes` is abandoned, and files older than `keep_s`
    are deleted (checked at most every `sweep_s`): they serve the moment of the message."""

    def __init__(
        self,
        folder: Path,
        *,
        max_bytes: int = 20_000_000,
        keep_s: float = 86_400.0,
        sweep_s: float = 3_600.0,
    ) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.keep_s = keep_s
        self.sweep_s = sweep_s
        self._swept = 0.0

    async def save(self, message_id: str, chunks: Any) -> str:
        """Write a FileBoxChunk stream (`name`, then `data` parts) to a file; its path, or
        "" when the stream is empty or too large."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._sweep()
        stem = re.sub(r"[^A-Za-z0-9_-]", "_", message_id)[:80] or "image"
        parts: list[bytes] = []
        size = 0
        suffix = ""
        async for response in chunks:
            chunk = response.file_box_chunk
            if chunk.name and not suffix:
                suffix = Path(chunk.name).suffix.lower()[:8]
            if chunk.data:
                size += len(chunk.data)
                if size > self.max_bytes:
                    return ""
                parts.append(bytes(chunk.data))
        if not size:
            return ""
        if not re.fullmatch(r"\.[a-z0-9]+", suffix):
            suffix = ""
        path = self.folder / f"{stem}{suffix}"
        path.write_bytes(b"".join(parts))
        return str(path)

    def _sweep(self) -> None:
        now = time.time()
        if now - self._swept < self.sweep_s:
            return
        self._swept = now
        for old in self.folder.iterdir():
            try:
                if old.is_file() and now - old.stat().st_mtime > self.keep_s:
                    old.unlink()
            except OSError:
                continue
