"""
Resource limits and the faults they guard against: each limit refuses the
newest work with an error and leaves existing streams alone.
"""

import socket

from twisted.internet import defer, error, threads
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.words.xish import domish

from gateway.app.config import parse_config
from gateway.app.state import GatewayState
from gateway.records.memory import MemoryRecordStore
from gateway.s2s.federation import Federation
from gateway.s2s.flow import Backpressure
from gateway.s2s.metrics import GatewayMetrics
from gateway.s2s.outbound import OutboundStream
from gateway.s2s.stream import serialise
from gateway.testing import FakeDNSClient
from gateway.xmpp.parser import StreamParser, XMLStreamError
from tests.support import World, error_condition, wait_for
from tests.test_inbound import HEADER, InboundTestCase
from tests.test_outbound import FakeRouter, FakeTLSProfile


class DepthTests(unittest.TestCase):
    def test_depth_limit(self):
        elements = []
        parser = StreamParser(lambda root: None, elements.append, lambda: None, 100000, max_depth=3)
        parser.feed(HEADER + b"<a><b><c/></b></a>")
        self.assertEqual(len(elements), 1)
        with self.assertRaises(XMLStreamError) as caught:
            parser.feed(b"<a><b><c><d/></c></b></a>")
        self.assertEqual(
            (caught.exception.condition, caught.exception.text),
            ("policy-violation", "elements nested deeper than the limit of 3"),
        )

    def test_deep_nesting_never_recurses(self):
        """
        A hostile stanza nested ten thousand deep is refused as it arrives,
        long before anything could recurse over it.
        """
        parser = StreamParser(lambda root: None, lambda e: None, lambda: None, 10 ** 7)
        with self.assertRaises(XMLStreamError) as caught:
            parser.feed(HEADER + b"<a>" * 10000)
        self.assertEqual(caught.exception.condition, "policy-violation")


class VerificationLimitTests(InboundTestCase):
    def setUp(self):
        self.connect()
        self.negotiate_tls()

    def test_per_stream(self):
        """
        More db:result requests than a stream may have under way at once
        get a resource-constraint error; no verification is started.
        """
        self.federation.max_verifications_per_stream = 2
        for n in range(3):
            self.feed(f"<db:result from='d{n}.example' to='local.example'>k</db:result>".encode())
        self.assertEqual(len(self.federation.verifications), 2)
        answer = self.output.read().elements[-1]
        self.assertEqual((answer["from"], answer["to"], answer["type"]),
                         ("local.example", "d2.example", "error"))
        self.assertEqual(error_condition(answer), "resource-constraint")
        self.assertEqual(self.federation.verifications_in_progress, 2)
        # Answers free the places again.
        self.federation.verifications[0][1].callback(True)
        self.assertEqual(self.federation.verifications_in_progress, 1)

    def test_overall(self):
        self.federation.verifications_in_progress = self.federation.max_verifications
        self.feed(b"<db:result from='d.example' to='local.example'>k</db:result>")
        self.assertEqual(self.federation.verifications, [])
        self.assertEqual(error_condition(self.output.read().elements[-1]), "resource-constraint")

    def test_closing_frees_places(self):
        self.feed(b"<db:result from='d.example' to='local.example'>k</db:result>")
        self.assertEqual(self.federation.verifications_in_progress, 1)
        self.stream.connectionLost(None)
        self.assertEqual(self.federation.verifications_in_progress, 0)


class FailingStore(MemoryRecordStore):
    broken = True

    def add(self, record):
        if self.broken:
            return defer.fail(OSError("disk full"))
        return super().add(record)

    def recent(self, limit=100):
        if self.broken:
            return defer.fail(OSError("disk full"))
        return super().recent(limit)


class _RecordedStream:
    """
    What Federation._record and _checked read of a stream.
    """

    direction = "inbound"
    tls = None
    stream_id = "x"
    authentications = []


def _accepted_by_dialback():
    from gateway.verifiers.chain import ChainResult
    from gateway.verifiers.interfaces import Verdict

    verdict = Verdict.verified("dialback", "ok")
    return ChainResult(True, "dialback", verdict, (verdict,))


