"""`claude-code-proxy doctor`: prove the whole chain works before Claude Code meets it.

Most set-up failures are one of a handful (wrong key variable, doubled `/v1`, a settings
file overriding the base URL, a model that does not exist, an upstream without tool
support), and each shows up at a different layer. So the doctor checks layer by layer and
prints the fix next to each failure: configuration, the TCP/TLS connection, the key (via
`GET /models`), every mapped model, and then real streamed exchanges through an
in-process proxy, so the translation is tested too, not just the upstream.

One module per check; `runner.py` puts them in order, `context.py` holds what they share.
"""

from claude_code_proxy.doctor.configuration import config_problems
from claude_code_proxy.doctor.context import DEFAULT_TIMEOUT
from claude_code_proxy.doctor.model_list import contains_model, model_ids
from claude_code_proxy.doctor.replies import Reply, ToolUse, sse_events
from claude_code_proxy.doctor.report import Check, Status, format_check, summary
from claude_code_proxy.doctor.runner import Doctor

__all__ = [
    "DEFAULT_TIMEOUT",
    "Check",
    "Doctor",
    "Reply",
    "Status",
    "ToolUse",
    "config_problems",
    "contains_model",
    "format_check",
    "model_ids",
    "sse_events",
    "summary",
]
