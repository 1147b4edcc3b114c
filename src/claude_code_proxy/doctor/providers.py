"""With a configuration file: one section per provider, each checked layer by layer.

Every provider gets the single-upstream checks (reachability, key via `GET /models`, each
model its routes name), then, through one in-process proxy with the whole configuration,
a streamed text reply and a tool round trip per distinct target, addressed as
`provider/model` so the router sends each exactly where it is being checked.
"""

from __future__ import annotations

import asyncio
import dataclasses

import aiohttp

from claude_code_proxy.config_file import GatewayConfig, ProviderConfig
from claude_code_proxy.doctor.authentication import AuthenticationCheck
from claude_code_proxy.doctor.chat import ProxyChat, Target
from claude_code_proxy.doctor.context import Context
from claude_code_proxy.doctor.context_window import ContextWindowCheck
from claude_code_proxy.doctor.models import ModelsCheck
from claude_code_proxy.doctor.reachability import ReachabilityCheck
from claude_code_proxy.doctor.reasoning import ReasoningCheck
from claude_code_proxy.doctor.text import TextCheck
from claude_code_proxy.doctor.tool_round_trip import ToolRoundTripCheck
from claude_code_proxy.gateway.describe import provider_line
from claude_code_proxy.gateway.providers import provider_settings
from claude_code_proxy.launcher import BackgroundProxy, ProxyStartError


def routed_models(gateway: GatewayConfig) -> dict[str, list[tuple[str, str]]]:
    """Provider → (the first rule naming it, model), each model once, in rule order."""
    table = gateway.routing
    rules: list[tuple[str, tuple[object, ...]]] = [
        (f"routes.{tier}", getattr(table, tier)) for tier in ("opus", "sonnet", "haiku")
    ]
    rules.append(("routes.default", table.default))
    if table.long_context is not None:
        rules.append(("routes.long_context", table.long_context.targets))
    rules += [("routes.image", table.image), ("routes.web_search", table.web_search)]
    rules += [(f"models.{pattern}", targets) for pattern, targets in table.models]
    found: dict[str, list[tuple[str, str]]] = {p.name: [] for p in gateway.providers}
    for label, targets in rules:
        for target in targets:
            provider, _, model = str(target).partition("/")
            if all(model != known for _, known in found[provider]):
                found[provider].append((label, model))
    return found


class ProviderSections:
    """The sections, in file order; one proxy serves every provider's chat checks."""

    def __init__(self, ctx: Context, gateway: GatewayConfig) -> None:
        self.ctx = ctx
        self.gateway = gateway
        self.proxy: BackgroundProxy | None = None
        self.proxy_failed = False
        self.chatted: list[Target] = []

    async def run(self) -> None:
        models = routed_models(self.gateway)
        try:
            for config in self.gateway.providers:
                await self.section(config, models[config.name])
            if self.chatted and self.ctx.chat:
                await self.chat([self.chatted[0]], reasoning=True)
        finally:
            if self.proxy is not None:
                await asyncio.to_thread(self.proxy.stop)

    def provider_context(self, config: ProviderConfig, models: list[tuple[str, str]]) -> Context:
        ctx = self.ctx
        view = provider_settings(ctx.settings, config)
        return Context(
            view,
            ctx.environ,
            ctx.report,
            chat=ctx.chat,
            timeout=ctx.timeout,
            models=models,
            key_label=config.key_source or "client key",
            configured_windows={
                target.partition("/")[2]: tokens
                for target, tokens in self.gateway.context_windows.items()
                if target.partition("/")[0] == config.name
            },
        )

    async def section(self, config: ProviderConfig, models: list[tuple[str, str]]) -> None:
        ctx = self.provider_context(config, models)
        ctx.add(f"provider {config.name}", "INFO", provider_line(config))
        if not await ReachabilityCheck().run(ctx):
            ctx.add("remaining checks", "SKIP", f"skipped: {config.name} is unreachable")
            return
        timeout = aiohttp.ClientTimeout(
            total=ctx.timeout, sock_connect=ctx.settings.connect_timeout
        )
        async with aiohttp.ClientSession(timeout=timeout, skip_auto_headers=("User-Agent",)) as s:
            available = await AuthenticationCheck().run(ctx, s)
            ModelsCheck().run(ctx, available)
            await ContextWindowCheck().run(ctx, s)
        if not ctx.chat or not models:
            return
        if ctx.auth_failed:
            ctx.add("chat checks", "SKIP", f"skipped: {config.name} rejected the key")
            return
        targets = [
            Target(label, f"{config.name}/{model}", model)
            for label, model in models
            if model not in ctx.missing_models
        ]
        if not targets:
            ctx.add("chat checks", "SKIP", "skipped: no routed model exists upstream")
            return
        await self.chat(targets, chat_ctx=ctx)

    async def chat(
        self, targets: list[Target], *, chat_ctx: Context | None = None, reasoning: bool = False
    ) -> None:
        ctx = chat_ctx or self.ctx
        base_url = await self.proxy_url()
        if base_url is None:
            return
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=ctx.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            chat = ProxyChat(ctx, session, base_url)
            for target in targets:
                if reasoning:
                    await ReasoningCheck().run(chat, target)
                    continue
                await TextCheck().run(chat, target)
                await ToolRoundTripCheck().run(chat, target)
                self.chatted.append(target)

    async def proxy_url(self) -> str | None:
        """The in-process proxy with the whole configuration, started on first use."""
        if self.proxy is not None:
            return self.proxy.base_url
        if self.proxy_failed:
            return None
        # The windows are known already: no second discovery by the proxy chatted with.
        proxy = BackgroundProxy(dataclasses.replace(self.ctx.settings, context_discovery=False))
        try:
            await asyncio.to_thread(proxy.start)
        except (ProxyStartError, OSError, ValueError) as exc:
            self.proxy_failed = True
            self.ctx.add("proxy", "FAIL", f"the proxy could not start: {exc}", "see the log above")
            return None
        self.proxy = proxy
        return proxy.base_url
