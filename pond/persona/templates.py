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
from pond.persona.errors import PersonaError, say
from pond.persona.files import _RESERVED, VOICE_GLOBAL, _toml_error
from pond.persona.limits import RenderLimitError
from pond.persona.sandbox import _Env
from pond.problems import Problem

SEPARATOR = "---"

_UNDEFINED_NAME = re.compile(r"'([^']+)' is undefined\Z")
_TOO_DEEP = (
    "{what} is nested too deeply to compile "
    "(too many brackets, filters, ifs or loops inside one another)"
)
# Jinja's syntax errors (English) -> catalogue codes with the parts they name. The first
# match wins; an unknown message is kept as a trailing detail.
_SYNTAX: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Encountered unknown tag '(?P<tag>[^']+)'\. Jinja was looking for the following "
                r"tags: (?:'[^']+' or )*'(?P<end>end\w+)'.*The innermost block that needs to "
                r"be closed is '(?P<block>[^']+)'"), "wrong_end"),
    (re.compile(r"Unexpected end of template\. Jinja was looking for the following tags: "
                r"(?:'[^']+' or )*'(?P<end>end\w+)'.*The innermost block that needs to be closed "
                r"is '(?P<block>[^']+)'"), "unclosed_block"),
    (re.compile(r"Encountered unknown tag '(?P<tag>[^']+)'"), "unknown_tag"),
    (re.compile(r"unexpected end of template, expected 'end of print statement'"),
     "unclosed_variable"),
    (re.compile(r"unexpected end of template, expected 'end of statement block'"),
     "unclosed_statement"),
    (re.compile(r"Missing end of comment tag"), "unclosed_comment"),
    (re.compile(r"unexpected end of template"), "unexpected_end"),
    (re.compile(r"expected token '(?P<want>[^']+)', got '(?P<got>[^']*)'"), "expected_token"),
    (re.compile(r"Expected an expression, got '(?P<got>[^']*)'"), "expected_expression"),
    (re.compile(r"unexpected char '(?P<char>.)'"), "unexpected_char"),
    (re.compile(r"unexpected '(?P<got>[^']*)'"), "unexpected_token"),
)  # fmt: skip
_TOKENS = {"end of print statement": "}}", "end of statement block": "%}"}


def syntax_problem(message: str) -> Problem:
    """What a Jinja syntax error means, in the catalogue's words (Chinese for operators)."""
    for pattern, code in _SYNTAX:
        found = pattern.search(message)
        if found:
            values = {k: _TOKENS.get(v, v) for k, v in found.groupdict().items()}
            if code == "expected_token" and values["want"] == "name":
                code = "expected_name"  # a filter or attribute name is missing
            return say(f"syntax_{code}", "{detail}", detail=message, **values)
    return say("syntax_unknown", "{detail}", detail=message)


def _what(number: int, several: bool) -> Problem:
    if several:
        return say("variant", "variant {n}", n=number)
    return say("the_template", "the template")


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
        raise PersonaError(
            path, first_line, say("samples_too_deep", "the sample block is nested too deeply")
        ) from None


