"""The TOML configuration file: providers, routes, models; validated once at start-up.

Found by `--config PATH`, else `CLAUDE_CODE_PROXY_CONFIG`, else `./claude-code-proxy.toml`
when it exists. Without a file, the environment's OPENAI_* / BIG/MIDDLE/SMALL_MODEL /
MODEL_MAP settings become a configuration of one provider named `upstream`, built here by
the same code, so the rest of the proxy knows only one shape. Every error names the file,
the table and the key, and the line when it can be found (docs/routing.md).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from claude_code_proxy.config import (
    PROTECTED_HEADERS,
    ConfigError,
    Settings,
    WebSearchSettings,
    normalize_base_url,
    split_base_query,
)
from claude_code_proxy.gateway.router import LongContext, RoutingTable, Target, Targets

logger = logging.getLogger(__name__)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_ENV = "CLAUDE_CODE_PROXY_CONFIG"
DEFAULT_CONFIG = "claude-code-proxy.toml"
#: Variables of the environment-only set-up that a configuration file replaces.
ENV_ONLY = (
    "OPENAI_BASE_URL",
    "AZURE_API_VERSION",
    "BIG_MODEL",
    "MIDDLE_MODEL",
    "SMALL_MODEL",
    "MODEL_MAP",
)
#: The provider the environment-only set-up becomes.
IMPLICIT_PROVIDER = "upstream"
API_KINDS = ("chat", "responses", "auto")
TIERS = ("opus", "sonnet", "haiku")
ROUTE_KEYS = (*TIERS, "default", "long_context", "image", "web_search")
PROVIDER_KEYS = frozenset(
    {
        "base_url",
        "api_key",
        "api_key_env",
        "api_keys_env",
        "azure_api_version",
        "headers",
        "timeout",
        "connect_timeout",
        "max_concurrency",
        "max_retries",
        "api",
        "profile",
    }
)
WEB_SEARCH_KEYS = frozenset({"backend", "url", "api_key", "api_key_env", "max_results", "timeout"})
TOP_KEYS = frozenset({"providers", "routes", "models", "context_windows", "vision", "web_search"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

Api = Literal["chat", "responses", "auto"]


@dataclass(frozen=True)
class ProviderConfig:
    """One `[providers.NAME]` table, resolved (keys read from the environment, URL checked)."""

    name: str
    base_url: str
    base_query: str = ""
    azure_api_version: str | None = None
    #: Empty: the client's own key is forwarded (dynamic mode). Several: a pool.
    api_keys: tuple[str, ...] = ()
    #: Where the keys came from (`api_key_env = "OPENAI_API_KEY"`), for messages.
    key_source: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    connect_timeout: float | None = None
    max_concurrency: int | None = None
    max_retries: int | None = None
    #: Upstream dialect: Chat Completions, the Responses API, or chosen per provider/model.
    api: Api = "auto"
    #: Overrides of the capability profile (the PROVIDER_PROFILES settings names).
    profile: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dynamic(self) -> bool:
        return not self.api_keys


@dataclass(frozen=True)
class WebSearchConfig:
    """`[web_search]`: the backend the proxy uses to run the web_search server tool."""

    backend: str
    url: str | None = None
    api_key: str | None = None
    api_key_env: str | None = None
    max_results: int = 5
    timeout: float = 15.0


@dataclass(frozen=True)
class GatewayConfig:
    """Every provider and the routing table; `path` is None for the environment-only set-up."""

    providers: tuple[ProviderConfig, ...]
    routing: RoutingTable
    path: str | None = None
    #: `[context_windows]`: target (`provider/model`) → tokens, for models whose server
    #: does not report its window.
    context_windows: Mapping[str, int] = field(default_factory=dict)
    web_search: WebSearchConfig | None = None
    #: Whether each target reads images, where known: `[vision]`, else its profile.
    vision: Mapping[Target, bool] = field(default_factory=dict)

    def provider(self, name: str) -> ProviderConfig:
        for provider in self.providers:
            if provider.name == name:
                return provider
        raise KeyError(name)

    def context_window(self, target: Target) -> int | None:
        return self.context_windows.get(str(target))

    @property
    def has_own_keys(self) -> bool:
        """Some provider spends the owner's key (so the proxy must not be an open relay)."""
        return any(p.api_keys for p in self.providers)

    @property
    def has_dynamic(self) -> bool:
        return any(p.dynamic for p in self.providers)

    def targets(self) -> list[Target]:
        """Every distinct target the routes and models name, in order of first mention."""
        seen: dict[Target, None] = {}
        table = self.routing
        groups = [targets for _, targets in table.models]
        groups += [table.opus, table.sonnet, table.haiku, table.default, table.image]
        groups += [table.web_search, table.long_context.targets if table.long_context else ()]
        for group in groups:
            for target in group:
                seen.setdefault(target, None)
        return list(seen)


