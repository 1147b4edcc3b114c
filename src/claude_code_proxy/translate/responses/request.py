"""Anthropic Messages request → OpenAI Responses API request (`POST /v1/responses`).

The conversation becomes `input` items in order: user and assistant messages, `function_call`
and `function_call_output` items, and the `reasoning` items a thinking block's signature
carries (docs/responses.md), each placed where it came from so the model sees its earlier
reasoning before the call it led to. The system prompt is `instructions`; system text met
later in the conversation is a developer message in place, so the prefix stays stable.
Always stateless: `store: false`, with encrypted reasoning included in every reply.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson

from claude_code_proxy.translate.content import (
    Stats,
    blocks,
    content_text,
    conversation_key,
    merged_turns,
    render_block_as_text,
    request_fields,
    stop_sequences,
    system_texts,
)
from claude_code_proxy.translate.errors import RequestValidationError
from claude_code_proxy.translate.ids import server_call_client_id, upstream_call_id
from claude_code_proxy.translate.options import TranslatedRequest, TranslationOptions
from claude_code_proxy.translate.parts import PartBuilder
from claude_code_proxy.translate.reasoning import (
    decode_signature,
    requested_effort,
    supported_effort,
)
from claude_code_proxy.translate.structured import response_format
from claude_code_proxy.translate.tools import loaded_tools, tool_choice, tool_name, tool_specs
from claude_code_proxy.translate.web_search import FUNCTION_NAME as WEB_SEARCH_FUNCTION
from claude_code_proxy.translate.web_search import result_text, web_search_tool

logger = logging.getLogger(__name__)

NO_RESULT = "(no result: the tool call was not answered)"


def translate_request(
    body: Any,
    *,
    upstream_model: str,
    options: TranslationOptions | None = None,
    session_id: str | None = None,
    documents: Mapping[str, str] | None = None,
) -> TranslatedRequest:
    """Validate an Anthropic request body and build the Responses API payload for it.

    `documents`: text of the base64 PDFs in the body, by their data, extracted beforehand.
    """
    options = options or TranslationOptions()
    model, max_tokens, messages, stream = request_fields(body)

    stats = Stats()
    renamed: dict[str, str] = {}
    system = "\n\n".join(text for text, _ in system_texts(body.get("system"), stats) if text)
    items = InputBuilder(options, stats, renamed, documents).convert(messages)
    if not any(item.get("role") != "developer" for item in items):
        raise RequestValidationError("messages: at least one non-empty message is required")

    payload: dict[str, Any] = {"model": upstream_model}
    if system:
        payload["instructions"] = system
    payload["input"] = items
    limit = options.max_tokens_limit
    payload["max_output_tokens"] = min(max_tokens, limit) if limit else max_tokens
    payload["store"] = False
    payload["include"] = ["reasoning.encrypted_content"]

    stops = stop_sequences(body.get("stop_sequences"))
    if stops:
        logger.info("stop_sequences are not forwarded: the Responses API has no stop parameter")
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and name not in options.drop_params:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RequestValidationError(f"{name}: must be a number")
            payload[name] = value

    specs, declared = tool_specs(
        body.get("tools"), stats, options, loaded=loaded_tools(messages), renamed=renamed
    )
    if specs:
        payload["tools"] = [function_tool(spec) for spec in specs]
        forwarded = {spec["name"] for spec in specs}
        choice = tool_choice(body.get("tool_choice"), forwarded, declared, renamed)
        if isinstance(choice, dict):
            choice = {"type": "function", "name": choice["function"]["name"]}
        if choice is not None:
            payload["tool_choice"] = choice
        tc = body.get("tool_choice")
        if isinstance(tc, dict) and tc.get("disable_parallel_tool_use") is True:
            payload["parallel_tool_calls"] = False

    if options.forward_response_format:
        output_format = response_format(body)
        if output_format is not None:
            payload["text"] = {"format": {"type": "json_schema", **output_format["json_schema"]}}

    reasoning = _reasoning(body, options)
    if reasoning is not None:
        payload["reasoning"] = reasoning
    cache_key = conversation_key(body, session_id)
    if cache_key:
        payload["prompt_cache_key"] = cache_key
    for name in options.drop_params:
        payload.pop(name, None)
    if stream:
        payload["stream"] = True

    return TranslatedRequest(
        payload=payload,
        stream=stream,
        client_model=model,
        max_tokens=max_tokens,
        stop_sequences=stops,
        estimated_input_tokens=stats.estimated_tokens,
        tool_names={upstream: client for client, upstream in renamed.items()},
        web_search=web_search_tool(body.get("tools")),
    )


def function_tool(spec: dict[str, Any]) -> dict[str, Any]:
    """The Responses API's flat function tool; strict only where the client asked for it."""
    tool: dict[str, Any] = {"type": "function", "name": spec["name"]}
    if "description" in spec:
        tool["description"] = spec["description"]
    tool["parameters"] = spec["parameters"]
    tool["strict"] = spec.get("strict", False)
    return tool


