"""The parsed forms of the friends plugin's data files (see data.py for the files and their
validation): channels, request rules, keyword tag rules, follow-up sequences, CSV columns."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import time

from pond import Problem, Segment


@dataclass(frozen=True)
class Channel:
    code: str
    name: str = ""
    words: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    @property
    def tag(self) -> str:
        return f"channel:{self.code}"


@dataclass(frozen=True)
class Channels:
    items: tuple[Channel, ...] = ()
    _patterns: tuple[tuple[re.Pattern[str], Channel], ...] = ()

    @classmethod
    def of(cls, items: Iterable[Channel]) -> Channels:
        items = tuple(items)
        patterns = []
        for ch in items:
            # A code is a token: "A1" and "来自门店A1" match A1, "A12" does not.
            alts = [r"(?<![A-Za-z0-9])" + re.escape(ch.code) + r"(?![A-Za-z0-9])"]
            alts += [re.escape(w) for w in ch.words]
            patterns.append((re.compile("|".join(alts), re.IGNORECASE), ch))
        return cls(items, tuple(patterns))

    def find(self, text: str) -> Channel | None:
        """The channel a hello names: the earliest mention wins, then file order."""
        best: tuple[int, int, Channel] | None = None
        for order, (pattern, ch) in enumerate(self._patterns):
            m = pattern.search(text)
            if m and (best is None or (m.start(), order) < best[:2]):
                best = (m.start(), order, ch)
        return best[2] if best else None

    def get(self, code: str) -> Channel | None:
        return next((c for c in self.items if c.code.lower() == code.lower()), None)


@dataclass(frozen=True)
class RequestRules:
    accept_words: tuple[str, ...] = ()
    accept_tags: tuple[str, ...] = ()
    block_words: tuple[str, ...] = ()
    block_ids: frozenset[str] = frozenset()
    notify: bool = True


@dataclass(frozen=True)
class TagRule:
    words: tuple[str, ...]
    tags: tuple[str, ...]
    scope: str = "private"


@dataclass(frozen=True)
class TagRules:
    rules: tuple[TagRule, ...] = ()
    _pattern: re.Pattern[str] | None = None
    _by_word: dict[str, tuple[TagRule, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, rules: Iterable[TagRule]) -> TagRules:
        rules = tuple(rules)
        by_word: dict[str, list[TagRule]] = {}
        for rule in rules:
            for word in rule.words:
                by_word.setdefault(word.lower(), []).append(rule)
        if not by_word:
            return cls(rules)
        # One alternation for every word: one scan per message, whatever the rule count.
        words = sorted(by_word, key=len, reverse=True)
        pattern = re.compile("|".join(map(re.escape, words)), re.IGNORECASE)
        return cls(rules, pattern, {w: tuple(r) for w, r in by_word.items()})

    def match(self, text: str, *, private: bool) -> list[str]:
        if self._pattern is None:
            return []
        tags: dict[str, None] = {}
        for m in self._pattern.finditer(text):
            for rule in self._by_word.get(m.group(0).lower(), ()):
                if rule.scope == "all" or (rule.scope == "private") == private:
                    tags.update(dict.fromkeys(rule.tags))
        return list(tags)

    @property
    def rooms_needed(self) -> bool:
        return any(r.scope != "private" for r in self.rules)


@dataclass(frozen=True)
class Step:
    after_s: float
    key: str
    at: time | None = None
    condition: Segment | None = None
    line: int | None = None


@dataclass(frozen=True)
class Sequence:
    id: str
    anchor: str  # friend_added | purchased | joined_room[:room] | tagged:<tag>
    steps: tuple[Step, ...]
    segment: Segment | None = None
    exit_on_reply: bool = True
    exit: Segment | None = None
    reenter: bool = False

    def fits(self, anchor: str) -> bool:
        return self.anchor == anchor or (
            self.anchor == "joined_room" and anchor.startswith("joined_room:")
        )


@dataclass(frozen=True)
class Followups:
    sequences: dict[str, Sequence] = field(default_factory=dict)

    def keys(self) -> set[str]:
        return {step.key for seq in self.sequences.values() for step in seq.steps}


DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id", "contact_id", "wxid"),
    "name": ("name",),
    "alias": ("alias",),
    "channel": ("channel",),
    "stage": ("stage",),
    "tags": ("tags",),
    "notes": ("notes", "note"),
    "consent_source": ("consent_source", "consent"),
    "consent_at": ("consent_at",),
    "first_seen": ("first_seen",),
    "is_friend": ("is_friend",),
    "opted_out": ("opted_out",),
    # Written by the export; read back without effect (the bot keeps these itself).
    "last_inbound": ("last_inbound",),
    "last_outbound": ("last_outbound",),
    "consent": ("consent_json",),
}


TRUE_WORDS = ("1", "true", "yes", "y")
FALSE_WORDS = ("0", "false", "no", "n")


@dataclass(frozen=True)
class Columns:
    """CSV header -> canonical column name (headers compared without case and spaces), and
    the words a yes/no cell may hold."""

    names: dict[str, str] = field(default_factory=dict)
    true_words: frozenset[str] = frozenset(TRUE_WORDS)
    false_words: frozenset[str] = frozenset(FALSE_WORDS)

    @classmethod
    def of(
        cls,
        aliases: dict[str, tuple[str, ...]],
        true_words: Iterable[str] = (),
        false_words: Iterable[str] = (),
    ) -> Columns:
        names: dict[str, str] = {}
        for canonical, words in aliases.items():
            for word in (canonical, *words):
                names[header_key(word)] = canonical
        return cls(
            names,
            frozenset(w.lower() for w in (*TRUE_WORDS, *true_words)),
            frozenset(w.lower() for w in (*FALSE_WORDS, *false_words)),
        )

    def canonical(self, header: str) -> str | None:
        return self.names.get(header_key(header))

    def boolean(self, cell: str) -> bool | None:
        """True / False for a yes/no cell, None for an empty one; ValueError otherwise."""
        word = cell.strip().lower()
        if not word:
            return None
        if word in self.true_words:
            return True
        if word in self.false_words:
            return False
        raise Problem(
            "csv.not_bool",
            "{cell!r} is not a yes/no value",
            cell=cell,
            yes=sorted(self.true_words),
            no=sorted(self.false_words),
        )


def header_key(text: str) -> str:
    return "".join(text.split()).lower().lstrip("\ufeff")
