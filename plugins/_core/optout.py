"""Opt-out (退订) and opt-in by meaning, not by one exact word.

The words live in persona/core/optout.toml so copywriters can add the ways customers really
say stop; this module holds only the mechanics. Text and words meet in one normal form
(`fold`): NFKC (full-width to half-width), lower case, @-mentions, punctuation, emoji and
spaces removed, a character repeated in a row kept once ("别发了了了" is "别发了").

A stop phrase found in a message is then judged by what surrounds it:
- a negation right before it ("不退订", "我没说要退订") cancels it;
- a how-question word right before or after it ("怎么退订", "退订怎么弄") makes it a
  question about opting out, answered with how; a yes/no question ("退订吗？") is asked
  back; either is a request after all when it holds a request word ("能帮我退订吗");
- a word that overlaps it and means something else ("不要再发错地址了": 发错) vetoes it;
- a long message that contains it is asked about, not acted on.
Short annoyed messages ("太多了", "烦") are asked about ("要退订吗？")."""

from __future__ import annotations

import enum
import re
import tomllib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pond import Problem, filters, toml_problem

FILE = "optout.toml"
NEVER = "(?!x)x"  # what an empty word list matches: nothing
_DROP = ("P", "S", "Z", "C", "Mn", "Me")


class Verdict(enum.Enum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HOWTO = "howto"  # a question about opting out
    ASK = "ask"  # maybe a wish to stop: ask before acting
    YES = "yes"  # a yes-word (a confirmation, when a question is pending)
    NONE = "none"


class OptoutDataError(Problem):
    """A problem in optout.toml, written so a copywriter can fix it from the message
    (Chinese text: `optout.<code>` in persona/core/problems.toml)."""


def _problem(code: str, english: str, **values: object) -> OptoutDataError:
    return OptoutDataError(code, english, **values)


def fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", filters.strip_mentions(text[:1000])).lower()
    kept = [ch for ch in text if not unicodedata.category(ch).startswith(_DROP)]
    out: list[str] = []
    for ch in kept:
        if not out or out[-1] != ch:
            out.append(ch)
    return "".join(out)


def _ends_question(text: str) -> bool:
    tail = unicodedata.normalize("NFKC", text).rstrip()
    return tail.endswith("?")


@dataclass(frozen=True, slots=True)
class WordSet:
    exact: frozenset[str] = frozenset()
    phrases: tuple[str, ...] = ()
    vetoes: tuple[str, ...] = ()  # the file's `not`

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where the phrases occur in `text` (folded), minus those a veto word overlaps.
        Plain substring search: every private message passes here."""
        found = [span for p in self.phrases if p in text for span in _find(p, text)]
        if found and self.vetoes:
            vetoed = [span for v in self.vetoes if v in text for span in _find(v, text)]
            found = [(s, e) for s, e in found if not any(a < e and s < b for a, b in vetoed)]
        return found


def _find(word: str, text: str) -> list[tuple[int, int]]:
    spans = []
    start = text.find(word) if word else -1
    while start != -1:
        spans.append((start, start + len(word)))
        start = text.find(word, start + 1)
    return spans


@dataclass(frozen=True, slots=True)
class Matcher:
    optout: WordSet
    optin: WordSet
    ambiguous: WordSet
    negation: re.Pattern[str]  # matched at the end of the text before a phrase
    requested_before: re.Pattern[str]  # "能不能": at the end of the text before a phrase
    how_before: re.Pattern[str]  # "how do I": at the end of the text before a phrase
    how_after: re.Pattern[str]  # "how do I": shortly after a phrase
    yes_no_after: re.Pattern[str]  # "…吗": a yes/no question right after a phrase
    requests: tuple[str, ...]
    yes: frozenset[str]
    max_chars: int = 40
    ambiguous_max_chars: int = 8

    def judge(self, raw: str) -> Verdict:
        text = fold(raw)
        if not text:
            return Verdict.NONE
        question = _ends_question(raw)
        out = self._side(self.optout, text, question)
        if out is Verdict.OPT_OUT and len(text) > self.max_chars:
            return Verdict.ASK
        if out is not Verdict.NONE:
            return out
        if self._side(self.optin, text, question) is Verdict.OPT_OUT:
            return Verdict.OPT_IN
        if text in self.yes:
            return Verdict.YES
        if (
            len(text) <= self.ambiguous_max_chars
            and not question
            and self._positive(self.ambiguous, text)
        ):
            return Verdict.ASK
        return Verdict.NONE

    def _positive(self, words: WordSet, text: str) -> bool:
        return any(not self.negation.search(text[:s]) for s, _ in words.spans(text))

    def _side(self, words: WordSet, text: str, question: bool) -> Verdict:
        """OPT_OUT when `words` are asked for, HOWTO when asked about, else NONE."""
        request = any(word in text for word in self.requests)
        if text in words.exact:
            return Verdict.ASK if question and not request else Verdict.OPT_OUT
        verdict = Verdict.NONE
        for start, end in sorted(words.spans(text)):
            before, after = text[:start], text[end:]
            if self.requested_before.search(before):  # "能不能别发了": 不 asks, not denies
                return Verdict.OPT_OUT
            if self.negation.search(before):
                continue
            if request:
                return Verdict.OPT_OUT
            if self.how_before.search(before) or self.how_after.match(after):
                verdict = Verdict.HOWTO
            elif question or self.yes_no_after.match(after):
                verdict = verdict if verdict is Verdict.HOWTO else Verdict.ASK
            else:
                return Verdict.OPT_OUT
        return verdict


# -- loading -----------------------------------------------------------------------------------


def _alternatives(words: Iterable[str]) -> str:
    folded = sorted({fold(w) for w in words if fold(w)}, key=len, reverse=True)
    return "|".join(re.escape(w) for w in folded)


def _words(doc: dict[str, object], where: str, key: str, label: str) -> tuple[str, ...]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _problem(
            "optout.words",
            "{file}: [{table}] {key}: expected a list of words",
            file=label,
            table=where,
            key=key,
        )
    return tuple(dict.fromkeys(f for f in (fold(v) for v in value) if f))


def _table(doc: dict[str, object], name: str, label: str, keys: set[str]) -> dict[str, object]:
    table = doc.get(name, {})
    if not isinstance(table, dict):
        raise _problem("optout.table", "{file}: [{table}] must be a table", file=label, table=name)
    unknown = sorted(set(table) - keys)
    if unknown:
        raise _problem(
            "optout.unknown_keys",
            "{file}: [{table}] unknown key(s) {keys}; known: {known}",
            file=label,
            table=name,
            keys=unknown,
            known=sorted(keys),
        )
    return table


def _wordset(doc: dict[str, object], name: str, label: str, extra: Iterable[str] = ()) -> WordSet:
    table = _table(doc, name, label, {"exact", "phrases", "not"})
    return WordSet(
        exact=frozenset([*_words(table, name, "exact", label), *(fold(w) for w in extra)]),
        phrases=_words(table, name, "phrases", label),
        vetoes=_words(table, name, "not", label),
    )


def load(
    path: Path, label: str, optout_extra: Iterable[str], optin_extra: Iterable[str]
) -> Matcher:
    """Build the matcher from optout.toml; `*_extra` are whole-message keywords from the
    settings (OUTBOX_OPTOUT_KEYWORDS / OUTBOX_OPTIN_KEYWORDS). A missing file leaves just
    those keywords; a broken one raises OptoutDataError naming file, line or key."""
    doc: dict[str, object] = {}
    if path.exists():
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise _problem(
                "optout.toml", "{file}: {error}", file=label, error=toml_problem(error)
            ) from None
    unknown = sorted(set(doc) - {"optout", "optin", "ambiguous", "guards"})
    if unknown:
        raise _problem(
            "optout.unknown_tables", "{file}: unknown table(s) {tables}", file=label, tables=unknown
        )
    guards = _table(
        doc,
        "guards",
        label,
        {"negations", "fillers", "how", "yes_no", "requests", "yes", "max_chars",
         "ambiguous_max_chars"},
    )  # fmt: skip

    def pattern(key: str, template: str) -> re.Pattern[str]:
        words = _alternatives(_words(guards, "guards", key, label))
        fillers = _alternatives(_words(guards, "guards", "fillers", label))
        return re.compile(template.format(w=words or NEVER, f=fillers or NEVER))

    numbers = {}
    for key, default in (("max_chars", 40), ("ambiguous_max_chars", 8)):
        value = guards.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 500:
            raise _problem(
                "optout.number",
                "{file}: [guards] {key}: expected a number from 1 to 500",
                file=label,
                key=key,
            )
        numbers[key] = value
    return Matcher(
        optout=_wordset(doc, "optout", label, optout_extra),
        optin=_wordset(doc, "optin", label, optin_extra),
        ambiguous=_wordset(doc, "ambiguous", label),
        negation=pattern("negations", "(?:{w})(?:{f}){{0,3}}$"),
        requested_before=pattern("requests", "(?:{w})(?:{f}){{0,2}}$"),
        how_before=pattern("how", "(?:{w})(?:{f}){{0,2}}$"),
        how_after=pattern("how", "^.{{0,3}}(?:{w})"),
        yes_no_after=pattern("yes_no", "^.{{0,2}}(?:{w})$"),
        requests=_words(guards, "guards", "requests", label),
        yes=frozenset(_words(guards, "guards", "yes", label)),
        max_chars=numbers["max_chars"],
        ambiguous_max_chars=numbers["ambiguous_max_chars"],
    )
