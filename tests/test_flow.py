"""
Backpressure: a receiver whose buffer is full pauses the senders that feed
it, and they resume when it drains.
"""

from twisted.internet import defer, reactor, task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from gateway.s2s.flow import ReadRate, Valve, pause, resume
from tests.support import World


class ReadRateTests(unittest.TestCase):
    def test_bucket(self):
        """
        Reads within the burst go on; past it, reading stops for as long as
        the rate needs to pay for what was read, then resumes.
        """
        clock = task.Clock()
        transport = StringTransport()
        rate = ReadRate(clock, rate=1000, burst=2000)
        rate.spent(transport, 1500)
        self.assertEqual(transport.producerState, "producing")
        rate.spent(transport, 1000)
        self.assertEqual(transport.producerState, "paused")
        clock.advance(0.49)
        self.assertEqual(transport.producerState, "paused")
        clock.advance(0.02)
        self.assertEqual(transport.producerState, "producing")
        # Refilled at the rate: after a quiet second, 1000 bytes more go.
        clock.advance(1.0)
        rate.spent(transport, 1000)
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual((rate.read, rate.pauses), (3500, 1))

    def test_stop_cancels(self):
        clock = task.Clock()
        rate = ReadRate(clock, rate=10, burst=10)
        rate.spent(StringTransport(), 100)
        rate.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_reasons_compose(self):
        """
        A transport paused for two reasons reads again only when both are
        withdrawn: a full receiver and a spent rate don't undo each other.
        """
        clock = task.Clock()
        transport = StringTransport()
        valve = Valve("test")
        valve.add_source(transport)
        sink = StringTransport()
        valve.attach_sink(sink, "sink")
        rate = ReadRate(clock, rate=100, burst=100)
        sink.producer.pauseProducing()
        rate.spent(transport, 200)
        self.assertEqual(transport.producerState, "paused")
        sink.producer.resumeProducing()
        self.assertEqual(transport.producerState, "paused")
        clock.advance(1.01)
        self.assertEqual(transport.producerState, "producing")
        rate.spent(transport, 200)
        sink.producer.pauseProducing()
        clock.advance(5)
        self.assertEqual(transport.producerState, "paused")
        sink.producer.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        pause(transport, "x")
        resume(transport, "y")
        self.assertEqual(transport.producerState, "paused")
        resume(transport, "x")
        self.assertEqual(transport.producerState, "producing")


class ValveTests(unittest.TestCase):
    def setUp(self):
        self.sources = [StringTransport(), StringTransport()]
        self.valve = Valve("test")
        for source in self.sources:
            self.valve.add_source(source)

    def states(self):
        return [t.producerState for t in self.sources]

    def test_any_full_sink_pauses_all_sources(self):
        first, second = StringTransport(), StringTransport()
        self.valve.attach_sink(first, "first")
        self.valve.attach_sink(second, "second")
        first.producer.pauseProducing()
        self.assertEqual(self.states(), ["paused", "paused"])
        second.producer.pauseProducing()
        first.producer.resumeProducing()
        self.assertEqual(self.states(), ["paused", "paused"])
        second.producer.resumeProducing()
        self.assertEqual(self.states(), ["producing", "producing"])

    def test_new_source_while_closed(self):
        sink = StringTransport()
        self.valve.attach_sink(sink, "sink")
        sink.producer.pauseProducing()
        late = StringTransport()
        self.valve.add_source(late)
        self.assertEqual(late.producerState, "paused")

    def test_gone_sink_reopens(self):
        sink = StringTransport()
        self.valve.attach_sink(sink, "sink")
        sink.producer.pauseProducing()
        self.valve.detach_sink("sink")
        self.assertEqual(self.states(), ["producing", "producing"])
        sink.producer.stopProducing()  # harmless after detaching
        self.assertFalse(self.valve.closed)


class BackpressureEndToEndTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_full_outbound_stream_pauses_component(self):
        """
        While an outbound stream's transport says it is full, the gateway
        stops reading from its components; the stanza waits in the
        component's socket, not in the gateway, and goes through once the
        stream drains.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test"))
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test"))
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        bob = yield defer.Deferred.fromCoroutine(world.component(b, "b.test"))
        alice.message("alice@a.test", "bob@b.test", "first")
        yield defer.Deferred.fromCoroutine(bob.next())
        outbound = a.federation.outbound_stream("a.test", "b.test")
        producer = outbound.transport.producer
        component = a.router.components["a.test"].transport
        self.assertIn(component, reactor.getReaders())
        producer.pauseProducing()
        # The gateway no longer reads the component's socket at all: what it
        # sends now waits there.
        self.assertNotIn(component, reactor.getReaders())
        routed = a.router.routed
        alice.message("alice@a.test", "bob@b.test", "held")
        self.assertEqual(a.router.routed, routed)
        producer.resumeProducing()
        self.assertIn(component, reactor.getReaders())
        received = yield defer.Deferred.fromCoroutine(bob.next())
        self.assertEqual(str(received.body), "held")
