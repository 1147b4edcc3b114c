"""Request translation: turn merging, attachments in tool results, deferred tools, tool names,
Gemini thought signatures and the smaller parameter rules (protocol.md A.5, C, E.1, E.2)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from claude_code_proxy.gateway.capabilities import CapabilityTable
from claude_code_proxy.translate.chat.messages import GEMINI_SKIP_SIGNATURE
from claude_code_proxy.translate.chat.request import TranslationOptions, translate_request
from claude_code_proxy.translate.errors import RequestValidationError
from claude_code_proxy.translate.ids import upstream_tool_name
from claude_code_proxy.translate.reasoning import encode_signature

PDF = base64.b64encode(b"%PDF-1.4 not a real pdf").decode()


def translate(body: dict[str, Any], **options: Any) -> Any:
    return translate_request(body, upstream_model="up", options=TranslationOptions(**options))


def request(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": messages, **extra}


def tool_use(call_id: str, name: str = "Bash", **input_: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": input_}


def tool_result(call_id: str, content: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": content}


def tool(name: str, **extra: Any) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    return {"name": name, "description": f"{name} tool", "input_schema": schema, **extra}


def roles(payload: dict[str, Any]) -> list[str]:
    return [m["role"] for m in payload["messages"]]


# ----------------------------------------------------------------------------- turn merging


def test_tool_results_split_over_two_user_messages_answer_their_calls() -> None:
    out = translate(
        request(
            [
                {"role": "user", "content": "run both"},
                {"role": "assistant", "content": [tool_use("t1"), tool_use("t2")]},
                {"role": "user", "content": [tool_result("t1", "one")]},
                {"role": "user", "content": [tool_result("t2", "two")]},
            ]
        )
    ).payload
    assert roles(out) == ["user", "assistant", "tool", "tool"]
    assert [m["content"] for m in out["messages"][2:]] == ["one", "two"]
    ids = [c["id"] for c in out["messages"][1]["tool_calls"]]
    assert [m["tool_call_id"] for m in out["messages"][2:]] == ids


def test_user_interjection_before_the_tool_result_keeps_the_pairing() -> None:
    out = translate(
        request(
            [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": [tool_use("t1")]},
                {"role": "user", "content": "also: hurry"},
                {"role": "user", "content": [tool_result("t1", "done")]},
            ]
        )
    ).payload
    assert roles(out) == ["user", "assistant", "tool", "user"]
    assert out["messages"][2]["content"] == "done"
    assert out["messages"][3]["content"] == "also: hurry"


def test_merged_assistant_turns_keep_deepseek_reasoning_on_the_tool_call() -> None:
    thinking = {"type": "thinking", "thinking": "check the disk", "signature": "x"}
    out = translate(
        request(
            [
                {"role": "user", "content": "df?"},
                {"role": "assistant", "content": [{"type": "text", "text": "Let me look."}]},
                {"role": "assistant", "content": [thinking, tool_use("t1", command="df")]},
                {"role": "user", "content": [tool_result("t1", "90%")]},
            ]
        ),
        reasoning_echo="reasoning_content",
    ).payload
    assistant = out["messages"][1]
    assert assistant["content"] == "Let me look."
    assert assistant["reasoning_content"] == "check the disk"
    assert len(assistant["tool_calls"]) == 1


def test_empty_conversation_and_missing_content_are_rejected() -> None:
    with pytest.raises(RequestValidationError, match="at least one"):
        translate(request([]))
    with pytest.raises(RequestValidationError, match="at least one"):
        translate(request([{"role": "user", "content": []}], system="be brief"))
    with pytest.raises(RequestValidationError, match=r"messages\.0\.content: field required"):
        translate(request([{"role": "user"}]))


# ------------------------------------------------------------------- tool_result attachments


def pdf_result() -> list[dict[str, Any]]:
    document = {
        "type": "document",
        "title": "report",
        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
    }
    return [
        {"role": "user", "content": "read it"},
        {"role": "assistant", "content": [tool_use("t1", name="Read")]},
        {
            "role": "user",
            "content": [tool_result("t1", [{"type": "text", "text": "ok"}, document])],
        },
    ]


def test_pdf_in_a_tool_result_follows_as_a_file_part() -> None:
    out = translate(request(pdf_result()), pdf_as_file=True).payload
    assert roles(out) == ["user", "assistant", "tool", "user"]
    assert out["messages"][2]["content"] == "ok"
    parts = out["messages"][3]["content"]
    assert parts[0] == {"type": "text", "text": "Files returned by Read:"}
    assert parts[1]["type"] == "file"
    assert parts[1]["file"]["file_data"] == f"data:application/pdf;base64,{PDF}"
    assert parts[1]["file"]["filename"] == "report.pdf"


def test_pdf_in_a_tool_result_becomes_text_without_file_parts() -> None:
    out = translate(request(pdf_result())).payload
    assert roles(out) == ["user", "assistant", "tool"]
    text = out["messages"][2]["content"]
    assert text.startswith("ok\nreport\n\n") and "PDF" in text


# ---------------------------------------------------------------------------- deferred tools


def test_deferred_tools_are_forwarded_once_tool_search_loaded_them() -> None:
    tools = [
        tool("Bash"),
        tool("WebFetch", defer_loading=True),
        {"name": "DeferredToolPlaceholder", "input_schema": {}, "defer_loading": True},
    ]
    first = translate(request([{"role": "user", "content": "hi"}], tools=tools)).payload
    assert [t["function"]["name"] for t in first["tools"]] == ["Bash"]

    reference = {"type": "tool_reference", "tool_name": "WebFetch"}
    later = [
        {"role": "user", "content": "fetch it"},
        {"role": "assistant", "content": [tool_use("t1", name="ToolSearch", query="fetch")]},
        {"role": "user", "content": [tool_result("t1", [reference])]},
    ]
    out = translate(request(later, tools=tools)).payload
    assert [t["function"]["name"] for t in out["tools"]] == ["Bash", "WebFetch"]


def test_deferred_tool_used_in_history_stays_callable() -> None:
    messages = [
        {"role": "user", "content": "fetch"},
        {"role": "assistant", "content": [tool_use("t1", name="WebFetch", q="x")]},
        {"role": "user", "content": [tool_result("t1", "page")]},
    ]
    out = translate(request(messages, tools=[tool("WebFetch", defer_loading=True)])).payload
    assert [t["function"]["name"] for t in out["tools"]] == ["WebFetch"]


def test_tool_choice_for_a_tool_the_upstream_cannot_see_falls_back_to_auto() -> None:
    tools = [tool("Bash"), {"type": "web_fetch_20250910", "name": "web_fetch"}]
    body = request(
        [{"role": "user", "content": "fetch"}],
        tools=tools,
        tool_choice={"type": "tool", "name": "web_fetch"},
    )
    assert translate(body).payload["tool_choice"] == "auto"
    body["tool_choice"] = {"type": "tool", "name": "nonexistent"}
    with pytest.raises(RequestValidationError, match="no tool named 'nonexistent'"):
        translate(body)


# -------------------------------------------------------------------------------- tool names


def test_tool_names_the_upstream_rejects_are_renamed_consistently() -> None:
    long_name = "mcp__" + "x" * 70
    dotted = "mcp__server__tool.with.dots"
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [tool_use("t1", name=dotted)]},
        {"role": "user", "content": [tool_result("t1", "r")]},
    ]
    body = request(
        messages,
        tools=[tool(dotted), tool(long_name), tool("Bash")],
        tool_choice={"type": "tool", "name": long_name},
    )
    translated = translate(body)
    names = [t["function"]["name"] for t in translated.payload["tools"]]
    assert names[2] == "Bash"
    for name in names:
        assert len(name) <= 64 and all(c.isalnum() or c in "_-" for c in name)
    history = translated.payload["messages"][1]["tool_calls"][0]["function"]["name"]
    assert history == names[0]
    assert translated.payload["tool_choice"] == {"type": "function", "function": {"name": names[1]}}
    assert translated.tool_names == {names[0]: dotted, names[1]: long_name}


def test_upstream_tool_name_is_stable_and_keeps_legal_names() -> None:
    assert upstream_tool_name("Read") == "Read"
    first = upstream_tool_name("a b")
    assert first == upstream_tool_name("a b") and first.startswith("a_b_")
    assert upstream_tool_name("a b") != upstream_tool_name("a.b")


# ------------------------------------------------------------------ Gemini thought signatures


def gemini_history(signature: str | None) -> list[dict[str, Any]]:
    assistant: list[dict[str, Any]] = []
    if signature is not None:
        assistant.append(
            {
                "type": "thinking",
                "thinking": "",
                "signature": encode_signature("", google=signature),
            }
        )
    assistant += [tool_use("t1", command="ls"), tool_use("t2", command="pwd")]
    return [
        {"role": "user", "content": "look around"},
        {"role": "assistant", "content": assistant},
        {"role": "user", "content": [tool_result("t1", "a"), tool_result("t2", "/")]},
    ]


def test_gemini_thought_signature_goes_back_on_its_tool_call() -> None:
    out = translate(request(gemini_history("c2lnLTE=")), thought_signatures=True).payload
    first, second = out["messages"][1]["tool_calls"]
    assert first["extra_content"] == {"google": {"thought_signature": "c2lnLTE="}}
    assert "extra_content" not in second


def test_gemini_history_without_signature_gets_the_documented_skip_value() -> None:
    out = translate(request(gemini_history(None)), thought_signatures=True).payload
    first, second = out["messages"][1]["tool_calls"]
    assert first["extra_content"]["google"]["thought_signature"] == GEMINI_SKIP_SIGNATURE
    assert "extra_content" not in second


def test_thought_signatures_are_not_sent_to_other_upstreams() -> None:
    out = translate(request(gemini_history("c2lnLTE="))).payload
    assert all("extra_content" not in c for c in out["messages"][1]["tool_calls"])


# ------------------------------------------------------------------------- smaller parameters


def test_billing_header_is_dropped_from_a_string_system_and_indented_blocks() -> None:
    header = "x-anthropic-billing-header: cc_version=2.1.331.f2b; cc_entrypoint=sdk-cli;"
    messages = [{"role": "user", "content": "hi"}]
    out = translate(request(messages, system=f"{header}\nYou are helpful.")).payload
    assert out["messages"][0] == {"role": "system", "content": "You are helpful."}
    blocks = [{"type": "text", "text": " " + header}, {"type": "text", "text": "Be brief."}]
    out = translate(request(messages, system=blocks)).payload
    assert out["messages"][0] == {"role": "system", "content": "Be brief."}


def test_openrouter_reasoning_budget_stays_below_the_output_limit() -> None:
    body = request(
        [{"role": "user", "content": "think"}],
        max_tokens=32000,
        thinking={"type": "enabled", "budget_tokens": 31999},
    )
    out = translate(body, reasoning_param="openrouter", max_tokens_limit=8192).payload
    assert out["max_tokens"] == 8192
    assert out["reasoning"] == {"max_tokens": 8191}


def test_top_k_only_reaches_upstreams_that_take_it() -> None:
    body = request([{"role": "user", "content": "hi"}], top_k=40)
    assert "top_k" not in translate(body).payload
    assert translate(body, forward_top_k=True).payload["top_k"] == 40
    table = CapabilityTable()
    assert table.profile("http://localhost:8000/v1", "qwen3-coder").forward_top_k
    assert not table.profile("https://api.openai.com/v1", "gpt-4o").forward_top_k


def test_structured_output_is_strict_only_when_the_schema_allows_it() -> None:
    closed = {
        "type": "object",
        "properties": {"title": {"type": "string"}},
        "required": ["title"],
        "additionalProperties": False,
    }
    messages = [{"role": "user", "content": "title?"}]
    body = request(messages, output_config={"format": {"type": "json_schema", "schema": closed}})
    assert translate(body).payload["response_format"]["json_schema"]["strict"] is True
    open_schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    body["output_config"]["format"]["schema"] = open_schema
    assert "strict" not in translate(body).payload["response_format"]["json_schema"]


@pytest.mark.parametrize(
    ("thinking", "expected"),
    [
        ({"type": "enabled", "budget_tokens": 4000}, {"type": "enabled"}),
        ({"type": "disabled"}, {"type": "disabled"}),
        ({"type": "adaptive"}, None),
    ],
)
def test_deepseek_thinking_switch_follows_only_an_explicit_choice(
    thinking: dict[str, Any], expected: dict[str, Any] | None
) -> None:
    body = request(
        [{"role": "user", "content": "hi"}], thinking=thinking, output_config={"effort": "high"}
    )
    out = translate(body, reasoning_param="deepseek").payload
    assert out.get("thinking") == expected
    assert "reasoning_effort" not in out


def test_anthropic_client_tools_become_functions_and_server_tools_do_not() -> None:
    tools = [
        {"type": "memory_20250818", "name": "memory"},
        {"type": "computer_20250124", "name": "computer", "display_width_px": 1024},
        {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
        {"type": "web_fetch_20250910", "name": "web_fetch"},
    ]
    out = translate(request([{"role": "user", "content": "hi"}], tools=tools)).payload
    functions = {t["function"]["name"]: t["function"]["parameters"] for t in out["tools"]}
    assert set(functions) == {"memory", "computer", "str_replace_based_edit_tool"}
    assert "rename" in functions["memory"]["properties"]["command"]["enum"]
    assert functions["computer"]["required"] == ["action"]


def test_empty_user_strings_are_not_sent() -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": ""},
    ]
    out = translate(request(messages)).payload
    assert roles(out) == ["user", "assistant"]
    with pytest.raises(RequestValidationError, match="at least one"):
        translate(request([{"role": "user", "content": ""}]))


def test_cache_breakpoints_reach_explicit_caching_upstreams_only() -> None:
    mark = {"type": "ephemeral"}
    body = request(
        [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [tool_use("t1")]},
            {"role": "user", "content": [{**tool_result("t1", "out"), "cache_control": mark}]},
            {"role": "assistant", "content": "next?"},
            {"role": "user", "content": [{"type": "text", "text": "more", "cache_control": mark}]},
        ],
        system=[
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=1;"},
            {"type": "text", "text": "You are an agent.", "cache_control": mark},
            {"type": "text", "text": "Main prompt."},
        ],
    )
    cached = translate(body, cache_control=True).payload["messages"]
    assert cached[0]["content"] == [
        {"type": "text", "text": "You are an agent.", "cache_control": mark},
        {"type": "text", "text": "Main prompt."},
    ]
    assert cached[3]["content"] == [{"type": "text", "text": "out", "cache_control": mark}]
    assert cached[5]["content"] == [{"type": "text", "text": "more", "cache_control": mark}]

    plain = translate(body).payload["messages"]
    assert plain[0]["content"] == "You are an agent.\n\nMain prompt."
    assert plain[3]["content"] == "out" and plain[5]["content"] == "more"
    table = CapabilityTable()
    assert table.profile(
        "https://openrouter.ai/api/v1", "anthropic/claude-sonnet-4.5"
    ).cache_control
    assert not table.profile("https://api.openai.com/v1", "gpt-4o").cache_control
