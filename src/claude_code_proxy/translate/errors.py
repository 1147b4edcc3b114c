"""Anthropic-shaped errors and the mapping from upstream (OpenAI-style) failures."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson


class RequestValidationError(ValueError):
    """The client's request cannot be translated: answered with 400 invalid_request_error."""


@dataclass(eq=False)
class ProxyError(Exception):
    """An error to hand to the client as `{"type":"error","error":{…}}` with an HTTP status."""

    status: int
    error_type: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return error_body(self.error_type, self.message)

    def __str__(self) -> str:
        return f"{self.status} {self.error_type}: {self.message}"


def error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


_STATUS_MAP: dict[int, tuple[int, str]] = {
    400: (400, "invalid_request_error"),
    401: (401, "authentication_error"),
    402: (402, "billing_error"),
    403: (403, "permission_error"),
    404: (404, "not_found_error"),
    408: (504, "timeout_error"),
    409: (409, "api_error"),
    413: (413, "request_too_large"),
    422: (400, "invalid_request_error"),
    429: (429, "rate_limit_error"),
    500: (500, "api_error"),
    502: (502, "api_error"),
    503: (529, "overloaded_error"),
    504: (504, "timeout_error"),
    529: (529, "overloaded_error"),
}

# Claude Code compacts the conversation when it sees this wording (protocol.md A.13).
# vLLM: "... (4096 > 32768 - 30000)": the input fits, max_tokens does not.
_REMAINING_CONTEXT = re.compile(r"\((\d+) > (\d+) - (\d+)\)")
_EXCEEDED_BY = re.compile(r"exceeded max context length by (\d+) tokens")
_OVERFLOW_PATTERNS = (
    re.compile(r"maximum context length is (\d+) tokens.*?request has (\d+) input tokens", re.S),
    re.compile(
        r"maximum context length is (\d+) tokens.*?(?:requested|resulted in) (?:about )?(\d+) tokens",
        re.S,
    ),
    re.compile(r"context length is only (\d+) tokens.*?(\d+)", re.S),
    re.compile(r"requested (\d+) tokens.*?context (?:length|window|size)[^0-9]*(\d+)", re.S),
    re.compile(r"\((\d+)(?: tokens)?\) exceeds the available context size \((\d+)", re.S),
    re.compile(
        r"(\d+) tokens? exceeds? (?:the )?(?:maximum )?context (?:length|window|size)[^0-9]*(\d+)",
        re.S,
    ),
)
# Wordings that name a context overflow by themselves.
_OVERFLOW_HINTS = (
    "context_length_exceeded",
    "prompt is too long",
    "input is too long",
    "exceeds the context",
    "exceeds maximum context",
    "exceeds the maximum context",
    "exceeded max context",
)
# Wordings that mention the context but may be about something else ("max_tokens must be less
# than the context length"): they count only with a word saying the input is too big.
_CONTEXT_WORDS = ("context length", "context window", "context size", "too many tokens")
_TOO_BIG = re.compile(
    r"exceed|too long|too large|too many|reduce the length|resulted in|you requested|input tokens"
)
# "(100000 in the messages, 32000 in the completion)" (OpenAI, vLLM, DeepSeek; older OpenAI
# adds "N in the functions, and"), OpenRouter "(150000 of text input, 20000 in the output)".
_SPLIT_REQUEST = re.compile(
    r"\((\d+) (?:in the messages|of text input), (?:(\d+) in the functions, )?(?:and )?"
    r"(\d+) in the (?:completion|output)\)"
)


def _error_json(body: bytes) -> dict[str, Any] | None:
    """An error body as a JSON object (Gemini's one-element list unwrapped), else None."""
    try:
        data: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    if isinstance(data, list) and data:
        data = data[0]
    return data if isinstance(data, dict) else None


def upstream_error_message(body: bytes, status: int) -> tuple[str, str | None]:
    """Best-effort (message, code) from any upstream error body shape.

    Handles OpenAI/Azure/Ollama/vLLM `{"error":{…}}`, flat `{"object":"error",…}`
    (Mistral, old vLLM), Gemini's one-element list, and HTML or plain-text pages.
    """
    data = _error_json(body)
    if data is not None:
        err = data.get("error", data)
        if isinstance(err, dict):
            message = err.get("message") or err.get("detail") or err.get("msg")
            code = err.get("code") or err.get("type")
            if isinstance(message, str) and message:
                return message, code if isinstance(code, str) else None
        elif isinstance(err, str) and err:
            return err, None
        detail = data.get("detail") or data.get("message")
        if isinstance(detail, str) and detail:
            return detail, None
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("<"):
        title = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
        text = title.group(1).strip() if title else re.sub(r"<[^>]+>", " ", text)
        text = " ".join(text.split())
    return (text[:500] or f"upstream returned HTTP {status}"), None


