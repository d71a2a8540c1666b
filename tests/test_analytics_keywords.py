from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from plugins._analytics.keywords import KeywordCounter, Segmenter, define_table, load_words

ROOT = Path(__file__).resolve().parent.parent
PERSONA = ROOT / "persona" / "analytics"
STOPWORDS = ["请问", "什么", "时候", "多少", "好的", "可以", "哈哈", "hello"]


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    seg = Segmenter(STOPWORDS, ["明前龙井", "正山小种", "小鱼塘"])
    seg.load()
    return seg


@pytest.fixture
def counter(tmp_path: Path, segmenter: Segmenter) -> KeywordCounter:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    return KeywordCounter(engine, sa.MetaData(), segmenter)


# -- words files ---------------------------------------------------------------------------
def test_load_words_skips_comments_blanks_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "w.txt"
    path.write_text("\ufeff# 注释\n\n龙井\n  红茶  # 行尾注释\n龙井\nOK\n", encoding="utf-8")
    assert load_words(path) == ["龙井", "红茶", "OK"]
    assert load_words(tmp_path / "missing.txt") == []


def test_shipped_files_load_and_are_used() -> None:
    stop = load_words(PERSONA / "stopwords.txt")
    user = load_words(PERSONA / "words.txt")
    assert len(stop) > 300
    assert {"你好", "谢谢", "请问", "哈哈", "收到", "the", "ok"} <= set(stop)
    assert {"桂花乌龙", "明前龙井", "正山小种"} <= set(user)
    seg = Segmenter(stop, user)
    words = seg.words("你好，请问桂花乌龙和明前龙井哪个好喝？谢谢哈哈")
    assert words == ["桂花乌龙", "明前龙井", "好喝"]


# -- segmentation --------------------------------------------------------------------------
def test_drops_stop_words_digits_single_chars_and_noise(segmenter: Segmenter) -> None:
    text = (
        "请问龙井多少钱？我的电话13812345678，订单号A2024 "
        "看 https://shop.example.com/p/1 或者 a.b@qq.com 😀😀 [微笑] @阿花\u2005 HELLO Tea"
    )
    assert segmenter.words(text) == ["龙井", "电话", "订单号", "或者", "tea"]


def test_unknown_names_fall_apart_and_dictionary_names_are_dropped(
    segmenter: Segmenter,
) -> None:
    # 王小明 is a person name in jieba's dictionary; 赵子墨 is not a word at all.
    assert segmenter.words("我叫王小明，朋友赵子墨介绍来的，想买红茶") == ["朋友", "介绍", "红茶"]
    # Three-character words with a "name" tag but no common surname are kept.
    assert segmenter.words("乌龙茶") == ["乌龙茶"]


def test_user_words_are_one_token(segmenter: Segmenter) -> None:
    plain = Segmenter(STOPWORDS)
    assert plain.words("明前龙井和正山小种") == ["龙井", "小种"]
    assert segmenter.words("明前龙井和正山小种") == ["明前龙井", "正山小种"]
    # Not leaked into jieba's global tokenizer or another Segmenter.
    assert Segmenter([]).words("小鱼塘") == ["鱼塘"]


def test_a_word_counts_once_per_message(segmenter: Segmenter) -> None:
    assert segmenter.words("龙井龙井龙井 龙井！") == ["龙井"]
    assert segmenter.count(["龙井龙井", "龙井 红茶", "红茶"]) == {"龙井": 2, "红茶": 2}


def test_latin_is_lowercased_and_stop_words_are_case_insensitive(segmenter: Segmenter) -> None:
    assert segmenter.words("Hello hello WeChat wechat") == ["wechat"]


def test_load_is_idempotent() -> None:
    seg = Segmenter([])
    assert not seg.loaded
    seg.load()
    tokenizer = seg._tokenizer
    seg.load()
    assert seg.loaded and seg._tokenizer is tokenizer


# -- counting and storage ------------------------------------------------------------------
async def test_flush_writes_counts_and_forgets_texts(counter: KeywordCounter) -> None:
    counter.add("2024-06-01", "", "qr", "明前龙井到货了吗？明前龙井")
    counter.add("2024-06-01", "", "qr", "明前龙井什么时候发货")
    counter.add("2024-06-01", "r1@chatroom", "", "红茶好喝")
    counter.add("2024-06-01", "", "qr", "   ")  # blank: never buffered
    assert counter.pending == 3
    assert await counter.flush() == 5  # (明前龙井, 到货, 发货) private + (红茶, 好喝) room
    assert counter.pending == 0
    assert not counter._pending and not counter._unwritten
    assert counter.top("2024-06-01", "2024-06-02") == [
        ("明前龙井", 2),
        ("到货", 1),
        ("发货", 1),
        ("好喝", 1),
        ("红茶", 1),
    ]


async def test_flush_with_nothing_pending_is_a_no_op(counter: KeywordCounter) -> None:
    assert await counter.flush() == 0
    counter.add("2024-06-01", "", "", "哈哈 😀 123")  # nothing countable
    assert await counter.flush() == 0
    with counter.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(counter.table)).scalar() == 0