def _reasoning(body: dict[str, Any], options: TranslationOptions) -> dict[str, Any] | None:
    """`reasoning: {effort, summary: "auto"}` for reasoning models; summaries become thinking."""
    if options.reasoning_param == "none":
        return None
    reasoning: dict[str, Any] = {}
    asked = requested_effort(body, options.budget_thresholds)
    effort = supported_effort(asked, options.efforts) if asked is not None else None
    if effort is not None:
        reasoning["effort"] = effort
    if effort != "none":
        reasoning["summary"] = "auto"
    return reasoning


def input_part(part: dict[str, Any]) -> dict[str, Any]:
    """A shared (Chat-shaped) content part under its Responses API name."""
    kind = part.get("type")
    if kind == "image_url":
        return {"type": "input_image", "image_url": part["image_url"]["url"], "detail": "auto"}
    if kind == "file":
        file = part["file"]
        return {"type": "input_file", "filename": file["filename"], "file_data": file["file_data"]}
    return {"type": "input_text", "text": part.get("text", "")}


def message_item(role: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """A message input item; an assistant's text is one string (the API's easy-input form,
    which needs no output item id)."""
    if role == "assistant":
        text = "\n\n".join(part.get("text", "") for part in parts)
        return {"type": "message", "role": role, "content": text}
    return {"type": "message", "role": role, "content": [input_part(part) for part in parts]}


class InputBuilder(PartBuilder):
    """Walks Anthropic messages in order and emits Responses API input items.

    Every `function_call` gets its `function_call_output` right after the call's turn (an
    unanswered call an explanatory one), as the Chat path does; a result without its call
    becomes user text. Reasoning items are deduplicated by id: the API rejects repeats.
    """

    def __init__(
        self,
        options: TranslationOptions,
        stats: Stats,
        renamed: dict[str, str],
        documents: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(options, stats, documents)
        self.renamed = renamed
        self.items: list[dict[str, Any]] = []
        # Upstream ids of the last turn's calls awaiting outputs, in order (a dict: O(1) `in`).
        self.pending_calls: dict[str, None] = {}
        self.deferred_system: list[str] = []
        self.call_names: dict[str, str] = {}
        self.reasoning_ids: set[str] = set()

    def convert(self, messages: list[Any]) -> list[dict[str, Any]]:
        for position, role, content in merged_turns(messages):
            if role == "user":
                self._user(content, position)
            elif role == "assistant":
                self._assistant(content, position)
            else:
                self._system(content_text(content, self.stats))
        self._close_pending_calls()
        return self.items

    # ---------------------------------------------------------------- system text

    def _system(self, text: str) -> None:
        if not text:
            return
        if self.pending_calls:
            self.deferred_system.append(text)  # outputs first, right after their calls
        else:
            self.items.append(message_item("developer", [{"type": "text", "text": text}]))

    def _flush_deferred_system(self) -> None:
        deferred, self.deferred_system = self.deferred_system, []
        for text in deferred:
            self._system(text)

    def _close_pending_calls(self) -> None:
        for call_id in self.pending_calls:
            self.items.append(_output(call_id, NO_RESULT))
        self.pending_calls = {}
        self._flush_deferred_system()

    # ----------------------------------------------------------------- user turns

    def _user(self, content: str | list[Any], position: int) -> None:
        if isinstance(content, str):
            self._close_pending_calls()
            self.stats.text_chars += len(content)
            if content:
                self.items.append(message_item("user", [{"type": "text", "text": content}]))
            return
        outputs: dict[str, dict[str, Any]] = {}
        orphans: list[dict[str, Any]] = []
        parts: list[dict[str, Any]] = []
        attachments: list[dict[str, Any]] = []
        for index, block in blocks(content, position):
            kind = block.get("type")
            if kind == "tool_result":
                call_id = upstream_call_id(block.get("tool_use_id", ""))
                text, files = self.tool_result_content(block)
                if call_id in self.pending_calls and call_id not in outputs:
                    outputs[call_id] = _output(call_id, text)
                else:
                    name = self.call_names.get(call_id, "tool")
                    orphans.append(
                        {"type": "text", "text": f"[Result of {name} call {call_id}]\n{text}"}
                    )
                if files:
                    name = self.call_names.get(call_id, "the tool")
                    label = "Images" if all(p["type"] == "image_url" for p in files) else "Files"
                    attachments.append({"type": "text", "text": f"{label} returned by {name}:"})
                    attachments.extend(files)
            elif kind == "mid_conv_system":
                self.deferred_system.append(content_text(block.get("content"), self.stats))
            else:
                parts.extend(self.content_part(block, position, index))
        for call_id in self.pending_calls:
            self.items.append(outputs.get(call_id) or _output(call_id, NO_RESULT))
        self.pending_calls = {}
        self._flush_deferred_system()
        rest = attachments + orphans + parts
        if rest:
            self.items.append(message_item("user", rest))

    # ------------------------------------------------------------ assistant turns

    def _assistant(self, content: str | list[Any], position: int) -> None:
        self._close_pending_calls()
        if isinstance(content, str):
            self.stats.text_chars += len(content)
            if content:
                self.items.append(message_item("assistant", [{"type": "text", "text": content}]))
            return
        texts: list[dict[str, Any]] = []
        calls: list[str] = []

        def flush_text() -> None:
            if texts:
                self.items.append(message_item("assistant", texts[:]))
                texts.clear()

        for index, block in blocks(content, position):
            kind = block.get("type")
            if kind == "text":
                text = block.get("text")
                if isinstance(text, str) and text:
                    self.stats.text_chars += len(text)
                    texts.append({"type": "text", "text": text})
            elif kind == "tool_use" or (
                kind == "server_tool_use" and block.get("name") == WEB_SEARCH_FUNCTION
            ):
                flush_text()
                calls.append(self._function_call(block, position, index))
            elif kind == "web_search_tool_result":
                # A search the proxy ran (docs/web-search.md): the output of its call.
                result = result_text(block)
                self.stats.text_chars += len(result)
                client_id = server_call_client_id(str(block.get("tool_use_id", "")))
                call_id = upstream_call_id(client_id)
                if call_id in calls:
                    flush_text()
                    self.items.append(_output(call_id, result))
                    calls.remove(call_id)
                else:
                    texts.append({"type": "text", "text": result})
            elif kind in ("thinking", "redacted_thinking"):
                item = reasoning_item(block)
                if item is not None and item["id"] not in self.reasoning_ids:
                    flush_text()
                    self.reasoning_ids.add(item["id"])
                    self.stats.text_chars += len(item.get("encrypted_content") or "") // 4
                    self.items.append(item)
            else:
                rendered = render_block_as_text(block)
                if rendered:
                    texts.append({"type": "text", "text": rendered})
        flush_text()
        self.pending_calls = dict.fromkeys(calls)

    def _function_call(self, block: dict[str, Any], position: int, index: int) -> str:
        name = block.get("name")
        if not isinstance(name, str) or not name:
            raise RequestValidationError(
                f"messages.{position}.content.{index}.name: a tool_use needs a name"
            )
        # The upstream's own call_id when the client's id carries it (docs/tool-ids.md).
        client_id = block.get("id") or f"call_{position}_{index}"
        if block.get("type") == "server_tool_use":
            client_id = server_call_client_id(str(client_id))
        call_id = upstream_call_id(client_id)
        tool_input = block.get("input")
        try:
            arguments = orjson.dumps(tool_input if tool_input is not None else {}).decode()
        except TypeError:
            raise RequestValidationError(
                f"messages.{position}.content.{index}.input: nested too deeply"
            ) from None
        self.stats.text_chars += len(arguments) + len(name)
        self.items.append(
            {
                "type": "function_call",
                "call_id": call_id,
                "name": tool_name(name, self.renamed),
                "arguments": arguments,
            }
        )
        self.call_names[call_id] = name
        return call_id


def _output(call_id: str, text: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": text}


def reasoning_item(block: dict[str, Any]) -> dict[str, Any] | None:
    """The Responses reasoning item a thinking block's signature carries, if it carries one.

    Thinking from elsewhere (another upstream, Anthropic itself) has no item to give back
    and is left out: the Responses API only takes reasoning it issued.
    """
    state = decode_signature(block.get("signature"))
    stashed = state.get("o") if state else None
    if not isinstance(stashed, dict) or not isinstance(stashed.get("id"), str):
        return None
    summaries = stashed.get("s")
    if not isinstance(summaries, list):
        summaries = []
    item: dict[str, Any] = {
        "type": "reasoning",
        "id": stashed["id"],
        "summary": [
            {"type": "summary_text", "text": text} for text in summaries if isinstance(text, str)
        ],
    }
    encrypted = stashed.get("e")
    if isinstance(encrypted, str):
        item["encrypted_content"] = encrypted
    return item
