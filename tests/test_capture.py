"""Opt-in debug capture (``CAPTURE_DIR``): four phases per request, redacted, bounded.

Integration tests run the proxy with ``CAPTURE_DIR`` under ``tmp_path`` and compare the files
with what the client sent and received and with what the mock upstream received and sent.
Size caps and pruning are unit-tested on ``Capture`` directly.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from claude_code_proxy.capture import Capture
from mock_upstream import (
    MockUpstream,
    completion,
    error_response,
    json_response,
    sse_response,
    text_chunks,
)
from sse_validator import (
    validate_anthropic_error,
    validate_anthropic_message,
    validate_anthropic_stream,
)

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyHandle

TIMEOUT = httpx.Timeout(30.0, connect=5.0)
PHASES = (
    "1-client-request.json",
    "2-upstream-request.json",
    "3-upstream-response.txt",
    "4-client-response.txt",
)
CLIENT_REQUEST, UPSTREAM_REQUEST, UPSTREAM_RESPONSE, CLIENT_RESPONSE = PHASES
MIDDLE = "gpt-middle"


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def body(*, stream: bool = False, text: str = "Say hello", **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }
    if stream:
        payload["stream"] = True
    return payload


def post(
    proxy: ProxyHandle,
    payload: Any = None,
    *,
    key: str | None = "sk-ant-client-0001",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    hdrs = {"anthropic-version": "2023-06-01", **(headers or {})}
    if key is not None:
        hdrs["x-api-key"] = key
    url = proxy.url("/v1/messages")
    if isinstance(payload, bytes):
        hdrs["content-type"] = "application/json"
        return httpx.post(url, content=payload, headers=hdrs, timeout=TIMEOUT)
    return httpx.post(
        url, json=body() if payload is None else payload, headers=hdrs, timeout=TIMEOUT
    )


def request_id(resp: httpx.Response) -> str:
    rid = resp.headers.get("request-id")
    assert rid is not None and rid.startswith("req_"), resp.headers
    return rid


def wait_for_capture(folder: Path, expected: set[str], timeout: float = 10.0) -> dict[str, bytes]:
    """Wait until ``folder`` holds the expected phase files, completely written."""
    deadline = time.monotonic() + timeout
    previous: dict[str, int] | None = None
    while True:
        names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
        if expected <= names:
            sizes = {name: (folder / name).stat().st_size for name in names}
            if sizes == previous:
                return {name: (folder / name).read_bytes() for name in names}
            previous = sizes
        if time.monotonic() > deadline:
            raise AssertionError(f"capture {folder} has {sorted(names)}, expected {expected}")
        time.sleep(0.05)


def mock_sse_bytes(chunks: list[Any]) -> bytes:
    """The body the mock upstream writes for ``sse_response(chunks)``."""
    out = b""
    for item in chunks:
        if isinstance(item, bytes):
            out += item
        elif isinstance(item, str):
            out += item.encode()
        else:
            out += b"data: " + json.dumps(item, ensure_ascii=False).encode() + b"\n\n"
    return out + b"data: [DONE]\n\n"


def all_capture_bytes(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def assert_no_secret(directory: Path, secrets: list[str]) -> None:
    files = all_capture_bytes(directory)
    assert files, f"nothing captured in {directory}"
    leaks = [
        (name, secret)
        for name, data in files.items()
        for secret in secrets
        if secret.encode() in data
    ]
    assert not leaks, f"secrets left in capture files: {leaks}"


# ------------------------------------------------------------------------------------------
# off by default
# ------------------------------------------------------------------------------------------


def test_capture_is_off_by_default(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    proxy = proxy_factory()
    assert proxy.app.state.proxy.capture is None
    validate_anthropic_stream(post(proxy, body(stream=True)).content, expect_error=False)
    validate_anthropic_message(post(proxy).content)
    assert post(proxy, b"{broken").status_code == 400
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------
# the four phases
# ------------------------------------------------------------------------------------------


def test_stream_capture_has_the_four_phases(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    directory = tmp_path / "captures"
    proxy = proxy_factory(CAPTURE_DIR=str(directory))
    chunks = text_chunks(["Hello", " there"], model=MIDDLE, usage=(12, 3))
    mock_upstream.enqueue(sse_response(chunks))
    sent = body(stream=True, text="What is up?")
    resp = post(proxy, sent)
    stream = validate_anthropic_stream(resp.content, expect_error=False)
    assert stream.text == "Hello there"
    rid = request_id(resp)
    files = wait_for_capture(directory / rid, set(PHASES))
    assert set(files) == set(PHASES)
    assert [p.name for p in directory.iterdir()] == [rid]

    client_request = json.loads(files[CLIENT_REQUEST])
    assert client_request["body"] == sent
    headers = {k.lower(): v for k, v in client_request["headers"].items()}
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["x-api-key"] != "sk-ant-client-0001"

    upstream_request = json.loads(files[UPSTREAM_REQUEST])
    assert upstream_request["body"] == mock_upstream.chat_requests[0].json

    assert files[UPSTREAM_RESPONSE] == mock_sse_bytes(chunks)
    assert files[CLIENT_RESPONSE] == resp.content
    validate_anthropic_stream(files[CLIENT_RESPONSE], expect_error=False)


def test_non_stream_capture_has_the_four_phases(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    directory = tmp_path / "captures"
    proxy = proxy_factory(CAPTURE_DIR=str(directory))
    answer = completion("Plain answer", model=MIDDLE, usage=(20, 4))
    mock_upstream.enqueue(json_response(answer))
    sent = body(system="Be brief.", temperature=0.5)
    resp = post(proxy, sent)
    message = validate_anthropic_message(resp.content)
    files = wait_for_capture(directory / request_id(resp), set(PHASES))
    assert json.loads(files[CLIENT_REQUEST])["body"] == sent
    assert json.loads(files[UPSTREAM_REQUEST])["body"] == mock_upstream.chat_requests[0].json
    assert json.loads(files[UPSTREAM_RESPONSE]) == answer
    assert json.loads(files[CLIENT_RESPONSE]) == message


def test_one_folder_per_request(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    directory = tmp_path / "captures"
    proxy = proxy_factory(CAPTURE_DIR=str(directory))
    rids = [
        request_id(post(proxy, body(stream=i % 2 == 0, text=f"question {i}"))) for i in range(4)
    ]
    for i, rid in enumerate(rids):
        files = wait_for_capture(directory / rid, set(PHASES))
        assert (
            json.loads(files[CLIENT_REQUEST])["body"]["messages"][0]["content"] == f"question {i}"
        )
    assert sorted(p.name for p in directory.iterdir()) == sorted(rids)


def test_rejected_request_captures_what_there_is(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    directory = tmp_path / "captures"
    proxy = proxy_factory(CAPTURE_DIR=str(directory))
    resp = post(proxy, b'{"model": "claude-sonnet-4-5", "messages": [')
    assert resp.status_code == 400
    files = wait_for_capture(directory / request_id(resp), {CLIENT_REQUEST, CLIENT_RESPONSE})
    assert set(files) == {CLIENT_REQUEST, CLIENT_RESPONSE}
    assert "messages" in json.loads(files[CLIENT_REQUEST])["body"]
    validate_anthropic_error(files[CLIENT_RESPONSE], error_type="invalid_request_error")
    assert mock_upstream.requests == []


def test_upstream_error_response_is_captured(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    """For "why did my request break?" the upstream's own error body is the answer."""
    directory = tmp_path / "captures"
    proxy = proxy_factory(CAPTURE_DIR=str(directory))
    mock_upstream.enqueue(
        error_response(400, "Unsupported value: 'frobnicate' (upstream says)", code="bad_value")
    )
    resp = post(proxy, body(stream=True))
    assert resp.status_code == 400, resp.text
    files = wait_for_capture(directory / request_id(resp), {CLIENT_REQUEST, CLIENT_RESPONSE})
    validate_anthropic_error(files[CLIENT_RESPONSE], status=400)
    assert json.loads(files[UPSTREAM_REQUEST])["body"] == mock_upstream.chat_requests[0].json
    assert UPSTREAM_RESPONSE in files, f"no upstream response captured: {sorted(files)}"
    assert b"frobnicate" in files[UPSTREAM_RESPONSE]
    assert b"bad_value" in files[UPSTREAM_RESPONSE]


