"""The `claude-code-proxy` command."""

from __future__ import annotations

import os
import sys

import click
from dotenv import find_dotenv, load_dotenv

from claude_code_proxy import __version__
from claude_code_proxy.config import ConfigError, Settings, configure_logging


def _mask(value: str | None) -> str:
    if not value:
        return "(not set)"
    return f"{value[:3]}…{value[-2:]}" if len(value) > 8 else "***"


def _banner(settings: Settings) -> str:
    mode = (
        "dynamic (each client's key is used upstream)"
        if settings.dynamic_keys
        else "static (OPENAI_API_KEY is used upstream)"
    )
    client_key = settings.anthropic_api_key or "any-value"
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    return "\n".join(
        [
            f"claude-code-proxy {__version__}",
            f"  upstream       {settings.openai_base_url}",
            f"  key mode       {mode}",
            f"  upstream key   {_mask(settings.openai_api_key)}",
            f"  client key     {'required' if settings.anthropic_api_key else 'not checked'}",
            f"  models         opus→{settings.big_model}  sonnet→{settings.middle_model}  "
            f"haiku→{settings.small_model}",
            f"  listening on   http://{settings.host}:{settings.port}",
            "  use it with:",
            f"    ANTHROPIC_BASE_URL=http://{host}:{settings.port} "
            f"ANTHROPIC_API_KEY={client_key if not settings.anthropic_api_key else '<your ANTHROPIC_API_KEY>'} claude",
        ]
    )


def load_settings(overrides: dict[str, str | None] | None = None) -> Settings:
    """Environment, then `.env` (never overriding the environment), then CLI flags."""
    load_dotenv(find_dotenv(usecwd=True), override=False)
    env = dict(os.environ)
    for key, value in (overrides or {}).items():
        if value is not None:
            env[key] = value
    return Settings.from_env(env)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", help="Address to listen on (HOST, default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (PORT, default 8082).")
@click.option("--log-level", help="CRITICAL, ERROR, WARNING, INFO or DEBUG (LOG_LEVEL).")
@click.version_option(__version__, prog_name="claude-code-proxy")
def main(host: str | None, port: int | None, log_level: str | None) -> None:
    """Serve the Anthropic Messages API on top of an OpenAI-compatible provider."""
    try:
        settings = load_settings(
            {"HOST": host, "PORT": str(port) if port is not None else None, "LOG_LEVEL": log_level}
        )
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    configure_logging(settings.log_level)
    click.echo(_banner(settings), err=True)

    import uvicorn

    from claude_code_proxy.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=settings.log_level in ("INFO", "DEBUG"),
        timeout_graceful_shutdown=30,
        server_header=False,
    )
