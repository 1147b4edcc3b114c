"""Anthropic's `web_search` server tool, run by the proxy: the pure pieces (docs/web-search.md).

The request's `web_search_*` tool is offered to the model as a `web_search` function; the
proxy runs the searches and answers with the blocks the Messages API would send:
`server_tool_use`, then `web_search_tool_result` holding `web_search_result` items. Their
`encrypted_content` is the proxy's own reversible encoding of the page excerpt, so a
client sending the blocks back in history gives the model the same text again.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from claude_code_proxy.translate.errors import RequestValidationError

TOOL_TYPE_PREFIX = "web_search_"
FUNCTION_NAME = "web_search"
# Longer queries are refused with `query_too_long` (Brave's own limit is 400 characters).
MAX_QUERY_CHARS = 400
# Excerpt kept per result: enough to answer from, bounded so a turn stays small.
MAX_EXCERPT_CHARS = 2000
ERROR_CODES = frozenset(
    {
        "invalid_tool_input",
        "unavailable",
        "max_uses_exceeded",
        "too_many_requests",
        "query_too_long",
        "request_too_large",
    }
)
_ERROR_TEXT = {
    "invalid_tool_input": "the call needs a non-empty string `query`",
    "unavailable": "the search service is unavailable",
    "max_uses_exceeded": "the search limit for this turn is used up; answer with what you have",
    "too_many_requests": "the search service is rate limited or out of quota",
    "query_too_long": f"the query is longer than {MAX_QUERY_CHARS} characters",
    "request_too_large": "the request is too large",
}
# Marks the proxy's encoding, so content from Anthropic's real API is never misread.
_ENCODING_PREFIX = "ccp1."


@dataclass(frozen=True)
class UserLocation:
    """The tool's `user_location` (`type: approximate`); every field optional."""

    city: str | None = None
    region: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2
    timezone: str | None = None  # IANA name


@dataclass(frozen=True)
class WebSearchTool:
    """What the client asked of its web_search server tool."""

    name: str = FUNCTION_NAME
    max_uses: int | None = None
    allowed_domains: tuple[str, ...] = ()
    blocked_domains: tuple[str, ...] = ()
    user_location: UserLocation | None = None


@dataclass(frozen=True)
class SearchResult:
    url: str
    title: str
    excerpt: str = ""
    page_age: str | None = None


def is_web_search_tool(tool: Any) -> bool:
    kind = tool.get("type") if isinstance(tool, dict) else None
    return isinstance(kind, str) and kind.startswith(TOOL_TYPE_PREFIX)


def web_search_tool(tools: Any) -> WebSearchTool | None:
    """The request's web_search server tool, validated; None when it has none."""
    if not isinstance(tools, list):
        return None
    for index, tool in enumerate(tools):
        if is_web_search_tool(tool):
            return _parse_tool(tool, f"tools.{index}")
    return None


def _parse_tool(tool: dict[str, Any], where: str) -> WebSearchTool:
    max_uses = tool.get("max_uses")
    if max_uses is not None and (
        isinstance(max_uses, bool) or not isinstance(max_uses, int) or max_uses < 1
    ):
        raise RequestValidationError(f"{where}.max_uses: must be a positive integer")
    allowed = _domains(tool.get("allowed_domains"), f"{where}.allowed_domains")
    blocked = _domains(tool.get("blocked_domains"), f"{where}.blocked_domains")
    if allowed and blocked:
        raise RequestValidationError(
            f"{where}: allowed_domains and blocked_domains cannot both be set"
        )
    name = tool.get("name")
    return WebSearchTool(
        name=name if isinstance(name, str) and name else FUNCTION_NAME,
        max_uses=max_uses,
        allowed_domains=allowed,
        blocked_domains=blocked,
        user_location=_location(tool.get("user_location"), f"{where}.user_location"),
    )


def _domains(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
        raise RequestValidationError(f"{where}: must be a list of domain strings")
    domains = []
    for domain in value:
        if "://" in domain:
            raise RequestValidationError(f"{where}: {domain!r} must not include a scheme")
        cleaned = domain.strip().lower().rstrip("/")
        if cleaned:
            domains.append(cleaned)
    return tuple(domains)


def _location(value: Any, where: str) -> UserLocation | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RequestValidationError(f"{where}: must be an object")
    fields: dict[str, str | None] = {}
    for key in ("city", "region", "country", "timezone"):
        item = value.get(key)
        if item is not None and not isinstance(item, str):
            raise RequestValidationError(f"{where}.{key}: must be a string")
        fields[key] = item or None
    return UserLocation(**fields)


def function_spec(tool: WebSearchTool) -> dict[str, Any]:
    """The function the model is offered in place of the server tool (a dialect-neutral
    `{name, description, parameters}` spec, as translate/tools.py builds them)."""
    description = (
        "Search the web for current information. Returns the most relevant pages, each "
        "with its title, URL, age when known, and an excerpt. Use it for recent events and "
        "for facts you are not sure of, then answer from the results and cite the URLs."
    )
    if tool.allowed_domains:
        description += " Only results from these domains are returned: " + ", ".join(
            tool.allowed_domains
        )
    if tool.blocked_domains:
        description += " Results from these domains are never returned: " + ", ".join(
            tool.blocked_domains
        )
    if tool.max_uses is not None:
        description += f" At most {tool.max_uses} searches per answer."
    return {
        "name": FUNCTION_NAME,
        "description": description,
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "The search query."}},
            "required": ["query"],
        },
    }


