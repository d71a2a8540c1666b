"""Top keywords of inbound messages, counted at ingest so that no message text is stored.

Texts wait in memory only (never on disk) until the next ``flush()``, at most about a minute;
a worker thread segments them with jieba and only aggregate counts per (day, room, channel,
word) reach SQL. After a flush the texts are gone.

Privacy and usefulness rules (``Segmenter.words``):

- Dictionary words only (``HMM=False``): strings unknown to jieba's dictionary and our user
  words, such as most personal names, fall apart into single characters, which are dropped.
- jieba's dictionary also lists ~60,000 three-character words tagged as person names
  (``nr*``, e.g. 王小明, but also 乌龙茶 and 维生素); those starting with one of the 100 most
  common surnames (~27,000, nearly all real names) are dropped, unless listed as user words.
- URLs, e-mail addresses, @mentions and WeChat emoji codes (``[微笑]``) are cut out before
  segmenting; tokens with digits (phone and order numbers), Chinese numerals only,
  punctuation, emoji, shorter than 2 or longer than 20 characters, and stop words are dropped.
- A word counts at most once per message, so one person repeating it does not top the list.

jieba (MIT, pure Python) loads its dictionary in ~0.7 s and ~80 MB and then segments a short
message in ~35 µs; the parsed dictionary is kept once per process and shared, so further
``Segmenter``s load in ~15 ms (plus ~10 MB when they have user words).

Threading: ``Segmenter.load/words/count`` may run in any thread; ``KeywordCounter`` is used
from the event loop thread only (its writes happen there, after the worker thread is done).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections import Counter, deque
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

if TYPE_CHECKING:  # imported when used: ~50 ms of start-up a bot on SQLite never needs
    from sqlalchemy.dialects import postgresql

__all__ = ["KeywordCounter", "Segmenter", "define_table", "load_words"]

log = logging.getLogger("pond.plugins.analytics")

TABLE = "analytics_keywords"
MIN_WORD = 2
MAX_WORD = 20
# A pasted article must not pin megabytes per message while it waits for the flush.
MAX_TEXT_CHARS = 1000
_SCOPES = ("all", "private", "rooms")

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
# Cut out before segmenting: jieba would otherwise split them into countable pieces
# ("com", a nickname, 微笑). URLs stop at the first non-ASCII character so that Chinese
# text glued to a link survives.
_NOISE = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://[!-~]*"  # scheme://...
    r"|[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"  # e-mail
    r"|(?:www\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?:/[!-~]*)?"  # bare domain
    r"|@[^\s@\u2005]{1,32}"  # @mention (WeChat ends it with U+2005)
    r"|\[[^\[\]\s]{1,8}\]"  # WeChat emoji code such as [微笑]
)
_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fffA-Za-z]+")
_NUMERALS = frozenset("零〇一二三四五六七八九十百千万亿两壹贰叁肆伍陆柒捌玖拾佰仟")
_LATIN = re.compile(r"[A-Za-z]")
# The 100 most common Chinese surnames: a three-character "person name" in jieba's dictionary
# that starts with one of these is almost always a real name (a customer could bear it).
_SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝"
    "龚邵万钱严覃武戴莫孔向汤"
)

# jieba's parsed dictionary, shared by every Segmenter of the process: (FREQ, total, names).
_base: tuple[dict[str, int], int, frozenset[str]] | None = None
_base_lock = threading.Lock()


def define_table(metadata: sa.MetaData) -> sa.Table:
    if TABLE in metadata.tables:
        return metadata.tables[TABLE]
    return sa.Table(
        TABLE,
        metadata,
        sa.Column("day", sa.String(10), primary_key=True),  # local date, 'YYYY-MM-DD'
        sa.Column("room_id", sa.String(128), primary_key=True),  # '' for private chats
        sa.Column("channel", sa.String(64), primary_key=True),  # first-touch channel or ''
        sa.Column("word", sa.String(64), primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Index("ix_analytics_keywords_day", "day"),
    )


def load_words(path: Path) -> list[str]:
    """One word per line; ``#`` starts a comment; blank lines ignored; a missing file is an
    empty list. Order kept, duplicates dropped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return []
    words = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return list(dict.fromkeys(w for w in words if w))


def _check_day(day: str) -> str:
    if not isinstance(day, str) or not _DAY.fullmatch(day):
        raise ValueError(f"day must be 'YYYY-MM-DD', not {day!r}")
    return day


