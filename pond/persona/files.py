"""The persona folder on disk: which files exist, what each one is, and persona.toml.

`_scan` stats the files a persona reads, `_classify` sorts their paths into base templates,
layer overrides and shared files, `_read` reads one as text, and `_parse_config` checks
persona.toml into brand variables and layers.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from jinja2.defaults import DEFAULT_NAMESPACE

from pond.persona.errors import PersonaError, say
from pond.problems import Problem, toml_line

BRAND = "brand"
CONFIG_FILE = "persona.toml"
VOICE_FILE = "_voice.j2"
LAYERS_DIR = "_layers"
VOICE_GLOBAL = "voice"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")
_RESERVED = frozenset({VOICE_GLOBAL, *DEFAULT_NAMESPACE})

_Snapshot = dict[str, tuple[int, int, int]]


@dataclass(frozen=True)
class _Layer:
    name: str
    kind: str  # "contact", "room" or "segment"
    members: frozenset[str]  # contact ids, room ids or tags
    vars: Mapping[str, Any]


# --------------------------------------------------------------------------- file scanning


def _scan(root: Path, fallbacks: Sequence[Path] = ()) -> _Snapshot:
    """Stat every file the persona reads: *.j2 and persona.toml, skipping ignored folders.

    Folders starting with "." are skipped, and so are folders starting with "_" other than
    the top-level `_layers`. Folder symlinks are not followed. Plugins' own folders
    (Plugin(persona_dir=...)) add their templates unless the brand's folder has the same
    file; never a persona.toml or a shared file at their top: those are the brand's.
    """

    def walk(found: _Snapshot, directory: str, rel: tuple[str, ...]) -> None:
        with os.scandir(directory) as items:
            for item in items:
                name = item.name
                if name.startswith("."):
                    continue
                if item.is_dir(follow_symlinks=False):
                    if name.startswith("_") and not (rel == () and name == LAYERS_DIR):
                        continue
                    walk(found, item.path, (*rel, name))
                elif item.is_file() and (
                    name.endswith(".j2") or (rel == () and name == CONFIG_FILE)
                ):
                    st = item.stat()
                    found["/".join((*rel, name))] = (st.st_mtime_ns, st.st_size, st.st_ino)

    snapshot: _Snapshot = {}
    walk(snapshot, str(root), ())
    for folder in fallbacks:
        extra: _Snapshot = {}
        walk(extra, str(folder), ())
        for rel, stamp in extra.items():
            if "/" in rel and not rel.startswith(LAYERS_DIR + "/"):
                snapshot.setdefault(rel, stamp)
    return snapshot


def _origin(root: Path, fallbacks: Sequence[Path], rel: str) -> Path:
    """The folder a scanned file was found in: the brand's, else the first plugin folder."""
    if not fallbacks or (root / rel).exists():
        return root
    return next((folder for folder in fallbacks if (folder / rel).exists()), root)


@dataclass
class _Files:
    config: bool = False
    shared: list[str] = field(default_factory=list)
    bases: list[tuple[str, str]] = field(default_factory=list)  # (key, rel)
    overrides: list[tuple[str, str, str]] = field(default_factory=list)  # (layer, key, rel)
    misplaced: list[tuple[str, Problem]] = field(default_factory=list)  # (rel, reason)


def _bad_name(plugin: str, stem: str) -> Problem | None:
    for part in (plugin, stem):
        if not _NAME.match(part):
            return say(
                "bad_name",
                "{part!r} cannot be part of a key: use letters, digits, '_' and '-' "
                "(no spaces), not starting with '_' or '-'",
                part=part,
            )
    return None


def _classify(paths: Iterable[str]) -> _Files:
    files = _Files()
    for rel in sorted(paths):
        parts = rel.split("/")
        name = parts[-1]
        stem = name.removesuffix(".j2")
        if rel == CONFIG_FILE:
            files.config = True
        elif parts[0] == LAYERS_DIR:
            if name.startswith("_"):
                continue  # helpers inside layer folders are ignored
            if len(parts) != 4:
                files.misplaced.append(
                    (
                        rel,
                        say(
                            "layer_path",
                            "a layer override must be _layers/<layer>/<plugin>/<name>.j2",
                        ),
                    )
                )
                continue
            problem = _bad_name(parts[2], stem)
            if problem:
                files.misplaced.append((rel, problem))
            else:
                files.overrides.append((parts[1], f"{parts[2]}/{stem}", rel))
        elif len(parts) == 1:
            if name.startswith("_"):
                files.shared.append(rel)
            else:
                files.misplaced.append(
                    (
                        rel,
                        say(
                            "top_level",
                            "a template must live in a plugin folder: <plugin>/<name>.j2",
                        ),
                    )
                )
        elif len(parts) == 2:
            if name.startswith("_"):
                files.shared.append(rel)
                continue
            problem = _bad_name(parts[0], stem)
            if problem:
                files.misplaced.append((rel, problem))
            else:
                files.bases.append((f"{parts[0]}/{stem}", rel))
        else:
            files.misplaced.append(
                (
                    rel,
                    say(
                        "too_nested", "too deep: templates are <plugin>/<name>.j2, one folder level"
                    ),
                )
            )
    return files


MAX_FILE_BYTES = 32 * 1024
"""Largest persona file read. Compiling a template takes a few hundred bytes of memory per
byte of source, so a huge file is refused unread (the largest shipped one is under 6 KB)."""


