"""The Jinja2 sandbox that persona templates run in.

`_Env` bounds `*` and `**`, `_SharedLoader` serves only the shared files read at load time,
and `_make_env` builds the environment with the brand variables and the `yuan` filter.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from pond.persona.files import VOICE_FILE

_MAX_SEQUENCE = 100_000  # longest string/list a template may build with `*`
_MAX_EXPONENT = 1_000  # largest exponent a template may use with `**`
_MAX_BITS = 10_000  # largest integer a template may build with `*` or `**`


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
        # Chained powers ((10**1000)**1000)**10 stay within the exponent limit but not
        # within any CPU budget: bound the size of the integer being built.
        if isinstance(left, int) and isinstance(right, int):
            bits = (
                left.bit_length() * abs(right)
                if operator == "**"
                else left.bit_length() + right.bit_length()
            )
            if bits > _MAX_BITS:
                raise SecurityError(f"`{operator}` would build a number over {_MAX_BITS} bits")
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
