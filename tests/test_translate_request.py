"""Anthropic Messages request → OpenAI Chat Completions request.

Every expectation here comes from protocol.md (A.4–A.7, A.14, B.2–B.3, E.1, E.2, E.10, F) and
from what the real Claude Code sends (claude-code-client.md §4.4–4.6), not from the code.
"""

from __future__ import annotations

import base64
import copy
import io
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from claude_code_proxy.gateway.capabilities import profile_for
from claude_code_proxy.translate.chat.request import (
    TranslatedRequest,
    TranslationOptions,
    translate_request,
)
from claude_code_proxy.translate.documents import pdf_sources
from claude_code_proxy.translate.errors import RequestValidationError
from claude_code_proxy.translate.pdf import join_pdf_text, pdf_page_texts

FIXTURES = Path(__file__).resolve().parent / "fixtures"
UPSTREAM_MODEL = "gpt-upstream"
# Upstream ids must be Anthropic-legal (A.14) and at most 40 characters (OpenAI's limit).
OPENAI_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
BILLING = "x-anthropic-billing-header: cc_version=2.1.331.f2b; cc_entrypoint=sdk-cli;"


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def body(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "hello"}],
    }
    base.update(fields)
    return base


def translate(
    request: dict[str, Any], options: TranslationOptions | None = None
) -> TranslatedRequest:
    # The server extracts PDF text before translating (in a worker process): do it here too.
    documents = {
        data: join_pdf_text(
            [t for k, t in events if k == "page"], [t for k, t in events if k == "note"]
        )
        for data in pdf_sources(request.get("messages") if isinstance(request, dict) else None)
        for events in [list(pdf_page_texts(data, max_pages=100, max_chars=10**6))]
    }
    return translate_request(
        request, upstream_model=UPSTREAM_MODEL, options=options, documents=documents
    )


def payload_of(request: dict[str, Any], **options: Any) -> dict[str, Any]:
    opts = TranslationOptions(**options) if options else None
    return translate(request, opts).payload


def messages_of(messages: list[dict[str, Any]], **fields: Any) -> list[dict[str, Any]]:
    options = fields.pop("options", None)
    return translate(body(messages=messages, **fields), options).payload["messages"]


def non_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["role"] != "system"]


def text_of(content: Any) -> str:
    """All text of an OpenAI message content (string or parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(p["text"] for p in content if p.get("type") == "text")


def parts_of(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content)


def image_urls(content: Any) -> list[str]:
    return [p["image_url"]["url"] for p in parts_of(content) if p.get("type") == "image_url"]


def tool_use(call_id: str, name: str = "get_weather", **tool_input: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}


def tool_result(call_id: str, content: Any = "ok", **extra: Any) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id, **extra}
    if content is not None:
        block["content"] = content
    return block


def image_block(data: str = PNG_B64, media_type: str = "image/png") -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def make_pdf(text: str) -> bytes:
    """A minimal, valid one-page PDF whose page shows `text` in Helvetica."""
    stream = f"BT /F1 24 Tf 72 700 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref_at,
    )
    return bytes(out)


def pdf_document(text: str, **extra: Any) -> dict[str, Any]:
    data = base64.b64encode(make_pdf(text)).decode()
    return {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": data},
        **extra,
    }


def tool_messages_after_assistant(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run of `tool` messages right after the first assistant message with tool_calls."""
    for index, message in enumerate(messages):
        if message["role"] == "assistant" and message.get("tool_calls"):
            run = []
            for follower in messages[index + 1 :]:
                if follower["role"] != "tool":
                    break
                run.append(follower)
            return run
    raise AssertionError(f"no assistant message with tool_calls in {messages!r}")


# ------------------------------------------------------------------------------------------
# validation (A.4): bad input is a 400 naming the field, never a crash
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [[], "a string", 42, None, ["model"]])
def test_non_object_body_is_rejected(bad: Any) -> None:
    with pytest.raises(RequestValidationError):
        translate(bad)


def test_validation_error_is_a_value_error() -> None:
    assert issubclass(RequestValidationError, ValueError)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model", None),
        ("model", ""),
        ("model", 123),
        ("model", ["claude"]),
        ("max_tokens", None),
        ("max_tokens", True),
        ("max_tokens", False),
        ("max_tokens", -1),
        ("max_tokens", "1024"),
        ("max_tokens", 10.5),
        ("messages", None),
        ("messages", "hello"),
        ("messages", {"role": "user", "content": "hi"}),
        ("stream", "true"),
        ("stream", 1),
    ],
)
def test_invalid_required_fields_name_the_field(field: str, value: Any) -> None:
    request = body()
    if value is None:
        request.pop(field, None)
    else:
        request[field] = value
    with pytest.raises(RequestValidationError) as excinfo:
        translate(request)
    assert field in str(excinfo.value)


def test_max_tokens_zero_is_accepted() -> None:
    # A.4: `0` is allowed (cache pre-warm); the proxy decides what to do, translation must not fail.
    result = translate(body(max_tokens=0))
    assert result.max_tokens == 0


@pytest.mark.parametrize(
    "choice",
    [
        "auto",
        {"type": "bogus"},
        {"type": "tool"},
        {"type": "tool", "name": ""},
        {"name": "get_weather"},
    ],
)
def test_invalid_tool_choice_names_the_field(choice: Any) -> None:
    request = body(
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}], tool_choice=choice
    )
    with pytest.raises(RequestValidationError) as excinfo:
        translate(request)
    assert "tool_choice" in str(excinfo.value)


def test_translated_request_records_client_side_facts() -> None:
    result = translate(body(model="claude-opus-4-1", max_tokens=777, stream=True))
    assert result.client_model == "claude-opus-4-1"
    assert result.max_tokens == 777
    assert result.stream is True
    assert result.payload["model"] == UPSTREAM_MODEL
    assert result.estimated_input_tokens >= 0


# ------------------------------------------------------------------------------------------
# system prompt (E.1, F.16, A.5)
# ------------------------------------------------------------------------------------------


def test_system_string_becomes_leading_system_message() -> None:
    messages = payload_of(body(system="You are terse."))["messages"]
    assert messages[0] == {"role": "system", "content": "You are terse."}
    assert messages[1]["role"] == "user"
    assert sum(1 for m in messages if m["role"] == "system") == 1


def test_system_blocks_are_joined_with_blank_lines_and_billing_header_is_dropped() -> None:
    system = [
        {"type": "text", "text": BILLING},
        {"type": "text", "text": "First block.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Second block.", "cache_control": {"type": "ephemeral"}},
    ]
    messages = payload_of(body(system=system))["messages"]
    assert messages[0]["role"] == "system"
    assert messages[0]["content"] == "First block.\n\nSecond block."
    assert "x-anthropic-billing-header" not in json.dumps(messages)


def test_billing_header_is_dropped_wherever_it_sits_in_the_system_list() -> None:
    system = [
        {"type": "text", "text": "Only block."},
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197.38b;"},
    ]
    messages = payload_of(body(system=system))["messages"]
    assert messages[0] == {"role": "system", "content": "Only block."}


