"""One template file: its sample header, its `---` variants, and loading it as an entry.

`_load_entry` parses, checks and trial-renders every variant of one file; `_describe` and
`_locate` turn a Jinja2 exception into a reason and a line of that file.
"""

from __future__ import annotations

import re
import tomllib
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from types import CodeType
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError

from pond.persona.codecache import CodeCache
from pond.persona.errors import PersonaError
from pond.persona.files import _RESERVED, VOICE_GLOBAL, _toml_error
from pond.persona.sandbox import _Env

SEPARATOR = "---"

_UNDEFINED_NAME = re.compile(r"'([^']+)' is undefined\Z")
_TOO_DEEP = (
    "is nested too deeply to compile (too many brackets, filters, ifs or loops inside one another)"
)


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


@dataclass(frozen=True)
class _Split:
    samples: dict[str, Any]
    variants: list[tuple[int, str]]  # (line in the file where the variant starts, source)


def _is_toml(text: str) -> bool:
    try:
        tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
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
        return _parse_sample_toml(inner, path, first_line)
    except RecursionError:  # tomllib recurses into nested arrays and tables
        raise PersonaError(path, first_line, "the sample block is nested too deeply") from None


def _parse_sample_toml(inner: str, path: str, first_line: int) -> dict[str, Any]:
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
    if isinstance(exc, RecursionError):
        return "nests too deeply (a macro, include or loop that calls itself?)"
    if isinstance(exc, MemoryError):
        return "needs more memory than the bot has (a huge string or list?)"
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


def _first_uses(ast: nodes.Template, names: set[str]) -> dict[str, int]:
    """Line of the first use of each of `names`, in one walk of the template."""
    lines: dict[str, int] = {}
    for n in ast.find_all(nodes.Name):
        if n.ctx == "load" and n.name in names:
            lines[n.name] = min(lines.get(n.name, n.lineno), n.lineno)
    return lines


def _load_entry(
    env: _Env,
    *,
    key: str,
    layer: str,
    path: str,
    text: str,
    context: Mapping[str, Any],
    voice: Any | None,
    cache: CodeCache | None = None,
    brand: Mapping[str, Any] | None = None,
) -> _Entry:
    """Parse, check and trial-render every variant of one file; raise the first problem.
    With a `cache`, a variant compiled at an earlier start is not parsed or compiled again
    (its variable check and trial render still run)."""
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
        digest = cache.digest(brand or {}, key, code_name, source) if cache else ""
        cached = cache.get(digest) if cache else None
        if cached is not None and not cached[1] - allowed:
            code, undeclared = cached
        else:
            code, undeclared = _compile(env, key, path, line, what, code_name, source, allowed)
            if cache is not None:
                cache.put(digest, code, set(undeclared))
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


def _compile(
    env: _Env,
    key: str,
    path: str,
    line: int,
    what: str,
    code_name: str,
    source: str,
    allowed: set[str],
) -> tuple[CodeType, frozenset[str]]:
    """Parse and compile one variant; refuse a syntax error or a variable with no sample."""
    try:
        ast = env.parse(source, key, code_name)
        code = env.compile(ast, key, code_name)
        undeclared = meta.find_undeclared_variables(ast)
    except jinja2.TemplateSyntaxError as exc:
        raise PersonaError(
            path, line + (exc.lineno or 1) - 1, f"syntax error in {what}: {exc.message}"
        ) from exc
    except (RecursionError, MemoryError, SyntaxError) as exc:
        # Jinja's parser recurses per bracket, filter and block; Python's compiler
        # limits nested blocks and indentation of the code Jinja generates.
        raise PersonaError(path, line, f"{what} {_TOO_DEEP}") from exc
    missing = undeclared - allowed
    if missing:
        first = _first_uses(ast, missing)
        name = min(missing, key=lambda n: (first.get(n, 1), n))
        raise PersonaError(
            path,
            line + first.get(name, 1) - 1,
            f"{what} uses variable {name!r}, which has no sample value: declare it "
            f"in the {{# ... #}} block at the top of the file, e.g. {name} = ...",
        )
    return code, frozenset(undeclared)
