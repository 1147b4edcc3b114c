"""Context windows of the upstream models: configured, or discovered from the server.

Claude Code compacts a conversation by the window it believes the model has (200k or 1M
tokens for ids it does not know); a local server often serves 8k–64k. The proxy learns the
real window from what each server shape reports (docs/local-models.md), from every
provider for the models routed to it, in the background at start-up and again after
`REFRESH_SECONDS`, and never on a request's path: a request only reads the cache. A
configured window (`[context_windows]`, `CONTEXT_WINDOW`, `<TIER>_MODEL_CONTEXT_WINDOW`)
always wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from claude_code_proxy.config import Settings
from claude_code_proxy.config_file import GatewayConfig
from claude_code_proxy.gateway.capabilities import CapabilityTable
from claude_code_proxy.gateway.providers import Registry
from claude_code_proxy.gateway.router import Target, tier_of
from claude_code_proxy.gateway.upstream import models_url, upstream_headers

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 5.0
REFRESH_SECONDS = 300.0
MAX_BODY = 4 * 1024 * 1024

# Ranks: what the server runs the model with beats what it is configured with, which beats
# the most the model can take.
RUNNING, CONFIGURED, MAXIMUM = 0, 1, 2
# Server shapes probed beyond `GET /models`, by provider profile name.
PROBES: Mapping[str, tuple[str, ...]] = {
    "llama.cpp": ("llama.cpp",),
    "ollama": ("ollama",),
    "lmstudio": ("lmstudio",),
    "generic": ("llama.cpp", "lmstudio", "ollama"),
}


@dataclass(frozen=True)
class Window:
    """A context window in tokens and where it was found (shown by `doctor`)."""

    tokens: int
    source: str
    rank: int = RUNNING


def _positive(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, float) and value.is_integer() and value > 0:
        return int(value)
    return None


def same_model(listed: str, model: str) -> bool:
    """Ids that name the same model: Ollama's implicit `:latest`, Gemini's `models/`."""
    listed = listed.removeprefix("models/")
    if listed == model:
        return True
    return listed == f"{model}:latest" or model == f"{listed}:latest"


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _entry(items: Any, model: str) -> dict[str, Any] | None:
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict):
            name = item.get("id", item.get("model", item.get("name")))
            if isinstance(name, str) and same_model(name, model):
                return item
    return None


def from_model_list(body: Any, model: str) -> Window | None:
    """An OpenAI-style `GET /models` entry: vLLM `max_model_len`, llama.cpp `meta.n_ctx`
    (else `meta.n_ctx_train`), OpenRouter `context_length` (or its top provider's), Groq
    `context_window`, LM Studio `max_context_length`."""
    item = _entry(body.get("data") if isinstance(body, dict) else None, model)
    if item is None:
        return None
    meta = _mapping(item.get("meta"))
    provider = _mapping(item.get("top_provider"))
    for value, source, rank in (
        (item.get("max_model_len"), "max_model_len", RUNNING),
        (meta.get("n_ctx"), "meta.n_ctx", RUNNING),
        (item.get("context_length"), "context_length", MAXIMUM),
        (provider.get("context_length"), "top_provider.context_length", MAXIMUM),
        (item.get("context_window"), "context_window", MAXIMUM),
        (item.get("max_context_length"), "max_context_length", MAXIMUM),
        (meta.get("n_ctx_train"), "meta.n_ctx_train", MAXIMUM),
    ):
        tokens = _positive(value)
        if tokens:
            return Window(tokens, f"GET /models {source}", rank)
    return None


def from_llama_props(body: Any) -> Window | None:
    """llama.cpp `GET /props`: `default_generation_settings.n_ctx` (per slot)."""
    settings = body.get("default_generation_settings") if isinstance(body, dict) else None
    tokens = _positive(settings.get("n_ctx")) if isinstance(settings, dict) else None
    return Window(tokens, "llama.cpp /props n_ctx") if tokens else None


def from_lmstudio(body: Any, model: str) -> Window | None:
    """LM Studio `GET /api/v0/models`: the loaded context, else the model's maximum."""
    item = _entry(body.get("data") if isinstance(body, dict) else None, model)
    if item is None:
        return None
    loaded = _positive(item.get("loaded_context_length"))
    if loaded:
        return Window(loaded, "LM Studio loaded_context_length")
    most = _positive(item.get("max_context_length"))
    return Window(most, "LM Studio max_context_length", MAXIMUM) if most else None


def from_ollama_ps(body: Any, model: str) -> Window | None:
    """Ollama `GET /api/ps`: the context a loaded model runs with."""
    item = _entry(body.get("models") if isinstance(body, dict) else None, model)
    tokens = _positive(item.get("context_length")) if item else None
    return Window(tokens, "Ollama /api/ps context_length") if tokens else None


def from_ollama_show(body: Any) -> Window | None:
    """Ollama `POST /api/show`: the Modelfile's `num_ctx`, else `<arch>.context_length`."""
    if not isinstance(body, dict):
        return None
    parameters = body.get("parameters")
    for line in parameters.splitlines() if isinstance(parameters, str) else ():
        name, _, value = line.strip().partition(" ")
        if name == "num_ctx" and value.strip().isdigit() and int(value.strip()) > 0:
            return Window(int(value.strip()), "Ollama num_ctx", CONFIGURED)
    info = body.get("model_info")
    for key, value in info.items() if isinstance(info, dict) else ():
        tokens = _positive(value)
        if key.endswith(".context_length") and tokens:
            return Window(tokens, f"Ollama {key}", MAXIMUM)
    return None


def server_root(base_url: str) -> str:
    """The server's own root, where the non-OpenAI endpoints live."""
    for suffix in ("/api/v1", "/v1", "/api"):
        if base_url.endswith(suffix):
            return base_url[: -len(suffix)]
    return base_url


class Discovery:
    """One round of probes against one upstream, for the given models."""

    def __init__(
        self, session: aiohttp.ClientSession, settings: Settings, kind: str, key: str = ""
    ) -> None:
        self.session = session
        self.settings = settings
        self.kind = kind
        self.root = server_root(settings.openai_base_url)
        self.server: str | None = None  # "llama.cpp" or "vllm" when the answers show it
        key = key or settings.openai_api_key or ""
        self.headers = upstream_headers(settings, key)
        self.headers.pop("content-type")
        if not key:  # dynamic mode: no key of ours (a local server needs none)
            self.headers.pop("authorization", None)
            self.headers.pop("api-key", None)

    async def _json(self, method: str, url: str, body: Any = None) -> Any:
        try:
            async with self.session.request(
                method, url, json=body, headers=self.headers, allow_redirects=False
            ) as response:
                if response.status != 200:
                    return None
                raw = await response.content.read(MAX_BODY)
                return await asyncio.to_thread(_loads, raw)
        except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, ValueError):
            return None

    async def windows(self, models: Iterable[str], listing: Any = None) -> dict[str, Window]:
        """Windows by model; `listing` is a `GET /models` body already fetched."""
        models = list(dict.fromkeys(models))
        found: dict[str, list[Window]] = {m: [] for m in models}
        if listing is None:
            listing = await self._json("GET", models_url(self.settings))
        self.server = self.server or _owner(listing)
        for model in models:
            _add(found[model], from_model_list(listing, model))
        for probe in PROBES.get(self.kind, ()):
            if all(any(w.rank == RUNNING for w in ws) for ws in found.values()):
                break  # every model's running window is known
            if probe == "llama.cpp":
                props = from_llama_props(await self._json("GET", self.root + "/props"))
                if props is not None:
                    self.server = "llama.cpp"
                for model in models:
                    _add(found[model], props)
            elif probe == "lmstudio":
                body = await self._json("GET", self.root + "/api/v0/models")
                for model in models:
                    _add(found[model], from_lmstudio(body, model))
            else:
                running = await self._json("GET", self.root + "/api/ps")
                for model in models:
                    _add(found[model], from_ollama_ps(running, model))
                    if not found[model] or min(w.rank for w in found[model]) > RUNNING:
                        shown = await self._json("POST", self.root + "/api/show", {"model": model})
                        _add(found[model], from_ollama_show(shown))
        return {m: min(ws, key=lambda w: w.rank) for m, ws in found.items() if ws}