def is_context_overflow(message: str, code: str | None) -> bool:
    """Whether an upstream error says the request does not fit the model's context."""
    if code in ("context_length_exceeded", "exceed_context_size_error"):
        return True
    lowered = message.lower()
    if any(hint in lowered for hint in _OVERFLOW_HINTS):
        return True
    return any(word in lowered for word in _CONTEXT_WORDS) and _TOO_BIG.search(lowered) is not None


def _input_and_output(used: int, wanted: int, limit: int) -> str:
    return (
        f"input length and `max_tokens` exceed context limit: {used} + {wanted} > "
        f"{limit}, decrease input length or `max_tokens` and try again"
    )


def split_request(message: str) -> tuple[int, int, int] | None:
    """(input, max_tokens, limit) when an overflow message splits the request in two parts."""
    split = _SPLIT_REQUEST.search(message)
    limit = re.search(r"context length is (\d+)", message)
    if split is None or limit is None:
        return None
    used = int(split.group(1)) + int(split.group(2) or 0)
    return used, int(split.group(3)), int(limit.group(1))


def context_overflow_message(
    message: str,
    code: str | None,
    counts: tuple[int, int] | None = None,
    prompt_tokens: int | None = None,
) -> str | None:
    """Rewrite any provider's context-overflow error into Anthropic's wording.

    `counts` are (prompt tokens, context size) when the body states them in fields
    (llama.cpp's `n_prompt_tokens` / `n_ctx`). When the input fits and only `max_tokens`
    overflows, the second A.13 form tells Claude Code to lower `max_tokens`, not compact.
    """
    if not is_context_overflow(message, code):
        return None
    if counts is not None:
        return f"prompt is too long: {counts[0]} tokens > {counts[1]} maximum"
    remaining = _REMAINING_CONTEXT.search(message)
    if remaining:
        wanted, limit, used = (int(g) for g in remaining.groups())
        if used < limit:
            return _input_and_output(used, wanted, limit)
    split = split_request(message)
    if split is not None:
        used, wanted, limit = split
        if used < limit:
            return _input_and_output(used, wanted, limit)
        return f"prompt is too long: {used} tokens > {limit} maximum"
    excess = _EXCEEDED_BY.search(message)
    if excess:
        # Ollama states only the excess: anchor it on our own estimate of the prompt.
        over = int(excess.group(1))
        used = max(prompt_tokens or 0, over + 1)
        return f"prompt is too long: {used} tokens > {used - over} maximum"
    for pattern in _OVERFLOW_PATTERNS:
        match = pattern.search(message)
        if match:
            first, second = int(match.group(1)), int(match.group(2))
            # The patterns capture (limit, requested) or (requested, limit): order them.
            limit, used = (first, second) if first < second else (second, first)
            return f"prompt is too long: {used} tokens > {limit} maximum"
    return "prompt is too long: the request exceeds the model's context window (" + message + ")"


def map_upstream_error(
    status: int, body: bytes, headers: dict[str, str], *, prompt_tokens: int | None = None
) -> ProxyError:
    """Translate an upstream HTTP error into the Anthropic status, type and message."""
    message, code = upstream_error_message(body, status)
    if status in _STATUS_MAP:
        out_status, error_type = _STATUS_MAP[status]
    elif 400 <= status < 500:
        out_status, error_type = 400, "invalid_request_error"
    else:
        out_status, error_type = 500, "api_error"
    if out_status == 400 or status == 413:
        overflow = context_overflow_message(message, code, _context_counts(body), prompt_tokens)
        if overflow is not None:
            # Claude Code recognises this exact wording and compacts the conversation.
            return ProxyError(400, "invalid_request_error", overflow)
    out_headers: dict[str, str] = {}
    if status in (429, 503, 529):
        retry_after = retry_after_seconds(headers)
        if retry_after is not None:
            out_headers["retry-after"] = str(retry_after)
    return ProxyError(out_status, error_type, f"upstream error ({status}): {message}", out_headers)


