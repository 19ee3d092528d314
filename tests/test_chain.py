"""
Chain semantics with fake verifiers: order, not-applicable, decisive
failures, timeouts, errors, better-than-nothing; the pin and dialback
verifiers; and the registry.
"""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gateway.app.config import DomainPolicy
from gateway.tls.profile import TLSFacts
from gateway.verifiers.chain import run_chain
from gateway.verifiers.dialback import DialbackVerifier, DialbackVerifierFactory
from gateway.verifiers.interfaces import (
    IDomainVerifier,
    IDomainVerifierFactory,
    Outcome,
    Verdict,
    VerificationRequest,
    VerifierEnvironment,
)
from gateway.verifiers.pinned import PinnedVerifier, check_pins, fingerprints
from gateway.verifiers.registry import VerifierRegistry, available_verifiers

TLS = TLSFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", ())


@implementer(IDomainVerifier)
class FakeVerifier:
    """
    Answers with a fixed verdict, or holds its answer (C{verdict=None})
    for the test to give, or raises C{error}.
    """

    def __init__(self, name, outcome=None, decisive=False, error=None):
        self.name = name
        self.outcome = outcome
        self.decisive = decisive
        self.error = error
        self.requests = []
        self.pending = []

    def verify(self, request):
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        if self.outcome is None:
            d = defer.Deferred()
            self.pending.append(d)
            return d
        return defer.succeed(
            Verdict(self.name, self.outcome, f"{self.name} says {self.outcome.value}",
                    {"by": self.name}, self.decisive)
        )


def request(tls=TLS):
    return VerificationRequest("inbound", "local.example", "peer.example", "s1", tls)


def run(verifiers, policy=DomainPolicy(), tls=TLS, clock=None):
    return defer.Deferred.fromCoroutine(
        run_chain(verifiers, request(tls), policy, clock or Clock())
    )


