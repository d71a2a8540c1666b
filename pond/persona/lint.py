"""Persona lint: copy that tells a customer to reply with a word ("回复“新茶”帮你留一份")
must name a word something answers, or the customer who does as told gets the fallback.

This module finds those calls to action in every template (with file and line) and the
words that copy declares next to itself in persona TOML data (a campaign file's or a
calendar post's `reply.keywords`, paired with its `copy` / `key`). Whether the bot answers
a word is the caller's question: the App asks its own routes (App.unanswered_calls), so
the lint knows exactly what the loaded plugins answer."""

from __future__ import annotations

import itertools
import logging
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pond.events import Contact, Message

if TYPE_CHECKING:
    from pond.app import App

log = logging.getLogger("pond.persona")
PROBE = Contact(id="pond-persona-lint", name="pond-persona-lint")
# A message nothing but a catch-all (the fallback) takes: what "answered" must beat.
CONTROL = "pond persona lint control message 7f3a"

# 回复“X” / 回复「X」 (quoted: the copy names the word; ASCII quotes are template code), and
# 回复 X 即可 (unquoted, then a word saying that is all it takes).
_QUOTED = re.compile(r"回复\s*[“「『]([^”」』\n]{1,16})[”」』]")
_BARE = re.compile(r"回复\s*([^\s“\"「『，。、！？,.!?（(]{1,8}?)\s*(?:即可|就可以|就好|就行)")
_TEMPLATE_CODE = re.compile(r"\{\{|\{%|\}\}|%\}")


@dataclass(frozen=True, slots=True)
class Call:
    file: str  # relative to the persona folder
    line: int
    key: str  # the persona key the file serves ("" for macro files such as _voice.j2)
    word: str


def _key_of(rel: Path) -> str:
    parts = rel.parts
    if parts and parts[0] == "_layers":
        parts = parts[2:]
    if not parts or any(p.startswith("_") for p in parts):
        return ""
    return "/".join(parts)[: -len(".j2")]


def calls(persona_dir: Path) -> list[Call]:
    """Every "reply with X" in the templates, in file order."""
    found: list[Call] = []
    for path in sorted(persona_dir.rglob("*.j2")):
        rel = path.relative_to(persona_dir)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # the persona loader reports unreadable files
        text = re.sub(r"\{#.*?#\}", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
        for number, line in enumerate(text.splitlines(), 1):
            for pattern in (_QUOTED, _BARE):
                for match in pattern.finditer(line):
                    word = match.group(1).strip()
                    if word and not _TEMPLATE_CODE.search(word):
                        found.append(Call(str(rel), number, _key_of(rel), word))
    return found


def declared(persona_dir: Path) -> dict[str, set[str]]:
    """Persona key -> the reply words declared with it in persona TOML data."""
    result: dict[str, set[str]] = {}

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            key = node.get("copy", node.get("key"))
            reply = node.get("reply")
            if isinstance(key, str) and isinstance(reply, dict):
                words = reply.get("keywords", [])
                words = [words] if isinstance(words, str) else words
                if isinstance(words, list):
                    result.setdefault(key, set()).update(str(w).strip() for w in words)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    for path in sorted(persona_dir.rglob("*.toml")):
        try:
            visit(tomllib.loads(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue  # each owner reports its own broken file
    return result


_scanned: dict[Path, tuple[tuple[tuple[str, int, int], ...], list[Call], dict[str, set[str]]]] = {}


def _scan(persona_dir: Path) -> tuple[list[Call], dict[str, set[str]]]:
    """calls() and declared(), read again only when a file changed (every App start asks,
    and tests start hundreds)."""
    stamp = []
    for path in sorted([*persona_dir.rglob("*.j2"), *persona_dir.rglob("*.toml")]):
        try:
            st = path.stat()
        except OSError:
            continue
        stamp.append((str(path), st.st_mtime_ns, st.st_size))
    key = persona_dir.resolve()
    cached = _scanned.get(key)
    if cached is not None and cached[0] == tuple(stamp):
        return cached[1], cached[2]
    found = (calls(persona_dir), declared(persona_dir))
    if len(_scanned) >= 8:
        _scanned.pop(next(iter(_scanned)))
    _scanned[key] = (tuple(stamp), *found)
    return found


def unanswered(persona_dir: Path, answered: Callable[[str], bool]) -> Iterator[Call]:
    """The calls to action whose word neither `answered` nor the copy's own declaration
    covers. Each word is asked about once."""
    found, own = _scan(persona_dir)
    seen: dict[str, bool] = {}
    for call in found:
        if call.word in own.get(call.key, ()):
            continue
        if call.word not in seen:
            seen[call.word] = answered(call.word)
        if not seen[call.word]:
            yield call


def app_unanswered(app: App) -> list[Call]:
    """The calls to action of `app`'s persona that none of its routes (other than the
    catch-all that answers anything) and none of its operator commands take up. The
    routes' filters are asked with a private message from a probe contact; no handler
    runs and nothing is recorded."""
    ids = itertools.count()

    def route_for(text: str) -> str | None:
        probe = Message(f"lint-{next(ids)}", PROBE, text, app.clock.now())
        for route in app.routes:
            wanted = route.block and isinstance(probe, route.event_type)
            if wanted and all(f(probe) for f in route.filters):
                return route.name
        return None

    catch_all = route_for(CONTROL)
    # Operator copy names commands ("回复“结束人工 3”"), also those of plugins that are
    # not running (their copy reaches nobody then).
    described = {
        name.lower()
        for info in app.commands.catalog.infos.values()
        for name in (info.name, *info.names)
    }

    def answered(word: str) -> bool:
        first = word.split()[0]
        if app.commands.resolve(first) is not None or first.lower() in described:
            return True
        taken = route_for(word)
        return taken is not None and taken != catch_all

    return list(unanswered(app.settings.bot.persona_dir, answered))


def warn(app: App) -> list[Call]:
    """Log each unanswered call to action as a warning (no admin alert: it is the
    copywriter's to fix, and the preview script shows the same list)."""
    try:
        found = app_unanswered(app)
    except Exception:  # a lint must never stop the bot
        log.exception("persona lint failed")
        return []
    for call in found:
        log.warning(
            "persona lint: %s:%d asks customers to reply %r, which no rule answers "
            "(declare it with the copy as reply.keywords, or add a rule)",
            call.file,
            call.line,
            call.word,
        )
    return found
