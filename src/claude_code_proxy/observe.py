"""Per-request observation: one structured log line and the metrics that go with it.

The log line carries ids, models, timings, token counts and the stop reason — never a
key (only its hash) and never prompt or completion text.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from claude_code_proxy.metrics import Metrics
from claude_code_proxy.redact import logfmt_value

access_logger = logging.getLogger("claude_code_proxy.access")


@dataclass
class RequestRecord:
    request_id: str
    endpoint: str
    client_model: str = ""
    upstream_model: str = ""
    stream: bool = False
    client: str = ""  # hash of the client's key
    started: float = field(default_factory=time.perf_counter)
    upstream_at: float | None = None
    first_token_at: float | None = None
    status: int = 0
    error_type: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    stop_reason: str | None = None
    #: The client went away before the reply was complete (Esc): status 499, not an error.
    cancelled: bool = False
    provider: str = ""
    #: The router's deciding rule (docs/routing.md).
    route: str = ""
    #: Targets that failed before the one that served, as `provider/model:reason`.
    tried: list[str] = field(default_factory=list)

    def upstream_answered(self) -> None:
        if self.upstream_at is None:
            self.upstream_at = time.perf_counter()

    def first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def usage(self, usage: dict[str, Any]) -> None:
        self.input_tokens = int(usage.get("input_tokens") or 0)
        self.output_tokens = int(usage.get("output_tokens") or 0)
        self.cached_tokens = int(usage.get("cache_read_input_tokens") or 0)

    def fields(self) -> dict[str, Any]:
        now = time.perf_counter()

        def ms(moment: float | None) -> float | None:
            return None if moment is None else round((moment - self.started) * 1000, 1)

        return {
            "request_id": self.request_id,
            "endpoint": self.endpoint,
            "model": self.client_model,
            "upstream_model": self.upstream_model,
            "provider": self.provider or None,
            "route": self.route or None,
            "tried": ",".join(self.tried) or None,
            "stream": self.stream,
            "status": self.status,
            "error": self.error_type,
            "latency_ms": round((now - self.started) * 1000, 1),
            "upstream_ms": ms(self.upstream_at),
            "ttft_ms": ms(self.first_token_at),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "stop_reason": self.stop_reason,
            "cancelled": True if self.cancelled else None,
            "client": self.client or None,
        }


def finish(record: RequestRecord, metrics: Metrics | None, *, json_logs: bool) -> None:
    """Emit the log line and update the metrics once the exchange is over."""
    if access_logger.isEnabledFor(logging.INFO):
        fields = record.fields()
        if json_logs:
            # The fields also ride on the record: the JSON formatter makes them the line.
            access_logger.info(orjson.dumps(fields).decode(), extra={"fields": fields})
        else:
            access_logger.info(
                " ".join(
                    f"{k}={logfmt_value(v)}" for k, v in fields.items() if v is not None and v != ""
                )
            )
    if metrics is None:
        return
    model = metrics.model_label(record.upstream_model or "unknown")
    metrics.requests.labels(record.endpoint, model, str(record.status)).inc()
    if record.error_type:
        metrics.errors.labels(record.error_type).inc()
    if record.upstream_at is not None:
        metrics.upstream_latency.labels(model).observe(record.upstream_at - record.started)
    if record.first_token_at is not None:
        metrics.time_to_first_token.labels(model).observe(record.first_token_at - record.started)
    if record.input_tokens:
        metrics.tokens.labels(model, "input").inc(record.input_tokens)
    if record.output_tokens:
        metrics.tokens.labels(model, "output").inc(record.output_tokens)
    if record.cached_tokens:
        metrics.tokens.labels(model, "cached").inc(record.cached_tokens)
    if record.provider:
        metrics.provider_requests.labels(record.provider, str(record.status)).inc()
    if record.client:
        metrics.client_requests.labels(metrics.client_label(record.client)).inc()
