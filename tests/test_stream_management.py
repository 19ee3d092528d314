"""
XEP-0198 stream management on s2s streams: the receiving side counts and
acknowledges, the sending side keeps what isn't acknowledged and sends it
again on a new stream when the connection drops.
"""

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from gateway.s2s.outbound import OutboundState
from tests.support import World, wait_for
from tests.test_inbound import InboundTestCase

ENABLE = b"<enable xmlns='urn:xmpp:sm:3'/>"
REQUEST = b"<r xmlns='urn:xmpp:sm:3'/>"


class ReceivingSideTests(InboundTestCase):
    def test_enable_count_acknowledge(self):
        self.connect()
        self.negotiate_tls()
        self.authenticate()
        self.feed(ENABLE)
        self.assertEqual(self.output.read().elements[-1].name, "enabled")
        for n in range(3):
            self.feed(f"<message from='a@remote.example' to='b@local.example' id='{n}'/>".encode())
        self.feed(REQUEST)
        answer = self.output.read().elements[-1]
        self.assertEqual((answer.uri, answer.name, answer["h"]), ("urn:xmpp:sm:3", "a", "3"))

    def test_enable_before_authentication(self):
        self.connect()
        self.negotiate_tls()
        self.feed(ENABLE)
        failed = self.output.read().elements[-1]
        self.assertEqual((failed.name, [c.name for c in failed.elements()]),
                         ("failed", ["unexpected-request"]))

    def test_request_without_enable(self):
        self.connect()
        self.negotiate_tls()
        self.authenticate()
        self.feed(REQUEST)
        self.assertEqual(self.stream_error(), "unsupported-stanza-type")


class EndToEndTests(unittest.TestCase):
    timeout = 60

    async def federate(self):
        world = World(self)
        a = await world.gateway("a.test")
        b = await world.gateway("b.test")
        alice = await world.component(a, "a.test")
        bob = await world.component(b, "b.test")
        alice.message("alice@a.test", "bob@b.test", "hello", "m0")
        await bob.next()
        outbound = a.federation.outbound_stream("a.test", "b.test")
        await wait_for(lambda: outbound.sm_enabled and not outbound.unacked)
        return world, a, b, alice, bob, outbound

    @defer.inlineCallbacks
    def test_acknowledged(self):
        """
        The peer acknowledges what it handled; nothing stays pending.
        """
        world, a, b, alice, bob, outbound = yield defer.Deferred.fromCoroutine(self.federate())
        for n in range(150):
            alice.message("alice@a.test", "bob@b.test", f"n{n}", f"n{n}")
        for n in range(150):
            yield defer.Deferred.fromCoroutine(bob.next())
        yield wait_for(lambda: not outbound.unacked)
        self.assertEqual(outbound.acked, 151)

    @defer.inlineCallbacks
    def test_unacknowledged_sent_again(self):
        """
        Stanzas written to a connection that drops before the peer handled
        them are sent again on a new stream, and all arrive.
        """
        world, a, b, alice, bob, outbound = yield defer.Deferred.fromCoroutine(self.federate())
        (inbound,) = [s for s in b.federation.streams if s.direction == "inbound" and s.verified]
        inbound.transport.pauseProducing()  # b.test stops reading: nothing is handled
        for n in range(3):
            alice.message("alice@a.test", "bob@b.test", f"lost? {n}", f"l{n}")
        yield wait_for(lambda: len(outbound.unacked) == 3)
        yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(bob.received.pending, [])
        inbound.transport.abortConnection()  # and the connection drops
        received = []
        for _ in range(3):
            stanza = yield defer.Deferred.fromCoroutine(bob.next())
            received.append(stanza["id"])
        self.assertEqual(received, ["l0", "l1", "l2"])
        new = a.federation.outbound_stream("a.test", "b.test")
        self.assertIsNot(new, outbound)
        self.assertEqual(new.state, OutboundState.AUTHENTICATED)
