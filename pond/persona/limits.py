"""What one render may spend: steps, size units, call depth, CPU time, output.

Every render (trial at load, live, a voice module being built) runs inside `bounded()`, which
puts a fresh `_Budget` in a context variable. The sandbox's hooks (calls, filters, loop
iterations, operators, `~`, output) spend from it; when it runs out the render stops with a
`RenderLimitError`, which the persona reports like any other template error. Steps, units and
sizes are counted, so a refusal does not depend on how fast the machine is; the CPU clock is
only a backstop for a step that is slow but counted once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, timedelta
from datetime import time as clock_time
from decimal import Decimal
from fractions import Fraction
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.utils import Namespace

from pond.problems import Problem


class RenderLimitError(SecurityError):
    """A template went over one of the limits of a render. `problem` says which, in the
    catalogue's words (persona/core/problems.toml, [persona] limit_*)."""

    def __init__(self, code: str, english: str, /, **values: Any) -> None:
        self.problem = Problem(f"persona.limit_{code}", english, **values)
        super().__init__(self.problem.english)

    def __str__(self) -> str:
        return str(self.problem)


@dataclass(frozen=True)
class Limits:
    steps: int = 20_000  # loop iterations + calls + filters + tests + lookups + operators
    units: int = 1_000_000  # size units (chars, items) produced by one render, all together
    value: int = 100_000  # size units of any one value a template builds
    pad: int = 1_000  # widths, paddings and precisions (format, center, indent, zfill ...)
    range: int = 10_000  # items of one range()
    depth: int = 32  # nested calls (macros calling macros, recursive loops)
    output: int = 100_000  # characters one render may produce
    bits: int = 10_000  # largest integer a template may build
    cpu_s: float = 0.5  # CPU seconds of one render (the thread's own CPU time)


LIMITS = Limits()

_CURRENT: ContextVar[_Budget | None] = ContextVar("pond_persona_budget", default=None)
_CANCEL: ContextVar[threading.Event | None] = ContextVar("pond_persona_cancel", default=None)


_CONTAINERS = (list, tuple, dict, set, frozenset)


class _Budget:
    __slots__ = (
        "cancel",
        "deadline",
        "depth",
        "limits",
        "measured",
        "steps",
        "unclocked",
        "units",
    )

    def __init__(self, limits: Limits, cancel: threading.Event | None) -> None:
        self.limits = limits
        self.steps = limits.steps
        self.units = limits.units
        self.depth = 0
        self.cancel = cancel
        self.deadline = time.thread_time() + limits.cpu_s
        self.unclocked = 1
        # Containers already measured (and charged) in this render, by id; the container is
        # kept so its id cannot be reused. Templates cannot change a list or dict, so a
        # size stays right: a loop passing the same product list to |length 200 times
        # costs it once.
        self.measured: dict[int, tuple[object, int]] = {}

    def tick(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise RenderLimitError(
                "steps",
                "the template runs more than {steps} steps "
                "(loop iterations, calls, filters): too much work for one message",
                steps=self.limits.steps,
            )
        self.unclocked -= 1
        if self.unclocked > 0:
            return  # the clock is a system call: read it on the first step and every 8th
        self.unclocked = 8
        if time.thread_time() > self.deadline:
            raise RenderLimitError(
                "cpu",
                "the template used more than {seconds} s of CPU time",
                seconds=f"{self.limits.cpu_s:g}",
            )
        if self.cancel is not None and self.cancel.is_set():
            raise RenderLimitError("cancelled", "the template was stopped: loading took too long")

    def measure(self, value: object) -> int:
        """The size of `value` (see `size_of`), charged the first time it is seen."""
        if isinstance(value, _CONTAINERS):
            seen = self.measured.get(id(value))
            if seen is not None and seen[0] is value:
                return seen[1]
        size = size_of(value, self.limits.value)
        if isinstance(value, _CONTAINERS):
            self.measured[id(value)] = (value, size)
        self.charge(size)
        return size

    def charge(self, units: int) -> None:
        self.units -= units
        if self.units < 0:
            raise RenderLimitError(
                "units",
                "the template builds more than {units} characters or items "
                "in all: too much text for one message",
                units=self.limits.units,
            )


def current() -> _Budget:
    """The budget of the render running in this thread; template code never runs without."""
    budget = _CURRENT.get()
    if budget is None:
        # Jinja also evaluates constant expressions while compiling; refusing here makes it
        # leave them to run time, where the budget applies.
        raise RenderLimitError("unbounded", "template code can only run inside a bounded render")
    return budget


@contextmanager
def bounded() -> Iterator[_Budget]:
    """Run a render with a fresh budget, or inside the budget of the render already running
    (an import or include is part of the render that asked for it)."""
    running = _CURRENT.get()
    if running is not None:
        yield running
        return
    token = _CURRENT.set(_Budget(LIMITS, _CANCEL.get()))
    try:
        budget = _CURRENT.get()
        assert budget is not None
        yield budget
    finally:
        _CURRENT.reset(token)


@contextmanager
def cancellable(cancel: threading.Event | None) -> Iterator[None]:
    """Renders started inside stop at their next step once `cancel` is set (a worker thread
    whose caller stopped waiting)."""
    token = _CANCEL.set(cancel)
    try:
        yield
    finally:
        _CANCEL.reset(token)


_SCALARS = (float, date, clock_time, timedelta, Fraction)


def size_of(value: object, limit: int) -> int:
    """Roughly how many characters `str(value)` would take (items for containers), counted
    without building it and without following more than about `limit` units."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, _SCALARS):
            total += 24
        elif isinstance(item, Decimal):
            total += _decimal_size(item)
        elif isinstance(item, list | tuple | set | frozenset | dict):
            total += 2 + 2 * len(item)
            if total > limit:  # before stacking a long list's items
                return total
            stack.extend(item)
            if isinstance(item, dict):
                stack.extend(item.values())
        elif isinstance(item, range):
            try:
                total += 2 + len(item) * 2
            except OverflowError:
                return limit + 1
        elif isinstance(item, Namespace):
            attrs: Mapping[str, object] = item._Namespace__attrs
            total += 2 + 2 * len(attrs)
            if total > limit:
                return total
            stack.extend(attrs.values())
        else:
            total += 16  # objects of the code (dates, contacts, macros): their own size
        if total > limit:
            return total
    return total


def _decimal_size(value: Decimal) -> int:
    if not value.is_finite():
        return 8
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    return len(digits) + abs(exponent) + 2  # "{:f}" writes every zero of the exponent


def check_value(value: object, what: str) -> None:
    """Refuse a value over the size limit of one value, and charge what it costs."""
    budget = current()
    limit = budget.limits.value
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > budget.limits.bits:
            raise RenderLimitError(
                "bits",
                "{what} would build a number over {bits} bits",
                what=what,
                bits=budget.limits.bits,
            )
        return
    if budget.measure(value) > limit:
        raise RenderLimitError(
            "value",
            "{what} would build more than {limit} characters or items",
            what=what,
            limit=limit,
        )
