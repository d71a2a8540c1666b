"""Operator commands: one parser for every plugin's commands, admin identity, audit.

Plugins register commands by an English name (`@plugin.command("status")`). Their Chinese
names, aliases and help text are copy, kept in persona/_commands.toml so operators can rename
them without touching code. Commands are accepted only in private chat from an admin: a
contact id listed in BOT_ADMIN_IDS, or one bound at run time with the binding code (printed
at start-up, expiring, guarded against guessing: pond/binding.py). The audit log keeps each
command's name and origin, and of its arguments only known ids (audit_data)."""

from __future__ import annotations

import hmac
import re
import tomllib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pond.binding import BindingCode, Guard, Limits, new_code
from pond.events import Contact, Message, Room
from pond.store import Namespace

if TYPE_CHECKING:
    from pond.context import Context

CommandHandler = Callable[["Command", "Context"], Awaitable[None]]
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


@dataclass(frozen=True, slots=True)
class Command:
    """An operator's command, parsed from a private message or given on the command line."""

    name: str  # canonical English name
    args: tuple[str, ...]
    rest: str  # everything after the command word, as typed
    sender: Contact
    timestamp: datetime
    id: str = ""
    origin: str = "chat"  # "chat" (WeChat or console) or "cli"
    room: Room | None = None  # always None: commands are private
    values: Mapping[str, Any] = field(default_factory=dict)  # declared args, parsed

    kind = "command"

    @property
    def chat_id(self) -> str:
        return self.sender.id


@dataclass(frozen=True, slots=True)
class Arg:
    """A declared command argument: `Arg("who")`, `Arg("n", int)`, or a last one that takes
    the rest of the line, `Arg("note", rest=True, required=False)`. `type` is str, int or
    float (or any callable raising ValueError on a bad word)."""

    name: str
    type: Callable[[str], Any] = str
    required: bool = True
    rest: bool = False


