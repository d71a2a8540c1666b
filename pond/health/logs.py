"""Logging set-up (readable stderr, JSON lines in a rotated file, secrets redacted on every
handler) and owner-only permissions for the data dir."""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from pond.config import Settings


def secure_data_dir(path: Path) -> None:
    """Owner-only permissions for the data dir and what is already in it (the database,
    documents, logs, exports): created before this existed, or copied in."""
    path.mkdir(parents=True, exist_ok=True)
    for root, dirs, files in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(root, 0o700)
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                with contextlib.suppress(OSError):
                    os.chmod(full, 0o600)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]


_SECRET_KEY = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|APIKEY|PRIVATE_KEY)", re.I)
_PATTERNS = (
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1***@"),  # credentials in URLs
    (
        re.compile(r"((?:token|secret|password|api_key)[\"']?\s*[=:]\s*[\"']?)[^\s\"',;&]+", re.I),
        r"\1***",
    ),
    (re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
)


def secrets_of(settings: Settings) -> list[str]:
    """Values that must never reach a log: every setting named like a secret."""
    found = {value.strip() for key, value in settings.raw.items() if _SECRET_KEY.search(key)}
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)


class RedactFilter(logging.Filter):
    """On every handler: known secret values and secret-looking patterns become ***, in the
    message, its arguments and the traceback, whichever library logged it."""

    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        super().__init__("pond-redact")
        self.secret_values = tuple(s for s in secret_values if s)

    def redact(self, text: str) -> str:
        for value in self.secret_values:
            text = text.replace(value, "***")
        for pattern, repl in _PATTERNS:
            text = pattern.sub(repl, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken log call: let the handler report it as usual
            return True
        clean = self.redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log shippers and `jq` read without guessing, whatever
    quotes, Chinese or multi-line tracebacks the message holds."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created)
            .astimezone()
            .isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exc"] = record.exc_text
        return json.dumps(data, ensure_ascii=False)


# Libraries that log message contents or every scheduler tick at INFO.
QUIET_LOGGERS = ("wechaty", "wechaty_puppet", "wechaty_puppet_service", "apscheduler", "grpclib")


def configure_logging(settings: Settings, stream: IO[str] | None = None) -> list[logging.Handler]:
    """Readable lines on stderr, JSON lines in BOT_LOG_FILE (rotated 10 MB x 5), a redaction
    filter on every handler; returns the handlers installed on the root logger."""
    redact = RedactFilter(secrets_of(settings))
    console = logging.StreamHandler(stream)
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [console]
    if settings.bot.log_file:
        path = Path(settings.bot.log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(
            path, maxBytes=10_000_000, backupCount=5, encoding="utf-8"
        )
        rotating.setFormatter(JsonFormatter())
        handlers.append(rotating)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
    for handler in handlers:
        handler.addFilter(redact)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(settings.bot.log_level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    return handlers
