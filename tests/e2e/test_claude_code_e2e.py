"""End to end: the real Claude Code CLI (npm) -> our proxy -> a scripted OpenAI upstream.

Every scenario runs against both CLI versions installed by ``scripts/install_claude_code.py``
(``latest`` and the ``default`` a plain npm install picks on this Node). One scripted upstream
and one proxy serve all scenarios of a version, one CLI run at a time; the scenario is chosen
by the ``[ccp:NAME]`` marker in the prompt (see ``scripted_upstream.SCENARIOS``). Each test
asserts what a user would observe (files, exit code, result text, turns) and that the proxy
logged no error and answered no 4xx/5xx beyond what the scenario provokes; ``assert_clean`` also
checks that every tool-call id the scripted upstream emitted came back to it byte for byte (the
scenarios emit OpenAI, vLLM, Kimi, Gemini, Mistral ids, and ``call_0`` on every round). Each
run prints its prefix-stability figures (``CCP_PREFIX_REPORT=file`` collects them).

Set ``CCP_E2E_CAPTURE_DIR`` to save what the CLI sent (see ``harness``).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mock_search import MockSearch
from prefix_stability import first_difference, messages_extend

from .background import ConnectSink
from .harness import (
    BIG,
    CAPTURE_ENV,
    CLIENT_KEY,
    MIDDLE,
    PROXY_MAX_RETRIES,
    SMALL,
    UPSTREAM_KEY,
    CliRun,
    Stack,
    install_cli,
    proxy_env,
    run_proxy,
)
from .scripted_upstream import (
    CUT_CONTENT,
    FRAGMENT_TEXT,
    LONG_ANSWER,
    LOOP_FINAL_PREFIX,
    RATE_LIMITED_REQUESTS,
    REASONING_TURN_1,
    REASONING_TURN_2,
    WEB_SEARCH_QUERY,
    ScriptedUpstream,
)

pytestmark = pytest.mark.e2e

LABELS = ("latest", "default")
APIS = ("chat", "responses")  # the proxy's UPSTREAM_API: every scenario runs on both dialects
DYNAMIC_KEY = "sk-dynamic-e2e-0123456789abcdef"


@pytest.fixture(scope="module")
def searxng() -> Iterator[MockSearch]:
    """A mock SearXNG the proxy searches with (WebSearch)."""
    with MockSearch() as mock:
        yield mock


@pytest.fixture(
    scope="module",
    params=[(label, api) for label in LABELS for api in APIS],
    ids=lambda p: "-".join(p),
)
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    searxng: MockSearch,
) -> Iterator[Stack]:
    """The CLI of one version, a scripted upstream and a proxy speaking one upstream dialect,
    shared by the module's tests."""
    label, api = request.param
    binary = install_cli(label)
    root = tmp_path_factory.mktemp(f"stack-{label}-{api}")
    capture = os.environ.get(CAPTURE_ENV)
    search = {"WEB_SEARCH_BACKEND": "searxng", "WEB_SEARCH_URL": searxng.origin}
    with (
        ScriptedUpstream() as upstream,
        run_proxy(proxy_env(upstream.base_url, UPSTREAM_API=api, **search), root) as proxy,
    ):
        yield Stack(label, binary, upstream, proxy, Path(capture) if capture else None, api)


def upstream_models(run: CliRun) -> set[str]:
    """Models of the chat requests the upstream received during ``run``."""
    return {str(body.get("model")) for body in run.chat}


def upstream_auth(run: CliRun) -> set[str | None]:
    """``Authorization`` headers the upstream received during ``run``."""
    return {r.headers.get("Authorization") for r in run.upstream}


def tool_names(run: CliRun) -> list[str]:
    """Names of the tools the CLI called, in order."""
    return [str(b.get("name")) for b in run.blocks("tool_use")]