async def test_counts_accumulate_across_flushes_and_days(counter: KeywordCounter) -> None:
    for day in ("2024-06-01", "2024-06-01", "2024-06-02"):
        counter.add(day, "", "qr", "龙井")
        await counter.flush()
    counter.add("2024-06-02", "", "qr", "龙井 红茶")
    await counter.flush()
    assert counter.top("2024-06-01", "2024-06-02") == [("龙井", 2)]
    assert counter.top("2024-06-02", "2024-06-03") == [("龙井", 2), ("红茶", 1)]
    assert counter.top("2024-06-01", "2024-06-03") == [("龙井", 4), ("红茶", 1)]
    with counter.engine.connect() as conn:
        rows = conn.execute(sa.select(counter.table).order_by("day", "word")).all()
    assert [tuple(r) for r in rows] == [
        ("2024-06-01", "", "qr", "龙井", 2),
        ("2024-06-02", "", "qr", "红茶", 1),
        ("2024-06-02", "", "qr", "龙井", 2),
    ]


def _fill(counter: KeywordCounter) -> None:
    counter.add_counts("2024-06-01", "", "qr", {"龙井": 5, "红茶": 1})
    counter.add_counts("2024-06-01", "", "ads", {"红茶": 3})
    counter.add_counts("2024-06-01", "r1", "qr", {"发货": 4, "龙井": 1})
    counter.add_counts("2024-06-02", "r2", "", {"发货": 2, "白茶": 7})
    counter.add_counts("2024-05-31", "", "qr", {"龙井": 100})


def test_top_filters(counter: KeywordCounter) -> None:
    _fill(counter)
    june = ("2024-06-01", "2024-06-03")
    assert counter.top(*june) == [("白茶", 7), ("发货", 6), ("龙井", 6), ("红茶", 4)]
    assert counter.top(*june, limit=2) == [("白茶", 7), ("发货", 6)]
    assert counter.top(*june, scope="private") == [("龙井", 5), ("红茶", 4)]
    assert counter.top(*june, scope="rooms") == [("白茶", 7), ("发货", 6), ("龙井", 1)]
    assert counter.top(*june, room_ids=["r1"]) == [("发货", 4), ("龙井", 1)]
    assert counter.top(*june, room_ids=[]) == []
    assert counter.top(*june, channels=["qr"]) == [("龙井", 6), ("发货", 4), ("红茶", 1)]
    assert counter.top(*june, channels=["ads"], scope="rooms") == []
    assert counter.top(*june, min_count=5) == [("白茶", 7), ("发货", 6), ("龙井", 6)]
    assert counter.top("2024-05-31", "2024-06-01") == [("龙井", 100)]
    with pytest.raises(ValueError):
        counter.top(*june, scope="groups")
    with pytest.raises(ValueError):
        counter.top("2024-6-1", "2024-06-03")


def test_purge_deletes_days_before(counter: KeywordCounter) -> None:
    _fill(counter)
    assert counter.purge("2024-06-02") == 6
    assert counter.top("2000-01-01", "2100-01-01") == [("白茶", 7), ("发货", 2)]
    assert counter.purge("2024-06-02") == 0


async def test_max_pending_drops_oldest(tmp_path: Path, segmenter: Segmenter) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    counter = KeywordCounter(engine, sa.MetaData(), segmenter, max_pending=2)
    for word in ("龙井", "红茶", "绿茶"):
        counter.add("2024-06-01", "", "", word)
    assert counter.pending == 2
    assert counter.dropped == 1
    await counter.flush()
    assert counter.top("2024-06-01", "2024-06-02") == [("红茶", 1), ("绿茶", 1)]


async def test_portable_upsert_matches_native(tmp_path: Path, segmenter: Segmenter) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    counter = KeywordCounter(engine, sa.MetaData(), segmenter)
    counter._native_upsert = False
    _fill(counter)
    counter.add_counts("2024-06-01", "", "qr", {"龙井": 1, "绿茶": 2})
    counter.add("2024-06-01", "", "qr", "红茶")
    assert await counter.flush() == 1
    assert counter.top("2024-06-01", "2024-06-02", channels=["qr"], scope="private") == [
        ("龙井", 6),
        ("红茶", 2),
        ("绿茶", 2),
    ]


async def test_failed_write_keeps_counts_not_texts(
    tmp_path: Path, segmenter: Segmenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    counter = KeywordCounter(engine, sa.MetaData(), segmenter)
    counter.add("2024-06-01", "", "", "龙井")

    def broken(todo: object) -> int:
        raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(counter, "_write", broken)
    with pytest.raises(sa.exc.OperationalError):
        await counter.flush()
    assert counter.pending == 0
    assert counter._unwritten == {("2024-06-01", "", ""): {"龙井": 1}}
    monkeypatch.undo()
    assert await counter.flush() == 1
    assert counter.top("2024-06-01", "2024-06-02") == [("龙井", 1)]


def test_define_table_is_idempotent() -> None:
    metadata = sa.MetaData()
    table = define_table(metadata)
    assert define_table(metadata) is table
    assert [c.name for c in table.primary_key] == ["day", "room_id", "channel", "word"]
    assert not table.c.n.nullable


def test_add_refuses_a_malformed_day(counter: KeywordCounter) -> None:
    with pytest.raises(ValueError):
        counter.add("20240601", "", "", "龙井")
    assert counter.pending == 0
