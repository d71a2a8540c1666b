"""Checks made before a template builds text: sizes, widths, format strings, what may print.

Jinja's sandbox stops templates from reaching Python internals but not from asking for a
billion spaces (`|center(999999999)`, `'%0999999999d' % 1`, `'{:>999999999}'.format(1)`).
The functions here estimate what an operation would build *before* it runs and refuse it
when it is over the limits of `pond.persona.limits`; results are checked and charged after.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Callable, Iterable, Iterator
from datetime import date, time, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from jinja2.filters import make_attrgetter
from jinja2.runtime import LoopContext, Macro, Undefined
from jinja2.utils import Namespace, pass_environment

from pond.persona.errors import say
from pond.persona.limits import RenderLimitError, check_value, current, size_of
from pond.problems import Problem

_Fn = Callable[..., Any]

# --------------------------------------------------------------------------- text and sizes


def check_input(value: object, what: str) -> None:
    """Refuse a value a filter or format would read when it is over the size limit."""
    budget = current()
    if budget.measure(value) > budget.limits.value:
        raise RenderLimitError(
            "input",
            "{what} was given more than {limit} characters",
            what=what,
            limit=budget.limits.value,
        )


def text_of(value: object, what: str) -> str:
    """`str(value)`, refused before it is built when it would be too long."""
    if isinstance(value, str):
        return value
    limit = current().limits.value
    if size_of(value, limit) > limit:
        raise RenderLimitError(
            "text_of",
            "{what} would turn a value of over {limit} characters into text",
            what=what,
            limit=limit,
        )
    return str(value)


def check_pad(width: object, what: str, have: int = 0) -> None:
    """Widths, paddings and precisions: small, or no wider than the text already is."""
    pad = current().limits.pad
    if isinstance(width, str):
        width = len(width)
    if isinstance(width, int) and width > max(pad, have):
        raise RenderLimitError(
            "width",
            "{what}: a width of {width} is over the limit of {pad}",
            what=what,
            width=width,
            pad=pad,
        )


def check_estimate(estimate: int, what: str) -> None:
    limit = current().limits.value
    if estimate > limit:
        raise RenderLimitError(
            "chars", "{what} would build more than {limit} characters", what=what, limit=limit
        )


_PERCENT_FIELD = re.compile(r"%(?:\([^)]*\))?([^a-zA-Z%]*)[a-zA-Z%]")
_NUMBER = re.compile(r"\d+")


def check_percent(fmt: str, args: object) -> None:
    """`'%05d' % n` and the `format` filter: no `*` widths, no width or precision over the
    padding limit, no argument over the size limit, and no more fields than the result can
    hold (`'%(a)s' * 5000 % {'a': long_text}` prints the same argument 5000 times)."""
    fields = _PERCENT_FIELD.findall(fmt)
    widest = 0
    for flags in fields:
        if "*" in flags:
            raise RenderLimitError(
                "percent_star", "'%' formatting with a '*' width is not allowed in templates"
            )
        for number in _NUMBER.findall(flags):
            check_pad(int(number), "%")
            widest = max(widest, int(number))
    check_input(args, "%")
    if fields:
        each = widest + size_of(args, current().limits.value)
        check_estimate(len(fmt) + len(fields) * each, "%")


def check_format_spec(spec: str) -> None:
    for number in _NUMBER.findall(spec):
        check_pad(int(number), "str.format")


def bounded_join(sep: str, items: Iterable[object], what: str, *, strict: bool) -> str:
    """`sep.join(items)`, stopping as soon as the result would be over the size limit.
    `strict` keeps `str.join`'s rule that every item is already text."""
    budget = current()
    limit = budget.limits.value
    parts: list[str] = []
    total = 0
    for item in items:
        if strict and not isinstance(item, str):
            raise TypeError(f"join expects text items, got {type(item).__name__}")
        text = text_of(item, what)
        total += len(text) + len(sep)
        if total > limit:
            raise RenderLimitError(
                "chars", "{what} would build more than {limit} characters", what=what, limit=limit
            )
        parts.append(text)
    budget.charge(total)
    return sep.join(parts)


def guarded_items(items: Iterable[Any]) -> Iterator[Any]:
    """Iterate with one step per item: loops, lazy filters, recursive loop calls."""
    for item in items:
        current().tick()
        yield item


