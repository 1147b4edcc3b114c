"""A request with thinking enabled: Claude Code sends one when extended thinking is on."""

from __future__ import annotations

from claude_code_proxy.doctor.chat import ProxyChat, Target


class ReasoningCheck:
    """Informational unless the request fails: thinking blocks are optional for Claude Code."""

    async def run(self, chat: ProxyChat, target: Target) -> None:
        name, upstream = "reasoning", target.upstream
        reply = await chat.message(
            {
                "model": target.client_id,
                "max_tokens": 2048,
                "stream": True,
                "thinking": {"type": "enabled", "budget_tokens": 1024},
                "messages": [
                    {"role": "user", "content": "What is 17 * 23? Answer with the number."}
                ],
            }
        )
        if reply.failure:
            chat.ctx.add(
                name,
                "WARN",
                f"{upstream}: a request with thinking enabled failed: {reply.failure}",
                "Claude Code sends this when extended thinking is on: turn thinking off in "
                "Claude Code, or use a model that accepts reasoning parameters",
            )
        elif reply.thinking.strip():
            chat.ctx.add(
                name,
                "INFO",
                f"yes: {upstream} streams its reasoning as thinking blocks "
                f"({len(reply.thinking)} characters)",
            )
        else:
            chat.ctx.add(
                name,
                "INFO",
                f"no thinking blocks from {upstream} (its reasoning, if any, is not returned); "
                "Claude Code works without them",
            )