# String codes and statuses that upstreams put in an error object instead of an HTTP status.
_CODE_STATUS = {
    "invalid_request_error": 400,
    "invalid_argument": 400,
    "context_length_exceeded": 400,
    "authentication_error": 401,
    "invalid_api_key": 401,
    "unauthenticated": 401,
    "permission_error": 403,
    "permission_denied": 403,
    "not_found_error": 404,
    "not_found": 404,
    "model_not_found": 404,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "resource_exhausted": 429,
    "server_error": 500,
    "internal_error": 500,
    "internal": 500,
    "api_error": 500,
    "unavailable": 503,
    "overloaded_error": 529,
    "deadline_exceeded": 504,
    "timeout": 504,
}


def error_status(error: Any) -> int | None:
    """The HTTP status an error object stands for: its `code` or `status`, number or name."""
    if not isinstance(error, dict):
        return None
    for key in ("code", "status", "type"):
        value = error.get(key)
        if isinstance(value, str):
            value = int(value) if value.isdigit() else _CODE_STATUS.get(value.lower())
        if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
            return value
    return None


def _says_overloaded(error: Any) -> bool:
    """Whether an error object's code, type or status names an overload (`overloaded`,
    `server_overloaded`, `model_overloaded`, `overloaded_error`)."""
    if not isinstance(error, dict):
        return False
    return any(
        isinstance(error.get(key), str) and "overload" in error[key].lower()
        for key in ("code", "type", "status")
    )


def embedded_error(error: Any, *, prompt_tokens: int | None = None) -> ProxyError:
    """An `error` inside a 2xx body or stream chunk (OpenRouter, vLLM) as an Anthropic error.

    Mapped by the error's own code like an HTTP error; one whose code or type says it is an
    overload is `overloaded_error` (529), whatever number rides along, so the client backs off
    and retries; an upstream failure (502 api_error) when it names nothing.
    """
    status = 529 if _says_overloaded(error) else error_status(error) or 502
    try:
        body = orjson.dumps({"error": error})
    except TypeError:
        body = orjson.dumps({"error": str(error)})
    return map_upstream_error(status, body, {}, prompt_tokens=prompt_tokens)


def _context_counts(body: bytes) -> tuple[int, int] | None:
    data = _error_json(body)
    err = data.get("error", data) if data is not None else None
    if not isinstance(err, dict):
        return None
    used, limit = err.get("n_prompt_tokens"), err.get("n_ctx")
    if isinstance(used, int) and isinstance(limit, int) and used > limit > 0:
        return used, limit
    return None


def retry_after_seconds(headers: dict[str, str]) -> int | None:
    """Seconds to wait, from `retry-after`, `retry-after-ms` or OpenAI's `x-ratelimit-reset-*`."""
    lower = {k.lower(): v for k, v in headers.items()}
    value = lower.get("retry-after-ms")
    if value:
        try:
            return max(1, round(float(value) / 1000))
        except ValueError:
            pass
    value = lower.get("retry-after")
    if value:
        try:
            return max(0, round(float(value)))
        except ValueError:
            pass
    resets = [
        parse_duration(lower[name])
        for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
        if name in lower
    ]
    known = [r for r in resets if r is not None]
    return max(1, round(max(known))) if known else None


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(value: str) -> float | None:
    """OpenAI's reset format: `1s`, `6m0s`, `250ms`, or plain seconds."""
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    total, matched = 0.0, False
    for number, unit in _DURATION_RE.findall(value):
        matched = True
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total if matched else None


# Parameters the proxy may drop when an upstream rejects them; never the conversation.
DROPPABLE_PARAMS = frozenset(
    {
        "temperature",
        "top_p",
        "stop",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "reasoning",
        "thinking",
        "prompt_cache_key",
        "tool_choice",
        "chat_template_kwargs",
        "user",
        "stream_options",
        "text",  # the Responses API's structured output format
    }
)
_MAX_TOKEN_LIMIT_PATTERNS = (
    re.compile(r"supports at most (\d+) completion tokens"),
    re.compile(r"valid range of max_tokens is \[\d+,\s*(\d+)\]"),
    re.compile(r"> ?(\d+), which is the maximum allowed number of output tokens"),
    re.compile(
        r"max_(?:completion_)?tokens`? (?:must be|should be)? ?(?:less than or equal to|<=|at most) `?(\d+)"
    ),
    re.compile(
        r"maximum (?:value for `?max_(?:completion_)?tokens`?|output tokens?) (?:is|of) `?(\d+)"
    ),
)
_NAMED_PARAM_PATTERNS = (
    re.compile(r"[Uu]nsupported parameter: '([\w.]+)'"),
    re.compile(r"Unrecognized request arguments? supplied: ([\w.]+)"),
    re.compile(r"'([\w.]+)' (?:is not supported|does not support)"),
    re.compile(r"[Uu]nknown (?:field|parameter|argument) [\"'`]?([\w.]+)"),
    re.compile(r"\b([\w.]+) is not (?:supported|permitted|allowed)"),
    re.compile(r"[Ee]xtra inputs are not permitted.{0,40}?'([\w.]+)'"),
)


