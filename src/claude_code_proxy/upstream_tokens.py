"""`count_tokens` with the upstream's own tokenizer, where the server offers one.

A local model's tokenizer can count Claude Code's prompt 20 % higher than cl100k (measured
on llama.cpp: 13.0k vs 10.5k), so `/context` misjudges how full the window is. llama.cpp
renders the chat template (`POST /apply-template`) and tokenizes (`POST /tokenize`); vLLM
tokenizes chat messages in one call (`POST /tokenize` with `messages`, answering `count`).
Every failure, and every answer slower than `TIMEOUT`, falls back to the offline count; a
server that does not offer tokenizing is not asked again for `RETRY_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import orjson

from claude_code_proxy.capped import read_capped
from claude_code_proxy.config import Settings
from claude_code_proxy.translate.errors import ProxyError
from claude_code_proxy.windows import server_root

logger = logging.getLogger(__name__)

TIMEOUT = 3.0
#: A token count answer is tiny; a larger body is not one (issue 13).
MAX_ANSWER_BYTES = 1024 * 1024
RETRY_SECONDS = 600.0
#: Which tokenizing dialects to try, by server (recognised by discovery, or the profile name).
DIALECTS = {
    "llama.cpp": ("llama.cpp",),
    "vllm": ("vllm",),
    "sglang": ("vllm",),
}


class UpstreamTokenizer:
    """Counts an OpenAI chat payload's prompt tokens on the upstream, or says it cannot."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = server_root(settings.openai_base_url)
        self.working: dict[str, str] = {}  # profile name → the dialect that answered
        self.unavailable_until: dict[str, float] = {}
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=TIMEOUT)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def count(self, payload: dict[str, Any], kind: str, key: str) -> int | None:
        """Prompt tokens by the upstream's tokenizer, or None (use the offline count)."""
        dialects = DIALECTS.get(kind, ())
        if not dialects or time.monotonic() < self.unavailable_until.get(kind, 0.0):
            return None
        known = self.working.get(kind)
        headers = {"content-type": "application/json", **self.settings.custom_headers}
        if key:
            headers["authorization"] = f"Bearer {key}"
        for dialect in (known,) if known else dialects:
            try:
                count = await asyncio.wait_for(self._count(dialect, payload, headers), TIMEOUT)
            except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, ValueError) as exc:
                logger.debug("upstream tokenizer (%s) failed: %r", dialect, exc)
                count = None
            if count is not None:
                self.working[kind] = dialect
                return count
        self.working.pop(kind, None)
        self.unavailable_until[kind] = time.monotonic() + RETRY_SECONDS
        return None

    async def _post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
        session = self._client()
        async with session.post(self.root + path, json=body, headers=headers) as response:
            if response.status != 200:
                return None
            try:
                raw = await read_capped(response, MAX_ANSWER_BYTES)
            except ProxyError:
                return None
            return orjson.loads(raw)

    async def _count(
        self, dialect: str, payload: dict[str, Any], headers: dict[str, str]
    ) -> int | None:
        chat = {"messages": payload["messages"]}
        if payload.get("tools"):
            chat["tools"] = payload["tools"]
        if dialect == "vllm":
            body = {"model": payload["model"], "add_generation_prompt": True, **chat}
            answer = await self._post("/tokenize", body, headers)
            count = answer.get("count") if isinstance(answer, dict) else None
            return count if isinstance(count, int) and not isinstance(count, bool) else None
        rendered = await self._post("/apply-template", chat, headers)
        prompt = rendered.get("prompt") if isinstance(rendered, dict) else None
        if not isinstance(prompt, str):
            return None
        answer = await self._post("/tokenize", {"content": prompt, "add_special": True}, headers)
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        return len(tokens) if isinstance(tokens, list) else None
