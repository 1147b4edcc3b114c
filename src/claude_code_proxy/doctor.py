"""`claude-code-proxy doctor`: prove the whole chain works before Claude Code meets it.

Most set-up failures are one of a handful (wrong key variable, doubled `/v1`, a settings
file overriding the base URL, a model that does not exist, an upstream without tool
support), and each shows up at a different layer. So the doctor checks layer by layer and
prints the fix next to each failure: configuration, the TCP/TLS connection, the key (via
`GET /models`), every mapped model, and then real streamed exchanges through an
in-process proxy, so the translation is tested too, not just the upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from claude_code_proxy.config import Settings
from claude_code_proxy.launcher import (
    BackgroundProxy,
    ProxyStartError,
    client_key,
    find_settings_overrides,
    is_loopback_host,
    mask_key,
    redact,
)
from claude_code_proxy.models import map_model
from claude_code_proxy.upstream import models_url, upstream_headers

Status = Literal["PASS", "FAIL", "WARN", "INFO", "SKIP"]

#: (variable, Settings attribute, a Claude Code model id that maps to it)
MODEL_VARS = (
    ("BIG_MODEL", "big_model", "claude-opus-4-5"),
    ("MIDDLE_MODEL", "middle_model", "claude-sonnet-4-5"),
    ("SMALL_MODEL", "small_model", "claude-haiku-4-5"),
)
MAX_BODY = 1024 * 1024
MAX_LISTED = 25
#: The smallest context window (tokens) in which Claude Code works.
MIN_CONTEXT = 32768
#: Model-list fields that give a model's context window: OpenRouter and others
#: (`context_length`), vLLM (`max_model_len`), Groq (`context_window`), LM Studio
#: (`max_context_length`).
CONTEXT_FIELDS = ("context_length", "max_model_len", "context_window", "max_context_length")
DEFAULT_TIMEOUT = 60.0

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
TOOLS_FIX = (
    "Claude Code needs tool calls. Use a model with tool support and enable tool calling on "
    "the server (vLLM: --enable-auto-tool-choice --tool-call-parser <parser>; llama.cpp: "
    "--jinja; Ollama: a model listed with 'tools' on ollama.com)."
)


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def format_check(check: Check, width: int = 20) -> list[str]:
    """The row's lines: status, name, detail; the fix indented underneath."""
    lines = [f"  {check.status:<4}  {check.name:<{width}}  {check.detail}"]
    if check.fix:
        lines.append(f"  {'':<4}  {'':<{width}}  fix: {check.fix}")
    return lines


# ---------------------------------------------------------------- streamed replies


@dataclass
class ToolUse:
    id: str
    name: str
    parts: list[str] = field(default_factory=list)
    start_input: Any = None

    @property
    def input(self) -> Any:
        """The tool input as the client would assemble it; None when it is not JSON."""
        if not self.parts:
            return self.start_input if isinstance(self.start_input, dict) else {}
        try:
            return json.loads("".join(self.parts))
        except ValueError:
            return None


