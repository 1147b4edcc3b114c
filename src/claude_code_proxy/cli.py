"""The `claude-code-proxy` command: serve (the default), doctor, and run.

Configuration comes from the environment, then a `.env` file (never overriding the
environment), then command-line flags, which are written into the same mapping that
`Settings.from_env` reads, so every path validates settings the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import click
from dotenv import dotenv_values, find_dotenv

from claude_code_proxy import __version__
from claude_code_proxy.banner import banner
from claude_code_proxy.config import ConfigError, Settings, configure_logging
from claude_code_proxy.config_file import CONFIG_ENV, gateway_of
from claude_code_proxy.doctor import (
    DEFAULT_TIMEOUT,
    Check,
    Doctor,
    config_problems,
    format_check,
    summary,
)
from claude_code_proxy.launcher import (
    BackgroundProxy,
    ProxyStartError,
    child_environment,
    client_key,
    find_settings_overrides,
    http_origin,
    probe_health,
    probe_key,
    run_command,
    signal_handlers,
)
from claude_code_proxy.logs import TEXT_FORMAT, JsonFormatter, json_line
from claude_code_proxy.windows import ContextWindows, client_env

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
APP_FACTORY = "claude_code_proxy.app:create_app_from_env"
EXIT_CONFIG = 2
RUN_DISCOVERY_WAIT = 6.0  # seconds `run` waits for the context windows before starting
EXIT_STARTUP_FAILURE = 3  # uvicorn's code when it cannot serve (port taken, lifespan failed)

#: (flag, parameter name, environment variable, click type, help). Values stay strings: the
#: settings validate them as they do the variables, so an error names the variable.
ENV_FLAGS: tuple[tuple[str, str, str, Any, str], ...] = (
    (
        "--config",
        "config",
        CONFIG_ENV,
        click.Path(exists=True, dir_okay=False),
        "Providers and routes file (CLAUDE_CODE_PROXY_CONFIG, default ./claude-code-proxy.toml "
        "if present); see docs/routing.md.",
    ),
    ("--host", "host", "HOST", str, "Address to listen on (HOST, default 127.0.0.1)."),
    ("--port", "port", "PORT", str, "Port to listen on (PORT, default 8082)."),
    (
        "--log-level",
        "log_level",
        "LOG_LEVEL",
        str,
        "CRITICAL, ERROR, WARNING, INFO (adds an access log) or DEBUG (LOG_LEVEL).",
    ),
    (
        "--base-url",
        "base_url",
        "OPENAI_BASE_URL",
        str,
        "Upstream OpenAI-compatible base URL (OPENAI_BASE_URL).",
    ),
    ("--big-model", "big_model", "BIG_MODEL", str, "Upstream model for opus (BIG_MODEL)."),
    (
        "--middle-model",
        "middle_model",
        "MIDDLE_MODEL",
        str,
        "Upstream model for sonnet (MIDDLE_MODEL, default BIG_MODEL).",
    ),
    ("--small-model", "small_model", "SMALL_MODEL", str, "Upstream model for haiku (SMALL_MODEL)."),
    (
        "--max-tokens-limit",
        "max_tokens_limit",
        "MAX_TOKENS_LIMIT",
        str,
        "Cap on the upstream max tokens (MAX_TOKENS_LIMIT, default none).",
    ),
    (
        "--request-timeout",
        "request_timeout",
        "REQUEST_TIMEOUT",
        str,
        "Seconds the upstream may stay silent (REQUEST_TIMEOUT, default 600).",
    ),
)
FLAG_PARAMS = frozenset(param for _, param, *_ in ENV_FLAGS) | {"env_file"}


def proxy_options(func: F) -> F:
    """The flags that mirror environment variables, shared by every command."""
    for flag, param, _, kind, help_text in reversed(ENV_FLAGS):
        func = click.option(flag, param, type=kind, default=None, help=help_text)(func)
    return click.option(
        "--env-file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Read this file instead of the nearest .env.",
    )(func)


def _flag_values(ctx: click.Context, options: Mapping[str, Any]) -> dict[str, Any]:
    """This command's flags over the ones given before the subcommand name."""
    merged: dict[str, Any] = {}
    root = ctx.find_root()
    if root is not ctx:
        merged.update({k: v for k, v in root.params.items() if k in FLAG_PARAMS and v is not None})
    merged.update({k: v for k, v in options.items() if k in FLAG_PARAMS and v is not None})
    return merged


