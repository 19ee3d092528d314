"""
Certificate continuity, warnings and metrics, at unit level: what the
federation does when an accepted peer comes back with another certificate.
"""

from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest
from twisted.words.xish import domish

from gateway.app.config import parse_config
from gateway.app.state import GatewayState
from gateway.records.memory import MemoryRecordStore
from gateway.records.record import AuthenticationRecord
from gateway.s2s.continuity import Continuity
from gateway.s2s.federation import Federation
from gateway.s2s.flow import Backpressure
from gateway.s2s.metrics import GatewayMetrics
from gateway.s2s.throttle import RefusalTally
from gateway.s2s.warnings import Warnings
from gateway.tls.certificates import CertificateSummary
from gateway.tls.profile import TLSFacts
from gateway.verifiers.chain import ChainResult
from gateway.verifiers.interfaces import Verdict
from tests.pki import CertificateAuthority
from tests.test_outbound import FakeRouter


def der(certificate):
    return certificate.public_bytes(Encoding.DER)


class ContinuityTests(unittest.TestCase):
    def setUp(self):
        ca = CertificateAuthority()
        first, key = ca.issue(["peer.example"])
        self.first = CertificateSummary.from_der(der(first))
        renewed, _ = ca.issue(["peer.example"], key=key)
        self.renewed = CertificateSummary.from_der(der(renewed))
        other, _ = ca.issue(["peer.example"])
        self.other = CertificateSummary.from_der(der(other))

    def test_first_seen_is_no_change(self):
        continuity = Continuity()
        self.assertIsNone(continuity.check("peer.example", self.first))
        continuity.accept("peer.example", self.first)
        self.assertIsNone(continuity.check("peer.example", self.first))

    def test_changes(self):
        """
        A renewal with the same key and a new key are both changes; the
        change says whether the key changed.
        """
        continuity = Continuity()
        continuity.accept("peer.example", self.first)
        change = continuity.check("peer.example", self.renewed)
        self.assertEqual((change.previous_sha256, change.sha256), (self.first.sha256, self.renewed.sha256))
        self.assertFalse(change.key_changed)
        self.assertTrue(continuity.check("peer.example", self.other).key_changed)

    def test_load_takes_the_newest_accepted(self):
        def record(summary, authenticated, time):
            return AuthenticationRecord(
                "peer.example", "local.example", "inbound", "s", time, "pkix", {}, None, None,
                summary.as_dict(), (), authenticated,
            )

        continuity = Continuity()
        continuity.load([record(self.other, False, 3), record(self.renewed, True, 2), record(self.first, True, 1)])
        self.assertEqual(continuity.last["peer.example"][0], self.renewed.sha256)


class LogThrottleTests(unittest.TestCase):
    def test_once_a_period_per_key(self):
        """
        The first event of a key is logged, then at most one a period, each
        line counting the events it stands for; keys don't share periods,
        and only so many keys are remembered.
        """
        from gateway.s2s.throttle import LogThrottle

        clock = Clock()
        throttle = LogThrottle(clock, every=60.0, keys=2)
        seen = []
        for second in range(130):
            clock.advance(1)
            seen.append(throttle.due("a"))
        self.assertEqual([(n + 1, v) for n, v in enumerate(seen) if v is not None],
                         [(1, 1), (61, 60), (121, 60)])
        self.assertEqual(throttle.due("b"), 1)
        self.assertIsNone(throttle.due("b"))
        throttle.due("c")  # "a" is forgotten: its next event is logged
        self.assertEqual(throttle.due("a"), 1)


class WarningsTests(unittest.TestCase):
    def test_repeated_refusals_aggregated(self):
        """
        Repeated verification failures of one peer count in one warning
        (until acknowledged), and the log says so at most once a minute.
        """
        from twisted.logger import globalLogPublisher

        lines = []
        observer = lambda event: lines.append(event) if event.get("kind") else None  # noqa: E731
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        clock = Clock()
        warnings = Warnings(clock)
        for n in range(100):
            clock.advance(1)
            warnings.add("verification-failure", "evil.example", f"refused {n}")
        (warning,) = warnings.list()
        self.assertEqual((warning.count, warning.message), (100, "refused 99"))
        self.assertEqual(warning.as_dict()["count"], 100)
        self.assertEqual([e["repeated"] for e in lines], [1, 60])
        warnings.add("verification-failure", "other.example", "refused")
        self.assertTrue(warnings.acknowledge(warning.id))
        warnings.add("verification-failure", "evil.example", "refused again")
        self.assertEqual(
            [(w.peer_domain, w.count) for w in warnings.list()],
            [("evil.example", 1), ("other.example", 1), ("evil.example", 100)],
        )

    def test_newest_first_bounded_acknowledged(self):
        clock = Clock()
        acknowledged = []
        warnings = Warnings(clock, limit=2, on_acknowledge=acknowledged.append)
        for n in range(3):
            clock.advance(1)
            warnings.add("certificate-change", f"p{n}.example", f"message {n}", n=n)
        self.assertEqual([w.peer_domain for w in warnings.list()], ["p2.example", "p1.example"])
        newest = warnings.list()[0]
        self.assertTrue(warnings.acknowledge(newest.id))
        self.assertTrue(warnings.acknowledge(newest.id))
        self.assertEqual(acknowledged, [newest])
        self.assertFalse(warnings.acknowledge(999))
        self.assertEqual([w.peer_domain for w in warnings.list(include_acknowledged=False)], ["p1.example"])
        self.assertEqual(newest.as_dict()["details"], {"n": 2})


