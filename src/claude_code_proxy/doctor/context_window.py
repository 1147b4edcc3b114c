"""Each routed model's context window (configured or discovered) and the line for Claude Code."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from claude_code_proxy.doctor.context import Context
from claude_code_proxy.doctor.models import mapped_models
from claude_code_proxy.gateway.capabilities import CapabilityTable
from claude_code_proxy.windows import (
    CONFIGURED,
    PROBE_TIMEOUT,
    Discovery,
    Window,
    configured_windows,
    smallest,
    window_line,
)

#: The smallest context window (tokens) in which Claude Code works.
MIN_CONTEXT = 32768


class ContextWindowCheck:
    """Claude Code compacts by a window it assumes; say the real one and how to tell it."""

    async def run(self, ctx: Context, session: aiohttp.ClientSession) -> None:
        s = ctx.settings
        models = list(dict.fromkeys(model for _, model in mapped_models(ctx)))
        if ctx.configured_windows is None:
            windows: dict[str, Window] = dict(configured_windows(s))
        else:  # a file's [context_windows] for this provider, as the proxy uses them
            windows = {
                m: Window(tokens, "[context_windows]", CONFIGURED)
                for m, tokens in ctx.configured_windows.items()
                if m in models
            }
        for model in models:
            if model not in windows and s.context_window:
                windows[model] = Window(s.context_window, "CONTEXT_WINDOW", CONFIGURED)
        wanted = [m for m in models if m not in windows]
        if wanted and not ctx.base_url_doubled and not ctx.auth_failed:
            table = CapabilityTable.from_file(s.provider_profiles)
            kind = table.profile(s.openai_base_url, wanted[0]).name
            discovery = Discovery(session, s, kind, ctx.key)
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                found = discovery.windows(wanted, listing=ctx.model_list)
                windows.update(await asyncio.wait_for(found, PROBE_TIMEOUT * 3))
        ctx.context_windows = {model: window.tokens for model, window in windows.items()}
        least = smallest(windows)
        if least is None:
            return
        model, window = least
        others = "; ".join(
            f"'{m}' {w.tokens} ({w.source})" for m, w in windows.items() if m != model
        )
        detail = f"'{model}' has a {window.tokens}-token context window ({window.source})"
        detail += f"; {others}" if others else ""
        hint = (
            "Claude Code assumes a 200k-token window for models it does not know and compacts "
            "by that; `claude-code-proxy run -- claude` tells it the real one, otherwise start "
            f"it with {window_line(window.tokens)}"
        )
        if window.tokens < MIN_CONTEXT:
            ctx.add(
                "context window",
                "WARN",
                detail + f"; Claude Code's first request alone is about 13k tokens and it needs "
                f"{MIN_CONTEXT} or more",
                "serve the model with a longer context (Ollama: OLLAMA_CONTEXT_LENGTH=32768; "
                "vLLM: --max-model-len; llama.cpp: --ctx-size); then " + hint,
            )
        else:
            ctx.add("context window", "INFO", detail, hint)