# ------------------------------------------------------------------------------------------
# redaction
# ------------------------------------------------------------------------------------------


def echo_answers(mock: MockUpstream, secrets: list[str]) -> None:
    """The upstream repeats the secrets (as a model asked to would), streamed and not."""
    pieces = ["You said: ", " and ".join(secrets)]  # each secret within one chunk
    mock.enqueue(
        sse_response(text_chunks(pieces, model=MIDDLE, usage=(30, 9))),
        json_response(completion("".join(pieces), model=MIDDLE)),
    )


def secret_body(secrets: list[str], *, stream: bool) -> dict[str, Any]:
    mention = " ".join(secrets)
    return body(
        stream=stream,
        system=f"keys: {mention}",
        text=f"Please remember {mention}",
        metadata={"user_id": f"user {secrets[0]}"},
    )


@pytest.mark.parametrize(
    ("upstream_secret", "client_secret"),
    [
        ("sk-upstream-SECRETVALUE-u1u1u1", "sk-ant-CLIENTSECRET-c2c2c2"),
        ("upstream.SECRETVALUE.u1u1u1", "client.CLIENTSECRET.c2c2c2"),  # not sk-style
    ],
    ids=["sk-style", "other-style"],
)
def test_static_mode_keys_are_redacted_everywhere(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    tmp_path: Path,
    upstream_secret: str,
    client_secret: str,
) -> None:
    directory = tmp_path / "captures"
    proxy = proxy_factory(
        CAPTURE_DIR=str(directory),
        OPENAI_API_KEY=upstream_secret,
        ANTHROPIC_API_KEY=client_secret,
    )
    secrets = [upstream_secret, client_secret]
    echo_answers(mock_upstream, secrets)
    rids = []
    for stream, headers in (
        (True, {"authorization": f"Bearer {client_secret}"}),
        (False, {"cookie": f"session={client_secret}"}),
    ):
        resp = post(proxy, secret_body(secrets, stream=stream), key=client_secret, headers=headers)
        assert resp.status_code == 200, resp.text
        rids.append(request_id(resp))
    # The upstream really got the key and the echoed text reached the client: there was
    # something to redact in every phase.
    assert mock_upstream.chat_requests[0].headers["authorization"] == f"Bearer {upstream_secret}"
    for rid in rids:
        files = wait_for_capture(directory / rid, set(PHASES))
        assert b"[redacted]" in files[CLIENT_REQUEST]
        for phase in PHASES:
            assert b"[redacted]" in files[phase], phase
    assert_no_secret(directory, [*secrets, "SECRETVALUE", "CLIENTSECRET"])