class ChainTests(unittest.TestCase):
    def test_fakes_are_verifiers(self):
        verifyObject(IDomainVerifier, FakeVerifier("x", Outcome.VERIFIED))

    def test_first_verified_wins(self):
        """
        Verifiers run in order; the first verified verdict decides, and
        later verifiers are not asked.
        """
        first = FakeVerifier("first", Outcome.NOT_APPLICABLE)
        second = FakeVerifier("second", Outcome.FAILED)
        third = FakeVerifier("third", Outcome.VERIFIED)
        fourth = FakeVerifier("fourth", Outcome.VERIFIED)
        result = self.successResultOf(run([first, second, third, fourth]))
        self.assertTrue(result.authenticated)
        self.assertEqual(result.method, "third")
        self.assertEqual(result.evidence, {"by": "third"})
        self.assertEqual([v.verifier for v in result.verdicts], ["first", "second", "third"])
        self.assertEqual(fourth.requests, [])
        self.assertEqual(len(result.durations), 3)

    def test_nothing_verified(self):
        result = self.successResultOf(
            run([FakeVerifier("a", Outcome.NOT_APPLICABLE), FakeVerifier("b", Outcome.FAILED)])
        )
        self.assertFalse(result.authenticated)
        self.assertIsNone(result.method)
        self.assertEqual(result.reason, "a: a says not-applicable; b: b says failed")

    def test_decisive_failure_stops(self):
        """
        A failure the verifier marks decisive refuses the peer even though
        a later verifier would verify it.
        """
        later = FakeVerifier("later", Outcome.VERIFIED)
        result = self.successResultOf(
            run([FakeVerifier("strict", Outcome.FAILED, decisive=True), later])
        )
        self.assertFalse(result.authenticated)
        self.assertEqual(result.reason, "strict: strict says failed")
        self.assertEqual(result.verdict.verifier, "strict")
        self.assertEqual(later.requests, [])

    def test_decisive_by_policy(self):
        later = FakeVerifier("later", Outcome.VERIFIED)
        policy = DomainPolicy(verifiers=("strict", "later"), decisive=("strict",))
        result = self.successResultOf(run([FakeVerifier("strict", Outcome.FAILED), later], policy))
        self.assertFalse(result.authenticated)
        self.assertEqual(later.requests, [])

    def test_not_applicable_is_never_decisive(self):
        policy = DomainPolicy(verifiers=("quiet", "later"), decisive=("quiet",))
        result = self.successResultOf(
            run([FakeVerifier("quiet", Outcome.NOT_APPLICABLE), FakeVerifier("later", Outcome.VERIFIED)], policy)
        )
        self.assertEqual(result.method, "later")

    def test_timeout(self):
        """
        A verifier that doesn't answer within the policy's timeout fails,
        and the chain moves on.
        """
        clock = Clock()
        slow = FakeVerifier("slow")
        d = run([slow, FakeVerifier("next", Outcome.VERIFIED)],
                DomainPolicy(verifier_timeout=5), clock=clock)
        clock.advance(4.9)
        self.assertNoResult(d)
        clock.advance(0.1)
        result = self.successResultOf(d)
        self.assertEqual(result.method, "next")
        self.assertEqual(result.verdicts[0].outcome, Outcome.FAILED)
        self.assertEqual(result.verdicts[0].reason, "no answer within 5s")
        self.assertEqual(slow.pending[0].called, True)  # cancelled

    def test_immediate_verdicts_set_no_timer(self):
        """
        A verifier that answers at once leaves nothing on the clock: the
        timeout is only set for verdicts that are still to come.
        """
        clock = Clock()
        d = run([FakeVerifier("a", Outcome.NOT_APPLICABLE), FakeVerifier("b", Outcome.VERIFIED)],
                DomainPolicy(verifier_timeout=5), clock=clock)
        self.assertEqual(self.successResultOf(d).method, "b")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_exception_is_a_failure(self):
        result = self.successResultOf(
            run([FakeVerifier("broken", error=RuntimeError("boom")), FakeVerifier("ok", Outcome.VERIFIED)])
        )
        self.assertEqual(result.method, "ok")
        self.assertEqual(result.verdicts[0].reason, "internal error: RuntimeError: boom")
        self.flushLoggedErrors(RuntimeError)

    def test_not_a_verdict(self):
        @implementer(IDomainVerifier)
        class Sloppy:
            name = "sloppy"

            def verify(self, request):
                return defer.succeed(True)

        result = self.successResultOf(run([Sloppy()]))
        self.assertFalse(result.authenticated)
        self.assertEqual(result.verdicts[0].reason, "returned True, not a verdict")

    def test_better_than_nothing(self):
        """
        RFC 7590 3.4: with allow_unauthenticated, an encrypted peer that
        nothing verified is accepted as method none; never without TLS.
        """
        policy = DomainPolicy(verifiers=("a",), allow_unauthenticated=True)
        result = self.successResultOf(run([FakeVerifier("a", Outcome.FAILED)], policy))
        self.assertEqual((result.authenticated, result.method), (True, "none"))
        self.assertEqual(len(result.verdicts), 1)
        result = self.successResultOf(run([FakeVerifier("a", Outcome.FAILED)], policy, tls=None))
        self.assertFalse(result.authenticated)

    def test_better_than_nothing_not_after_decisive(self):
        policy = DomainPolicy(verifiers=("a",), allow_unauthenticated=True)
        result = self.successResultOf(
            run([FakeVerifier("a", Outcome.FAILED, decisive=True)], policy)
        )
        self.assertFalse(result.authenticated)


class PinTests(unittest.TestCase):
    def setUp(self):
        from cryptography.hazmat.primitives import serialization

        from tests.pki import CertificateAuthority

        certificate, _ = CertificateAuthority().issue(["peer.example"])
        self.der = certificate.public_bytes(serialization.Encoding.DER)
        self.seen = fingerprints(self.der)

    def test_fingerprints(self):
        import hashlib

        self.assertEqual(self.seen["sha256"], hashlib.sha256(self.der).hexdigest())
        self.assertEqual(len(self.seen["spki-sha256"]), 64)

    def test_match(self):
        for kind in ("sha256", "spki-sha256"):
            verdict = check_pins((self.der,), (("sha256", "0" * 64), (kind, self.seen[kind])))
            self.assertEqual(verdict.outcome, Outcome.VERIFIED)
            self.assertEqual(verdict.evidence, {"pin": f"{kind}:{self.seen[kind]}"})

    def test_mismatch_is_decisive(self):
        verdict = check_pins((self.der,), (("sha256", "0" * 64),))
        self.assertEqual((verdict.outcome, verdict.decisive), (Outcome.FAILED, True))
        self.assertIn(self.seen["sha256"], verdict.reason)
        verdict = check_pins((), (("sha256", "0" * 64),))
        self.assertEqual(verdict.reason, "the domain is pinned but presented no certificate")

    def test_verifier_without_pins(self):
        verdict = self.successResultOf(PinnedVerifier().verify(request()))
        self.assertEqual(verdict.outcome, Outcome.NOT_APPLICABLE)