def _load_base() -> tuple[dict[str, int], int, frozenset[str]]:
    """Parse jieba's dictionary once per process. Done here rather than with
    ``Tokenizer.initialize()`` because we also need the part-of-speech tags (to know the
    person names), and because jieba's on-disk cache would be a 9 MB temp file that loads
    no faster than the dictionary itself."""
    global _base
    with _base_lock:
        if _base is None:
            import jieba

            freq: dict[str, int] = {}
            total = 0
            names: set[str] = set()
            with jieba.Tokenizer().get_dict_file() as f:
                for raw in f:
                    word, count, *tag = raw.decode("utf-8").split()
                    n = int(count)
                    freq[word] = n
                    total += n
                    if len(word) == 3 and word[0] in _SURNAMES and tag and tag[0].startswith("nr"):
                        names.add(word)
                    for end in range(1, len(word)):  # prefixes, as jieba's gen_pfdict does
                        freq.setdefault(word[:end], 0)
            _base = (freq, total, frozenset(names))
        return _base


class Segmenter:
    """jieba with our filters. ``load()`` blocks for ~0.6 s the first time in a process:
    call it in a thread (``KeywordCounter.flush`` does so when needed)."""

    def __init__(self, stopwords: Iterable[str], userwords: Iterable[str] = ()) -> None:
        self.stopwords = frozenset(w.strip().lower() for w in stopwords if w.strip())
        self.userwords = tuple(dict.fromkeys(w.strip() for w in userwords if w.strip()))
        self._userwords_lower = frozenset(w.lower() for w in self.userwords)
        self._tokenizer: Any = None
        self._names: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._tokenizer is not None

    def load(self) -> None:
        with self._lock:
            if self._tokenizer is not None:
                return
            import jieba

            jieba.setLogLevel(logging.WARNING)  # it logs timings at DEBUG to stderr
            freq, total, self._names = _load_base()
            # A private Tokenizer, so our user words never leak into the global one or into
            # another Segmenter; it copies the shared dictionary only when it changes it.
            tokenizer = jieba.Tokenizer()
            tokenizer.FREQ = dict(freq) if self.userwords else freq
            tokenizer.total = total
            tokenizer.initialized = True
            for word in self.userwords:
                if _WORD.fullmatch(word):
                    tokenizer.add_word(word)
                else:
                    log.warning("keywords: user word %r skipped (letters and 汉字 only)", word)
            self._tokenizer = tokenizer

    def words(self, text: str) -> list[str]:
        """The distinct keywords of one message, in order of first appearance."""
        if not self.loaded:
            self.load()
        text = _NOISE.sub(" ", text[:MAX_TEXT_CHARS])
        seen: dict[str, None] = {}
        for token in self._tokenizer.lcut(text, HMM=False):
            if not MIN_WORD <= len(token) <= MAX_WORD or not _WORD.fullmatch(token):
                continue
            word = token.lower() if _LATIN.search(token) else token
            if word in seen or word in self.stopwords or all(c in _NUMERALS for c in word):
                continue
            if word in self._names and word not in self._userwords_lower:
                continue
            seen[word] = None
        return list(seen)

    def count(self, texts: Iterable[str]) -> Counter[str]:
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(self.words(text))
        return counts


_Key = tuple[str, str, str]  # (day, room_id, channel)


