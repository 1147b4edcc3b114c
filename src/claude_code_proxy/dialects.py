"""Upstream dialects: Chat Completions and the Responses API, behind one seam.

A `Dialect` is everything that differs between the two on the upstream side: the endpoint,
the request translator, the reply translator and the stream translator. The exchange holds
one per request, chosen from `UPSTREAM_API` (or a provider's `api`) and the capability
profile; the rest of the proxy (retries, pooling, SSE relay, observation) is shared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from claude_code_proxy.gateway.capabilities import Profile
from claude_code_proxy.translate.chat.request import translate_request as chat_request
from claude_code_proxy.translate.chat.response import translate_completion
from claude_code_proxy.translate.chat.stream import StreamTranslator
from claude_code_proxy.translate.errors import ProxyError
from claude_code_proxy.translate.options import TranslatedRequest, TranslationOptions
from claude_code_proxy.translate.rescue import RescueContext
from claude_code_proxy.translate.responses.request import translate_request as responses_request
from claude_code_proxy.translate.responses.response import translate_response
from claude_code_proxy.translate.responses.stream import ResponsesStreamTranslator

Api = Literal["chat", "responses"]
Event = dict[str, Any]


class StreamTranslation(Protocol):
    """What the exchange needs of a stream translator (both dialects' state machines)."""

    ended: bool
    finish_reason: str | None
    usage: dict[str, Any] | None
    stop_reason: str | None
    error_type: str | None
    input_tokens: int
    IGNORED: tuple[bytes, ...]  # raw payloads the relay may skip without parsing

    @property
    def complete(self) -> bool: ...

    def start(self) -> list[Event]: ...
    def feed(self, chunk: Any) -> list[Event]: ...
    def finish(self) -> list[Event]: ...
    def fail(self, error_type: str, message: str) -> list[Event]: ...


class RequestTranslator(Protocol):
    def __call__(
        self,
        body: Any,
        *,
        upstream_model: str,
        options: TranslationOptions | None = None,
        session_id: str | None = None,
        documents: Mapping[str, str] | None = None,
    ) -> TranslatedRequest: ...


@dataclass(frozen=True)
class Dialect:
    api: Api
    translate_request: RequestTranslator
    # (reply body, request, profile, rescue of tool calls written as text) → Message
    reply: Callable[
        [dict[str, Any], TranslatedRequest, Profile, RescueContext | None], dict[str, Any]
    ]
    # (request, profile, secrets to redact, rescue) → stream translator
    stream: Callable[
        [TranslatedRequest, Profile, tuple[str, ...], RescueContext | None], StreamTranslation
    ]


def _chat_reply(
    body: dict[str, Any],
    translated: TranslatedRequest,
    profile: Profile,
    rescue: RescueContext | None,
) -> Event:
    return translate_completion(
        body,
        client_model=translated.client_model,
        stop_sequences=translated.stop_sequences,
        fallback_input_tokens=translated.estimated_input_tokens,
        think_tags=profile.think_tags,
        stash_reasoning=profile.stash_reasoning,
        under_counts=profile.prompt_under_count,
        tool_names=translated.tool_names,
        rescue=rescue,
    )


def _chat_stream(
    translated: TranslatedRequest,
    profile: Profile,
    secrets: tuple[str, ...],
    rescue: RescueContext | None,
) -> StreamTranslation:
    return StreamTranslator(
        model=translated.client_model,
        input_tokens=translated.estimated_input_tokens,
        stop_sequences=translated.stop_sequences,
        expect_usage="stream_options" in translated.payload,
        think_tags=profile.think_tags,
        stash_reasoning=profile.stash_reasoning,
        under_counts=profile.prompt_under_count,
        secrets=secrets,
        tool_names=translated.tool_names,
        rescue=rescue,
    )


def _responses_reply(
    body: dict[str, Any],
    translated: TranslatedRequest,
    profile: Profile,
    rescue: RescueContext | None,
) -> Event:
    if body.get("object") not in ("response", None) or not isinstance(body.get("output"), list):
        raise ProxyError(502, "api_error", "upstream returned JSON that is not a Response")
    return translate_response(
        body,
        client_model=translated.client_model,
        fallback_input_tokens=translated.estimated_input_tokens,
        tool_names=translated.tool_names,
    )


def _responses_stream(
    translated: TranslatedRequest,
    profile: Profile,
    secrets: tuple[str, ...],
    rescue: RescueContext | None,
) -> StreamTranslation:
    return ResponsesStreamTranslator(
        model=translated.client_model,
        input_tokens=translated.estimated_input_tokens,
        secrets=secrets,
        tool_names=translated.tool_names,
    )


CHAT = Dialect("chat", chat_request, _chat_reply, _chat_stream)
RESPONSES = Dialect("responses", responses_request, _responses_reply, _responses_stream)
DIALECTS: dict[str, Dialect] = {"chat": CHAT, "responses": RESPONSES}


def dialect_for(profile: Profile, setting: str = "auto") -> Dialect:
    """The dialect for a request: an explicit setting, else what the profile knows."""
    return DIALECTS[profile.upstream_api(setting)]
