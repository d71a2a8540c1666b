"""Persona: the brand voice, kept in Jinja2 templates that copywriters edit.

Layout of a persona folder (persona/README.md is the copywriter's guide)::

    persona/persona.toml                         brand variables and layers
    persona/_voice.j2                            shared macros, available everywhere as `voice`
    persona/<plugin>/<name>.j2                   key "plugin/name"; variants split by `---`
    persona/_layers/<layer>/<plugin>/<name>.j2   one layer's override of one key

Every variant of every file is parsed and trial-rendered with its sample variables when the
persona is loaded, so a broken template is refused with file:line before a customer sees it.
`Persona.reload_if_changed()` is a cheap poll: changed files that break keep their last good
version serving; a broken persona.toml or shared template keeps the whole previous state.

Templates run in Jinja2's `ImmutableSandboxedEnvironment` with `StrictUndefined`; they can
import or include only shared `_*.j2` files that were read at load time.
"""

from __future__ import annotations

import logging
import os
import random
import re
import tomllib
import traceback
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NoReturn

import jinja2
from jinja2 import meta, nodes
from jinja2.defaults import DEFAULT_NAMESPACE
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["BRAND", "Persona", "PersonaError", "Rendered", "UnknownKeyError"]

log = logging.getLogger("pond.persona")

BRAND = "brand"
CONFIG_FILE = "persona.toml"
VOICE_FILE = "_voice.j2"
LAYERS_DIR = "_layers"
VOICE_GLOBAL = "voice"
SEPARATOR = "---"
ELLIPSIS = "…"
VARIANT_MEMORY = 50_000
"""How many (chat, key) pairs remember their last variant; the oldest are forgotten first."""

_MAX_SEQUENCE = 100_000  # longest string/list a template may build with `*`
_MAX_EXPONENT = 1_000  # largest exponent a template may use with `**`
_VOICE_CACHE = 256  # voice modules cached per layer chain before the cache is cleared
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")
_TOML_WHERE = re.compile(r"\s*\(at (?:line (\d+), column \d+|end of document)\)\s*\Z")
_UNDEFINED_NAME = re.compile(r"'([^']+)' is undefined\Z")
_RESERVED = frozenset({VOICE_GLOBAL, *DEFAULT_NAMESPACE})

_Snapshot = dict[str, tuple[int, int, int]]


class PersonaError(Exception):
    """A persona problem, located as `file:line: reason`.

    `file` is shown relative to the persona folder's parent ("persona/greeter/hello.j2"),
    `line` is a line in that file (or None), `errors` lists every problem this error stands
    for (just itself unless several were found at once).
    """

    def __init__(
        self,
        file: str,
        line: int | None,
        reason: str,
        *,
        errors: Sequence[PersonaError] = (),
    ) -> None:
        super().__init__(file, line, reason)
        self.file = file
        self.line = line
        self.reason = reason
        self.errors: list[PersonaError] = list(errors) or [self]

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.file}: {self.reason}"
        return f"{self.file}:{self.line}: {self.reason}"


class UnknownKeyError(PersonaError, KeyError):
    """`render` was asked for a key that has no template file."""


@dataclass(frozen=True)
class Rendered:
    key: str
    text: str
    layer: str
    variant: int


@dataclass(frozen=True)
class _Layer:
    name: str
    kind: str  # "contact", "room" or "segment"
    members: frozenset[str]  # contact ids, room ids or tags
    vars: Mapping[str, Any]


@dataclass(frozen=True)
class _Variant:
    template: jinja2.Template
    number: int  # 1-based, as copywriters count
    line: int  # line in the file where this variant's source starts
    code_name: str  # file name of the compiled code, to find its traceback frames
    source: str


@dataclass(frozen=True)
class _Entry:
    key: str
    layer: str
    path: str
    source: str  # the whole file, to rebuild the last good version on reload
    samples: Mapping[str, Any]
    variants: tuple[_Variant, ...]


