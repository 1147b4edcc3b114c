"""Pure translation between the Anthropic Messages API and OpenAI Chat Completions.

Nothing in this package performs I/O, reads globals or imports a web framework:
plain dicts go in, dicts (or SSE bytes) come out, so every rule is unit-testable.
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
