"""Run the proxy in the background and launch a client (Claude Code) pointed at it.

`claude-code-proxy run -- claude` and `claude-code-proxy doctor` both need the real HTTP
chain while the main thread does something else (wait for a child, run checks), so the
proxy is served by uvicorn in a daemon thread on a pre-bound loopback socket; signal
handling stays in the main thread where Python delivers signals.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import urlsplit

from claude_code_proxy.config import Settings

#: The client key `run` and `doctor` send when none is configured: the proxy checks none in
#: static mode, and in dynamic mode key-less local servers (Ollama …) accept it; it is
#: shaped like an upstream key (`sk-…`) so it passes the default CLIENT_KEY_PATTERN.
PLACEHOLDER_KEY = "sk-claude-code-proxy"

#: Keys in a Claude Code settings file's `env` that win over the environment `run` sets.
OVERRIDING_ENV = (
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_DEFAULT_OPUS_MODEL",
    "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
)
SECRET_ENV = frozenset({"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"})

#: Variables that send Claude Code to another cloud instead of ANTHROPIC_BASE_URL.
CLOUD_SWITCHES = ("CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", "CLAUDE_CODE_USE_FOUNDRY")


#: Public key prefixes shown whole by the mask: `sk-ant-` is what makes a key recognisably
#: Anthropic's (the doctor warns about one in OPENAI_API_KEY, and must show why).
KNOWN_KEY_PREFIXES = ("sk-ant-",)


def mask_key(value: str | None) -> str:
    """Enough of a key to recognise it, never enough to use it."""
    if not value:
        return "(not set)"
    if len(value) <= 8:
        return "***"
    prefix = next((p for p in KNOWN_KEY_PREFIXES if value.startswith(p)), value[:3])
    if len(value) - len(prefix) < 8:
        prefix = value[:3]
    return f"{prefix}…{value[-2:]}"


def redact(text: str, secrets: Sequence[str | None]) -> str:
    """Replace every full secret in `text` (upstream errors may echo the key) by its mask."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, mask_key(secret))
    return text


def client_key(settings: Settings) -> str:
    """The key a client of this proxy must send.

    Static mode: the proxy's ANTHROPIC_API_KEY when it checks one, else anything.
    Dynamic mode: the client's key goes upstream, so ANTHROPIC_API_KEY (the user's upstream
    key) when set, else a placeholder that key-less local servers (Ollama …) accept.
    """
    return settings.anthropic_api_key or PLACEHOLDER_KEY


def is_loopback_host(host: str) -> bool:
    """Whether `host` names this machine only (a key-less local server, a safe bind)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def connect_host(host: str) -> str:
    """Where a local client reaches a server listening on `host`."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "::1"
    return host.strip("[]")