class FederationLimitTests(unittest.TestCase):
    def federation(self, extra=""):
        config = parse_config(
            '[domains."local.example"]\n[s2s]\nqueue_limit = 5\nqueue_limit_total = 3\n' + extra,
            "t.toml", "/nonexistent",
        )
        self.reactor = MemoryReactorClock()
        self.router = FakeRouter()
        self.store = FailingStore()
        self.store.broken = False
        return Federation(
            config, GatewayState("/nonexistent", "s", ()), FakeTLSProfile(), FakeDNSClient(),
            self.router, self.reactor, records=self.store,
            backpressure=Backpressure(), metrics=GatewayMetrics(),
        )

    def stanza(self, stanza_id, domain):
        message = domish.Element(("jabber:server", "message"))
        message["from"] = "a@local.example"
        message["to"] = f"b@{domain}"
        message["id"] = stanza_id
        return message

    def test_total_queue_limit(self):
        """
        Across all routes at most queue_limit_total stanzas wait; the next
        is bounced with resource-constraint.
        """
        federation = self.federation()
        federation.resolver.add("one.example", "A", "127.0.0.10")
        federation.resolver.add("two.example", "A", "127.0.0.11")
        for n, domain in enumerate(["one.example", "two.example", "one.example", "two.example"]):
            federation.send(self.stanza(f"m{n}", domain), "local.example", domain)
        self.assertEqual(self.router.bounces, [("m3", "resource-constraint")])

    def test_queue_bytes(self):
        """
        Waiting stanzas are counted in bytes too, per route and overall: a
        few large stanzas fill a queue that the count alone would not; what
        waits is kept as the bytes to send, and bounced whole from them when
        the route fails.
        """
        federation = self.federation("queue_limit_bytes = 3000\nqueue_limit_total_bytes = 3500\n")
        federation.resolver.add("one.example", "A", "127.0.0.10")
        federation.resolver.add("two.example", "A", "127.0.0.11")

        def big(stanza_id, domain):
            stanza = self.stanza(stanza_id, domain)
            stanza.addElement("body", content="x" * 1200)
            return stanza

        # b0 and b1 wait for one.example; b2 would take its queue over 3000
        # bytes; b3 would take all queues over 3500 (two stanzas, under
        # every count limit).
        for n, domain in enumerate(["one.example"] * 3 + ["two.example"]):
            federation.send(big(f"b{n}", domain), "local.example", domain)
        self.assertEqual(
            self.router.bounces, [("b2", "resource-constraint"), ("b3", "resource-constraint")]
        )
        self.assertEqual(federation.queued("local.example", "one.example"), 2)
        self.assertEqual(federation.queued("local.example", "two.example"), 0)
        self.assertEqual(federation.queues.waiting_bytes(), 2 * len(serialise(big("b0", "one.example"))))
        _, _, factory, _, _ = self.reactor.tcpClients[0]
        factory.clientConnectionFailed(None, Failure(error.ConnectionRefusedError()))
        self.assertEqual([b for b, _ in self.router.bounces], ["b2", "b3", "b0", "b1"])
        self.assertEqual(federation.queued("local.example", "one.example"), 0)
        self.assertEqual(federation.queues.waiting_bytes(), 0)

    def test_records_unavailable(self):
        """
        When a record can't be written, the gateway keeps serving peers it
        already knows (their records are held and written when the store is
        back) and refuses only peers it doesn't: their authentication is
        refused after verification, and stanzas for them bounce.  Nothing
        is refused at the door.
        """
        federation = self.federation()
        federation.keeper.known_peers.add("peer.example")
        self.store.broken = True

        accepted = _accepted_by_dialback()
        federation.authenticator.record(_RecordedStream(), "inbound", "local.example", "peer.example",
                           accepted, True, "dialback")
        self.flushLoggedErrors(OSError)
        self.assertFalse(federation.keeper.available)
        state = federation.records_state()
        self.assertEqual(
            (state["available"], state["held"], state["lost"], state["accepting"]),
            (False, 1, 0, "known peers only"),
        )
        self.assertIsNone(federation.admit("127.0.0.1"))

        policy = federation.policy.for_domain("new.example")
        known = federation.authenticator.checked(accepted, _RecordedStream(), "peer.example", policy)
        self.assertTrue(known.authenticated)
        new = federation.authenticator.checked(accepted, _RecordedStream(), "new.example", policy)
        self.assertFalse(new.authenticated)
        self.assertIn("only peers already known are accepted", new.reason)

        federation.send(self.stanza("r1", "new.example"), "local.example", "new.example")
        self.assertEqual(self.router.bounces, [("r1", "internal-server-error")])
        # A known peer is tried (here, DNS has nothing for it: remote-server-not-found).
        federation.send(self.stanza("r2", "peer.example"), "local.example", "peer.example")
        self.assertEqual(self.router.bounces[1:], [("r2", "remote-server-not-found")])

        federation.sweep()
        self.assertFalse(federation.keeper.available)
        self.assertEqual(self.store.records, [])
        self.store.broken = False
        federation.sweep()
        self.assertTrue(federation.keeper.available)
        self.assertEqual(federation.records_state()["held"], 0)
        self.reactor.advance(1)
        self.assertEqual([r.peer_domain for r in self.store.records], ["peer.example"])

    def test_records_held_are_bounded(self):
        """
        While the store is failing, at most RECORDS_HELD records are held;
        beyond that they are counted as lost and even known peers are
        refused (their authentication could not be recorded at all).
        """
        from gateway.s2s import keeper as module
        from gateway.verifiers.chain import ChainResult

        self.patch(module, "RECORDS_HELD", 3)
        self.patch(module, "REFUSALS_HELD", 2)
        federation = self.federation()
        federation.keeper.known_peers.add("peer.example")
        self.store.broken = True

        accepted = _accepted_by_dialback()
        refused = ChainResult(False, None, None, (), "no")
        for _ in range(3):
            federation.authenticator.record(_RecordedStream(), "inbound", "local.example", "peer.example",
                               refused, False, None)
        self.flushLoggedErrors(OSError)
        self.assertEqual(federation.records_state()["held"], 2)
        self.assertEqual(federation.records_state()["lost"], 1)
        for _ in range(2):
            federation.authenticator.record(_RecordedStream(), "inbound", "local.example", "peer.example",
                               accepted, True, "dialback")
        self.assertEqual(federation.records_state()["held"], 3)
        self.assertEqual(federation.records_state()["lost"], 2)
        self.assertEqual(federation.records_state()["accepting"], "no peers")
        policy = federation.policy.for_domain("peer.example")
        self.assertFalse(federation.authenticator.checked(accepted, _RecordedStream(), "peer.example", policy).authenticated)