def _owner(listing: Any) -> str | None:
    """The server software a model list names (`owned_by`), when it is one we know."""
    items = listing.get("data") if isinstance(listing, dict) else None
    for item in items if isinstance(items, list) else ():
        owner = item.get("owned_by") if isinstance(item, dict) else None
        if owner in ("vllm", "llamacpp"):
            return "vllm" if owner == "vllm" else "llama.cpp"
    return None


def _add(windows: list[Window], window: Window | None) -> None:
    if window is not None:
        windows.append(window)


def _loads(raw: bytes) -> Any:
    import orjson

    return orjson.loads(raw)


def tier_models(settings: Settings) -> dict[str, str]:
    """Claude Code's tiers → the upstream models they are routed to (environment set-up)."""
    return {
        "BIG": settings.big_model,
        "MIDDLE": settings.middle_model,
        "SMALL": settings.small_model,
    }


def client_targets(gateway: GatewayConfig) -> list[Target]:
    """The targets Claude Code's own requests go to first: each tier's (opus, sonnet, haiku,
    default) and every `[models]` entry for a claude id. Fallbacks and task routes are left
    out: an overflow there is answered "prompt is too long", and Claude Code compacts."""
    table = gateway.routing
    groups = [table.opus, table.sonnet, table.haiku, table.default]
    groups += [targets for pattern, targets in table.models if tier_of(pattern) is not None]
    return list(dict.fromkeys(group[0] for group in groups if group))


