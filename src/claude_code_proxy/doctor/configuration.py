"""The settings themselves: the mode, the mapping, and mistakes visible without a network."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from claude_code_proxy.config import Settings
from claude_code_proxy.doctor.context import Context
from claude_code_proxy.doctor.report import Check
from claude_code_proxy.gateway.describe import targets_text
from claude_code_proxy.launcher import is_loopback_host, mask_key


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
                f"OPENAI_API_KEY must be {_whose_key(host)}; the key clients send to this "
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


def _whose_key(host: str) -> str:
    """`your api.openai.com key`; a server on this machine has no account to speak of."""
    if is_loopback_host(host) or host == "host.docker.internal":
        return f"the key your server at {host} expects (any value if it checks none)"
    return f"your {host} key"


class ConfigurationCheck:
    """Says which mode and mapping are in effect, then lists the settings' own problems."""

    def run(self, ctx: Context) -> None:
        s = ctx.settings
        if s.gateway is not None:
            table = s.gateway.routing
            tiers = " ".join(
                f"{t}→{targets_text(table.tier(t))}" for t in ("opus", "sonnet", "haiku")
            )
            names = ", ".join(p.name for p in s.gateway.providers)
            ctx.add("configuration", "PASS", f"{s.gateway.path}: providers {names}; {tiers}")
        else:
            mode = "static" if not s.dynamic_keys else "dynamic"
            key = (
                f"upstream key OPENAI_API_KEY={mask_key(s.openai_api_key)}"
                if not s.dynamic_keys
                else f"clients' keys go upstream (doctor uses {mask_key(ctx.key)})"
            )
            ctx.add(
                "configuration",
                "PASS",
                f"{mode} mode, {key}, upstream {s.openai_base_url}, "
                f"opus→{s.big_model} sonnet→{s.middle_model} haiku→{s.small_model}",
            )
        client_url = ctx.environ.get("ANTHROPIC_BASE_URL", "").strip().rstrip("/")
        problems = config_problems(s) if s.gateway is None else []
        ctx.base_url_doubled = any(check.name == "base URL" for check in problems)
        if client_url.endswith("/v1"):
            problems.insert(
                1 if ctx.base_url_doubled else 0,
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
            ctx.add(check.name, check.status, check.detail, check.fix)
