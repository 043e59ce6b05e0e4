"""Prometheus metrics, rendered by hand in the text exposition format."""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable


class Counter:
    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help, self.value = name, help_text, 0.0
        self.rate = WindowRate()

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount
        self.rate.add(amount)

    def render(self) -> str:
        return (
            f"# HELP {self.name} {self.help}\n# TYPE {self.name} counter\n"
            f"{self.name} {self.value:g}\n"
        )


class WindowRate:
    """Events per second over the last ``window`` whole seconds (for a gauge)."""

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self._buckets: dict[int, float] = {}

    def add(self, amount: float) -> None:
        now = int(time.monotonic())
        self._buckets[now] = self._buckets.get(now, 0.0) + amount
        if len(self._buckets) > 2 * self.window:
            for second in [k for k in self._buckets if k <= now - self.window]:
                del self._buckets[second]

    def per_second(self) -> float:
        now = int(time.monotonic())
        # Whole seconds only: the current one is still filling.
        total = sum(v for k, v in self._buckets.items() if now - self.window <= k < now)
        return total / self.window


class Gauge:
    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.name, self.help, self.read = name, help_text, read

    def render(self) -> str:
        return (
            f"# HELP {self.name} {self.help}\n# TYPE {self.name} gauge\n"
            f"{self.name} {self.read():g}\n"
        )


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.buckets = name, help_text, buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def render(self) -> str:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            lines.append(f'{self.name}_bucket{{le="{bound:g}"}} {running}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{self.name}_sum {self.sum:g}")
        lines.append(f"{self.name}_count {self.count}")
        return "\n".join(lines) + "\n"


class Metrics:
    """The server's metrics; gauges are bound by the app once the services exist."""

    def __init__(self) -> None:
        self.updates = Counter(
            "proofroom_doc_updates_total", "Document updates committed to the log."
        )
        self.denied = Counter(
            "proofroom_writes_denied_total", "Client updates reverted by the write guard."
        )
        self.awareness = Counter(
            "proofroom_awareness_messages_total", "Awareness messages relayed."
        )
        self.closed = Counter(
            "proofroom_connections_closed_by_server_total",
            "Connections the server closed for a limit or bad input.",
        )
        self.sends_waited = Counter(
            "proofroom_sends_waited_total",
            "Messages that waited in a connection's queue because its socket pushed back.",
        )
        self.broadcast_latency = Histogram(
            "proofroom_broadcast_latency_seconds",
            "From receiving a change to queueing it for every participant (commit included).",
            (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        )
        self.gauges: list[Gauge] = [
            Gauge(
                "proofroom_doc_updates_per_second",
                "Document updates committed per second, over the last 10 s.",
                self.updates.rate.per_second,
            )
        ]

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.gauges.append(Gauge(name, help_text, read))

    def render(self) -> str:
        parts = [g.render() for g in self.gauges]
        parts += [
            m.render()
            for m in (
                self.updates,
                self.denied,
                self.awareness,
                self.closed,
                self.sends_waited,
                self.broadcast_latency,
            )
        ]
        return "".join(parts)