def http_origin(host: str, port: int) -> str:
    host = connect_host(host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def probe_health(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when a claude-code-proxy answers `GET /health` there (no HTTP proxies involved)."""
    conn = http.client.HTTPConnection(connect_host(host), port, timeout=timeout)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        body = response.read(4096)
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
    if response.status != 200:
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("status") == "healthy"


def probe_key(
    host: str, port: int, key: str, *, auth_token: bool, timeout: float = 5.0
) -> str | None:
    """Why the proxy at host:port would refuse `key` (a 401 on `GET /v1/models`, which never
    calls the upstream), or None when it accepts it (or cannot say)."""
    header = {"authorization": f"Bearer {key}"} if auth_token else {"x-api-key": key}
    conn = http.client.HTTPConnection(connect_host(host), port, timeout=timeout)
    try:
        conn.request("GET", "/v1/models", headers=header)
        response = conn.getresponse()
        body = response.read(8192)
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    if response.status != 401:
        return None
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", "replace")[:200]
    return f"401: {message}"


class ProxyStartError(RuntimeError):
    """The in-process proxy did not come up (bad profile file, lifespan failure …)."""


class BackgroundProxy:
    """The proxy app served by uvicorn in a daemon thread on a loopback port."""

    def __init__(
        self,
        settings: Settings,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "error",
        access_log: bool = False,
    ) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.log_level = log_level
        self.access_log = access_log
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._failure: list[BaseException] = []
        self.app: Any = None

    @property
    def base_url(self) -> str:
        return http_origin(self.host, self.port)

    def start(self, timeout: float = 30.0) -> BackgroundProxy:
        """Bind, serve, and return once the lifespan (upstream pool) is up."""
        import uvicorn

        from claude_code_proxy.app import create_app
        from claude_code_proxy.limits import server_options

        app = self.app = create_app(self.settings)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((self.host, self.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            host=self.host,
            port=self.port,
            lifespan="on",
            log_config=None,  # log through the root logger the CLI configured
            log_level=self.log_level.lower(),
            access_log=self.access_log,
            timeout_graceful_shutdown=5,
            server_header=False,
            **server_options(self.settings),
        )
        server = uvicorn.Server(config)
        self._server = server

        def serve() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # SystemExit from a failed lifespan included
                self._failure.append(exc)

        thread = threading.Thread(target=serve, name=f"claude-code-proxy-{self.port}", daemon=True)
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                reason = repr(self._failure[0]) if self._failure else "see the log above"
                raise ProxyStartError(f"the proxy did not start: {reason}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful shutdown (closes the upstream pool); forced if it overruns."""
        thread, server = self._thread, self._server
        if thread is not None and server is not None and thread.is_alive():
            server.should_exit = True
            thread.join(timeout)
            if thread.is_alive():
                server.force_exit = True
                thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> BackgroundProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------- Claude Code settings


@dataclass(frozen=True)
class SettingsOverride:
    """A Claude Code settings file that sets a variable `run` relies on."""

    path: Path
    name: str
    value: str

    def describe(self) -> str:
        shown = mask_key(self.value) if self.name in SECRET_ENV else self.value
        where = "apiKeyHelper" if self.name == "apiKeyHelper" else f'"env" sets {self.name}'
        return f"{self.shown_path()}: {where}={shown}"

    def shown_path(self) -> str:
        return _pretty_path(self.path)

    def bypasses_proxy(self) -> bool:
        """Whether it sends Claude Code straight to Anthropic, whatever `run` sets."""
        if self.name != "ANTHROPIC_BASE_URL":
            return False
        host = (urlsplit(self.value.strip()).hostname or "").lower()
        return host == "anthropic.com" or host.endswith(".anthropic.com")


def _pretty_path(path: Path) -> str:
    with contextlib.suppress(ValueError, RuntimeError):
        return "~/" + str(path.relative_to(Path.home()))
    return str(path)


def claude_settings_files(environ: Mapping[str, str], cwd: Path | None = None) -> list[Path]:
    """User settings (honouring CLAUDE_CONFIG_DIR, as Claude Code does), then project ones."""
    config_dir = environ.get("CLAUDE_CONFIG_DIR")
    user_dir = Path(config_dir).expanduser() if config_dir else Path.home() / ".claude"
    project = (cwd or Path.cwd()) / ".claude"
    files = [user_dir / "settings.json", project / "settings.json", project / "settings.local.json"]
    unique: list[Path] = []
    for path in files:
        if path not in unique:
            unique.append(path)
    return unique


def find_settings_overrides(
    environ: Mapping[str, str], cwd: Path | None = None
) -> tuple[list[SettingsOverride], list[str]]:
    """Entries in Claude Code's settings files that override what `run` sets.

    Claude Code applies a settings file's `env` over the process environment, so an
    `ANTHROPIC_BASE_URL` there silently bypasses the proxy. Returns (overrides, problems).
    """
    found: list[SettingsOverride] = []
    problems: list[str] = []
    for path in claude_settings_files(environ, cwd):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(f"{_pretty_path(path)}: cannot read ({exc.strerror or exc})")
            continue
        try:
            data = json.loads(text)
        except ValueError as exc:
            problems.append(f"{_pretty_path(path)}: not valid JSON ({exc})")
            continue
        if not isinstance(data, dict):
            continue
        env = data.get("env")
        if isinstance(env, dict):
            for name in OVERRIDING_ENV:
                value = env.get(name)
                if value not in (None, ""):
                    found.append(SettingsOverride(path, name, str(value)))
        helper = data.get("apiKeyHelper")
        if isinstance(helper, str) and helper.strip():
            found.append(SettingsOverride(path, "apiKeyHelper", helper.strip()))
    return found, problems


# ---------------------------------------------------------------- launching the client


def child_environment(
    base: Mapping[str, str], *, base_url: str, key: str, auth_token: bool = False
) -> tuple[dict[str, str], list[str]]:
    """The client's environment: pointed at the proxy with a key it accepts.

    Only one key variable is set, so Claude Code cannot pick a stale one; switches that
    route Claude Code to Bedrock/Vertex/Foundry are removed. Returns (env, notes).
    """
    env = dict(base)
    notes: list[str] = []
    env["ANTHROPIC_BASE_URL"] = base_url
    if auth_token:
        env["ANTHROPIC_AUTH_TOKEN"] = key
        env.pop("ANTHROPIC_API_KEY", None)
    else:
        env["ANTHROPIC_API_KEY"] = key
        env.pop("ANTHROPIC_AUTH_TOKEN", None)
    for name in CLOUD_SWITCHES:
        if env.pop(name, None) is not None:
            notes.append(f"unset {name} for the command (it would bypass ANTHROPIC_BASE_URL)")
    return env, notes


def _terminal_sent_sigint() -> bool:
    """Whether a SIGINT most likely came from the keyboard, and so reached the child too.

    The terminal signals the whole foreground process group, to which the child belongs;
    forwarding it again would turn one Ctrl-C into two (Claude Code exits on the second).
    """
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


FORWARDED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextlib.contextmanager
def signal_handlers(
    handler: Callable[[int, FrameType | None], None], signals: Iterable[int]
) -> Iterator[None]:
    """Install `handler` for `signals` while inside, restoring the previous handlers after.

    Only the main thread may set handlers; elsewhere (tests, embedding) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def forward_signals(children: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    """While installed, SIGINT/SIGTERM/SIGHUP go to the child (once `children` holds it)
    instead of stopping us; installed before the child starts so none is lost."""

    def forward(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and _terminal_sent_sigint():
            return
        for child in children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signum)

    with signal_handlers(forward, FORWARDED_SIGNALS):
        yield


def exit_code(returncode: int) -> int:
    """The child's status as a shell reports it (128 + N when killed by signal N)."""
    return 128 - returncode if returncode < 0 else returncode


def run_command(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run the command to completion with signals forwarded; return its exit status.

    Raises OSError (FileNotFoundError, PermissionError) when it cannot be started.
    """
    children: list[subprocess.Popen[bytes]] = []
    with forward_signals(children):
        children.append(subprocess.Popen(list(argv), env=dict(env)))
        return exit_code(children[0].wait())
