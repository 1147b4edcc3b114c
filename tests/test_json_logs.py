"""LOG_FORMAT=json: every line the process writes to its log stream is one JSON object.

A log shipper reads the whole stream, so the proof runs the real `serve` command in a
subprocess (single worker and `--workers 2`), makes requests, stops it and parses every line
of its stderr: the banner, uvicorn's own lines and access lines, the proxy's access line.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from claude_code_proxy.logs import JsonFormatter
from mock_upstream import MockUpstream, completion, json_response


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_json(mock: MockUpstream, *args: str) -> list[dict[str, Any]]:
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "OPENAI_BASE_URL": mock.base_url,
        "OPENAI_API_KEY": "sk-upstream-test",
        "PORT": str(port),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "SHUTDOWN_GRACE_SECONDS": "2",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_code_proxy", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate(timeout=10)
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the proxy did not answer /health"
            time.sleep(0.1)
        mock.enqueue(json_response(completion("hello")))
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/messages",
            json={
                "model": "claude-sonnet-4-5",
                "max_tokens": 50,
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers={"x-api-key": "any", "anthropic-version": "2023-06-01"},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        assert httpx.get(f"http://127.0.0.1:{port}/nowhere", timeout=5).status_code == 404
        time.sleep(0.5)  # the access lines are written once each exchange is over
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    assert stdout == ""
    lines = [line for line in stderr.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}\n--- all of stderr:\n{stderr}")
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= record.keys(), record
        parsed.append(record)
    return parsed


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one-worker", "two-workers"])
def test_every_log_line_is_json(mock_upstream: MockUpstream, workers: list[str]) -> None:
    records = _serve_json(mock_upstream, *workers)
    loggers = {record["logger"] for record in records}
    # The banner, uvicorn's own lines, both access lines: all present, all JSON.
    assert any(r["message"].startswith("claude-code-proxy ") and "banner" in r for r in records)
    assert "uvicorn.error" in loggers
    http_lines = [r for r in records if r["logger"] == "uvicorn.access"]
    assert {(r["method"], r["path"], r["status"]) for r in http_lines} >= {
        ("POST", "/v1/messages", 200),
        ("GET", "/nowhere", 404),
    }
    (access,) = [r for r in records if r["logger"] == "claude_code_proxy.access"]
    assert access["endpoint"] == "messages" and access["status"] == 200
    assert access["request_id"].startswith("req_")
    assert "sk-upstream-test" not in json.dumps(records)


def test_formatter_keeps_exceptions_and_plain_messages_on_one_line() -> None:
    formatter = JsonFormatter()
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.LogRecord(
            "claude_code_proxy.app", logging.ERROR, __file__, 1, "failed %s", ("here",), None
        )
        record.exc_info = sys.exc_info()
    line = formatter.format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "failed here" and data["level"] == "ERROR"
    assert "ValueError: boom" in data["exception"]
