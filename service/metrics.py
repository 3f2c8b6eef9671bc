"""Prometheus metrics (prometheus-client): requests by endpoint and status, latency per request and per stage,
searches stopped for running past their time budget.

Under ``ff-serve`` with several workers, ``PROMETHEUS_MULTIPROC_DIR`` is set
and ``/metrics`` aggregates every worker's values (prometheus-client's
multiprocess mode); otherwise each app has its own registry.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The service's metrics, registered in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("ff_http_requests", "HTTP requests answered, by endpoint, method and status.",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("ff_http_request_duration_seconds", "Time to answer an HTTP request.",
                                 ["endpoint"], buckets=BUCKETS, registry=self.registry)
        self.stages = Histogram("ff_search_stage_duration_seconds",
                                "Time per search stage (encode, sparse, dense, rerank, documents), per request.",
                                ["mode", "stage"], buckets=BUCKETS, registry=self.registry)
        self.queries = Counter("ff_search_queries", "Queries searched, by index and mode.", ["index", "mode"],
                               registry=self.registry)
        self.over_budget = Counter("ff_search_time_budget_exceeded",
                                   "Searches answered 503 for running past TIME_BUDGET_MS, by index, mode and the "
                                   "stage after which they were stopped.", ["index", "mode", "stage"],
                                   registry=self.registry)

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_search(self, index: str, mode: str, queries: int, timings: dict[str, float]) -> None:
        """Count a search's queries and record the seconds of each stage."""
        self.queries.labels(index, mode).inc(queries)
        for stage, seconds in timings.items():
            self.stages.labels(mode, stage).observe(seconds)

    def observe_over_budget(self, index: str, mode: str, stage: str) -> None:
        """Count a search stopped after ``stage`` for running past its time budget."""
        self.over_budget.labels(index, mode, stage).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format of all metrics (of every worker, in multiprocess mode)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
