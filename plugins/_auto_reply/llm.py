"""An OpenAI-compatible chat-completions client on the standard library only.

One POST per question, no retries: a failed or slow call falls back to the template at
once, so a provider outage costs a customer at most one timeout. urllib blocks, so it runs
in a worker thread; the whole call (queueing for a slot included) is bounded by `timeout_s`.
The API key goes only into the Authorization header: never logged, never recorded."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import unicodedata
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from plugins._auto_reply.match import normalize

log = logging.getLogger("pond.plugins.auto_reply.llm")
MAX_RESPONSE_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class Answer:
    status: str  # ok | timeout | http_<code> | unreachable | bad_response | empty
    text: str = ""


class LlmClient:
    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str,
        *,
        timeout_s: float,
        max_tokens: int,
        temperature: float,
        concurrency: int = 4,
    ) -> None:
        base = base_url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model = model
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._slots = asyncio.Semaphore(concurrency)

    def __repr__(self) -> str:  # keeps the key out of any accidental log line
        return f"LlmClient(url={self.url!r}, model={self.model!r})"

    async def ask(self, system: str, question: str) -> Answer:
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": question},
            ],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": False,
        }
        try:
            return await asyncio.wait_for(self._call(body), self.timeout_s)
        except TimeoutError:
            return Answer("timeout")

    async def _call(self, body: dict[str, Any]) -> Answer:
        async with self._slots:
            return await asyncio.to_thread(self._post, body)

    def _post(self, body: dict[str, Any]) -> Answer:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as error:
            return Answer(f"http_{error.code}")
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                return Answer("timeout")
            return Answer("unreachable")
        except TimeoutError:
            return Answer("timeout")
        except OSError:
            return Answer("unreachable")
        try:
            payload = json.loads(raw.decode("utf-8"))
            content = payload["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return Answer("bad_response")
        if not isinstance(content, str) or not content.strip():
            return Answer("empty")
        return Answer("ok", content.strip())


# -- what comes back ---------------------------------------------------------------------------

# Sentence ends, by Unicode name: plugins hold no CJK literals, and these are not copy.
_ENDS = frozenset(
    {".", "!", "?", "\n"}
    | {
        unicodedata.lookup(name)
        for name in (
            "IDEOGRAPHIC FULL STOP",
            "FULLWIDTH EXCLAMATION MARK",
            "FULLWIDTH QUESTION MARK",
        )
    }
)
_MARKDOWN = re.compile(r"\*\*|__|`+|^#+\s*", re.MULTILINE)
_ELLIPSIS = unicodedata.lookup("HORIZONTAL ELLIPSIS")


def plain(text: str, max_chars: int) -> str:
    """WeChat shows Markdown as typed: drop it. Cut long answers at a sentence end."""
    text = _MARKDOWN.sub("", text).strip()
    text = re.sub(r"\n{3,}", "\n\n", text)
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    cut = max((head.rfind(ch) for ch in _ENDS), default=-1)
    if cut >= max_chars // 2:
        return head[: cut + 1].strip()
    return head[: max_chars - 1].rstrip() + _ELLIPSIS


def blocked(text: str, words: tuple[str, ...], patterns: tuple[re.Pattern[str], ...]) -> bool:
    """The outbound sensitive-word filter: `words` are normalized like rule words."""
    flat = normalize(text)
    return any(word in flat for word in words) or any(p.search(text) for p in patterns)