@dataclass(frozen=True)
class ParameterFix:
    """How to change a rejected request so the upstream accepts it."""

    kind: str  # "drop" | "rename_max_tokens" | "limit_max_tokens" | "fit_max_tokens"
    param: str = ""
    limit: int = 0


def parameter_fix(status: int, body: bytes, payload: dict[str, Any]) -> ParameterFix | None:
    """Recognise a 400 caused by one request parameter (protocol.md E.8, B.2)."""
    if status not in (400, 422):
        return None
    message, code = upstream_error_message(body, status)
    param = _error_param(body)
    lowered = message.lower()
    token_field = next(
        (f for f in ("max_output_tokens", "max_completion_tokens") if f in payload), "max_tokens"
    )
    if (
        "max_completion_tokens" in lowered
        and "max_tokens" in payload
        and (param == "max_tokens" or "not supported" in lowered or "unsupported" in lowered)
    ):
        return ParameterFix("rename_max_tokens", "max_tokens")
    remaining = _REMAINING_CONTEXT.search(message)
    if remaining and token_field in payload:
        wanted, limit, used = (int(g) for g in remaining.groups())
        if 0 < limit - used < wanted:
            return ParameterFix("fit_max_tokens", token_field, limit - used)
    if "context length" not in lowered and "context window" not in lowered:
        for pattern in _MAX_TOKEN_LIMIT_PATTERNS:
            match = pattern.search(message)
            if match and token_field in payload:
                limit = int(match.group(1))
                if 0 < limit < int(payload[token_field]):
                    return ParameterFix("limit_max_tokens", token_field, limit)
    if "response_format" in payload and any(
        word in lowered for word in ("response_format", "response format", "json_schema")
    ):
        # DeepSeek and older servers know no json_schema output; the prompt still asks for JSON.
        return ParameterFix("drop", "response_format")
    candidates = [param] if param else []
    candidates += [m.group(1) for p in _NAMED_PARAM_PATTERNS for m in p.finditer(message)]
    if code in ("unsupported_parameter", "unsupported_value") or candidates:
        for name in candidates:
            top = name.split(".")[0] if name else ""
            if top in DROPPABLE_PARAMS and top in payload:
                return ParameterFix("drop", top)
    return None


def _error_param(body: bytes) -> str | None:
    data = _error_json(body)
    if data is not None:
        err = data.get("error", data)
        if isinstance(err, dict) and isinstance(err.get("param"), str):
            return str(err["param"])
    return None


_RESPONSES_ONLY = (
    # OpenAI: "This model is only supported in v1/responses and not in v1/chat/completions."
    re.compile(r"only supported (?:in|on|with|by) (?:the )?(?:/?v1/)?responses", re.IGNORECASE),
    re.compile(r"use (?:the )?(?:/?v1/)?responses (?:api|endpoint)", re.IGNORECASE),
    # Azure: "The chatCompletion operation does not work with the specified model, …"
    re.compile(r"chatCompletion operation does not work with the specified model", re.IGNORECASE),
)


def needs_responses_api(status: int, body: bytes) -> bool:
    """A Chat Completions 4xx saying the model answers only on the Responses API."""
    if not 400 <= status < 500:
        return False
    message, _code = upstream_error_message(body, status)
    return any(pattern.search(message) for pattern in _RESPONSES_ONLY)


_KEY_LIKE = re.compile(r"\b((?:sk|rk|pk)-)[A-Za-z0-9_\-*.]{6,}")


def redact_secrets(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """Remove keys an upstream echoed in its error text before it reaches a client or log."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return _KEY_LIKE.sub(r"\1[redacted]", text)
