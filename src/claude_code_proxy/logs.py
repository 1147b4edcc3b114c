"""Log output: text lines, or (`LOG_FORMAT=json`) one JSON object per line.

A log shipper reads every line of the process, so in JSON mode everything goes through one
formatter: the proxy's own records, its access line (whose fields become the object's
fields), and the HTTP server's records, uvicorn's access lines included. uvicorn is then
started with `log_config=None` so its loggers propagate to this root handler instead of
installing their text formatters.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Attribute of a log record holding structured fields (the access line's).
FIELDS = "fields"


class JsonFormatter(logging.Formatter):
    """`{"time": …, "level": …, "logger": …, "message": …, …}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            data["message"] = "request"
            data.update(fields)
        elif record.name == "uvicorn.access" and _is_uvicorn_access(record.args):
            assert isinstance(record.args, tuple)
            client, method, path, version, status = record.args
            data.update(
                message="http",
                client=str(client),
                method=str(method),
                path=str(path),
                http_version=str(version),
                status=status,
            )
        else:
            data["message"] = record.getMessage()
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(data, default=str).decode()


def json_line(level: str, logger: str, message: str, **fields: Any) -> str:
    """A line in the formatter's shape for text printed outside logging (the banner)."""
    data = {"time": _utc(time.time()), "level": level, "logger": logger, "message": message}
    return orjson.dumps({**data, **fields}, default=str).decode()


def _utc(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def _is_uvicorn_access(args: Any) -> bool:
    """uvicorn's access record: (client, method, path, http version, status)."""
    return isinstance(args, tuple) and len(args) == 5 and isinstance(args[4], int)


def configure_logging(level: str, log_format: str = "text") -> None:
    """Root handler at `level`; in JSON mode every existing root handler formats JSON."""
    logging.basicConfig(level=getattr(logging, level, logging.WARNING), format=TEXT_FORMAT)
    if log_format == "json":
        for handler in logging.getLogger().handlers:
            # The console handler basicConfig made (not a test harness's capturing one).
            if type(handler) is logging.StreamHandler:
                handler.setFormatter(JsonFormatter())
    logging.getLogger("claude_code_proxy").setLevel(level)