@dataclass
class _State:
    env: _Env
    brand: Mapping[str, Any]
    layers: dict[str, _Layer]
    entries: dict[tuple[str, str], _Entry]
    voice: jinja2.Template | None
    fingerprint: tuple[object, ...]
    modules: dict[tuple[str, ...], Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- jinja environment


class _Env(ImmutableSandboxedEnvironment):
    """The sandbox, with `*` and `**` bounded so a template cannot exhaust memory or CPU."""

    intercepted_binops = frozenset({"*", "**"})
    shared_files: frozenset[str] = frozenset()

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > _MAX_SEQUENCE
                ):
                    raise SecurityError(f"`*` would build more than {_MAX_SEQUENCE} items")
        elif operator == "**" and isinstance(right, int | float) and abs(right) > _MAX_EXPONENT:
            raise SecurityError(f"`**` exponents are limited to {_MAX_EXPONENT}")
        return super().call_binop(context, operator, left, right)


class _SharedLoader(jinja2.BaseLoader):
    """Serves only the shared `_*.j2` files read at load time, never anything else on disk."""

    def __init__(self, sources: Mapping[str, str], label: str) -> None:
        self._sources = dict(sources)
        self._label = label

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        source = self._sources.get(template)
        if source is None:
            raise jinja2.TemplateNotFound(
                template,
                f"cannot import or include {template!r}: only shared files such as "
                f"{VOICE_FILE!r} or '<plugin>/_<name>.j2' can be used",
            )
        return source, f"{self._label}/{template}", lambda: True