def _read(root: Path, rel: str, label: str) -> str:
    try:
        with (root / rel).open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise PersonaError(
            f"{label}/{rel}", None, say("unreadable", "cannot read: {error}", error=exc.strerror)
        ) from exc
    if len(data) > MAX_FILE_BYTES:
        raise PersonaError(
            f"{label}/{rel}",
            None,
            say(
                "too_large",
                "is larger than {kb} KB: split it into several keys, "
                "or move shared macros into a '_'-prefixed file",
                kb=MAX_FILE_BYTES // 1024,
            ),
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PersonaError(f"{label}/{rel}", None, say("not_utf8", "is not UTF-8 text")) from exc
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


# --------------------------------------------------------------------------- persona.toml


def _toml_error(
    exc: tomllib.TOMLDecodeError, path: str, first_line: int, what: Problem | str
) -> PersonaError:
    line, problem = toml_line(exc)
    where = None if line is None else first_line + line - 1
    return PersonaError(path, where, say("toml", "{what}: {problem}", what=what, problem=problem))


def _toml_line(text: str, dotted: str) -> int | None:
    """Best-effort line of a dotted key ("layers.vip.tags") in a TOML text."""
    parts = dotted.split(".")
    lines = text.split("\n")
    for cut in range(len(parts), 0, -1):
        table, rest = parts[:cut], parts[cut:]
        header = re.compile(r"\s*\[\s*" + r"\s*\.\s*".join(map(re.escape, table)) + r"\s*\]")
        for i, line in enumerate(lines):
            if not header.match(line):
                continue
            if rest:
                key = re.compile(r"\s*" + re.escape(rest[0]) + r"\s*=")
                for j in range(i + 1, len(lines)):
                    if lines[j].lstrip().startswith("["):
                        break
                    if key.match(lines[j]):
                        return j + 1
            return i + 1
    key = re.compile(r"\s*" + re.escape(parts[-1]) + r"\s*=")
    return next((i + 1 for i, line in enumerate(lines) if key.match(line)), None)


def _parse_config(text: str, path: str) -> tuple[dict[str, Any], dict[str, _Layer]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(exc, path, 1, CONFIG_FILE) from exc
    except RecursionError:  # tomllib recurses into nested arrays and tables
        raise PersonaError(
            path, None, say("config_too_deep", "{file} is nested too deeply", file=CONFIG_FILE)
        ) from None

    def fail(key: str, reason: Problem) -> NoReturn:
        raise PersonaError(
            path,
            _toml_line(text, key),
            say("config_key", "{key}: {reason}", key=key, reason=reason),
        )

    def check_vars(table: object, where: str) -> dict[str, Any]:
        if not isinstance(table, dict):
            fail(where, say("vars_table", "must be a table of variables"))
        for name in table:
            if not name.isidentifier():
                fail(
                    f"{where}.{name}",
                    say("var_name", "a variable name must be letters, digits and '_'"),
                )
            if name in _RESERVED:
                fail(
                    f"{where}.{name}",
                    say("var_reserved", "{name!r} is reserved, choose another name", name=name),
                )
        return dict(table)

    for name in data:
        if name not in (BRAND, "layers"):
            fail(
                name,
                say(
                    "config_unknown",
                    "unknown entry; persona.toml has a [brand] table and [layers.<name>] tables",
                ),
            )
    brand = check_vars(data.get(BRAND, {}), BRAND)
    raw_layers = data.get("layers", {})
    if not isinstance(raw_layers, dict):
        fail("layers", say("layers_tables", "must hold tables, e.g. [layers.vip]"))
    layers: dict[str, _Layer] = {}
    for name, spec in raw_layers.items():
        where = f"layers.{name}"
        if not _NAME.match(name) or name == BRAND:
            fail(
                where,
                say(
                    "layer_name",
                    "a layer name uses letters, digits, '_' and '-' ('brand' is reserved)",
                ),
            )
        if not isinstance(spec, dict):
            fail(where, say("layer_table", "must be a table: [{where}]", where=where))
        for key in spec:
            if key not in ("tags", "rooms", "contacts", "vars"):
                fail(
                    f"{where}.{key}",
                    say("layer_key", "unknown key; a layer has tags, rooms, contacts and vars"),
                )
        kinds: list[tuple[str, str, frozenset[str]]] = []
        for key, kind in (("contacts", "contact"), ("rooms", "room"), ("tags", "segment")):
            members = spec.get(key)
            if members is None:
                continue
            if not isinstance(members, list) or not all(
                isinstance(m, str) and m.strip() for m in members
            ):
                fail(
                    f"{where}.{key}",
                    say("layer_list", 'must be a list of non-empty strings, e.g. ["vip"]'),
                )
            if members:
                kinds.append((key, kind, frozenset(members)))
        if not kinds:
            fail(
                where,
                say("layer_whom", "needs tags, rooms or contacts: whom does this layer apply to?"),
            )
        if len(kinds) > 1:
            fail(
                where,
                say(
                    "layer_both",
                    "sets both {a} and {b}; a layer applies by exactly one "
                    "of tags, rooms or contacts (make two layers)",
                    a=kinds[0][0],
                    b=kinds[1][0],
                ),
            )
        layers[name] = _Layer(
            name=name,
            kind=kinds[0][1],
            members=kinds[0][2],
            vars=check_vars(spec.get("vars", {}), f"{where}.vars"),
        )
    return brand, layers
