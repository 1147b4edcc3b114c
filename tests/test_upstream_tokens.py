"""count_tokens with the upstream's own tokenizer (llama.cpp, vLLM), and the fallback."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx

from claude_code_proxy.tokens import count_request_tokens
from mock_upstream import MODELS_PATH, MockUpstream, error_response, json_response
from test_windows import LLAMA_PROPS

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyHandle

HEADERS = {"x-api-key": "sk-ant-client", "anthropic-version": "2023-06-01"}
BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "system": "You are terse.",
    "messages": [{"role": "user", "content": "Count these words please"}],
    "tools": [
        {
            "name": "Read",
            "description": "Read a file",
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
        }
    ],
}


def discovered(proxy: ProxyHandle) -> None:
    windows = proxy.app.state.proxy.windows
    deadline = time.monotonic() + 20
    while not windows.refreshed.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)


def count(proxy: ProxyHandle) -> int:
    resp = httpx.post(proxy.url("/v1/messages/count_tokens"), json=BODY, headers=HEADERS)
    assert resp.status_code == 200, resp.text
    return int(resp.json()["input_tokens"])


def test_llama_cpp_renders_the_template_and_tokenizes(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(json_response(LLAMA_PROPS), path="/props")
    proxy = proxy_factory(CONTEXT_DISCOVERY="true")
    discovered(proxy)
    assert proxy.app.state.proxy.windows.server == "llama.cpp"

    def template(body: Any) -> Any:
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert body["tools"][0]["function"]["name"] == "Read"
        return json_response({"prompt": "<s> " + " ".join(m["content"] for m in body["messages"])})

    mock_upstream.enqueue(template, path="/apply-template")
    mock_upstream.enqueue(
        lambda body: json_response({"tokens": list(range(len(body["content"].split())))}),
        path="/tokenize",
    )
    assert count(proxy) == 8  # "<s>", 3 system words, 4 user words
    # The server stops answering: the offline count, and no new attempt for a while.
    mock_upstream.enqueue(error_response(500, "boom"), path="/apply-template")
    assert count(proxy) == count_request_tokens(BODY)
    assert count(proxy) == count_request_tokens(BODY)
    assert len([r for r in mock_upstream.requests if r.path == "/apply-template"]) == 2


def test_vllm_counts_chat_messages(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    listing = {"data": [{"id": "gpt-middle", "owned_by": "vllm", "max_model_len": 65536}]}
    mock_upstream.enqueue(json_response(listing), path=MODELS_PATH)
    proxy = proxy_factory(CONTEXT_DISCOVERY="true")
    discovered(proxy)
    mock_upstream.enqueue(json_response({"count": 4321, "max_model_len": 65536}), path="/tokenize")
    assert count(proxy) == 4321
    sent = next(r for r in mock_upstream.requests if r.path == "/tokenize").json
    assert sent["model"] == "gpt-middle" and sent["add_generation_prompt"] is True
    assert sent["messages"][-1]["content"] == "Count these words please"


def test_other_servers_are_not_asked(proxy: ProxyHandle, mock_upstream: MockUpstream) -> None:
    assert count(proxy) == count_request_tokens(BODY)
    assert mock_upstream.requests == []
