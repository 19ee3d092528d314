"""
The dane verifier's DNS rules (RFC 7673), with an in-memory DNS client:
where TLSA records are looked for, what makes DANE applicable, and which
failures are decisive.
"""

import time
from types import SimpleNamespace

from cryptography.hazmat.primitives import serialization
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from gateway.app.config import DNSConfig, DomainPolicy
from gateway.names.srv import Target
from gateway.testing import FakeDNSClient
from gateway.tls.profile import TLSFacts
from gateway.tls.tlsa import DANE_TA, FULL, tlsa_for
from gateway.verifiers.dane import DANEVerifier, DANEVerifierFactory
from gateway.verifiers.interfaces import (
    IDomainVerifier,
    IDomainVerifierFactory,
    Outcome,
    VerificationRequest,
    VerifierEnvironment,
)
from tests.pki import CertificateAuthority

DOMAIN = "peer.example"
HOST = "xmpp.peer.example"



def wall_clock():
    """
    A test clock set to the system's time (the certificates are made now).
    """
    clock = Clock()
    clock.advance(time.time())
    return clock

class PeerWithDNS:
    """
    A peer certificate (C{leaf}), another from the same CA (C{other}), and
    an in-memory DNS (C{client}) to publish the peer's records in.
    """

    def setUp(self):
        self.ca = CertificateAuthority()
        certificate, _ = self.ca.issue([DOMAIN])
        self.leaf = certificate.public_bytes(serialization.Encoding.DER)
        other, _ = self.ca.issue([DOMAIN])
        self.other = other.public_bytes(serialization.Encoding.DER)
        self.client = FakeDNSClient()

    def secure_srv(self, secure=True, port=5269):
        self.client.add(f"_xmpp-server._tcp.{DOMAIN}", "SRV", f"0 0 {port} {HOST}.", secure=secure)
        self.client.deny(f"_xmpps-server._tcp.{DOMAIN}", "SRV", secure=secure)
        self.client.add(HOST, "A", "192.0.2.1", secure=True)
        self.client.deny(HOST, "AAAA", secure=True)