def config_path(env: Mapping[str, str], explicit: str | None = None) -> Path | None:
    """`--config`, else CLAUDE_CODE_PROXY_CONFIG, else ./claude-code-proxy.toml if it exists."""
    chosen = explicit or (env.get(CONFIG_ENV) or "").strip() or None
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            source = "--config" if explicit else CONFIG_ENV
            raise ConfigError(f"{source}={chosen}: no such file")
        return path
    default = Path(DEFAULT_CONFIG)
    return default if default.is_file() else None


def implicit_gateway(settings: Settings) -> GatewayConfig:
    """The environment-only set-up as a configuration of one provider (no behaviour change)."""
    provider = ProviderConfig(
        name=IMPLICIT_PROVIDER,
        base_url=settings.openai_base_url,
        base_query=settings.openai_base_query,
        azure_api_version=settings.azure_api_version,
        api_keys=(settings.openai_api_key,) if settings.openai_api_key else (),
        key_source="OPENAI_API_KEY" if settings.openai_api_key else "",
        headers=dict(settings.custom_headers),
    )

    def target(model: str) -> Targets:
        return (Target(IMPLICIT_PROVIDER, model),)

    routing = RoutingTable(
        providers=(IMPLICIT_PROVIDER,),
        models=tuple((k, target(v)) for k, v in settings.model_map.items()),
        opus=target(settings.big_model),
        sonnet=target(settings.middle_model),
        haiku=target(settings.small_model),
        default=target(settings.big_model),
        provider_ids=False,
    )
    return GatewayConfig(providers=(provider,), routing=routing)


def gateway_of(settings: Settings) -> GatewayConfig:
    """The file's configuration, or the environment's single provider."""
    gateway = settings.gateway
    return gateway if isinstance(gateway, GatewayConfig) else implicit_gateway(settings)


# ------------------------------------------------------------------ loading


class _Where:
    """Builds messages that name the file, table and key, with the line when findable."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def error(self, table: str, key: str | None, problem: str) -> ConfigError:
        line = self._line(table, key)
        where = f"[{table}]" if table else "top level"
        named = f" key {key!r}" if key is not None else ""
        at = f" (line {line})" if line else ""
        return ConfigError(f"{self.path}: {where}{named}{at}: {problem}")

    def _line(self, table: str, key: str | None) -> int | None:
        """Best effort: the key's line inside the table's section, else the header's line."""
        header = re.compile(r"^\s*\[\s*" + _header_pattern(table) + r"\s*\]\s*(#.*)?$")
        key_re = (
            re.compile(r"^\s*(\"|')?" + re.escape(key) + r"(\"|')?\s*=")
            if key is not None
            else None
        )
        inside = table == ""
        header_line = None
        for number, line in enumerate(self.lines, 1):
            if re.match(r"^\s*\[", line):
                inside = bool(header.match(line))
                if inside and header_line is None:
                    header_line = number
                continue
            if inside and key_re is not None and key_re.match(line):
                return number
        if key is not None and "." in table:  # inline form: [parent] child = { … }
            parent, _, child = table.rpartition(".")
            return self._line(parent, child.strip('"'))
        return header_line


def _header_pattern(table: str) -> str:
    parts = [p for p in re.split(r"\.(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)", table) if p]
    return r"\s*\.\s*".join(r"(?:\"|')?" + re.escape(p.strip('"')) + r"(?:\"|')?" for p in parts)


