"""The order of the checks: offline first, then the network layer by layer, then chats."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping

import aiohttp

from claude_code_proxy.config import Settings
from claude_code_proxy.doctor.authentication import AuthenticationCheck
from claude_code_proxy.doctor.chat import ProxyChat, Target
from claude_code_proxy.doctor.claude_settings import ClaudeSettingsCheck
from claude_code_proxy.doctor.configuration import ConfigurationCheck
from claude_code_proxy.doctor.context import DEFAULT_TIMEOUT, Context
from claude_code_proxy.doctor.context_window import ContextWindowCheck
from claude_code_proxy.doctor.models import MODEL_VARS, ModelsCheck
from claude_code_proxy.doctor.providers import ProviderSections
from claude_code_proxy.doctor.reachability import ReachabilityCheck
from claude_code_proxy.doctor.reasoning import ReasoningCheck
from claude_code_proxy.doctor.report import Check, Report
from claude_code_proxy.doctor.text import TextCheck
from claude_code_proxy.doctor.tool_round_trip import ToolRoundTripCheck
from claude_code_proxy.doctor.web_search import WebSearchCheck
from claude_code_proxy.launcher import BackgroundProxy, ProxyStartError
from claude_code_proxy.models import map_model


class Doctor:
    """Runs the checks in order, reporting each row as soon as it is known."""

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str],
        *,
        chat: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        report: Callable[[Check], None] | None = None,
    ) -> None:
        self.report = Report(on_row=report)
        self.ctx = Context(settings, environ, self.report, chat=chat, timeout=timeout)

    @property
    def results(self) -> list[Check]:
        return self.report.results

    @property
    def failed(self) -> bool:
        return self.report.failed

    def run(self) -> list[Check]:
        ConfigurationCheck().run(self.ctx)
        ClaudeSettingsCheck().run(self.ctx)
        gateway = self.ctx.settings.gateway
        if gateway is None:
            asyncio.run(self.network())
        else:
            asyncio.run(ProviderSections(self.ctx, gateway).run())
        asyncio.run(WebSearchCheck().run(self.ctx))
        return self.results

    async def network(self) -> None:
        ctx = self.ctx
        if not await ReachabilityCheck().run(ctx):
            ctx.add("remaining checks", "SKIP", "skipped: the upstream is unreachable")
            return
        timeout = aiohttp.ClientTimeout(
            total=ctx.timeout, sock_connect=ctx.settings.connect_timeout
        )
        session = aiohttp.ClientSession(timeout=timeout, skip_auto_headers=("User-Agent",))
        async with session:
            available = await AuthenticationCheck().run(ctx, session)
            ModelsCheck().run(ctx, available)
            await ContextWindowCheck().run(ctx, session)
        if not ctx.chat:
            return
        if ctx.auth_failed:
            ctx.add("chat checks", "SKIP", "skipped: the upstream rejected the key")
            return
        if ctx.base_url_doubled:
            ctx.add("chat checks", "SKIP", "skipped: fix OPENAI_BASE_URL (/v1 twice) first")
            return
        await self.chat_checks()

    def targets(self) -> list[Target]:
        """One per distinct upstream model that Claude Code's tiers reach."""
        seen: set[str] = set()
        targets = []
        for var, _, client_id in MODEL_VARS:
            upstream = map_model(client_id, self.ctx.settings)
            if upstream not in seen:
                seen.add(upstream)
                targets.append(Target(var, client_id, upstream))
        return targets

    async def chat_checks(self) -> None:
        ctx = self.ctx
        targets = []
        for target in self.targets():
            if target.upstream in ctx.missing_models:
                # Said, not silently dropped: the model row above failed.
                ctx.add(
                    "chat checks",
                    "SKIP",
                    f"skipped for {target.var} '{target.upstream}': not in the model list",
                )
            else:
                targets.append(target)
        if not targets:
            ctx.add("chat checks", "SKIP", "skipped: no mapped model exists upstream")
            return
        # The windows are known already: no second discovery by the proxy chatted with.
        proxy = BackgroundProxy(dataclasses.replace(ctx.settings, context_discovery=False))
        try:
            await asyncio.to_thread(proxy.start)
        except (ProxyStartError, OSError, ValueError) as exc:
            ctx.add(
                "proxy",
                "FAIL",
                f"the proxy could not start: {exc}",
                "`claude-code-proxy serve` stops with the same error: fix what it names",
            )
            return
        try:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=ctx.timeout)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                chat = ProxyChat(ctx, session, proxy.base_url)
                for target in targets:
                    await TextCheck().run(chat, target)
                    await ToolRoundTripCheck().run(chat, target)
                await ReasoningCheck().run(chat, targets[0])
        finally:
            await asyncio.to_thread(proxy.stop)
