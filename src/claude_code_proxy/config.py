"""Configuration from the environment (and `.env`), validated once at start-up."""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    from claude_code_proxy.config_file import GatewayConfig

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_CLIENT_KEY_PATTERN = r"^sk-\S+$"
ANY_KEY_PATTERN = r"^\S+$"
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
CUSTOM_HEADER_PREFIX = "CUSTOM_HEADER_"
# Headers the proxy owns: a custom header may never replace upstream authentication.
PROTECTED_HEADERS = frozenset(
    {"authorization", "api-key", "content-type", "content-length", "host", "accept"}
)

# Headers about the connection or the message framing (RFC 9110 §7.6.1, §6.4): the HTTP
# client owns them.
HOP_BY_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-encoding",
        "expect",
    }
)
# An RFC 9110 field value: visible characters, spaces and tabs between them (no CR/LF/NUL).
_FIELD_VALUE = re.compile(r"[\x21-\x7e\x80-\U0010ffff]*(?:[ \t]+[\x21-\x7e\x80-\U0010ffff]+)*")
# An HTTP header name (RFC 9110 token), as a custom header's name must be.
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message says how to fix it."""


WEB_SEARCH_BACKENDS = ("searxng", "brave", "tavily")
WEB_SEARCH_DEFAULT_URLS = {
    "brave": "https://api.search.brave.com",
    "tavily": "https://api.tavily.com",
}


@dataclass(frozen=True)
class WebSearchSettings:
    """The search backend behind the web_search server tool (docs/web-search.md)."""

    backend: str | None = None  # one of WEB_SEARCH_BACKENDS; None: searches are unavailable
    url: str | None = None  # SearXNG's base URL; the API's own for Brave and Tavily
    api_key: str | None = field(default=None, repr=False)
    max_results: int = 5
    timeout: float = 15.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebSearchSettings:
        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() or None if value is not None else None

        backend = get("WEB_SEARCH_BACKEND")
        return cls.create(
            backend=backend.lower() if backend else None,
            url=get("WEB_SEARCH_URL"),
            api_key=get("WEB_SEARCH_API_KEY"),
            max_results=_int(
                get("WEB_SEARCH_MAX_RESULTS"),
                "WEB_SEARCH_MAX_RESULTS",
                default=cls.max_results,
                low=1,
                high=20,
            ),
            timeout=_float(get("WEB_SEARCH_TIMEOUT"), "WEB_SEARCH_TIMEOUT", cls.timeout),
        )

    @classmethod
    def create(
        cls,
        *,
        backend: str | None,
        url: str | None = None,
        api_key: str | None = None,
        max_results: int = 5,
        timeout: float = 15.0,
    ) -> WebSearchSettings:
        """Validated settings, whichever source (environment or configuration file) gave them."""
        if backend is None:
            return cls(max_results=max_results, timeout=timeout)
        if backend not in WEB_SEARCH_BACKENDS:
            raise ConfigError(
                f"WEB_SEARCH_BACKEND={backend!r} must be one of {', '.join(WEB_SEARCH_BACKENDS)}"
            )
        url = url or WEB_SEARCH_DEFAULT_URLS.get(backend)
        if url is None:
            raise ConfigError(
                "WEB_SEARCH_BACKEND=searxng needs WEB_SEARCH_URL, the base URL of your "
                "SearXNG instance (e.g. http://localhost:8888)"
            )
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"WEB_SEARCH_URL={_without_credentials(parts)!r} is not an http(s) URL"
            )
        if backend != "searxng" and not api_key:
            raise ConfigError(
                f"WEB_SEARCH_BACKEND={backend} needs WEB_SEARCH_API_KEY (the {backend} API key)"
            )
        return cls(backend, url.rstrip("/"), api_key, max_results, timeout)


@dataclass(frozen=True)
class Settings:
    openai_api_key: str | None = None
    openai_base_url: str = DEFAULT_BASE_URL
    # The base URL's own query (e.g. `tenant=abc`), re-attached after each endpoint path.
    openai_base_query: str = ""
    anthropic_api_key: str | None = None
    big_model: str = "gpt-4o"
    middle_model: str = "gpt-4o"
    small_model: str = "gpt-4o-mini"
    host: str = "127.0.0.1"
    port: int = 8082
    log_level: str = "WARNING"
    max_tokens_limit: int | None = None
    request_timeout: float = 600.0
    connect_timeout: float = 10.0
    azure_api_version: str | None = None
    custom_headers: dict[str, str] = field(default_factory=dict)
    max_request_bytes: int = 32 * 1024 * 1024
    allow_unauthenticated: bool = False
    max_retries: int = 2
    retry_after_max: float = 10.0
    provider_profiles: str | None = None
    ping_interval: float = 10.0
    max_clients: int = 50
    client_idle_timeout: float = 3600.0
    # None: the default for the upstream (auth.key_pattern): any non-empty key for a
    # local-server profile (Ollama, LM Studio …), otherwise DEFAULT_CLIENT_KEY_PATTERN.
    client_key_pattern: str | None = None
    log_format: str = "text"
    capture_dir: str | None = None
    metrics_require_auth: bool = False
    shutdown_grace_seconds: float = 30.0
    # Explicit client model id (or glob pattern) → upstream model, checked before BIG/MIDDLE/SMALL.
    model_map: dict[str, str] = field(default_factory=dict)
    #: The configuration file's providers and routes (None: the environment's one provider;
    #: `config_file.gateway_of` gives either). See docs/routing.md.
    gateway: GatewayConfig | None = None
    # Upstream dialect: Chat Completions, the Responses API, or chosen per model (docs/responses.md).
    upstream_api: str = "auto"
    # Context windows (tokens): for every model, and per tier (BIG/MIDDLE/SMALL); they beat
    # what discovery finds on the server (windows.py), which CONTEXT_DISCOVERY can turn off.
    context_window: int | None = None
    tier_context_windows: dict[str, int] = field(default_factory=dict)
    context_discovery: bool = True
    web_search: WebSearchSettings = field(default_factory=WebSearchSettings)
    # Hardening limits (README "Security"): slow or oversized input, upstream output, PDFs.
    header_timeout: float = 10.0
    max_header_bytes: int = 64 * 1024
    body_timeout: float = 60.0
    max_connections: int = 2048
    write_timeout: float = 60.0
    max_large_bodies: int = 4
    max_upstream_response_bytes: int = 64 * 1024 * 1024
    max_sse_event_bytes: int = 16 * 1024 * 1024
    max_pdf_pages: int = 100
    max_pdf_text_chars: int = 1_000_000
    pdf_timeout: float = 10.0
    pdf_workers: int = 2
    # Secret for the keyed hash of client keys in metrics and logs (random per process if unset).
    key_hash_secret: str | None = None

    @property
    def dynamic_keys(self) -> bool:
        """No server key: every client's own key is used upstream."""
        if self.gateway is not None:
            return not self.gateway.has_own_keys
        return self.openai_api_key is None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """The environment's settings, with the configuration file (if any) loaded on them."""
        from claude_code_proxy.config_file import load_for

        settings = load_for(cls._from_env(env), env)
        settings.check_exposure()
        return settings

    @classmethod
    def _from_env(cls, env: Mapping[str, str]) -> Settings:
        def get(name: str) -> str | None:
            value = env.get(name)
            if value is None:
                return None
            value = value.strip()
            return value or None

        big = get("BIG_MODEL") or cls.big_model
        base_url = get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        base_query, url_version = split_base_query(base_url)
        # An Azure URL copied from the portal carries `?api-version=`; AZURE_API_VERSION wins.
        azure_version = get("AZURE_API_VERSION") or url_version
        return cls(
            openai_api_key=get("OPENAI_API_KEY"),
            openai_base_url=normalize_base_url(base_url, azure=azure_version is not None),
            openai_base_query=base_query,
            anthropic_api_key=get("ANTHROPIC_API_KEY"),
            big_model=big,
            middle_model=get("MIDDLE_MODEL") or big,
            small_model=get("SMALL_MODEL") or cls.small_model,
            host=_host(get("HOST")) or cls.host,
            port=_int(get("PORT"), "PORT", default=cls.port, low=0, high=65535),
            log_level=_log_level(get("LOG_LEVEL")),
            max_tokens_limit=_optional_int(get("MAX_TOKENS_LIMIT"), "MAX_TOKENS_LIMIT"),
            request_timeout=_float(get("REQUEST_TIMEOUT"), "REQUEST_TIMEOUT", cls.request_timeout),
            connect_timeout=_float(get("CONNECT_TIMEOUT"), "CONNECT_TIMEOUT", cls.connect_timeout),
            azure_api_version=azure_version,
            custom_headers=_custom_headers(env),
            max_request_bytes=_int(
                get("MAX_REQUEST_BYTES"), "MAX_REQUEST_BYTES", default=cls.max_request_bytes, low=1
            ),
            allow_unauthenticated=_bool(get("ALLOW_UNAUTHENTICATED"), "ALLOW_UNAUTHENTICATED"),
            max_retries=_int(
                get("MAX_RETRIES"), "MAX_RETRIES", default=cls.max_retries, low=0, high=10
            ),
            retry_after_max=_float(get("RETRY_AFTER_MAX"), "RETRY_AFTER_MAX", cls.retry_after_max),
            provider_profiles=get("PROVIDER_PROFILES"),
            ping_interval=_float(get("PING_INTERVAL"), "PING_INTERVAL", cls.ping_interval),
            max_clients=_int(get("MAX_CLIENTS"), "MAX_CLIENTS", default=cls.max_clients, low=1),
            client_idle_timeout=_float(
                get("CLIENT_IDLE_TIMEOUT"), "CLIENT_IDLE_TIMEOUT", cls.client_idle_timeout
            ),
            client_key_pattern=_pattern(get("CLIENT_KEY_PATTERN"), cls.client_key_pattern),
            log_format=_choice(get("LOG_FORMAT"), "LOG_FORMAT", ("text", "json")),
            capture_dir=_capture_dir(get("CAPTURE_DIR")),
            metrics_require_auth=_bool(get("METRICS_REQUIRE_AUTH"), "METRICS_REQUIRE_AUTH"),
            shutdown_grace_seconds=_float(
                get("SHUTDOWN_GRACE_SECONDS"), "SHUTDOWN_GRACE_SECONDS", cls.shutdown_grace_seconds
            ),
            model_map=_model_map(get("MODEL_MAP")),
            upstream_api=_choice(
                get("UPSTREAM_API"), "UPSTREAM_API", ("auto", "chat", "responses")
            ),
            context_window=_optional_int(get("CONTEXT_WINDOW"), "CONTEXT_WINDOW"),
            tier_context_windows={
                tier: tokens
                for tier in ("BIG", "MIDDLE", "SMALL")
                if (
                    tokens := _optional_int(
                        get(f"{tier}_MODEL_CONTEXT_WINDOW"), f"{tier}_MODEL_CONTEXT_WINDOW"
                    )
                )
            },
            context_discovery=get("CONTEXT_DISCOVERY") is None
            or _bool(get("CONTEXT_DISCOVERY"), "CONTEXT_DISCOVERY"),
            web_search=WebSearchSettings.from_env(env),
            **_limits(get),
        )

    def check_exposure(self) -> None:
        """Refuse to become an open relay that spends the owner's key for anyone."""
        if is_loopback(self.host) or self.dynamic_keys or self.anthropic_api_key:
            return
        if self.allow_unauthenticated:
            return
        if _is_name(self.host) and _resolves_to_loopback(self.host):
            return  # a name for this machine only, e.g. ip6-localhost
        keys = "a provider has its own key" if self.gateway is not None else "OPENAI_API_KEY is set"
        raise ConfigError(
            f"HOST={self.host} listens beyond this machine, {keys} and "
            "ANTHROPIC_API_KEY is not: anyone who can reach the port would spend your "
            "upstream key. Set ANTHROPIC_API_KEY to a secret clients must send, or "
            "HOST=127.0.0.1, or ALLOW_UNAUTHENTICATED=true if this is intended."
        )

    def exposure_warning(self) -> str | None:
        """Dynamic mode on a public address is allowed (no key of ours is spent) but lets
        anyone who reaches the port use the upstream through this machine: say so."""
        if not self.dynamic_keys or is_loopback(self.host) or self.allow_unauthenticated:
            return None
        upstream = (
            "the configured providers"
            if self.gateway is not None
            else urlsplit(self.openai_base_url).hostname
        )
        ignored = (
            " (ANTHROPIC_API_KEY is not checked in this mode)" if self.anthropic_api_key else ""
        )
        return (
            f"HOST={self.host} listens beyond this machine in dynamic mode (no OPENAI_API_KEY)"
            f"{ignored}: anyone who can reach the port can use {upstream} through this proxy "
            "with their own key, or with any key if that upstream does not check keys (a local "
            "server). Limit who can connect (firewall, `-p 127.0.0.1:PORT:PORT`), or set "
            "OPENAI_API_KEY and ANTHROPIC_API_KEY; ALLOW_UNAUTHENTICATED=true silences this."
        )