def _overrides(flags: Mapping[str, Any]) -> dict[str, str]:
    overrides = {
        env: str(flags[param]) for _, param, env, _, _ in ENV_FLAGS if flags.get(param) is not None
    }
    if CONFIG_ENV in overrides:  # workers and `run`'s proxy may start elsewhere
        overrides[CONFIG_ENV] = str(Path(overrides[CONFIG_ENV]).resolve())
    return overrides


def read_dotenv(env_file: Path | None = None) -> dict[str, str]:
    """The `.env` values (the given file, or the nearest one from the working directory)."""
    if env_file is not None:
        if not env_file.is_file():
            raise ConfigError(f"--env-file {env_file}: no such file")
        path = str(env_file)
    else:
        path = find_dotenv(usecwd=True)
    if not path:
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def effective_env(
    overrides: Mapping[str, str | None] | None = None, env_file: Path | None = None
) -> dict[str, str]:
    """Environment, then `.env` (never overriding the environment), then CLI flags."""
    env = {**read_dotenv(env_file), **os.environ}
    for key, value in (overrides or {}).items():
        if value is not None:
            env[key] = value
    return env


def load_settings(
    overrides: Mapping[str, str | None] | None = None, env_file: Path | None = None
) -> Settings:
    """Settings from the environment, `.env` and flags; raises ConfigError."""
    return Settings.from_env(effective_env(overrides, env_file))


def _settings_or_exit(env: Mapping[str, str]) -> Settings:
    try:
        return Settings.from_env(env)
    except ConfigError as exc:
        json_mode = env.get("LOG_FORMAT", "").strip().lower() == "json"
        _say(f"configuration error: {exc}", json_mode=json_mode, level="ERROR")
        sys.exit(EXIT_CONFIG)


def _say(text: str, *, json_mode: bool, level: str = "INFO", **fields: Any) -> None:
    """A line on stderr from `serve`: as written, or (LOG_FORMAT=json) one JSON object, so
    that every line a log shipper reads parses."""
    if json_mode:
        text = json_line(level, "claude_code_proxy.cli", text, **fields)
    click.echo(text, err=True)


# ---------------------------------------------------------------- commands