def test_dynamic_mode_client_key_is_redacted_everywhere(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    directory = tmp_path / "captures"
    proxy = proxy_factory(CAPTURE_DIR=str(directory), OPENAI_API_KEY=None, CLIENT_KEY_PATTERN="any")
    key = "ollama.DYNAMICSECRET.d4d4d4"
    echo_answers(mock_upstream, [key])
    rids = []
    for stream in (True, False):
        resp = post(proxy, secret_body([key], stream=stream), key=key)
        assert resp.status_code == 200, resp.text
        rids.append(request_id(resp))
    assert mock_upstream.chat_requests[0].headers["authorization"] == f"Bearer {key}"
    for rid in rids:
        files = wait_for_capture(directory / rid, set(PHASES))
        for phase in PHASES:
            assert b"[redacted]" in files[phase], phase
    assert_no_secret(directory, [key, "DYNAMICSECRET"])


def test_static_mode_client_credential_is_redacted_without_a_proxy_key(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    """Without ANTHROPIC_API_KEY the client's credential is not checked, but it is still the
    client's secret (Claude Code sends the user's key): no capture file may keep it."""
    directory = tmp_path / "captures"
    proxy = proxy_factory(CAPTURE_DIR=str(directory), OPENAI_API_KEY="upstream.SECRETVALUE.u1")
    client_secret = "client.CLIENTSECRET.c2"
    echo_answers(mock_upstream, [client_secret])
    resp = post(proxy, secret_body([client_secret], stream=True), key=client_secret)
    assert resp.status_code == 200, resp.text
    wait_for_capture(directory / request_id(resp), set(PHASES))
    assert_no_secret(directory, [client_secret, "CLIENTSECRET", "upstream.SECRETVALUE.u1"])


async def test_capture_redacts_secret_headers_and_keys_in_bodies(tmp_path: Path) -> None:
    capture = Capture(str(tmp_path), secrets=["proxy.secret.one", ""])
    session = capture.session("req_unit", ["tenant.secret.two"])
    session.add_json(
        "1-client-request",
        {"note": "proxy.secret.one tenant.secret.two sk-proj-AbCdEfGh12345678 rk-live-12345678"},
        {
            "Authorization": "Bearer tenant.secret.two",
            "X-Api-Key": "tenant.secret.two",
            "api-key": "azure-key-value",
            "Proxy-Authorization": "Basic abc",
            "Cookie": "session=xyz",
            "anthropic-version": "2023-06-01",
        },
    )
    session.add("3-upstream-response", b'data: {"text": "proxy.secret.one"}\n\n')
    await session.write()
    folder = tmp_path / "req_unit"
    document = json.loads((folder / CLIENT_REQUEST).read_bytes())
    headers = {k.lower(): v for k, v in document["headers"].items()}
    for name in ("authorization", "x-api-key", "api-key", "proxy-authorization", "cookie"):
        assert headers[name] == "[redacted]", name
    assert headers["anthropic-version"] == "2023-06-01"
    note = document["body"]["note"]
    for secret in ("proxy.secret.one", "tenant.secret.two", "AbCdEfGh12345678", "live-12345678"):
        assert secret not in note
    assert b"proxy.secret.one" not in (folder / UPSTREAM_RESPONSE).read_bytes()
    # Another request's session does not carry this tenant's key but still the proxy's.
    other = capture.session("req_other")
    other.add("3-upstream-response", b"proxy.secret.one")
    await other.write()
    assert (tmp_path / "req_other" / UPSTREAM_RESPONSE).read_bytes() == b"[redacted]"


# ------------------------------------------------------------------------------------------
# bounded in size
# ------------------------------------------------------------------------------------------


TRUNCATION_ALLOWANCE = 64  # room for a "[capture truncated]" note


async def test_each_phase_is_capped(tmp_path: Path) -> None:
    capture = Capture(str(tmp_path), max_phase_bytes=1000)
    session = capture.session("req_big")
    session.add("1-client-request", b"a" * 5000)
    for _ in range(10):
        session.add("3-upstream-response", b"data: " + b"b" * 294 + b"\n\n")
    session.add("4-client-response", b"c" * 999)
    await session.write()
    folder = tmp_path / "req_big"
    first = (folder / CLIENT_REQUEST).read_bytes()
    third = (folder / UPSTREAM_RESPONSE).read_bytes()
    fourth = (folder / CLIENT_RESPONSE).read_bytes()
    assert 1000 <= len(first) <= 1000 + TRUNCATION_ALLOWANCE
    assert first.startswith(b"a" * 1000)
    assert b"truncated" in first
    assert len(third) <= 1000 + TRUNCATION_ALLOWANCE and b"truncated" in third
    assert fourth == b"c" * 999  # under the cap: untouched
    assert not (folder / UPSTREAM_REQUEST).exists()


def test_default_cap_is_bounded(tmp_path: Path) -> None:
    capture = Capture(str(tmp_path))
    assert 0 < capture.max_phase_bytes <= 64 * 1024 * 1024
    assert 0 < capture.max_requests <= 10_000


def test_large_request_is_captured_within_the_cap(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    directory = tmp_path / "captures"
    proxy = proxy_factory(CAPTURE_DIR=str(directory))
    cap = 4096
    proxy.app.state.proxy.capture.max_phase_bytes = cap  # not an env setting: set it here
    huge = "lorem ipsum " * 40_000  # ~480 KB of prompt
    resp = post(proxy, body(stream=True, text=huge))
    validate_anthropic_stream(resp.content, expect_error=False)
    files = wait_for_capture(directory / request_id(resp), set(PHASES))
    for phase in PHASES:
        assert len(files[phase]) <= cap + TRUNCATION_ALLOWANCE, (phase, len(files[phase]))
    assert b"truncated" in files[CLIENT_REQUEST]
    assert b"truncated" in files[UPSTREAM_REQUEST]
    assert len(mock_upstream.chat_requests[0].body) > 400_000  # the upstream got it all


async def test_old_captures_are_pruned(tmp_path: Path) -> None:
    capture = Capture(str(tmp_path), max_requests=3)
    (tmp_path / "notes.txt").write_text("not a capture")
    for i in range(6):
        session = capture.session(f"req_{i}")
        session.add("1-client-request", f'{{"n": {i}}}'.encode())
        await session.write()
        folder = tmp_path / f"req_{i}"
        assert folder.is_dir()
        os.utime(folder, (1_000_000 + i, 1_000_000 + i))  # strictly older than the next one
    folders = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert folders == ["req_3", "req_4", "req_5"]
    assert (tmp_path / "notes.txt").exists()


def test_capture_directory_is_bounded_through_the_proxy(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    directory = tmp_path / "captures"
    proxy = proxy_factory(CAPTURE_DIR=str(directory))
    proxy.app.state.proxy.capture.max_requests = 2
    rids = []
    for i in range(4):
        rid = request_id(post(proxy, body(text=f"q{i}")))
        wait_for_capture(directory / rid, set(PHASES))
        os.utime(directory / rid, (1_000_000 + i, 1_000_000 + i))
        rids.append(rid)
    remaining = sorted(p.name for p in directory.iterdir())
    assert len(remaining) <= 2
    assert rids[-1] in remaining
    assert rids[0] not in remaining and rids[1] not in remaining