def test_no_system_means_no_system_message() -> None:
    messages = payload_of(body())["messages"]
    assert [m["role"] for m in messages] == ["user"]


def test_system_that_is_only_the_billing_header_yields_no_system_message() -> None:
    messages = payload_of(body(system=[{"type": "text", "text": BILLING}]))["messages"]
    assert all(m["role"] != "system" for m in messages)


def test_role_system_message_after_a_user_turn_is_folded_into_it_in_place() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "first question"},
            {"role": "system", "content": "# Environment\ncwd: /repo"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "second question"},
        ],
        system="Base prompt.",
    )
    assert messages == [
        {"role": "system", "content": "Base prompt."},
        {
            "role": "user",
            "content": "first question\n\n<system>\n# Environment\ncwd: /repo\n</system>",
        },
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "second question"},
    ]


def test_role_system_message_with_block_content_is_accepted() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": "Env A", "cache_control": {"type": "ephemeral"}},
                    {"type": "text", "text": "Env B"},
                ],
            },
        ]
    )
    assert [m["role"] for m in messages] == ["user"]
    assert "Env A" in messages[0]["content"] and "Env B" in messages[0]["content"]
    assert "cache_control" not in json.dumps(messages)


def test_role_system_message_before_any_turn_joins_the_system_prompt() -> None:
    messages = messages_of(
        [{"role": "system", "content": "early rules"}, {"role": "user", "content": "q"}],
        system="Base.",
    )
    assert messages == [
        {"role": "system", "content": "Base.\n\nearly rules"},
        {"role": "user", "content": "q"},
    ]


def test_role_system_message_after_an_assistant_turn_opens_the_next_user_turn() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"},
            {"role": "system", "content": "new rule"},
            {"role": "user", "content": "q2"},
        ]
    )
    assert messages[-1] == {"role": "user", "content": "<system>\nnew rule\n</system>\n\nq2"}
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]


def test_role_system_message_ending_the_conversation_after_an_assistant_turn() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"},
            {"role": "system", "content": "continue"},
        ]
    )
    assert messages[-1] == {"role": "user", "content": "<system>\ncontinue\n</system>"}


def test_mid_conv_system_block_stays_at_its_place_in_the_user_turn() -> None:
    messages = messages_of(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "the question"},
                    {
                        "type": "mid_conv_system",
                        "content": [{"type": "text", "text": "mid-conversation rule"}],
                    },
                    {"type": "text", "text": "and more"},
                ],
            }
        ],
        system="Base.",
    )
    assert messages[0] == {"role": "system", "content": "Base."}
    (user,) = non_system(messages)
    assert user["content"] == (
        "the question\n\n<system>\nmid-conversation rule\n</system>\n\nand more"
    )


def test_mid_conv_system_block_with_tool_results_follows_the_tool_messages() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [tool_use("toolu_A", city="Oslo")]},
            {
                "role": "user",
                "content": [
                    tool_result("toolu_A", "12°C"),
                    {"type": "mid_conv_system", "content": [{"type": "text", "text": "be brief"}]},
                ],
            },
        ]
    )
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user"]
    assert messages[-1]["content"] == "<system>\nbe brief\n</system>"


def test_role_system_message_between_a_tool_call_and_its_result() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [tool_use("toolu_A", city="Oslo")]},
            {"role": "system", "content": "rule"},
            {
                "role": "user",
                "content": [tool_result("toolu_A", "12°C"), {"type": "text", "text": "thanks"}],
            },
        ]
    )
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user"]
    assert messages[-1]["content"] == "<system>\nrule\n</system>\n\nthanks"


def test_folded_system_text_keeps_its_cache_breakpoint_where_caching_is_explicit() -> None:
    mark = {"type": "ephemeral"}
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {"role": "system", "content": [{"type": "text", "text": "env", "cache_control": mark}]},
        ],
        options=TranslationOptions(cache_control=True),
    )
    assert messages == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "q"},
                {"type": "text", "text": "<system>\nenv\n</system>", "cache_control": mark},
            ],
        }
    ]


def test_role_system_kept_in_place_when_requested() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "first"},
            {"role": "system", "content": "in-place rule"},
            {"role": "assistant", "content": "reply"},
        ],
        system="Base.",
        options=TranslationOptions(system_in_place=True),
    )
    assert messages == [
        {"role": "system", "content": "Base."},
        {"role": "user", "content": "first"},
        {"role": "system", "content": "in-place rule"},
        {"role": "assistant", "content": "reply"},
    ]


def test_mid_conv_system_kept_in_place_when_requested() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "reply"},
            {
                "role": "user",
                "content": [
                    {"type": "mid_conv_system", "content": [{"type": "text", "text": "rule"}]},
                    {"type": "text", "text": "second"},
                ],
            },
        ],
        options=TranslationOptions(system_in_place=True),
    )
    roles = [m["role"] for m in messages]
    assert roles.index("system") > roles.index("assistant")
    system_messages = [m for m in messages if m["role"] == "system"]
    assert len(system_messages) == 1
    assert text_of(system_messages[0]["content"]) == "rule"
    assert text_of(messages[-1]["content"]) == "second"


def test_mid_conv_system_between_texts_splits_the_user_turn_when_in_place() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "reply"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "before"},
                    {"type": "mid_conv_system", "content": [{"type": "text", "text": "rule"}]},
                    {"type": "text", "text": "after"},
                ],
            },
        ],
        options=TranslationOptions(system_in_place=True),
    )
    assert messages[2:] == [
        {"role": "user", "content": "before"},
        {"role": "system", "content": "rule"},
        {"role": "user", "content": "after"},
    ]


def test_in_place_system_never_separates_tool_calls_from_their_results() -> None:
    # F.10: tool messages must immediately follow the assistant tool_calls message, even when a
    # mid_conv_system block travels in the same user turn as the tool results.
    messages = messages_of(
        [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [tool_use("toolu_A", city="Oslo")]},
            {
                "role": "user",
                "content": [
                    tool_result("toolu_A", "12°C"),
                    {"type": "mid_conv_system", "content": [{"type": "text", "text": "be brief"}]},
                ],
            },
        ],
        options=TranslationOptions(system_in_place=True),
    )
    index = next(i for i, m in enumerate(messages) if m.get("tool_calls"))
    assert messages[index + 1]["role"] == "tool"
    assert messages[index + 1]["content"] == "12°C"
    assert any(m["role"] == "system" and "be brief" in text_of(m["content"]) for m in messages)


# ------------------------------------------------------------------------------------------
# user content: text, images, documents, search results (E.2)
# ------------------------------------------------------------------------------------------


def test_plain_string_user_content() -> None:
    messages = messages_of([{"role": "user", "content": "just text"}])
    assert messages == [{"role": "user", "content": "just text"}]


