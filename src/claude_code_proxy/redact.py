"""Keeping secrets and forged lines out of what the proxy writes (issue 13).

* URL query strings (OPENAI_BASE_URL may carry `?api_key=…`) are replaced by `?[redacted]`
  in error messages and log lines; the access log never shows a request's query.
* Control characters in logged values are escaped, so a client-chosen value (a model name
  with a newline, a path with `%0A`) cannot start a forged log line.
* Key-derived labels (metrics, logs, the client pool) are HMAC-keyed hashes: with a random
  per-process secret (or KEY_HASH_SECRET) a label cannot be used to test key guesses offline.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from typing import Any

import orjson

_URL_QUERY = re.compile(r"(\bhttps?://[^\s?#\"'<>]+)\?[^\s#\"'<>]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_LOGFMT_PLAIN = re.compile(r"[^\s\"=\\\x00-\x1f\x7f\x85\u2028\u2029]*")

_FORMATTER = logging.Formatter()

_key_secret = secrets.token_bytes(32)


def set_key_hash_secret(secret: str | None) -> None:
    """Use KEY_HASH_SECRET (stable labels across restarts and workers), or a random one."""
    global _key_secret
    _key_secret = secret.encode() if secret else secrets.token_bytes(32)


def key_hash(key: str) -> str:
    """A short identifier for a key: HMAC-SHA256 under the process secret, 16 hex digits."""
    digest = hmac.new(_key_secret, key.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return digest.hexdigest()[:16]


def redact_url_queries(text: str) -> str:
    return _URL_QUERY.sub(r"\1?[redacted]", text)


def escape_control(text: str) -> str:
    """`\\n`, `\\r`, `\\x1b` … written as escapes: one log record stays one line."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def logfmt_value(value: Any) -> str:
    """`value` for a `key=value` log line: bare when safe, else JSON-quoted (escaped)."""
    text = str(value)
    if _LOGFMT_PLAIN.fullmatch(text) and text:
        return text
    return orjson.dumps(text).decode()


def _safe(value: Any) -> Any:
    return escape_control(redact_url_queries(value)) if isinstance(value, str) else value


class LogSafetyFilter(logging.Filter):
    """On every handler: escape and redact %-arguments; drop the access log's query."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            path = args[2]
            if isinstance(path, str) and "?" in path:
                args = (*args[:2], path.partition("?")[0] + "?[redacted]", *args[3:])
        if isinstance(args, tuple):
            record.args = tuple(_safe(a) for a in args)
        elif isinstance(args, dict):
            record.args = {k: _safe(v) for k, v in args.items()}
        if isinstance(record.msg, str) and "://" in record.msg:
            record.msg = redact_url_queries(record.msg)
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text: an exception quoting a URL is redacted once, here.
            record.exc_text = redact_url_queries(_FORMATTER.formatException(record.exc_info))
        return True


def install_log_filters() -> None:
    """Attach LogSafetyFilter to the handlers logging is configured with (idempotent)."""
    for name in ("", "uvicorn", "uvicorn.access", "uvicorn.error"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, LogSafetyFilter) for f in handler.filters):
                handler.addFilter(LogSafetyFilter())


def query_secrets(query: str) -> list[str]:
    """The values of a URL query (OPENAI_BASE_URL's), to redact wherever they appear."""
    values = [item.partition("=")[2] for item in query.split("&")]
    return [query, *(v for v in values if len(v) >= 4)] if query else []
