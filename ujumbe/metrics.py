"""Prometheus metrics (the official prometheus-client).

Counters and histograms live here; the code that does the work bumps them
where it already handles a batch (dispatch outcomes, receipts, accepts per
request), so the hot path pays a few dictionary look-ups. With ``serve
--processes N`` the parent sets PROMETHEUS_MULTIPROC_DIR before forking (see
cli.serve) and every process writes its figures to files there, which the
process answering ``GET /metrics`` adds up. That variable must be set before
prometheus_client is first imported: this module is imported lazily by
nothing before ``serve`` has decided.

Counts are taken as the work is recorded, inside its transaction: a batch
the store rolls back and runs again (rare: PostgreSQL's group commit after a
failing unit) counts twice. Queue figures are read from the store when
scraped (http/metrics.py).
"""

from __future__ import annotations

import os
from collections import Counter as Tally
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess
from prometheus_client.registry import REGISTRY

# UJUMBE_METRICS=off: nothing is counted (and /metrics shows only the queue
# figures), for measuring what counting costs (bench/RESULTS.md).
ENABLED = os.environ.get("UJUMBE_METRICS", "on").strip().lower() not in ("0", "off", "no", "false")

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

MESSAGES_ACCEPTED = Counter(
    "ujumbe_messages_accepted", "Messages accepted (queued or rejected at accept)",
    ["channel", "dialect", "network", "state"],
)
MESSAGES_SUBMITTED = Counter("ujumbe_messages_submitted", "Messages submitted to a connector", ["connector"])
MESSAGES_FINAL = Counter(
    "ujumbe_messages_final", "Messages reaching a final state", ["channel", "dialect", "connector", "network", "state"],
)
SEND_RETRIES = Counter("ujumbe_send_retries", "Sends failed transiently and queued again", ["connector"])
SUBMIT_LATENCY = Histogram(
    "ujumbe_submit_latency_seconds", "From accept to submitted", ["connector"], buckets=LATENCY_BUCKETS,
)
RECEIPT_LATENCY = Histogram(
    "ujumbe_receipt_latency_seconds", "From submitted to a final state", ["connector"], buckets=LATENCY_BUCKETS,
)
CREDITS_CHARGED = Counter(
    "ujumbe_credits_charged", "Credit reserved at accept, in units of the account's currency", ["channel"],
)
CALLBACKS = Counter("ujumbe_callbacks", "Callback attempts by outcome", ["kind", "outcome"])
CALLBACK_LATENCY = Histogram(
    "ujumbe_callback_latency_seconds", "One callback attempt", ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# per operator connector, set by the workers' ConnectorGauges every few seconds
# ("livesum": with several processes, the sum over those alive)
CONNECTOR_BINDS_UP = Gauge("ujumbe_connector_binds_up", "Binds up", ["connector"], multiprocess_mode="livesum")
CONNECTOR_IN_FLIGHT = Gauge("ujumbe_connector_in_flight", "Submits in flight (window in use)", ["connector"],
                            multiprocess_mode="livesum")
CONNECTOR_THROTTLES = Counter("ujumbe_connector_throttles", "Throttling answers from the SMSC", ["connector"])
CONNECTOR_RECONNECTS = Counter("ujumbe_connector_reconnects", "Binds made again after the first", ["connector"])
CALLS = Counter("ujumbe_calls", "Voice calls ended, by outcome and reason", ["connector", "outcome", "reason"])
ACTIVE_CALLS = Gauge("ujumbe_active_calls", "Voice calls in progress", ["connector"], multiprocess_mode="livesum")
HTTP_REQUESTS = Counter("ujumbe_http_requests", "HTTP requests by route template and status",
                        ["method", "route", "status"])


_children: dict[tuple[Any, ...], Any] = {}


def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: a dict look-up on the hot path
    instead of the library's locked one."""
    key = (metric, *labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


def accepted(channel: str, dialect: str, recipients: list[Any], cost: int) -> None:
    if not ENABLED:
        return
    if len(recipients) == 1:  # most requests
        r = recipients[0]
        if r.message_id is not None:
            child(MESSAGES_ACCEPTED, channel, dialect, r.network or "", r.state).inc()
    else:
        tally = Tally((r.network or "", r.state) for r in recipients if r.message_id is not None)
        for (network, state), n in tally.items():
            child(MESSAGES_ACCEPTED, channel, dialect, network, state).inc(n)
    if cost:
        child(CREDITS_CHARGED, channel).inc(cost / 10_000)


def http_request(method: str, route: Any, status: int) -> None:
    child(HTTP_REQUESTS, method, getattr(route, "path", "unmatched"), str(status)).inc()


def final(msg: dict[str, Any], state: str, at: int) -> None:
    if not ENABLED:
        return
    connector = msg.get("connector") or ""
    child(MESSAGES_FINAL, msg["channel"], msg["dialect"], connector, msg.get("network") or "", state).inc()
    if msg.get("submitted_at"):
        child(RECEIPT_LATENCY, connector).observe(max(0, at - msg["submitted_at"]) / 1000)


def call_ended(connector: str, outcome: str, reason: str) -> None:
    if ENABLED:
        child(CALLS, connector, outcome, reason).inc()


def registry() -> Any:
    """What a scrape reads: every process's files in multiprocess mode, else this process's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)
        return reg
    return REGISTRY


def exposition(extra: str = "") -> bytes:
    return generate_latest(registry()) + extra.encode()


def dispatched(batch: list[Any], msgs: dict[int, dict[str, Any]], now: int, max_attempts: int) -> None:
    """A recorded batch of send outcomes (workers/dispatch.py)."""
    if not ENABLED:
        return
    submitted: Tally[str] = Tally()
    retried: Tally[str] = Tally()
    for o in batch:
        msg = msgs.get(o.message_id)
        if msg is None:
            continue
        if o.submitted is not None:
            submitted[o.channel] += 1
            child(SUBMIT_LATENCY, o.channel).observe(max(0, now - msg["created_at"]) / 1000)
        elif o.error is not None and o.error.transient and o.attempts < max_attempts and not _waits_for_bind(o.error):
            retried[o.channel] += 1
    for connector, n in submitted.items():
        MESSAGES_SUBMITTED.labels(connector).inc(n)
    for connector, n in retried.items():
        SEND_RETRIES.labels(connector).inc(n)


def _waits_for_bind(error: Any) -> bool:
    """A send held back while no bind is up waits, it is not a retry (workers/dispatch.py)."""
    from ujumbe.workers import dispatch

    return error.code in getattr(dispatch, "NO_BIND", ())


def callback_attempt(kind: str, ok: bool, seconds: float) -> None:
    if not ENABLED:
        return
    child(CALLBACKS, kind, "sent" if ok else "failed").inc()
    child(CALLBACK_LATENCY, kind).observe(seconds)


class ConnectorGauges:
    """A worker (runtime.Platform supervises it) that copies what each running
    operator connector knows into the connector metrics every ``every_s``:
    binds up and in flight as gauges; throttles and rebinds, which the
    connector counts itself, as counters moved by what changed."""

    def __init__(self, router: Any, every_s: float = 5.0) -> None:
        self.router = router
        self.every_s = every_s
        self._seen: dict[int, tuple[Any, int, int]] = {}  # id(channel) -> (channel, throttles, binds made)

    def update(self) -> None:
        if not ENABLED:
            return
        alive = set()
        for name, channel in list(self.router.channels.items()):
            if getattr(channel, "kind", "") == "voice":
                child(ACTIVE_CALLS, name).set(getattr(channel, "active_calls", 0))
        for name, channel in list(self.router.connectors.items()):
            binds = getattr(channel, "binds", None)
            if not isinstance(binds, list):
                continue
            alive.add(id(channel))
            status = self.router.status(name) or {}
            child(CONNECTOR_BINDS_UP, name).set(status.get("binds_up") or 0)
            child(CONNECTOR_IN_FLIGHT, name).set(status.get("in_flight") or 0)
            throttles = sum(getattr(getattr(b, "pacer", None), "throttle_events", 0) for b in binds)
            made = sum(max(0, getattr(b, "binds", 0) - 1) for b in binds)
            _, seen_throttles, seen_made = self._seen.get(id(channel), (channel, 0, 0))
            if throttles > seen_throttles:
                child(CONNECTOR_THROTTLES, name).inc(throttles - seen_throttles)
            if made > seen_made:
                child(CONNECTOR_RECONNECTS, name).inc(made - seen_made)
            self._seen[id(channel)] = (channel, throttles, made)
        for key in set(self._seen) - alive:
            del self._seen[key]

    async def run(self, stop: Any) -> None:
        import asyncio

        while not stop.is_set():
            self.update()
            try:
                await asyncio.wait_for(stop.wait(), self.every_s)
            except TimeoutError:
                pass