def test_text_blocks_keep_their_text_and_lose_cache_control_and_citations() -> None:
    messages = messages_of(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "one", "cache_control": {"type": "ephemeral"}},
                    {"type": "text", "text": "two", "citations": None},
                ],
            }
        ]
    )
    assert len(messages) == 1
    text = text_of(messages[0]["content"])
    assert "one" in text
    assert "two" in text
    assert text.index("one") < text.index("two")
    assert "cache_control" not in json.dumps(messages)
    assert "citations" not in json.dumps(messages)


def test_base64_image_becomes_data_url() -> None:
    messages = messages_of(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    image_block(PNG_B64, "image/png"),
                ],
            }
        ]
    )
    content = messages[0]["content"]
    assert isinstance(content, list)
    assert image_urls(content) == [f"data:image/png;base64,{PNG_B64}"]
    assert text_of(content) == "what is this?"
    # order of parts is preserved: text before image
    kinds = [p["type"] for p in content]
    assert kinds == ["text", "image_url"]


def test_base64_image_keeps_its_media_type() -> None:
    messages = messages_of([{"role": "user", "content": [image_block("R0lGODlh", "image/gif")]}])
    assert image_urls(messages[0]["content"]) == ["data:image/gif;base64,R0lGODlh"]


def test_url_image_keeps_its_url() -> None:
    url = "https://example.org/cat.jpg"
    messages = messages_of(
        [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": url}}]}]
    )
    assert image_urls(messages[0]["content"]) == [url]


def test_file_image_becomes_a_text_note() -> None:
    block = {"type": "image", "source": {"type": "file", "file_id": "file_011abc"}}
    messages = messages_of([{"role": "user", "content": [{"type": "text", "text": "look"}, block]}])
    content = messages[0]["content"]
    assert image_urls(content) == []
    text = text_of(content)
    assert "look" in text
    # the note is a real text, not an empty string
    assert len(text.replace("look", "").strip()) > 0


def test_text_document_becomes_text_with_title() -> None:
    document = {
        "type": "document",
        "title": "Design notes",
        "source": {"type": "text", "media_type": "text/plain", "data": "The parser is LL(1)."},
    }
    messages = messages_of([{"role": "user", "content": [document]}])
    text = text_of(messages[0]["content"])
    assert "The parser is LL(1)." in text
    assert "Design notes" in text


def test_content_document_is_flattened() -> None:
    document = {
        "type": "document",
        "source": {
            "type": "content",
            "content": [
                {"type": "text", "text": "chunk one"},
                {"type": "text", "text": "chunk two"},
            ],
        },
    }
    messages = messages_of([{"role": "user", "content": [document]}])
    text = text_of(messages[0]["content"])
    assert "chunk one" in text
    assert "chunk two" in text


def test_content_document_with_string_content() -> None:
    document = {"type": "document", "source": {"type": "content", "content": "whole doc"}}
    messages = messages_of([{"role": "user", "content": [document]}])
    assert "whole doc" in text_of(messages[0]["content"])


def test_content_document_with_image_keeps_the_image() -> None:
    document = {
        "type": "document",
        "source": {"type": "content", "content": [{"type": "text", "text": "fig"}, image_block()]},
    }
    messages = messages_of([{"role": "user", "content": [document]}])
    assert image_urls(messages[0]["content"]) == [f"data:image/png;base64,{PNG_B64}"]
    assert "fig" in text_of(messages[0]["content"])


def test_handmade_pdf_is_a_real_pdf() -> None:
    # Guard for the helper itself, independent of the proxy.
    reader = PdfReader(io.BytesIO(make_pdf("Quarterly revenue grew")))
    assert "Quarterly revenue grew" in reader.pages[0].extract_text()


def test_base64_pdf_is_sent_as_file_part_when_upstream_takes_files() -> None:
    document = pdf_document("Quarterly revenue grew")
    messages = messages_of(
        [{"role": "user", "content": [document]}], options=TranslationOptions(pdf_as_file=True)
    )
    parts = parts_of(messages[0]["content"])
    files = [p for p in parts if p["type"] == "file"]
    assert len(files) == 1
    file_part = files[0]["file"]
    assert file_part["file_data"] == "data:application/pdf;base64," + document["source"]["data"]
    assert file_part["filename"].endswith(".pdf")


def test_base64_pdf_text_is_extracted_when_upstream_takes_no_files() -> None:
    document = pdf_document("Quarterly revenue grew")
    messages = messages_of(
        [{"role": "user", "content": [{"type": "text", "text": "Summarise"}, document]}],
        options=TranslationOptions(pdf_as_file=False),
    )
    content = messages[0]["content"]
    assert all(p.get("type") != "file" for p in parts_of(content))
    text = text_of(content)
    assert "Quarterly revenue grew" in text
    assert "Summarise" in text
    # never the raw base64 payload
    assert document["source"]["data"] not in json.dumps(messages)


def test_base64_pdf_title_is_kept_when_extracting() -> None:
    document = pdf_document("Body text here", title="Annual report")
    messages = messages_of([{"role": "user", "content": [document]}])
    text = text_of(messages[0]["content"])
    assert "Annual report" in text
    assert "Body text here" in text


BROKEN_PDF = {
    "type": "document",
    "source": {"type": "base64", "media_type": "application/pdf", "data": "!!!not base64!!!"},
}


def test_invalid_base64_document_becomes_a_clear_note() -> None:
    messages = messages_of(
        [{"role": "user", "content": [{"type": "text", "text": "read this"}, BROKEN_PDF]}],
        options=TranslationOptions(pdf_as_file=False),
    )
    assert len(messages) == 1
    text = text_of(messages[0]["content"])
    note = text.replace("read this", "").strip()
    # Not silently dropped: the model is told a document was there and could not be read.
    assert note, "the broken document vanished without a trace"
    assert re.search(r"document|pdf", note, re.I)
    assert re.search(r"base64|decod|could not|cannot|invalid|unreadable", note, re.I)


def test_invalid_base64_pdf_is_a_note_not_a_corrupt_file_part() -> None:
    # Forwarding undecodable data as a `file` part makes the upstream reject the whole turn;
    # the brief's rule is "invalid base64 → a clear note" whatever the upstream accepts.
    messages = messages_of(
        [{"role": "user", "content": [{"type": "text", "text": "read this"}, BROKEN_PDF]}],
        options=TranslationOptions(pdf_as_file=True),
    )
    parts = parts_of(messages[0]["content"])
    assert all(p["type"] != "file" for p in parts), parts
    note = text_of(messages[0]["content"]).replace("read this", "").strip()
    assert re.search(r"base64|decod|could not|cannot|invalid|unreadable", note, re.I)


def test_base64_text_document_is_decoded() -> None:
    data = base64.b64encode(b"plain text inside base64").decode()
    document = {
        "type": "document",
        "source": {"type": "base64", "media_type": "text/plain", "data": data},
    }
    messages = messages_of([{"role": "user", "content": [document]}])
    assert "plain text inside base64" in text_of(messages[0]["content"])


def test_url_document_is_mentioned_not_dropped() -> None:
    document = {
        "type": "document",
        "source": {"type": "url", "url": "https://example.org/paper.pdf"},
    }
    messages = messages_of([{"role": "user", "content": [document]}])
    assert "https://example.org/paper.pdf" in text_of(messages[0]["content"])


def test_search_result_is_rendered_as_text() -> None:
    block = {
        "type": "search_result",
        "source": "https://kb.example/a",
        "title": "KB article",
        "content": [{"type": "text", "text": "the snippet"}],
        "citations": {"enabled": True},
    }
    messages = messages_of([{"role": "user", "content": [block]}])
    text = text_of(messages[0]["content"])
    assert "KB article" in text
    assert "https://kb.example/a" in text
    assert "the snippet" in text


def test_unknown_block_types_do_not_raise() -> None:
    messages = messages_of(
        [
            {
                "role": "user",
                "content": [
                    {"type": "brand_new_block_2027", "payload": {"x": 1}},
                    {"type": "container_upload", "file_id": "file_01"},
                    {"type": "text", "text": "still here"},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "another_future_block"},
                    {"type": "text", "text": "answer"},
                ],
            },
        ]
    )
    assert "still here" in text_of(messages[0]["content"])
    assert any(m["role"] == "assistant" and "answer" in text_of(m["content"]) for m in messages)