def checked_result(result: Any, what: str) -> Any:
    """Check a value an operation built; lazy results (map, select, batch ...) are checked
    item by item as they are consumed."""
    if isinstance(result, Iterator) and not isinstance(result, str | Undefined):
        return _checked_items(result, what)
    check_value(result, what)
    return result


def _checked_items(items: Iterator[Any], what: str) -> Iterator[Any]:
    for item in items:
        current().tick()
        check_value(item, what)
        yield item


# --------------------------------------------------------------------------- output


_PRINTABLE = (str, int, float, Decimal, Fraction, date, time, timedelta)


def finalize(value: Any) -> Any:
    """What `{{ ... }}` may print: text, numbers, dates and durations; never functions,
    classes, the loop object, containers, None or True/False."""
    if isinstance(value, Undefined):
        return value  # StrictUndefined raises its own error when printed
    if isinstance(value, bool) or value is None or not isinstance(value, _PRINTABLE):
        raise RenderLimitError(
            "print",
            "{{{{ ... }}}} cannot print {kind}: only text, numbers and dates may reach a customer",
            kind=_kind(value),
        )
    check_value(value, "{{ }}")
    return value


def _kind(value: object) -> Problem:
    if value is None:
        return say("kind_none", "None (an empty value)")
    if isinstance(value, bool):
        return say("kind_bool", "{value} (a yes/no value)", value=value)
    if isinstance(value, LoopContext):
        return say("kind_loop", "the loop object (use loop.index or loop.first)")
    if isinstance(value, Macro):
        return say(
            "kind_macro",
            "the macro {name!r} without calling it (write {name}())",
            name=value.name,
        )
    if isinstance(value, type):
        return say("kind_type", "the type {name!r}", name=value.__name__)
    if callable(value):
        return say("kind_function", "a function")
    if isinstance(value, list | tuple | set | frozenset | dict):
        return say(
            "kind_container",
            "a whole {name} (use |join or pick one item)",
            name=type(value).__name__,
        )
    if isinstance(value, Namespace):
        return say("kind_namespace", "a namespace")
    return say("kind_object", "a {name} object", name=type(value).__name__)


# --------------------------------------------------------------------------- calls


