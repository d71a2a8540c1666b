"""persona/referral/rules.toml: the words that ask for a code, the validity rules and the
rewards. Operators edit it; it is checked at load and every problem is a `Problem` with a
Chinese text (persona/core/problems.toml, [referral]) naming the file and the field. A bad
edit is refused and the last good rules keep serving."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pond import Problem

KNOWN_TABLES = {"words", "validity", "reward", "issue"}


@dataclass(frozen=True)
class Reward:
    threshold: int
    name: str = ""
    tags: tuple[str, ...] = ()
    alert_staff: bool = True


@dataclass(frozen=True)
class Rules:
    ask: tuple[str, ...] = ("邀请码", "我要邀请")
    rank: tuple[str, ...] = ("邀请排行", "我的邀请")
    stay_hours: float = 24.0
    burst_count: int = 10
    burst_minutes: float = 5.0
    invitee_tags: tuple[str, ...] = ("referral",)
    issue_tags: tuple[str, ...] = ()
    rewards: tuple[Reward, ...] = field(default_factory=tuple)


def _problem(code: str, english: str, file: str, **values: Any) -> Problem:
    return Problem(f"referral.{code}", "{file}: " + english, file=file, **values)


def _words(value: Any, file: str, name: str) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(w, str) and w.strip() for w in value)
    ):
        raise _problem("bad_words", "{field} must be a list of words", file, field=name)
    return tuple(w.strip() for w in value)


def _number(
    table: dict[str, Any], key: str, default: float, file: str, *, low: float, integer: bool
) -> float:
    value = table.get(key, default)
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or value < low:
        raise _problem(
            "bad_number",
            "{field} = {value!r}: expected a number >= {low}",
            file,
            field=key,
            value=value,
            low=low,
        )
    return float(value)


def parse(data: dict[str, Any], file: str) -> Rules:
    unknown = sorted(set(data) - KNOWN_TABLES)
    if unknown:
        raise _problem("unknown_tables", "unknown tables {tables}", file, tables=unknown)
    words = data.get("words", {})
    validity = data.get("validity", {})
    if not isinstance(words, dict) or not isinstance(validity, dict):
        raise _problem("not_tables", "[words] and [validity] must be tables", file)
    defaults = Rules()
    ask = _words(words.get("ask", list(defaults.ask)), file, "words.ask")
    rank = _words(words.get("rank", list(defaults.rank)), file, "words.rank")
    tags_value = validity.get("invitee_tags", list(defaults.invitee_tags))
    tags = _words(tags_value, file, "validity.invitee_tags") if tags_value else ()
    issue = data.get("issue", {})
    if not isinstance(issue, dict):
        raise _problem("not_tables", "[words] and [validity] must be tables", file)
    issue_tags = _words(issue["tags"], file, "issue.tags") if issue.get("tags") else ()
    rewards: list[Reward] = []
    seen: set[int] = set()
    raw_rewards = data.get("reward", [])
    if not isinstance(raw_rewards, list) or not all(isinstance(r, dict) for r in raw_rewards):
        raise _problem("not_tables", "[words] and [validity] must be tables", file)
    for n, item in enumerate(raw_rewards, 1):
        threshold = item.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise _problem(
                "bad_threshold",
                "reward #{n}: threshold {value!r} must be a whole number >= 1",
                file,
                n=n,
                value=threshold,
            )
        if threshold in seen:
            raise _problem(
                "threshold_twice", "reward threshold {value} is given twice", file, value=threshold
            )
        seen.add(threshold)
        reward_tags = item.get("tags", [])
        rewards.append(
            Reward(
                threshold,
                str(item.get("name", "")),
                _words(reward_tags, file, f"reward {threshold} tags") if reward_tags else (),
                bool(item.get("alert_staff", True)),
            )
        )
    return Rules(
        ask=ask,
        rank=rank,
        stay_hours=_number(validity, "stay_hours", defaults.stay_hours, file, low=0, integer=False),
        burst_count=int(
            _number(validity, "burst_count", defaults.burst_count, file, low=2, integer=True)
        ),
        burst_minutes=_number(
            validity, "burst_minutes", defaults.burst_minutes, file, low=0.1, integer=False
        ),
        invitee_tags=tags,
        issue_tags=issue_tags,
        rewards=tuple(sorted(rewards, key=lambda r: r.threshold)),
    )


def load(path: Path, shown: str) -> Rules:
    """Raises Problem for anything wrong with the file."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise _problem("missing", "the rules file is missing", shown) from None
    except OSError as error:
        raise _problem("unreadable", "cannot read: {error}", shown, error=error) from None
    except tomllib.TOMLDecodeError as error:
        raise _problem("not_toml", "not valid TOML: {error}", shown, error=error) from None
    return parse(data, shown)
