"""A thin async client of the 企业微信 server API for a self-built app (自建应用).

- access_token: fetched with corp id + secret, cached until shortly before it expires, and
  refreshed by one caller at a time (concurrent callers wait for that one fetch).
- errcodes become TransportErrors with the flags the outbox relies on:
  45009 / 45033 (too frequent) -> throttled; 40014 / 42001 (token invalid or expired) ->
  refresh once and repeat the call (it was refused, so it did not happen); 60011 / 48002
  (no permission) -> WecomPermissionError with a Chinese message for the operator; codes the
  caller names as `done` (41051 for a welcome already sent) -> a normal answer.
- a request that could not even connect is `offline` (nothing was sent); a timeout after the
  request left is ambiguous and carries no flag (the outbox never repeats it).

The secret and the token travel in query strings, so nothing here logs a URL, and the
`httpx` / `httpcore` loggers (which log URLs at INFO / DEBUG) are capped at WARNING."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from pond.transports.base import TransportError

log = logging.getLogger("pond.transports.wecom")
# Their request lines carry ?access_token= and ?corpsecret=: never in our logs.
for _noisy in ("httpx", "httpcore"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

DEFAULT_BASE = "https://qyapi.weixin.qq.com"
THROTTLED = frozenset({45009, 45033})
TOKEN_INVALID = frozenset({40014, 42001})
PERMISSION = frozenset({60011, 48002})
# Shown to the operator (Chinese) when the app lacks a permission: what to change, where.
PERMISSION_HINTS = {
    60011: "应用没有这项数据的权限：请在企业微信管理后台「客户与上下游 → 客户联系 → 权限配置」"
    "把本应用加入「可调用接口的应用」，并确认相关员工在应用的可见范围内",
    48002: "接口未授权：请在企业微信管理后台把本应用设为「客户联系」和「微信客服」"
    "的「可调用接口的应用」，并把服务器出口 IP 加入应用的「企业可信 IP」",
}
TOKEN_MARGIN_S = 300.0  # refresh this long before WeCom says the token expires


class WecomPermissionError(TransportError):
    """The app may not call this API: no retry helps; the operator must change a setting."""

    def __init__(self, what: str, code: int) -> None:
        self.code = code
        self.hint = PERMISSION_HINTS.get(code, "应用权限不足，请检查企业微信管理后台的应用权限")
        super().__init__(f"{what}: errcode {code}: {self.hint}")


class WecomApiError(TransportError):
    def __init__(
        self,
        what: str,
        code: int,
        errmsg: str,
        *,
        throttled: bool = False,
        retryable: bool = False,
        offline: bool = False,
    ) -> None:
        self.code = code
        # errmsg is WeCom's own text (a hint id and the caller's IP): no secret, no customer.
        super().__init__(
            f"{what}: errcode {code} {errmsg[:120]}",
            throttled=throttled,
            retryable=retryable,
            offline=offline,
        )


class WecomApi:
    def __init__(
        self,
        corp_id: str,
        secret: str,
        *,
        base: str = DEFAULT_BASE,
        timeout_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._corp_id = corp_id
        self._secret = secret
        self.base = base.rstrip("/")
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            # WeCom answers JSON at fixed URLs; a redirect would be a misconfiguration.
            follow_redirects=False,
            trust_env=False,
        )
        self._mono = monotonic
        self._token = ""
        self._token_until = 0.0
        self._lock = asyncio.Lock()
        self.token_fetches = 0  # how many times a token was fetched (reported by health)

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- access_token ------------------------------------------------------------------------
    async def token(self) -> str:
        if self._token and self._mono() < self._token_until:
            return self._token
        async with self._lock:
            # Whoever waited on the lock finds the token the first caller fetched.
            if self._token and self._mono() < self._token_until:
                return self._token
            data = await self._request(
                "GET",
                "/cgi-bin/gettoken",
                params={"corpid": self._corp_id, "corpsecret": self._secret},
                what="gettoken",
            )
            code = int(data.get("errcode", 0) or 0)
            if code:
                if code in THROTTLED:
                    raise WecomApiError(
                        "gettoken", code, str(data.get("errmsg", "")), throttled=True
                    )
                if code in PERMISSION:
                    raise WecomPermissionError("gettoken", code)
                # 40001 / 40013 / 40091: a wrong corp id or secret; nothing else will work.
                raise WecomApiError("gettoken", code, str(data.get("errmsg", "")), offline=True)
            token = str(data.get("access_token", ""))
            if not token:
                raise WecomApiError("gettoken", -1, "no access_token in the answer", offline=True)
            expires = float(data.get("expires_in", 7200) or 7200)
            self._token = token
            self._token_until = self._mono() + max(expires - TOKEN_MARGIN_S, expires / 2)
            self.token_fetches += 1
            log.info("wecom access token fetched (valid %.0f s)", expires)
            return token

    def _invalidate(self, used: str) -> None:
        # Only the token that was refused: a concurrent caller may have refreshed it already.
        if self._token == used:
            self._token = ""
            self._token_until = 0.0

    # -- calls -------------------------------------------------------------------------------
    async def call(
        self,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        method: str = "POST",
        params: Mapping[str, str] | None = None,
        done: frozenset[int] = frozenset(),
        retryable: bool = False,
    ) -> dict[str, Any]:
        """One API call; `done` are errcodes that mean the goal is already reached;
        `retryable` marks a call harmless twice (tags, reads), for ambiguous failures."""
        what = path.rsplit("/cgi-bin/", 1)[-1]
        for attempt in (1, 2):
            token = await self.token()
            data = await self._request(
                method,
                path,
                params={**(params or {}), "access_token": token},
                body=body,
                what=what,
                retryable=retryable,
            )
            code = int(data.get("errcode", 0) or 0)
            if code == 0 or code in done:
                return data
            errmsg = str(data.get("errmsg", ""))
            if code in TOKEN_INVALID and attempt == 1:
                # Refused for the token: it did not happen, so once more with a fresh one.
                log.info("wecom token refused (errcode %d): refreshing", code)
                self._invalidate(token)
                continue
            if code in THROTTLED:
                raise WecomApiError(what, code, errmsg, throttled=True)
            if code in PERMISSION:
                raise WecomPermissionError(what, code)
            raise WecomApiError(what, code, errmsg, retryable=retryable)
        raise AssertionError("unreachable")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str],
        body: Mapping[str, Any] | None = None,
        what: str,
        retryable: bool = False,
    ) -> dict[str, Any]:
        try:
            response = await self._client.request(
                method, self.base + path, params=dict(params), json=body
            )
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise TransportError(f"{what}: cannot reach the WeCom API", offline=True) from None
        except httpx.TimeoutException:
            raise TransportError(
                f"{what}: no answer in time (it may or may not have happened)",
                retryable=retryable,
            ) from None
        except httpx.HTTPError as error:
            raise TransportError(f"{what}: {type(error).__name__}", retryable=retryable) from None
        if response.status_code >= 400:
            raise TransportError(
                f"{what}: HTTP {response.status_code}",
                retryable=retryable,
                offline=response.status_code in {502, 503},
            )
        try:
            data = response.json()
        except ValueError:
            raise TransportError(
                f"{what}: an answer that is not JSON", retryable=retryable
            ) from None
        if not isinstance(data, dict):
            raise TransportError(f"{what}: an answer that is not an object", retryable=retryable)
        return data

    async def fetch_bytes(self, url: str, limit: int = 2 * 1024 * 1024) -> bytes:
        """A file WeCom points to (a channel QR image); bounded."""
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as error:
            raise TransportError(f"download: {type(error).__name__}", retryable=True) from None
        if response.status_code >= 400 or len(response.content) > limit:
            raise TransportError(f"download: HTTP {response.status_code}", retryable=True)
        return response.content