# ------------------------------------------------------------------------------------------
# assistant content: thinking, tool_use (E.2)
# ------------------------------------------------------------------------------------------


def test_thinking_and_redacted_thinking_in_history_are_accepted_and_not_forwarded() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "SECRET-REASONING", "signature": "EqQBsig"},
                    {"type": "redacted_thinking", "data": "EmwKREDACTED"},
                    {"type": "text", "text": "visible answer"},
                ],
            },
            {"role": "user", "content": "next"},
        ]
    )
    dumped = json.dumps(messages)
    assert "SECRET-REASONING" not in dumped
    assert "EmwKREDACTED" not in dumped
    assert "EqQBsig" not in dumped
    assert messages[1] == {"role": "assistant", "content": "visible answer"}


def test_assistant_with_only_thinking_does_not_break_alternation() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q1"},
            {
                "role": "assistant",
                "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"}],
            },
            {"role": "user", "content": "q2"},
        ]
    )
    for first, second in itertools.pairwise(messages):
        assert not (first["role"] == second["role"] == "user")
    assert "hmm" not in json.dumps(messages)


def test_tool_use_becomes_tool_calls_with_json_string_arguments() -> None:
    tool_input = {"city": "Oslo", "units": "metric", "days": [1, 2], "exact": True}
    messages = messages_of(
        [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking the forecast."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01A",
                        "name": "get_weather",
                        "input": tool_input,
                    },
                ],
            },
            {"role": "user", "content": [tool_result("toolu_01A", "12°C, rain")]},
        ]
    )
    assistant = messages[1]
    assert assistant["role"] == "assistant"
    assert assistant["content"] == "Checking the forecast."
    assert len(assistant["tool_calls"]) == 1
    call = assistant["tool_calls"][0]
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert isinstance(call["function"]["arguments"], str)
    assert json.loads(call["function"]["arguments"]) == tool_input
    assert OPENAI_SAFE_ID.match(call["id"])


def test_assistant_with_only_tool_calls_has_null_or_empty_content() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [tool_use("toolu_X", city="Oslo")]},
            {"role": "user", "content": [tool_result("toolu_X")]},
        ]
    )
    assistant = messages[1]
    assert assistant["content"] in (None, "")
    assert assistant["tool_calls"][0]["function"]["name"] == "get_weather"


def test_tool_use_with_empty_input_sends_empty_object_arguments() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_E", "name": "ListAgents", "input": {}}
                ],
            },
            {"role": "user", "content": [tool_result("toolu_E")]},
        ]
    )
    assert json.loads(messages[1]["tool_calls"][0]["function"]["arguments"]) == {}


def test_several_tool_uses_keep_their_order() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [
                    tool_use("toolu_1", "Read", file_path="/a"),
                    tool_use("toolu_2", "Read", file_path="/b"),
                    tool_use("toolu_3", "Bash", command="ls"),
                ],
            },
            {
                "role": "user",
                "content": [tool_result("toolu_1"), tool_result("toolu_2"), tool_result("toolu_3")],
            },
        ]
    )
    calls = messages[1]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"file_path": "/a"},
        {"file_path": "/b"},
        {"command": "ls"},
    ]
    assert len({c["id"] for c in calls}) == 3


# ------------------------------------------------------------------------------------------
# tool results (E.2, B.3 ordering rule, F.10)
# ------------------------------------------------------------------------------------------


def test_tool_results_follow_the_assistant_in_call_order() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [tool_use("toolu_A", city="Oslo"), tool_use("toolu_B", city="Rome")],
            },
            {
                "role": "user",
                "content": [
                    tool_result("toolu_B", "Rome: sunny"),
                    tool_result("toolu_A", "Oslo: rain"),
                ],
            },
        ]
    )
    calls = messages[1]["tool_calls"]
    tools = tool_messages_after_assistant(messages)
    assert [t["tool_call_id"] for t in tools] == [c["id"] for c in calls]
    assert [t["content"] for t in tools] == ["Oslo: rain", "Rome: sunny"]
    assert len(messages) == 4  # system-less: user, assistant, tool, tool


def test_sibling_text_and_images_go_in_one_user_message_after_the_tool_messages() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [tool_use("toolu_A"), tool_use("toolu_B")]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Here are the results."},
                    tool_result("toolu_A", "a"),
                    image_block(),
                    tool_result("toolu_B", "b"),
                    {"type": "text", "text": "Please continue."},
                ],
            },
        ]
    )
    roles = [m["role"] for m in messages]
    assert roles == ["user", "assistant", "tool", "tool", "user"]
    last = messages[-1]["content"]
    assert "Here are the results." in text_of(last)
    assert "Please continue." in text_of(last)
    assert image_urls(last) == [f"data:image/png;base64,{PNG_B64}"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("plain string output", ["plain string output"]),
        (
            [{"type": "text", "text": "line one"}, {"type": "text", "text": "line two"}],
            ["line one", "line two"],
        ),
    ],
)
def test_tool_result_content_forms(content: Any, expected: list[str]) -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [tool_use("toolu_A")]},
            {"role": "user", "content": [tool_result("toolu_A", content)]},
        ]
    )
    (tool,) = tool_messages_after_assistant(messages)
    assert isinstance(tool["content"], str)
    for piece in expected:
        assert piece in tool["content"]


@pytest.mark.parametrize("content", [None, "", []])
def test_empty_or_missing_tool_result_content_gets_a_placeholder(content: Any) -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [tool_use("toolu_A")]},
            {"role": "user", "content": [tool_result("toolu_A", content)]},
        ]
    )
    (tool,) = tool_messages_after_assistant(messages)
    assert isinstance(tool["content"], str)
    assert tool["content"].strip(), "several servers reject empty tool content"