def _is_name(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host != "localhost"
    return False


def _resolves_to_loopback(host: str) -> bool:
    """Whether the name resolves, to loopback addresses only; a name that does not resolve
    is a typo, said as such rather than as a security problem."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise ConfigError(
            f"HOST={host!r} does not resolve to an address of this machine (a typo?); use "
            "127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
        ) from None
    return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _host(value: str | None) -> str | None:
    """An IP address or a host name: a mistyped address is said to be one, not taken for a
    name that "listens beyond this machine"."""
    if value is None:
        return None
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        pass
    else:
        return value
    labels = value.split(".")
    if ":" in value:
        problem = "is not an address (the port goes in PORT; IPv6 as ::1 or [::1])"
    elif all(label.isdigit() for label in labels if label) or (
        len(labels) == 4 and sum(label.isdigit() for label in labels) >= 3
    ):
        problem = "is not a valid IP address"
    elif not all(_HOST_LABEL.fullmatch(label) for label in labels):
        problem = "is not an IP address or a host name"
    else:
        return value
    raise ConfigError(
        f"HOST={value!r} {problem}: use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalize_base_url(url: str, *, azure: bool = False) -> str:
    """Accept the base URL forms users write: trailing `/`, with or without `/v1`,
    or even the full `…/chat/completions` endpoint.

    The query is dropped here (see `split_base_query`): endpoint paths go before it.
    Anything that would make every request fail later is refused now.
    """
    parts = urlsplit(url.strip())
    shown = _without_credentials(parts)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"OPENAI_BASE_URL={shown!r} is not an http(s) URL; "
            "expected e.g. https://api.openai.com/v1 or http://localhost:11434/v1"
        )
    if parts.username is not None or parts.password is not None:
        # aiohttp refuses URL credentials next to an Authorization header: every request fails.
        raise ConfigError(
            f"OPENAI_BASE_URL={shown!r} contains a user name or password: remove the "
            "`user:password@` part. The upstream key goes in OPENAI_API_KEY (or each "
            "client's key in dynamic mode); other headers a gateway needs can be set with "
            "CUSTOM_HEADER_<NAME>."
        )
    if not parts.hostname:
        raise ConfigError(f"OPENAI_BASE_URL={shown!r} has no host name")
    try:
        port = parts.port  # raises for a non-number or beyond 65535
    except ValueError:
        port = 0
    if port == 0:
        raise ConfigError(
            f"OPENAI_BASE_URL={shown!r} has an invalid port: expected a number from 1 to 65535"
        )
    path = parts.path.rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    if path in ("", "/api") and not azure:
        path += "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def split_base_query(url: str) -> tuple[str, str | None]:
    """The base URL's query without `api-version`, and that `api-version` (Azure) if any.

    Parameters are kept as written (no re-encoding); only `api-version` is taken out so it
    is sent exactly once, from AZURE_API_VERSION when that is set.
    """
    query = urlsplit(url.strip()).query
    kept: list[str] = []
    version: str | None = None
    for item in query.split("&"):
        name, _, value = item.partition("=")
        if not item:
            continue
        if unquote(name) == "api-version":
            version = unquote(value) or version
        else:
            kept.append(item)
    return "&".join(kept), version


def _without_credentials(parts: SplitResult) -> str:
    """The URL as given with `user:password@` masked: the message reaches a terminal or log."""
    if "@" not in parts.netloc:
        return urlunsplit(parts)
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def _custom_headers(env: Mapping[str, str]) -> dict[str, str]:
    """CUSTOM_HEADER_<NAME>=value → `name: value`, checked against RFC 9110 at start-up
    (a bad one would otherwise break, or silently change, every upstream request)."""
    headers = {}
    for key, value in env.items():
        if key.startswith(CUSTOM_HEADER_PREFIX) and value:
            name = key[len(CUSTOM_HEADER_PREFIX) :].replace("_", "-").lower()
            if not HEADER_NAME.fullmatch(name):
                raise ConfigError(
                    f"{key}: {name!r} is not a header name; write the name after the prefix, "
                    "e.g. CUSTOM_HEADER_X_TITLE=my-app sends `x-title: my-app`"
                )
            if "\r" in value or "\n" in value:
                raise ConfigError(f"{key}: the value must be one line")
            if name in PROTECTED_HEADERS:
                raise ConfigError(
                    f"{key}: the {name} header is set by the proxy and cannot be overridden"
                )
            if name in HOP_BY_HOP_HEADERS:
                raise ConfigError(
                    f"{key}: {name} is a connection or message-framing header; the HTTP "
                    "client sets it, a custom value would break every request"
                )
            value = value.strip(" \t")
            if not _FIELD_VALUE.fullmatch(value):
                raise ConfigError(
                    f"{key}: the value contains a line break or control character, "
                    "which a header value cannot hold"
                )
            headers[name] = value
    return headers


def _limits(get: Callable[[str], str | None]) -> dict[str, Any]:
    """The hardening limits, each settable by the environment variable of its upper-case name."""
    d = Settings
    floats = ("header_timeout", "body_timeout", "write_timeout", "pdf_timeout")
    ints = (
        "max_header_bytes",
        "max_connections",
        "max_large_bodies",
        "max_upstream_response_bytes",
        "max_sse_event_bytes",
        "max_pdf_pages",
        "max_pdf_text_chars",
        "pdf_workers",
    )
    values: dict[str, Any] = {}
    for name in floats:
        values[name] = _float(get(name.upper()), name.upper(), getattr(d, name))
    for name in ints:
        values[name] = _int(get(name.upper()), name.upper(), default=getattr(d, name), low=1)
    values["key_hash_secret"] = get("KEY_HASH_SECRET")
    return values


def _capture_dir(value: str | None) -> str | None:
    """A folder the proxy can create (or already has) and write: checked now, not on the
    first request. Nothing is created here."""
    if value is None:
        return None
    path = Path(value).expanduser().absolute()
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing == path and not path.is_dir():
        raise ConfigError(f"CAPTURE_DIR={value!r} is a file, not a folder")
    if not existing.is_dir():
        raise ConfigError(
            f"CAPTURE_DIR={value!r} cannot be created: {existing} is a file, not a folder"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        action = "written" if existing == path else "created"
        raise ConfigError(
            f"CAPTURE_DIR={value!r} cannot be {action}: no write permission on {existing} "
            "(choose a folder this user can write)"
        )
    return value


def _int(value: str | None, name: str, *, default: int, low: int, high: int | None = None) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} must be a whole number") from None
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name}={value!r} must be {bound}")
    return number


def _optional_int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    return _int(value, name, default=0, low=1)


def _float(value: str | None, name: str, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} must be a number of seconds") from None
    if not math.isfinite(number):
        raise ConfigError(f"{name}={value!r} must be a finite number of seconds")
    if not number > 0:
        raise ConfigError(f"{name}={value!r} must be greater than 0")
    return number


def _model_map(value: str | None) -> dict[str, str]:
    """`{"claude-opus-4-1": "gpt-4.1"}` as JSON, or `a=b,c=d`."""
    if value is None:
        return {}
    if value.lstrip().startswith("{"):
        try:
            data = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"MODEL_MAP is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in data.items()
        ):
            raise ConfigError("MODEL_MAP must map client model ids to upstream model names")
        return dict(data)
    mapping = {}
    for item in value.split(","):
        if not item.strip():
            continue
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ConfigError(
                f"MODEL_MAP entry {item.strip()!r} must look like client-model=upstream-model"
            )
        mapping[source.strip()] = target.strip()
    return mapping


def _pattern(value: str | None, default: str | None) -> str | None:
    if value is None:
        return default
    if value.lower() in ("any", "*"):
        return ANY_KEY_PATTERN
    try:
        re.compile(value)
    except re.error as exc:
        raise ConfigError(
            f"CLIENT_KEY_PATTERN={value!r} is not a valid regular expression: {exc}"
        ) from None
    return value


def _choice(value: str | None, name: str, choices: tuple[str, ...]) -> str:
    if value is None:
        return choices[0]
    lowered = value.lower()
    if lowered not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return lowered


def _bool(value: str | None, name: str) -> bool:
    if value is None:
        return False
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r} must be true or false")


def _log_level(value: str | None) -> str:
    if value is None:
        return "WARNING"
    level = value.split()[0].upper()  # tolerate "INFO  # comment" copied from .env files
    if level == "WARN":
        level = "WARNING"
    if level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL={value!r} must be one of {', '.join(LOG_LEVELS)}")
    return level


def configure_logging(level: str, log_format: str = "text") -> None:
    """Text lines, or one JSON object per line (logs.py)."""
    from claude_code_proxy.logs import configure_logging as configure

    configure(level, log_format)
