"""Prometheus metrics (text exposition at /metrics).

Each app gets its own registry, so several apps can live in one process (tests). When
`PROMETHEUS_MULTIPROC_DIR` is set (several workers on one port) the exposition
aggregates every worker's values with the client library's multi-process collector.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
MAX_CLIENT_LABELS = 100
OTHER_CLIENTS = "other"
# Model ids are client-chosen (any non-claude id passes through), so label values are capped.
MAX_MODEL_LABELS = 20
MAX_MODEL_LABEL_LENGTH = 100
OTHER_MODELS = "other"


class Metrics:
    def __init__(self, known_models: Iterable[str] = ()) -> None:
        self._known_models = frozenset(known_models)
        self._models: set[str] = set()
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        registry = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "ccp_requests", "Requests handled", ["endpoint", "model", "status"], registry=registry
        )
        self.errors = Counter(
            "ccp_errors", "Errors by Anthropic error type", ["type"], registry=registry
        )
        self.upstream_latency = Histogram(
            "ccp_upstream_latency_seconds",
            "Time until the upstream answered with its response headers",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.time_to_first_token = Histogram(
            "ccp_time_to_first_token_seconds",
            "Time until the first content event went to the client",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "ccp_tokens", "Tokens by mapped model and kind", ["model", "kind"], registry=registry
        )
        self.active_streams = Gauge(
            "ccp_active_streams",
            "Streams in progress",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pool_size = Gauge(
            "ccp_client_pool_size",
            "Upstream clients in the pool",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pool_hits = Counter(
            "ccp_client_pool_hits", "Pool lookups served by an existing client", registry=registry
        )
        self.pool_misses = Counter(
            "ccp_client_pool_misses", "Pool lookups that created a client", registry=registry
        )
        self.pool_evictions = Counter(
            "ccp_client_pool_evictions", "Clients evicted from the pool", registry=registry
        )
        self.retries = Counter(
            "ccp_upstream_retries", "Upstream requests retried", registry=registry
        )
        self.provider_requests = Counter(
            "ccp_provider_requests",
            "Messages requests by the provider that served (or failed) them",
            ["provider", "status"],
            registry=registry,
        )
        self.route_fallbacks = Counter(
            "ccp_route_fallbacks",
            "A route's target failed before any byte reached the client; the next was tried",
            ["from", "to", "reason"],
            registry=registry,
        )
        self.web_searches = Counter(
            "ccp_web_searches",
            "Web searches the proxy ran for the web_search server tool, by outcome",
            ["backend", "outcome"],
            registry=registry,
        )
        self.client_requests = Counter(
            "ccp_client_requests",
            "Requests per client key hash (bounded)",
            ["client"],
            registry=registry,
        )
        self.rescued_tool_calls = Counter(
            "ccp_rescued_tool_calls",
            "Tool calls the model wrote as text, turned into tool_use (by the form it wrote)",
            ["form"],
            registry=registry,
        )
        self._clients: set[str] = set()

    def client_label(self, client: str) -> str:
        """Keep per-client series bounded: the first clients seen get a label, the rest share one."""
        if client in self._clients:
            return client
        if len(self._clients) < MAX_CLIENT_LABELS:
            self._clients.add(client)
            return client
        return OTHER_CLIENTS

    def model_label(self, model: str) -> str:
        """Configured models keep their name, as do the first few others; the rest share one.

        Otherwise every distinct `model` string a client sends would add series to the
        (by default unauthenticated) /metrics until memory runs out.
        """
        if model in self._known_models or model in self._models:
            return model
        if len(self._models) < MAX_MODEL_LABELS and len(model) <= MAX_MODEL_LABEL_LENGTH:
            self._models.add(model)
            return model
        return OTHER_MODELS

    def exposition(self) -> tuple[bytes, str]:
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