class DialbackVerifierTests(unittest.TestCase):
    """
    L{DialbackVerifier}: outbound, the trust model; inbound, the key as
    the authoritative server judges it.
    """

    def setUp(self):
        self.asked = []
        self.answer = defer.succeed(True)
        self.verifier = DialbackVerifier(self.verify_key)

    def verify_key(self, originating, receiving, stream_id, key):
        self.asked.append((originating, receiving, stream_id, key))
        return self.answer

    def verify(self, direction="inbound", stream_id="s1", key="k" * 64):
        request = VerificationRequest(
            direction, "local.example", "peer.example", stream_id, TLS, dialback_key=key
        )
        return self.successResultOf(self.verifier.verify(request))

    def test_interface(self):
        verifyObject(IDomainVerifier, self.verifier)

    def test_outbound(self):
        verdict = self.verify("outbound", key=None)
        self.assertEqual((verdict.outcome, verdict.evidence), (Outcome.VERIFIED, {"basis": "dns"}))
        self.assertEqual(self.asked, [])

    def test_no_key(self):
        verdict = self.verify(key=None)
        self.assertEqual(verdict.outcome, Outcome.NOT_APPLICABLE)
        self.assertEqual(self.asked, [])

    def test_no_stream_id(self):
        """
        A key is checked for a stream id: without one, there is nothing to
        ask the authoritative server.
        """
        verdict = self.verify(stream_id=None)
        self.assertEqual(verdict.outcome, Outcome.FAILED)
        self.assertIn("no id", verdict.reason)
        self.assertEqual(self.asked, [])

    def test_valid_key(self):
        verdict = self.verify()
        self.assertEqual(verdict.outcome, Outcome.VERIFIED)
        self.assertEqual(self.asked, [("peer.example", "local.example", "s1", "k" * 64)])

    def test_invalid_key_is_decisive(self):
        self.answer = defer.succeed(False)
        verdict = self.verify()
        self.assertEqual((verdict.outcome, verdict.decisive), (Outcome.FAILED, True))

    def test_unreachable(self):
        from gateway.xmpp.errors import DialbackError

        self.answer = defer.fail(DialbackError("remote-server-not-found", "no answer"))
        verdict = self.verify()
        self.assertEqual((verdict.outcome, verdict.decisive), (Outcome.FAILED, False))
        self.assertEqual(verdict.evidence, {"condition": "remote-server-not-found"})

    def test_factory_needs_a_way_to_reach_peers(self):
        environment = VerifierEnvironment(reactor=Clock(), config=None)
        error = self.assertRaises(ValueError, DialbackVerifierFactory().build, environment)
        self.assertIn("verify_dialback_key", str(error))


class RegistryTests(unittest.TestCase):
    def test_builtin_plugins(self):
        factories = available_verifiers()
        self.assertTrue({"pkix", "dialback", "pinned", "dane", "posh"} <= set(factories))
        for factory in factories.values():
            verifyObject(IDomainVerifierFactory, factory)

    def test_chain_for_policy(self):
        """
        The chain is the policy's verifiers in order, with the pin check
        first when the policy pins.
        """

        @implementer(IDomainVerifierFactory)
        class Factory:
            def __init__(self, name):
                self.name = name
                self.built = 0

            def build(self, environment):
                self.built += 1
                return FakeVerifier(self.name, Outcome.VERIFIED)

        factories = {name: Factory(name) for name in ("a", "b", "pinned")}
        registry = VerifierRegistry(None, factories)
        chain = registry.chain_for(DomainPolicy(verifiers=("b", "a")))
        self.assertEqual([v.name for v in chain], ["b", "a"])
        chain = registry.chain_for(DomainPolicy(verifiers=("a",), pins=(("sha256", "0" * 64),)))
        self.assertEqual([v.name for v in chain], ["pinned", "a"])
        self.assertEqual(factories["a"].built, 1)  # built once, reused
