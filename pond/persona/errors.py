"""The persona's error types, and how several problems are reported as one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pond.problems import Problem


def say(code: str, english: str, /, **values: Any) -> Problem:
    """A persona problem's reason: Chinese from persona/core/problems.toml ([persona]),
    English for developers in `.english`."""
    return Problem(f"persona.{code}", english, **values)


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
        reason: Problem | str,
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

    @property
    def english(self) -> str:
        """The developers' text (the reason's English)."""
        reason = self.reason.english if isinstance(self.reason, Problem) else self.reason
        return (
            f"{self.file}: {reason}" if self.line is None else f"{self.file}:{self.line}: {reason}"
        )


class UnknownKeyError(PersonaError, KeyError):
    """`render` was asked for a key that has no template file."""


def _combine(errors: Sequence[PersonaError]) -> PersonaError:
    if len(errors) == 1:
        return errors[0]
    first = errors[0]
    more = "\n".join(f"  {err}" for err in errors[1:])
    reason = say(
        "more",
        "{first}\nand {count} more problem(s):\n{more}",
        first=first.reason,
        count=len(errors) - 1,
        more=more,
    )
    return PersonaError(first.file, first.line, reason, errors=errors)