def load_gateway(path: Path, env: Mapping[str, str], settings: Settings) -> GatewayConfig:
    """Read and validate the file; raises ConfigError naming file, table, key (and line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return _Loader(_Where(path, text), env, settings).load(data)


class _Loader:
    def __init__(self, where: _Where, env: Mapping[str, str], settings: Settings) -> None:
        self.where = where
        self.env = env
        self.settings = settings

    def err(self, table: str, key: str | None, problem: str) -> ConfigError:
        return self.where.error(table, key, problem)

    def load(self, data: dict[str, Any]) -> GatewayConfig:
        for key in data:
            if key not in TOP_KEYS:
                raise self.err("", key, f"unknown table; known: {', '.join(sorted(TOP_KEYS))}")
        providers_data = data.get("providers")
        if not isinstance(providers_data, dict) or not providers_data:
            raise self.err(
                "providers", None, "at least one [providers.NAME] table with a base_url is needed"
            )
        providers = tuple(self.provider(name, value) for name, value in providers_data.items())
        names = tuple(p.name for p in providers)
        routes = self.table(data, "routes")
        models = self.table(data, "models")
        routing = self.routing(routes, models, names)
        windows = self.context_windows(self.table(data, "context_windows"), names)
        vision = self.vision(self.table(data, "vision"), names)
        web_search = self.web_search(data["web_search"]) if "web_search" in data else None
        config = GatewayConfig(
            providers=providers,
            routing=routing,
            path=str(self.where.path),
            context_windows=windows,
            web_search=web_search,
        )
        known = known_vision(config, vision, self.settings)
        routing = replace(routing, vision=frozenset(t for t, reads in known.items() if reads))
        return replace(config, routing=routing, vision=known)

    def table(self, data: dict[str, Any], name: str) -> dict[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise self.err("", name, "must be a table")
        return value

    # -------------------------------------------------------------- providers

    def provider(self, name: str, data: Any) -> ProviderConfig:
        table = f"providers.{name}"
        if not _NAME.match(name) or "/" in name:
            raise self.err(table, None, "a provider name is letters, digits, '-', '_' or '.'")
        if not isinstance(data, dict):
            raise self.err("providers", name, "must be a table")
        for key in data:
            if key not in PROVIDER_KEYS:
                raise self.err(
                    table, key, f"unknown key; known: {', '.join(sorted(PROVIDER_KEYS))}"
                )
        raw_url = self.string(table, data, "base_url", required=True)
        assert raw_url is not None
        base_query, url_version = split_base_query(raw_url)
        azure = self.string(table, data, "azure_api_version") or url_version
        try:
            base_url = normalize_base_url(raw_url, azure=azure is not None)
        except ConfigError as exc:
            raise self.err(table, "base_url", str(exc).replace("OPENAI_BASE_URL=", "")) from None
        keys, source = self.keys(table, data)
        api = data.get("api", "auto")
        if api not in API_KINDS:
            raise self.err(table, "api", f"{api!r} must be one of {', '.join(API_KINDS)}")
        return ProviderConfig(
            name=name,
            base_url=base_url,
            base_query=base_query,
            azure_api_version=azure,
            api_keys=keys,
            key_source=source,
            headers=self.headers(table, data.get("headers", {})),
            timeout=self.number(table, data, "timeout"),
            connect_timeout=self.number(table, data, "connect_timeout"),
            max_concurrency=self.integer(table, data, "max_concurrency", low=1),
            max_retries=self.integer(table, data, "max_retries", low=0, high=10),
            api=api,
            profile=self.profile(table, data.get("profile", {})),
        )

    def keys(self, table: str, data: dict[str, Any]) -> tuple[tuple[str, ...], str]:
        given = [k for k in ("api_key", "api_key_env", "api_keys_env") if k in data]
        if len(given) > 1:
            raise self.err(table, given[1], f"set only one of {', '.join(given)}")
        if not given:
            return (), ""
        key = given[0]
        value = data[key]
        if key == "api_key":
            if not isinstance(value, str) or not value.strip():
                raise self.err(table, key, "must be a non-empty string")
            return (value.strip(),), "api_key"
        names = [value] if key == "api_key_env" else value
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            shape = "a variable name" if key == "api_key_env" else "a list of variable names"
            raise self.err(table, key, f"must be {shape}")
        keys = []
        for variable in names:
            secret = (self.env.get(variable) or "").strip()
            if not secret:
                raise self.err(table, key, f"environment variable {variable} is not set or empty")
            keys.append(secret)
        return tuple(keys), f"{key} = {', '.join(names)}"

    def headers(self, table: str, value: Any) -> dict[str, str]:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self.err(table, "headers", 'must be a table of header = "value" strings')
        headers = {}
        for name, text in value.items():
            if name.lower() in PROTECTED_HEADERS:
                raise self.err(table, "headers", f"the {name} header is set by the proxy")
            headers[name.lower()] = text
        return headers

    def profile(self, table: str, value: Any) -> dict[str, Any]:
        from claude_code_proxy.gateway.capabilities import Profile, ProfileError, _apply

        if not isinstance(value, dict):
            raise self.err(table, "profile", "must be a table of profile settings")
        try:
            _apply(Profile(), value)
        except (ProfileError, TypeError) as exc:
            raise self.err(table, "profile", str(exc)) from None
        return dict(value)

    def string(
        self, table: str, data: dict[str, Any], key: str, *, required: bool = False
    ) -> str | None:
        if key not in data:
            if required:
                raise self.err(table, key, "is required")
            return None
        value = data[key]
        if not isinstance(value, str) or not value.strip():
            raise self.err(table, key, "must be a non-empty string")
        return value.strip()

    def number(self, table: str, data: dict[str, Any], key: str) -> float | None:
        if key not in data:
            return None
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise self.err(table, key, "must be a number of seconds greater than 0")
        return float(value)

    def integer(
        self, table: str, data: dict[str, Any], key: str, *, low: int, high: int | None = None
    ) -> int | None:
        if key not in data:
            return None
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.err(table, key, "must be a whole number")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise self.err(table, key, f"must be {bound}")
        return value

    # -------------------------------------------------------------- routes

    def targets(self, table: str, key: str, value: Any, names: tuple[str, ...]) -> Targets:
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(item, str) for item in items):
            raise self.err(table, key, 'must be "provider/model" or a list of them')
        targets = []
        for item in items:
            try:
                target = Target.parse(item)
            except ValueError as exc:
                raise self.err(table, key, str(exc)) from None
            if target.provider not in names:
                raise self.err(
                    table,
                    key,
                    f"{item!r}: unknown provider {target.provider!r}; "
                    f"configured: {', '.join(names)}",
                )
            targets.append(target)
        return tuple(targets)

    def routing(
        self, routes: dict[str, Any], models: dict[str, Any], names: tuple[str, ...]
    ) -> RoutingTable:
        for key in routes:
            if key not in ROUTE_KEYS:
                raise self.err("routes", key, f"unknown route; known: {', '.join(ROUTE_KEYS)}")
        found: dict[str, Targets] = {}
        for key in (*TIERS, "default", "image", "web_search"):
            if key in routes:
                found[key] = self.targets("routes", key, routes[key], names)
        long_context = None
        if "long_context" in routes:
            long_context = self.long_context(routes["long_context"], names)
        if not any(found.get(k) for k in (*TIERS, "default")) and (routes or not models):
            raise self.err(
                "routes",
                "default",
                "is required (or opus/sonnet/haiku): claude-* requests need somewhere to go",
            )
        default = found.get("default") or next((found[t] for t in TIERS if found.get(t)), ())
        model_rules = tuple(
            (str(k), self.targets("models", str(k), v, names)) for k, v in models.items()
        )
        return RoutingTable(
            providers=names,
            models=model_rules,
            opus=found.get("opus", ()),
            sonnet=found.get("sonnet", ()),
            haiku=found.get("haiku", ()),
            default=default,
            long_context=long_context,
            image=found.get("image", ()),
            web_search=found.get("web_search", ()),
        )

    def long_context(self, value: Any, names: tuple[str, ...]) -> LongContext:
        table = "routes.long_context"
        if not isinstance(value, dict):
            raise self.err(
                "routes",
                "long_context",
                'must be { above_tokens = N, target = "provider/model" }',
            )
        for key in value:
            if key not in ("above_tokens", "target"):
                raise self.err(table, key, "unknown key; known: above_tokens, target")
        if "target" not in value:
            raise self.err(table, "target", "is required")
        above = self.integer(table, value, "above_tokens", low=1)
        if above is None:
            raise self.err(table, "above_tokens", "is required")
        return LongContext(above, self.targets(table, "target", value["target"], names))

    def context_windows(self, value: dict[str, Any], names: tuple[str, ...]) -> dict[str, int]:
        windows = {}
        for key, tokens in value.items():
            target = self.targets("context_windows", key, key, names)[0]
            if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
                raise self.err("context_windows", key, "must be a number of tokens (at least 1)")
            windows[str(target)] = tokens
        return windows

    def vision(self, value: dict[str, Any], names: tuple[str, ...]) -> dict[str, bool]:
        found = {}
        for key, reads in value.items():
            target = self.targets("vision", key, key, names)[0]
            if not isinstance(reads, bool):
                raise self.err("vision", key, "must be true (reads images) or false (text only)")
            found[str(target)] = reads
        return found

    def web_search(self, value: Any) -> WebSearchConfig:
        table = "web_search"
        if not isinstance(value, dict):
            raise self.err("", table, "must be a table")
        for key in value:
            if key not in WEB_SEARCH_KEYS:
                raise self.err(
                    table, key, f"unknown key; known: {', '.join(sorted(WEB_SEARCH_KEYS))}"
                )
        backend = self.string(table, value, "backend", required=True)
        assert backend is not None
        if not _NAME.match(backend):
            raise self.err(table, "backend", f"{backend!r} is not a backend name")
        if "api_key" in value and "api_key_env" in value:
            raise self.err(table, "api_key_env", "set only one of api_key, api_key_env")
        api_key = self.string(table, value, "api_key")
        api_key_env = self.string(table, value, "api_key_env")
        if api_key_env is not None:
            api_key = (self.env.get(api_key_env) or "").strip() or None
            if api_key is None:
                raise self.err(
                    table, "api_key_env", f"environment variable {api_key_env} is not set or empty"
                )
        url = self.string(table, value, "url")
        if url is not None and not re.match(r"^https?://[^/\s]+", url):
            raise self.err(table, "url", f"{url!r} is not an http(s) URL")
        config = WebSearchConfig(
            backend=backend.lower(),
            url=url,
            api_key=api_key,
            api_key_env=api_key_env,
            max_results=self.integer(table, value, "max_results", low=1, high=20) or 5,
            timeout=self.number(table, value, "timeout") or 15.0,
        )
        try:  # the same checks as the WEB_SEARCH_* variables
            WebSearchSettings.create(backend=config.backend, url=config.url, api_key=config.api_key)
        except ConfigError as exc:
            text = str(exc)
            key = "url" if "_URL" in text else "api_key" if "API_KEY" in text else "backend"
            raise self.err(table, key, text) from None
        return config


def known_vision(
    config: GatewayConfig, overrides: Mapping[str, bool], settings: Settings
) -> dict[Target, bool]:
    """Every target whose image input is known: `[vision]`, else its provider's capability
    profile (built-in model rules, PROVIDER_PROFILES, the provider's `profile` table)."""
    from claude_code_proxy.gateway.capabilities import CapabilityTable, ProfileError

    try:
        base = CapabilityTable.from_file(settings.provider_profiles)
    except ProfileError:  # reported where the profiles are loaded for the upstream
        base = CapabilityTable()
    tables = {
        p.name: CapabilityTable(
            user_providers=base.user_providers,
            user_models=base.user_models,
            overrides=dict(p.profile),
        )
        for p in config.providers
    }
    known = {}
    for target in config.targets():
        reads = overrides.get(str(target))
        if reads is None:
            url = config.provider(target.provider).base_url
            reads = tables[target.provider].profile(url, target.model).vision
        if reads is not None:
            known[target] = reads
    return known


def load_for(settings: Settings, env: Mapping[str, str], explicit: str | None = None) -> Settings:
    """The settings with the configuration file (if any) loaded onto them."""
    path = config_path(env, explicit)
    if path is None:
        return settings
    gateway = load_gateway(path, env, settings)
    ignored = [name for name in ENV_ONLY if (env.get(name) or "").strip()]
    if ignored:
        logger.warning(
            "%s decides providers and routes: %s %s not used",
            path,
            ", ".join(ignored),
            "is" if len(ignored) == 1 else "are",
        )
    web = gateway.web_search
    if web is None:
        return replace(settings, gateway=gateway)
    search = WebSearchSettings.create(
        backend=web.backend,
        url=web.url,
        api_key=web.api_key,
        max_results=web.max_results,
        timeout=web.timeout,
    )
    return replace(settings, gateway=gateway, web_search=search)
