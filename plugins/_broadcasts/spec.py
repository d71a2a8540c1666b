"""Campaign files (persona/broadcasts/campaigns/<id>.toml): parse and validate them into a
Spec, a JSON-friendly snapshot stored with the campaign. Edits of the file after creation do
not change a campaign: what the operator dry-ran and confirmed is what goes out.

Every refusal is a CampaignError with a code the operator templates explain in Chinese,
the field it concerns and a technical detail (file:line where TOML says so)."""

from __future__ import annotations

import csv
import io
import json
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, tzinfo
from pathlib import Path
from typing import Any

from plugins._core import cta
from pond import Context, Persona, PersonaError, Problem, Segment, SegmentError

ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
_CONTACT_ID = re.compile(r"^\S{1,128}$")
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")
# Variables the plugin fills per recipient, or the persona reserves.
RESERVED_VARS = frozenset({"name", "voice", "range", "dict", "lipsum", "cycler", "joiner"})
FIELDS = frozenset(
    {
        "title",
        "copy",
        "segment",
        "rooms",
        "csv",
        "start",
        "expires",
        "image",
        "file",
        "link",
        "vars",
        "reply",
    }
)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"})
_TOML_AT = re.compile(r"at line (\d+), column (\d+)")
_TIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")


def _say(code: str, english: str, **values: Any) -> str:
    """Detail text for a refusal, from the catalogue (`broadcast.<code>` in
    persona/core/problems.toml); the refusal's sentence is broadcasts/_labels.j2's."""
    return str(Problem(f"broadcast.{code}", english, **values))


class CampaignError(ValueError):
    """A campaign that cannot be created or started, in the operator's terms."""

    def __init__(self, code: str, detail: str = "", *, field: str = "", file: str = "") -> None:
        super().__init__(f"{file}: {field}: {code}: {detail}")
        self.code = code
        self.detail = detail
        self.field = field
        self.file = file

    def data(self) -> dict[str, str]:
        return {"code": self.code, "field": self.field, "detail": self.detail, "file": self.file}


@dataclass(frozen=True)
class Spec:
    id: str
    title: str
    file: str
    copy: str
    audience: str  # "segment" | "rooms" | "csv"
    segment: str = ""
    ids: tuple[str, ...] = ()  # room ids or contact ids (csv), de-duplicated, file order
    duplicates: int = 0  # csv lines naming an id already listed
    start_at: float | None = None  # None: as soon as it is confirmed
    expires_at: float | None = None
    media: dict[str, str] | None = None  # kind, path, url, title, description
    vars: dict[str, Any] = field(default_factory=dict)
    reply: dict[str, Any] | None = None  # the copy's call to action (plugins/_core/cta.py)

    @property
    def job(self) -> str:
        return f"broadcasts.{self.id}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ids"] = list(self.ids)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Spec:
        values = dict(data)
        values["ids"] = tuple(values.get("ids", ()))
        return cls(**values)


def resolve_path(name_or_path: str, campaigns_dir: Path, *, allow_paths: bool) -> Path:
    """A campaign name (looked up in the campaigns folder) or, from the command line only, a
    path. Chat commands take names only: an admin's chat cannot read arbitrary files."""
    text = name_or_path.strip()
    looks_like_path = "/" in text or "\\" in text or text.endswith(".toml")
    if looks_like_path:
        if not allow_paths:
            raise CampaignError("path_in_chat", text, field="name")
        return Path(text).expanduser()
    if not ID.match(text):
        raise CampaignError("bad_id", text, field="name")
    return campaigns_dir / f"{text}.toml"


