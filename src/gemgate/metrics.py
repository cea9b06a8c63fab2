"""Prometheus metrics, counted in plain dicts on the request path and turned into metric
families only when `/metrics` is scraped: a finished request costs a few dict updates, not a
labelled-child lookup under a lock per metric."""

from __future__ import annotations

import contextlib
import time
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from gemgate import ir

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

    from gemgate.pool import Failure, Pool

# Seconds. Gateway answers range from a fast count to a minutes-long thinking stream.
LATENCY_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
FIRST_BYTE_BOUNDS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Upstream failure kinds as labels: the pool's action, in an operator's words (low cardinality).
FAILURE_REASONS = {
    "cooldown": "rate_limited",
    "invalidate": "credential_rejected",
    "retry": "upstream_failed",
    "final": "request_rejected",
}


class _Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def copy(self) -> _Histogram:
        twin = _Histogram(self.bounds)
        twin.add(self.counts, self.total)
        return twin

    def add(self, counts: list[int], total: float) -> None:
        if len(counts) == len(self.counts):
            self.counts = [a + b for a, b in zip(self.counts, counts, strict=True)]
            self.total += total

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class Metrics:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        # Keyed by label values: (channel, model, endpoint, status), (channel, model, endpoint),
        # (channel, model), (channel, model, direction), (credential, channel, reason, status).
        self._requests: dict[tuple[str, ...], int] = {}
        self._latency: dict[tuple[str, ...], _Histogram] = {}
        self._first_byte: dict[tuple[str, ...], _Histogram] = {}
        self._tokens: dict[tuple[str, ...], int] = {}
        self._upstream_errors: dict[tuple[str, ...], int] = {}
        # With several workers: where each leaves its counts for the others' scrapes.
        self._folder: Path | None = None
        self._name = ""
        # prometheus_client is loaded by the first scrape: an idle server never needs it.
        self._registry: CollectorRegistry | None = None

    # -- counting (the request path) ------------------------------------------------------

    def request(
        self,
        channel: str,
        model: str,
        endpoint: str,
        status: int,
        seconds: float,
        first_byte: float | None,
        usage: ir.Usage,
    ) -> None:
        key = (channel, model, endpoint, str(status))
        self._requests[key] = self._requests.get(key, 0) + 1
        shape = (channel, model, endpoint)
        latency = self._latency.get(shape)
        if latency is None:
            latency = self._latency[shape] = _Histogram(LATENCY_BOUNDS)
        latency.observe(seconds)
        if first_byte is not None:
            pair = (channel, model)
            first = self._first_byte.get(pair)
            if first is None:
                first = self._first_byte[pair] = _Histogram(FIRST_BYTE_BOUNDS)
            first.observe(first_byte)
        if usage.prompt_tokens or usage.output_tokens or usage.thought_tokens:
            tokens = self._tokens
            into = (channel, model, "in")
            tokens[into] = tokens.get(into, 0) + usage.prompt_tokens + usage.tool_prompt_tokens
            out = (channel, model, "out")
            tokens[out] = tokens.get(out, 0) + usage.output_tokens + usage.thought_tokens

    def upstream_error(self, credential_id: int, channel: str, failure: Failure) -> None:
        reason = FAILURE_REASONS.get(failure.action, failure.action)
        key = (str(credential_id), channel, reason, str(failure.error.status))
        self._upstream_errors[key] = self._upstream_errors.get(key, 0) + 1

    # -- several workers ------------------------------------------------------------------

    def share(self, folder: Path, name: str) -> None:
        """One of several workers: `publish` leaves this worker's counts in `folder`, and a
        scrape of any worker adds up every worker's."""
        self._folder, self._name = folder, name

    def publish(self) -> None:
        """Write this worker's counts for the others (off the request path, every reload)."""
        if self._folder is None:
            return
        snapshot = {
            "requests": [[*k, v] for k, v in list(self._requests.items())],
            "latency": [[*k, h.counts, h.total] for k, h in list(self._latency.items())],
            "first_byte": [[*k, h.counts, h.total] for k, h in list(self._first_byte.items())],
            "tokens": [[*k, v] for k, v in list(self._tokens.items())],
            "upstream_errors": [[*k, v] for k, v in list(self._upstream_errors.items())],
        }
        # A cleaner of old files in /tmp may have taken the parent's folder on a long run.
        self._folder.mkdir(parents=True, exist_ok=True)
        partial = self._folder / f".{self._name}.part"
        partial.write_bytes(orjson.dumps(snapshot))
        # A scrape reads the whole of the old file or the whole of the new one.
        partial.replace(self._folder / f"{self._name}.json")

    def _counts(self) -> _Counts:
        own = _Counts(
            self._requests, self._latency, self._first_byte, self._tokens, self._upstream_errors
        )
        if self._folder is None:
            return own
        total = own.copy()
        for path in self._folder.glob("*.json"):
            if path.stem != self._name:
                with contextlib.suppress(OSError, ValueError):
                    total.add(orjson.loads(path.read_bytes()))
        return total

    # -- scraping -------------------------------------------------------------------------

    def render(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        if self._registry is None:
            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(self)  # type: ignore[arg-type]
        return generate_latest(self._registry)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        counts = self._counts()
        requests = CounterMetricFamily(
            "gemgate_requests",
            "Answered requests by channel, model, endpoint and HTTP status.",
            labels=["channel", "model", "endpoint", "status"],
        )
        for shape4, count in list(counts.requests.items()):
            requests.add_metric(list(shape4), count)
        yield requests

        latency = HistogramMetricFamily(
            "gemgate_request_duration_seconds",
            "Time from a request's arrival to the end of its answer.",
            labels=["channel", "model", "endpoint"],
        )
        for shape, hist in list(counts.latency.items()):
            latency.add_metric(list(shape), hist.buckets(), hist.total)
        yield latency

        first = HistogramMetricFamily(
            "gemgate_time_to_first_byte_seconds",
            "Time from a streamed request's arrival to its first answer event.",
            labels=["channel", "model"],
        )
        for pair, hist in list(counts.first_byte.items()):
            first.add_metric(list(pair), hist.buckets(), hist.total)
        yield first

        tokens = CounterMetricFamily(
            "gemgate_tokens",
            "Tokens by channel, model and direction (in: prompt; out: answer and thoughts).",
            labels=["channel", "model", "direction"],
        )
        for triple, count in list(counts.tokens.items()):
            tokens.add_metric(list(triple), count)
        yield tokens

        errors = CounterMetricFamily(
            "gemgate_upstream_errors",
            "Failed upstream attempts by credential, channel, reason and upstream status.",
            labels=["credential", "channel", "reason", "status"],
        )
        for quad, count in list(counts.upstream_errors.items()):
            errors.add_metric(list(quad), count)
        yield errors

        yield from self._pool_gauges()

    def _pool_gauges(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        states = GaugeMetricFamily(
            "gemgate_credentials",
            "Credentials by channel and state (ok, cooling, invalid, disabled).",
            labels=["channel", "state"],
        )
        cooldowns = GaugeMetricFamily(
            "gemgate_cooldowns_active",
            "Credentials cooling down, by channel and model.",
            labels=["channel", "model"],
        )
        now = time.monotonic()
        for channel in self._pool.channels():
            counts = dict.fromkeys(("ok", "cooling", "invalid", "disabled"), 0)
            cooling: dict[str, int] = {}
            for cred in self._pool.credentials(channel):
                state = self._pool.state(cred.id)
                models = [m for m, until in state.cooldown_until.items() if until > now]
                for model in models:
                    cooling[model] = cooling.get(model, 0) + 1
                if not cred.enabled:
                    counts["disabled"] += 1
                elif state.invalid_reason is not None:
                    counts["invalid"] += 1
                elif models:
                    counts["cooling"] += 1
                else:
                    counts["ok"] += 1
            for word, count in counts.items():
                states.add_metric([channel, word], count)
            for model, count in cooling.items():
                cooldowns.add_metric([channel, model], count)
        yield states
        yield cooldowns


class _Counts:
    """Every counter and histogram of one scrape: this worker's, plus the other workers'."""

    def __init__(
        self,
        requests: dict[tuple[str, ...], int],
        latency: dict[tuple[str, ...], _Histogram],
        first_byte: dict[tuple[str, ...], _Histogram],
        tokens: dict[tuple[str, ...], int],
        upstream_errors: dict[tuple[str, ...], int],
    ) -> None:
        self.requests = requests
        self.latency = latency
        self.first_byte = first_byte
        self.tokens = tokens
        self.upstream_errors = upstream_errors

    def copy(self) -> _Counts:
        return _Counts(
            dict(self.requests),
            {k: h.copy() for k, h in self.latency.items()},
            {k: h.copy() for k, h in self.first_byte.items()},
            dict(self.tokens),
            dict(self.upstream_errors),
        )

    def add(self, snapshot: dict[str, list[list[Any]]]) -> None:
        for name in ("requests", "tokens", "upstream_errors"):
            into: dict[tuple[str, ...], int] = getattr(self, name)
            for *key, count in snapshot.get(name, []):
                into[tuple(key)] = into.get(tuple(key), 0) + int(count)
        for name, bounds in (("latency", LATENCY_BOUNDS), ("first_byte", FIRST_BYTE_BOUNDS)):
            hists: dict[tuple[str, ...], _Histogram] = getattr(self, name)
            for *key, counts, total in snapshot.get(name, []):
                hist = hists.get(tuple(key))
                if hist is None:
                    hist = hists[tuple(key)] = _Histogram(bounds)
                hist.add(counts, total)
