"""Tests for the fake OpenAI upstream: every scripted behaviour must really happen on the wire.

Proxy tests rely on these behaviours (a stall, a mid-body drop, a split UTF-8 character) to
exercise the proxy's error paths, so each one is checked here with real HTTP clients.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import aiohttp
import httpx
import pytest

from mock_upstream import (
    CHAT_PATH,
    MockUpstream,
    chunk,
    completion,
    disconnect,
    error_body,
    error_response,
    json_response,
    make_usage,
    raw_response,
    reasoning_chunks,
    sse_response,
    text_chunks,
    tool_call_chunks,
    usage_chunk,
)
from sse_validator import iter_sse_records

CHAT_BODY: dict[str, Any] = {
    "model": "gpt-big",
    "messages": [{"role": "user", "content": "hi"}],
}
STREAM_BODY: dict[str, Any] = {**CHAT_BODY, "stream": True}


def chat_url(mock: MockUpstream) -> str:
    return mock.base_url + "/chat/completions"


def sse_payloads(raw: bytes) -> list[Any]:
    """Decode an OpenAI SSE body into JSON objects, keeping ``[DONE]`` as the string."""
    out: list[Any] = []
    for rec in iter_sse_records(raw):
        out.append(rec.data if rec.data == "[DONE]" else json.loads(rec.data))
    return out


# --------------------------------------------------------------------------------------------
# Lifecycle, recording, routing
# --------------------------------------------------------------------------------------------


class TestBasics:
    def test_base_url_and_default_json_response(self, mock_upstream: MockUpstream) -> None:
        assert mock_upstream.base_url.startswith("http://127.0.0.1:")
        assert mock_upstream.base_url.endswith("/v1")
        r = httpx.post(
            chat_url(mock_upstream),
            json=CHAT_BODY,
            params={"api-version": "2024-10-21"},
            headers={"Authorization": "Bearer sk-test", "X-Custom": "1"},
        )
        assert r.status_code == 200
        body = r.json()
        assert body["object"] == "chat.completion"
        assert body["model"] == "gpt-big"  # default responder echoes the model
        assert body["choices"][0]["message"]["content"] == "Hello from mock"
        req = mock_upstream.last_request
        assert req.method == "POST"
        assert req.path == CHAT_PATH
        assert req.query == {"api-version": "2024-10-21"}
        assert req.headers["authorization"] == "Bearer sk-test"
        assert req.headers["x-custom"] == "1"
        assert req.json == CHAT_BODY
        assert json.loads(req.body) == CHAT_BODY
        assert req.finished and not req.client_disconnected
        assert mock_upstream.chat_requests == [req]

    def test_default_stream_response_with_usage(self, mock_upstream: MockUpstream) -> None:
        body = {**STREAM_BODY, "stream_options": {"include_usage": True}}
        r = httpx.post(chat_url(mock_upstream), json=body)
        assert r.headers["content-type"].startswith("text/event-stream")
        payloads = sse_payloads(r.content)
        assert payloads[-1] == "[DONE]"
        text = "".join(
            p["choices"][0]["delta"].get("content") or "" for p in payloads[:-1] if p["choices"]
        )
        assert text == "Hello from mock"
        assert payloads[-2]["choices"] == []
        assert payloads[-2]["usage"]["prompt_tokens"] == 10

    def test_non_json_body_is_recorded(self, mock_upstream: MockUpstream) -> None:
        mock_upstream.enqueue(json_response({"ok": True}))
        r = httpx.post(chat_url(mock_upstream), content=b"not json")
        assert r.json() == {"ok": True}
        assert mock_upstream.last_request.json is None
        assert mock_upstream.last_request.body == b"not json"

    def test_enqueue_is_fifo_then_falls_back_to_responder(
        self, mock_upstream: MockUpstream
    ) -> None:
        mock_upstream.enqueue(json_response({"n": 1}), json_response({"n": 2}, status=201))
        mock_upstream.enqueue(lambda body: json_response({"echo": body["model"]}))
        assert mock_upstream.pending() == 3
        with httpx.Client() as client:
            results = [client.post(chat_url(mock_upstream), json=CHAT_BODY) for _ in range(4)]
        assert [r.status_code for r in results] == [200, 201, 200, 200]
        assert results[0].json() == {"n": 1}
        assert results[1].json() == {"n": 2}
        assert results[2].json() == {"echo": "gpt-big"}
        assert results[3].json()["object"] == "chat.completion"
        assert mock_upstream.pending() == 0

    def test_custom_responder(self) -> None:
        def responder(body: Any) -> Any:
            return json_response(completion(f"you said {body['messages'][0]['content']}"))

        with MockUpstream(responder) as mock:
            r = httpx.post(chat_url(mock), json=CHAT_BODY)
        assert r.json()["choices"][0]["message"]["content"] == "you said hi"

    def test_json_response_status_and_headers(self, mock_upstream: MockUpstream) -> None:
        headers = {"retry-after": "7", "x-request-id": "req-1"}
        mock_upstream.enqueue(
            error_response(
                429, "Rate limit reached", "requests", code="rate_limit_exceeded", headers=headers
            )
        )
        r = httpx.post(chat_url(mock_upstream), json=CHAT_BODY)
        assert r.status_code == 429
        assert r.headers["retry-after"] == "7"
        assert r.headers["x-request-id"] == "req-1"
        assert r.headers["content-type"].startswith("application/json")
        assert r.json() == error_body("Rate limit reached", "requests", code="rate_limit_exceeded")

    def test_raw_html_502(self, mock_upstream: MockUpstream) -> None:
        html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        mock_upstream.enqueue(raw_response(502, html))
        r = httpx.post(chat_url(mock_upstream), json=CHAT_BODY)
        assert r.status_code == 502
        assert r.headers["content-type"].startswith("text/html")
        assert r.content == html

    def test_models_endpoint_configurable(self, mock_upstream: MockUpstream) -> None:
        r = httpx.get(mock_upstream.base_url + "/models")
        assert [m["id"] for m in r.json()["data"]] == ["gpt-big", "gpt-middle", "gpt-small"]
        assert r.json()["object"] == "list"
        mock_upstream.models = ["only-one"]
        assert httpx.get(mock_upstream.url("/v1/models")).json()["data"][0]["id"] == "only-one"
        mock_upstream.enqueue(error_response(401, "bad key"), path="/v1/models")
        assert httpx.get(mock_upstream.url("/v1/models")).status_code == 401
        assert httpx.get(mock_upstream.url("/v1/models")).status_code == 200

    def test_unknown_path_is_404_and_enqueue_for_other_paths(
        self, mock_upstream: MockUpstream
    ) -> None:
        r = httpx.post(mock_upstream.url("/v1/responses"), json={})
        assert r.status_code == 404
        assert "no route" in r.json()["error"]["message"]
        mock_upstream.enqueue(json_response({"id": "resp_1"}), path="/v1/responses")
        assert httpx.post(mock_upstream.url("/v1/responses"), json={}).json() == {"id": "resp_1"}

    def test_reset_and_wait_for_requests(self, mock_upstream: MockUpstream) -> None:
        mock_upstream.enqueue(json_response({}))
        mock_upstream.reset()
        assert mock_upstream.pending() == 0

        def later() -> None:
            time.sleep(0.1)
            httpx.post(chat_url(mock_upstream), json=CHAT_BODY)

        t = threading.Thread(target=later)
        t.start()
        assert len(mock_upstream.wait_for_requests(1, timeout=5)) == 1
        t.join()
        with pytest.raises(AssertionError, match="expected 2 upstream"):
            mock_upstream.wait_for_requests(2, timeout=0.1)

    def test_last_request_without_requests(self, mock_upstream: MockUpstream) -> None:
        with pytest.raises(AssertionError, match="no request"):
            _ = mock_upstream.last_request

    def test_start_stop_idempotent_and_restart_refused(self) -> None:
        mock = MockUpstream().start()
        with pytest.raises(RuntimeError):
            mock.start()
        mock.stop()
        mock.stop()
        with pytest.raises(httpx.ConnectError):
            httpx.post(chat_url(mock), json=CHAT_BODY, timeout=1)


# --------------------------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------------------------


class TestConnections:
    def test_keep_alive_reuses_one_connection(self, mock_upstream: MockUpstream) -> None:
        with httpx.Client() as client:
            for _ in range(3):
                client.post(chat_url(mock_upstream), json=CHAT_BODY)
        assert mock_upstream.connections_opened == 1
        assert {r.connection for r in mock_upstream.requests} == {1}

    def test_new_clients_open_new_connections(self, mock_upstream: MockUpstream) -> None:
        for _ in range(3):
            httpx.post(chat_url(mock_upstream), json=CHAT_BODY)
        assert mock_upstream.connections_opened == 3
        assert [r.connection for r in mock_upstream.requests] == [1, 2, 3]

    async def test_connections_active_and_aiohttp_pool(self, mock_upstream: MockUpstream) -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.post(chat_url(mock_upstream), json=CHAT_BODY) as r:
                    await r.read()
            assert mock_upstream.connections_active == 1
        assert mock_upstream.connections_opened == 1
        await asyncio.to_thread(mock_upstream.wait_for, lambda m: m.connections_active == 0)


# --------------------------------------------------------------------------------------------
# SSE behaviours
# --------------------------------------------------------------------------------------------


class TestSSE:
    def test_dict_chunks_and_done(self, mock_upstream: MockUpstream) -> None:
        chunks = text_chunks(["Hel", "lo"], usage=(12, 2))
        mock_upstream.enqueue(sse_response(chunks))
        r = httpx.post(chat_url(mock_upstream), json=STREAM_BODY)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert sse_payloads(r.content) == [*chunks, "[DONE]"]
        assert r.content.count(b"data: ") == len(chunks) + 1

    def test_done_false(self, mock_upstream: MockUpstream) -> None:
        mock_upstream.enqueue(sse_response(text_chunks(["x"]), done=False))
        r = httpx.post(chat_url(mock_upstream), json=STREAM_BODY)
        assert b"[DONE]" not in r.content

    def test_raw_chunks_written_verbatim(self, mock_upstream: MockUpstream) -> None:
        raw_parts: list[Any] = [
            ": OPENROUTER PROCESSING\n\n",
            b'data: {"a": 1}\r\n\r\n',
            "data: {not json}\n\n",
            chunk({"content": "é"}),
        ]
        mock_upstream.enqueue(sse_response(raw_parts, done=False))
        r = httpx.post(chat_url(mock_upstream), json=STREAM_BODY)
        expected = (
            b": OPENROUTER PROCESSING\n\n"
            b'data: {"a": 1}\r\n\r\n'
            b"data: {not json}\n\n"
            b"data: " + json.dumps(chunk({"content": "é"}), ensure_ascii=False).encode() + b"\n\n"
        )
        assert r.content == expected
        assert "é".encode() in r.content  # not \u-escaped: multi-byte on the wire

    async def test_multibyte_utf8_split_across_writes(self, mock_upstream: MockUpstream) -> None:
        emoji = "🙂".encode()  # 4 bytes
        parts = [b'data: {"c": "' + emoji[:2], emoji[2:] + b'"}\n\n']
        mock_upstream.enqueue(sse_response(parts, delay=0.1))
        received: list[bytes] = []
        async with (
            aiohttp.ClientSession() as session,
            session.post(chat_url(mock_upstream), json=STREAM_BODY) as r,
        ):
            async for piece in r.content.iter_any():
                received.append(piece)
        whole = b"".join(received)
        assert sse_payloads(whole) == [{"c": "🙂"}, "[DONE]"]
        # The first network read ends in the middle of the character.
        assert received[0].endswith(emoji[:2])
        with pytest.raises(UnicodeDecodeError):
            received[0].decode("utf-8")

    async def test_per_chunk_delay(self, mock_upstream: MockUpstream) -> None:
        mock_upstream.enqueue(sse_response(text_chunks(["a", "b"]), delay=[0, 0.3]))
        stamps: list[float] = []
        async with httpx.AsyncClient() as client:
            t0 = time.monotonic()
            async with client.stream("POST", chat_url(mock_upstream), json=STREAM_BODY) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        stamps.append(time.monotonic() - t0)
        assert len(stamps) == 5  # role, a, b, finish, [DONE]
        assert stamps[0] < 0.25
        assert stamps[1] >= 0.25

    async def test_uniform_delay(self, mock_upstream: MockUpstream) -> None:
        mock_upstream.enqueue(sse_response(text_chunks(["a"]), delay=0.05))
        t0 = time.monotonic()
        async with httpx.AsyncClient() as client:
            r = await client.post(chat_url(mock_upstream), json=STREAM_BODY)
        assert time.monotonic() - t0 >= 0.2  # 3 chunks + [DONE]
        assert sse_payloads(r.content)[-1] == "[DONE]"

    def test_hang_before_headers(self, mock_upstream: MockUpstream) -> None:
        mock_upstream.enqueue(sse_response(text_chunks(["x"]), hang_before_headers=30))
        t0 = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(chat_url(mock_upstream), json=STREAM_BODY, timeout=0.3)
        assert time.monotonic() - t0 < 5
        mock_upstream.wait_for(lambda m: m.last_request.client_disconnected)

    def test_hang_before_headers_on_json(self, mock_upstream: MockUpstream) -> None:
        mock_upstream.enqueue(json_response(completion(), hang_before_headers=0.3))
        t0 = time.monotonic()
        r = httpx.post(chat_url(mock_upstream), json=CHAT_BODY)
        assert r.status_code == 200
        assert time.monotonic() - t0 >= 0.3

    async def test_hang_after(self, mock_upstream: MockUpstream) -> None:
        chunks = text_chunks(["a", "b", "c"])
        mock_upstream.enqueue(sse_response(chunks, hang_after=2))
        got: list[bytes] = []
        timeout = aiohttp.ClientTimeout(sock_read=0.5)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(chat_url(mock_upstream), json=STREAM_BODY) as r,
        ):
            with pytest.raises(asyncio.TimeoutError):
                async for piece in r.content.iter_any():
                    got.append(piece)
        assert sse_payloads(b"".join(got)) == chunks[:2]
        await asyncio.to_thread(
            mock_upstream.wait_for, lambda m: m.last_request.client_disconnected
        )
        assert not mock_upstream.last_request.finished

    def test_hang_after_ends_after_hang_seconds(self, mock_upstream: MockUpstream) -> None:
        chunks = text_chunks(["a"])
        mock_upstream.enqueue(sse_response(chunks, hang_after=1, hang_seconds=0.2))
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(chat_url(mock_upstream), json=STREAM_BODY, timeout=5)

    async def test_drop_after_aiohttp(self, mock_upstream: MockUpstream) -> None:
        chunks = text_chunks(["a", "b", "c"])
        mock_upstream.enqueue(sse_response(chunks, drop_after=2))
        got: list[bytes] = []
        async with (
            aiohttp.ClientSession() as session,
            session.post(chat_url(mock_upstream), json=STREAM_BODY) as r,
        ):
            assert r.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                async for piece in r.content.iter_any():
                    got.append(piece)
        assert sse_payloads(b"".join(got)) == chunks[:2]

    def test_drop_after_httpx(self, mock_upstream: MockUpstream) -> None:
        chunks = text_chunks(["a", "b", "c"])
        mock_upstream.enqueue(sse_response(chunks, drop_after=3))
        got: list[bytes] = []
        with (
            httpx.Client() as client,
            client.stream("POST", chat_url(mock_upstream), json=STREAM_BODY) as r,
            pytest.raises(httpx.RemoteProtocolError),
        ):
            for piece in r.iter_raw():
                got.append(piece)
        assert sse_payloads(b"".join(got)) == chunks[:3]
        assert not mock_upstream.last_request.finished

    def test_drop_after_past_end_drops_before_done(self, mock_upstream: MockUpstream) -> None:
        chunks = text_chunks(["a"])
        mock_upstream.enqueue(sse_response(chunks, drop_after=99))
        got: list[bytes] = []
        with (
            httpx.Client() as client,
            client.stream("POST", chat_url(mock_upstream), json=STREAM_BODY) as r,
            pytest.raises(httpx.RemoteProtocolError),
        ):
            for piece in r.iter_raw():
                got.append(piece)
        assert sse_payloads(b"".join(got)) == chunks

    def test_drop_after_zero_sends_only_headers(self, mock_upstream: MockUpstream) -> None:
        mock_upstream.enqueue(sse_response(text_chunks(["a"]), drop_after=0, status=200))
        with (
            httpx.Client() as client,
            client.stream("POST", chat_url(mock_upstream), json=STREAM_BODY) as r,
        ):
            assert r.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                r.read()

    async def test_keep_open_after_end(self, mock_upstream: MockUpstream) -> None:
        chunks = text_chunks(["a"], usage=(3, 1))
        mock_upstream.enqueue(sse_response(chunks, keep_open_after_end=30))
        got: list[bytes] = []
        timeout = aiohttp.ClientTimeout(sock_read=0.5)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(chat_url(mock_upstream), json=STREAM_BODY) as r,
        ):
            with pytest.raises(asyncio.TimeoutError):
                async for piece in r.content.iter_any():
                    got.append(piece)
        assert sse_payloads(b"".join(got)) == chunks  # everything, but no [DONE]

    def test_keep_open_after_end_then_finishes(self, mock_upstream: MockUpstream) -> None:
        chunks = text_chunks(["a"])
        mock_upstream.enqueue(sse_response(chunks, keep_open_after_end=0.2, done=True))
        t0 = time.monotonic()
        r = httpx.post(chat_url(mock_upstream), json=STREAM_BODY)
        assert time.monotonic() - t0 >= 0.2
        assert sse_payloads(r.content) == [*chunks, "[DONE]"]
        assert mock_upstream.last_request.finished

    def test_sse_error_status_and_headers(self, mock_upstream: MockUpstream) -> None:
        mock_upstream.enqueue(
            sse_response([error_body("boom", "server_error")], status=500, headers={"x-a": "b"})
        )
        r = httpx.post(chat_url(mock_upstream), json=STREAM_BODY)
        assert r.status_code == 500
        assert r.headers["x-a"] == "b"
        assert sse_payloads(r.content)[0]["error"]["message"] == "boom"

    def test_disconnect_before_headers(self, mock_upstream: MockUpstream) -> None:
        mock_upstream.enqueue(disconnect())
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(chat_url(mock_upstream), json=CHAT_BODY)
        assert httpx.post(chat_url(mock_upstream), json=CHAT_BODY).status_code == 200

    def test_client_disconnect_is_recorded(self, mock_upstream: MockUpstream) -> None:
        mock_upstream.enqueue(sse_response(text_chunks(["a", "b"]), delay=0.2))
        with (
            httpx.Client() as client,
            client.stream("POST", chat_url(mock_upstream), json=STREAM_BODY) as r,
        ):
            next(r.iter_raw())
        mock_upstream.wait_for(lambda m: m.last_request.client_disconnected)
        assert not mock_upstream.last_request.finished


# --------------------------------------------------------------------------------------------
# stop() must not be blocked by hanging handlers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        sse_response(text_chunks(["a"]), hang_before_headers=3600),
        sse_response(text_chunks(["a", "b"]), hang_after=1),
        sse_response(text_chunks(["a"]), keep_open_after_end=3600),
        json_response({}, hang_before_headers=3600),
    ],
    ids=["hang_before_headers", "hang_after", "keep_open_after_end", "json_hang"],
)
def test_stop_is_fast_with_hanging_handler(response: Any) -> None:
    mock = MockUpstream().start()
    mock.enqueue(response)
    errors: list[BaseException] = []

    def client() -> None:
        try:
            with httpx.Client(timeout=30) as c:
                c.post(chat_url(mock), json=STREAM_BODY).read()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=client)
    t.start()
    mock.wait_for_requests(1)
    time.sleep(0.2)
    t0 = time.monotonic()
    mock.stop()
    assert time.monotonic() - t0 < 3
    t.join(timeout=5)
    assert not t.is_alive(), "client still blocked after stop()"
    assert not mock.last_request.client_disconnected  # stop() is not a client disconnect


# --------------------------------------------------------------------------------------------
# Body builders
# --------------------------------------------------------------------------------------------


class TestBuilders:
    def test_text_chunks_shape(self) -> None:
        chunks = text_chunks(["a", "b"], model="m", usage=make_usage(9, 2, cached=4))
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert [c["choices"][0]["delta"].get("content") for c in chunks[1:3]] == ["a", "b"]
        assert chunks[3]["choices"][0]["finish_reason"] == "stop"
        assert chunks[3]["choices"][0]["delta"] == {}
        assert chunks[4]["choices"] == []
        assert chunks[4]["usage"]["prompt_tokens_details"]["cached_tokens"] == 4
        assert all(c["model"] == "m" and c["object"] == "chat.completion.chunk" for c in chunks)
        assert all(c["usage"] is None for c in chunks[:4])

    def test_text_chunks_without_finish_or_role(self) -> None:
        chunks = text_chunks(["a"], finish_reason=None, role=False)
        assert len(chunks) == 1
        assert chunks[0]["choices"][0]["finish_reason"] is None

    def test_usage_chunk_and_make_usage(self) -> None:
        c = usage_chunk(100, 20, cached=60, reasoning=5)
        assert c["choices"] == []
        assert c["usage"] == {
            "prompt_tokens": 100,
            "completion_tokens": 20,
            "total_tokens": 120,
            "prompt_tokens_details": {"cached_tokens": 60},
            "completion_tokens_details": {"reasoning_tokens": 5},
        }

    def test_reasoning_chunks(self) -> None:
        chunks = reasoning_chunks(["think", "ing"], field="reasoning", role=False)
        assert [c["choices"][0]["delta"] for c in chunks] == [
            {"reasoning": "think"},
            {"reasoning": "ing"},
        ]

    @staticmethod
    def _reassemble(chunks: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
        calls: dict[int, dict[str, str]] = {}
        for c in chunks:
            for choice in c["choices"]:
                for tc in choice["delta"].get("tool_calls") or []:
                    entry = calls.setdefault(tc["index"], {"id": "", "name": "", "args": ""})
                    entry["id"] += tc.get("id", "")
                    entry["name"] += tc.get("function", {}).get("name", "")
                    entry["args"] += tc.get("function", {}).get("arguments", "")
        return calls

    def test_tool_call_chunks_openai_style(self) -> None:
        chunks = tool_call_chunks(
            [
                {"name": "get_weather", "arguments": {"city": "Oslo"}, "id": "call_A"},
                {"name": "noop", "arguments": ""},
            ],
            fragment_size=4,
            usage=(10, 5),
        )
        calls = self._reassemble(chunks)
        assert calls[0] == {"id": "call_A", "name": "get_weather", "args": '{"city": "Oslo"}'}
        assert calls[1] == {"id": "call_1", "name": "noop", "args": ""}
        header = chunks[1]["choices"][0]["delta"]["tool_calls"][0]
        assert header == {
            "index": 0,
            "id": "call_A",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        }
        assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
        assert chunks[-1]["choices"] == []
        frags = [
            c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks[2:7]
        ]
        assert all(len(f) <= 4 for f in frags)

    def test_tool_call_chunks_explicit_fragments_interleaved(self) -> None:
        chunks = tool_call_chunks(
            [
                {"name": "a", "fragments": ['{"x"', ": 1}"]},
                {"name": "b", "fragments": ['{"y"', ": 2}"]},
            ],
            interleave=True,
            role=False,
            finish_reason=None,
        )
        order = [c["choices"][0]["delta"]["tool_calls"][0]["index"] for c in chunks]
        assert order == [0, 1, 0, 1, 0, 1]
        calls = self._reassemble(chunks)
        assert calls[0]["args"] == '{"x": 1}'
        assert calls[1]["args"] == '{"y": 2}'

    def test_tool_call_chunks_inline_and_gemini_style(self) -> None:
        chunks = tool_call_chunks(
            [{"name": "f", "arguments": '{"k": 1}', "id": None, "index": None}],
            inline_arguments=True,
            role=False,
        )
        tc = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
        assert tc == {"type": "function", "function": {"name": "f", "arguments": '{"k": 1}'}}

    def test_completion(self) -> None:
        body = completion(
            None,
            tool_calls=[{"name": "f", "arguments": {"a": 1}}],
            reasoning_content="why",
            usage=(7, 3, 2),
        )
        choice = body["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        assert choice["message"]["content"] is None
        assert choice["message"]["reasoning_content"] == "why"
        assert choice["message"]["tool_calls"] == [
            {"id": "call_0", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
        ]
        assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 2
        assert completion("x", usage=None).get("usage") is None
        assert completion("x")["choices"][0]["finish_reason"] == "stop"

    def test_chunk_extra_fields(self) -> None:
        c = chunk({"content": "x"}, finish_reason="stop", obfuscation="pad")
        assert c["obfuscation"] == "pad"
        assert c["choices"][0]["finish_reason"] == "stop"