def checked_query(tool_input: Any) -> tuple[str, str | None]:
    """The query of a call, or the error code to answer it with."""
    query = tool_input.get("query") if isinstance(tool_input, dict) else None
    if not isinstance(query, str) or not query.strip():
        return "", "invalid_tool_input"
    query = query.strip()
    if len(query) > MAX_QUERY_CHARS:
        return query, "query_too_long"
    return query, None


# ------------------------------------------------------------------------------ domains


def _domain_matches(host: str, path: str, rule: str) -> bool:
    """`example.com` covers its subdomains; `example.com/blog` also limits the path."""
    rule_host, _, rule_path = rule.partition("/")
    rule_host = rule_host.removeprefix("*.")
    if host != rule_host and not host.endswith("." + rule_host):
        return False
    return not rule_path or path.lstrip("/").startswith(rule_path)


def domain_allowed(url: str, tool: WebSearchTool) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if not host:
        return False
    if tool.allowed_domains and not any(
        _domain_matches(host, parts.path, rule) for rule in tool.allowed_domains
    ):
        return False
    return not any(_domain_matches(host, parts.path, rule) for rule in tool.blocked_domains)


def filter_results(
    results: list[SearchResult], tool: WebSearchTool, limit: int
) -> list[SearchResult]:
    """Results the tool's domain limits allow, without duplicates, at most `limit`."""
    kept: list[SearchResult] = []
    seen: set[str] = set()
    for result in results:
        if result.url in seen or not domain_allowed(result.url, tool):
            continue
        seen.add(result.url)
        kept.append(result)
        if len(kept) >= limit:
            break
    return kept


# ---------------------------------------------------------------------------- blocks


def encode_content(excerpt: str) -> str:
    """The proxy's `encrypted_content`: the excerpt, compressed, in URL-safe base64."""
    packed = zlib.compress(orjson.dumps({"excerpt": excerpt[:MAX_EXCERPT_CHARS]}))
    return _ENCODING_PREFIX + base64.urlsafe_b64encode(packed).decode("ascii")


def decode_content(value: Any) -> str | None:
    """The excerpt from an `encrypted_content` the proxy made; None for anything else."""
    if not isinstance(value, str) or not value.startswith(_ENCODING_PREFIX):
        return None
    try:
        packed = base64.urlsafe_b64decode(value[len(_ENCODING_PREFIX) :])
        data = orjson.loads(zlib.decompress(packed))
    except (binascii.Error, ValueError, zlib.error, orjson.JSONDecodeError):
        return None
    excerpt = data.get("excerpt") if isinstance(data, dict) else None
    return excerpt if isinstance(excerpt, str) else None


def result_block(tool_use_id: str, results: list[SearchResult]) -> dict[str, Any]:
    items = []
    for result in results:
        item: dict[str, Any] = {
            "type": "web_search_result",
            "url": result.url,
            "title": result.title,
            "encrypted_content": encode_content(result.excerpt),
        }
        if result.page_age:
            item["page_age"] = result.page_age
        items.append(item)
    return {"type": "web_search_tool_result", "tool_use_id": tool_use_id, "content": items}


def error_block(tool_use_id: str, code: str) -> dict[str, Any]:
    return {
        "type": "web_search_tool_result",
        "tool_use_id": tool_use_id,
        "content": {"type": "web_search_tool_result_error", "error_code": code},
    }


def result_text(block: dict[str, Any]) -> str:
    """What the model reads for a `web_search_tool_result`, fresh or from history."""
    content = block.get("content")
    if isinstance(content, dict):
        code = content.get("error_code")
        reason = _ERROR_TEXT.get(code, "") if isinstance(code, str) else ""
        return f"Web search failed ({code}): {reason}".rstrip(": ")
    if not isinstance(content, list):
        return "Web search failed: the result is missing"
    entries: list[str] = []
    for item in content:
        if not isinstance(item, dict) or item.get("type") != "web_search_result":
            continue
        lines = [f"[{len(entries) + 1}] {_text(item.get('title')) or '(untitled)'}"]
        lines.append(f"URL: {_text(item.get('url'))}")
        if item.get("page_age"):
            lines.append(f"Age: {_text(item.get('page_age'))}")
        excerpt = decode_content(item.get("encrypted_content"))
        if excerpt:
            lines.append(excerpt)
        entries.append("\n".join(lines))
    if not entries:
        return "Web search returned no results."
    return "Web search results:\n\n" + "\n\n".join(entries)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