class RefusalTallyTests(unittest.TestCase):
    def test_allowance_per_source_and_in_all(self):
        """
        Each source's first refusals in a window are recorded one by one,
        and at most C{total} of all sources; the rest are summed up per
        source when the window ends.
        """
        clock = Clock()
        tally = RefusalTally(clock, allowance=2, total=3, every=10.0)
        self.assertEqual([tally.count("a", f"d{n}") for n in range(4)], [True, True, False, False])
        self.assertEqual([tally.count("b", "e") for _ in range(3)], [True, False, False])
        self.assertEqual(tally.due(), [])
        clock.advance(10)
        summaries = sorted(tally.due(), key=lambda s: s.source)
        self.assertEqual(
            [(s.source, s.count, s.domains, s.distinct_domains) for s in summaries],
            [("a", 2, ["d2", "d3"], 2), ("b", 2, ["e"], 1)],
        )
        self.assertEqual(tally.due(), [])
        self.assertTrue(tally.count("a", "again"))

    def test_sources_bounded(self):
        """
        Past C{sources} sources, the oldest window is summed up early.
        """
        tally = RefusalTally(Clock(), allowance=0, total=0, every=10.0, sources=2)
        for source in ("a", "b", "c"):
            self.assertFalse(tally.count(source, "x"))
        self.assertEqual([s.source for s in tally.due()], ["a"])


class FakeStream:
    direction = "inbound"

    def __init__(self, chain):
        self.tls = TLSFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", chain)
        self.certificate_change = None


class FederationContinuityTests(unittest.TestCase):
    """
    Federation._checked, which every chain result goes through.
    """

    def federation(self, policy=""):
        config = parse_config(
            '[domains."local.example"]\n' + policy, "t.toml", "/nonexistent"
        )
        return Federation(
            config, GatewayState("/nonexistent", "secret", ()), None, None, FakeRouter(), MemoryReactorClock(),
            records=MemoryRecordStore(),
            backpressure=Backpressure(), metrics=GatewayMetrics(),
        )

    def setUp(self):
        ca = CertificateAuthority()
        self.old = der(ca.issue(["peer.example"])[0])
        self.new = der(ca.issue(["peer.example"])[0])
        verdict = Verdict.verified("pkix", "ok")
        self.accepted = ChainResult(True, "pkix", verdict, (verdict,), "", (0.01,))

    def check(self, federation, chain):
        stream = FakeStream(chain)
        policy = federation.policy.for_domain("peer.example")
        return federation.authenticator.checked(self.accepted, stream, "peer.example", policy), stream

    def test_warn_once(self):
        """
        Under the default policy a changed certificate is accepted, the
        stream says so, and exactly one warning is raised however many
        streams present it.
        """
        federation = self.federation()
        federation.continuity.accept("peer.example", CertificateSummary.from_der(self.old))
        for _ in range(3):
            result, stream = self.check(federation, (self.new,))
            self.assertTrue(result.authenticated)
            self.assertEqual(stream.certificate_change.previous_sha256,
                             CertificateSummary.from_der(self.old).sha256)
        (warning,) = federation.warnings.list()
        self.assertEqual(warning.kind, "certificate-change")
        self.assertFalse(warning.details["refused"])
        self.assertIn(b'xmpp_gateway_warnings_total{kind="certificate-change"} 1.0',
                      federation.metrics.text())

    def test_refuse_until_acknowledged(self):
        federation = self.federation(
            '[policy.domains."peer.example"]\non_certificate_change = "refuse"\n'
        )
        federation.continuity.accept("peer.example", CertificateSummary.from_der(self.old))
        result, _ = self.check(federation, (self.new,))
        self.assertFalse(result.authenticated)
        self.assertIn("presented a new certificate and key", result.reason)
        (warning,) = federation.warnings.list()
        self.assertTrue(warning.details["refused"])
        self.assertTrue(federation.warnings.acknowledge(warning.id))
        result, _ = self.check(federation, (self.new,))
        self.assertTrue(result.authenticated)

    def test_pinned_domains_refuse(self):
        federation = self.federation(
            '[policy.domains."peer.example"]\npins = ["sha256:' + "0" * 64 + '"]\n'
        )
        federation.continuity.accept("peer.example", CertificateSummary.from_der(self.old))
        result, _ = self.check(federation, (self.new,))
        self.assertFalse(result.authenticated)

    def test_verifier_timings(self):
        federation = self.federation()
        self.check(federation, (self.old,))
        self.assertIn(b'xmpp_gateway_verifier_seconds_count{verifier="pkix"} 1.0',
                      federation.metrics.text())


class MetricsTests(unittest.TestCase):
    def test_registry_is_private(self):
        """
        Two gateways in one process don't share counters.
        """
        first, second = GatewayMetrics(), GatewayMetrics()
        first.handshakes.labels("inbound", "authenticated").inc()
        first.count_routed(lambda: 3)
        self.assertIn(b'xmpp_gateway_handshakes_total{direction="inbound",outcome="authenticated"} 1.0', first.text())
        self.assertNotIn(b"xmpp_gateway_handshakes_total{", second.text())
        self.assertIn(b"xmpp_gateway_stanzas_routed_total 3.0", first.text())
        self.assertIn(b"xmpp_gateway_stanzas_routed_total 0.0", second.text())
        self.assertIn(b"# TYPE xmpp_gateway_stanzas_routed_total counter", first.text())

    def test_routed_read_from_the_router(self):
        """
        The routed-stanzas counter is the router's own count, read when
        the metrics are.
        """
        from gateway.components.routing import Router

        metrics = GatewayMetrics()
        router = Router(["a.example"], metrics=metrics)
        router.routed = 41
        router.deliver(domish.Element(("jabber:server", "presence")), "b.example", "a.example")
        self.assertIn(b"xmpp_gateway_stanzas_routed_total 42.0", metrics.text())
