"""A streamed plain-text reply: the translation of the simplest exchange, end to end."""

from __future__ import annotations

from claude_code_proxy.doctor.chat import ProxyChat, Target, judge_text_reply, snippet


class TextCheck:
    async def run(self, chat: ProxyChat, target: Target) -> None:
        reply = await chat.message(
            {
                "model": target.client_id,
                "max_tokens": 1024,
                "stream": True,
                "messages": [{"role": "user", "content": "Reply with the single word: pong"}],
            }
        )
        route = f"{target.client_id} → {target.upstream}"
        judge_text_reply(
            chat.ctx,
            "streamed text",
            reply,
            target,
            where=route,
            empty=f"{route}: empty reply (stop_reason {reply.stop_reason})",
            empty_fix="a reasoning model may have spent every token thinking; check the model",
            passed=f"{route} answered {snippet(reply.text)!r} (stop_reason {reply.stop_reason})",
        )
