"""End to end with a configuration file: opus/sonnet on one provider, haiku on another.

The real Claude Code CLI -> the proxy (serving `claude-code-proxy.toml`) -> two scripted
OpenAI upstreams. The main loop must reach only the `main` provider, `--model haiku` and
Claude Code's own haiku-tier requests (the session title) only the `small` one, each with
that provider's key, and every answer must come back as with a single upstream.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from .background import ConnectSink
from .harness import (
    BIG,
    MIDDLE,
    SMALL,
    UPSTREAM_KEY,
    CliRun,
    Stack,
    install_cli,
    proxy_env,
    run_proxy,
)
from .scripted_upstream import ScriptedUpstream

pytestmark = pytest.mark.e2e

LABELS = ("latest", "default")
SMALL_KEY = "sk-small-provider-key"
CONFIG = """
[providers.main]
base_url = "{main}"
api_key_env = "OPENAI_API_KEY"

[providers.small]
base_url = "{small}"
api_key = "{small_key}"

[routes]
opus = "main/{big}"
sonnet = "main/{middle}"
haiku = "small/{small_model}"
default = "main/{big}"
"""


@pytest.fixture(scope="module", params=LABELS)
def routed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, ScriptedUpstream]]:
    label: str = request.param
    binary = install_cli(label)
    root = tmp_path_factory.mktemp(f"routed-{label}")
    with ScriptedUpstream() as main, ScriptedUpstream() as small:
        config = root / "claude-code-proxy.toml"
        config.write_text(
            CONFIG.format(
                main=main.base_url,
                small=small.base_url,
                small_key=SMALL_KEY,
                big=BIG,
                middle=MIDDLE,
                small_model=SMALL,
            )
        )
        # No OPENAI_BASE_URL or *_MODEL: the file alone decides where requests go.
        env = proxy_env(
            "http://127.0.0.1:9/v1",
            OPENAI_BASE_URL=None,
            BIG_MODEL=None,
            MIDDLE_MODEL=None,
            SMALL_MODEL=None,
            CLAUDE_CODE_PROXY_CONFIG=str(config),
        )
        with run_proxy(env, root) as proxy:
            yield Stack(label, binary, main, proxy), small


def chat_models(upstream: ScriptedUpstream, start: int) -> list[str]:
    return [str(r.body.get("model")) for r in upstream.requests[start:] if r.is_chat]


def auth(upstream: ScriptedUpstream, start: int) -> set[str | None]:
    return {r.headers.get("Authorization") for r in upstream.requests[start:] if r.is_chat}


def write(stack: Stack, tmp_path: Path, **kwargs: object) -> CliRun:
    return stack.run("write", "create a file hello.txt containing hi", tmp_path, **kwargs)  # type: ignore[arg-type]


def test_main_loop_goes_to_the_main_provider(
    routed: tuple[Stack, ScriptedUpstream], tmp_path: Path
) -> None:
    stack, small = routed
    before = len(small.requests)
    run = write(stack, tmp_path)
    run.assert_clean()
    run.assert_success(turns=2, result="done")
    run.assert_file("hello.txt", "hi")
    assert {str(b.get("model")) for b in run.chat} <= {BIG, MIDDLE}, run.context()
    assert {r.headers.get("Authorization") for r in run.upstream if r.is_chat} == {
        f"Bearer {UPSTREAM_KEY}"
    }, run.context()
    assert chat_models(small, before) == [], small.describe(before)
    assert "provider=main" in run.proxy_log and "route=" in run.proxy_log, run.proxy_log


def test_haiku_goes_to_the_small_provider(
    routed: tuple[Stack, ScriptedUpstream], tmp_path: Path
) -> None:
    stack, small = routed
    small.reset()
    before = len(small.requests)
    run = write(stack, tmp_path, args=["--model", "haiku"], name="routed-haiku")
    run.assert_clean()
    run.assert_success(turns=2, result="done")
    run.assert_file("hello.txt", "hi")
    assert run.chat == [], run.context()  # nothing reached the main provider
    assert chat_models(small, before) == [SMALL, SMALL], small.describe(before)
    assert auth(small, before) == {f"Bearer {SMALL_KEY}"}
    assert "route=haiku" in run.proxy_log and "provider=small" in run.proxy_log


def test_every_request_lands_on_its_tiers_provider(
    routed: tuple[Stack, ScriptedUpstream], tmp_path: Path
) -> None:
    """With nonessential traffic on, Claude Code also sends background requests (the session
    title; haiku-tier in some versions, the main model in others): each access line's
    provider is the one the route of its model id names, and the answers all succeed."""
    stack, small = routed
    small.reset()
    before = len(small.requests)
    with ConnectSink() as sink:
        run = write(
            stack,
            tmp_path,
            env={
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": None,
                "DISABLE_ERROR_REPORTING": "1",
                "DISABLE_BUG_COMMAND": "1",
                "HTTPS_PROXY": sink.url,
                "HTTP_PROXY": sink.url,
                "NO_PROXY": "127.0.0.1,localhost",
            },
            name="routed-background",
        )
    run.assert_clean()
    run.assert_success(turns=2, result="done")
    run.assert_file("hello.txt", "hi")
    lines = [line for line in run.proxy_log.splitlines() if "endpoint=messages" in line]
    assert lines, run.proxy_log
    for line in lines:
        model = re.search(r" model=(\S+)", line)
        assert model is not None, line
        expected = "provider=small" if "haiku" in model.group(1) else "provider=main"
        assert expected in line and "status=200" in line, line
    titles = [r for r in run.upstream if r.scenario == "title"]
    titles += [r for r in small.requests[before:] if r.scenario == "title"]
    assert all(r.status == 200 for r in titles), run.context()
