"""
The federation's metrics for Prometheus/OpenMetrics, in a registry of
their own; the admin interface serves them at C{/metrics}.
"""

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric


class _CountedElsewhere:
    """
    A counter whose value something else keeps (a plain integer, bumped on
    a hot path without prometheus_client's lock), read when scraped.
    """

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self.count: Callable[[], float] = lambda: 0

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.count())

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation)


class GatewayMetrics:
    """
    The gateway's metrics, in a registry of its own.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.streams = Gauge(
            "xmpp_gateway_streams", "Live authenticated s2s streams",
            ["direction", "method", "tls_version"], registry=self.registry,
        )
        self.handshakes = Counter(
            "xmpp_gateway_handshakes", "Stream authentications, by outcome",
            ["direction", "outcome"], registry=self.registry,
        )
        self.failures = Counter(
            "xmpp_gateway_handshake_failures", "Refused peers, by the verifier that decided",
            ["direction", "reason"], registry=self.registry,
        )
        self._routed = _CountedElsewhere("xmpp_gateway_stanzas_routed", "Stanzas routed")
        self.registry.register(self._routed)
        self.stanzas_bounced = Counter(
            "xmpp_gateway_stanzas_bounced", "Stanzas bounced with an error, by condition",
            ["condition"], registry=self.registry,
        )
        self.warnings = Counter(
            "xmpp_gateway_warnings", "Warnings raised, by kind", ["kind"], registry=self.registry,
        )
        self.verifier_seconds = Histogram(
            "xmpp_gateway_verifier_seconds", "How long each verifier took",
            ["verifier"], registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30),
        )
        self.queued = Gauge(
            "xmpp_gateway_queued_stanzas", "Stanzas waiting for an outbound stream",
            registry=self.registry,
        )

    def count_routed(self, count: Callable[[], float]) -> None:
        """
        Read the routed-stanzas counter from C{count}, a function of no
        arguments (the router's own count: one per stanza, kept as an
        integer).
        """
        self._routed.count = count

    def count_queued(self, count: Callable[[], float]) -> None:
        """
        Read the queued-stanzas gauge from C{count}, a function of no
        arguments.
        """
        self.queued.set_function(count)

    def text(self) -> bytes:
        """
        The metrics in the Prometheus text format.
        """
        return generate_latest(self.registry)