class UsageError(ValueError):
    """Wrong arguments: `reason` is missing, not_a_number or too_many; `value` the word."""

    def __init__(self, reason: str, value: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.value = value


def parse_args(spec: tuple[Arg, ...], command: Command) -> dict[str, Any]:
    words = list(command.args)
    values: dict[str, Any] = {}
    for i, arg in enumerate(spec):
        if arg.rest:
            parts = command.rest.split(None, i)
            text = parts[i] if len(parts) > i else ""
            words = []
            if not text and arg.required:
                raise UsageError("missing")
            values[arg.name] = text or None
            continue
        if not words:
            if arg.required:
                raise UsageError("missing")
            values[arg.name] = None
            continue
        word = words.pop(0)
        try:
            values[arg.name] = arg.type(word)
        except (TypeError, ValueError):
            raise UsageError("not_a_number" if arg.type in (int, float) else "bad", word) from None
    if words:
        raise UsageError("too_many", words[0])
    return values


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    plugin: str
    handler: CommandHandler
    keep_args: bool = False  # its arguments are plain words, safe to audit verbatim
    args: tuple[Arg, ...] | None = None  # declared: parsed by the kernel, usage on error


@dataclass(frozen=True, slots=True)
class CommandInfo:
    """What persona/_commands.toml says of one command."""

    name: str
    names: tuple[str, ...] = ()  # Chinese names and aliases, first is the display name
    help: str = ""
    usage: str = ""

    @property
    def display(self) -> str:
        return self.names[0] if self.names else self.name


class CommandError(ValueError):
    pass


@dataclass
class CommandCatalog:
    infos: dict[str, CommandInfo] = field(default_factory=dict)

    @classmethod
    def load_dir(cls, persona_dir: Path, plugin_dirs: Iterable[Path] = ()) -> CommandCatalog:
        """persona/_commands.toml plus each plugin's persona/<plugin>/commands.toml, then
        those in plugins' own folders (Plugin(persona_dir=...)) for commands the brand's
        folder does not describe."""
        catalog = cls()
        paths = [persona_dir / "_commands.toml", *sorted(persona_dir.glob("*/commands.toml"))]
        for path in paths:
            for name, info in cls.load(path).infos.items():
                if name in catalog.infos:
                    raise CommandError(f"{path}: [{name}] is already described elsewhere")
                catalog.infos[name] = info
        for folder in plugin_dirs:
            for path in sorted(folder.glob("*/commands.toml")):
                for name, info in cls.load(path).infos.items():
                    catalog.infos.setdefault(name, info)
        return catalog

    @classmethod
    def load(cls, path: Path) -> CommandCatalog:
        if not path.exists():
            return cls()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise CommandError(f"{path}: {error}") from error
        infos = {}
        for name, table in data.items():
            where = f"{path}: [{name}]"
            if not _NAME.match(name) or not isinstance(table, dict):
                raise CommandError(f"{where}: a table named by the English command name")
            names = table.get("names", [])
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise CommandError(f"{where}: names must be a list of words")
            if any(len(n.split()) != 1 for n in names):
                raise CommandError(f"{where}: each name must be one word without spaces")
            unknown = set(table) - {"names", "help", "usage"}
            if unknown:
                raise CommandError(f"{where}: unknown keys {sorted(unknown)}")
            infos[name] = CommandInfo(
                name, tuple(names), str(table.get("help", "")), str(table.get("usage", ""))
            )
        return cls(infos)

    def info(self, name: str) -> CommandInfo:
        return self.infos.get(name) or CommandInfo(name)


class Commands:
    """The registry and parser; the App owns one."""

    def __init__(self, catalog: CommandCatalog) -> None:
        self.catalog = catalog
        self.specs: dict[str, CommandSpec] = {}
        self._words: dict[str, str] = {}

    def register(self, spec: CommandSpec) -> None:
        if spec.name in self.specs:
            other = self.specs[spec.name].plugin
            raise CommandError(f"command {spec.name} is registered by {other} and {spec.plugin}")
        self.specs[spec.name] = spec
        for word in (spec.name, *self.catalog.info(spec.name).names):
            owner = self._words.get(word.lower())
            if owner is not None and owner != spec.name:
                raise CommandError(f"command word {word!r} is used by {owner} and {spec.name}")
            self._words[word.lower()] = spec.name

    def parse(self, message: Message) -> Command | None:
        text = message.text.strip()
        word, _, rest = text.removeprefix("/").partition(" ")
        name = self.resolve(word)
        if name is None:
            return None
        rest = rest.strip()
        return Command(
            name, tuple(rest.split()), rest, message.sender, message.timestamp, id=message.id
        )

    def listing(self) -> list[dict[str, str]]:
        """Every command, grouped by plugin (then by name), for the help reply."""
        specs = sorted(self.specs.values(), key=lambda spec: (spec.plugin, spec.name))
        return [self.describe(spec.name) for spec in specs]

    def resolve(self, word: str) -> str | None:
        """The English name of the command called `word` (any of its names), or None."""
        return self._words.get(word.removeprefix("/").strip().lower())

    def describe(self, name: str) -> dict[str, str]:
        info = self.catalog.info(name)
        return {
            "name": info.display,
            "english": name,
            "plugin": self.specs[name].plugin,
            "aliases": " / ".join(n for n in info.names[1:]),
            "help": info.help,
            "usage": info.usage,
        }


class Admins:
    """Admin identity by contact id: configured ids plus ids bound with the binding code
    (pond/binding.py: the code, its expiry and the guard against guessing)."""

    def __init__(
        self,
        configured: tuple[str, ...],
        kv: Namespace,
        limits: Limits,
        now: Callable[[], datetime],
    ) -> None:
        self.configured = frozenset(configured)
        self.kv = kv
        self.limits = limits
        self.guard = Guard(kv, limits)
        self._now = now
        self._code: BindingCode | None = new_code(now(), limits.ttl)
        # Asked on every private message: keep the bound ids in memory (the kv is the truth).
        self._bound = {k.removeprefix("admin:") for k, _ in kv.items("admin:")}

    @property
    def binding_code(self) -> str:
        """The current code as shown, or "" once it is used up."""
        return self._code.value if self._code else ""

    def code(self, *, new: bool = False) -> BindingCode:
        """The code to show an operator at the server: the current one while it is valid,
        else (or when asked) a new one. A new code lifts a lock on everyone's attempts."""
        now = self._now()
        if new or self._code is None or now >= self._code.expires_at:
            self._code = new_code(now, self.limits.ttl)
            self.guard.lift_total()
        return self._code

    def check_code(self, chars: str, now: datetime) -> str:
        """One of ok, expired (the right code, too late) or wrong."""
        code = self._code
        if code is None or not hmac.compare_digest(chars.encode(), code.chars.encode()):
            return "wrong"
        return "ok" if now < code.expires_at else "expired"

    def ids(self) -> list[str]:
        return sorted(self.configured | self._bound)

    def is_admin(self, contact_id: str) -> bool:
        return contact_id in self.configured or contact_id in self._bound

    def bind(self, contact_id: str, at: datetime, name: str = "") -> None:
        self.kv.set(f"admin:{contact_id}", {"at": at.isoformat(), "name": name})
        self._bound.add(contact_id)
        # One use: a code seen by someone else over the operator's shoulder is then worthless;
        # the next one is made when an operator asks for it.
        self._code = None

    def unbind(self, contact_id: str) -> bool:
        if contact_id not in self._bound:
            return False
        self.kv.delete(f"admin:{contact_id}")
        self._bound.discard(contact_id)
        return True


REDACTED = "…"


def audit_data(command: Command, keep_args: bool, is_id: Callable[[str], bool]) -> dict[str, Any]:
    """What the audit log keeps of a command: its name, where it came from and, of its
    arguments, only the ids the bot knows (contacts, rooms, admins), unless the command
    declared its arguments plain words (durations, "all", dates, numbers of a listing).
    Everything else (a note, a name searched for, a phone number) becomes "…": the log
    must not turn into a second customer file that erasure cannot read."""
    args = [a if keep_args or is_id(a) else REDACTED for a in command.args]
    return {"command": command.name, "args": args, "origin": command.origin}
