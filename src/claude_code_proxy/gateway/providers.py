"""The provider registry: one `Provider` per configured provider, built one way.

A provider owns what a single upstream owned before: its URL building (Azure included),
its keys (one, a pool, or the client's), its capability table (and so its own self-healing
memory), its client pool, timeouts, retries, headers and a concurrency limit. The proxy's
`Settings` are seen through each provider (`provider_settings`), so URL and header
building stay the functions the single upstream used.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace

from claude_code_proxy.config import Settings
from claude_code_proxy.config_file import GatewayConfig, ProviderConfig, gateway_of
from claude_code_proxy.gateway.capabilities import CapabilityTable, Profile
from claude_code_proxy.gateway.keys import KeyPool
from claude_code_proxy.gateway.router import Target
from claude_code_proxy.gateway.upstream import Upstream, UpstreamError
from claude_code_proxy.metrics import Metrics


def provider_settings(settings: Settings, config: ProviderConfig) -> Settings:
    """The proxy's settings as this provider's upstream sees them."""
    return replace(
        settings,
        openai_api_key=config.api_keys[0] if config.api_keys else None,
        openai_base_url=config.base_url,
        openai_base_query=config.base_query,
        azure_api_version=config.azure_api_version,
        custom_headers=dict(config.headers),
        request_timeout=config.timeout or settings.request_timeout,
        connect_timeout=config.connect_timeout or settings.connect_timeout,
        max_retries=settings.max_retries if config.max_retries is None else config.max_retries,
        gateway=None,
    )


@dataclass
class Provider:
    config: ProviderConfig
    settings: Settings
    table: CapabilityTable
    upstream: Upstream
    #: Two keys or more; a single key (or none) needs no rotation.
    keys: KeyPool | None = None
    context_windows: dict[str, int] = field(default_factory=dict)
    _slots: asyncio.Semaphore | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def api(self) -> str:
        """`chat`, `responses` or `auto`: the dialect this provider is spoken to in."""
        return self.config.api

    @property
    def base_url(self) -> str:
        return self.settings.openai_base_url

    @property
    def dynamic(self) -> bool:
        """No key of its own: the client's key is forwarded."""
        return self.config.dynamic

    def profile(self, model: str) -> Profile:
        return self.table.profile(self.base_url, model)

    def context_window(self, model: str) -> int | None:
        """From the `[context_windows]` table, when the file gives one for this model."""
        return self.context_windows.get(model)

    def key(self, client_key: str) -> str | None:
        """The key for the next attempt: the pool's next rested key, the one key, or the
        client's; None when every pooled key rests or is bad."""
        if self.keys is not None:
            return self.keys.pick()
        if self.config.api_keys:
            return self.config.api_keys[0]
        return client_key

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of `max_concurrency` slots for the whole exchange."""
        limit = self.config.max_concurrency
        if limit is None:
            yield
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(limit)
        try:
            await asyncio.wait_for(self._slots.acquire(), self.settings.connect_timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise UpstreamError(
                529,
                "overloaded_error",
                f"provider {self.name} has {limit} requests in flight (max_concurrency) "
                f"and none finished within {self.settings.connect_timeout:g}s",
                reason="busy",
            ) from None
        try:
            yield
        finally:
            self._slots.release()


class Registry:
    """Every provider of the configuration, by name; the first one takes pass-through ids."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        gateway: GatewayConfig | None = None,
    ) -> None:
        self.gateway: GatewayConfig = gateway or gateway_of(settings)
        base = CapabilityTable.from_file(settings.provider_profiles)
        self.providers: dict[str, Provider] = {}
        for config in self.gateway.providers:
            view = provider_settings(settings, config)
            table = CapabilityTable(
                user_providers=base.user_providers,
                user_models=base.user_models,
                overrides=dict(config.profile),
            )
            windows = {
                target.partition("/")[2]: tokens
                for target, tokens in self.gateway.context_windows.items()
                if target.partition("/")[0] == config.name
            }
            self.providers[config.name] = Provider(
                config=config,
                settings=view,
                table=table,
                upstream=Upstream(view, table, metrics),
                keys=KeyPool(config.api_keys, provider=config.name)
                if len(config.api_keys) > 1
                else None,
                context_windows=windows,
            )
        self.first = next(iter(self.providers.values()))

    def __getitem__(self, name: str) -> Provider:
        return self.providers[name]

    def __iter__(self) -> Iterator[Provider]:
        return iter(self.providers.values())

    def provider_of(self, target: Target) -> Provider:
        return self.providers[target.provider]

    async def start(self) -> None:
        for provider in self.providers.values():
            await provider.upstream.start()

    async def close(self) -> None:
        for provider in self.providers.values():
            await provider.upstream.close()
