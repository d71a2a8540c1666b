"""Users, the one-time setup link, sessions and CSRF tokens, kept in the web plugin's own
durable store namespace (ctx.store): a restart keeps accounts and signs nobody out.

- Passwords: argon2id (argon2-cffi's defaults), hashed in a worker thread.
- The setup link's token and session ids are stored only as SHA-256 digests: a copy of the
  data directory does not give anyone a working link or session.
- A session cookie carries a signed random id; the id names a server-side record (user,
  CSRF token, expiry). Logging in always makes a new id, and logging out deletes it.
- Before login, the login and setup forms use a signed random "pre" token, sent both as a
  cookie and as a form field (double submit); it is never a session."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, URLSafeTimedSerializer


class Namespace(Protocol):
    """The plugin's key-value store (ctx.store)."""

    def get(self, key: str, default: object = None) -> object: ...
    def get_int(self, key: str, default: int = 0) -> int: ...
    def set(self, key: str, value: object) -> None: ...
    def delete(self, key: str) -> None: ...
    def items(self, prefix: str = "") -> list[tuple[str, object]]: ...


ROLES = ("owner", "operator", "staff", "viewer")
RANK = {"viewer": 0, "staff": 1, "operator": 2, "owner": 3}
USER = "user:"
SESSION = "session:"
SETUP = "setup"
SECRET = "secret"
MIN_PASSWORD = 10
MAX_PASSWORD = 200
NAME_CHARS = 32
_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
# Compared against when the user does not exist, so a wrong name costs the same time.
_DUMMY = _hasher.hash(secrets.token_hex(8))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    role: str

    def can(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]


@dataclass(frozen=True, slots=True)
class Session:
    key: str  # the stored digest
    user: User
    csrf: str
    expires: float


def valid_name(name: str) -> bool:
    return 0 < len(name) <= NAME_CHARS and name.isprintable() and name.strip() == name


def valid_password(password: str) -> bool:
    return MIN_PASSWORD <= len(password) <= MAX_PASSWORD


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def check_password(stored: str | None, password: str) -> bool:
    def verify() -> bool:
        try:
            return _hasher.verify(stored or _DUMMY, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


class Auth:
    def __init__(self, kv: Namespace, now: Callable[[], float], session_s: float) -> None:
        self.kv = kv
        self.now = now
        self.session_s = session_s
        secret = kv.get(SECRET)
        if not isinstance(secret, str):
            secret = secrets.token_urlsafe(32)
            kv.set(SECRET, secret)
        self._signer = URLSafeTimedSerializer(secret, salt="pond-web")

    # -- users -------------------------------------------------------------------------------
    def users(self) -> list[User]:
        found = [self._user(key.removeprefix(USER), v) for key, v in self.kv.items(USER)]
        return sorted((u for u in found if u), key=lambda u: int(u.id))

    def has_users(self) -> bool:
        return bool(self.kv.items(USER))

    def user(self, uid: str) -> User | None:
        return self._user(uid, self.kv.get(USER + uid))

    def by_name(self, name: str) -> tuple[User | None, str | None]:
        """The user called `name` (case-insensitive) and its password hash."""
        for key, value in self.kv.items(USER):
            if isinstance(value, dict) and str(value.get("name", "")).lower() == name.lower():
                return self._user(key.removeprefix(USER), value), str(value.get("hash", ""))
        return None, None

    @staticmethod
    def _user(uid: str, value: Any) -> User | None:
        if not isinstance(value, dict) or value.get("role") not in RANK:
            return None
        return User(uid, str(value.get("name", "")), str(value["role"]))

    def add_user(self, name: str, role: str, password_hash: str) -> User:
        if role not in RANK:
            raise ValueError(role)
        number = self.kv.get_int("user_seq") + 1
        self.kv.set("user_seq", number)
        self.kv.set(
            USER + str(number),
            {"name": name, "role": role, "hash": password_hash, "created": self.now()},
        )
        return User(str(number), name, role)

    # -- the setup link ------------------------------------------------------------------------
    def issue_setup(self, ttl_s: float) -> str:
        token = secrets.token_urlsafe(24)
        self.kv.set(SETUP, {"digest": digest(token), "expires": self.now() + ttl_s})
        return token

    def check_setup(self, token: str) -> str:
        """ok, expired (the right token, too late), used (no setup pending) or wrong."""
        entry = self.kv.get(SETUP)
        if not isinstance(entry, dict) or self.has_users():
            return "used"
        if not hmac.compare_digest(digest(token), str(entry.get("digest", ""))):
            return "wrong"
        return "ok" if self.now() < float(entry.get("expires", 0)) else "expired"

    def finish_setup(self) -> None:
        self.kv.delete(SETUP)

    # -- sessions ------------------------------------------------------------------------------
    def open_session(self, user: User, replacing: str = "") -> str:
        """A new session for `user`; returns the cookie value. The session the browser had
        (`replacing`, a cookie value) ends: ids are never carried across a login."""
        if replacing:
            self.close_session(replacing)
        now = self.now()
        for key, value in self.kv.items(SESSION):
            if not isinstance(value, dict) or float(value.get("expires", 0)) <= now:
                self.kv.delete(key)
        sid = secrets.token_urlsafe(32)
        self.kv.set(
            SESSION + digest(sid),
            {"user": user.id, "csrf": secrets.token_urlsafe(24), "expires": now + self.session_s},
        )
        return self._signer.dumps({"s": sid})

    def session(self, cookie: str) -> Session | None:
        sid = self._unsign(cookie, "s", self.session_s)
        if sid is None:
            return None
        key = SESSION + digest(sid)
        entry = self.kv.get(key)
        if not isinstance(entry, dict) or float(entry.get("expires", 0)) <= self.now():
            return None
        user = self.user(str(entry.get("user", "")))
        if user is None:  # the user was removed: the session goes with them
            self.kv.delete(key)
            return None
        return Session(key, user, str(entry["csrf"]), float(entry["expires"]))

    def close_session(self, cookie: str) -> None:
        sid = self._unsign(cookie, "s", self.session_s)
        if sid is not None:
            self.kv.delete(SESSION + digest(sid))

    # -- the pre-login form token ------------------------------------------------------------------
    def new_pre(self) -> str:
        return self._signer.dumps({"p": secrets.token_urlsafe(16)})

    def check_pre(self, cookie: str, form: str) -> bool:
        ok = self._unsign(cookie, "p", 3600) is not None
        return ok and bool(form) and hmac.compare_digest(cookie.encode(), form.encode())

    def _unsign(self, value: str, field: str, max_age: float) -> str | None:
        if not value or len(value) > 400:
            return None
        try:
            data = self._signer.loads(value, max_age=int(max_age))
        except (BadSignature, ValueError, TypeError):
            return None
        found = data.get(field) if isinstance(data, dict) else None
        return found if isinstance(found, str) else None
