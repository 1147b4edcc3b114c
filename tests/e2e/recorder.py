"""A recording reverse proxy (CLI → recorder → proxy) and the capture-fixture sanitizer.

The recorder sits on 127.0.0.1 between Claude Code and the proxy, forwards every request
unchanged, streams the answer back chunk by chunk and keeps what the CLI sent (method, path,
headers, body) plus the status it got. :func:`sanitize_capture` turns recorded exchanges into a
fixture without machine-specific data (scratch paths, device/session ids, dates, OS version).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from .background import BackgroundApp

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "host",
        "content-length",
    }
)
# Headers whose values identify the machine, the run or a secret: kept as placeholders.
SECRET_HEADERS = {"x-api-key": "<API_KEY>", "authorization": "Bearer <AUTH_TOKEN>"}
DROPPED_HEADERS = frozenset({"host", "content-length", "connection"})


@dataclass
class Exchange:
    """One request the CLI sent through the recorder, and the answer's status and headers."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body parsed as JSON (None if empty or not JSON)."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def header(self, name: str) -> str | None:
        """A request header, case-insensitively."""
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


class Recorder(BackgroundApp):
    """Reverse proxy to ``target`` (e.g. ``http://127.0.0.1:8082``) that records requests."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target.rstrip("/")
        self.exchanges: list[Exchange] = []
        self._session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        """Where the CLI should send its requests."""
        return f"http://{self.host}:{self.port}"

    def build_app(self) -> web.Application:
        """Every method and path goes to :meth:`_forward`."""
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        return app

    async def on_cleanup(self) -> None:
        """Close the client session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        exchange = Exchange(request.method, request.path_qs, dict(request.headers), body)
        self.exchanges.append(exchange)
        if self._session is None:
            self._session = aiohttp.ClientSession(
                auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None)
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with self._session.request(
            request.method,
            self.target + request.path_qs,
            headers=headers,
            data=body if body else None,
            allow_redirects=False,
        ) as upstream:
            exchange.status = upstream.status
            exchange.response_headers = dict(upstream.headers)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            await response.prepare(request)
            if request.method != "HEAD":
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            await response.write_eof()
            return response


# -- sanitizing captures into fixtures --------------------------------------------------------

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TOOL_ID_RE = re.compile(r"\b(toolu|call)_[A-Za-z0-9]{8,}\b")
TODAY_RE = re.compile(r"(Today's date is )20\d\d-[01]\d-[0-3]\d")
OS_VERSION_RE = re.compile(r"(OS Version: )[^\n\"\\]+")


def _replace_in_json(value: Any, replace: Any) -> Any:
    """Apply ``replace(str) -> str`` to every string (keys included) inside ``value``."""
    if isinstance(value, str):
        return replace(value)
    if isinstance(value, list):
        return [_replace_in_json(v, replace) for v in value]
    if isinstance(value, dict):
        return {replace(k): _replace_in_json(v, replace) for k, v in value.items()}
    return value


def _ids_from_metadata(body: Any) -> dict[str, str]:
    """Device, account and session ids from ``metadata.user_id`` (a JSON-encoded string)."""
    found: dict[str, str] = {}
    metadata = body.get("metadata") if isinstance(body, dict) else None
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str):
        return found
    try:
        parsed = json.loads(user_id)
    except ValueError:
        return found
    if isinstance(parsed, dict):
        for key in ("device_id", "account_uuid", "session_id"):
            value = parsed.get(key)
            if isinstance(value, str) and value:
                found[value] = f"<{key.upper()}>"
    return found


def sanitize_capture(
    exchanges: list[Exchange], paths: dict[str, str], *, cli_version: str, scenario: str
) -> dict[str, Any]:
    """A fixture dict for the POST /v1/messages requests, machine-specific data replaced.

    ``paths`` maps absolute scratch paths to placeholders (e.g. ``{"/tmp/x/project":
    "<WORKDIR>"}``); their slugs (``-tmp-x-project``) become ``<WORKDIR_SLUG>``. Tool-use ids become ``toolu_<n>`` in order of appearance, so fixtures of
    the same scenario diff cleanly across CLI versions and runs.
    """
    requests = [
        e for e in exchanges if e.method == "POST" and e.path.split("?")[0] == "/v1/messages"
    ]
    fixed: dict[str, str] = {}
    for exchange in requests:
        fixed.update(_ids_from_metadata(exchange.json()))
        session = exchange.header("x-claude-code-session-id")
        if session:
            fixed[session] = "<SESSION_ID>"
    # Claude Code also names the project by its path with "/" turned into "-".
    slugs = {re.sub(r"[^A-Za-z0-9]", "-", p): v[:-1] + "_SLUG>" for p, v in paths.items()}
    ordered = sorted({**paths, **slugs, **fixed}.items(), key=lambda kv: -len(kv[0]))
    tool_ids: dict[str, str] = {}

    def tool_id(match: re.Match[str]) -> str:
        if match.group(0) not in tool_ids:
            tool_ids[match.group(0)] = f"{match.group(1)}_{len(tool_ids) + 1}"
        return tool_ids[match.group(0)]

    def replace(text: str) -> str:
        for old, new in ordered:
            text = text.replace(old, new)
        text = TOOL_ID_RE.sub(tool_id, text)
        text = TODAY_RE.sub(r"\1<DATE>", text)
        text = OS_VERSION_RE.sub(r"\1<OS_VERSION>", text)
        return text

    out = []
    for exchange in requests:
        headers = {}
        for name, value in exchange.headers.items():
            lowered = name.lower()
            if lowered in DROPPED_HEADERS:
                continue
            headers[name] = SECRET_HEADERS.get(lowered, replace(value))
        out.append(
            {
                "method": exchange.method,
                "path": exchange.path,
                "headers": headers,
                "body": _replace_in_json(exchange.json(), replace),
            }
        )
    return {"cli_version": cli_version, "scenario": scenario, "requests": out}


def leftover_machine_data(fixture: dict[str, Any], needles: list[str]) -> list[str]:
    """Needles (paths, ids) still present in a sanitized fixture; should be empty."""
    text = json.dumps(fixture, ensure_ascii=False)
    found = [n for n in needles if n and n in text]
    found += [u for u in UUID_RE.findall(text)]
    return found
