"""The start-up banner: what the proxy will do, keys masked, and the line to start Claude Code."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from claude_code_proxy import __version__
from claude_code_proxy.config import Settings
from claude_code_proxy.config_file import gateway_of
from claude_code_proxy.launcher import client_key, http_origin, is_loopback_host, mask_key

# Query parameters of OPENAI_BASE_URL whose values the banner masks.
SECRET_PARAM = re.compile(r"key|token|secret|sig|pass|auth", re.IGNORECASE)


def _client_key_hint(settings: Settings) -> str:
    if settings.anthropic_api_key:
        return "<your ANTHROPIC_API_KEY>"
    if settings.dynamic_keys:
        host = urlsplit(settings.openai_base_url).hostname or ""
        return client_key(settings) if is_loopback_host(host) else f"<your {host} key>"
    return "any-value"


def _shown_upstream(settings: Settings) -> str:
    """OPENAI_BASE_URL as the proxy uses it, with secret-looking query values masked."""
    params = []
    for item in filter(None, settings.openai_base_query.split("&")):
        name, sep, value = item.partition("=")
        params.append(f"{name}={mask_key(value)}" if sep and SECRET_PARAM.search(name) else item)
    return settings.openai_base_url + ("?" + "&".join(params) if params else "")


def _gateway_banner(settings: Settings) -> list[str]:
    """The providers and routes of a configuration file, for the banner."""
    from claude_code_proxy.gateway.describe import provider_line, targets_text

    gateway = gateway_of(settings)
    table = gateway.routing
    lines = [f"  config file    {gateway.path}"]
    lines += [f"  provider       {provider_line(p)}" for p in gateway.providers]
    tiers = "  ".join(f"{t}→{targets_text(table.tier(t))}" for t in ("opus", "sonnet", "haiku"))
    lines.append(f"  routes         {tiers}")
    lines.append("                 `claude-code-proxy routes` shows every rule")
    return lines


def banner(settings: Settings, *, workers: int = 1) -> str:
    """What the proxy will do, with keys masked and the exact line to start Claude Code."""
    s = settings
    mode = (
        "dynamic (each client's key is used upstream)"
        if s.dynamic_keys
        else "static (OPENAI_API_KEY is used upstream)"
    )
    client = (
        f"required ({mask_key(s.anthropic_api_key)})"
        if s.anthropic_api_key and not s.dynamic_keys
        else "forwarded upstream"
        if s.dynamic_keys
        else "not checked (any value)"
    )
    if client.startswith("not checked") and not is_loopback_host(s.host):
        # Say why a non-loopback bind without a client key was accepted (Docker, Compose).
        client += (
            f"; HOST={s.host} without ANTHROPIC_API_KEY is allowed by ALLOW_UNAUTHENTICATED=true "
            "(publish the port on 127.0.0.1 only, or set ANTHROPIC_API_KEY)"
        )
    origin = http_origin(s.host, s.port)
    if s.gateway is not None:
        upstream = _gateway_banner(s)
        upstream.append(f"  client key     {client}")
    else:
        upstream = [
            f"  upstream       {_shown_upstream(s)}"
            + (f" (Azure api-version {s.azure_api_version})" if s.azure_api_version else ""),
            f"  key mode       {mode}",
            f"  upstream key   {mask_key(s.openai_api_key)}",
            f"  client key     {client}",
            f"  models         opus→{s.big_model}  sonnet→{s.middle_model}  haiku→{s.small_model}",
            "                 other claude-* ids→BIG_MODEL; any other id is passed through",
        ]
    lines = [
        f"claude-code-proxy {__version__}",
        *upstream,
        f"  max tokens     {s.max_tokens_limit or 'as requested by the client'}",
        f"  timeouts       request {s.request_timeout:g}s, connect {s.connect_timeout:g}s",
        f"  listening on   http://{s.host}:{s.port or '(a free port)'}"
        + (f" ({workers} workers)" if workers > 1 else ""),
        f"  log level      {s.log_level}",
        "  use it with:",
        f"    ANTHROPIC_BASE_URL={origin} ANTHROPIC_AUTH_TOKEN={_client_key_hint(s)} claude",
        "  or let it start Claude Code for you: claude-code-proxy run -- claude",
    ]
    return "\n".join(lines)