def test_tool_result_images_move_to_the_following_user_message() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "take a screenshot"},
            {"role": "assistant", "content": [tool_use("toolu_S", "Screenshot")]},
            {
                "role": "user",
                "content": [
                    tool_result(
                        "toolu_S",
                        [{"type": "text", "text": "screenshot taken"}, image_block()],
                    )
                ],
            },
        ]
    )
    (tool,) = tool_messages_after_assistant(messages)
    assert "screenshot taken" in tool["content"]
    assert PNG_B64 not in json.dumps(tool)
    assert "base64" not in tool["content"]
    index = messages.index(tool)
    follower = messages[index + 1]
    assert follower["role"] == "user"
    assert image_urls(follower["content"]) == [f"data:image/png;base64,{PNG_B64}"]
    assert index + 2 == len(messages)


def test_tool_result_with_only_an_image_still_has_text_in_the_tool_message() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [tool_use("toolu_S", "Screenshot")]},
            {"role": "user", "content": [tool_result("toolu_S", [image_block()])]},
        ]
    )
    (tool,) = tool_messages_after_assistant(messages)
    assert tool["content"].strip()
    assert PNG_B64 not in tool["content"]
    assert image_urls(messages[-1]["content"]) == [f"data:image/png;base64,{PNG_B64}"]


def test_tool_result_images_and_sibling_text_share_one_user_message() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [tool_use("toolu_S", "Screenshot")]},
            {
                "role": "user",
                "content": [
                    tool_result("toolu_S", [image_block()]),
                    {"type": "text", "text": "what do you see?"},
                ],
            },
        ]
    )
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user"]
    assert image_urls(messages[-1]["content"]) == [f"data:image/png;base64,{PNG_B64}"]
    assert "what do you see?" in text_of(messages[-1]["content"])


def test_tool_result_is_error_is_conveyed_in_text() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [tool_use("toolu_A", "Bash", command="false")]},
            {
                "role": "user",
                "content": [tool_result("toolu_A", "exit status 1", is_error=True)],
            },
        ]
    )
    (tool,) = tool_messages_after_assistant(messages)
    assert "exit status 1" in tool["content"]
    assert "error" in tool["content"].lower()


def test_tool_result_success_is_not_marked_as_error() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [tool_use("toolu_A")]},
            {"role": "user", "content": [tool_result("toolu_A", "fine", is_error=False)]},
        ]
    )
    (tool,) = tool_messages_after_assistant(messages)
    assert tool["content"] == "fine"


def test_missing_tool_result_gets_a_placeholder_tool_message() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [tool_use("toolu_A"), tool_use("toolu_B")]},
            {"role": "user", "content": [tool_result("toolu_B", "only B answered")]},
        ]
    )
    calls = messages[1]["tool_calls"]
    tools = tool_messages_after_assistant(messages)
    assert [t["tool_call_id"] for t in tools] == [c["id"] for c in calls]
    assert tools[0]["content"].strip()  # placeholder for A
    assert tools[1]["content"] == "only B answered"


def test_unanswered_tool_calls_followed_by_plain_user_text_get_placeholders() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [tool_use("toolu_A")]},
            {"role": "user", "content": "never mind, do something else"},
        ]
    )
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user"]
    assert messages[2]["tool_call_id"] == messages[1]["tool_calls"][0]["id"]
    assert messages[2]["content"].strip()
    assert messages[3]["content"] == "never mind, do something else"


def test_orphan_tool_result_becomes_user_text() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "no tools used"},
            {"role": "user", "content": [tool_result("toolu_GHOST", "orphan output")]},
        ]
    )
    assert all(m["role"] != "tool" for m in messages)
    assert messages[-1]["role"] == "user"
    assert "orphan output" in text_of(messages[-1]["content"])


def test_duplicate_tool_result_does_not_create_a_second_tool_message() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [tool_use("toolu_A")]},
            {
                "role": "user",
                "content": [tool_result("toolu_A", "first"), tool_result("toolu_A", "second")],
            },
        ]
    )
    tools = [m for m in messages if m["role"] == "tool"]
    assert len(tools) == 1
    assert tools[0]["content"] == "first"
    assert "second" in text_of(messages[-1]["content"])


def test_tool_result_containing_search_result_and_document_is_text() -> None:
    content = [
        {
            "type": "search_result",
            "source": "https://kb.example/b",
            "title": "Doc B",
            "content": [{"type": "text", "text": "b snippet"}],
        },
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "doc body"},
        },
    ]
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [tool_use("toolu_A", "Search")]},
            {"role": "user", "content": [tool_result("toolu_A", content)]},
        ]
    )
    (tool,) = tool_messages_after_assistant(messages)
    assert isinstance(tool["content"], str)
    for piece in ("Doc B", "https://kb.example/b", "b snippet", "doc body"):
        assert piece in tool["content"]


def test_multi_turn_tool_loop_keeps_every_pairing() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "fix the bug"},
            {"role": "assistant", "content": [tool_use("toolu_1", "Read", file_path="/a.py")]},
            {"role": "user", "content": [tool_result("toolu_1", "print(1)")]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Editing."},
                    tool_use("toolu_2", "Edit", file_path="/a.py"),
                ],
            },
            {"role": "user", "content": [tool_result("toolu_2", "done")]},
        ]
    )
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "tool"]
    assert messages[2]["tool_call_id"] == messages[1]["tool_calls"][0]["id"]
    assert messages[4]["tool_call_id"] == messages[3]["tool_calls"][0]["id"]
    assert messages[3]["content"] == "Editing."


# ------------------------------------------------------------------------------------------
# merging (A.5)
# ------------------------------------------------------------------------------------------


def test_consecutive_user_messages_are_merged() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "part one"},
            {"role": "user", "content": [{"type": "text", "text": "part two"}]},
        ]
    )
    assert len(messages) == 1
    text = text_of(messages[0]["content"])
    assert text.index("part one") < text.index("part two")


def test_consecutive_user_messages_with_images_are_merged() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "text first"},
            {"role": "user", "content": [image_block()]},
        ]
    )
    assert len(messages) == 1
    assert "text first" in text_of(messages[0]["content"])
    assert image_urls(messages[0]["content"]) == [f"data:image/png;base64,{PNG_B64}"]


def test_consecutive_assistant_messages_are_merged() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "first half"},
            {"role": "assistant", "content": [{"type": "text", "text": "second half"}]},
            {"role": "user", "content": "ok"},
        ]
    )
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    text = text_of(messages[1]["content"])
    assert text.index("first half") < text.index("second half")


def test_no_two_neighbours_share_user_or_assistant_role_after_translation() -> None:
    messages = messages_of(
        [
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": [tool_use("toolu_Q")]},
            {"role": "user", "content": [tool_result("toolu_Q", "r")]},
            {"role": "user", "content": "d"},
        ]
    )
    for first, second in itertools.pairwise(messages):
        assert not (first["role"] == second["role"] and first["role"] in ("user", "assistant")), (
            messages
        )
    # the tool message still follows the assistant message carrying the call
    tools = tool_messages_after_assistant(messages)
    assert [t["content"] for t in tools] == ["r"]