@click.group(
    invoke_without_command=True,
    context_settings=CONTEXT,
    epilog=(
        "Without a command, `serve` runs. See `claude-code-proxy COMMAND --help`.\n\n"
        "Keys have no flags (command lines show in `ps`): set OPENAI_API_KEY (the upstream "
        "key; unset, each client's key is sent upstream) and ANTHROPIC_API_KEY (the key "
        "clients must send) in the environment or .env. Every variable, e.g. "
        "CONNECT_TIMEOUT, MODEL_MAP, AZURE_API_VERSION: README, Configuration."
    ),
)
@proxy_options
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes for serve (default 1).",
)
@click.version_option(__version__, "-V", "--version", prog_name="claude-code-proxy")
@click.pass_context
def main(ctx: click.Context, /, workers: int | None, **options: Any) -> None:
    """Run Claude Code on OpenAI-compatible providers.

    Serves the Anthropic Messages API and translates it to OpenAI Chat Completions.
    Settings come from the environment and .env; flags override them.
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve, workers=workers, **options)


@main.command(context_settings=CONTEXT)
@proxy_options
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (default 1); more than 1 runs uvicorn's process manager.",
)
@click.pass_context
def serve(ctx: click.Context, /, workers: int | None, **options: Any) -> None:
    """Serve the proxy (the default command)."""
    root_workers = ctx.find_root().params.get("workers")
    workers = workers or root_workers or 1
    flags = _flag_values(ctx, options)
    try:
        dotenv = read_dotenv(flags.get("env_file"))
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    # As before: `.env` fills the process environment (metrics and workers read it there).
    for key, value in dotenv.items():
        os.environ.setdefault(key, value)
    overrides = _overrides(flags)
    settings = _settings_or_exit({**os.environ, **overrides})
    configure_logging(settings.log_level, settings.log_format)
    json_mode = settings.log_format == "json"

    import uvicorn

    from claude_code_proxy.limits import server_options

    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "access_log": settings.log_level in ("INFO", "DEBUG"),
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
        "server_header": False,
        **server_options(settings),
    }
    if settings.log_format == "json":
        # uvicorn's loggers then propagate to the JSON root handler (logs.py), its access
        # lines included, instead of getting uvicorn's text formatters.
        common["log_config"] = None
    if workers > 1:
        # Check the port before the banner; PORT=0 becomes the free port the banner names.
        probe = _bind_or_exit(settings.host, settings.port, json_mode=json_mode)
        port = probe.getsockname()[1]
        probe.close()
        settings = dataclasses.replace(settings, port=port)
        common["port"] = port
        overrides["PORT"] = str(port)
        _echo_banner(settings, workers)
        # Each worker builds its own app from os.environ: hand it the effective settings.
        os.environ.update(overrides)
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # /metrics then aggregates every worker (prometheus_client multi-process mode).
            import tempfile

            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ccp-metrics-")
        with _stop_signals_are_success():
            uvicorn.run(APP_FACTORY, factory=True, workers=workers, **common)
        return

    from claude_code_proxy.app import create_app

    try:
        app = create_app(settings)
    except ValueError as exc:  # e.g. an invalid PROVIDER_PROFILES file
        _say(f"configuration error: {exc}", json_mode=json_mode, level="ERROR")
        sys.exit(EXIT_CONFIG)
    # Bind first: a port in use fails before the banner, and PORT=0 names the port picked.
    sock = _bind_or_exit(settings.host, settings.port, json_mode=json_mode)
    if settings.port != 0:
        sock.close()  # uvicorn binds it again (SO_REUSEADDR), with its own socket options
        _echo_banner(settings, workers)
        with _stop_signals_are_success():
            uvicorn.run(app, **common)
        return
    _echo_banner(dataclasses.replace(settings, port=sock.getsockname()[1]), workers)
    server = uvicorn.Server(uvicorn.Config(app, **common))
    with _stop_signals_are_success():
        server.run(sockets=[sock])
    if not server.started:
        sys.exit(EXIT_STARTUP_FAILURE)


def _bind_or_exit(host: str, port: int, *, json_mode: bool = False) -> socket.socket:
    """A listening socket on host:port (as uvicorn binds it), or exit 3 saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = (
                " (another claude-code-proxy? `claude-code-proxy run` reuses one that is "
                "running); choose another --port, or --port 0 for a free one"
            )
        _say(
            f"error: cannot listen on {host}:{port}: {reason}{hint}",
            json_mode=json_mode,
            level="ERROR",
        )
        sys.exit(EXIT_STARTUP_FAILURE)
    sock.set_inheritable(True)
    return sock


def _echo_warnings(settings: Settings, *, json_mode: bool = False) -> None:
    """The set-up mistakes the doctor would flag, as warnings with their fix."""
    for check in config_problems(settings):
        _say(f"warning: {check.detail}; fix: {check.fix}", json_mode=json_mode, level="WARNING")


def _echo_banner(settings: Settings, workers: int) -> None:
    json_mode = settings.log_format == "json"
    text = banner(settings, workers=workers)
    if json_mode:
        origin = f"http://{settings.host}:{settings.port}"
        lines = [line.strip() for line in text.splitlines()[1:]]
        _say(f"claude-code-proxy {__version__} listening on {origin}", json_mode=True, banner=lines)
    else:
        click.echo(text, err=True)
    warning = settings.exposure_warning()
    if warning is not None:
        _say(f"warning: {warning}", json_mode=json_mode, level="WARNING")
    _echo_warnings(settings, json_mode=json_mode)


@contextlib.contextmanager
def _stop_signals_are_success() -> Iterator[None]:
    """Exit 0 after a graceful shutdown on SIGTERM/SIGINT.

    uvicorn re-raises the signal that stopped it once it has shut down, which would kill
    the process with that signal (or print "Aborted!"); a requested stop is a success for
    process managers (Docker, systemd), so the re-raised signal lands here and is dropped.
    """

    def stopped(signum: int, frame: FrameType | None) -> None:
        return None

    with signal_handlers(stopped, (signal.SIGINT, signal.SIGTERM)):
        yield


def _echo_check(check: Check) -> None:
    colors = {"PASS": "green", "FAIL": "red", "WARN": "yellow", "INFO": "cyan", "SKIP": "white"}
    for i, line in enumerate(format_check(check)):
        if i == 0:
            status = click.style(check.status, fg=colors[check.status], bold=True)
            line = line.replace(check.status, status, 1)
        click.echo(line)