def check_call(obj: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Fn | None:
    """Refuse or pre-check calls of built-in methods that can amplify; returns a replacement
    to call instead, or None to call `obj` itself."""
    if not isinstance(obj, types.BuiltinMethodType | types.MethodType):
        return None  # Markup's methods are Python methods wrapping str's
    owner = obj.__self__
    name = obj.__name__
    what = f"{type(owner).__name__}.{name}()"
    if isinstance(owner, int) and name in {"to_bytes", "from_bytes"}:
        raise RenderLimitError("unavailable", "{what} is not available in templates", what=what)
    if not isinstance(owner, str):
        return None
    if name in {"encode", "translate", "maketrans"}:
        raise RenderLimitError("unavailable", "{what} is not available in templates", what=what)
    first = args[0] if args else None
    if name in {"center", "ljust", "rjust", "zfill"}:
        check_pad(kwargs.get("width", first), what, len(owner))
    elif name == "expandtabs":
        size = kwargs.get("tabsize", first if first is not None else 8)
        check_pad(size, what)
        if isinstance(size, int):
            check_estimate(len(owner) + owner.count("\t") * size, what)
    elif name == "replace":
        check_estimate(_replace_estimate(owner, *args, **kwargs), what)
    elif name == "join":
        return lambda items: bounded_join(str(owner), items, what, strict=True)
    return None


def _replace_estimate(text: str, old: object, new: object, count: object = -1) -> int:
    if not isinstance(old, str) or not isinstance(new, str):
        return len(text)  # str.replace raises TypeError by itself
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(0, len(new) - len(old))


# --------------------------------------------------------------------------- filters


def _center(value: object, width: object = 80, *_: object) -> None:
    check_pad(width, "|center", len(text_of(value, "|center")))


def _indent(value: object, width: object = 4, *_: object, **__: object) -> None:
    text = text_of(value, "|indent")
    check_pad(width, "|indent")
    step = len(width) if isinstance(width, str) else width
    if isinstance(step, int):
        check_estimate(len(text) + (text.count("\n") + 2) * max(step, 0), "|indent")


def _wordwrap(value: object, width: object = 79, *args: object, **kwargs: object) -> None:
    text = text_of(value, "|wordwrap")
    _heavy(text, "|wordwrap")
    wrap = kwargs.get("wrapstring", args[1] if len(args) > 1 else None)
    sep = len(wrap) if isinstance(wrap, str) else 1
    check_pad(sep, "|wordwrap")
    check_estimate(len(text) * (1 + sep), "|wordwrap")


def _replace(value: object, old: object = "", new: object = "", count: object = None) -> None:
    text = text_of(value, "|replace")
    check_estimate(_replace_estimate(text, old, new, -1 if count is None else count), "|replace")


def _format(value: object, *args: object, **kwargs: object) -> None:
    check_percent(text_of(value, "|format"), kwargs or args)


def _batch(value: object, linecount: object = 1, fill_with: object = None) -> None:
    if fill_with is not None and isinstance(linecount, int):
        _count(linecount, "|batch")


def _slice(value: object, slices: object = 1, *_: object) -> None:
    if isinstance(slices, int):
        _count(slices, "|slice")


def _round(value: object, precision: object = 0, *_: object) -> None:
    if isinstance(precision, int) and abs(precision) > 100:
        raise RenderLimitError(
            "round",
            "|round: a precision of {precision} is over the limit of 100",
            precision=precision,
        )


def _int(value: object, *_: object, **__: object) -> None:
    if isinstance(value, Decimal) and value.is_finite() and value.adjusted() > 4000:
        raise RenderLimitError("int", "|int: the number has too many digits")


def _tojson(value: object, indent: object = None) -> None:
    check_pad(indent, "|tojson")


def _text_heavy(name: str) -> Callable[..., None]:
    def check(value: object, *_: object, **__: object) -> None:
        _heavy(text_of(value, f"|{name}"), f"|{name}")

    return check


def _heavy(text: str, what: str) -> None:
    """Filters that run regular expressions or Python loops per word get shorter input."""
    limit = current().limits.value // 5
    if len(text) > limit:
        raise RenderLimitError(
            "input", "{what} was given more than {limit} characters", what=what, limit=limit
        )


def _count(n: int, what: str) -> None:
    limit = current().limits.range
    if n > limit:
        raise RenderLimitError(
            "count", "{what}: {n} is over the limit of {limit}", what=what, n=n, limit=limit
        )


PRECHECKS: dict[str, Callable[..., None]] = {
    "center": _center,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "replace": _replace,
    "format": _format,
    "batch": _batch,
    "slice": _slice,
    "round": _round,
    "int": _int,
    "tojson": _tojson,
    "urlize": _text_heavy("urlize"),
    "striptags": _text_heavy("striptags"),
    "title": _text_heavy("title"),
    "wordcount": _text_heavy("wordcount"),
}


@pass_environment
def join_filter(
    environment: Any, value: Iterable[Any], d: object = "", attribute: str | int | None = None
) -> str:
    """Jinja's `join` (without autoescape), built piece by piece within the size limit."""
    items: Iterable[Any] = value
    if attribute is not None:
        items = map(make_attrgetter(environment, attribute), value)
    return bounded_join(text_of(d, "|join"), guarded_items(items), "|join", strict=False)


@pass_environment
def sum_filter(
    environment: Any, iterable: Iterable[Any], attribute: str | int | None = None, start: Any = 0
) -> Any:
    """Jinja's `sum`, one guarded `+` per item: adding up lists or text stays within limits."""
    items: Iterable[Any] = iterable
    if attribute is not None:
        items = map(make_attrgetter(environment, attribute), iterable)
    total = start
    for item in guarded_items(items):
        total = environment.call_binop(None, "+", total, item)
    return total


def guard_filter(name: str, func: _Fn, skip: int) -> _Fn:
    """One step per call, inputs checked, the named pre-check, the result checked."""
    precheck = PRECHECKS.get(name)
    what = f"|{name}"

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        current().tick()
        given = args[skip:]
        for arg in (*given, *kwargs.values()):
            check_input(arg, what)
        if precheck is not None:
            precheck(*given, **kwargs)
        return checked_result(func(*args, **kwargs), what)

    return guarded


def guard_test(func: _Fn) -> _Fn:
    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        current().tick()
        return func(*args, **kwargs)

    return guarded
