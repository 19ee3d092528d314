"""
DANE end to end, against a real DNSSEC world on loopback (knot signing the
zones, a validating unbound the gateways trust for its AD bit): gateways
authenticating each other by DANE alone, DANE-TA, a secure TLSA that
doesn't match refusing a peer PKIX would pass, an insecure zone falling
through, bogus data refused, no TLSA falling through.
"""

import os
import socket

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet import defer
from twisted.trial import unittest

from gateway.tls.tlsa import DANE_TA, FULL, tlsa_for
from tests.dnssec.test_world import LDNS_PROGRAMS, SERVER_PROGRAMS
from tests.dnssec.world import DNSSECWorld
from tests.interop.peers import require_program
from tests.support import World, error_condition, write_self_signed


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def certificate_der(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificates(f.read())[0].public_bytes(Encoding.DER)


class DANETests(unittest.TestCase):
    timeout = 90

    def setUp(self):
        for program, package in {**SERVER_PROGRAMS, **LDNS_PROGRAMS}.items():
            require_program(program, package)
        self.world = World(self)
        self.dns = DNSSECWorld(os.path.join(self.world.folder, "dnssec"))
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(self.dns.stop()))
        self.ports = {}

    def publish(self, domain, tlsa=None, zone=None, bogus_tlsa=False):
        """
        Publish SRV, A and (optionally) TLSA records for gateway C{domain}
        in its zone; return the port it must listen on.
        """
        zone = zone or domain
        port = self.ports[domain] = free_port()
        host = f"xmpp.{domain}."
        self.dns.add(zone, f"_xmpp-server._tcp.{domain}.", "SRV", f"0 0 {port} {host}")
        self.dns.add(zone, host, "A", "127.0.0.1")
        if tlsa is not None:
            self.dns.add(zone, f"_{port}._tcp.{host}", "TLSA", str(tlsa))
            if bogus_tlsa:
                self.dns.break_signature(zone, f"_{port}._tcp.{host}", "TLSA")
        return port

    def self_signed(self, domain):
        return write_self_signed(os.path.join(self.world.folder, "certs"), domain)

    async def gateway(self, domain, verifiers, policy_extra="", **kwargs):
        policy = f"verifiers = {verifiers!r}\n".replace("'", '"') + policy_extra
        service = await self.world.gateway(
            domain,
            srv=False,
            s2s_port=self.ports[domain],
            dns_server=self.dns.resolver_address,
            policy=policy,
            **kwargs,
        )
        component = await self.world.component(service, domain)
        return service, component

    async def exchange(self, a, b, a_domain, b_domain):
        a.message(f"x@{a_domain}", f"y@{b_domain}", "one way", "1")
        received = await b.next(timeout=20)
        self.assertEqual(str(received.body), "one way")
        b.message(f"y@{b_domain}", f"x@{a_domain}", "the other", "2")
        received = await a.next(timeout=20)
        self.assertEqual(str(received.body), "the other")

    async def authenticated(self, service, peer):
        return {r.direction: r for r in await service.records.for_peer(peer) if r.authenticated}

    @defer.inlineCallbacks
    def test_dane_alone(self):
        """
        Two gateways with self-signed certificates published as DANE-EE
        records, and no PKIX configured, authenticate each other by DANE in
        both directions.
        """
        alpha_files = self.self_signed("alpha.test")
        beta_files = self.self_signed("beta.test")
        for domain, files in (("alpha.test", alpha_files), ("beta.test", beta_files)):
            self.dns.zone(domain)
            self.publish(domain, tlsa_for(certificate_der(files[0])))
        yield defer.Deferred.fromCoroutine(self.dns.start())
        alpha, a = yield defer.Deferred.fromCoroutine(
            self.gateway("alpha.test", ["dane"], certificate_files=alpha_files))
        beta, b = yield defer.Deferred.fromCoroutine(
            self.gateway("beta.test", ["dane"], certificate_files=beta_files))
        yield defer.Deferred.fromCoroutine(self.exchange(a, b, "alpha.test", "beta.test"))
        for service, peer in ((alpha, "beta.test"), (beta, "alpha.test")):
            records = yield defer.Deferred.fromCoroutine(self.authenticated(service, peer))
            self.assertEqual(sorted(records), ["inbound", "outbound"])
            for record in records.values():
                self.assertEqual(record.method, "dane")
                self.assertEqual(record.evidence["usage"], "DANE-EE")
                self.assertEqual(record.evidence["tlsa"], f"_{self.ports[peer]}._tcp.xmpp.{peer}")
                self.assertTrue(record.evidence["srv_secure"])
                self.assertEqual(record.verdicts[0]["verifier"], "dane")

    @defer.inlineCallbacks
    def test_dane_ta(self):
        """
        A DANE-TA record naming the CA verifies a peer whose certificate that
        CA issued, without PKIX trusting the CA.
        """
        record = tlsa_for(self.world.ca.der, usage=DANE_TA, selector=0, matching_type=FULL)
        for domain in ("alpha.test", "beta.test"):
            self.dns.zone(domain)
            self.publish(domain, record)
        yield defer.Deferred.fromCoroutine(self.dns.start())
        alpha, a = yield defer.Deferred.fromCoroutine(self.gateway("alpha.test", ["dane"]))
        beta, b = yield defer.Deferred.fromCoroutine(self.gateway("beta.test", ["dane"]))
        yield defer.Deferred.fromCoroutine(self.exchange(a, b, "alpha.test", "beta.test"))
        records = yield defer.Deferred.fromCoroutine(self.authenticated(alpha, "beta.test"))
        self.assertEqual({r.method for r in records.values()}, {"dane"})
        self.assertEqual({r.evidence["usage"] for r in records.values()}, {"DANE-TA"})

    async def refused_by_alpha(self, zone_options, tlsa, bogus_tlsa=False,
                               verifiers=("dane", "pkix"), policy_extra=""):
        """
        alpha.test (DANE then PKIX, or C{verifiers}, trusting the CA) and a
        peer with a certificate from the CA, whose DNS is as given.
        """
        self.dns.zone("alpha.test")
        self.publish("alpha.test")
        self.dns.zone("peer.test", **zone_options)
        self.publish("peer.test", tlsa, bogus_tlsa=bogus_tlsa)
        await self.dns.start()
        alpha, a = await self.gateway(
            "alpha.test", list(verifiers), trust_ca=True, policy_extra=policy_extra
        )
        peer, p = await self.gateway("peer.test", ["pkix", "dialback"], trust_ca=True)
        return alpha, a, peer, p

    async def mismatch_refused(self, verifiers):
        """
        alpha (with C{verifiers}) and a peer whose certificate is from a CA
        PKIX trusts, but whose secure TLSA records name another: refused both
        ways, nothing sent to it.

        @return: alpha's records of the peer (one each way, both refusals
            by DANE's mismatch).
        """
        other, _ = self.world.ca.issue(["peer.test"])
        alpha, a, peer, p = await self.refused_by_alpha({}, tlsa_for(other), verifiers=verifiers)
        a.message("x@alpha.test", "y@peer.test", "no", "n1")
        bounce = await a.next(timeout=20)
        self.assertEqual(error_condition(bounce), "remote-server-not-found")
        # alpha answers the peer's key "invalid": XEP-0220 makes the peer
        # bounce with internal-server-error.
        p.message("y@peer.test", "x@alpha.test", "no", "n2")
        bounce = await p.next(timeout=20)
        self.assertEqual(error_condition(bounce), "internal-server-error")
        records = await alpha.records.for_peer("peer.test")
        self.assertEqual(sorted(r.direction for r in records), ["inbound", "outbound"])
        for record in records:
            self.assertFalse(record.authenticated)
            self.assertIn("secure TLSA records exist and none matches", record.reason)
        return records

    @defer.inlineCallbacks
    def test_mismatch_refused_though_pkix_would_pass(self):
        """
        Secure TLSA records that don't match refuse the peer, although its
        certificate is from a CA that PKIX trusts; nothing is sent to it.
        """
        records = yield defer.Deferred.fromCoroutine(self.mismatch_refused(("dane", "pkix")))
        for record in records:
            self.assertEqual([v["verifier"] for v in record.verdicts], ["dane"])
            self.assertTrue(record.verdicts[0]["decisive"])

    @defer.inlineCallbacks
    def test_mismatch_refused_with_pkix_listed_first(self):
        """
        The same with verifiers = ["pkix", "dane"]: DANE is a gate, so the
        order doesn't let a CA-valid certificate past secure TLSA records
        that don't match it (issue: require_dane only held when dane ran
        first).
        """
        records = yield defer.Deferred.fromCoroutine(self.mismatch_refused(("pkix", "dane")))
        for record in records:
            self.assertEqual([v["verifier"] for v in record.verdicts], ["pkix", "dane"])
            self.assertEqual(record.verdicts[0]["outcome"], "verified")

    @defer.inlineCallbacks
    def test_require_dane_with_pkix_listed_first(self):
        """
        require_dane holds whatever the order: with verifiers = ["pkix",
        "dane"], a peer whose CA-valid certificate PKIX accepts, but whose
        zone (signed) publishes no TLSA records, is refused both ways
        (issue: with PKIX first, DANE was never asked).
        """
        alpha, a, peer, p = yield defer.Deferred.fromCoroutine(self.refused_by_alpha(
            {}, None, verifiers=("pkix", "dane"), policy_extra="require_dane = true\n",
        ))
        a.message("x@alpha.test", "y@peer.test", "no", "n1")
        bounce = yield defer.Deferred.fromCoroutine(a.next(timeout=20))
        self.assertEqual(error_condition(bounce), "remote-server-not-found")
        p.message("y@peer.test", "x@alpha.test", "no", "n2")
        bounce = yield defer.Deferred.fromCoroutine(p.next(timeout=20))
        self.assertEqual(error_condition(bounce), "internal-server-error")
        records = yield alpha.records.for_peer("peer.test")
        self.assertEqual(sorted(r.direction for r in records), ["inbound", "outbound"])
        for record in records:
            self.assertFalse(record.authenticated)
            self.assertEqual([v["verifier"] for v in record.verdicts], ["pkix", "dane"])
            self.assertEqual(record.verdicts[0]["outcome"], "verified")
            self.assertIn("DANE is required", record.reason)

    @defer.inlineCallbacks
    def test_bogus_tlsa_refused(self):
        """
        A TLSA answer whose signature doesn't validate (SERVFAIL from the
        validating resolver) refuses the peer: outbound, its only target is
        skipped before connecting (RFC 7673 section 3.2), so nothing reaches
        it and the bounce says why; inbound, the chain refuses it.
        """
        alpha, a, peer, p = yield defer.Deferred.fromCoroutine(
            self.refused_by_alpha({"signer": "ldns"}, "3 1 1 " + "00" * 32, bogus_tlsa=True)
        )
        a.message("x@alpha.test", "y@peer.test", "no", "n1")
        bounce = yield defer.Deferred.fromCoroutine(a.next(timeout=20))
        self.assertEqual(error_condition(bounce), "remote-server-not-found")
        self.assertIn("TLSA records at _", str(bounce.error.text))
        self.assertIn("are bogus", str(bounce.error.text))
        self.assertEqual((yield alpha.records.for_peer("peer.test")), [])
        self.assertEqual(
            [s for s in alpha.federation.streams if s.direction == "outbound"], []
        )
        p.message("y@peer.test", "x@alpha.test", "no", "n2")
        bounce = yield defer.Deferred.fromCoroutine(p.next(timeout=20))
        self.assertEqual(error_condition(bounce), "internal-server-error")
        (record,) = yield alpha.records.for_peer("peer.test")
        self.assertFalse(record.authenticated)
        self.assertIn("bogus", record.reason)

    @defer.inlineCallbacks
    def test_insecure_zone_falls_through(self):
        """
        In an unsigned zone DANE is not applicable, and PKIX decides.
        """
        peer_certificate = self.world.ca.issue(["peer.test"])[0]
        alpha, a, peer, p = yield defer.Deferred.fromCoroutine(
            self.refused_by_alpha({"signed": False}, tlsa_for(peer_certificate))
        )
        yield defer.Deferred.fromCoroutine(self.exchange(a, p, "alpha.test", "peer.test"))
        records = yield defer.Deferred.fromCoroutine(self.authenticated(alpha, "peer.test"))
        for record in records.values():
            self.assertEqual(record.method, "pkix")
            self.assertEqual(record.verdicts[0]["outcome"], "not-applicable")
            self.assertIn("not DNSSEC-signed", record.verdicts[0]["reason"])

    @defer.inlineCallbacks
    def test_no_tlsa_falls_through(self):
        alpha, a, peer, p = yield defer.Deferred.fromCoroutine(self.refused_by_alpha({}, None))
        yield defer.Deferred.fromCoroutine(self.exchange(a, p, "alpha.test", "peer.test"))
        records = yield defer.Deferred.fromCoroutine(self.authenticated(alpha, "peer.test"))
        self.assertEqual(sorted(records), ["inbound", "outbound"])
        for record in records.values():
            self.assertEqual(record.method, "pkix")
            self.assertEqual(record.verdicts[0]["reason"], f"no TLSA records at _{self.ports['peer.test']}._tcp.xmpp.peer.test")

    @defer.inlineCallbacks
    def test_next_target_after_bogus_addresses_and_a_mismatch(self):
        """
        RFC 7673 sections 3.2 to 3.4: beta.test has three targets, all on its one listener: the first's
        AAAA answer is bogus (skipped without connecting), the second's TLSA
        does not match (DANE refuses it there), the third's does.  alpha,
        verifying by DANE alone, reaches beta through the third; the refusal
        at the second is recorded; each failed attempt is logged.
        """
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        alpha_files = self.self_signed("alpha.test")
        beta_files = self.self_signed("beta.test")
        other = tlsa_for(certificate_der(self.self_signed("other.test")[0]))
        self.dns.zone("alpha.test")
        self.publish("alpha.test", tlsa_for(certificate_der(alpha_files[0])))
        self.dns.zone("beta.test", signer="ldns")
        port = self.ports["beta.test"] = free_port()
        good = tlsa_for(certificate_der(beta_files[0]))
        for priority, host, tlsa in ((0, "bogus", good), (1, "wrong", other), (2, "right", good)):
            name = f"{host}.beta.test."
            self.dns.add("beta.test", "_xmpp-server._tcp.beta.test.", "SRV",
                         f"{priority} 0 {port} {name}")
            self.dns.add("beta.test", name, "A", "127.0.0.1")
            self.dns.add("beta.test", f"_{port}._tcp.{name}", "TLSA", str(tlsa))
        self.dns.add("beta.test", "bogus.beta.test.", "AAAA", "::1")
        self.dns.break_signature("beta.test", "bogus.beta.test.", "AAAA")
        yield defer.Deferred.fromCoroutine(self.dns.start())
        alpha, a = yield defer.Deferred.fromCoroutine(
            self.gateway("alpha.test", ["dane"], certificate_files=alpha_files))
        beta, b = yield defer.Deferred.fromCoroutine(
            self.gateway("beta.test", ["dane"], certificate_files=beta_files))
        a.message("x@alpha.test", "y@beta.test", "third time lucky", "t1")
        received = yield defer.Deferred.fromCoroutine(b.next(timeout=30))
        self.assertEqual(received["id"], "t1")
        records = yield alpha.records.for_peer("beta.test")
        outbound = [r for r in records if r.direction == "outbound"]
        (accepted,) = [r for r in outbound if r.authenticated]
        self.assertEqual((accepted.method, accepted.evidence["target"]),
                         ("dane", f"right.beta.test:{port}"))
        (refusal,) = [r for r in outbound if not r.authenticated]
        self.assertIn("secure TLSA records exist and none matches", refusal.reason)
        self.assertIn(f"_{port}._tcp.wrong.beta.test", refusal.reason)
        attempts = [e["attempt"] for e in events if "attempt" in e and e.get("peer") == "beta.test"]
        self.assertEqual(len(attempts), 2, attempts)
        self.assertIn(f"bogus.beta.test:{port}: skipped, its address records are bogus", attempts[0])
        self.assertIn(f"wrong.beta.test:{port} [127.0.0.1]", attempts[1])