@main.command(context_settings=CONTEXT, short_help="Check the set-up and say how to fix it.")
@proxy_options
@click.option(
    "--no-chat",
    is_flag=True,
    help="Skip the chat checks (no tokens spent): configuration, connection, key, models.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds each chat check may take.",
)
@click.pass_context
def doctor(ctx: click.Context, /, no_chat: bool, timeout: float, **options: Any) -> None:
    """Check the configuration and the upstream, and say how to fix what fails.

    Checks: configuration, Claude Code settings files, reachability of the upstream,
    authentication (GET /models), that each mapped model exists, and, through an
    in-process proxy, a streamed text reply, a streamed tool call round trip
    (tool_use → tool_result → text) and reasoning support (informational).
    Exits 1 when a check fails, 2 when the configuration is invalid.
    """
    flags = _flag_values(ctx, options)
    click.echo(f"claude-code-proxy {__version__} doctor")
    try:
        env = effective_env(_overrides(flags), flags.get("env_file"))
        settings = Settings.from_env(env)
    except ConfigError as exc:
        _echo_check(Check("configuration", "FAIL", str(exc), "fix the setting named above"))
        click.echo("problems found: the configuration is invalid")
        sys.exit(EXIT_CONFIG)
    configure_logging(settings.log_level, settings.log_format)
    checker = Doctor(settings, env, chat=not no_chat, timeout=timeout, report=_echo_check)
    results = checker.run()
    click.echo(summary(results))
    sys.exit(1 if checker.failed else 0)


@main.command(context_settings=CONTEXT, short_help="Show the routing table or one decision.")
@proxy_options
@click.argument("model", required=False)
@click.option(
    "--tokens",
    type=click.IntRange(min=0),
    default=0,
    help="The request's size in tokens (long_context).",
)
@click.option("--image", is_flag=True, help="The request carries an image.")
@click.option("--web-search", is_flag=True, help="The request carries a web_search tool.")
@click.pass_context
def routes(
    ctx: click.Context,
    /,
    model: str | None,
    tokens: int,
    image: bool,
    web_search: bool,
    **options: Any,
) -> None:
    """Print the resolved routing table, or where a request for MODEL would go.

    \b
    Examples:
      claude-code-proxy routes
      claude-code-proxy routes claude-sonnet-4-5 --tokens 80000
      claude-code-proxy routes claude-haiku-4-5 --image
    """
    from claude_code_proxy.gateway.describe import decision_lines, routes_lines
    from claude_code_proxy.gateway.router import RequestFacts, route

    flags = _flag_values(ctx, options)
    try:
        settings = load_settings(_overrides(flags), flags.get("env_file"))
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    gateway = gateway_of(settings)
    if model is None:
        click.echo("\n".join(routes_lines(gateway)))
        return
    facts = RequestFacts(model, tokens, has_image=image, has_web_search=web_search)
    click.echo("\n".join(decision_lines(model, route(gateway.routing, facts))))