def _yuan(value: object) -> str:
    """Format a price: 68 -> "¥68", 68.5 -> "¥68.50"."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise TypeError(f"yuan expects a number, got {type(value).__name__}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"yuan expects a number, got {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"yuan expects a finite number, got {value!r}")
    if amount == amount.to_integral_value():
        return f"¥{int(amount)}"
    return f"¥{amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)}"


def _make_env(brand: Mapping[str, Any], shared: Mapping[str, str], label: str) -> _Env:
    env = _Env(
        loader=_SharedLoader(shared, label),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        cache_size=-1,
    )
    env.shared_files = frozenset(f"{label}/{rel}" for rel in shared)
    env.filters["yuan"] = _yuan
    env.globals.update(brand)
    return env


# --------------------------------------------------------------------------- file scanning


def _scan(root: Path) -> _Snapshot:
    """Stat every file the persona reads: *.j2 and persona.toml, skipping ignored folders.

    Folders starting with "." are skipped, and so are folders starting with "_" other than
    the top-level `_layers`. Folder symlinks are not followed.
    """
    found: _Snapshot = {}

    def walk(directory: str, rel: tuple[str, ...]) -> None:
        with os.scandir(directory) as items:
            for item in items:
                name = item.name
                if name.startswith("."):
                    continue
                if item.is_dir(follow_symlinks=False):
                    if name.startswith("_") and not (rel == () and name == LAYERS_DIR):
                        continue
                    walk(item.path, (*rel, name))
                elif item.is_file() and (
                    name.endswith(".j2") or (rel == () and name == CONFIG_FILE)
                ):
                    st = item.stat()
                    found["/".join((*rel, name))] = (st.st_mtime_ns, st.st_size, st.st_ino)

    walk(str(root), ())
    return found


@dataclass
class _Files:
    config: bool = False
    shared: list[str] = field(default_factory=list)
    bases: list[tuple[str, str]] = field(default_factory=list)  # (key, rel)
    overrides: list[tuple[str, str, str]] = field(default_factory=list)  # (layer, key, rel)
    misplaced: list[tuple[str, str]] = field(default_factory=list)  # (rel, reason)


def _bad_name(plugin: str, stem: str) -> str | None:
    for part in (plugin, stem):
        if not _NAME.match(part):
            return (
                f"{part!r} cannot be part of a key: use letters, digits, '_' and '-' "
                "(no spaces), not starting with '_' or '-'"
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
                    (rel, "a layer override must be _layers/<layer>/<plugin>/<name>.j2")
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
                    (rel, "a template must live in a plugin folder: <plugin>/<name>.j2")
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
                (rel, "too deep: templates are <plugin>/<name>.j2, one folder level")
            )
    return files


def _read(root: Path, rel: str, label: str) -> str:
    try:
        data = (root / rel).read_bytes()
    except OSError as exc:
        raise PersonaError(f"{label}/{rel}", None, f"cannot read: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PersonaError(f"{label}/{rel}", None, "is not UTF-8 text") from exc
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


# --------------------------------------------------------------------------- persona.toml


def _toml_error(
    exc: tomllib.TOMLDecodeError, path: str, first_line: int, what: str
) -> PersonaError:
    message = str(exc)
    where = _TOML_WHERE.search(message)
    line: int | None = None
    if where:
        message = message[: where.start()]
        if where.group(1):
            line = first_line + int(where.group(1)) - 1
    return PersonaError(path, line, f"{what} is not valid TOML: {message}")


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

    def fail(key: str, reason: str) -> NoReturn:
        raise PersonaError(path, _toml_line(text, key), f"{key}: {reason}")

    def check_vars(table: object, where: str) -> dict[str, Any]:
        if not isinstance(table, dict):
            fail(where, "must be a table of variables")
        for name in table:
            if not name.isidentifier():
                fail(f"{where}.{name}", "a variable name must be letters, digits and '_'")
            if name in _RESERVED:
                fail(f"{where}.{name}", f"{name!r} is reserved, choose another name")
        return dict(table)

    for name in data:
        if name not in (BRAND, "layers"):
            fail(name, "unknown entry; persona.toml has a [brand] table and [layers.<name>] tables")
    brand = check_vars(data.get(BRAND, {}), BRAND)
    raw_layers = data.get("layers", {})
    if not isinstance(raw_layers, dict):
        fail("layers", "must hold tables, e.g. [layers.vip]")
    layers: dict[str, _Layer] = {}
    for name, spec in raw_layers.items():
        where = f"layers.{name}"
        if not _NAME.match(name) or name == BRAND:
            fail(where, "a layer name uses letters, digits, '_' and '-' ('brand' is reserved)")
        if not isinstance(spec, dict):
            fail(where, f"must be a table: [{where}]")
        for key in spec:
            if key not in ("tags", "rooms", "contacts", "vars"):
                fail(f"{where}.{key}", "unknown key; a layer has tags, rooms, contacts and vars")
        kinds: list[tuple[str, str, frozenset[str]]] = []
        for key, kind in (("contacts", "contact"), ("rooms", "room"), ("tags", "segment")):
            members = spec.get(key)
            if members is None:
                continue
            if not isinstance(members, list) or not all(
                isinstance(m, str) and m.strip() for m in members
            ):
                fail(f"{where}.{key}", 'must be a list of non-empty strings, e.g. ["vip"]')
            if members:
                kinds.append((key, kind, frozenset(members)))
        if not kinds:
            fail(where, "needs tags, rooms or contacts: whom does this layer apply to?")
        if len(kinds) > 1:
            fail(
                where,
                f"sets both {kinds[0][0]} and {kinds[1][0]}; a layer applies by exactly one "
                "of tags, rooms or contacts (make two layers)",
            )
        layers[name] = _Layer(
            name=name,
            kind=kinds[0][1],
            members=kinds[0][2],
            vars=check_vars(spec.get("vars", {}), f"{where}.vars"),
        )
    return brand, layers


# --------------------------------------------------------------------------- template files


@dataclass(frozen=True)
class _Split:
    samples: dict[str, Any]
    variants: list[tuple[int, str]]  # (line in the file where the variant starts, source)


def _is_toml(text: str) -> bool:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True


def _parse_samples(inner: str, path: str, first_line: int) -> dict[str, Any]:
    """Parse the body of the leading comment. See persona/README.md for the rule.

    1. If the whole body is TOML, it declares the samples.
    2. Otherwise, if its first line alone is not TOML, that line is a label ("示例变量",
       "vars:") and the remaining lines must be TOML.
    3. Otherwise the body is reported as invalid TOML.
    """
    try:
        samples = tomllib.loads(inner)
    except tomllib.TOMLDecodeError as whole:
        label, _, rest = inner.partition("\n")
        if _is_toml(label):
            raise _toml_error(whole, path, first_line, "the sample block") from whole
        try:
            samples = tomllib.loads(rest)
        except tomllib.TOMLDecodeError as exc:
            raise _toml_error(exc, path, first_line + 1, "the sample block") from exc
    for name in samples:
        if not name.isidentifier() or name in _RESERVED:
            raise PersonaError(
                path,
                first_line,
                f"sample variable {name!r} is not a usable name "
                "(letters, digits and '_'; 'voice' and Jinja's own names are reserved)",
            )
    return samples


def _split_source(text: str, path: str) -> _Split:
    """Split a template file into its sample block and variants, keeping file line numbers."""
    samples: dict[str, Any] = {}
    body, body_line = text, 1
    head = re.match(r"\s*\{#-?", text)
    if head:
        open_line = text.count("\n", 0, head.end()) + 1
        close = text.find("#}", head.end())
        if close < 0:
            raise PersonaError(path, open_line, "the comment opened here is never closed with #}")
        inner = text[head.end() : close].removesuffix("-")
        samples = _parse_samples(inner, path, open_line)
        start = close + 2
        newline = text.find("\n", start)
        end_of_line = len(text) if newline < 0 else newline + 1
        if not text[start:end_of_line].strip():
            start = end_of_line
        body, body_line = text[start:], text.count("\n", 0, start) + 1
    variants: list[tuple[int, str]] = []
    lines: list[str] = []
    start_line = body_line
    for offset, line in enumerate(body.split("\n")):
        if line.strip() == SEPARATOR:
            variants.append((start_line, "\n".join(lines)))
            lines, start_line = [], body_line + offset + 1
        else:
            lines.append(line)
    variants.append((start_line, "\n".join(lines)))
    return _Split(samples, variants)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SecurityError):
        return f"blocked by the sandbox: {exc}"
    if isinstance(exc, jinja2.UndefinedError):
        found = _UNDEFINED_NAME.match(str(exc))
        return f"undefined variable {found.group(1)!r}" if found else f"undefined value: {exc}"
    if isinstance(exc, jinja2.TemplateNotFound):
        return str(exc.message)
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"syntax error in {exc.filename or exc.name}:{exc.lineno}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _locate(exc: BaseException, variant: _Variant, env: _Env) -> tuple[int, str]:
    """File line of the variant where `exc` happened, and where inside a shared file if any."""
    frames = [(f.filename, f.lineno) for f in traceback.extract_tb(exc.__traceback__)]
    line: int | None = None
    via = ""
    for filename, lineno in frames:
        if lineno is None:
            continue
        if filename == variant.code_name:
            line, via = variant.line + lineno - 1, ""
        elif filename in env.shared_files and line is not None:
            via = f" (in {filename}:{lineno})"
    if line is None:
        line = variant.line
        found = _UNDEFINED_NAME.match(str(exc)) if isinstance(exc, jinja2.UndefinedError) else None
        if found:
            word = re.compile(r"\b" + re.escape(found.group(1)) + r"\b")
            for offset, text in enumerate(variant.source.split("\n")):
                if word.search(text):
                    line = variant.line + offset
                    break
    return line, via


def _first_use(ast: nodes.Template, name: str) -> int:
    lines = [n.lineno for n in ast.find_all(nodes.Name) if n.name == name and n.ctx == "load"]
    return min(lines, default=1)


def _load_entry(
    env: _Env,
    *,
    key: str,
    layer: str,
    path: str,
    text: str,
    context: Mapping[str, Any],
    voice: Any | None,
) -> _Entry:
    """Parse, check and trial-render every variant of one file; raise the first problem."""
    split = _split_source(text, path)
    allowed = set(env.globals) | set(context) | set(split.samples)
    trial = {**context, **split.samples}
    if voice is not None:
        allowed.add(VOICE_GLOBAL)
        trial[VOICE_GLOBAL] = voice
    several = len(split.variants) > 1
    variants: list[_Variant] = []
    for number, (line, source) in enumerate(split.variants, 1):
        what = f"variant {number}" if several else "the template"
        if not source.strip():
            hint = " (a --- line with nothing after it?)" if several else ""
            raise PersonaError(path, line, f"{what} is empty{hint}")
        code_name = f"{path}#{number}"
        try:
            ast = env.parse(source, key, code_name)
            code = env.compile(ast, key, code_name)
        except jinja2.TemplateSyntaxError as exc:
            raise PersonaError(
                path, line + (exc.lineno or 1) - 1, f"syntax error in {what}: {exc.message}"
            ) from exc
        missing = meta.find_undeclared_variables(ast) - allowed
        if missing:
            name = min(missing, key=lambda n: (_first_use(ast, n), n))
            raise PersonaError(
                path,
                line + _first_use(ast, name) - 1,
                f"{what} uses variable {name!r}, which has no sample value: declare it "
                f"in the {{# ... #}} block at the top of the file, e.g. {name} = ...",
            )
        template = env.template_class.from_code(env, code, env.make_globals(None))
        variant = _Variant(template, number, line, code_name, source)
        try:
            output = template.render(trial).strip()
        except Exception as exc:
            at, via = _locate(exc, variant, env)
            raise PersonaError(path, at, f"{what}: {_describe(exc)}{via}") from exc
        if not output:
            raise PersonaError(path, line, f"{what} renders empty text with the sample values")
        variants.append(variant)
    return _Entry(key, layer, path, text, split.samples, tuple(variants))


# --------------------------------------------------------------------------- loading


def _combine(errors: Sequence[PersonaError]) -> PersonaError:
    if len(errors) == 1:
        return errors[0]
    first = errors[0]
    more = "\n".join(f"  {err}" for err in errors[1:])
    reason = f"{first.reason}\nand {len(errors) - 1} more problem(s):\n{more}"
    return PersonaError(first.file, first.line, reason, errors=errors)


def _voice_module(voice: jinja2.Template, variables: Mapping[str, Any]) -> Any:
    return voice.make_module(dict(variables))


def _build(
    root: Path, label: str, paths: Iterable[str], previous: _State | None
) -> tuple[_State | None, list[PersonaError]]:
    """Load a persona folder. Returns (None, errors) when the whole load must be refused."""

    def shown(rel: str) -> str:
        return f"{label}/{rel}"

    files = _classify(paths)
    try:
        config_text = _read(root, CONFIG_FILE, label) if files.config else ""
        brand, layers = _parse_config(config_text, shown(CONFIG_FILE))
        shared = {rel: _read(root, rel, label) for rel in files.shared}
    except PersonaError as err:
        return None, [err]
    env = _make_env(brand, shared, label)
    for rel in shared:
        try:
            env.get_template(rel)
        except jinja2.TemplateSyntaxError as exc:
            return None, [PersonaError(shown(rel), exc.lineno, f"syntax error: {exc.message}")]
    voice = env.get_template(VOICE_FILE) if VOICE_FILE in shared else None
    contexts: dict[str, Mapping[str, Any]] = {BRAND: {}}
    contexts.update((name, layer.vars) for name, layer in layers.items())
    modules: dict[str, Any] = {}
    for name, context in contexts.items():
        if voice is None:
            modules[name] = None
            continue
        try:
            modules[name] = _voice_module(voice, context)
        except Exception as exc:
            frames = [
                f.lineno
                for f in traceback.extract_tb(exc.__traceback__)
                if f.filename == shown(VOICE_FILE)
            ]
            which = "" if name == BRAND else f" with the vars of layer {name!r}"
            return None, [
                PersonaError(
                    shown(VOICE_FILE), frames[-1] if frames else None, f"{_describe(exc)}{which}"
                )
            ]

    errors = [PersonaError(shown(rel), None, reason) for rel, reason in files.misplaced]
    entries: dict[tuple[str, str], _Entry] = {}
    refused = False

    def load(layer: str, key: str, rel: str) -> None:
        nonlocal refused
        path = shown(rel)
        kwargs: dict[str, Any] = {
            "key": key,
            "layer": layer,
            "path": path,
            "context": contexts[layer],
            "voice": modules[layer],
        }
        try:
            entries[layer, key] = _load_entry(env, text=_read(root, rel, label), **kwargs)
            return
        except PersonaError as err:
            failure = err
        old = previous.entries.get((layer, key)) if previous else None
        if old is None or old.path != path:
            errors.append(failure)
            return
        try:
            entries[layer, key] = _load_entry(env, text=old.source, **kwargs)
        except PersonaError:
            refused = True  # the last good version broke too: persona.toml or a shared file did it
            errors.append(failure)
            return
        errors.append(
            PersonaError(
                failure.file, failure.line, f"{failure.reason}; the last good version keeps serving"
            )
        )

    for key, rel in files.bases:
        load(BRAND, key, rel)
    for layer, key, rel in files.overrides:
        if layer not in layers:
            errors.append(
                PersonaError(
                    shown(rel),
                    None,
                    f"unknown layer {layer!r}: add a [layers.{layer}] table to {CONFIG_FILE}",
                )
            )
        elif (BRAND, key) not in entries:
            errors.append(
                PersonaError(
                    shown(rel),
                    None,
                    f"overrides {key!r}, which has no working base file {shown(key + '.j2')}",
                )
            )
        else:
            load(layer, key, rel)
    if refused:
        errors.insert(
            0,
            PersonaError(
                label,
                None,
                "reload refused: the change breaks templates that were working; "
                "the previous persona keeps serving",
            ),
        )
        return None, errors
    fingerprint = (
        config_text,
        tuple(sorted(shared.items())),
        tuple(sorted((layer, key, e.source) for (layer, key), e in entries.items())),
    )
    return _State(env, brand, layers, entries, voice, fingerprint), errors


# --------------------------------------------------------------------------- public API


class Persona:
    """All persona templates of one folder, ready to render.

    `Persona(root)` loads and trial-renders everything and raises PersonaError if anything is
    broken. `render()` picks a variant (never the same one twice in a row in one chat),
    resolves layers and caps the length. `reload_if_changed()` is meant to be polled.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_chars: int = 1500,
        rng: random.Random | None = None,
        variant_memory: int = VARIANT_MEMORY,
    ) -> None:
        if max_chars < 2:
            raise ValueError("max_chars must be at least 2")
        self._root = Path(root)
        self._label = self._root.resolve().name or str(root)
        self._max_chars = max_chars
        self._rng = rng if rng is not None else random.Random()
        self._variant_memory = variant_memory
        self._last: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._version = 1
        if not self._root.is_dir():
            raise PersonaError(str(root), None, "persona folder not found")
        self._snapshot = _scan(self._root)
        state, errors = _build(self._root, self._label, self._snapshot, None)
        if errors or state is None:
            raise _combine(errors)
        self._state = state
        log.info("persona loaded: %d keys, %d layers", len(self.keys()), len(state.layers))

    # ---------------------------------------------------------------- queries

    @property
    def version(self) -> int:
        """1 after loading; +1 on every reload that changed what is served."""
        return self._version

    def keys(self) -> list[str]:
        """Sorted keys of the base templates ("plugin/name")."""
        return sorted(key for layer, key in self._state.entries if layer == BRAND)

    def layer_names(self) -> list[str]:
        """ "brand" first, then the layers of persona.toml in file order."""
        return [BRAND, *self._state.layers]

    def has(self, key: str) -> bool:
        return (BRAND, key) in self._state.entries

    def file_for(self, key: str, layer: str = BRAND) -> str:
        """The file that serves `key` in `layer` (its override, else the base file)."""
        self._layer(layer)
        entry = self._state.entries.get((layer, key)) or self._base(key)
        return entry.path

    def require(self, keys: Iterable[str], *, owner: str) -> None:
        """Fail fast when a plugin needs keys that have no template file."""
        missing = [key for key in keys if not self.has(key)]
        if not missing:
            return
        paths = [self._expected_path(key) for key in missing]
        listed = ", ".join(f"{key!r} ({path})" for key, path in zip(missing, paths, strict=True))
        raise PersonaError(
            paths[0], None, f"plugin {owner!r} needs persona key(s) with no template: {listed}"
        )

    def layers_for(
        self, *, contact_id: str | None, room_id: str | None, tags: Iterable[str]
    ) -> list[str]:
        """Layers that apply, most specific first: contact, room, segments (by tag), brand.

        Within one kind, layers keep their persona.toml order.
        """
        if isinstance(tags, str):
            raise TypeError("tags must be an iterable of tags, not one str")
        tagset = set(tags)
        layers = self._state.layers.values()
        return [
            *(lay.name for lay in layers if lay.kind == "contact" and contact_id in lay.members),
            *(lay.name for lay in layers if lay.kind == "room" and room_id in lay.members),
            *(lay.name for lay in layers if lay.kind == "segment" and tagset & lay.members),
            BRAND,
        ]

    # ---------------------------------------------------------------- rendering

    def render(
        self,
        key: str,
        /,
        *,
        chat_id: str,
        contact_id: str | None = None,
        room_id: str | None = None,
        tags: Iterable[str] = (),
        **variables: object,
    ) -> Rendered:
        """Render `key` for one chat. Call variables win over layer vars over brand vars."""
        state = self._state
        base = self._base(key)
        chain = self.layers_for(contact_id=contact_id, room_id=room_id, tags=tags)
        served = (state.entries[lay, key] for lay in chain if (lay, key) in state.entries)
        entry = next(served, base)
        context = self._layer_vars(state, chain)
        context.update(variables)
        index = self._pick(chat_id, key, len(entry.variants))
        rendered = self._render_variant(state, entry, index, tuple(chain), context)
        if len(entry.variants) > 1:
            self._remember(chat_id, key, index)
        return rendered

    def render_sample(self, key: str, layer: str = BRAND) -> list[Rendered]:
        """Every variant of `key` as `layer` serves it, rendered with its sample values."""
        state = self._state
        self._layer(layer)
        entry = state.entries.get((layer, key)) or self._base(key)
        chain = (BRAND,) if layer == BRAND else (layer, BRAND)
        context = self._layer_vars(state, chain)
        context.update(entry.samples)
        return [
            self._render_variant(state, entry, index, chain, context)
            for index in range(len(entry.variants))
        ]

    # ---------------------------------------------------------------- hot reload

    def reload_if_changed(self) -> list[PersonaError]:
        """Poll the folder; reload what changed. Returns the problems found (or [])."""
        try:
            snapshot = _scan(self._root)
        except OSError as exc:
            return [PersonaError(self._label, None, f"cannot read persona folder: {exc}")]
        if snapshot == self._snapshot:
            return []
        self._snapshot = snapshot
        try:
            state, errors = _build(self._root, self._label, snapshot, self._state)
        except Exception as exc:  # a bug here must not stop a running bot
            log.exception("persona reload failed")
            return [PersonaError(self._label, None, f"reload failed: {exc!r}")]
        for err in errors:
            log.warning("persona: %s", err)
        if state is None:
            log.warning("persona reload refused; version %d keeps serving", self._version)
            return errors
        changed = state.fingerprint != self._state.fingerprint
        self._state = state
        if changed:
            self._version += 1
            log.info("persona reloaded: version %d, %d keys", self._version, len(self.keys()))
        return errors

    # ---------------------------------------------------------------- internals

    def _expected_path(self, key: str) -> str:
        return f"{self._label}/{key}.j2"

    def _base(self, key: str) -> _Entry:
        entry = self._state.entries.get((BRAND, key))
        if entry is None:
            raise UnknownKeyError(
                self._expected_path(key), None, f"unknown persona key {key!r}: no template file"
            )
        return entry

    def _layer(self, layer: str) -> None:
        if layer != BRAND and layer not in self._state.layers:
            raise PersonaError(f"{self._label}/{CONFIG_FILE}", None, f"unknown layer {layer!r}")

    @staticmethod
    def _layer_vars(state: _State, chain: Sequence[str]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for layer in reversed(chain):
            if layer != BRAND:
                merged.update(state.layers[layer].vars)
        return merged

    def _voice_for(self, state: _State, chain: tuple[str, ...]) -> Any:
        if state.voice is None:
            return None
        module = state.modules.get(chain)
        if module is None:
            if len(state.modules) >= _VOICE_CACHE:
                state.modules.clear()
            module = _voice_module(state.voice, self._layer_vars(state, chain))
            state.modules[chain] = module
        return module

    def _pick(self, chat_id: str, key: str, count: int) -> int:
        if count == 1:
            return 0
        last = self._last.get((chat_id, key))
        if last is None or last >= count:
            return self._rng.randrange(count)
        index = self._rng.randrange(count - 1)
        return index + 1 if index >= last else index

    def _remember(self, chat_id: str, key: str, index: int) -> None:
        memory = self._last
        memory[chat_id, key] = index
        memory.move_to_end((chat_id, key))
        while len(memory) > self._variant_memory:
            memory.popitem(last=False)

    def _render_variant(
        self,
        state: _State,
        entry: _Entry,
        index: int,
        chain: tuple[str, ...],
        context: dict[str, Any],
    ) -> Rendered:
        variant = entry.variants[index]
        where = f"{entry.key} ({entry.layer}, variant {variant.number})"
        try:
            voice = self._voice_for(state, chain)
            if voice is not None:
                context = {**context, VOICE_GLOBAL: voice}
            text = variant.template.render(context).strip()
        except Exception as exc:
            line, via = _locate(exc, variant, state.env)
            raise PersonaError(entry.path, line, f"{where}: {_describe(exc)}{via}") from exc
        if not text:
            raise PersonaError(entry.path, variant.line, f"{where}: rendered empty text")
        if len(text) > self._max_chars:
            log.warning(
                "persona %s rendered %d chars; cut to %d", where, len(text), self._max_chars
            )
            text = text[: self._max_chars - 1] + ELLIPSIS
        log.debug("persona %s: %r", where, text)
        return Rendered(key=entry.key, text=text, layer=entry.layer, variant=index)