def load(
    path: Path,
    *,
    now: datetime,
    tz: tzinfo,
    persona: Persona,
    copy_prefixes: Iterable[str],
    shown: str | None = None,
    ctx: Context | None = None,
) -> Spec:
    """Read and check one campaign file; raises CampaignError naming what is wrong. With
    the plugin's Context the copy is checked as the plugin will render it (declared keys
    only, through ctx.render); without one (a file check with no bot) on the persona."""
    label = shown or str(path)
    cid = path.stem
    if not ID.match(cid):
        raise CampaignError("bad_id", cid, field="name", file=label)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CampaignError("file_missing", str(path), file=label) from None
    except (OSError, UnicodeDecodeError) as error:
        raise CampaignError("file_unreadable", str(error), file=label) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        # Python 3.11's TOMLDecodeError only says "<what> (at line L, column C)".
        found = _TOML_AT.search(str(error))
        where = (
            _say("toml_at", "line {line}, column {column}", line=found[1], column=found[2])
            if found
            else ""
        )
        raise CampaignError("toml", where, file=label) from None
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise CampaignError("unknown_field", ", ".join(unknown), field=unknown[0], file=label)

    def fail(code: str, fld: str, detail: str = "") -> CampaignError:
        return CampaignError(code, detail, field=fld, file=label)

    title = data.get("title", cid)
    if not isinstance(title, str) or not title.strip():
        raise fail("bad_value", "title", _say("need_text", "a non-empty string"))
    variables = _variables(data.get("vars", {}), fail)
    copy = _copy(data.get("copy"), persona, copy_prefixes, variables, fail, ctx)
    audience, segment, ids, duplicates = _audience(data, path.parent, fail)
    start_at = _when(data.get("start", "now"), tz, "start", fail, allow_now=True)
    if start_at is not None and start_at <= now.timestamp():
        raise fail("start_past", "start", str(data.get("start")))
    expires_at = _when(data.get("expires"), tz, "expires", fail, allow_now=False)
    if expires_at is not None and expires_at <= max(now.timestamp(), start_at or 0.0):
        raise fail("expires_past", "expires", str(data.get("expires")))
    media = _media(data, path.parent, fail)
    reply = None
    if "reply" in data:
        try:
            reply = cta.parse(data["reply"], persona.has)
        except cta.CtaError as error:
            raise fail("reply_bad", error.field, error.detail) from None
    return Spec(
        id=cid,
        title=title.strip(),
        file=label,
        copy=copy,
        audience=audience,
        segment=segment,
        ids=ids,
        duplicates=duplicates,
        start_at=start_at,
        expires_at=expires_at,
        media=media,
        vars=variables,
        reply=reply,
    )


Fail = Callable[..., CampaignError]  # fail(code, field, detail="")


def _variables(raw: object, fail: Fail) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise fail("vars_bad", "vars", _say("vars_table", "a table: [vars] name = value"))
    for key, value in raw.items():
        if not _VAR.match(key) or key in RESERVED_VARS:
            raise fail("vars_name", f"vars.{key}", key)
        try:
            json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            raise fail(
                "vars_bad", f"vars.{key}", _say("vars_value", "{key}: text or numbers", key=key)
            ) from None
    return dict(raw)


def _copy(
    raw: object,
    persona: Persona,
    prefixes: Iterable[str],
    variables: Mapping[str, Any],
    fail: Fail,
    ctx: Context | None = None,
) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise fail("copy_missing", "copy", "")
    key = raw.strip()
    allowed = tuple(prefixes)
    if not any(key.startswith(prefix) for prefix in allowed):
        raise fail(
            "copy_not_allowed",
            "copy",
            _say("copy_allowed", "{key} (allowed: {allowed})", key=key, allowed=allowed),
        )
    if not persona.has(key):
        raise fail("copy_unknown", "copy", key)
    if ctx is not None and ctx.check_keys([key]):
        # Under BROADCASTS_COPY_PREFIXES but not a key the plugin may render.
        allowed = ctx.plugin.persona_prefixes
        raise fail(
            "copy_not_allowed",
            "copy",
            _say("copy_allowed", "{key} (allowed: {allowed})", key=key, allowed=allowed),
        )
    render = ctx.render if ctx is not None else persona.render
    try:
        # A trial render as the brand voice, nameless: a variable the campaign does not give
        # (a typo in [vars], a template written for another plugin) fails here, not at 9:00.
        render(key, chat_id="broadcasts:check", name="", **variables)
    except PersonaError as error:
        raise fail("copy_render", "copy", str(error)) from None
    return key


