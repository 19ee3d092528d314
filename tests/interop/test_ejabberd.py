"""
Interoperability with Debian's ejabberd 23.01, both directions.
"""

import os

from twisted.internet import defer
from twisted.trial import unittest

from tests.interop.cases import InteropCases, free_port
from tests.interop.ejabberd import EjabberdServer, require_ejabberd
from tests.support import TestComponent

ADDRESS = "127.0.0.7"
SECRET = "ejabberd-component-secret"


class EjabberdTests(InteropCases, unittest.TestCase):
    PEER = "svc.ejabberd.test"
    SERVER = "ejabberd"
    # ejabberd's stringprep refuses code points unassigned in Unicode 3.2,
    # such as most emoji: it answers bad-request, on the same stream.
    NICKNAMES = ("\u0639\u0644\u064a", "q\u0323\u0303 marks", "\u2603 snow")
    REFUSED_NICKNAMES = ("\U0001F98A fox", "\U0001FACE")
    REFUSED_CONDITION = "bad-request"

    def setUp(self):
        require_ejabberd()
        InteropCases.setUp(self)

    async def start_peer(self, certificate, secure_auth):
        folder = os.path.join(self.world.folder, "ejabberd")
        certificate_file, key_file = self.peer_identity(certificate, folder)
        self.server = EjabberdServer(
            folder,
            address=ADDRESS,
            s2s_port=free_port(ADDRESS),
            component_port=free_port(ADDRESS),
            domain="ejabberd.test",
            component_domain=self.PEER,
            component_secret=SECRET,
            certificate_file=certificate_file,
            key_file=key_file,
            ca_file=self.world.ca.write_ca(folder),
            dns_server=self.world.dns.address,
            # ejabberd resolves SRV targets with getaddrinfo, not through
            # the tests' DNS server: give it the gateway's name here.
            hosts={"xmpp.gw.test": "127.0.0.1"},
        )
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(self.server.stop()))
        await self.server.start()
        self.world.dns.add_srv(f"_xmpp-server._tcp.{self.PEER}", f"xmpp.{self.PEER}", self.server.s2s_port)
        self.world.dns.add_a(f"xmpp.{self.PEER}", ADDRESS)
        component = TestComponent(self.PEER, SECRET)
        await component.connect(self.server.component_port, host=ADDRESS)
        self.addCleanup(component.disconnect)
        return component

    @defer.inlineCallbacks
    def test_server_auth_only_certificate(self):
        """
        ejabberd refuses SASL EXTERNAL from a certificate with only the
        serverAuth key purpose (what public CAs issue now); the gateway
        falls back to dialback on the same stream, and the stanzas flow.
        """
        peer = yield defer.Deferred.fromCoroutine(self.start_peer("ca", secure_auth=True))
        gateway, mine = yield defer.Deferred.fromCoroutine(self.gateway())  # serverAuth only
        yield defer.Deferred.fromCoroutine(self.exchange(mine, peer))
        records = yield defer.Deferred.fromCoroutine(self.records(gateway))
        outbound = records["outbound"]
        self.assertEqual(outbound.method, "pkix", self.describe())
        self.assertEqual(outbound.evidence["authenticated_by"], "dialback", self.describe())
        self.assertIn("unsupported certificate purpose", self.server.log_text())
        # The gateway itself accepts ejabberd's EXTERNAL whatever the EKU.
        self.assertEqual(records["inbound"].evidence["authenticated_by"], "SASL EXTERNAL")
