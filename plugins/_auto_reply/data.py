"""The auto-reply data files, loaded and validated as a whole.

persona/auto_reply/rules.toml    reply rules, business hours, hand-off words, product-guide
                                 and fallback settings, LLM output filter
persona/auto_reply/catalog.toml  products for the guide (optional)

Every problem is a DataError "file:line: where.key: what was expected", so a copywriter can
fix it from the message alone. Every persona key the data names must have a template: a
rule that would answer with a missing key is refused here, not in front of a customer."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from plugins._auto_reply.hours import Hours, parse_window
from plugins._auto_reply.match import normalize
from plugins._auto_reply.toml import SCOPES, DataError, Doc, Keys, Table, say, table, tables

RULES_FILE = "rules.toml"
CATALOG_FILE = "catalog.toml"
HOUR_MODES = ("always", "open", "closed")
INTEREST = "interest:"
_ID = re.compile(r"^[a-z0-9][a-z0-9_]{0,40}$")
_URL = re.compile(r"^https?://\S+$")
ANY_KEY = Keys(lambda key: True)
__all__ = ["SCOPES", "Catalog", "Data", "DataError", "Keys", "Product", "Rule", "load"]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    reply: str
    any: tuple[str, ...] = ()
    all: tuple[str, ...] = ()
    exact: frozenset[str] = frozenset()
    regex: tuple[re.Pattern[str], ...] = ()
    none: tuple[str, ...] = ()  # the file's `not`
    scope: frozenset[str] = frozenset({"private"})
    rooms: frozenset[str] = frozenset()
    hours: str = "always"
    off_hours_reply: str = ""
    priority: int = 0
    cooldown_s: float = 0.0
    handoff: bool = False
    notify: bool = False  # the reply promises a person's action: tell staff too
    tags: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True, slots=True)
class Guide:
    reply: str
    priority: int = 50
    scope: frozenset[str] = frozenset({"private", "room_mention"})
    rooms: frozenset[str] = frozenset()
    cooldown_s: float = 600.0
    max_cards: int = 2


@dataclass(frozen=True, slots=True)
class Handoff:
    reply: str
    exact: frozenset[str] = frozenset()
    keywords: tuple[str, ...] = ()

    def wanted(self, text: str) -> bool:
        return text in self.exact or any(word in text for word in self.keywords)


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    name: str
    aliases: tuple[str, ...] = ()
    price: float | None = None
    spec: str = ""
    summary: str = ""
    link: str = ""
    image: str = ""  # absolute local path, or an http(s) URL
    tags: tuple[str, ...] = ()

    def card(self) -> dict[str, Any]:
        """What a card template sees as `product`."""
        price: float | int | None = self.price
        if price is not None and float(price).is_integer():
            price = int(price)
        return {
            "id": self.id,
            "name": self.name,
            "price": price,
            "spec": self.spec,
            "summary": self.summary,
            "link": self.link,
            "has_image": bool(self.image),
        }


@dataclass(frozen=True, slots=True)
class Catalog:
    products: tuple[Product, ...] = ()
    # normalized name/alias/synonym, longest first; a synonym may name several products
    terms: tuple[tuple[str, Product], ...] = ()
    not_sold: tuple[str, ...] = ()  # teas customers ask for that the shop does not sell
    not_sold_reply: str = ""


@dataclass(frozen=True, slots=True)
class Data:
    rules: tuple[Rule, ...]  # in the order they are tried
    hours: Hours
    off_hours_reply: str
    fallback_reply: str
    handoff: Handoff
    guide: Guide
    blocked_words: tuple[str, ...]
    blocked_patterns: tuple[re.Pattern[str], ...]
    catalog: Catalog = field(default_factory=Catalog)


# --------------------------------------------------------------------------- rules.toml


def load(folder: Path, label: str, has_key: Keys) -> Data:
    """Load rules.toml and catalog.toml from `folder`; `label` is how files are named in
    messages ("persona/auto_reply"); `has_key` tells which persona keys the data may name."""
    doc = Doc(folder / RULES_FILE, f"{label}/{RULES_FILE}")
    top = Table(doc, None, None, doc.data)
    top.only(["defaults", "hours", "fallback", "handoff", "guide", "llm", "rule"])

    defaults = table(doc, "defaults")
    defaults.only(["scope", "cooldown_s"])
    default_scope = defaults.scope("scope", frozenset({"private", "room_mention"}))
    default_cooldown = defaults.number("cooldown_s", 60.0)

    hours_table = table(doc, "hours")
    hours_table.only(["open", "days", "closed_dates", "off_hours_reply"])
    hours = _hours(hours_table)
    off_hours_reply = hours_table.reply("off_hours_reply", "auto_reply/off_hours", has_key)

    fallback = table(doc, "fallback")
    fallback.only(["reply"])
    fallback_reply = fallback.reply("reply", "core/fallback", has_key)

    hand = table(doc, "handoff")
    hand.only(["exact", "keywords", "reply"])
    handoff = Handoff(
        reply=hand.reply("reply", "auto_reply/handoff", has_key),
        exact=frozenset(hand.words("exact")),
        keywords=hand.words("keywords"),
    )

    g = table(doc, "guide")
    g.only(["priority", "scope", "rooms", "cooldown_s", "reply", "max_cards"])
    guide = Guide(
        reply=g.reply("reply", "auto_reply/product_card", has_key),
        priority=g.integer("priority", 50),
        scope=g.scope("scope", default_scope),
        rooms=g.ids("rooms"),
        cooldown_s=g.number("cooldown_s", 600.0),
        max_cards=g.integer("max_cards", 2, low=1, high=5),
    )
    if "room" in guide.scope and not guide.rooms:
        g.fail(
            "scope",
            say(
                "room_needs_rooms",
                '"room" answers every message in a room: list those rooms in `rooms`',
            ),
        )

    llm = table(doc, "llm")
    llm.only(["blocked_words", "blocked_patterns"])

    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for t in tables(doc, "rule"):
        rule = _rule(t, default_scope, default_cooldown, handoff.reply, has_key)
        assert t.index is not None
        if rule.id in seen:
            t.fail(
                "id",
                say(
                    "rule_id_twice",
                    "id {id!r} is also used by rule {n}",
                    id=rule.id,
                    n=seen[rule.id] + 1,
                ),
            )
        seen[rule.id] = t.index
        if t.flag("enabled", True):  # a disabled rule is still checked, then left out
            rules.append(rule)
    catalog = load_catalog(folder, label, has_key)
    if catalog.not_sold:  # "有没有普洱": right after the guide, so a product we sell wins
        rules.append(
            Rule(
                id="not_sold",
                reply=catalog.not_sold_reply,
                any=catalog.not_sold,
                scope=guide.scope,
                rooms=guide.rooms,
                priority=guide.priority - 1,
                cooldown_s=guide.cooldown_s,
            )
        )
    # Higher priority first; equal priorities keep the file's order (sort is stable).
    ordered = tuple(sorted(rules, key=lambda r: -r.priority))
    return Data(
        rules=ordered,
        hours=hours,
        off_hours_reply=off_hours_reply,
        fallback_reply=fallback_reply,
        handoff=handoff,
        guide=guide,
        blocked_words=llm.words("blocked_words"),
        blocked_patterns=llm.patterns("blocked_patterns"),
        catalog=catalog,
    )


def _hours(t: Table) -> Hours:
    window = t.text("open", "always")
    try:
        start, end = parse_window(window)
    except ValueError:
        t.fail(
            "open",
            say(
                "open",
                'expected "09:00-21:00" (may cross midnight) or "always", got {got!r}',
                got=window,
            ),
        )
    days = t.values.get("days", list(range(1, 8)))
    if (
        not isinstance(days, list)
        or not days
        or not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 7 for d in days)
    ):
        t.fail(
            "days",
            say(
                "days",
                "expected weekdays 1 (Monday) to 7 (Sunday), e.g. [1, 2, 3, 4, 5], got {got!r}",
                got=days,
            ),
        )
    closed: set[date] = set()
    raw = t.values.get("closed_dates", [])
    if not isinstance(raw, list):
        t.fail(
            "closed_dates",
            say("dates", 'expected a list of dates, e.g. ["2026-02-17"], got {got!r}', got=raw),
        )
    for item in raw:
        if isinstance(item, date):
            closed.add(item)
            continue
        try:
            closed.add(date.fromisoformat(str(item)))
        except ValueError:
            t.fail(
                "closed_dates",
                say("date", 'expected dates like "2026-02-17", got {got!r}', got=item),
            )
    return Hours(start=start, end=end, days=frozenset(days), closed=frozenset(closed))


_RULE_KEYS = (
    "id", "enabled", "any", "all", "exact", "regex", "not", "scope", "rooms", "hours",
    "off_hours_reply", "priority", "cooldown_s", "reply", "handoff", "notify", "tags",
)  # fmt: skip


def _rule(
    t: Table,
    default_scope: frozenset[str],
    default_cooldown: float,
    handoff_reply: str,
    has_key: Keys,
) -> Rule:
    t.only(_RULE_KEYS)
    ident = t.text("id", required=True)
    if not _ID.match(ident):
        t.fail(
            "id",
            say(
                "id",
                'expected lowercase letters, digits and _, e.g. "price", got {got!r}',
                got=ident,
            ),
        )
    line = t.doc.line("rule", t.index, None) or 0
    handoff = t.flag("handoff", False)
    scope = t.scope("scope", frozenset({"private"}) if handoff else default_scope)
    if handoff and scope != {"private"}:
        t.fail(
            "scope",
            say("handoff_scope", 'a hand-off pauses a private chat: use scope = ["private"]'),
        )
    rooms = t.ids("rooms")
    if "room" in scope and not rooms:
        t.fail(
            "scope",
            say(
                "room_needs_rooms",
                '"room" answers every message in a room: list those rooms in `rooms`',
            ),
        )
    hours = t.choice("hours", "always", HOUR_MODES)
    off_hours_reply = ""
    if t.has("off_hours_reply"):
        if hours != "open":
            t.fail("off_hours_reply", say("off_hours_only", 'only used with hours = "open"'))
        off_hours_reply = t.reply("off_hours_reply", "", has_key)
    rule = Rule(
        id=ident,
        reply=t.reply("reply", handoff_reply if handoff else "", has_key),
        any=t.words("any"),
        all=t.words("all"),
        exact=frozenset(t.words("exact")),
        regex=t.patterns("regex"),
        none=t.words("not"),
        scope=scope,
        rooms=rooms,
        hours=hours,
        off_hours_reply=off_hours_reply,
        priority=t.integer("priority", 0),
        cooldown_s=t.number("cooldown_s", default_cooldown),
        handoff=handoff,
        notify=t.flag("notify", False),
        tags=t.tags("tags"),
        line=line,
    )
    if not (rule.any or rule.all or rule.exact or rule.regex):
        t.fail(None, say("rule_needs", "needs at least one of any, all, exact, regex"))
    t.flag("enabled", True)
    return rule


# --------------------------------------------------------------------------- catalog.toml


def load_catalog(folder: Path, label: str, has_key: Keys = ANY_KEY) -> Catalog:
    path = folder / CATALOG_FILE
    if not path.exists():
        return Catalog()
    doc = Doc(path, f"{label}/{CATALOG_FILE}")
    Table(doc, None, None, doc.data).only(["product", "synonyms", "not_sold"])
    products: list[Product] = []
    owners: dict[str, tuple[Product, int]] = {}
    terms: list[tuple[str, Product]] = []
    for t in tables(doc, "product"):
        t.only(
            [
                "id",
                "enabled",
                "name",
                "aliases",
                "price",
                "spec",
                "summary",
                "link",
                "image",
                "tags",
            ]
        )
        product = _product(t, folder)
        assert t.index is not None
        if any(p.id == product.id for p in products):
            t.fail("id", say("product_id_twice", "id {id!r} is used twice", id=product.id))
        if not t.flag("enabled", True):
            continue
        for key, words in (("name", (product.name,)), ("aliases", product.aliases)):
            for word in words:
                term = normalize(word)
                if len(term) < 2:
                    t.fail(
                        key,
                        say(
                            "word_short",
                            "{word!r} is too short to recognise a product (2+ characters)",
                            word=word,
                        ),
                    )
                owner = owners.get(term)
                if owner is not None and owner[0].id != product.id:
                    t.fail(
                        key,
                        say(
                            "word_taken",
                            "{word!r} already names product {id!r} (product {n})",
                            word=word,
                            id=owner[0].id,
                            n=owner[1] + 1,
                        ),
                    )
                owners[term] = (product, t.index)
                terms.append((term, product))
        products.append(product)
    terms += _synonyms(table(doc, "synonyms"), products, owners)
    unique = dict.fromkeys(terms)
    ordered = tuple(sorted(unique, key=lambda item: -len(item[0])))
    missing = table(doc, "not_sold")
    missing.only(["words", "reply"])
    not_sold = missing.words("words")
    for word in not_sold:
        if word in owners:
            missing.fail(
                "words",
                say(
                    "not_sold_sold",
                    "{word!r} names product {id!r}, which is sold",
                    word=word,
                    id=owners[word][0].id,
                ),
            )
    return Catalog(
        products=tuple(products),
        terms=ordered,
        not_sold=not_sold,
        not_sold_reply=missing.reply("reply", "auto_reply/product_none", has_key)
        if not_sold
        else "",
    )


def _synonyms(
    t: Table, products: list[Product], owners: dict[str, tuple[Product, int]]
) -> list[tuple[str, Product]]:
    """[synonyms]: what customers call a kind of tea -> the products that answer it
    ("绿茶" = ["longjing"]); unlike an alias, one word may name several products."""
    by_id = {p.id: p for p in products}
    found: list[tuple[str, Product]] = []
    for word, ids in t.values.items():
        term = normalize(word)
        if len(term) < 2:
            t.fail(word, say("synonym_short", "too short to recognise a product (2+ characters)"))
        if term in owners:
            t.fail(
                word,
                say(
                    "synonym_taken",
                    "already a name or alias of product {id!r}",
                    id=owners[term][0].id,
                ),
            )
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            t.fail(
                word,
                say(
                    "synonym_ids",
                    'expected a list of product ids, e.g. ["longjing"], got {got!r}',
                    got=ids,
                ),
            )
        for ident in ids:
            if ident not in by_id:
                t.fail(word, say("synonym_unknown", "no enabled product with id {id!r}", id=ident))
            found.append((term, by_id[ident]))
    return found


def _product(t: Table, folder: Path) -> Product:
    ident = t.text("id", required=True)
    if not _ID.match(ident):
        t.fail(
            "id",
            say("product_id", "expected lowercase letters, digits and _, got {got!r}", got=ident),
        )
    price: float | None = None
    if t.has("price"):
        price = t.number("price", 0.0)
    link = t.text("link")
    if link and not _URL.match(link):
        t.fail(
            "link",
            say("link", "expected a web address starting with https://, got {got!r}", got=link),
        )
    image = t.text("image")
    if image and not _URL.match(image):
        path = (folder / image).resolve()
        if not path.is_file():
            t.fail(
                "image",
                say(
                    "image",
                    "no such file {image!r} (paths are relative to {folder}/)",
                    image=image,
                    folder=folder.name,
                ),
            )
        image = str(path)
    aliases = t.values.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        t.fail(
            "aliases",
            say(
                "aliases",
                'expected a list of names, e.g. ["alias one", "alias two"], got {got!r}',
                got=aliases,
            ),
        )
    return Product(
        id=ident,
        name=t.text("name", required=True),
        aliases=tuple(a.strip() for a in aliases),
        price=price,
        spec=t.text("spec"),
        summary=t.text("summary"),
        link=link,
        image=image,
        tags=t.tags("tags", prefix=INTEREST),
    )
