"""
POSH end to end, with gateways on loopback and real HTTPS servers for the
POSH files: a hosted domain whose XMPP certificate names only its
provider, verified by POSH (directly, and through a reference to the
provider's gateway publishing its own file); a wrong fingerprint and a POSH
server with an invalid certificate refused; a slow POSH server timing out
while other streams carry on.
"""

import os

from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet import defer, reactor
from twisted.trial import unittest

from gateway.posh.client import WELL_KNOWN_PATH, certificate_fingerprint, posh_document
from gateway.posh.publisher import certificate_der
from gateway.verifiers.posh import POSHVerifierFactory
from tests.support import World, error_condition, wait_for
from tests.test_posh import HOSTING, TENANT, Never, POSHWebServer

POSH_ONLY = 'verifiers = ["posh"]\n'


async def records(service, peer):
    return await service.records.for_peer(peer)


class POSHEndToEndTests(unittest.TestCase):
    timeout = 90

    def setUp(self):
        self.world = World(self)
        # The provider's XMPP certificate, naming hosting.test only; the
        # tenant's gateway presents it for tenant.test.
        self.hosting_files = self.world.ca.write_identity(
            os.path.join(self.world.folder, "provider"), HOSTING
        )
        self.hosting_der = certificate_der(self.hosting_files[0])
        for name in (TENANT, HOSTING):
            self.world.dns.add_a(name, "127.0.0.1")
        # The web servers of tenant.test (and hosting.test), with
        # certificates from the test CA that the verifying gateway trusts.
        self.web = POSHWebServer(self, self.world.ca)
        self.patch(POSHVerifierFactory, "port", self.web.port)

    async def gateways(self, a_policy=POSH_ONLY, a_extra=""):
        """
        a.test, verifying peers as C{a_policy} says, and tenant.test with
        the provider's certificate (it verifies a.test by PKIX).
        """
        a = await self.world.gateway("a.test", trust_ca=True, policy=a_policy, extra=a_extra)
        tenant = await self.world.gateway(
            TENANT, trust_ca=True, certificate_files=self.hosting_files
        )
        alice = await self.world.component(a, "a.test")
        tina = await self.world.component(tenant, TENANT)
        return a, tenant, alice, tina

    async def exchange(self, alice, tina):
        alice.message("alice@a.test", f"tina@{TENANT}", "hello tenant", "1")
        received = await tina.next(timeout=20)
        self.assertEqual(str(received.body), "hello tenant")
        tina.message(f"tina@{TENANT}", "alice@a.test", "hello a", "2")
        received = await alice.next(timeout=20)
        self.assertEqual(str(received.body), "hello a")

    async def refused(self, alice, tina):
        alice.message("alice@a.test", f"tina@{TENANT}", "no", "n1")
        bounce = await alice.next(timeout=30)
        self.assertEqual((bounce["id"], error_condition(bounce)), ("n1", "remote-server-not-found"))
        # a refuses the tenant's stream: "invalid", which XEP-0220 section
        # 2.1.1 makes the tenant's gateway answer with internal-server-error.
        tina.message(f"tina@{TENANT}", "alice@a.test", "no", "n2")
        bounce = await tina.next(timeout=30)
        self.assertEqual((bounce["id"], error_condition(bounce)), ("n2", "internal-server-error"))

    async def _verified(self):
        a, tenant, alice, tina = await self.gateways()
        await self.exchange(alice, tina)
        found = await records(a, TENANT)
        by_direction = {r.direction: r for r in found if r.authenticated}
        self.assertEqual(sorted(by_direction), ["inbound", "outbound"])
        for record in by_direction.values():
            self.assertEqual(record.method, "posh")
            self.assertEqual(
                record.evidence["fingerprint"], certificate_fingerprint(self.hosting_der)
            )
            self.assertEqual(record.verdicts[0]["verifier"], "posh")
            self.assertEqual(record.verdicts[0]["outcome"], "verified")
            # The certificate names the provider only.
            self.assertEqual(record.certificate["sans"], [["DNS", HOSTING]])
        return by_direction

    def test_hosted_domain_verified_by_posh(self):
        """
        tenant.test's web server lists the fingerprint of the provider's
        certificate; a.test, trusting POSH only, accepts tenant.test in both
        directions and records method posh.  One fetch served both.
        """
        self.web.serve(TENANT, posh_document(self.hosting_der, 3600))

        async def run():
            by_direction = await self._verified()
            for record in by_direction.values():
                self.assertEqual(record.evidence["url"], f"https://{TENANT}{WELL_KNOWN_PATH}")
                self.assertEqual(record.evidence["expires"], 3600)
            self.assertEqual(self.web.count(TENANT), 1)

        return defer.Deferred.fromCoroutine(run())

    def test_delegated_to_the_providers_gateway(self):
        """
        tenant.test delegates with a url to the provider's gateway, which
        publishes its own POSH file (C{[posh] listen}) for hosting.test.
        """

        async def run():
            provider = await self.world.gateway(
                HOSTING, certificate_files=self.hosting_files,
                extra='[posh]\nlisten = ["tcp:0:interface=127.0.0.1"]\nexpires = 600\n',
            )
            (listening,) = await provider.listening_ports("POSH (HTTPS)")
            target = f"https://{HOSTING}:{listening.getHost().port}{WELL_KNOWN_PATH}"
            self.web.serve(TENANT, f'{{"url": "{target}", "expires": 3600}}'.encode())
            by_direction = await self._verified()
            for record in by_direction.values():
                self.assertEqual(record.evidence["url"], target)
                self.assertEqual(record.evidence["via"], f"https://{TENANT}{WELL_KNOWN_PATH}")
                self.assertEqual(record.evidence["expires"], 600)

        return defer.Deferred.fromCoroutine(run())

    def test_wrong_fingerprint_refused(self):
        """
        A POSH file listing another certificate refuses tenant.test both
        ways, and the record says why.
        """
        other, _ = self.world.ca.issue([HOSTING])
        self.web.serve(TENANT, posh_document(other.public_bytes(Encoding.DER), 3600))

        async def run():
            a, tenant, alice, tina = await self.gateways()
            await self.refused(alice, tina)
            found = await records(a, TENANT)
            self.assertEqual(sorted(r.direction for r in found), ["inbound", "outbound"])
            for record in found:
                self.assertFalse(record.authenticated)
                self.assertEqual(record.method, "refused")
                self.assertEqual([v["verifier"] for v in record.verdicts], ["posh"])
                self.assertIn(
                    f"lists 1 fingerprint; none matches the certificate "
                    f"({certificate_fingerprint(self.hosting_der)})",
                    record.reason,
                )

        return defer.Deferred.fromCoroutine(run())

    def test_invalid_https_certificate_refused(self):
        """
        A POSH file served with a certificate not from a trusted CA is not
        believed, even though it lists the right fingerprint.
        """
        web = POSHWebServer(
            self, self.world.ca, certificate=self.world.ca.issue([TENANT], self_signed=True)
        )
        web.serve(TENANT, posh_document(self.hosting_der, 3600))
        self.patch(POSHVerifierFactory, "port", web.port)

        async def run():
            a, tenant, alice, tina = await self.gateways()
            await self.refused(alice, tina)
            found = await records(a, TENANT)
            self.assertTrue(found)
            for record in found:
                self.assertFalse(record.authenticated)
                self.assertIn(
                    "invalid HTTPS certificate: self-signed certificate, not from a trusted CA",
                    record.reason,
                )
            self.assertEqual(web.requests, [])

        return defer.Deferred.fromCoroutine(run())

    def test_slow_posh_server_does_not_stall_others(self):
        """
        While tenant.test's POSH server never answers, a.test keeps
        exchanging messages with b.test (verified by PKIX), well before the
        POSH timeout; then tenant.test is refused for the timeout.
        """
        never = Never()
        self.web.route(TENANT, never)
        posh_timeout = 4.0

        async def run():
            policy = (
                'verifiers = ["pkix"]\n'
                f'[policy.domains."{TENANT}"]\n{POSH_ONLY}'
            )
            a, tenant, alice, tina = await self.gateways(
                a_policy=policy, a_extra=f"[posh]\ntimeout = {posh_timeout}\n"
            )
            b = await self.world.gateway("b.test", trust_ca=True)
            bob = await self.world.component(b, "b.test")

            started = reactor.seconds()
            alice.message("alice@a.test", f"tina@{TENANT}", "stuck", "t1")
            await wait_for(lambda: never.requests == 1)
            for n in range(3):
                alice.message("alice@a.test", "bob@b.test", f"hello {n}", f"b{n}")
                received = await bob.next(timeout=posh_timeout)
                self.assertEqual(str(received.body), f"hello {n}")
                bob.message("bob@b.test", "alice@a.test", f"back {n}", f"r{n}")
                received = await alice.next(timeout=posh_timeout)
                self.assertEqual(str(received.body), f"back {n}")
            exchanged = reactor.seconds() - started
            self.assertLess(exchanged, posh_timeout)

            bounce = await alice.next(timeout=30)
            self.assertEqual(
                (bounce["id"], error_condition(bounce)), ("t1", "remote-server-not-found")
            )
            self.assertGreaterEqual(reactor.seconds() - started, posh_timeout - 0.5)
            (record,) = [r for r in await records(a, TENANT) if r.direction == "outbound"]
            self.assertFalse(record.authenticated)
            self.assertIn(f"no answer within {posh_timeout:g}s", record.reason)
            await wait_for(lambda: never.lost == 1)

        return defer.Deferred.fromCoroutine(run())

