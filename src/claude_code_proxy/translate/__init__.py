"""Pure translation between the Anthropic Messages API and OpenAI's APIs.

Nothing in this package performs I/O, reads globals or imports a web framework:
plain dicts go in, dicts (or SSE bytes) come out, so every rule is unit-testable.

Layout (docs/architecture.md): one sub-package per upstream dialect, each with its
request, response and stream translator (``chat/`` for Chat Completions), and the
modules at this level shared by every dialect: ``content`` (walking turns and blocks),
``tools`` (tool schemas, tool_choice), ``structured`` (output formats), ``documents``,
``options``, ``ids``, ``usage``, ``errors``, ``reasoning`` (signatures), ``schema``
(the Gemini subset), ``tool_args`` (streamed JSON arguments) and ``sse``.
"""

from claude_code_proxy.translate.chat.request import TranslatedRequest, translate_request
from claude_code_proxy.translate.chat.response import translate_completion
from claude_code_proxy.translate.chat.stream import StreamTranslator
from claude_code_proxy.translate.errors import RequestValidationError

__all__ = [
    "RequestValidationError",
    "StreamTranslator",
    "TranslatedRequest",
    "translate_completion",
    "translate_request",
]