class DANEVerifierTests(PeerWithDNS, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.verifier = DANEVerifier(self.client, wall_clock())

    def tlsa(self, record, name=f"_5269._tcp.{HOST}", secure=True):
        self.client.add(name, "TLSA", str(record), secure=secure)

    def verify(self, chain=None, direction="inbound", target=None, policy=DomainPolicy()):
        request = VerificationRequest(
            direction, "local.example", DOMAIN, "s1",
            TLSFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", (self.leaf,) if chain is None else chain),
            target=target, policy=policy,
        )
        return self.successResultOf(self.verifier.verify(request))

    def test_interface(self):
        verifyObject(IDomainVerifier, self.verifier)

    def test_secure_srv_and_matching_tlsa(self):
        self.secure_srv()
        record = tlsa_for(self.leaf)
        self.tlsa(record)
        verdict = self.verify()
        self.assertEqual(verdict.outcome, Outcome.VERIFIED, verdict.reason)
        self.assertEqual(verdict.evidence["tlsa"], f"_5269._tcp.{HOST}")
        self.assertEqual(verdict.evidence["record"], str(record))
        self.assertEqual(verdict.evidence["usage"], "DANE-EE")
        self.assertEqual(verdict.evidence["target"], f"{HOST}:5269")
        self.assertTrue(verdict.evidence["srv_secure"])

    def test_no_match_is_decisive(self):
        """
        Secure, usable records that don't match the certificate refuse the
        peer, whatever PKIX would say.
        """
        self.secure_srv()
        self.tlsa(tlsa_for(self.other))
        verdict = self.verify()
        self.assertEqual((verdict.outcome, verdict.decisive), (Outcome.FAILED, True))
        self.assertIn("secure TLSA records exist and none matches", verdict.reason)

    def test_one_of_several_targets(self):
        self.secure_srv()
        self.client.add(f"_xmpp-server._tcp.{DOMAIN}", "SRV", "10 0 5270 backup.peer.example.", secure=True)
        self.client.add("backup.peer.example", "A", "192.0.2.2", secure=True)
        self.client.deny("backup.peer.example", "AAAA", secure=True)
        self.tlsa(tlsa_for(self.other))
        self.tlsa(tlsa_for(self.leaf), name="_5270._tcp.backup.peer.example")
        verdict = self.verify()
        self.assertEqual(verdict.outcome, Outcome.VERIFIED, verdict.reason)
        self.assertEqual(verdict.evidence["target"], "backup.peer.example:5270")

    def test_not_applicable(self):
        """
        Insecure SRV, insecure addresses, an insecure or empty TLSA answer,
        only unusable records, or no certificate: DANE has nothing to say.
        """
        cases = {
            "insecure SRV": lambda: (self.secure_srv(secure=False), self.tlsa(tlsa_for(self.leaf))),
            "insecure address": lambda: (
                self.client.add(f"_xmpp-server._tcp.{DOMAIN}", "SRV", f"0 0 5269 {HOST}.", secure=True),
                self.client.add(HOST, "A", "192.0.2.1", secure=False),
                self.tlsa(tlsa_for(self.leaf)),
            ),
            "insecure TLSA": lambda: (self.secure_srv(), self.tlsa(tlsa_for(self.leaf), secure=False)),
            "no TLSA": lambda: self.secure_srv(),
            "unusable only": lambda: (self.secure_srv(), self.client.add(
                f"_5269._tcp.{HOST}", "TLSA", "7 1 1 " + "00" * 32, secure=True)),
        }
        for name, setup in cases.items():
            self.client = FakeDNSClient()
            self.verifier = DANEVerifier(self.client, wall_clock())
            setup()
            verdict = self.verify()
            self.assertEqual(verdict.outcome, Outcome.NOT_APPLICABLE, (name, verdict.reason))
        self.client = FakeDNSClient()
        self.verifier = DANEVerifier(self.client, wall_clock())
        self.assertEqual(self.verify(chain=()).outcome, Outcome.NOT_APPLICABLE)

    def test_required(self):
        """
        With require_dane, having nothing to say is a decisive failure.
        """
        self.secure_srv(secure=False)
        verdict = self.verify(policy=DomainPolicy(verifiers=("dane",), require_dane=True))
        self.assertEqual((verdict.outcome, verdict.decisive), (Outcome.FAILED, True))
        self.assertIn("DANE is required, but the SRV records of peer.example are not DNSSEC-signed",
                      verdict.reason)

    def test_bogus(self):
        """
        A bogus SRV or TLSA answer is a decisive failure.
        """
        self.client.bogus(f"_xmpps-server._tcp.{DOMAIN}", "SRV")
        verdict = self.verify()
        self.assertEqual((verdict.outcome, verdict.decisive), (Outcome.FAILED, True))
        self.assertIn("SRV lookup failed", verdict.reason)
        self.client = FakeDNSClient()
        self.verifier = DANEVerifier(self.client, wall_clock())
        self.secure_srv()
        self.client.bogus(f"_5269._tcp.{HOST}", "TLSA")
        verdict = self.verify()
        self.assertEqual((verdict.outcome, verdict.decisive), (Outcome.FAILED, True))
        self.assertEqual(verdict.reason, f"the TLSA records at _5269._tcp.{HOST} are bogus (DNSSEC validation failed)")

    def test_fallback_host(self):
        """
        Without SRV records, securely denied, TLSA is looked up for the
        domain itself on port 5269, when its addresses are secure.
        """
        for rrtype in ("SRV",):
            self.client.deny(f"_xmpp-server._tcp.{DOMAIN}", rrtype, secure=True)
            self.client.deny(f"_xmpps-server._tcp.{DOMAIN}", rrtype, secure=True)
        self.client.add(DOMAIN, "A", "192.0.2.3", secure=True)
        self.client.deny(DOMAIN, "AAAA", secure=True)
        self.tlsa(tlsa_for(self.leaf), name=f"_5269._tcp.{DOMAIN}")
        verdict = self.verify()
        self.assertEqual(verdict.outcome, Outcome.VERIFIED, verdict.reason)
        self.assertFalse(verdict.evidence["srv"])
        # An insecure denial makes the fallback host unusable for DANE.
        self.client.deny(f"_xmpp-server._tcp.{DOMAIN}", "SRV", secure=False)
        self.assertEqual(self.verify().outcome, Outcome.NOT_APPLICABLE)

    def test_outbound_uses_the_connected_target(self):
        """
        Outbound, only the target the stream is connected to counts, with
        the SRV security the connection found.
        """
        self.client.add(HOST, "A", "192.0.2.1", secure=True)
        self.client.deny(HOST, "AAAA", secure=True)
        self.tlsa(tlsa_for(self.leaf), name=f"_5270._tcp.{HOST}")
        verdict = self.verify(direction="outbound", target=Target(HOST, 5270, srv_secure=True))
        self.assertEqual(verdict.outcome, Outcome.VERIFIED, verdict.reason)
        self.assertNotIn((f"_xmpp-server._tcp.{DOMAIN}", "SRV"), self.client.queries)
        verdict = self.verify(direction="outbound", target=Target(HOST, 5270, srv_secure=False))
        self.assertEqual(verdict.outcome, Outcome.NOT_APPLICABLE)

    def test_dane_ta_names(self):
        """
        DANE-TA records check the name: the source domain or the SRV target
        may be named by the certificate.
        """
        self.secure_srv()
        ca_der = self.ca.der
        self.tlsa(tlsa_for(ca_der, usage=DANE_TA, matching_type=FULL, selector=0))
        verdict = self.verify(chain=(self.leaf, ca_der))
        self.assertEqual(verdict.outcome, Outcome.VERIFIED, verdict.reason)
        self.assertEqual(verdict.evidence["usage"], "DANE-TA")
        wrong, _ = self.ca.issue(["elsewhere.example"])
        verdict = self.verify(chain=(wrong.public_bytes(serialization.Encoding.DER), ca_der))
        self.assertEqual((verdict.outcome, verdict.decisive), (Outcome.FAILED, True))




class GateInEveryOrderTests(PeerWithDNS, unittest.TestCase):
    """
    DANE is a gate (L{gateway.verifiers.chain}): secure TLSA records that
    don't match, and require_dane without any, refuse a peer that PKIX (with
    a CA-issued, say mis-issued, certificate) or POSH would accept, whatever
    the order of the policy's verifiers; when the records match, the first
    verifier in order that verifies is the method.
    """

    def setUp(self):
        import itertools

        from cryptography import x509
        from cryptography.x509.verification import Store

        from gateway.verifiers.pkix import PKIXVerifier
        from tests.test_chain import FakeVerifier

        super().setUp()
        self.clock = wall_clock()
        store = Store([x509.load_der_x509_certificate(self.ca.der)])
        self.verifiers = {
            "pkix": PKIXVerifier(store, self.clock),
            "dane": DANEVerifier(self.client, self.clock),
            "posh": FakeVerifier("posh", Outcome.VERIFIED),
        }
        self.orders = [
            order
            for size in (2, 3)
            for order in itertools.permutations(("pkix", "dane", "posh"), size)
            if "dane" in order
        ]

    def outcomes(self, require_dane=False):
        from twisted.internet import defer

        from gateway.verifiers.chain import run_chain

        results = {}
        for order in self.orders:
            policy = DomainPolicy(verifiers=order, require_dane=require_dane)
            request = VerificationRequest(
                "inbound", "local.example", DOMAIN, "s1",
                TLSFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", (self.leaf,)), policy=policy,
            )
            result = self.successResultOf(defer.Deferred.fromCoroutine(
                run_chain([self.verifiers[name] for name in order], request, policy, self.clock)
            ))
            results[order] = (
                result.authenticated, result.method, result.verdict.verifier if result.verdict else None
            )
        return results

    def test_mismatch_refuses_in_every_order(self):
        self.secure_srv()
        self.client.add(f"_5269._tcp.{HOST}", "TLSA", str(tlsa_for(self.other)), secure=True)
        self.assertEqual(
            self.outcomes(), {order: (False, None, "dane") for order in self.orders}
        )

    def test_require_dane_in_every_order(self):
        self.secure_srv()
        self.assertEqual(
            self.outcomes(require_dane=True), {order: (False, None, "dane") for order in self.orders}
        )

    def test_match_accepts_with_the_first_method(self):
        self.secure_srv()
        self.client.add(f"_5269._tcp.{HOST}", "TLSA", str(tlsa_for(self.leaf)), secure=True)
        self.assertEqual(
            self.outcomes(), {order: (True, order[0], order[0]) for order in self.orders}
        )


class DANEVerifierFactoryTests(unittest.TestCase):
    """
    L{DANEVerifierFactory}: the gateway's resolver, the reactor's clock and
    the configured trust store.
    """

    def config(self):
        ca_file = CertificateAuthority().write_ca(self.mktemp())
        return SimpleNamespace(
            policy=SimpleNamespace(trust_store=ca_file),
            dns=DNSConfig(servers=(("127.0.0.1", 53),)),
        )

    def test_interface(self):
        self.assertTrue(verifyObject(IDomainVerifierFactory, DANEVerifierFactory()))

    def test_build(self):
        resolver = FakeDNSClient()
        clock = Clock()
        verifier = DANEVerifierFactory().build(VerifierEnvironment(clock, self.config(), resolver))
        self.assertTrue(verifyObject(IDomainVerifier, verifier))
        self.assertIs(verifier.client, resolver)
        self.assertIs(verifier.clock, clock)
        self.assertIsNotNone(verifier.store)

    def test_without_resolver(self):
        """
        Without the gateway's resolver, one is made from C{[dns]}, as for
        POSH, rather than a verifier that fails on every peer.
        """
        verifier = DANEVerifierFactory().build(VerifierEnvironment(Clock(), self.config()))
        self.assertEqual(verifier.client.servers, [("127.0.0.1", 53)])
