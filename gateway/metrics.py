"""The gateway's own Prometheus metrics, in a registry of their own (LiteLLM's are not exposed).

Labels carry reason codes and route names only: never a key, a key id, a digest or a secret.

With forked workers (``gateway serve --workers N``) prometheus_client runs in its multiprocess mode: boot sets
PROMETHEUS_MULTIPROC_DIR to a private directory before this module is first imported, each worker writes its own
counters there, and :func:`exposition` serves the sum over every worker of the host (a worker that died keeps its
counts in the sum), whichever worker answers the scrape.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)


class FunctionGauge(Collector):
    """A gauge whose value is read when scraped (from the store, the same for every worker): kept out of the
    per-process files of the multiprocess mode, which would add one copy per worker."""

    def __init__(self, name: str, documentation: str) -> None:
        self._name = name
        self._documentation = documentation
        self._function: Callable[[], float] | None = None

    def set_function(self, function: Callable[[], float]) -> None:
        self._function = function

    def collect(self) -> Iterable[Metric]:
        if self._function is None:
            return []
        return [GaugeMetricFamily(self._name, self._documentation, value=self._function())]


class _WorkersFiles(Collector):
    """The gateway's own families from every worker's files (not any other library's that might write there)."""

    def __init__(self, path: str) -> None:
        self._files = MultiProcessCollector(None, path)  # type: ignore[no-untyped-call]  # untyped in prometheus_client

    def collect(self) -> Iterable[Metric]:
        families = self._files.collect()  # type: ignore[no-untyped-call]  # untyped in prometheus_client
        return [family for family in families if family.name.startswith("gateway_")]

AUTH_DENIALS = Counter("gateway_auth_denials_total", "Authentication denials by reason.", ["reason"],
                       registry=REGISTRY)
HONEYTOKEN_USES = Counter("gateway_honeytoken_uses_total", "Uses of honeytoken (canary) keys.", registry=REGISTRY)

REQUESTS = Counter("gateway_requests_total", "Requests by route and status.", ["route", "status"], registry=REGISTRY)
DENIALS = Counter("gateway_denials_total", "Requests refused by the gateway, by error code.", ["code"],
                  registry=REGISTRY)
RATE_LIMITED = Counter("gateway_rate_limited_total", "Rate-limit rejections, by limit.", ["limit"], registry=REGISTRY)
REVOCATIONS = Counter("gateway_revocations_total", "Key revocations, by channel.", ["channel"], registry=REGISTRY)
UPSTREAM_SECONDS = Histogram("gateway_upstream_seconds", "Time from handoff to LiteLLM until its response ended.",
                             ["route"], registry=REGISTRY,
                             buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 600))
RESERVATIONS_OPEN = FunctionGauge("gateway_reservations_open", "Credit reservations not yet settled (whole store).")
REGISTRY.register(RESERVATIONS_OPEN)


def exposition() -> bytes:
    """The metrics in Prometheus' text format: this process's, or with PROMETHEUS_MULTIPROC_DIR every worker's."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    registry.register(_WorkersFiles(folder))
    registry.register(RESERVATIONS_OPEN)
    return generate_latest(registry)