@dataclass
class Reply:
    """What a client saw of one `POST /v1/messages` with `stream: true`."""

    status: int = 0
    error_type: str | None = None
    failure: str | None = None
    text: str = ""
    thinking: str = ""
    tool_uses: list[ToolUse] = field(default_factory=list)
    stop_reason: str | None = None
    complete: bool = False
    _tools_by_index: dict[int, ToolUse] = field(default_factory=dict)

    def feed(self, event: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        kind = data.get("type", event)
        if kind == "error":
            error = _dict(data.get("error"))
            self.error_type = str(error.get("type", "error"))
            self.failure = f"stream error {self.error_type}: {error.get('message', '')}"
        elif kind == "content_block_start":
            block = _dict(data.get("content_block"))
            if block.get("type") == "tool_use":
                tool = ToolUse(str(block.get("id")), str(block.get("name")))
                tool.start_input = block.get("input")
                self.tool_uses.append(tool)
                self._tools_by_index[int(data.get("index", -1))] = tool
        elif kind == "content_block_delta":
            delta = _dict(data.get("delta"))
            if delta.get("type") == "text_delta":
                self.text += str(delta.get("text", ""))
            elif delta.get("type") == "thinking_delta":
                self.thinking += str(delta.get("thinking", ""))
            elif delta.get("type") == "input_json_delta":
                target = self._tools_by_index.get(int(data.get("index", -1)))
                if target is not None:
                    target.parts.append(str(delta.get("partial_json", "")))
        elif kind == "message_delta":
            reason = _dict(data.get("delta")).get("stop_reason")
            self.stop_reason = str(reason) if reason is not None else None
        elif kind == "message_stop":
            self.complete = True


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


async def sse_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[tuple[str, Any]]:
    """Decode a `text/event-stream` (split anywhere) into (event, parsed data) pairs."""
    event = "message"
    data: list[str] = []
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        while b"\n" in buffer:
            raw, buffer = buffer.split(b"\n", 1)
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if not line:
                if data:
                    text = "\n".join(data)
                    try:
                        yield event, json.loads(text)
                    except ValueError:
                        bad = {"type": "error", "error": {"message": f"bad JSON: {text[:80]}"}}
                        yield event, bad
                event, data = "message", []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


def _error_text(raw: bytes) -> tuple[str | None, str]:
    """(error type, message) from an Anthropic or OpenAI error body, or the raw text."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None, raw.decode("utf-8", "replace").strip()[:200]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            kind = error.get("type")
            return (str(kind) if kind else None), str(error.get("message", ""))[:300]
        if isinstance(error, str):
            return None, error[:300]
        if "message" in body:
            return None, str(body["message"])[:300]
    return None, raw.decode("utf-8", "replace")[:200]


def _os_reason(exc: OSError) -> str:
    """`Connection refused` rather than asyncio's `Connect call failed (…)`."""
    if exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__


def _snippet(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _contains_model(available: Sequence[str], model: str) -> bool:
    """Exact match, tolerating Ollama's implicit `:latest` tag and Gemini's `models/` prefix."""
    names = set(available)
    names.update(name[len("models/") :] for name in available if name.startswith("models/"))
    if model in names:
        return True
    if ":" not in model and f"{model}:latest" in names:
        return True
    return model.endswith(":latest") and model[: -len(":latest")] in names


def _model_ids(body: Any) -> list[str] | None:
    """Model ids from an OpenAI list (`data`) or an Ollama-style one (`models`)."""
    if not isinstance(body, dict):
        return None
    items = body.get("data", body.get("models"))
    if not isinstance(items, list):
        return None
    ids = []
    for item in items:
        if isinstance(item, dict):
            model = item.get("id", item.get("name"))
            if isinstance(model, str):
                ids.append(model)
        elif isinstance(item, str):
            ids.append(item)
    return ids


def config_problems(settings: Settings) -> list[Check]:
    """Set-up mistakes visible in the settings alone: a doubled /v1, keys in the wrong place.

    The doctor shows them as rows; `serve` and `run` print them as warnings.
    """
    s = settings
    host = urlsplit(s.openai_base_url).hostname or ""
    problems: list[Check] = []
    parts = urlsplit(s.openai_base_url)
    if "/v1/v1" in parts.path:
        fixed = urlunsplit(parts._replace(path=parts.path.replace("/v1/v1", "/v1")))
        problems.append(
            Check(
                "base URL",
                "FAIL",
                f"OPENAI_BASE_URL={s.openai_base_url} contains /v1 twice",
                f"OPENAI_BASE_URL={fixed}",
            )
        )
    if s.openai_api_key and s.openai_api_key.startswith("sk-ant-"):
        problems.append(
            Check(
                "key variable",
                "WARN",
                f"OPENAI_API_KEY={mask_key(s.openai_api_key)} looks like an Anthropic key",
                f"OPENAI_API_KEY must be your {host} key; the key clients send to this "
                "proxy goes in ANTHROPIC_API_KEY",
            )
        )
    if s.dynamic_keys and not is_loopback_host(host):
        if s.anthropic_api_key and s.anthropic_api_key.startswith("sk-ant-"):
            problems.append(
                Check(
                    "key variable",
                    "WARN",
                    "OPENAI_API_KEY is not set (dynamic mode), so the client's key is sent "
                    f"upstream, and ANTHROPIC_API_KEY={mask_key(s.anthropic_api_key)} "
                    f"is an Anthropic key, not a {host} key",
                    f"set OPENAI_API_KEY to your {host} key",
                )
            )
        elif not s.anthropic_api_key:
            problems.append(
                Check(
                    "key variable",
                    "WARN",
                    "OPENAI_API_KEY is not set (dynamic mode): every client must send its own "
                    f"{host} key, and `run` and the doctor have none to send",
                    f"set OPENAI_API_KEY to your {host} key (the usual set-up)",
                )
            )
    return problems


def _context_windows(body: Any) -> dict[str, int]:
    """Context windows (tokens) by model id, for the entries of a model list that give one."""
    if not isinstance(body, dict):
        return {}
    items = body.get("data", body.get("models"))
    windows: dict[str, int] = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        model = item.get("id", item.get("name"))
        if not isinstance(model, str):
            continue
        for name in CONTEXT_FIELDS:
            value = item.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                windows[model] = value
                break
    return windows


# ---------------------------------------------------------------- the doctor


class Doctor:
    """Runs the checks in order, reporting each row as soon as it is known."""

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str],
        *,
        chat: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        report: Callable[[Check], None] | None = None,
    ) -> None:
        self.settings = settings
        self.environ = environ
        self.chat = chat
        self.timeout = timeout
        self.report = report
        self.results: list[Check] = []
        self.key = settings.openai_api_key or client_key(settings)
        self.secrets = [settings.openai_api_key, settings.anthropic_api_key, self.key]
        parts = urlsplit(settings.openai_base_url)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.auth_failed = False
        self.missing_models: set[str] = set()
        self.base_url_doubled = False
        #: Context windows (tokens) the model list reports, by model id.
        self.context_windows: dict[str, int] = {}

    @property
    def failed(self) -> bool:
        return any(check.status == "FAIL" for check in self.results)

    def add(self, name: str, status: Status, detail: str, fix: str = "") -> None:
        check = Check(name, status, redact(detail, self.secrets), redact(fix, self.secrets))
        self.results.append(check)
        if self.report is not None:
            self.report(check)

    def run(self) -> list[Check]:
        self.configuration()
        self.claude_settings()
        asyncio.run(self.network())
        return self.results

    # ------------------------------------------------------------ offline checks

    def configuration(self) -> None:
        s = self.settings
        mode = "static" if not s.dynamic_keys else "dynamic"
        key = (
            f"upstream key OPENAI_API_KEY={mask_key(s.openai_api_key)}"
            if not s.dynamic_keys
            else f"clients' keys go upstream (doctor uses {mask_key(self.key)})"
        )
        self.add(
            "configuration",
            "PASS",
            f"{mode} mode, {key}, upstream {s.openai_base_url}, "
            f"opus→{s.big_model} sonnet→{s.middle_model} haiku→{s.small_model}",
        )
        client_url = self.environ.get("ANTHROPIC_BASE_URL", "").strip().rstrip("/")
        problems = config_problems(s)
        self.base_url_doubled = any(check.name == "base URL" for check in problems)
        if client_url.endswith("/v1"):
            problems.insert(
                1 if self.base_url_doubled else 0,
                Check(
                    "ANTHROPIC_BASE_URL",
                    "WARN",
                    f"ANTHROPIC_BASE_URL={client_url} ends in /v1: Claude Code appends "
                    "/v1/messages, so it would call …/v1/v1/messages",
                    f"ANTHROPIC_BASE_URL={client_url[: -len('/v1')]} (no /v1), "
                    "or use `claude-code-proxy run -- claude`, which sets it",
                ),
            )
        for check in problems:
            self.add(check.name, check.status, check.detail, check.fix)

    def claude_settings(self) -> None:
        overrides, problems = find_settings_overrides(self.environ)
        for override in overrides:
            if override.bypasses_proxy():
                self.add(
                    "Claude Code settings",
                    "FAIL",
                    f"{override.describe()}: Claude Code would call Anthropic, not this proxy",
                    f"remove ANTHROPIC_BASE_URL from {override.shown_path()} (or point it at "
                    "this proxy); Claude Code applies it over the environment and over `run`",
                )
                continue
            self.add(
                "Claude Code settings",
                "WARN",
                override.describe(),
                "Claude Code applies this over the environment (and over `run`): remove it "
                "unless it points at this proxy",
            )
        for problem in problems:
            self.add("Claude Code settings", "WARN", problem, "fix or remove the file")
        if not overrides and not problems:
            self.add(
                "Claude Code settings", "PASS", "no settings file overrides ANTHROPIC_* variables"
            )

    # ------------------------------------------------------------ upstream checks

    async def network(self) -> None:
        if not await self.reachability():
            self.add("remaining checks", "SKIP", "skipped: the upstream is unreachable")
            return
        timeout = aiohttp.ClientTimeout(
            total=self.timeout, sock_connect=self.settings.connect_timeout
        )
        session = aiohttp.ClientSession(timeout=timeout, skip_auto_headers=("User-Agent",))
        async with session:
            available = await self.authentication(session)
        self.models(available)
        if not self.chat:
            return
        if self.auth_failed:
            self.add("chat checks", "SKIP", "skipped: the upstream rejected the key")
            return
        if self.base_url_doubled:
            self.add("chat checks", "SKIP", "skipped: fix OPENAI_BASE_URL (/v1 twice) first")
            return
        await self.chat_checks()

    async def reachability(self) -> bool:
        base = self.settings.openai_base_url
        tls = urlsplit(base).scheme == "https"
        where = f"{self.host}:{self.port}"
        started = time.perf_counter()
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host, self.port, ssl=ssl.create_default_context() if tls else None
                ),
                self.settings.connect_timeout,
            )
        except (asyncio.TimeoutError, TimeoutError):
            self.add(
                "reachability",
                "FAIL",
                f"no connection to {where} within {self.settings.connect_timeout:g}s",
                self._unreachable_fix(),
            )
            return False
        except socket.gaierror as exc:
            self.add(
                "reachability",
                "FAIL",
                f"cannot resolve {self.host}: {exc.strerror or exc}",
                f"check the host name in OPENAI_BASE_URL ({base}) and the network's DNS",
            )
            return False
        except ssl.SSLError as exc:
            self.add(
                "reachability",
                "FAIL",
                f"TLS handshake with {where} failed: {exc.reason or exc}",
                "check that the URL should be https (local servers usually speak http) and "
                "that the system trusts the server's certificate",
            )
            return False
        except OSError as exc:
            self.add(
                "reachability",
                "FAIL",
                f"cannot connect to {where}: {_os_reason(exc)}",
                self._unreachable_fix(),
            )
            return False
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2)
        elapsed = (time.perf_counter() - started) * 1000
        self.add(
            "reachability",
            "PASS",
            f"connected to {where}{' (TLS)' if tls else ''} in {elapsed:.0f} ms",
        )
        return True

    def _unreachable_fix(self) -> str:
        if is_loopback_host(self.host):
            return (
                f"start the server that should listen on port {self.port} (Ollama: "
                "`ollama serve`; LM Studio: start its local server; vLLM: `vllm serve <model>`) "
                "or fix the port in OPENAI_BASE_URL; inside Docker, the host machine is "
                "host.docker.internal, not localhost"
            )
        return "check OPENAI_BASE_URL, your network, and any firewall, proxy or VPN"

    def _models_request(self) -> tuple[str, dict[str, str]]:
        """`GET /models` as the proxy would send it upstream (URL, query and key header)."""
        headers = upstream_headers(self.settings, self.key)
        headers.pop("content-type")
        return models_url(self.settings), headers

    def _key_fix(self) -> str:
        s = self.settings
        if s.dynamic_keys:
            return (
                "OPENAI_API_KEY is not set, so the client's key (ANTHROPIC_API_KEY) is sent "
                f"upstream: set OPENAI_API_KEY to a valid {self.host} key"
            )
        if s.azure_api_version is not None:
            return "set OPENAI_API_KEY to the Azure resource's key (portal: Keys and Endpoint)"
        return (
            f"set OPENAI_API_KEY to a valid {self.host} key (ANTHROPIC_API_KEY is the key "
            "clients send to this proxy, not the upstream key)"
        )

    async def authentication(self, session: aiohttp.ClientSession) -> list[str] | None:
        """Check the key with `GET /models`; return the listed model ids when there are any."""
        url, headers = self._models_request()
        label = "OPENAI_API_KEY" if not self.settings.dynamic_keys else "client key"
        try:
            async with session.get(url, headers=headers, allow_redirects=False) as response:
                status = response.status
                content_type = response.headers.get("content-type", "")
                raw = await response.content.read(MAX_BODY)
        except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError) as exc:
            self.add(
                "authentication",
                "WARN",
                f"GET {url} failed ({type(exc).__name__}: {exc}); the chat checks test the key",
            )
            return None
        if status in (401, 403):
            self.auth_failed = True
            _, message = _error_text(raw)
            self.add(
                "authentication",
                "FAIL",
                f"{self.host} rejected the {label} ({mask_key(self.key)}): HTTP {status}"
                + (f": {message}" if message else ""),
                self._key_fix(),
            )
            return None
        if status >= 300:
            then = (
                "the key is not checked until OPENAI_BASE_URL is fixed"
                if self.base_url_doubled
                else "the chat checks test the key"
            )
            self.add(
                "authentication",
                "INFO",
                f"GET {url} answered HTTP {status} (no model list); {then}",
            )
            return None
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        ids = _model_ids(body)
        self.context_windows = _context_windows(body)
        if ids is None:
            self.add(
                "authentication",
                "WARN",
                f"GET {url} answered {content_type or 'something'} that is not a model list",
                "OPENAI_BASE_URL should be the API root, usually ending in /v1",
            )
            return None
        self.add(
            "authentication",
            "PASS",
            f"{label} {mask_key(self.key)} accepted: GET {url} listed {len(ids)} models",
        )
        return ids

    def _mapped_models(self) -> list[tuple[str, str]]:
        """(label, upstream model) for BIG/MIDDLE/SMALL and any MODEL_MAP entries."""
        mapped = [(var, str(getattr(self.settings, attr))) for var, attr, _ in MODEL_VARS]
        mapped.extend((f"MODEL_MAP {k}", v) for k, v in self.settings.model_map.items())
        return mapped

    def models(self, available: list[str] | None) -> None:
        base = self.settings.openai_base_url
        for label, model in self._mapped_models():
            name = f"model {label}"
            if self.auth_failed:
                self.add(name, "SKIP", f"'{model}': not checked (the key was rejected)")
            elif self.base_url_doubled and not available:
                self.add(name, "SKIP", f"'{model}': not checked (fix OPENAI_BASE_URL first)")
            elif self.settings.azure_api_version is not None:
                self.add(name, "INFO", f"'{model}': Azure deployments are checked by chatting")
            elif not available:
                self.add(
                    name, "INFO", f"'{model}': the provider lists no models; checked by chatting"
                )
            elif _contains_model(available, model):
                self.add(name, "PASS", f"{label} '{model}' is available")
            else:
                self.missing_models.add(model)
                shown = ", ".join(available[:MAX_LISTED])
                if len(available) > MAX_LISTED:
                    shown += f" … and {len(available) - MAX_LISTED} more"
                fix = f"set {label.split()[0]} to one of the available models"
                if label == "MIDDLE_MODEL" and not self.environ.get("MIDDLE_MODEL"):
                    fix += "; MIDDLE_MODEL is unset, so it follows BIG_MODEL"
                if self.port == 11434:
                    fix += f", or `ollama pull {model}`"
                self.add(
                    name,
                    "FAIL",
                    f"{label} '{model}' not found at {base}: available models are {shown}",
                    fix,
                )
        self.context_window()

    def context_window(self) -> None:
        """Report the smallest context window the model list gives for a mapped model."""
        known = {
            model: self.context_windows[model]
            for _, model in self._mapped_models()
            if model in self.context_windows
        }
        if not known:
            return
        model, tokens = min(known.items(), key=lambda item: item[1])
        hint = (
            "Claude Code assumes a 200k-token window for models it does not know and compacts "
            f"by that; tell it the real one: CLAUDE_CODE_AUTO_COMPACT_WINDOW={tokens} "
            f"CLAUDE_CODE_MAX_CONTEXT_TOKENS={tokens} claude-code-proxy run -- claude"
        )
        if tokens < MIN_CONTEXT:
            self.add(
                "context window",
                "WARN",
                f"'{model}' has a {tokens}-token context window; Claude Code's first request "
                f"alone is about 13k tokens and it needs {MIN_CONTEXT} or more",
                "serve the model with a longer context (Ollama: OLLAMA_CONTEXT_LENGTH=32768; "
                "vLLM: --max-model-len; llama.cpp: --ctx-size); then " + hint,
            )
        else:
            self.add(
                "context window",
                "INFO",
                f"'{model}' has a {tokens}-token context window (from the model list)",
                hint,
            )

    # ------------------------------------------------------------ chat checks

    def _targets(self) -> list[tuple[str, str, str]]:
        """(variable, client model id, upstream model), one per distinct upstream model."""
        seen: set[str] = set()
        targets = []
        for var, _, client_id in MODEL_VARS:
            upstream = map_model(client_id, self.settings)
            if upstream not in seen:
                seen.add(upstream)
                targets.append((var, client_id, upstream))
        return targets

    async def chat_checks(self) -> None:
        targets = [t for t in self._targets() if t[2] not in self.missing_models]
        if not targets:
            self.add("chat checks", "SKIP", "skipped: no mapped model exists upstream")
            return
        proxy = BackgroundProxy(self.settings)
        try:
            await asyncio.to_thread(proxy.start)
        except (ProxyStartError, OSError, ValueError) as exc:
            self.add("proxy", "FAIL", f"the proxy could not start: {exc}", "see the log above")
            return
        try:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=self.timeout)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                for var, client_id, upstream in targets:
                    await self.text_check(session, proxy.base_url, var, client_id, upstream)
                    await self.tool_check(session, proxy.base_url, var, client_id, upstream)
                var, client_id, upstream = targets[0]
                await self.reasoning_check(session, proxy.base_url, client_id, upstream)
        finally:
            await asyncio.to_thread(proxy.stop)

    async def message(
        self, session: aiohttp.ClientSession, base_url: str, body: dict[str, Any]
    ) -> Reply:
        """One streamed exchange with the proxy, bounded by the doctor's timeout."""
        reply = Reply()
        headers = {
            "x-api-key": client_key(self.settings),
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        }

        async def exchange() -> None:
            async with session.post(
                base_url + "/v1/messages", data=json.dumps(body), headers=headers
            ) as response:
                reply.status = response.status
                if response.status != 200:
                    reply.error_type, message = _error_text(await response.content.read(MAX_BODY))
                    reply.failure = f"HTTP {response.status} {reply.error_type or ''}: {message}"
                    return
                async for event, data in sse_events(response.content.iter_any()):
                    reply.feed(event, data)
            if reply.failure is None and not reply.complete:
                reply.failure = "the event stream ended without message_stop"

        try:
            await asyncio.wait_for(exchange(), self.timeout)
        except (asyncio.TimeoutError, TimeoutError):
            reply.error_type = "timeout_error"
            reply.failure = f"no complete reply within {self.timeout:g}s"
        except aiohttp.ClientError as exc:
            reply.failure = f"{type(exc).__name__}: {exc}"
        return reply

    def _fix(self, reply: Reply, var: str, upstream: str) -> str:
        message = (reply.failure or "").lower()
        if "client_key_pattern" in message:
            return (
                "in dynamic mode the client key must look like an upstream key: set "
                "OPENAI_API_KEY, or CLIENT_KEY_PATTERN=any for key-less local servers"
            )
        if reply.status == 401 or reply.error_type == "authentication_error":
            return self._key_fix()
        if reply.error_type == "permission_error":
            return f"the key may not use '{upstream}': check the account's model access"
        if reply.status == 404 or reply.error_type == "not_found_error":
            return (
                f"check {var}='{upstream}' (the exact model id the provider expects) and the "
                "path in OPENAI_BASE_URL"
            )
        if "tool" in message and reply.status == 400:
            return TOOLS_FIX
        if "context" in message or "too long" in message:
            return (
                "the model's context window is too small for Claude Code (≥ 32k tokens; "
                "Ollama: OLLAMA_CONTEXT_LENGTH=32768)"
            )
        if reply.error_type == "timeout_error":
            return "the upstream is slow or stalled: raise --timeout / REQUEST_TIMEOUT"
        if reply.error_type == "rate_limit_error":
            return "rate limited: wait, or check the account's quota and credits"
        return "retry with --log-level DEBUG to see the upstream exchange"

    async def text_check(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        var: str,
        client_id: str,
        upstream: str,
    ) -> None:
        name = "streamed text"
        reply = await self.message(
            session,
            base_url,
            {
                "model": client_id,
                "max_tokens": 1024,
                "stream": True,
                "messages": [{"role": "user", "content": "Reply with the single word: pong"}],
            },
        )
        self._judge_text_reply(
            name,
            reply,
            var,
            upstream,
            where=f"{client_id} → {upstream}",
            empty=f"{client_id} → {upstream}: empty reply (stop_reason {reply.stop_reason})",
            empty_fix="a reasoning model may have spent every token thinking; check the model",
            passed=f"{client_id} → {upstream} answered {_snippet(reply.text)!r} "
            f"(stop_reason {reply.stop_reason})",
        )

    def _judge_text_reply(
        self,
        name: str,
        reply: Reply,
        var: str,
        upstream: str,
        *,
        where: str,
        empty: str,
        empty_fix: str,
        passed: str,
    ) -> None:
        """FAIL on an error or an empty text, else PASS: how every chat check ends."""
        if reply.failure:
            self.add(name, "FAIL", f"{where}: {reply.failure}", self._fix(reply, var, upstream))
        elif not reply.text.strip():
            self.add(name, "FAIL", empty, empty_fix)
        else:
            self.add(name, "PASS", passed)

    async def tool_check(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        var: str,
        client_id: str,
        upstream: str,
    ) -> None:
        name = "tool round trip"
        question = {"role": "user", "content": TOOL_PROMPT}
        body: dict[str, Any] = {
            "model": client_id,
            "max_tokens": 1024,
            "stream": True,
            "tools": [WEATHER_TOOL],
            "messages": [question],
        }
        first = await self.message(session, base_url, body)
        if first.failure:
            self.add(name, "FAIL", f"{upstream}: {first.failure}", self._fix(first, var, upstream))
            return
        calls = [t for t in first.tool_uses if t.name == WEATHER_TOOL["name"]]
        if not calls:
            said = f" ({_snippet(first.text)!r})" if first.text.strip() else ""
            self.add(
                name,
                "FAIL",
                f"{upstream} answered in text{said} instead of calling get_weather "
                f"(stop_reason {first.stop_reason})",
                TOOLS_FIX,
            )
            return
        call = calls[0]
        if not isinstance(call.input, dict):
            self.add(
                name,
                "FAIL",
                f"{upstream}: the tool input is not a JSON object: {_snippet(''.join(call.parts))!r}",
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
        second = await self.message(session, base_url, body)
        self._judge_text_reply(
            name,
            second,
            var,
            upstream,
            where=f"{upstream}, after the tool_result",
            empty=f"{upstream}: no text after the tool_result (stop_reason {second.stop_reason})",
            empty_fix=TOOLS_FIX,
            passed=f"{upstream}: get_weather({json.dumps(call.input, ensure_ascii=False)}) → "
            "tool_result → "
            f"{_snippet(second.text)!r}",
        )

    async def reasoning_check(
        self, session: aiohttp.ClientSession, base_url: str, client_id: str, upstream: str
    ) -> None:
        name = "reasoning"
        reply = await self.message(
            session,
            base_url,
            {
                "model": client_id,
                "max_tokens": 2048,
                "stream": True,
                "thinking": {"type": "enabled", "budget_tokens": 1024},
                "messages": [
                    {"role": "user", "content": "What is 17 * 23? Answer with the number."}
                ],
            },
        )
        if reply.failure:
            self.add(
                name,
                "WARN",
                f"{upstream}: a request with thinking enabled failed: {reply.failure}",
                "Claude Code sends this when extended thinking is on: turn thinking off in "
                "Claude Code, or use a model that accepts reasoning parameters",
            )
        elif reply.thinking.strip():
            self.add(
                name,
                "INFO",
                f"yes: {upstream} streams its reasoning as thinking blocks "
                f"({len(reply.thinking)} characters)",
            )
        else:
            self.add(
                name,
                "INFO",
                f"no thinking blocks from {upstream} (its reasoning, if any, is not returned); "
                "Claude Code works without them",
            )


def summary(results: Sequence[Check]) -> str:
    counts = {
        status: sum(1 for c in results if c.status == status) for status in ("PASS", "FAIL", "WARN")
    }
    verdict = "problems found" if counts["FAIL"] else "all required checks passed"
    return f"{verdict}: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['WARN']} warnings"