class KeywordCounter:
    """Buffers inbound texts in memory and turns them into counts on ``flush()``.

    Call ``flush()`` about once a minute and on shutdown; texts added after the last flush
    are lost if the process dies (they were never meant to be kept)."""

    def __init__(
        self,
        engine: sa.Engine,
        metadata: sa.MetaData,
        segmenter: Segmenter,
        *,
        max_pending: int = 5000,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.engine = engine
        self.segmenter = segmenter
        self.max_pending = max_pending
        self.table = define_table(metadata)
        metadata.create_all(engine, tables=[self.table])
        self.dropped = 0
        self._pending: deque[tuple[_Key, str]] = deque()
        # Counts (never texts) whose write failed, retried with the next flush.
        self._unwritten: dict[_Key, Counter[str]] = {}
        self._native_upsert = engine.dialect.name in ("sqlite", "postgresql")

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, day: str, room_id: str, channel: str, text: str) -> None:
        """Memory only. Beyond ``max_pending`` texts the oldest are dropped (``dropped``)."""
        _check_day(day)
        if not text or text.isspace():
            return
        if len(self._pending) >= self.max_pending:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(((day, room_id, channel), text[:MAX_TEXT_CHARS]))

    async def flush(self) -> int:
        """Segment the pending texts in a worker thread, then write the counts in one
        transaction from the calling thread. Returns the number of rows touched."""
        batch, self._pending = self._pending, deque()
        if batch:
            counted = await asyncio.to_thread(self._segment, batch)
            for key, counts in counted.items():
                self._unwritten.setdefault(key, Counter()).update(counts)
        if not self._unwritten:
            return 0
        todo, self._unwritten = self._unwritten, {}
        try:
            return self._write(todo)
        except Exception:
            for key, counts in todo.items():
                self._unwritten.setdefault(key, Counter()).update(counts)
            raise

    def _segment(self, batch: deque[tuple[_Key, str]]) -> dict[_Key, Counter[str]]:
        counted: dict[_Key, Counter[str]] = {}
        try:
            while batch:
                key, text = batch.popleft()  # each text is released as soon as it is read
                words = self.segmenter.words(text)
                if words:
                    counted.setdefault(key, Counter()).update(words)
        finally:
            batch.clear()  # even on error: texts never outlive the flush
        return counted

    def add_counts(self, day: str, room_id: str, channel: str, counts: Mapping[str, int]) -> int:
        """Add counts directly (demo data, imports). Returns the number of rows touched."""
        return self._write({(_check_day(day), room_id, channel): counts})

    def _write(self, todo: Mapping[_Key, Mapping[str, int]]) -> int:
        rows = [
            {"day": day, "room_id": room, "channel": channel, "word": word, "n": int(n)}
            for (day, room, channel), counts in todo.items()
            for word, n in counts.items()
            if n > 0 and word
        ]
        if not rows:
            return 0
        t = self.table
        with self.engine.begin() as conn:
            if self._native_upsert:
                # Atomic on the server: several processes may count into one PostgreSQL.
                stmt: sqlite.Insert | postgresql.Insert
                if conn.dialect.name == "sqlite":
                    stmt = sqlite.insert(t)
                else:
                    from sqlalchemy.dialects import postgresql

                    stmt = postgresql.insert(t)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[t.c.day, t.c.room_id, t.c.channel, t.c.word],
                        set_={"n": t.c.n + stmt.excluded.n},
                    ),
                    rows,
                )
            else:
                self._write_portable(conn, rows)
        return len(rows)

    def _write_portable(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        """SELECT then UPDATE/INSERT: any database, but only safe with one writer."""
        t = self.table
        by_key: dict[_Key, list[dict[str, Any]]] = {}
        for row in rows:
            by_key.setdefault((row["day"], row["room_id"], row["channel"]), []).append(row)
        update = (
            sa.update(t)
            .where(
                t.c.day == sa.bindparam("k_day"),
                t.c.room_id == sa.bindparam("k_room"),
                t.c.channel == sa.bindparam("k_channel"),
                t.c.word == sa.bindparam("k_word"),
            )
            .values(n=t.c.n + sa.bindparam("k_n", type_=sa.Integer))
        )
        for (day, room, channel), group in by_key.items():
            words = [row["word"] for row in group]
            existing: set[str] = set()
            for start in range(0, len(words), 500):  # bounded IN lists
                existing.update(
                    conn.execute(
                        sa.select(t.c.word).where(
                            t.c.day == day,
                            t.c.room_id == room,
                            t.c.channel == channel,
                            t.c.word.in_(words[start : start + 500]),
                        )
                    ).scalars()
                )
            updates = [
                {"k_day": day, "k_room": room, "k_channel": channel, "k_word": r["word"]}
                | {"k_n": r["n"]}
                for r in group
                if r["word"] in existing
            ]
            inserts = [r for r in group if r["word"] not in existing]
            if updates:
                conn.execute(update, updates)
            if inserts:
                conn.execute(sa.insert(t), inserts)

    def top(self, since_day: str, until_day: str, **filters: Any) -> list[tuple[str, int]]:
        """`top_words` on this counter's table."""
        return top_words(self.engine, self.table, since_day, until_day, **filters)

    def purge(self, before_day: str) -> int:
        """Delete counts of days before ``before_day``. Returns the number of rows deleted."""
        t = self.table
        with self.engine.begin() as conn:
            result = conn.execute(sa.delete(t).where(t.c.day < _check_day(before_day)))
            return int(result.rowcount or 0)


def top_words(
    engine: sa.Engine,
    table: sa.Table,
    since_day: str,
    until_day: str,
    *,
    room_ids: Collection[str] | None = None,
    channels: Collection[str] | None = None,
    scope: str = "all",
    limit: int = 50,
    min_count: int = 1,
) -> list[tuple[str, int]]:
    """Most frequent words with ``since_day <= day < until_day``. ``scope``: "all",
    "private" (no room) or "rooms". ``min_count`` hides rarer words (names, typos)."""
    if scope not in _SCOPES:
        raise ValueError(f"scope must be one of {_SCOPES}, not {scope!r}")
    t = table
    total = sa.func.sum(t.c.n).label("total")
    query = sa.select(t.c.word, total).where(
        t.c.day >= _check_day(since_day), t.c.day < _check_day(until_day)
    )
    if scope == "private":
        query = query.where(t.c.room_id == "")
    elif scope == "rooms":
        query = query.where(t.c.room_id != "")
    if room_ids is not None:
        query = query.where(t.c.room_id.in_(list(room_ids)))
    if channels is not None:
        query = query.where(t.c.channel.in_(list(channels)))
    query = query.group_by(t.c.word).order_by(total.desc(), t.c.word).limit(limit)
    if min_count > 1:
        query = query.having(total >= min_count)
    with engine.connect() as conn:
        return [(str(word), int(n)) for word, n in conn.execute(query)]
