"""Anthropic Messages request → OpenAI Chat Completions request (protocol.md E.1, E.2)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from claude_code_proxy.translate.errors import RequestValidationError
from claude_code_proxy.translate.ids import mistral_tool_id, upstream_tool_id, upstream_tool_name
from claude_code_proxy.translate.reasoning import (
    DEFAULT_BUDGET_THRESHOLDS,
    decode_signature,
    requested_effort,
    supported_effort,
)
from claude_code_proxy.translate.schema import clean_schema

logger = logging.getLogger(__name__)

BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"
GEMINI_SKIP_SIGNATURE = "skip_thought_signature_validator"
MAX_STOP_SEQUENCES = 4
# Anthropic tool types that name server-side tools the upstream cannot execute.
SERVER_TOOL_PREFIXES = (
    "web_search",
    "web_fetch",
    "code_execution",
    "tool_search_tool",
    "mcp_toolset",
    "advisor",
)
_BASH_SCHEMA = {
    "type": "object",
    "properties": {
        "command": {"type": "string", "description": "The shell command to run."},
        "restart": {"type": "boolean", "description": "Restart the shell session."},
    },
}
# File-editing inputs the text editor and memory tools share.
_FILE_EDIT_FIELDS = {
    "path": {"type": "string"},
    "view_range": {"type": "array", "items": {"type": "integer"}},
    "file_text": {"type": "string"},
    "old_str": {"type": "string"},
    "new_str": {"type": "string"},
    "insert_line": {"type": "integer"},
}
_TEXT_EDITOR_SCHEMA = {
    "type": "object",
    "properties": {
        "command": {
            "type": "string",
            "enum": ["view", "create", "str_replace", "insert", "undo_edit"],
        },
        **_FILE_EDIT_FIELDS,
    },
    "required": ["command", "path"],
}
_MEMORY_SCHEMA = {
    "type": "object",
    "properties": {
        "command": {
            "type": "string",
            "enum": ["view", "create", "str_replace", "insert", "delete", "rename"],
        },
        **_FILE_EDIT_FIELDS,
        "insert_text": {"type": "string"},
        "old_path": {"type": "string"},
        "new_path": {"type": "string"},
    },
    "required": ["command"],
}
_COMPUTER_SCHEMA = {
    "type": "object",
    "properties": {
        "action": {
            "type": "string",
            "enum": [
                "screenshot", "left_click", "right_click", "middle_click", "double_click",
                "triple_click", "mouse_move", "left_click_drag", "left_mouse_down",
                "left_mouse_up", "scroll", "type", "key", "hold_key", "wait", "cursor_position",
                "zoom",
            ],
        },
        "coordinate": {"type": "array", "items": {"type": "integer"}},
        "start_coordinate": {"type": "array", "items": {"type": "integer"}},
        "text": {"type": "string"},
        "scroll_direction": {"type": "string", "enum": ["up", "down", "left", "right"]},
        "scroll_amount": {"type": "integer"},
        "duration": {"type": "number"},
        "region": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["action"],
}  # fmt: skip
# Anthropic-defined client tools: the client executes them, so a function schema works.
CLIENT_TOOL_SCHEMAS = {
    "bash": _BASH_SCHEMA,
    "text_editor": _TEXT_EDITOR_SCHEMA,
    "memory": _MEMORY_SCHEMA,
    "computer": _COMPUTER_SCHEMA,
}
IMAGE_TOKEN_ESTIMATE = 1600


ReasoningParam = Literal[
    "none", "reasoning_effort", "openrouter", "deepseek", "chat_template_kwargs"
]
ReasoningEcho = Literal["none", "reasoning_content", "reasoning", "reasoning_details"]


@dataclass(frozen=True)
class TranslationOptions:
    """Per-upstream choices; built from the provider capability table outside this package."""

    max_tokens_limit: int | None = None
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    include_usage: bool = True
    pdf_as_file: bool = False
    system_in_place: bool = False
    forward_response_format: bool = True
    # Parameters this upstream rejects (e.g. temperature on reasoning models).
    drop_params: frozenset[str] = frozenset()
    # How to ask for reasoning, which efforts the model knows, and how to send it back.
    reasoning_param: ReasoningParam = "none"
    efforts: tuple[str, ...] = ("low", "medium", "high")
    budget_thresholds: tuple[int, int] = DEFAULT_BUDGET_THRESHOLDS
    reasoning_echo: ReasoningEcho = "none"
    schema_dialect: Literal["json_schema", "gemini"] = "json_schema"
    tool_id_style: Literal["default", "mistral"] = "default"
    prompt_cache_key: bool = False
    # Sampling extension some servers accept (vLLM, SGLang, llama.cpp, OpenRouter).
    forward_top_k: bool = False
    # Gemini 3 rejects a replayed tool call without the thought signature it was issued with.
    thought_signatures: bool = False
    # Keep Anthropic `cache_control` breakpoints on text parts (explicit-caching upstreams).
    cache_control: bool = False


@dataclass
class TranslatedRequest:
    payload: dict[str, Any]
    stream: bool
    client_model: str
    max_tokens: int
    stop_sequences: list[str] = field(default_factory=list)
    estimated_input_tokens: int = 0
    # Upstream tool name → the client's, for names the upstream's pattern forced us to change.
    tool_names: dict[str, str] = field(default_factory=dict)


@dataclass
class _Stats:
    text_chars: int = 0
    images: int = 0


def translate_request(
    body: Any,
    *,
    upstream_model: str,
    options: TranslationOptions | None = None,
    session_id: str | None = None,
) -> TranslatedRequest:
    """Validate an Anthropic request body and build the OpenAI payload for it.

    `session_id` (Claude Code's `X-Claude-Code-Session-Id`) keys upstream prompt caches.
    """
    options = options or TranslationOptions()
    if not isinstance(body, dict):
        raise RequestValidationError("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestValidationError("model: field required (a non-empty string)")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise RequestValidationError("max_tokens: field required (an integer)")
    if max_tokens < 0:
        raise RequestValidationError("max_tokens: must be greater than or equal to 0")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise RequestValidationError("messages: field required (a list of messages)")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestValidationError("stream: must be a boolean")

    stats = _Stats()
    renamed: dict[str, str] = {}  # client tool name → upstream-legal name
    system_parts = _system_texts(body.get("system"), stats)
    converter = _MessageConverter(options, stats, renamed)
    converted = converter.convert(messages, system_parts)
    if not any(m["role"] != "system" for m in converted):
        raise RequestValidationError("messages: at least one non-empty message is required")

    payload: dict[str, Any] = {"model": upstream_model, "messages": converted}
    limit = options.max_tokens_limit
    payload[options.max_tokens_field] = min(max_tokens, limit) if limit else max_tokens

    stop_sequences = _stop_sequences(body.get("stop_sequences"))
    if stop_sequences:
        payload["stop"] = stop_sequences[:MAX_STOP_SEQUENCES]
    for name in ("temperature", "top_p", "top_k"):
        value = body.get(name)
        if value is not None and name not in options.drop_params:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RequestValidationError(f"{name}: must be a number")
            if name != "top_k" or options.forward_top_k:
                payload[name] = value

    tools, requested = _tools(
        body.get("tools"), stats, options, loaded=_loaded_tools(messages), renamed=renamed
    )
    if tools:
        payload["tools"] = tools
        forwarded = {t["function"]["name"] for t in tools}
        choice = _tool_choice(body.get("tool_choice"), forwarded, requested, renamed)
        if choice is not None:
            payload["tool_choice"] = choice
        tc = body.get("tool_choice")
        if isinstance(tc, dict) and tc.get("disable_parallel_tool_use") is True:
            payload["parallel_tool_calls"] = False

    if options.forward_response_format:
        response_format = _response_format(body)
        if response_format is not None:
            payload["response_format"] = response_format

    _reasoning(body, payload, options)
    if options.prompt_cache_key:
        cache_key = _cache_key(body, session_id)
        if cache_key:
            payload["prompt_cache_key"] = cache_key
    for name in options.drop_params:
        payload.pop(name, None)

    if stream:
        payload["stream"] = True
        if options.include_usage:
            payload["stream_options"] = {"include_usage": True}

    estimate = stats.text_chars // 4 + stats.images * IMAGE_TOKEN_ESTIMATE
    return TranslatedRequest(
        payload=payload,
        stream=stream,
        client_model=model,
        max_tokens=max_tokens,
        stop_sequences=stop_sequences,
        estimated_input_tokens=estimate,
        tool_names={upstream: client for client, upstream in renamed.items()},
    )


def _reasoning(body: dict[str, Any], payload: dict[str, Any], options: TranslationOptions) -> None:
    """Map thinking budget / output_config.effort onto the upstream's reasoning control."""
    if options.reasoning_param == "none":
        return
    asked = requested_effort(body, options.budget_thresholds)
    if asked is None:
        return
    effort = supported_effort(asked, options.efforts)
    if options.reasoning_param == "reasoning_effort":
        if effort is not None:
            payload["reasoning_effort"] = effort
    elif options.reasoning_param == "openrouter":
        thinking = body.get("thinking")
        budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
        if asked == "none":
            payload["reasoning"] = {"effort": "none"}
        elif isinstance(budget, int) and not isinstance(budget, bool) and budget > 0:
            # The budget must stay below the output limit, which the proxy may have lowered.
            ceiling = payload.get(options.max_tokens_field)
            if isinstance(ceiling, int) and ceiling > 1:
                budget = min(budget, ceiling - 1)
            payload["reasoning"] = {"max_tokens": budget}
        else:
            payload["reasoning"] = {"effort": effort or asked}
    elif options.reasoning_param in ("deepseek", "chat_template_kwargs"):
        # These switch a hybrid model between two modes; only an explicit thinking choice
        # flips it (Claude Code's adaptive thinking keeps the model's own default).
        thinking = body.get("thinking")
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if kind not in ("enabled", "disabled"):
            return
        if options.reasoning_param == "deepseek":
            payload["thinking"] = {"type": kind}
        else:
            payload["chat_template_kwargs"] = {"enable_thinking": kind == "enabled"}


def _cache_key(body: dict[str, Any], session_id: str | None) -> str | None:
    """A stable per-conversation key (≤ 64 chars, as OpenAI requires)."""
    seed = session_id
    if not seed:
        metadata = body.get("metadata")
        user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
        seed = user_id if isinstance(user_id, str) and user_id else None
    if not seed:
        return None
    return "ccp-" + hashlib.sha256(seed.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _stop_sequences(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise RequestValidationError("stop_sequences: must be a list of strings")
    return [s for s in value if s]


SystemPiece = tuple[str, Any]  # (text, the block's cache_control or None)


def _system_texts(system: Any, stats: _Stats) -> list[SystemPiece]:
    """System prompt texts, without Claude Code's per-request billing header block."""
    if system is None:
        return []
    if isinstance(system, str):
        if system.lstrip().startswith(BILLING_HEADER_PREFIX):
            system = system.lstrip().partition("\n")[2].lstrip("\n")
        stats.text_chars += len(system)
        return [(system, None)] if system else []
    if not isinstance(system, list):
        raise RequestValidationError("system: must be a string or a list of text blocks")
    pieces = []
    for block in system:
        text = _block_text(block)
        if text is None or text.lstrip().startswith(BILLING_HEADER_PREFIX):
            continue
        stats.text_chars += len(text)
        pieces.append((text, _cache_mark(block)))
    return pieces


def _cache_mark(block: Any) -> Any:
    """The `cache_control` of a block, or of the last block of a content list that has one."""
    if isinstance(block, dict):
        mark = block.get("cache_control")
        return mark if isinstance(mark, dict) else None
    if isinstance(block, list):
        marks = [m for m in map(_cache_mark, block) if m is not None]
        return marks[-1] if marks else None
    return None


def _text_part(text: str, mark: Any) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "text", "text": text}
    if mark is not None:
        part["cache_control"] = mark
    return part


def _block_text(block: Any) -> str | None:
    if isinstance(block, str):
        return block
    if isinstance(block, dict):
        text = block.get("text")
        if isinstance(text, str):
            return text
        content = block.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            parts = [t for t in (_block_text(b) for b in content) if t]
            return "\n".join(parts)
    return None


class _MessageConverter:
    """Walks Anthropic messages in order and emits OpenAI messages (protocol.md E.2)."""

    def __init__(self, options: TranslationOptions, stats: _Stats, renamed: dict[str, str]) -> None:
        self.options = options
        self.stats = stats
        self.renamed = renamed
        self.out: list[dict[str, Any]] = []
        self.late_system: list[SystemPiece] = []
        # In-place system text that arrived between a tool call and its result.
        self.deferred_system: list[str] = []
        # Upstream ids of the last assistant turn's tool calls still awaiting results.
        self.pending_calls: list[str] = []
        self.call_names: dict[str, str] = {}

    def convert(self, messages: list[Any], system_parts: list[SystemPiece]) -> list[dict[str, Any]]:
        for position, role, content in _merged_turns(messages):
            if role == "user":
                self._user(content, position)
            elif role == "assistant":
                self._assistant(content, position)
            else:
                self._system(_content_text(content, self.stats), _cache_mark(content))
        self._close_pending_calls()
        pieces = [(t, mark) for t, mark in (*system_parts, *self.late_system) if t]
        merged = _merge_consecutive(self.out)
        if self.options.cache_control and any(mark for _, mark in pieces):
            # Explicit-caching upstreams (Anthropic models via OpenRouter) keep the breakpoints.
            merged.insert(0, {"role": "system", "content": [_text_part(*p) for p in pieces]})
        elif pieces:
            merged.insert(0, {"role": "system", "content": "\n\n".join(t for t, _ in pieces)})
        return merged

    def _tool_id(self, anthropic_id: Any) -> str:
        if self.options.tool_id_style == "mistral":
            return mistral_tool_id(anthropic_id)
        return upstream_tool_id(anthropic_id)

    def _system(self, text: str, mark: Any = None) -> None:
        if not text:
            return
        if not self.options.system_in_place:
            self.late_system.append((text, mark))
        elif self.pending_calls:
            self.deferred_system.append(text)  # tool messages must follow their call first
        else:
            self.out.append({"role": "system", "content": text})

    def _flush_deferred_system(self) -> None:
        for text in self.deferred_system:
            self.out.append({"role": "system", "content": text})
        self.deferred_system = []

    def _close_pending_calls(self) -> None:
        """Answer tool calls the client never answered: upstreams reject dangling calls."""
        for call_id in self.pending_calls:
            self.out.append(
                {
                    "role": "tool",
                    "tool_call_id": call_id,
                    "content": "(no result: the tool call was not answered)",
                }
            )
        self.pending_calls = []
        self._flush_deferred_system()

    def _user(self, content: str | list[Any], position: int) -> None:
        if isinstance(content, str):
            self._close_pending_calls()
            self.stats.text_chars += len(content)
            if content:
                self.out.append({"role": "user", "content": content})
            return
        results: dict[str, dict[str, Any]] = {}
        orphan_texts: list[dict[str, Any]] = []
        parts: list[dict[str, Any]] = []
        result_images: list[dict[str, Any]] = []
        for index, block in _blocks(content, position):
            kind = block.get("type")
            if kind == "tool_result":
                call_id = self._tool_id(block.get("tool_use_id", ""))
                text, images = self._tool_result_content(block)
                if call_id in self.pending_calls and call_id not in results:
                    mark = _cache_mark(block) if self.options.cache_control else None
                    body: Any = [_text_part(text, mark)] if mark else text
                    results[call_id] = {"role": "tool", "tool_call_id": call_id, "content": body}
                else:
                    name = self.call_names.get(call_id, "tool")
                    orphan_texts.append(
                        {"type": "text", "text": f"[Result of {name} call {call_id}]\n{text}"}
                    )
                if images:
                    name = self.call_names.get(call_id, "the tool")
                    label = "Images" if all(p["type"] == "image_url" for p in images) else "Files"
                    result_images.append({"type": "text", "text": f"{label} returned by {name}:"})
                    result_images.extend(images)
            elif kind == "mid_conv_system":
                inner = block.get("content")
                self._system(_content_text(inner, self.stats), _cache_mark(inner))
            else:
                parts.extend(self._content_part(block, position, index))
        if self.pending_calls:
            # Tool messages must directly follow the assistant turn, in call order.
            for call_id in self.pending_calls:
                message = results.get(call_id)
                if message is None:
                    message = {
                        "role": "tool",
                        "tool_call_id": call_id,
                        "content": "(no result: the tool call was not answered)",
                    }
                self.out.append(message)
            self.pending_calls = []
            self._flush_deferred_system()
        rest = result_images + orphan_texts + parts
        if rest:
            self.out.append({"role": "user", "content": _simplify(rest)})

    def _tool_result_content(self, block: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        content = block.get("content")
        images: list[dict[str, Any]] = []
        if content is None:
            text = ""
        elif isinstance(content, str):
            text = content
        elif isinstance(content, list):
            texts: list[str] = []
            for item in content:
                if isinstance(item, dict) and item.get("type") == "image":
                    images.extend(self._image(item))
                elif isinstance(item, dict) and item.get("type") == "document":
                    # Text goes into the tool message; PDF file parts and images cannot, so
                    # they follow in the user message with the other attachments.
                    for part in self._document(item):
                        if part["type"] == "text":
                            texts.append(part["text"])
                        else:
                            images.append(part)
                else:
                    rendered = _render_block_as_text(item)
                    if rendered:
                        texts.append(rendered)
            text = "\n".join(texts)
        else:
            text = _json_text(content)
        self.stats.text_chars += len(text)
        if block.get("is_error") is True:
            text = f"Error: {text}" if text else "Error: the tool call failed"
        elif not text:
            text = "(no output)" if not images else "(see the attachments below)"
        return text, images

    def _content_part(
        self, block: dict[str, Any], position: int, index: int
    ) -> list[dict[str, Any]]:
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise RequestValidationError(
                    f"messages.{position}.content.{index}.text: must be a string"
                )
            self.stats.text_chars += len(text)
            mark = _cache_mark(block) if self.options.cache_control else None
            return [_text_part(text, mark)] if text else []
        if kind == "image":
            return self._image(block)
        if kind == "document":
            return self._document(block)
        if kind in ("thinking", "redacted_thinking"):
            return []
        rendered = _render_block_as_text(block)
        if rendered is None:
            logger.warning("dropping content block of unknown type %r", kind)
            return []
        self.stats.text_chars += len(rendered)
        return [{"type": "text", "text": rendered}]

    def _image(self, block: dict[str, Any]) -> list[dict[str, Any]]:
        source = block.get("source")
        if not isinstance(source, dict):
            raise RequestValidationError("image block: source must be an object")
        kind = source.get("type")
        if kind == "base64":
            data, media_type = source.get("data"), source.get("media_type") or "image/png"
            if not isinstance(data, str) or not isinstance(media_type, str):
                raise RequestValidationError("image block: base64 source needs data and media_type")
            self.stats.images += 1
            return [{"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}]
        if kind == "url":
            url = source.get("url")
            if not isinstance(url, str):
                raise RequestValidationError("image block: url source needs a url string")
            self.stats.images += 1
            return [{"type": "image_url", "image_url": {"url": url}}]
        note = f"[image {source.get('file_id') or kind!s} omitted: the upstream cannot resolve it]"
        return [{"type": "text", "text": note}]

    def _document(self, block: dict[str, Any]) -> list[dict[str, Any]]:
        source = block.get("source")
        if not isinstance(source, dict):
            raise RequestValidationError("document block: source must be an object")
        title = block.get("title") if isinstance(block.get("title"), str) else None
        header = "\n".join(
            x
            for x in (
                title,
                block.get("context") if isinstance(block.get("context"), str) else None,
            )
            if x
        )
        kind = source.get("type")
        text: str
        if kind == "text":
            data = source.get("data")
            text = data if isinstance(data, str) else ""
        elif kind == "content":
            parts: list[dict[str, Any]] = []
            content = source.get("content")
            if isinstance(content, str):
                parts.append({"type": "text", "text": content})
            elif isinstance(content, list):
                for item in content:
                    if isinstance(item, dict) and item.get("type") == "image":
                        parts.extend(self._image(item))
                    else:
                        rendered = _render_block_as_text(item)
                        if rendered:
                            parts.append({"type": "text", "text": rendered})
            if header:
                parts.insert(0, {"type": "text", "text": header})
            self.stats.text_chars += sum(len(p.get("text", "")) for p in parts)
            return parts
        elif kind == "base64":
            data = source.get("data")
            media_type = source.get("media_type") or "application/pdf"
            if not isinstance(data, str):
                raise RequestValidationError("document block: base64 source needs data")
            if media_type == "application/pdf" and self.options.pdf_as_file and _is_base64(data):
                self.stats.text_chars += len(data) // 8
                filename = (title or "document") + ".pdf"
                file_part = {"file_data": f"data:{media_type};base64,{data}", "filename": filename}
                return [{"type": "file", "file": file_part}]
            text = _decode_document(data, str(media_type))
        elif kind == "url":
            text = f"[document at {source.get('url')} — fetch it if needed]"
        else:
            text = f"[document {source.get('file_id') or kind!s} omitted: the upstream cannot resolve it]"
        if header:
            text = f"{header}\n\n{text}"
        self.stats.text_chars += len(text)
        return [{"type": "text", "text": text}]

    def _assistant(self, content: str | list[Any], position: int) -> None:
        self._close_pending_calls()
        if isinstance(content, str):
            self.stats.text_chars += len(content)
            if content:
                self.out.append({"role": "assistant", "content": content})
            return
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        reasoning: list[str] = []
        details: list[Any] = []
        thought_signature: str | None = None  # Gemini's, for the next tool call
        for index, block in _blocks(content, position):
            kind = block.get("type")
            if kind == "text":
                text = block.get("text")
                if isinstance(text, str) and text:
                    texts.append(text)
                    self.stats.text_chars += len(text)
            elif kind == "tool_use":
                name = block.get("name")
                if not isinstance(name, str) or not name:
                    raise RequestValidationError(
                        f"messages.{position}.content.{index}.name: a tool_use needs a name"
                    )
                call_id = self._tool_id(block.get("id") or f"call_{position}_{index}")
                tool_input = block.get("input")
                try:
                    arguments = orjson.dumps(tool_input if tool_input is not None else {}).decode()
                except TypeError:
                    raise RequestValidationError(
                        f"messages.{position}.content.{index}.input: nested too deeply"
                    ) from None
                self.stats.text_chars += len(arguments) + len(name)
                call: dict[str, Any] = {
                    "id": call_id,
                    "type": "function",
                    "function": {
                        "name": _tool_name(name, self.renamed),
                        "arguments": arguments,
                    },
                }
                if self.options.thought_signatures:
                    # Only the first call of a turn carries Gemini's signature; a history from
                    # elsewhere gets the validator-skip value Google documents for that case.
                    if thought_signature is None and not calls:
                        thought_signature = GEMINI_SKIP_SIGNATURE
                    if thought_signature is not None:
                        call["extra_content"] = {"google": {"thought_signature": thought_signature}}
                    thought_signature = None
                calls.append(call)
                self.call_names[call_id] = name
            elif kind in ("thinking", "redacted_thinking"):
                state = decode_signature(block.get("signature"))
                if state and isinstance(state.get("g"), str):
                    thought_signature = state["g"]
                if self.options.reasoning_echo != "none":
                    thought = state.get("r") if state else block.get("thinking")
                    if isinstance(thought, str) and thought:
                        reasoning.append(thought)
                    if state and isinstance(state.get("d"), list):
                        details.extend(state["d"])
            else:
                rendered = _render_block_as_text(block)
                if rendered:
                    texts.append(rendered)
        if not texts and not calls:
            return
        message: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts) or None}
        echo = self.options.reasoning_echo
        if echo == "reasoning_details" and details:
            message["reasoning_details"] = details
        elif echo in ("reasoning_content", "reasoning") and (reasoning or calls):
            # DeepSeek requires the field on tool-call turns; empty is its documented fallback.
            message[echo] = "\n\n".join(reasoning)
        if calls:
            message["tool_calls"] = calls
            self.pending_calls = [c["id"] for c in calls]
        self.out.append(message)


def _merged_turns(messages: list[Any]) -> Iterator[tuple[int, str, str | list[Any]]]:
    """Validated (position, role, content) turns, consecutive same-role turns merged first.

    The Messages API merges neighbours of one role into one turn (protocol.md A.5), so a
    tool_result in the second of two user messages still answers the call before them.
    """
    pending: tuple[int, str, str | list[Any]] | None = None
    for position, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RequestValidationError(f"messages.{position}: must be an object")
        role = message.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise RequestValidationError(
                f"messages.{position}.role: must be 'user', 'assistant' or 'system', got {role!r}"
            )
        if "content" not in message:
            raise RequestValidationError(f"messages.{position}.content: field required")
        content = message["content"]
        if content is None:
            content = []
        if not isinstance(content, str | list):
            raise RequestValidationError(
                f"messages.{position}.content: must be a string or a list of blocks"
            )
        role = "system" if role == "developer" else role
        if pending is not None and pending[1] == role and role != "system":
            pending = (pending[0], role, [*_as_blocks(pending[2]), *_as_blocks(content)])
            continue
        if pending is not None:
            yield pending
        pending = (position, role, content)
    if pending is not None:
        yield pending


def _as_blocks(content: str | list[Any]) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content


def _is_base64(data: str) -> bool:
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _blocks(content: list[Any], position: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """A message's content blocks, bare strings read as text blocks; anything else is a 400."""
    for index, block in enumerate(content):
        if isinstance(block, str):
            block = {"type": "text", "text": block}
        if not isinstance(block, dict):
            raise RequestValidationError(f"messages.{position}.content.{index}: must be an object")
        yield index, block


def _decode_document(data: str, media_type: str) -> str:
    """Text of a base64 document: PDFs through pypdf, text/* decoded as UTF-8."""
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        return "[document could not be decoded: invalid base64]"
    if media_type.startswith("text/") or media_type in ("application/json", "application/xml"):
        return raw.decode("utf-8", "replace")
    if media_type == "application/pdf":
        try:
            from pypdf import PdfReader

            reader = PdfReader(io.BytesIO(raw))
            pages = [page.extract_text() or "" for page in reader.pages]
        except Exception as exc:  # pypdf raises many types on damaged files
            return f"[PDF document could not be converted to text: {type(exc).__name__}]"
        text = "\n\n".join(p.strip() for p in pages if p.strip())
        return text or "[PDF document contains no extractable text]"
    return f"[{media_type} document omitted: the upstream cannot read it]"


def _content_text(content: Any, stats: _Stats) -> str:
    if isinstance(content, str):
        stats.text_chars += len(content)
        return content
    if isinstance(content, list):
        texts = [t for t in (_block_text(b) for b in content) if t]
        text = "\n\n".join(texts)
        stats.text_chars += len(text)
        return text
    return ""


def _render_block_as_text(block: Any) -> str | None:
    """Blocks OpenAI has no part for (search results, server tool results…) as readable text."""
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return _json_text(block)
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        return text if isinstance(text, str) else None
    if kind == "search_result":
        content = block.get("content")
        body = _block_text({"content": content}) or ""
        title, source = block.get("title") or "", block.get("source") or ""
        return f"[Search result: {title}]({source})\n{body}".strip()
    if kind in ("thinking", "redacted_thinking"):
        return None
    if kind == "tool_reference":
        return f"[tool reference: {block.get('tool_name') or block.get('name') or ''}]"
    if kind == "server_tool_use":
        return f"[{block.get('name')} call: {_json_text(block.get('input'))}]"
    if isinstance(kind, str) and kind.endswith("_tool_result"):
        return f"[{kind}: {_json_text(block.get('content'))}]"
    if kind in ("container_upload",):
        return f"[file {block.get('file_id')} uploaded to the code container]"
    text = block.get("text")
    if isinstance(text, str):
        return text
    return None


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def _simplify(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A single text part is sent as a plain string: every upstream accepts that."""
    if all(p.get("type") == "text" and "cache_control" not in p for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts


def _merge_consecutive(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge same-role user/assistant neighbours: many chat templates demand alternation."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        previous = merged[-1] if merged else None
        role = message["role"]
        if (previous is not None and previous["role"] == role and role in ("user", "system")) or (
            previous is not None
            and role == "assistant"
            and previous["role"] == "assistant"
            and "tool_calls" not in previous
        ):
            assert previous is not None
            combined = dict(previous)
            combined["content"] = _join_content(previous.get("content"), message.get("content"))
            if "tool_calls" in message:
                combined["tool_calls"] = message["tool_calls"]
            merged[-1] = combined
        else:
            merged.append(message)
    return merged


def _join_content(first: Any, second: Any) -> Any:
    if first is None:
        return second
    if second is None:
        return first
    if isinstance(first, str) and isinstance(second, str):
        return f"{first}\n\n{second}"
    as_parts = [
        *(first if isinstance(first, list) else [{"type": "text", "text": first}]),
        *(second if isinstance(second, list) else [{"type": "text", "text": second}]),
    ]
    return as_parts


def _tool_name(name: str, renamed: dict[str, str]) -> str:
    """The upstream's name for a client tool; each change is recorded to be mapped back."""
    legal = upstream_tool_name(name)
    if legal != name:
        renamed[name] = legal
    return legal


def _loaded_tools(messages: list[Any]) -> set[str]:
    """Names of deferred tools the conversation has loaded: found by tool search, or used."""
    names: set[str] = set()
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for block in content:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "tool_use" and isinstance(block.get("name"), str):
                names.add(block["name"])
            elif kind == "tool_result" and isinstance(block.get("content"), list):
                for item in block["content"]:
                    if isinstance(item, dict) and item.get("type") == "tool_reference":
                        name = item.get("tool_name") or item.get("name")
                        if isinstance(name, str):
                            names.add(name)
    return names


def _tools(
    tools: Any,
    stats: _Stats,
    options: TranslationOptions,
    *,
    loaded: set[str],
    renamed: dict[str, str],
) -> tuple[list[dict[str, Any]], set[str]]:
    """The function tools to forward, and the names of every tool the client declared."""
    if tools is None:
        return [], set()
    if not isinstance(tools, list):
        raise RequestValidationError("tools: must be a list")
    out = []
    declared: set[str] = set()
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise RequestValidationError(f"tools.{index}: must be an object")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise RequestValidationError(f"tools.{index}.name: field required")
        declared.add(name)
        kind = tool.get("type")
        if tool.get("defer_loading") is True and name not in loaded:
            continue  # Not in the model's context until tool search returns a reference to it.
        schema: Any
        if kind in (None, "custom"):
            schema = tool.get("input_schema")
            if schema is None:
                schema = {"type": "object", "properties": {}}
            if not isinstance(schema, dict):
                raise RequestValidationError(f"tools.{index}.input_schema: must be an object")
        elif isinstance(kind, str) and kind.split("_20")[0] in CLIENT_TOOL_SCHEMAS:
            schema = CLIENT_TOOL_SCHEMAS[kind.split("_20")[0]]
        elif isinstance(kind, str) and kind.startswith(SERVER_TOOL_PREFIXES):
            logger.info("server tool %r (%s) is not forwarded: upstreams cannot run it", name, kind)
            continue
        else:
            logger.warning("tool %r of unknown type %r is not forwarded", name, kind)
            continue
        if options.schema_dialect == "gemini":
            schema = clean_schema(schema)
        function: dict[str, Any] = {
            "name": _tool_name(name, renamed),
            "parameters": schema,
        }
        description = tool.get("description")
        if isinstance(description, str) and description:
            function["description"] = description
        if tool.get("strict") is True:
            function["strict"] = True
        stats.text_chars += len(name) + len(description or "") + 200
        out.append({"type": "function", "function": function})
    return out, declared


def _tool_choice(choice: Any, names: set[str], declared: set[str], renamed: dict[str, str]) -> Any:
    if choice is None:
        return None
    if not isinstance(choice, dict):
        raise RequestValidationError("tool_choice: must be an object")
    kind = choice.get("type")
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise RequestValidationError("tool_choice.name: field required for type 'tool'")
        upstream = renamed.get(name, name)
        if upstream in names:
            return {"type": "function", "function": {"name": upstream}}
        if name in declared:
            # A server or deferred tool: forcing a function the upstream cannot see is a 400.
            logger.info("tool_choice names %r, which is not forwarded; using auto", name)
            return "auto"
        raise RequestValidationError(f"tool_choice.name: no tool named {name!r} in tools")
    raise RequestValidationError(
        f"tool_choice.type: must be 'auto', 'any', 'tool' or 'none', got {kind!r}"
    )


def _response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if fmt is None:
        fmt = body.get("output_format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        return None
    json_schema: dict[str, Any] = {"name": "output", "schema": schema}
    if _strict_compatible(schema):
        json_schema["strict"] = True
    return {"type": "json_schema", "json_schema": json_schema}


def _strict_compatible(schema: Any, depth: int = 0) -> bool:
    """OpenAI's strict mode needs every object closed and every property required."""
    if depth > 32:
        return False
    if isinstance(schema, list):
        return all(_strict_compatible(s, depth + 1) for s in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False or not isinstance(properties, dict):
            return False
        if set(schema.get("required") or ()) != set(properties):
            return False
    return all(
        _strict_compatible(value, depth + 1)
        for key, value in schema.items()
        if key in ("properties", "items", "anyOf", "$defs", "definitions")
        or (key in ("additionalProperties",) and isinstance(value, dict))
    ) and all(
        _strict_compatible(value, depth + 1)
        for value in (schema.get("properties") or {}).values()
        if isinstance(schema.get("properties"), dict)
    )
