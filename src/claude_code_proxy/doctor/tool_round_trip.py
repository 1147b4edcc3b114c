"""A tool call and its result, streamed: what every Claude Code turn depends on."""

from __future__ import annotations

import json
from typing import Any

from claude_code_proxy.doctor.chat import (
    TOOLS_FIX,
    ProxyChat,
    Target,
    judge_text_reply,
    reply_fix,
    snippet,
)

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name"}},
        "required": ["city"],
    },
}
TOOL_PROMPT = "What is the weather in Paris right now? Use the get_weather tool."
TOOL_RESULT = "Sunny, 22 °C, light wind."
REPEAT_FIX = (
    "tool calling works; the model does not take in the tool result. Check that the server's "
    "chat template renders tool results (llama.cpp: the model's own template with --jinja; "
    "Ollama: a current model build), or use a larger model: small models often loop on tools"
)


class ToolRoundTripCheck:
    """The model must call the tool with a JSON object, then answer from the tool_result."""

    async def run(self, chat: ProxyChat, target: Target) -> None:
        ctx, name, upstream = chat.ctx, "tool round trip", target.upstream
        question = {"role": "user", "content": TOOL_PROMPT}
        body: dict[str, Any] = {
            "model": target.client_id,
            "max_tokens": 1024,
            "stream": True,
            "tools": [WEATHER_TOOL],
            "messages": [question],
        }
        first = await chat.message(body)
        if first.failure:
            ctx.add(name, "FAIL", f"{upstream}: {first.failure}", reply_fix(ctx, first, target))
            return
        calls = [t for t in first.tool_uses if t.name == WEATHER_TOOL["name"]]
        if not calls:
            said = f" ({snippet(first.text)!r})" if first.text.strip() else ""
            ctx.add(
                name,
                "FAIL",
                f"{upstream} answered in text{said} instead of calling get_weather "
                f"(stop_reason {first.stop_reason})",
                TOOLS_FIX,
            )
            return
        call = calls[0]
        if not isinstance(call.input, dict):
            ctx.add(
                name,
                "FAIL",
                f"{upstream}: the tool input is not a JSON object: {snippet(''.join(call.parts))!r}",
                "the server's tool-call parser does not match the model (vLLM: --tool-call-parser)",
            )
            return
        assistant: list[dict[str, Any]] = []
        if first.text.strip():
            assistant.append({"type": "text", "text": first.text})
        assistant.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}
        )
        body["messages"] = [
            question,
            {"role": "assistant", "content": assistant},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": TOOL_RESULT}
                ],
            },
        ]
        second = await chat.message(body)
        if not second.failure and second.tool_uses:
            again = ", ".join(sorted({t.name for t in second.tool_uses}))
            ctx.add(
                name,
                "FAIL",
                f"{upstream} calls the tool correctly but keeps calling ({again}) after the "
                "tool_result instead of answering from it",
                REPEAT_FIX,
            )
            return
        judge_text_reply(
            ctx,
            name,
            second,
            target,
            where=f"{upstream}, after the tool_result",
            empty=f"{upstream}: no text after the tool_result (stop_reason {second.stop_reason})",
            empty_fix=TOOLS_FIX,
            passed=f"{upstream}: get_weather({json.dumps(call.input, ensure_ascii=False)}) → "
            f"tool_result → {snippet(second.text)!r}",
        )