class _Counted:
    direction = "inbound"

    def __init__(self, source, authenticated=False, closed=False):
        self.source = source
        self.authenticated = authenticated
        self.closed = closed


def open_raw_stream(port, source="127.0.0.1"):
    """
    Connect (from loopback address C{source}), send a stream header, and
    return what the gateway answers within a second (blocking; run in a
    thread).
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    sock.sendall(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
        b"xmlns:stream='http://etherx.jabber.org/streams' to='a.test' version='1.0'>"
    )
    sock.settimeout(1)
    data = b""
    try:
        while b"</stream:features>" not in data and b"</stream:stream>" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return sock, data


class AdmissionTests(unittest.TestCase):
    def federation(self, extra):
        config = parse_config('[domains."local.example"]\n' + extra, "t.toml", "/nonexistent")
        return Federation(
            config, GatewayState("/nonexistent", "s", ()), FakeTLSProfile(), FakeDNSClient(),
            FakeRouter(), MemoryReactorClock(), records=FailingStore(),
            backpressure=Backpressure(), metrics=GatewayMetrics(),
        )

    def test_closed_streams_do_not_count(self):
        """
        A stream that is closing (its connection kept for the closing
        handshake) holds no slot; the /64 of an IPv6 peer is one source.
        """
        federation = self.federation(
            "[s2s]\nmax_connections_per_address = 2\nmax_unauthenticated_per_address = 1\n"
        )
        federation.streams.update([
            _Counted("192.0.2.1", closed=True), _Counted("192.0.2.1", closed=True),
        ])
        self.assertIsNone(federation.admit("192.0.2.1"))
        federation.streams.add(_Counted("2001:db8:1:2::/64"))
        refusal = federation.admit("2001:db8:1:2::77")
        self.assertEqual(refusal, (
            "resource-constraint",
            "too many unauthenticated streams from 2001:db8:1:2::/64 (limit 1)",
        ))
        self.assertIsNone(federation.admit("2001:db8:1:3::77"))
        federation.streams.add(_Counted("2001:db8:1:2::/64", authenticated=True))
        self.assertEqual(
            federation.admit("2001:db8:1:2::1")[1],
            "too many connections from 2001:db8:1:2::/64 (limit 2)",
        )


class _Outbound:
    direction = "outbound"
    peer_domain = "remote.example"
    local_domain = "local.example"
    closed = closing = False
    authenticated = True
    stream_id = "o1"

    sink_full = OutboundStream.sink_full
    sink_drained = OutboundStream.sink_drained

    def __init__(self, clock):
        self.clock = clock
        self.unacked_bytes = 0
        self.bytes_out = 0
        self.stalled_since = None
        self.stalled_from = 0
        self.sent = []
        self.failed = []
        self.last_activity = 0

    def send_stanza(self, stanza):
        self.sent.append(stanza["id"])
        self.bytes_out += 1000

    def fail(self, condition, text=None):
        self.failed.append((condition, text))

    def peer_name(self):
        return self.peer_domain


class OutboundByteLimitTests(unittest.TestCase):
    """
    Bytes an outbound stream holds for a peer that doesn't acknowledge or
    doesn't read are bounded: past the limits new stanzas are bounced with
    resource-constraint, and a stream stalled for timeouts.stalled is closed.
    """

    federation = FederationLimitTests.federation
    stanza = FederationLimitTests.stanza

    def route(self, extra=""):
        federation = self.federation(extra)
        self.router.components = {}
        stream = _Outbound(self.reactor)
        federation.registry.carry(("local.example", "remote.example"), stream)
        federation.streams.add(stream)
        federation.backpressure.to_peers.attach_sink(
            StringTransport(), stream, on_full=stream.sink_full, on_drained=stream.sink_drained
        )
        return federation, stream

    def test_unacknowledged_bytes(self):
        federation, stream = self.route("max_unacked_bytes = 5000\n")
        federation.send(self.stanza("u1", "remote.example"), "local.example", "remote.example")
        stream.unacked_bytes = 5000
        federation.send(self.stanza("u2", "remote.example"), "local.example", "remote.example")
        self.assertEqual(stream.sent, ["u1"])
        self.assertEqual(self.router.bounces, [("u2", "resource-constraint")])

    def test_stalled_bytes_and_timeout(self):
        federation, stream = self.route("max_stalled_bytes = 3000\n")
        federation.backpressure.to_peers.closed_by(stream)
        self.assertEqual(stream.stalled_since, self.reactor.seconds())
        for n in range(5):
            federation.send(self.stanza(f"s{n}", "remote.example"), "local.example", "remote.example")
        self.assertEqual(stream.sent, ["s0", "s1", "s2"])
        self.assertEqual(
            self.router.bounces, [("s3", "resource-constraint"), ("s4", "resource-constraint")]
        )
        self.reactor.advance(59)
        federation.sweep()
        self.assertEqual(stream.failed, [])
        self.reactor.advance(1)
        federation.sweep()
        self.assertEqual(stream.failed, [("connection-timeout", "nothing we sent was read for 60s")])
        # Drained in time, the stream is no longer stalled.
        federation, stream = self.route()
        federation.backpressure.to_peers.closed_by(stream)
        federation.backpressure.to_peers.opened(stream)
        self.assertIsNone(stream.stalled_since)

    def test_resent_once(self):
        """
        Unacknowledged stanzas come back as bytes: sent again once, bounced
        the second time.
        """
        from gateway.s2s.stream import serialise

        federation, stream = self.route()
        data = serialise(self.stanza("r1", "remote.example"))
        federation.resend([(data, False)], "local.example", "remote.example")
        self.assertEqual(stream.sent, ["r1"])
        federation.resend([(data, True)], "local.example", "remote.example")
        self.assertEqual(self.router.bounces, [("r1", "remote-server-timeout")])


class ConnectionLimitTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_per_address(self):
        """
        Past the per-address limit a new connection is answered with
        resource-constraint; the connections already open keep going, and
        so does federation with another gateway.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(
            world.gateway("a.test", s2s_extra="max_connections_per_address = 3\n")
        )
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test"))
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        bob = yield defer.Deferred.fromCoroutine(world.component(b, "b.test"))
        sockets = []
        self.addCleanup(lambda: [s.close() for s in sockets])
        answers = []
        for _ in range(3):
            sock, data = yield threads.deferToThread(open_raw_stream, a.s2s_port)
            sockets.append(sock)
            answers.append(data)
        for data in answers:
            self.assertIn(b"<starttls", data)
        sock, data = yield threads.deferToThread(open_raw_stream, a.s2s_port)
        sockets.append(sock)
        self.assertIn(b"<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", data)
        self.assertIn(b"too many connections from 127.0.0.1 (limit 3)", data)
        # The three raw streams are still open...
        self.assertEqual(len([s for s in a.federation.streams if s.direction == "inbound"]), 3)
        # ...and b.test's gateway still reaches a.test (its inbound stream
        # comes from 127.0.0.1 too, so close one raw stream to make room).
        sockets[0].close()
        yield wait_for(lambda: len([s for s in a.federation.streams if s.direction == "inbound"]) == 2)
        bob.message("bob@b.test", "alice@a.test", "still here")
        received = yield defer.Deferred.fromCoroutine(alice.next())
        self.assertEqual(str(received.body), "still here")

    @defer.inlineCallbacks
    def test_unauthenticated_per_source(self):
        """
        One source may hold only max_unauthenticated_per_address of the
        unauthenticated streams: past it, its next connection is refused
        naming the source, while another source is still admitted.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway(
            "a.test",
            s2s_extra="max_unauthenticated = 5\nmax_unauthenticated_per_address = 2\n",
        ))
        sockets = []
        self.addCleanup(lambda: [s.close() for s in sockets])
        for source, expected in (
            ("127.0.0.1", b"<starttls"),
            ("127.0.0.1", b"<starttls"),
            ("127.0.0.1", b"too many unauthenticated streams from 127.0.0.1 (limit 2)"),
            ("127.0.0.2", b"<starttls"),
        ):
            sock, data = yield threads.deferToThread(open_raw_stream, a.s2s_port, source)
            sockets.append(sock)
            self.assertIn(expected, data, source)

    @defer.inlineCallbacks
    def test_idle_streams_closed_and_reopened(self):
        """
        An authenticated stream idle for longer than timeouts.idle is
        closed gracefully, and the next stanza opens a new one.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test"))
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test"))
        for service in (a, b):
            service.federation.registry.idle_timeout = 0.5
            service._sweeper.stop()
            service._sweeper.start(0.1, now=False)
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        bob = yield defer.Deferred.fromCoroutine(world.component(b, "b.test"))
        alice.message("alice@a.test", "bob@b.test", "first")
        yield defer.Deferred.fromCoroutine(bob.next())
        first = a.federation.outbound_stream("a.test", "b.test")
        yield wait_for(lambda: a.federation.outbound_stream("a.test", "b.test") is None, timeout=5)
        # The closing handshake: our closing tag, then b's, well within the
        # grace period.
        self.assertTrue(first.closing or first.closed)
        yield wait_for(lambda: first.closed, timeout=first.CLOSE_GRACE - 1)
        alice.message("alice@a.test", "bob@b.test", "second")
        received = yield defer.Deferred.fromCoroutine(bob.next())
        self.assertEqual(str(received.body), "second")
        self.assertIsNot(a.federation.outbound_stream("a.test", "b.test"), first)


class SourceTests(unittest.TestCase):
    def test_connection_source(self):
        """
        An IPv4 address is its own source; an IPv6 address counts against
        its /64, and an IPv4-mapped one as the IPv4 address.
        """
        from gateway.s2s.registry import connection_source

        self.assertEqual(
            [connection_source(a) for a in (
                "192.0.2.7", "2001:db8:1:2:aaaa::1", "2001:db8:1:2:bbbb::9", "2001:db8:1:3::1",
                "::ffff:192.0.2.7", None,
            )],
            ["192.0.2.7", "2001:db8:1:2::/64", "2001:db8:1:2::/64", "2001:db8:1:3::/64",
             "192.0.2.7", None],
        )

