"""How an exchange ended, told truthfully in the access line and in /metrics.

* A client that leaves mid-reply (Esc in Claude Code) is a cancellation: status 499 with
  `cancelled` in the log line, and no error counted (it used to be `overloaded_error`).
* A client that closes right after `message_stop` got the whole reply: status 200, no error
  (it used to be `client_disconnected`).
* With CAPTURE_DIR set, a completed request is not "aborted" while its capture is written,
  and the capture holds the whole reply.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from mock_upstream import MockUpstream, completion, json_response, sse_response, text_chunks
from test_metrics_logs import (
    ACCESS_LOGGER,
    line_for,
    request_id,
    scrape,
    text_fields,
    total,
    wait_for_access_lines,
    wait_for_requests_metric,
    wait_until,
)

if TYPE_CHECKING:
    from conftest import ProxyFactory

BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "hi"}],
}
HEADERS = {"x-api-key": "sk-client-key-1234", "anthropic-version": "2023-06-01"}
ABORTED = "client disconnected: upstream request aborted"


def _errors(proxy_samples: dict) -> float:  # type: ignore[type-arg]
    return total(proxy_samples, "ccp_errors_total")


def test_esc_mid_stream_is_a_cancellation_not_an_error(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    proxy = proxy_factory()
    mock_upstream.enqueue(sse_response(text_chunks(["a", "b", "c", "d"]), delay=0.5))
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST", proxy.url("/v1/messages"), json={**BODY, "stream": True}, headers=HEADERS
        ) as reply,
    ):
        rid = request_id(reply)
        for line in reply.iter_lines():
            if "text_delta" in line:
                break  # Esc: the client leaves with the reply half done
    mock_upstream.wait_for(lambda m: m.last_request.client_disconnected, timeout=10)
    fields = text_fields(line_for(wait_for_access_lines(caplog, [rid]), rid).getMessage())
    assert fields["status"] == "499" and fields["cancelled"] == "True", fields
    assert "error" not in fields, fields
    samples = wait_for_requests_metric(proxy, 1, status="499")
    assert _errors(samples) == 0
    assert total(samples, "ccp_requests_total", status="200") == 0


def test_esc_before_the_reply_is_a_cancellation(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    proxy = proxy_factory()
    mock_upstream.enqueue(json_response(completion("late"), hang_before_headers=30))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(proxy.url("/v1/messages"), json=BODY, headers=HEADERS, timeout=1.0)
    mock_upstream.wait_for(lambda m: m.last_request.client_disconnected, timeout=10)
    samples = wait_for_requests_metric(proxy, 1, status="499")
    assert _errors(samples) == 0
    (record,) = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    fields = text_fields(record.getMessage())
    assert fields["status"] == "499" and fields["cancelled"] == "True"


def test_closing_right_after_message_stop_is_a_success(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """The upstream holds its connection open after [DONE]; the proxy drains it for a moment
    after message_stop, and the client closes in that moment."""
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    proxy = proxy_factory()
    chunks = text_chunks(["all", " of it"], usage=(10, 3))
    mock_upstream.enqueue(sse_response(chunks, done=True, keep_open_after_end=3))
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST", proxy.url("/v1/messages"), json={**BODY, "stream": True}, headers=HEADERS
        ) as reply,
    ):
        rid = request_id(reply)
        for line in reply.iter_lines():
            if "message_stop" in line:
                break  # the whole reply is here: close at once
    fields = text_fields(line_for(wait_for_access_lines(caplog, [rid]), rid).getMessage())
    assert fields["status"] == "200" and fields["stop_reason"] == "end_turn", fields
    assert "error" not in fields and "cancelled" not in fields, fields
    samples = wait_for_requests_metric(proxy, 1, status="200")
    assert _errors(samples) == 0
    assert total(samples, "ccp_requests_total", status="499") == 0


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_capture_of_a_completed_request_is_not_aborted(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    stream: bool,
) -> None:
    caplog.set_level(logging.INFO)
    captures = tmp_path / "captures"
    proxy = proxy_factory(CAPTURE_DIR=str(captures))
    for _ in range(3):
        if stream:
            mock_upstream.enqueue(sse_response(text_chunks(["captured"], usage=(5, 1))))
        else:
            mock_upstream.enqueue(json_response(completion("captured")))
    ids = []
    for _ in range(3):
        reply = httpx.post(
            proxy.url("/v1/messages"), json={**BODY, "stream": stream}, headers=HEADERS, timeout=30
        )
        assert reply.status_code == 200
        ids.append(request_id(reply))

    def written() -> bool:
        return all((captures / rid / "4-client-response.txt").is_file() for rid in ids)

    wait_until(written, "three captures")
    wait_for_access_lines(caplog, ids)
    assert not [r for r in caplog.records if ABORTED in r.getMessage()]
    for rid in ids:
        folder = captures / rid
        names = sorted(p.name for p in folder.iterdir())
        assert names == [
            "1-client-request.json",
            "2-upstream-request.json",
            "3-upstream-response.txt",
            "4-client-response.txt",
        ]
        reply_text = (folder / "4-client-response.txt").read_text()
        assert ("message_stop" in reply_text) if stream else ('"end_turn"' in reply_text)
    assert _errors(scrape(proxy)) == 0