@main.command(
    context_settings={**CONTEXT, "ignore_unknown_options": True, "allow_interspersed_args": False}
)
@proxy_options
@click.option(
    "--fresh",
    is_flag=True,
    help="Always start a new proxy, even if one answers at HOST:PORT.",
)
@click.option(
    "--auth-token/--api-key",
    "auth_token",
    default=True,
    help=(
        "Pass the key as ANTHROPIC_AUTH_TOKEN (sent as Bearer; the default: Claude Code asks "
        "nothing about it) or as ANTHROPIC_API_KEY (interactive Claude Code then asks once "
        "whether to use it: answer Yes)."
    ),
)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the proxy's log (at LOG_LEVEL) here; otherwise only errors are shown.",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(
    ctx: click.Context,
    /,
    fresh: bool,
    auth_token: bool,
    log_file: Path | None,
    command: tuple[str, ...],
    **options: Any,
) -> None:
    """Start the proxy and run COMMAND (default: claude) pointed at it.

    \b
    Examples:
      claude-code-proxy run -- claude
      claude-code-proxy run --big-model gpt-4.1 -- claude -p "explain this repo"

    The proxy listens on a free 127.0.0.1 port for as long as the command runs (or the one
    already answering at HOST:PORT is used). The command gets ANTHROPIC_BASE_URL and a key
    the proxy accepts; SIGINT/SIGTERM/SIGHUP are forwarded and its exit code is returned.
    """
    argv = list(command) or ["claude"]
    flags = _flag_values(ctx, options)
    parent_env = dict(os.environ)  # the command gets this, not the proxy's .env secrets
    try:
        env = effective_env(_overrides(flags), flags.get("env_file"))
        # A proxy already running may listen anywhere; a new one listens on loopback only.
        running_host = env.get("HOST", "").strip() or "127.0.0.1"
        settings = Settings.from_env({**env, "HOST": "127.0.0.1"})
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    executable = shutil.which(argv[0], path=parent_env.get("PATH"))
    if executable is None and os.sep in argv[0] and Path(argv[0]).is_file():
        click.echo(f"error: cannot run {argv[0]}: permission denied (not executable)", err=True)
        sys.exit(126)
    if executable is None:
        hint = " (install Claude Code: npm install -g @anthropic-ai/claude-code)"
        click.echo(
            f"error: command not found: {argv[0]}{hint if argv[0] == 'claude' else ''}", err=True
        )
        sys.exit(127)
    _configure_run_logging(settings, log_file)

    overrides, problems = find_settings_overrides(parent_env)
    for override in overrides:
        effect = (
            "so it will call Anthropic, NOT this proxy: remove it there"
            if override.bypasses_proxy()
            else "so it may bypass or mis-key this proxy"
        )
        click.echo(
            f"warning: {override.describe()}; Claude Code applies it over the environment, "
            f"{effect}",
            err=True,
        )
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)
    _echo_warnings(settings)

    proxy: BackgroundProxy | None = None
    key = client_key(settings)
    if not fresh and probe_health(running_host, settings.port, timeout=2.0):
        base_url = http_origin(running_host, settings.port)
        rejected = probe_key(running_host, settings.port, key, auth_token=auth_token)
        if rejected is not None:
            click.echo(
                f"error: the proxy already running at {base_url} rejects the key this shell "
                f"would give the command ({rejected}). Set ANTHROPIC_API_KEY here (environment "
                "or .env) to a key it accepts (its own ANTHROPIC_API_KEY; in dynamic mode your "
                "upstream key), or use --fresh to start a new proxy with this configuration.",
                err=True,
            )
            sys.exit(EXIT_CONFIG)
        click.echo(
            f"claude-code-proxy: using the proxy already running at {base_url} "
            "(--fresh starts a new one with this configuration)",
            err=True,
        )
    else:
        proxy = BackgroundProxy(
            settings,
            log_level=settings.log_level if log_file else "ERROR",
            access_log=log_file is not None and settings.log_level in ("INFO", "DEBUG"),
        )
        try:
            proxy.start()
        except (ProxyStartError, OSError, ValueError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_CONFIG)
        base_url = proxy.base_url
        if settings.gateway is not None:
            where = f"routes from {settings.gateway.path}"
        else:
            where = (
                f"{settings.openai_base_url} (opus→{settings.big_model}, "
                f"sonnet→{settings.middle_model}, haiku→{settings.small_model})"
            )
        click.echo(f"claude-code-proxy: {where} on {base_url}", err=True)
    env, notes = child_environment(parent_env, base_url=base_url, key=key, auth_token=auth_token)
    for note in notes:
        click.echo(f"claude-code-proxy: {note}", err=True)
    # Claude Code compacts by the window it believes in: tell it the real one.
    if proxy is not None:  # ours: its own background discovery finds them
        windows = proxy.app.state.proxy.windows.wait_known(RUN_DISCOVERY_WAIT)
    else:
        windows = asyncio.run(ContextWindows(settings).collect(RUN_DISCOVERY_WAIT / 3))
    added, line = client_env(parent_env, windows)
    env.update(added)
    if line:
        click.echo(f"claude-code-proxy: {line}", err=True)
    try:
        code = run_command([executable, *argv[1:]], env)
    except OSError as exc:
        click.echo(f"error: cannot run {argv[0]}: {exc.strerror or exc}", err=True)
        code = 126
    finally:
        if proxy is not None:
            proxy.stop()
    sys.exit(code)


def _configure_run_logging(settings: Settings, log_file: Path | None) -> None:
    """Keep the proxy's log out of the command's terminal unless asked for."""
    if log_file is None:
        configure_logging("ERROR", settings.log_format)
        return
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(
        JsonFormatter() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.addHandler(handler)
    configure_logging(settings.log_level, settings.log_format)
    root.setLevel(settings.log_level)
