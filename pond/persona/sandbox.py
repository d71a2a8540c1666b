"""The Jinja2 sandbox that persona templates run in.

`_Env` is Jinja's immutable sandbox plus limits on work and size (pond.persona.limits): every
call, filter, test, lookup, loop iteration and `+ * ** % ~` takes a step and is checked for
what it would build; `{{ ... }}` prints only text, numbers and dates. `_SharedLoader` serves
only the shared files read at load time, and `_make_env` builds the environment with the brand
variables.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from functools import update_wrapper
from typing import Any, cast

import jinja2
from jinja2.runtime import Context, LoopContext, markup_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import _PassArg
from markupsafe import EscapeFormatter, Markup

from pond.persona.codegen import BoundedTemplate, _CodeGenerator
from pond.persona.files import VOICE_FILE
from pond.persona.guards import (
    check_call,
    check_estimate,
    check_format_spec,
    check_input,
    check_percent,
    checked_result,
    finalize,
    guard_filter,
    guard_test,
    guarded_items,
    join_filter,
    sum_filter,
    text_of,
)
from pond.persona.limits import RenderLimitError, check_value, current, size_of
from pond.problems import Problem

_MAX_EXPONENT = 1_000  # largest exponent a template may use with `**`
_MAX_YUAN_DIGITS = 15  # a price of 10^15 or more is a mistake (and `int()` of 1e999999 is slow)


class _Formatter(SandboxedFormatter):
    """`str.format` / `format_map` with widths, precisions and the result bounded."""

    _written = 0

    def vformat(self, format_string: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        self._written = 0
        return super().vformat(format_string, args, kwargs)

    def format_field(self, value: Any, format_spec: str) -> Any:
        check_format_spec(format_spec)
        check_input(value, "str.format")
        text = super().format_field(value, format_spec)
        # '{0}{0}{0}...'.format(long_text) repeats one checked argument: count the result.
        self._written += len(text)
        check_estimate(self._written, "str.format")
        return text

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        check_input(value, "str.format")
        return super().convert_field(value, conversion)


class _EscapeFormatter(_Formatter, EscapeFormatter):
    pass


class _Env(ImmutableSandboxedEnvironment):
    """The sandbox, with every operation counted and sized (see the module docstring)."""

    code_generator_class = _CodeGenerator
    template_class = BoundedTemplate
    intercepted_binops = frozenset({"+", "*", "**", "%"})
    shared_files: frozenset[str] = frozenset()

    def __init__(self, **options: Any) -> None:
        options.setdefault("finalize", finalize)
        super().__init__(**options)
        self.globals["range"] = self._range
        self.globals.pop("lipsum", None)  # placeholder text has no place in brand copy
        self.filters["join"] = join_filter
        self.filters["sum"] = sum_filter
        self.filters["yuan"] = _yuan
        self.filters = {
            name: guard_filter(name, func, 1 if _PassArg.from_obj(func) else 0)
            for name, func in self.filters.items()
        }
        self.tests = {
            name: guard_test(cast("Callable[..., Any]", test)) for name, test in self.tests.items()
        }

    # -- hooks the compiled templates call ------------------------------------------------

    def tick(self) -> None:
        current().tick()

    def charge_text(self, size: int) -> None:
        current().charge(size)

    def guard_iter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        return guarded_items(iterable)

    def concat_checked(self, parts: tuple[Any, ...], autoescape: bool) -> str:
        budget = current()
        budget.tick()
        texts = [text_of(part, "`~`") for part in parts]
        size = sum(map(len, texts))
        if size > budget.limits.value:
            raise RenderLimitError(
                "chars",
                "{what} would build more than {limit} characters",
                what="~",
                limit=budget.limits.value,
            )
        budget.charge(size)
        if autoescape:  # {% autoescape true %}: escaping can make the text longer
            joined = markup_join(texts)
            check_value(joined, "`~`")
            return joined
        return "".join(texts)

    def _range(self, *args: int) -> range:
        numbers = range(*args)
        limit = current().limits.range
        try:
            count = len(numbers)
        except OverflowError:
            count = limit + 1
        if count > limit:
            raise RenderLimitError("range", "range() is limited to {limit} numbers", limit=limit)
        return numbers

    # -- the sandbox's own hooks ----------------------------------------------------------

    def getattr(self, obj: Any, attribute: str) -> Any:
        current().tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        current().tick()
        return super().getitem(obj, argument)

    def call(
        __self,  # Jinja's own signature: no keyword argument of the call can clash
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        budget = current()
        budget.tick()
        if not __self.is_safe_callable(__obj):
            raise RenderLimitError("unsafe_call", "{what!r} is not safely callable", what=__obj)
        name = getattr(__obj, "__name__", None) or getattr(__obj, "name", None) or ""
        what = f"{name}()"
        # Calls inside loops and blocks carry Jinja's own scope arguments; Context.call
        # drops them, and so must the checks and replacements of built-in methods.
        given = {k: v for k, v in kwargs.items() if k not in ("_loop_vars", "_block_vars")}
        replacement = check_call(__obj, args, given)
        if replacement is not None:
            return checked_result(replacement(*args, **given), what)
        if isinstance(__obj, LoopContext) and args:  # a recursive loop: loop(children)
            args = (guarded_items(args[0]), *args[1:])
        if budget.depth >= budget.limits.depth:
            raise RenderLimitError(
                "depth",
                "calls nest more than {depth} deep (a macro or recursive loop calling itself?)",
                depth=budget.limits.depth,
            )
        budget.depth += 1
        try:
            result = __context.call(__obj, *args, **kwargs)
        finally:
            budget.depth -= 1
        return checked_result(result, what)

    def call_binop(self, context: Context | None, operator: str, left: Any, right: Any) -> Any:
        budget = current()
        budget.tick()
        what = operator
        limit = budget.limits.value
        if operator == "+":
            if (
                isinstance(left, str | list | tuple)
                and isinstance(right, str | list | tuple)
                and size_of(left, limit) + size_of(right, limit) > limit
            ):
                raise RenderLimitError(
                    "items", "{what} would build more than {limit} items", what="+", limit=limit
                )
        elif operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and times > 0
                    and size_of(seq, limit) * times > limit
                ):
                    raise RenderLimitError(
                        "items", "{what} would build more than {limit} items", what="*", limit=limit
                    )
        elif operator == "**" and isinstance(right, int | float) and abs(right) > _MAX_EXPONENT:
            raise RenderLimitError(
                "exponent", "`**` exponents are limited to {most}", most=_MAX_EXPONENT
            )
        elif operator == "%" and isinstance(left, str):
            check_percent(left, right)
        # Chained powers ((10**1000)**1000)**10 stay within the exponent limit but not
        # within any CPU budget: bound the size of the integer being built.
        if operator in {"*", "**"} and isinstance(left, int) and isinstance(right, int):
            bits = (
                left.bit_length() * abs(right)
                if operator == "**"
                else left.bit_length() + right.bit_length()
            )
            if bits > budget.limits.bits:
                raise RenderLimitError(
                    "bits", "{what} would build a number over {bits} bits", what=what, bits=bits
                )
        result = self.binop_table[operator](left, right)
        check_value(result, what)
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja's wrapper for `str.format`/`format_map`, with the bounded formatter."""
        if not isinstance(value, types.MethodType | types.BuiltinMethodType) or (
            value.__name__ not in ("format", "format_map")
        ):
            return None
        f_self: Any = value.__self__
        if not isinstance(f_self, str):
            return None
        str_type: type[str] = type(f_self)
        is_format_map = value.__name__ == "format_map"
        formatter: _Formatter
        if isinstance(f_self, Markup):
            formatter = _EscapeFormatter(self, escape=f_self.escape)
        else:
            formatter = _Formatter(self)

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs = args[0]
                args = ()
            text = str_type(formatter.vformat(f_self, args, kwargs))
            check_value(text, "str.format")
            return text

        return update_wrapper(wrapper, value)


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
    except ArithmeticError:  # InvalidOperation, or an exponent beyond Decimal's range
        raise Problem("persona.yuan", "yuan expects a number, got {got!r}", got=value) from None
    if not amount.is_finite():
        raise Problem("persona.yuan", "yuan expects a finite number, got {got!r}", got=value)
    if amount.adjusted() >= _MAX_YUAN_DIGITS:  # (abs() would round, and overflow)
        raise Problem(
            "persona.yuan_big", "yuan expects a price below 10^15, got {got!r}", got=value
        )
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
    env.globals.update(brand)
    return env
