"""The smallest context window among the mapped models, when the model list gives one."""

from __future__ import annotations

from claude_code_proxy.doctor.context import Context
from claude_code_proxy.doctor.models import mapped_models

#: The smallest context window (tokens) in which Claude Code works.
MIN_CONTEXT = 32768


class ContextWindowCheck:
    """Claude Code compacts by a window it assumes; say the real one and how to tell it."""

    def run(self, ctx: Context) -> None:
        known = {
            model: ctx.context_windows[model]
            for _, model in mapped_models(ctx)
            if model in ctx.context_windows
        }
        if not known:
            return
        model, tokens = min(known.items(), key=lambda item: item[1])
        hint = (
            "Claude Code assumes a 200k-token window for models it does not know and compacts "
            f"by that; tell it the real one: CLAUDE_CODE_AUTO_COMPACT_WINDOW={tokens} "
            f"CLAUDE_CODE_MAX_CONTEXT_TOKENS={tokens} claude-code-proxy run -- claude"
        )
        if tokens < MIN_CONTEXT:
            ctx.add(
                "context window",
                "WARN",
                f"'{model}' has a {tokens}-token context window; Claude Code's first request "
                f"alone is about 13k tokens and it needs {MIN_CONTEXT} or more",
                "serve the model with a longer context (Ollama: OLLAMA_CONTEXT_LENGTH=32768; "
                "vLLM: --max-model-len; llama.cpp: --ctx-size); then " + hint,
            )
        else:
            ctx.add(
                "context window",
                "INFO",
                f"'{model}' has a {tokens}-token context window (from the model list)",
                hint,
            )