# ------------------------------------------------------------------------------------------
# tool ids (A.14, C.12)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "client_id",
    [
        "functions.get_weather:0",  # Kimi-K2 on vLLM
        "call id with spaces",
        "toolu_" + "x" * 60,  # longer than OpenAI's 40-character limit
        "a/b|c@d",
    ],
)
def test_awkward_tool_ids_are_mapped_consistently(client_id: str) -> None:
    conversation = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [tool_use(client_id)]},
        {"role": "user", "content": [tool_result(client_id, "r")]},
    ]
    first = messages_of(copy.deepcopy(conversation))
    second = messages_of(copy.deepcopy(conversation))
    call_id = first[1]["tool_calls"][0]["id"]
    assert OPENAI_SAFE_ID.match(call_id), call_id
    (tool,) = tool_messages_after_assistant(first)
    assert tool["tool_call_id"] == call_id
    assert tool["content"] == "r"
    # deterministic across requests: every turn of a conversation maps the same way
    assert second[1]["tool_calls"][0]["id"] == call_id


def test_distinct_awkward_ids_stay_distinct() -> None:
    ids = ["functions.a:0", "functions.a:1", "toolu_" + "y" * 50, "toolu_" + "y" * 51]
    messages = messages_of(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [tool_use(i) for i in ids]},
            {"role": "user", "content": [tool_result(i, f"r{n}") for n, i in enumerate(ids)]},
        ]
    )
    calls = messages[1]["tool_calls"]
    assert len({c["id"] for c in calls}) == len(ids)
    tools = tool_messages_after_assistant(messages)
    assert [t["content"] for t in tools] == ["r0", "r1", "r2", "r3"]
    assert [t["tool_call_id"] for t in tools] == [c["id"] for c in calls]


def test_mistral_tool_ids_are_nine_alphanumerics_and_consistent() -> None:
    # C.9: Mistral rejects any tool call id that is not exactly 9 characters [a-zA-Z0-9].
    ids = ["toolu_01HkR4mZq8VtN2cYwXb7LpQe", "toolu_01NRLabsLyVHZPKxbKvkfSMn", "functions.a:0"]
    conversation = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [tool_use(i) for i in ids]},
        {"role": "user", "content": [tool_result(i, f"r{n}") for n, i in enumerate(ids)]},
    ]
    options = TranslationOptions(tool_id_style="mistral")
    messages = messages_of(copy.deepcopy(conversation), options=options)
    calls = messages[1]["tool_calls"]
    for call in calls:
        assert re.fullmatch(r"[A-Za-z0-9]{9}", call["id"]), call["id"]
    assert len({c["id"] for c in calls}) == len(ids)
    tools = tool_messages_after_assistant(messages)
    assert [t["tool_call_id"] for t in tools] == [c["id"] for c in calls]
    assert [t["content"] for t in tools] == ["r0", "r1", "r2"]
    again = messages_of(copy.deepcopy(conversation), options=options)
    assert [c["id"] for c in again[1]["tool_calls"]] == [c["id"] for c in calls]


# ------------------------------------------------------------------------------------------
# tools and tool_choice (A.7, E.1)
# ------------------------------------------------------------------------------------------

WRITE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "file_path": {"description": "The absolute path", "type": "string"},
        "content": {"description": "The content", "type": "string"},
    },
    "required": ["file_path", "content"],
    "additionalProperties": False,
}


def test_custom_tool_becomes_function_with_unchanged_schema() -> None:
    tool = {
        "name": "Write",
        "description": "Writes a file.",
        "input_schema": copy.deepcopy(WRITE_SCHEMA),
        "cache_control": {"type": "ephemeral"},
    }
    payload = payload_of(body(tools=[tool]))
    assert payload["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "Write",
                "description": "Writes a file.",
                "parameters": WRITE_SCHEMA,
            },
        }
    ]


def test_tool_with_custom_type_is_forwarded() -> None:
    tool = {"type": "custom", "name": "Grep", "input_schema": {"type": "object", "properties": {}}}
    payload = payload_of(body(tools=[tool]))
    assert [t["function"]["name"] for t in payload["tools"]] == ["Grep"]
    assert payload["tools"][0]["function"]["parameters"] == {"type": "object", "properties": {}}


def test_deferred_and_server_tools_are_not_forwarded_but_web_search_is_run_by_the_proxy() -> None:
    tools = [
        {"name": "Read", "description": "Read", "input_schema": {"type": "object"}},
        {
            "name": "DeferredToolPlaceholder",
            "input_schema": {"type": "object", "properties": {}},
            "defer_loading": True,
        },
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {"type": "web_fetch_20250910", "name": "web_fetch"},
        {"type": "code_execution_20250825", "name": "code_execution"},
        {"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"},
    ]
    payload = payload_of(body(tools=tools))
    assert [t["function"]["name"] for t in payload["tools"]] == ["Read", "web_search"]


def test_bash_client_tool_is_synthesized() -> None:
    payload = payload_of(body(tools=[{"type": "bash_20250124", "name": "bash"}]))
    (tool,) = payload["tools"]
    assert tool["type"] == "function"
    assert tool["function"]["name"] == "bash"
    schema = tool["function"]["parameters"]
    assert schema["type"] == "object"
    assert schema["properties"]["command"]["type"] == "string"
    assert "restart" in schema["properties"]


@pytest.mark.parametrize(
    "tool_type", ["text_editor_20250124", "text_editor_20250429", "text_editor_20250728"]
)
def test_text_editor_client_tool_is_synthesized(tool_type: str) -> None:
    payload = payload_of(body(tools=[{"type": tool_type, "name": "str_replace_based_edit_tool"}]))
    (tool,) = payload["tools"]
    assert tool["function"]["name"] == "str_replace_based_edit_tool"
    schema = tool["function"]["parameters"]
    for prop in ("command", "path", "old_str", "new_str", "file_text", "insert_line", "view_range"):
        assert prop in schema["properties"], prop
    assert set(schema.get("required", [])) >= {"command", "path"}
    assert {"view", "create", "str_replace", "insert"} <= set(
        schema["properties"]["command"]["enum"]
    )


