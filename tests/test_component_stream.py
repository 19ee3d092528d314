"""
A component's stream (XEP-0114), in memory: the handshake, stanzas routed
shallow, and the limits and restricted-XML checks of s2s streams, each
refused with its stream error.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from twisted.words.protocols.jabber.xmlstream import hashPassword

from gateway.components.listener import ComponentFactory
from gateway.components.routing import Router
from gateway.s2s.flow import Backpressure
from gateway.xmpp.parser import ShallowStanza
from tests.test_routing import FakeFederation

SECRET = "s3cret-for-tests"
HEADER = (
    b"<stream:stream xmlns='jabber:component:accept' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='local.example'>"
)


class ComponentStreamTests(unittest.TestCase):
    def setUp(self):
        self.router = Router(["local.example"])
        self.router.federation = FakeFederation()
        self.factory = ComponentFactory(
            self.router, {"local.example": SECRET}, Backpressure(), max_stanza_size=10000, max_depth=8
        )
        self.stream = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = StringTransport()
        self.stream.makeConnection(self.transport)

    def attach(self):
        self.stream.dataReceived(HEADER)
        sid = self.stream.sid
        self.stream.dataReceived(f"<handshake>{hashPassword(sid, SECRET)}</handshake>".encode())
        self.assertIn(b"<handshake/>", self.transport.value())
        self.assertIs(self.router.components["local.example"], self.stream)
        self.transport.clear()

    def test_stanza_routed_shallow(self):
        """
        A message for a peer reaches the federation as a shallow stanza
        whose bytes are the component's own.
        """
        self.attach()
        data = b"<message from='a@local.example' to='b@remote.example'><body>hi</body></message>"
        self.stream.dataReceived(data)
        ((stanza, local, peer),) = self.router.federation.sent
        self.assertIsInstance(stanza, ShallowStanza)
        self.assertEqual((stanza.raw, stanza.contained, local, peer), (data, True, "local.example", "remote.example"))

    def refused(self, data, condition):
        self.attach()
        self.stream.dataReceived(data)
        sent = self.transport.value()
        self.assertIn(f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'".encode(), sent)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.router.federation.sent, [])
        # Nothing after the error is read.
        self.stream.dataReceived(b"<message from='a@local.example' to='b@remote.example'/>")
        self.assertEqual(self.router.federation.sent, [])

    def test_comment(self):
        self.refused(
            b"<message from='a@local.example' to='b@remote.example'><!-- x --></message>",
            "restricted-xml",
        )

    def test_not_well_formed(self):
        self.refused(b"<message from='a@local.example' to='b@remote.example'><body></message>", "not-well-formed")

    def test_too_large(self):
        self.refused(
            b"<message from='a@local.example' to='b@remote.example'><body>"
            + b"x" * 10001 + b"</body></message>",
            "policy-violation",
        )

    def test_too_deep(self):
        self.refused(
            b"<message from='a@local.example' to='b@remote.example'>" + b"<a>" * 9 + b"</a>" * 9 + b"</message>",
            "policy-violation",
        )

    def test_before_handshake(self):
        """
        Bad XML before the handshake is refused the same way, with the
        stream header sent first.
        """
        self.stream.dataReceived(HEADER + b"<!-- x -->")
        sent = self.transport.value()
        self.assertTrue(sent.startswith(b"<?xml") or sent.startswith(b"<stream:stream"), sent)
        self.assertIn(b"<restricted-xml xmlns='urn:ietf:params:xml:ns:xmpp-streams'", sent)
        self.assertTrue(self.transport.disconnecting)

    def test_not_a_stanza(self):
        """
        A first-level element that is not a stanza is refused with
        unsupported-stanza-type, after the stanzas before it were routed
        once each.
        """
        self.attach()
        self.stream.dataReceived(
            b"<presence from='a@local.example' to='b@remote.example'/>"
            b"<iq from='a@local.example' to='b@remote.example' type='result' id='1'/><foo/>"
        )
        self.assertEqual([s.name for s, _, _ in self.router.federation.sent], ["presence", "iq"])
        self.assertIn(b"<unsupported-stanza-type xmlns='urn:ietf:params:xml:ns:xmpp-streams'", self.transport.value())