#: What Claude Code reads (verified in 2.1.337): the window auto-compaction works from, and
#: the window of model ids it does not know.
WINDOW_VARS = ("CLAUDE_CODE_AUTO_COMPACT_WINDOW", "CLAUDE_CODE_MAX_CONTEXT_TOKENS")
MODEL_DISCOVERY_VAR = "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY"


def smallest(windows: Mapping[str, Window]) -> tuple[str, Window] | None:
    """The model with the smallest window: the one Claude Code must compact for."""
    if not windows:
        return None
    return min(windows.items(), key=lambda item: item[1].tokens)


def window_line(tokens: int) -> str:
    """The variables to give Claude Code when it is started some other way than `run`."""
    return " ".join(f"{name}={tokens}" for name in WINDOW_VARS)


def client_env(
    environ: Mapping[str, str], windows: Mapping[str, Window]
) -> tuple[dict[str, str], str | None]:
    """Variables `run` adds for Claude Code (none the user set), and the line saying so."""
    added: dict[str, str] = {}
    if MODEL_DISCOVERY_VAR not in environ:
        added[MODEL_DISCOVERY_VAR] = "1"
    least = smallest(windows)
    if least is None:
        return added, None
    model, window = least
    free = [name for name in WINDOW_VARS if name not in environ]
    for name in free:
        added[name] = str(window.tokens)
    if not free:
        return added, None
    line = f"context window {window.tokens} tokens ('{model}', {window.source}): " + " ".join(
        f"{name}={window.tokens}" for name in free
    )
    return added, line


def configured_windows(settings: Settings) -> dict[str, Window]:
    """Windows the configuration sets: a tier's own beats `CONTEXT_WINDOW` for all."""
    windows: dict[str, Window] = {}
    for tier, model in tier_models(settings).items():
        tokens = settings.tier_context_windows.get(tier)
        if tokens:
            windows.setdefault(model, Window(tokens, f"{tier}_MODEL_CONTEXT_WINDOW", CONFIGURED))
    return windows


def configured_targets(settings: Settings, gateway: GatewayConfig) -> dict[Target, Window]:
    """The file's `[context_windows]`, or the environment's `<TIER>_MODEL_CONTEXT_WINDOW`."""
    if gateway.path is not None:
        return {
            Target.parse(target): Window(tokens, "[context_windows]", CONFIGURED)
            for target, tokens in gateway.context_windows.items()
        }
    provider = gateway.providers[0].name
    return {Target(provider, m): w for m, w in configured_windows(settings).items()}


async def discover(
    settings: Settings,
    models: Iterable[str],
    *,
    table: CapabilityTable | None = None,
    timeout: float = PROBE_TIMEOUT,
) -> dict[str, Window]:
    """Discover the windows of `models` on the configured upstream (errors → none found)."""
    return (await _discover(settings, list(models), table, timeout))[0]