def walk(node: Any) -> list[dict[str, Any]]:
    """Every object inside a JSON value."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(walk(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(walk(value))
    return found


def test_gemini_schema_dialect_strips_unsupported_keywords() -> None:
    # C.7: `$schema`, `additionalProperties`, `propertyNames`, `const`, `$ref`/`$defs` make
    # Gemini answer 400; sanitize recursively, inline `$ref`, `const` → one-value `enum`.
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "status": {"anyOf": [{"const": "open"}, {"const": "done"}]},
            "metadata": {
                "type": "object",
                "propertyNames": {"pattern": "^[a-z]+$"},
                "additionalProperties": {},
            },
            "item": {"$ref": "#/$defs/Item"},
        },
        "required": ["status"],
        "additionalProperties": False,
        "$defs": {"Item": {"type": "object", "properties": {"n": {"type": "integer"}}}},
    }
    payload = payload_of(
        body(tools=[{"name": "TaskUpdate", "input_schema": copy.deepcopy(schema)}]),
        schema_dialect="gemini",
    )
    params = payload["tools"][0]["function"]["parameters"]
    forbidden = {"$schema", "additionalProperties", "propertyNames", "const", "$ref", "$defs"}
    for node in walk(params):
        assert not forbidden & set(node), node
    assert params["type"] == "object"
    assert params["required"] == ["status"]
    assert params["properties"]["item"]["properties"]["n"]["type"] == "integer"
    assert [branch["enum"] for branch in params["properties"]["status"]["anyOf"]] == [
        ["open"],
        ["done"],
    ]


def test_empty_tools_list_sends_no_tools_and_no_tool_choice() -> None:
    # The Claude Code title request sends `tools: []` (claude-code-client.md §4.4).
    payload = payload_of(
        body(tools=[], tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    )
    assert "tools" not in payload
    assert "tool_choice" not in payload
    assert "parallel_tool_calls" not in payload


def test_only_unforwardable_tools_sends_no_tools_and_no_tool_choice() -> None:
    payload = payload_of(
        body(
            tools=[{"type": "web_fetch_20250910", "name": "web_fetch"}],
            tool_choice={"type": "any"},
        )
    )
    assert "tools" not in payload
    assert "tool_choice" not in payload


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_tool_choice_mapping(choice: dict[str, Any], expected: Any) -> None:
    tools = [
        {"name": "get_weather", "input_schema": {"type": "object"}},
        {"name": "get_time", "input_schema": {"type": "object"}},
    ]
    payload = payload_of(body(tools=tools, tool_choice=choice))
    assert payload["tool_choice"] == expected
    assert "parallel_tool_calls" not in payload
    assert len(payload["tools"]) == 2  # `none` keeps the definitions


def test_no_tool_choice_sends_none() -> None:
    payload = payload_of(body(tools=[{"name": "t", "input_schema": {"type": "object"}}]))
    assert "tool_choice" not in payload
    assert "parallel_tool_calls" not in payload


@pytest.mark.parametrize("kind", ["auto", "any"])
def test_disable_parallel_tool_use(kind: str) -> None:
    payload = payload_of(
        body(
            tools=[{"name": "t", "input_schema": {"type": "object"}}],
            tool_choice={"type": kind, "disable_parallel_tool_use": True},
        )
    )
    assert payload["parallel_tool_calls"] is False


def test_disable_parallel_tool_use_false_sends_nothing() -> None:
    payload = payload_of(
        body(
            tools=[{"name": "t", "input_schema": {"type": "object"}}],
            tool_choice={"type": "auto", "disable_parallel_tool_use": False},
        )
    )
    assert "parallel_tool_calls" not in payload


def test_strict_tool_flag_is_only_set_when_requested() -> None:
    tools = [
        {"name": "strict_one", "input_schema": {"type": "object"}, "strict": True},
        {"name": "loose_one", "input_schema": {"type": "object"}},
    ]
    functions = {
        t["function"]["name"]: t["function"] for t in payload_of(body(tools=tools))["tools"]
    }
    assert functions["strict_one"].get("strict") is True
    assert "strict" not in functions["loose_one"]


def test_tool_fields_that_openai_does_not_know_are_dropped() -> None:
    tool = {
        "name": "Read",
        "description": "Read a file",
        "input_schema": {"type": "object"},
        "cache_control": {"type": "ephemeral"},
        "eager_input_streaming": True,
        "input_examples": [{"file_path": "/x"}],
        "allowed_callers": ["direct"],
    }
    (function_tool,) = payload_of(body(tools=[tool]))["tools"]
    assert set(function_tool) == {"type", "function"}
    assert set(function_tool["function"]) == {"name", "description", "parameters"}


# ------------------------------------------------------------------------------------------
# top-level fields (E.1)
# ------------------------------------------------------------------------------------------


def test_stop_sequences_become_stop_capped_at_four() -> None:
    stops = ["</a>", "</b>", "</c>", "</d>", "</e>", "</f>"]
    result = translate(body(stop_sequences=stops))
    assert result.payload["stop"] == stops[:4]
    # the full list is remembered to detect `stop_sequence` on the way back
    assert result.stop_sequences == stops


def test_few_stop_sequences_are_copied() -> None:
    assert payload_of(body(stop_sequences=["\n\nHuman:"]))["stop"] == ["\n\nHuman:"]


def test_no_stop_sequences_means_no_stop() -> None:
    assert "stop" not in payload_of(body())
    assert "stop" not in payload_of(body(stop_sequences=[]))


def test_temperature_and_top_p_are_copied() -> None:
    payload = payload_of(body(temperature=0.3, top_p=0.9))
    assert payload["temperature"] == 0.3
    assert payload["top_p"] == 0.9


def test_zero_temperature_is_copied() -> None:
    assert payload_of(body(temperature=0))["temperature"] == 0


def test_unsupported_anthropic_fields_never_reach_the_payload() -> None:
    request = body(
        system=[
            {"type": "text", "text": "sys", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        ],
        temperature=0.5,
        top_k=40,
        metadata={"user_id": '{"device_id":"abc","account_uuid":"","session_id":"s"}'},
        thinking={"type": "enabled", "budget_tokens": 2048},
        output_config={"effort": "high"},
        context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        cache_control={"type": "ephemeral"},
        service_tier="auto",
        container="container_123",
        inference_geo="us",
        mcp_servers=[{"type": "url", "name": "x", "url": "https://mcp.example"}],
        speed="fast",
        stream=True,
    )
    payload = payload_of(request)
    assert set(payload) == {
        "model",
        "messages",
        "max_tokens",
        "temperature",
        "stream",
        "stream_options",
    }
    assert "cache_control" not in json.dumps(payload)


def test_minimal_non_streaming_payload_key_set() -> None:
    payload = payload_of(body())
    assert set(payload) == {"model", "messages", "max_tokens"}
    assert payload["max_tokens"] == 1024


def test_output_config_json_schema_becomes_response_format() -> None:
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}},
        "required": ["title"],
        "additionalProperties": False,
    }
    payload = payload_of(
        body(
            tools=[],
            output_config={"effort": "medium", "format": {"type": "json_schema", "schema": schema}},
        )
    )
    response_format = payload["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["schema"] == schema
    assert isinstance(response_format["json_schema"]["name"], str)
    assert response_format["json_schema"]["name"]
    assert "reasoning_effort" not in payload
    assert "output_config" not in payload


def test_beta_output_format_becomes_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    payload = payload_of(body(output_format={"type": "json_schema", "schema": schema}))
    assert payload["response_format"]["json_schema"]["schema"] == schema


def test_response_format_can_be_switched_off() -> None:
    schema = {"type": "object"}
    payload = payload_of(
        body(output_config={"format": {"type": "json_schema", "schema": schema}}),
        forward_response_format=False,
    )
    assert "response_format" not in payload


def test_stream_requests_usage() -> None:
    result = translate(body(stream=True))
    assert result.stream is True
    assert result.payload["stream"] is True
    assert result.payload["stream_options"] == {"include_usage": True}


def test_stream_without_include_usage() -> None:
    payload = payload_of(body(stream=True), include_usage=False)
    assert payload["stream"] is True
    assert "stream_options" not in payload


def test_non_streaming_has_no_stream_options() -> None:
    result = translate(body(stream=False))
    assert result.stream is False
    assert "stream_options" not in result.payload
    assert result.payload.get("stream", False) is False


def test_max_tokens_is_not_clamped_without_a_limit() -> None:
    payload = payload_of(body(max_tokens=128000))
    assert payload["max_tokens"] == 128000


def test_max_tokens_is_clamped_to_the_limit() -> None:
    result = translate(body(max_tokens=128000), TranslationOptions(max_tokens_limit=4096))
    assert result.payload["max_tokens"] == 4096


def test_max_tokens_below_the_limit_is_kept() -> None:
    payload = payload_of(body(max_tokens=100), max_tokens_limit=4096)
    assert payload["max_tokens"] == 100


def test_max_completion_tokens_field() -> None:
    payload = payload_of(
        body(max_tokens=128000), max_tokens_field="max_completion_tokens", max_tokens_limit=32000
    )
    assert payload["max_completion_tokens"] == 32000
    assert "max_tokens" not in payload


@pytest.mark.parametrize("model", ["o3-mini", "gpt-5", "o1", "o4-mini", "gpt-5.1-codex"])
def test_reasoning_models_select_max_completion_tokens(model: str) -> None:
    profile = profile_for("https://api.openai.com/v1", model)
    assert profile.max_tokens_field == "max_completion_tokens"
    result = translate_request(
        body(max_tokens=2000),
        upstream_model=model,
        options=profile.options(max_tokens_limit=None),
    )
    assert result.payload["max_completion_tokens"] == 2000
    assert "max_tokens" not in result.payload


@pytest.mark.parametrize(
    ("base", "model"),
    [
        ("https://api.openai.com/v1", "gpt-4o"),
        ("http://localhost:11434/v1", "qwen3:32b"),
        ("https://api.deepseek.com/v1", "deepseek-chat"),
    ],
)
def test_other_models_keep_max_tokens(base: str, model: str) -> None:
    profile = profile_for(base, model)
    assert profile.max_tokens_field == "max_tokens"
    result = translate_request(
        body(max_tokens=2000), upstream_model=model, options=profile.options(max_tokens_limit=None)
    )
    assert result.payload["max_tokens"] == 2000
    assert "max_completion_tokens" not in result.payload


def test_openai_profile_sends_pdfs_as_files_and_local_servers_do_not() -> None:
    # E.2: file parts on OpenAI/OpenRouter; servers without file parts get extracted text.
    assert profile_for("https://api.openai.com/v1", "gpt-4o").pdf_as_file is True
    assert profile_for("https://openrouter.ai/api/v1", "anthropic/claude").pdf_as_file is True
    assert profile_for("http://localhost:8000/v1", "llama").pdf_as_file is False


def test_the_request_body_is_not_mutated() -> None:
    request = body(
        system=[{"type": "text", "text": BILLING}, {"type": "text", "text": "sys"}],
        messages=[
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [tool_use("functions.x:0")]},
            {"role": "user", "content": [tool_result("functions.x:0", [image_block()])]},
        ],
        tools=[{"name": "x", "input_schema": copy.deepcopy(WRITE_SCHEMA)}],
        stream=True,
    )
    snapshot = copy.deepcopy(request)
    translate(request)
    assert request == snapshot


# ------------------------------------------------------------------------------------------
# a realistic Claude Code turn (claude-code-client.md §4.4–4.6)
# ------------------------------------------------------------------------------------------


@pytest.fixture
def claude_code_request() -> dict[str, Any]:
    return json.loads((FIXTURES / "claude_code_request.json").read_text())


def test_realistic_claude_code_request_end_to_end(claude_code_request: dict[str, Any]) -> None:
    original = claude_code_request
    result = translate(copy.deepcopy(original))
    payload = result.payload
    messages = payload["messages"]

    assert result.client_model == original["model"]
    assert result.stream is True
    assert payload["model"] == UPSTREAM_MODEL
    assert payload["stream"] is True
    assert payload["stream_options"] == {"include_usage": True}
    assert payload["max_tokens"] == original["max_tokens"]
    for dropped in ("metadata", "thinking", "context_management", "output_config", "system"):
        assert dropped not in payload
    assert "cache_control" not in json.dumps(payload)

    # One leading system message: no billing header, both real system blocks. The
    # mid-conversation `role: "system"` message stays in place, in the first user turn.
    system_messages = [m for m in messages if m["role"] == "system"]
    assert len(system_messages) == 1
    assert messages[0] is system_messages[0]
    system_text = messages[0]["content"]
    assert "x-anthropic-billing-header" not in system_text
    for block in original["system"][1:]:
        assert block["text"] in system_text
    role_system = next(m for m in original["messages"] if m["role"] == "system")
    assert role_system["content"] not in system_text
    assert f"<system>\n{role_system['content']}\n</system>" in text_of(messages[1]["content"])

    # Tools: the deferred placeholder is gone, the 11 real tools remain with unchanged schemas.
    names = [t["function"]["name"] for t in payload["tools"]]
    assert "DeferredToolPlaceholder" not in names
    assert len(names) == 11
    original_tools = {t["name"]: t for t in original["tools"]}
    for tool in payload["tools"]:
        source = original_tools[tool["function"]["name"]]
        assert tool["function"]["parameters"] == source["input_schema"]
        assert tool["function"]["description"] == source["description"]
    assert "tool_choice" not in payload

    # Conversation: user, assistant(text + Bash call), tool result right after it.
    conversation = non_system(messages)
    assert [m["role"] for m in conversation] == ["user", "assistant", "tool"]
    first_user_text = text_of(conversation[0]["content"])
    for block in original["messages"][0]["content"]:
        assert block["text"].strip() in first_user_text
    assistant = conversation[1]
    original_assistant = original["messages"][2]["content"]
    assert assistant["content"] == original_assistant[0]["text"]
    (call,) = assistant["tool_calls"]
    assert call["function"]["name"] == "Bash"
    assert json.loads(call["function"]["arguments"]) == original_assistant[1]["input"]
    tool = conversation[2]
    assert tool["tool_call_id"] == call["id"]
    original_result = original["messages"][3]["content"][0]
    assert original_result["is_error"] is True
    assert original_result["content"] in tool["content"]
    assert "error" in tool["content"].lower()