def _parse_sample_toml(inner: str, path: str, first_line: int) -> dict[str, Any]:
    try:
        samples = tomllib.loads(inner)
    except tomllib.TOMLDecodeError as whole:
        label, _, rest = inner.partition("\n")
        if _is_toml(label):
            raise _toml_error(
                whole, path, first_line, say("samples", "the sample block")
            ) from whole
        try:
            samples = tomllib.loads(rest)
        except tomllib.TOMLDecodeError as exc:
            raise _toml_error(
                exc, path, first_line + 1, say("samples", "the sample block")
            ) from exc
    for name in samples:
        if not name.isidentifier() or name in _RESERVED:
            raise PersonaError(
                path,
                first_line,
                say(
                    "sample_name",
                    "sample variable {name!r} is not a usable name "
                    "(letters, digits and '_'; 'voice' and Jinja's own names are reserved)",
                    name=name,
                ),
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
            raise PersonaError(
                path,
                open_line,
                say("comment_open", "the comment opened here is never closed with #}}"),
            )
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


def _describe(exc: BaseException) -> Problem:
    if isinstance(exc, Problem):
        return exc
    detail: Problem | str = exc.problem if isinstance(exc, RenderLimitError) else str(exc)
    if isinstance(exc, SecurityError):
        if isinstance(detail, Problem):  # our own limits say what was too much
            return say("limit", "stopped by the sandbox: {detail}", detail=detail)
        return say("sandbox", "blocked by the sandbox: {detail}", detail=detail)
    if isinstance(exc, jinja2.UndefinedError):
        found = _UNDEFINED_NAME.match(str(exc))
        if found:
            return say("undefined", "undefined variable {name!r}", name=found.group(1))
        return say("undefined_value", "undefined value: {detail}", detail=detail)
    if isinstance(exc, jinja2.TemplateNotFound):
        return say(
            "include_denied",
            "cannot import or include {name!r}: only shared files such as "
            "'_voice.j2' or '<plugin>/_<name>.j2' can be used",
            name=exc.name,
        )
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return say(
            "syntax_in",
            "syntax error in {file}:{line}: {detail}",
            file=exc.filename or exc.name,
            line=exc.lineno,
            detail=syntax_problem(exc.message or ""),
        )
    if isinstance(exc, RecursionError):
        return say("recursion", "nests too deeply (a macro, include or loop that calls itself?)")
    if isinstance(exc, MemoryError):
        return say("memory", "needs more memory than the bot has (a huge string or list?)")
    if isinstance(detail, Problem):
        return detail
    return say("failed", "{kind}: {detail}", kind=type(exc).__name__, detail=detail)


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
            via = f" ({filename}:{lineno})"
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
        what = _what(number, several)
        if not source.strip():
            empty = (
                say(
                    "empty_variant",
                    "{what} is empty (a --- line with nothing after it?)",
                    what=what,
                )
                if several
                else say("empty", "{what} is empty", what=what)
            )
            raise PersonaError(path, line, empty)
        code_name = f"{path}#{number}"
        digest = cache.digest(brand or {}, key, code_name, source) if cache else ""
        cached = cache.get(digest) if cache else None
        if cached is not None and not cached[1] - allowed:
            code, undeclared = cached
        else:
            code, undeclared = _compile(
                env, key, path, line, what, code_name, source, allowed, several
            )
            if cache is not None:
                cache.put(digest, code, set(undeclared))
        template = env.template_class.from_code(env, code, env.make_globals(None))
        variant = _Variant(template, number, line, code_name, source)
        try:
            output = template.render(trial).strip()
        except Exception as exc:
            at, via = _locate(exc, variant, env)
            raise PersonaError(
                path,
                at,
                say("render", "{what}: {detail}{via}", what=what, detail=_describe(exc), via=via),
            ) from exc
        if not output:
            raise PersonaError(
                path,
                line,
                say("renders_empty", "{what} renders empty text with the sample values", what=what),
            )
        variants.append(variant)
    return _Entry(key, layer, path, text, split.samples, tuple(variants))


def _compile(
    env: _Env,
    key: str,
    path: str,
    line: int,
    what: Problem,
    code_name: str,
    source: str,
    allowed: set[str],
    several: bool,
) -> tuple[CodeType, frozenset[str]]:
    """Parse and compile one variant; refuse a syntax error or a variable with no sample."""
    try:
        ast = env.parse(source, key, code_name)
        undeclared = meta.find_undeclared_variables(ast)
        # Compiling costs as much as the variable check: a variant refused for a variable
        # with no sample (1,300 of them, in the red-team set) is not compiled at all.
        code = None if undeclared - allowed else env.compile(ast, key, code_name)
    except jinja2.TemplateSyntaxError as exc:
        at = line + (exc.lineno or 1) - 1
        raise PersonaError(
            path,
            at,
            say(
                "syntax_variant" if several else "syntax",
                "syntax error in {what} (line {line}): {detail}",
                what=what,
                line=at,
                detail=syntax_problem(exc.message or ""),
            ),
        ) from exc
    except (RecursionError, MemoryError, SyntaxError) as exc:
        # Jinja's parser recurses per bracket, filter and block; Python's compiler
        # limits nested blocks and indentation of the code Jinja generates.
        raise PersonaError(path, line, say("too_deep", _TOO_DEEP, what=what)) from exc
    missing = undeclared - allowed
    if missing:
        first = _first_uses(ast, missing)
        name = min(missing, key=lambda n: (first.get(n, 1), n))
        raise PersonaError(
            path,
            line + first.get(name, 1) - 1,
            say(
                "no_sample",
                "{what} uses variable {name!r}, which has no sample value: declare it "
                "in the {{# ... #}} block at the top of the file, e.g. {name} = ...",
                what=what,
                name=name,
            ),
        )
    assert code is not None  # compiled above whenever no variable was missing
    return code, frozenset(undeclared)