async def _discover(
    settings: Settings, models: list[str], table: CapabilityTable | None, timeout: float
) -> tuple[dict[str, Window], str | None]:
    """(windows, the server software when recognised) on the upstream `settings` name."""
    table = table or CapabilityTable.from_file(settings.provider_profiles)
    if not models:
        return {}, None
    kind = table.profile(settings.openai_base_url, models[0]).name
    client_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 3.0))
    async with aiohttp.ClientSession(
        timeout=client_timeout, skip_auto_headers=("User-Agent",)
    ) as session:
        discovery = Discovery(session, settings, kind)
        try:
            found = await asyncio.wait_for(discovery.windows(models), timeout * 3)
        except (asyncio.TimeoutError, TimeoutError):
            found = {}
        return found, discovery.server


class ContextWindows:
    """The cache a request reads: configured windows, then what discovery found on each
    target's own provider (every provider is probed for the models routed to it, at once)."""

    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.registry = registry or Registry(settings)
        self.gateway = self.registry.gateway
        self.configured = configured_targets(settings, self.gateway)
        self.discovered: dict[Target, Window] = {}
        #: Provider name → the server software, when discovery recognised it.
        self.servers: dict[str, str] = {}
        self.refreshed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def server(self) -> str | None:
        """The first provider's server software (the environment set-up's only one)."""
        return self.servers.get(self.registry.first.name)

    def window(self, target: Target | str) -> Window | None:
        """The window for `target` (a bare model id: on the first provider, as pass-through
        ids are), or None when unknown. Never waits, never calls out."""
        if isinstance(target, str):
            target = Target(self.registry.first.name, target)
        window = self.configured.get(target)
        if window is not None:
            return window
        if self.settings.context_window:
            return Window(self.settings.context_window, "CONTEXT_WINDOW", CONFIGURED)
        return self.discovered.get(target)

    def label(self, target: Target) -> str:
        """`provider/model` with a file; the bare model for the environment's one provider."""
        return str(target) if self.gateway.path is not None else target.model

    def models(self) -> list[str]:
        return [self.label(target) for target in client_targets(self.gateway)]

    def known(self) -> dict[str, Window]:
        """The windows known now of the targets Claude Code's requests go to, by label."""
        return {self.label(t): w for t in client_targets(self.gateway) if (w := self.window(t))}

    def wait_known(self, timeout: float) -> dict[str, Window]:
        """From another thread: the windows once the first discovery ended (or timed out)."""
        deadline = time.monotonic() + timeout
        while not self.refreshed.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.known()

    async def collect(self, timeout: float = PROBE_TIMEOUT) -> dict[str, Window]:
        """Discover once (bounded by `timeout` per probe) and return what is known."""
        await self.refresh(timeout)
        return self.known()

    def wanted(self) -> dict[str, list[str]]:
        """Provider name → every model routed to it (any rule, fallbacks included)."""
        wanted: dict[str, list[str]] = {}
        for target in self.gateway.targets():
            wanted.setdefault(target.provider, []).append(target.model)
        return wanted

    async def refresh(self, timeout: float = PROBE_TIMEOUT) -> None:
        if self.settings.context_discovery:
            names = list(self.wanted().items())
            # Configured windows still win; the probes also tell which server this is.
            results = await asyncio.gather(
                *(
                    _discover(
                        self.registry[name].settings, models, self.registry[name].table, timeout
                    )
                    for name, models in names
                ),
                return_exceptions=True,
            )
            for (name, _), result in zip(names, results, strict=True):
                if isinstance(result, BaseException):
                    logger.debug("context window discovery on %s failed: %r", name, result)
                    continue
                found, server = result
                if server is not None:
                    self.servers[name] = server
                for model, window in found.items():
                    target = Target(name, model)
                    if self.discovered.get(target) != window:
                        logger.info(
                            "context window of %s: %d tokens (%s)",
                            self.label(target),
                            window.tokens,
                            window.source,
                        )
                    self.discovered[target] = window
        self.refreshed.set()

    def start(self) -> None:
        """Discover now and every REFRESH_SECONDS, in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="context-window-discovery")

    async def _loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # discovery is best effort; the proxy works without it
                logger.debug("context window discovery failed", exc_info=True)
            await asyncio.sleep(REFRESH_SECONDS)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
