"""
Interoperability with Debian's Prosody 0.12, both directions.
"""

import os

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet import defer
from twisted.trial import unittest

from gateway.tls.tlsa import tlsa_for
from tests.dnssec.test_world import LDNS_PROGRAMS, SERVER_PROGRAMS
from tests.dnssec.world import DNSSECWorld
from tests.interop.cases import InteropCases, free_port
from tests.interop.peers import require_program
from tests.interop.prosody import ProsodyServer
from tests.support import TestComponent, World, write_self_signed

ADDRESS = "127.0.0.5"
SECRET = "prosody-component-secret"


class ProsodyTests(InteropCases, unittest.TestCase):
    PEER = "svc.prosody.test"
    SERVER = "prosody"

    def setUp(self):
        require_program("prosody", "prosody")
        InteropCases.setUp(self)

    async def start_peer(self, certificate, secure_auth):
        folder = os.path.join(self.world.folder, "prosody")
        certificate_file, key_file = self.peer_identity(certificate, folder)
        self.server = ProsodyServer(
            folder,
            ADDRESS,
            s2s_port=free_port(ADDRESS),
            component_port=free_port(ADDRESS),
            component_domain=self.PEER,
            component_secret=SECRET,
            certificate_file=certificate_file,
            key_file=key_file,
            ca_file=self.world.ca.write_ca(folder),
            dns_port=self.world.dns.port,
            secure_auth=secure_auth,
        )
        self.addCleanup(self.server.stop)
        await self.server.start()
        self.world.dns.add_srv(f"_xmpp-server._tcp.{self.PEER}", f"xmpp.{self.PEER}", self.server.s2s_port)
        self.world.dns.add_a(f"xmpp.{self.PEER}", ADDRESS)
        component = TestComponent(self.PEER, SECRET)
        await component.connect(self.server.component_port, host=ADDRESS)
        self.addCleanup(component.disconnect)
        return component


class ProsodyDANETests(unittest.TestCase):
    """
    Case 3 of the matrix: Prosody with use_dane = true and the gateway,
    both with self-signed certificates published as DANE-EE records in a
    DNSSEC-signed zone.  The gateway verifies Prosody by DANE in both
    directions.  Prosody 0.12 checks DANE only on its own outgoing streams
    (its inbound DANE is a community module Debian doesn't ship), so it
    verifies the gateway by DANE when it connects, and by dialback when the
    gateway connects to it: s2s_secure_auth must stay off for that.
    """

    timeout = 120
    PEER = "svc.prosody.test"

    def setUp(self):
        require_program("prosody", "prosody")
        for program, package in {**SERVER_PROGRAMS, **LDNS_PROGRAMS}.items():
            require_program(program, package)
        self.world = World(self)
        self.dns = DNSSECWorld(os.path.join(self.world.folder, "dnssec"))
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(self.dns.stop()))

    def self_signed(self, domain, folder):
        paths = write_self_signed(folder, domain)
        with open(paths[0], "rb") as f:
            der = x509.load_pem_x509_certificate(f.read()).public_bytes(Encoding.DER)
        return paths, tlsa_for(der)

    def publish(self, domain, host_address, port, tlsa):
        self.dns.zone(domain)
        host = f"xmpp.{domain}."
        self.dns.add(domain, f"_xmpp-server._tcp.{domain}.", "SRV", f"0 0 {port} {host}")
        self.dns.add(domain, host, "A", host_address)
        self.dns.add(domain, f"_{port}._tcp.{host}", "TLSA", str(tlsa))

    @defer.inlineCallbacks
    def test_dane_both_ways(self):
        folder = os.path.join(self.world.folder, "prosody")
        prosody_files, prosody_tlsa = self.self_signed(self.PEER, folder)
        gateway_files, gateway_tlsa = self.self_signed("gw.test", os.path.join(self.world.folder, "gw-certs"))
        prosody_port, gateway_port = free_port(ADDRESS), free_port()
        self.publish(self.PEER, ADDRESS, prosody_port, prosody_tlsa)
        self.publish("gw.test", "127.0.0.1", gateway_port, gateway_tlsa)
        yield defer.Deferred.fromCoroutine(self.dns.start())
        resolver = self.dns.resolver_address
        server = ProsodyServer(
            folder, ADDRESS, s2s_port=prosody_port, component_port=free_port(ADDRESS),
            component_domain=self.PEER, component_secret=SECRET,
            certificate_file=prosody_files[0], key_file=prosody_files[1],
            ca_file=self.world.ca.write_ca(folder), dns_port=self.world.dns.port,
            secure_auth=False,
            extra={
                "use_dane": True,
                "unbound": {
                    "resolvconf": False,
                    "hoststxt": False,
                    "forward": f"{resolver[0]}@{resolver[1]}",
                    "trustfile": self.dns.trust_anchor_file,
                    "options": {"local-zone:": "test. transparent"},
                },
            },
        )
        self.addCleanup(server.stop)
        yield defer.Deferred.fromCoroutine(server.start())
        peer = TestComponent(self.PEER, SECRET)
        yield peer.connect(server.component_port, host=ADDRESS)
        self.addCleanup(peer.disconnect)
        gateway = yield defer.Deferred.fromCoroutine(self.world.gateway(
            "gw.test", srv=False, s2s_port=gateway_port, dns_server=resolver,
            certificate_files=gateway_files, policy='verifiers = ["dane"]\n',
        ))
        mine = yield defer.Deferred.fromCoroutine(self.world.component(gateway, "gw.test"))
        self.server = server
        yield defer.Deferred.fromCoroutine(InteropCases.exchange(self, mine, peer))
        records = yield gateway.records.for_peer(self.PEER)
        authenticated = {r.direction: r for r in records if r.authenticated}
        self.assertEqual(sorted(authenticated), ["inbound", "outbound"], server.log_tail())
        for record in authenticated.values():
            self.assertEqual(record.method, "dane")
            self.assertEqual(record.evidence["usage"], "DANE-EE")
        # The gateway verified Prosody by DANE, so it offered SASL EXTERNAL,
        # which Prosody used.
        self.assertEqual(authenticated["inbound"].evidence["authenticated_by"], "SASL EXTERNAL",
                         server.log_tail())
        # Prosody verified the gateway's self-signed certificate by DANE on
        # its outgoing stream.
        log = server.log_text()
        self.assertIn("Enabling DANE with 1 TLSA records", log)
        self.assertRegex(log, r"s2sout\w+\s+debug\s+certificate chain validation result: valid")