def _audience(
    data: Mapping[str, Any], base: Path, fail: Fail
) -> tuple[str, str, tuple[str, ...], int]:
    given = [k for k in ("segment", "rooms", "csv") if k in data]
    if not given:
        raise fail("audience_missing", "segment", "")
    if len(given) > 1:
        raise fail("audience_many", given[1], ", ".join(given))
    kind = given[0]
    raw = data[kind]
    if kind == "segment":
        if not isinstance(raw, str):
            raise fail(
                "segment", "segment", _say("segment_text", 'a string such as "vip and not churned"')
            )
        try:
            Segment.parse(raw)
        except SegmentError as error:
            raise fail("segment", "segment", str(error)) from None
        return kind, raw.strip(), (), 0
    if kind == "rooms":
        if not isinstance(raw, list) or not raw:
            raise fail("rooms", "rooms", _say("rooms_list", "a non-empty list of room ids"))
        rooms = []
        for item in raw:
            if not isinstance(item, str) or not _CONTACT_ID.match(item.strip()):
                raise fail("rooms", "rooms", repr(item))
            rooms.append(item.strip())
        unique = tuple(dict.fromkeys(rooms))
        return kind, "", unique, len(rooms) - len(unique)
    if not isinstance(raw, str) or not raw.strip():
        raise fail("csv", "csv", _say("file_name", "a file name"))
    ids, duplicates = read_ids(base / raw.strip(), fail)
    return kind, "", ids, duplicates


def read_ids(path: Path, fail: Fail) -> tuple[tuple[str, ...], int]:
    """Contact ids from a CSV: a column named contact_id or id if there is a header, else
    the first column. Blank lines and lines starting with # are ignored."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise fail("csv_missing", "csv", str(path)) from None
    except (OSError, UnicodeDecodeError) as error:
        unreadable = _say("csv_unreadable", "{path}: {error}", path=path, error=error)
        raise fail("csv", "csv", unreadable) from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r and not r[0].strip().startswith("#")]
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    column = 0
    if rows:
        header = [cell.strip().lower() for cell in rows[0]]
        for name in ("contact_id", "id"):
            if name in header:
                column = header.index(name)
                rows = rows[1:]
                break
    ids: list[str] = []
    for number, row in enumerate(rows, start=1):
        value = row[column].strip() if column < len(row) else ""
        if not _CONTACT_ID.match(value):
            not_id = _say(
                "csv_not_id",
                "{file} row {row}: {value!r} is not a contact id",
                file=path.name,
                row=number,
                value=value,
            )
            raise fail("csv", "csv", not_id)
        ids.append(value)
    if not ids:
        raise fail("csv_empty", "csv", str(path))
    unique = tuple(dict.fromkeys(ids))
    return unique, len(ids) - len(unique)


def _when(raw: object, tz: tzinfo, fld: str, fail: Fail, *, allow_now: bool) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, str) and raw.strip().lower() == "now" and allow_now:
        return None
    moment: datetime | None = None
    if isinstance(raw, datetime):
        moment = raw
    elif isinstance(raw, date):
        moment = datetime.combine(raw, time(0, 0))
    elif isinstance(raw, str):
        for fmt in _TIME_FORMATS:
            try:
                moment = datetime.strptime(raw.strip(), fmt)
                break
            except ValueError:
                continue
    if moment is None:
        raise fail(f"{fld}_bad", fld, repr(raw))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.timestamp()


def _media(data: Mapping[str, Any], base: Path, fail: Fail) -> dict[str, str] | None:
    given = [k for k in ("image", "file", "link") if k in data]
    if not given:
        return None
    if len(given) > 1:
        raise fail("media_many", given[1], ", ".join(given))
    kind = given[0]
    raw = data[kind]
    if kind == "link":
        if not isinstance(raw, dict):
            raise fail("media_bad", "link", _say("link_table", "[link] url = ..., title = ..."))
        url, title = raw.get("url", ""), raw.get("title", "")
        description = raw.get("description", "")
        if not isinstance(url, str) or not re.match(r"^https?://\S+$", url):
            raise fail("media_bad", "link.url", repr(url))
        if not isinstance(title, str) or not title.strip():
            raise fail("media_bad", "link.title", _say("need_text", "a non-empty string"))
        if not isinstance(description, str):
            raise fail("media_bad", "link.description", _say("text", "a string"))
        return {"kind": "link", "path": "", "url": url, "title": title, "description": description}
    if not isinstance(raw, str) or not raw.strip():
        raise fail("media_bad", kind, _say("file_name", "a file name"))
    path = (base / raw.strip()).resolve()
    problem = check_media_file(path, kind)
    if problem:
        raise fail(problem, kind, str(path))
    return {"kind": kind, "path": str(path), "url": "", "title": "", "description": ""}


def check_media_file(path: Path, kind: str) -> str:
    """ "" when the file can be sent, else an error code (checked again at start)."""
    if not path.exists():
        return "media_missing"
    if not path.is_file() or path.stat().st_size == 0:
        return "media_bad"
    if kind == "image" and path.suffix.lower() not in IMAGE_SUFFIXES:
        return "media_bad"
    return ""