def assistant_with_results(body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The last assistant message with tool_calls and the tool messages right after it."""
    messages = body["messages"]
    index = max(
        i for i, m in enumerate(messages) if m.get("role") == "assistant" and m.get("tool_calls")
    )
    results = []
    for message in messages[index + 1 :]:
        if message.get("role") != "tool":
            break
        results.append(message)
    return messages[index], results


def test_write(stack: Stack, tmp_path: Path) -> None:
    """Write a file through a streamed Write call, then finish with "done"."""
    run = stack.run("write", "create a file hello.txt containing hi", tmp_path)
    run.assert_clean()
    run.assert_success(turns=2, result="done")
    run.assert_file("hello.txt", "hi")
    assert tool_names(run) == ["Write"], run.context()
    assert len(run.chat) == 2, run.context()
    assistant, results = assistant_with_results(run.chat[1])
    assert [r["tool_call_id"] for r in results] == [c["id"] for c in assistant["tool_calls"]]
    assert "hello.txt" in str(results[0]["content"]), run.context()
    assert upstream_models(run) == {BIG}, run.context()
    assert upstream_auth(run) == {f"Bearer {UPSTREAM_KEY}"}, run.context()


def test_bash(stack: Stack, tmp_path: Path) -> None:
    """A Bash tool call (``echo`` into a file) runs and its result goes back upstream."""
    run = stack.run("bash", "write bash-ok into bash.txt with the shell", tmp_path)
    run.assert_clean()
    run.assert_success(turns=2, result="done")
    run.assert_file("bash.txt", "bash-ok\n")
    assert tool_names(run) == ["Bash"], run.context()
    assert not any(r.get("is_error") for r in run.tool_results()), run.context()
    _, results = assistant_with_results(run.chat[-1])
    assert len(results) == 1, run.context()


def test_read(stack: Stack, tmp_path: Path) -> None:
    """The model reads a file and answers from the tool result's content."""
    notes = "Meeting notes\nThe secret word is PAPAYA-42.\nEnd of notes\n"
    run = stack.run(
        "read", "what is the secret word in notes.txt?", tmp_path, files={"notes.txt": notes}
    )
    run.assert_clean()
    run.assert_success(turns=2, result="The secret word is PAPAYA-42.")
    assert tool_names(run) == ["Read"], run.context()
    _, results = assistant_with_results(run.chat[-1])
    assert "PAPAYA-42" in str(results[0]["content"]), run.context()


def test_parallel_tool_calls(stack: Stack, tmp_path: Path) -> None:
    """Two tool calls in one assistant turn; both results follow the calls, in order."""
    run = stack.run("parallel", "create a.txt (alpha) and b.txt (beta)", tmp_path)
    run.assert_clean()
    # Claude Code counts each tool_result message as a turn: 1 + 2 results.
    run.assert_success(turns=3, result="wrote 2 files")
    run.assert_file("a.txt", "alpha")
    run.assert_file("b.txt", "beta")
    assert tool_names(run) == ["Write", "Write"], run.context()
    assistant, results = assistant_with_results(run.chat[-1])
    assert len(assistant["tool_calls"]) == 2, run.context()
    assert [r["tool_call_id"] for r in results] == [c["id"] for c in assistant["tool_calls"]]


def test_three_tool_rounds(stack: Stack, tmp_path: Path) -> None:
    """Write, Bash and Read in three consecutive rounds, then an answer from the Read."""
    run = stack.run("loop", "build loop.txt step by step and report it", tmp_path)
    run.assert_clean()
    run.assert_success(turns=4, result=LOOP_FINAL_PREFIX + "one,two")
    run.assert_file("loop.txt", "one\n")
    run.assert_file("loop2.txt", "one\ntwo\n")
    assert tool_names(run) == ["Write", "Bash", "Read"], run.context()
    assert len(run.chat) == 4, run.context()
    last = run.chat[-1]["messages"]
    assert sum(1 for m in last if m.get("role") == "tool") == 3, run.context()


def test_reasoning_before_tool_call(stack: Stack, tmp_path: Path) -> None:
    """DeepSeek-style ``reasoning_content`` deltas before a tool call; the next turn works."""
    run = stack.run("reasoning", "think, then create think.txt", tmp_path)
    run.assert_clean()
    run.assert_success(turns=2, result="done")
    run.assert_file("think.txt", "thought")
    thinking = run.blocks("thinking")
    texts = [b.get("thinking") for b in thinking]
    assert texts == [REASONING_TURN_1, REASONING_TURN_2], f"thinking {texts}\n{run.context()}"
    assert all(b.get("signature") for b in thinking), run.context()
    assert len(run.chat) == 2, run.context()
    if stack.api == "responses":
        # The reasoning item goes back with its call (the upstream checks it, see the ledger).
        assistant, _ = assistant_with_results(run.chat[1])
        items = assistant.get("reasoning_items") or []
        assert [i["summary"][0]["text"] for i in items] == [REASONING_TURN_1], run.context()
        return
    # A generic upstream gets no reasoning back: neither as a field nor as text.
    assert REASONING_TURN_1 not in json.dumps(run.chat[1]["messages"]), run.context()


def test_reasoning_echoed_to_deepseek(stack: Stack, tmp_path: Path) -> None:
    """With a ``deepseek-reasoner`` model the reasoning goes back upstream on the tool turn."""
    if stack.api == "responses":
        pytest.skip("DeepSeek's reasoning_content is a Chat Completions field")
    run = stack.run(
        "reasoning",
        "think, then create think.txt",
        tmp_path,
        args=["--model", "deepseek-reasoner"],
        name="reasoning-deepseek",
    )
    run.assert_clean()
    run.assert_success(turns=2, result="done")
    run.assert_file("think.txt", "thought")
    assert upstream_models(run) == {"deepseek-reasoner"}, run.context()
    assistant, _ = assistant_with_results(run.chat[-1])
    assert assistant.get("reasoning_content") == REASONING_TURN_1, run.context()
    assert REASONING_TURN_2 not in str(run.chat), run.context()


def test_reasoning_items_survive_three_tool_rounds(stack: Stack, tmp_path: Path) -> None:
    """Responses API: every tool round's reasoning item comes back, in place, on every later
    request of the loop (the upstream rejects a request that drops or changes one)."""
    if stack.api != "responses":
        pytest.skip("reasoning items exist only on the Responses API")
    returned = stack.upstream.ledger.returned
    run = stack.run("loop", "build loop.txt step by step and report it", tmp_path)
    run.assert_clean()
    run.assert_success(turns=4, result=LOOP_FINAL_PREFIX + "one,two")
    # Requests 2, 3 and 4 carry 1, 2 and 3 reasoning items with their calls.
    counts = [
        sum(len(m.get("reasoning_items") or []) for m in body["messages"]) for body in run.chat
    ]
    assert counts == [0, 1, 2, 3], f"{counts}\n{run.context()}"
    assert stack.upstream.ledger.returned - returned == 6, run.context()
    assert all(body["stream"] for body in run.chat), run.context()  # no non-streaming fallback


def test_tiny_argument_fragments(stack: Stack, tmp_path: Path) -> None:
    """Text and tool arguments streamed 1-3 characters at a time (escapes, unicode)."""
    run = stack.run("fragments", "create frag.txt", tmp_path)
    run.assert_clean()
    run.assert_success(turns=2, result="done, in fragments")
    run.assert_file("frag.txt", FRAGMENT_TEXT)


def test_rate_limit_then_success(stack: Stack, tmp_path: Path) -> None:
    """Upstream 429 (``retry-after: 1``) beyond the proxy's retries: Claude Code retries.

    The proxy (MAX_RETRIES=1) tries twice, waiting the ``retry-after`` second, then hands the
    429 with ``retry-after`` to the CLI, whose own retry meets a healthy upstream.
    """
    assert RATE_LIMITED_REQUESTS == PROXY_MAX_RETRIES + 1
    run = stack.run("rate_limit", "create rate.txt", tmp_path, record=True)
    run.assert_clean(allowed={429})
    run.assert_success(turns=2, result="done")
    run.assert_file("rate.txt", "after 429")
    statuses = [r.status for r in run.upstream if r.is_chat]
    assert statuses[:RATE_LIMITED_REQUESTS] == [429] * RATE_LIMITED_REQUESTS, run.context()
    assert statuses[RATE_LIMITED_REQUESTS:] == [200, 200], run.context()
    limited = [e for e in run.exchanges if e.status == 429]
    assert len(limited) == 1 and limited[0].path.startswith("/v1/messages"), run.context()
    retry_after = {k.lower(): v for k, v in limited[0].response_headers.items()}.get("retry-after")
    assert retry_after == "1", run.context()


def test_context_overflow_reported(stack: Stack, tmp_path: Path) -> None:
    """Upstream ``context_length_exceeded`` → ``prompt is too long`` → the CLI reports it."""
    run = stack.run("overflow", "say hello", tmp_path)
    run.assert_clean(allowed={400})
    ctx = run.context()
    # Observed on 2.1.331 and 2.1.197: no retry, no compaction attempt for a one-turn
    # conversation; exit 1 with an error result that quotes the proxy's token numbers.
    assert run.returncode == 1, ctx
    result = run.result
    assert result.get("is_error") is True and result.get("api_error_status") == 400, ctx
    assert result.get("terminal_reason") == "prompt_too_long", ctx
    text = str(result.get("result"))
    assert text.startswith("Prompt is too long"), ctx
    assert "250000" in text and "128000" in text, ctx
    posts = [a for a in run.access if a.method == "POST" and a.path.startswith("/v1/messages")]
    assert [a.status for a in posts] == [400], ctx


def test_long_answer(stack: Stack, tmp_path: Path) -> None:
    """A long answer streamed in hundreds of chunks arrives complete and in order."""
    run = stack.run("long", "recite the fox lines", tmp_path)
    run.assert_clean()
    run.assert_success(turns=1, result=LONG_ANSWER)
    assert len(run.blocks("text")) == 1, run.context()


@pytest.mark.parametrize(("alias", "expected"), [("sonnet", MIDDLE), ("haiku", SMALL)])
def test_model_alias_mapping(stack: Stack, tmp_path: Path, alias: str, expected: str) -> None:
    """``--model sonnet`` goes to MIDDLE_MODEL and ``--model haiku`` to SMALL_MODEL."""
    run = stack.run(
        "write",
        "create a file hello.txt containing hi",
        tmp_path,
        args=["--model", alias],
        name=f"model-{alias}",
    )
    run.assert_clean()
    run.assert_success(turns=2, result="done")
    run.assert_file("hello.txt", "hi")
    assert alias in str(run.init.get("model")), run.context()
    assert upstream_models(run) == {expected}, run.context()


def test_auth_token(stack: Stack, tmp_path: Path) -> None:
    """``ANTHROPIC_AUTH_TOKEN`` (a Bearer token) instead of ``ANTHROPIC_API_KEY``."""
    run = stack.run(
        "write",
        "create a file hello.txt containing hi",
        tmp_path,
        env={"ANTHROPIC_API_KEY": None, "ANTHROPIC_AUTH_TOKEN": CLIENT_KEY},
        record=True,
        name="auth-token",
    )
    run.assert_clean()
    run.assert_success(turns=2, result="done")
    run.assert_file("hello.txt", "hi")
    posts = [e for e in run.exchanges if e.method == "POST"]
    assert posts, run.context()
    assert {e.header("authorization") for e in posts} == {f"Bearer {CLIENT_KEY}"}, run.context()
    assert {e.header("x-api-key") for e in posts} == {None}, run.context()
    assert upstream_auth(run) == {f"Bearer {UPSTREAM_KEY}"}, run.context()


def test_dynamic_key_mode(stack: Stack, tmp_path: Path) -> None:
    """Proxy without OPENAI_API_KEY: the client's own key is used upstream as Bearer."""
    env = proxy_env(
        stack.upstream.base_url,
        OPENAI_API_KEY=None,
        ANTHROPIC_API_KEY=None,
        UPSTREAM_API=stack.api,
    )
    with run_proxy(env, tmp_path / "proxy", name="dynamic-proxy") as dynamic:
        run = stack.run(
            "write",
            "create a file hello.txt containing hi",
            tmp_path,
            env={"ANTHROPIC_API_KEY": DYNAMIC_KEY},
            proxy=dynamic,
            name="dynamic-key",
        )
        banner = dynamic.output()
    assert "dynamic" in banner, banner
    run.assert_clean()
    run.assert_success(turns=2, result="done")
    run.assert_file("hello.txt", "hi")
    assert upstream_auth(run) == {f"Bearer {DYNAMIC_KEY}"}, run.context()


def test_gateway_model_discovery(stack: Stack, tmp_path: Path) -> None:
    """``CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1``: GET /v1/models answers 200, run works.

    Claude Code 2.1.197 skips the discovery while nonessential traffic is disabled, so this
    scenario allows that traffic (telemetry, error reporting, updates and /bug stay off) and
    points HTTP(S)_PROXY at a local sink that refuses everything not bound for 127.0.0.1.
    With nonessential traffic 2.1.197 also sends a session-title request (structured output).
    """
    with ConnectSink() as sink:
        run = stack.run(
            "write",
            "create a file hello.txt containing hi",
            tmp_path,
            env={
                "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": None,
                "DISABLE_ERROR_REPORTING": "1",
                "DISABLE_BUG_COMMAND": "1",
                "HTTPS_PROXY": sink.url,
                "HTTP_PROXY": sink.url,
                "NO_PROXY": "127.0.0.1,localhost",
            },
            name="model-discovery",
        )
    print(f"refused non-loopback attempts: {sink.attempts}")
    run.assert_clean()
    run.assert_success(turns=2, result="done")
    run.assert_file("hello.txt", "hi")
    listed = [a for a in run.access if a.method == "GET" and a.path.startswith("/v1/models")]
    assert listed and all(a.status == 200 for a in listed), run.context()
    # The access log redacts query strings (they may carry keys), so the paged listing
    # Claude Code asks for (`?limit=1000`) shows as a query that reached the proxy.
    assert any(a.path.startswith("/v1/models?") for a in listed), run.context()
    titles = [r for r in run.upstream if r.scenario == "title"]
    assert all(r.status == 200 for r in titles), run.context()


def test_web_search(stack: Stack, searxng: MockSearch, tmp_path: Path) -> None:
    """WebSearch works on a non-Anthropic model: the proxy runs the server tool against a
    (mock) SearXNG and Claude Code gets the search and its results, not "Did 0 searches"."""
    before = len(searxng.searches)
    run = stack.run(
        "websearch",
        "search the web for what is new in python 3.13",
        tmp_path,
        # WebSearch is sent inline instead of behind ToolSearch.
        env={"CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS": "1"},
    )
    run.assert_clean()
    run.assert_success(turns=2)
    assert tool_names(run) == ["WebSearch"], run.context()
    searches = searxng.searches[before:]
    assert [s.query.get("q") for s in searches] == [WEB_SEARCH_QUERY], run.context()
    # The side request Claude Code sent carried the server tool; the model got a function.
    side = [
        body
        for body in run.chat
        if any(
            (t.get("function") or {}).get("name") == "web_search" for t in body.get("tools") or []
        )
    ]
    assert len(side) == 2, run.context()  # the search call, then the answer from its result
    (result,) = run.tool_results()
    text = json.dumps(result.get("content"), ensure_ascii=False)
    assert "https://docs.python.org/3/whatsnew/3.13.html" in text, run.context()
    assert "What's New In Python 3.13" in text, run.context()
    assert not result.get("is_error"), run.context()
    # The structured tool result Claude Code renders ("Did 1 search"): one search with links.
    structured = [e.get("tool_use_result") for e in run.events if e.get("type") == "user"]
    searched = [r for r in structured if isinstance(r, dict) and "results" in r]
    assert searched, run.context()
    links = [r for r in searched[0]["results"] if not isinstance(r, str)]
    assert len(links) == 1, run.context()
    assert searched[0].get("searchCount", 1) == 1, run.context()
    assert "Links:" in text, run.context()
    assert "search answered:" in str(run.result.get("result")), run.context()


def test_a_tool_call_cut_by_an_upstream_failure_is_never_run(stack: Stack, tmp_path: Path) -> None:
    """The upstream fails halfway through a Write's content (an error chunk, as llama.cpp
    sends): the proxy leaves the tool_use open before ``event: error``, so the CLI discards the
    turn instead of writing a truncated file; its retry gets the whole call."""
    if stack.api != "chat":
        pytest.skip("the cut is scripted in the Chat Completions stream")
    run = stack.run("cut", "create cut.txt", tmp_path)
    # The CLI hangs up as soon as it reads the error event: the proxy logs that request as 499.
    run.assert_clean(allowed={499}, expected_log=("leaving it open",))
    ctx = run.context()
    path = run.workdir / "cut.txt"
    if path.exists():
        assert path.read_text() == CUT_CONTENT, ctx  # whole, from a retry, never truncated
    later = [r.body for r in run.conversation[1:]]
    cut = [
        call
        for body in later
        for m in body["messages"]
        for call in m.get("tool_calls") or []
        if json.loads(call["function"]["arguments"]).get("content") not in (None, CUT_CONTENT)
    ]
    assert not cut, f"the cut call came back as if it had run: {cut}\n{ctx}"
    first = run.conversation[0]
    assert first.tool_ids == [], ctx


@pytest.mark.parametrize("in_place", [False, True], ids=["folded", "system-messages"])
def test_prefix_stability_over_a_session(stack: Stack, tmp_path: Path, in_place: bool) -> None:
    """Four requests of a three-round session: each starts with the whole previous one, byte
    for byte (docs/prefix-stability.md), whichever way system text is placed."""
    if stack.api != "chat":
        pytest.skip("measured on the Chat Completions translation")
    profiles = tmp_path / "profiles.json"
    profiles.write_text(json.dumps({"providers": {"127.0.0.1:*": {"system_in_place": in_place}}}))
    env = proxy_env(stack.upstream.base_url, PROVIDER_PROFILES=str(profiles))
    with run_proxy(env, tmp_path / "proxy", name=f"prefix-proxy-{in_place}") as proxy:
        run = stack.run(
            "loop",
            "build loop.txt step by step and report it",
            tmp_path,
            proxy=proxy,
            name=f"prefix-{'system-messages' if in_place else 'folded'}",
        )
    run.assert_clean()
    run.assert_success(turns=4, result=LOOP_FINAL_PREFIX + "one,two")
    bodies = [r.body for r in run.conversation]
    assert len(bodies) == 4, run.context()
    for before, after in itertools.pairwise(bodies):
        assert messages_extend(before, after), first_difference(before, after)
    assert run.prefix_shares() == [1.0, 1.0, 1.0], first_difference(bodies[0], bodies[1])
    roles = [m["role"] for m in bodies[-1]["messages"]]
    assert (roles.count("system") > 1) is in_place, roles  # the environment message in place
