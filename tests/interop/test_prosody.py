"""
Interoperability with Debian's Prosody 0.12, both directions.
"""

import os

from twisted.trial import unittest

from tests.interop.cases import InteropCases, free_port
from tests.interop.peers import require_program
from tests.interop.prosody import ProsodyServer
from tests.support import TestComponent

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
