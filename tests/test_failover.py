"""
Reaching a peer whose first targets are broken (RFC 6120 section 3.2.1,
RFC 7673 section 3.4), over real loopback sockets with real TLS: targets
that accept TCP and then fail TLS, send a stream error, present a
certificate for another name, or drop the connection while our dialback
key waits for its answer; then a good one.
"""

import os
import threading

from twisted.internet import defer, protocol, reactor, ssl, task, threads
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial import unittest

from gateway.xmpp.parser import StreamParser
from tests.support import World, error_condition, wait_for

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
    b"xmlns:stream='http://etherx.jabber.org/streams' "
    b"xmlns:db='jabber:server:dialback' id='%s' version='1.0' from='b.test'>"
)
STARTTLS_FEATURES = (
    b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>"
    b"</starttls></stream:features>"
)
DIALBACK_FEATURES = (
    b"<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"
    b"</stream:features>"
)


class BrokenPeer(protocol.Protocol):
    """
    A server side of an s2s stream that goes wrong one way, chosen by its
    factory's C{mode}:

      - C{"bad-tls"}: C{<proceed/>}, then bytes that are not TLS;
      - C{"stream-error"}: a stream error right after its header;
      - C{"tls"}: TLS with the factory's C{tls} options, then dialback
        features; with C{close_after_key}, the connection is dropped when
        the dialback key arrives;
      - C{"silent"}: accepts the connection and never says anything.
    """

    def connectionMade(self):
        self.factory.connections.append(reactor.seconds())
        self.factory.protocols.append(self)
        self.streams = 0
        self.parser = self.new_parser()

    def new_parser(self):
        return StreamParser(self.header, self.element, lambda: None, 100000)

    def dataReceived(self, data):
        self.parser.feed(data)

    def header(self, root):
        if self.factory.mode == "silent":
            return
        self.streams += 1
        self.transport.write(HEADER % f"s{self.streams}".encode())
        mode = self.factory.mode
        if mode == "stream-error":
            self.transport.write(
                b"<stream:error><internal-server-error "
                b"xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"
            )
            self.transport.loseConnection()
        elif self.streams == 1:
            self.transport.write(STARTTLS_FEATURES)
        elif mode == "hoarding":
            self.transport.write(
                b"<stream:features><dialback xmlns='urn:xmpp:features:dialback'/>"
                b"<sm xmlns='urn:xmpp:sm:3'/></stream:features>"
            )
        else:
            self.transport.write(DIALBACK_FEATURES)

    def element(self, element):
        if element.name == "starttls":
            self.transport.write(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            if self.factory.mode == "bad-tls":
                self.parser.close()
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\nthis is not TLS\r\n")
                self.transport.loseConnection()
                return
            self.parser.close()
            self.parser = self.new_parser()
            self.transport.startTLS(self.factory.tls)
        elif element.name == "result" and self.factory.close_after_key:
            self.transport.abortConnection()
        elif element.name == "result" and self.factory.mode == "hoarding":
            self.transport.write(
                f"<db:result from='{element['to']}' to='{element['from']}' type='valid'/>"
                .encode()
            )
        elif element.name == "verify" and self.factory.mode == "hoarding":
            # Our own authoritative server: every key is ours.
            self.transport.write(
                f"<db:verify from='{element['to']}' to='{element['from']}' "
                f"id='{element['id']}' type='valid'/>".encode()
            )
        elif element.name == "enable" and self.factory.mode == "hoarding":
            # Stream management on, then never an acknowledgement, and no
            # more reading: what the gateway sends piles up on its side.
            self.transport.write(b"<enabled xmlns='urn:xmpp:sm:3'/>")
            self.transport.pauseProducing()


class FailoverTests(unittest.TestCase):
    timeout = 60

    async def broken(self, world, mode, priority, identity=None, close_after_key=False):
        """
        Listen as a broken target of b.test with SRV priority C{priority}.
        """
        factory = protocol.Factory.forProtocol(BrokenPeer)
        factory.noisy = False
        factory.mode = mode
        factory.connections = []
        factory.protocols = []
        self.addCleanup(
            lambda: [p.transport.abortConnection() for p in factory.protocols
                     if p.transport.connected]
        )
        factory.close_after_key = close_after_key
        if identity is not None:
            folder = os.path.join(world.folder, f"{mode}-{priority}")
            certificate_file, key_file = world.ca.write_identity(folder, identity)
            with open(certificate_file, "rb") as c, open(key_file, "rb") as k:
                factory.tls = ssl.PrivateCertificate.loadPEM(c.read() + k.read()).options()
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        host = f"t{priority}.b.test"
        world.dns.add_srv("_xmpp-server._tcp.b.test", host, port.getHost().port, priority)
        world.dns.add_a(host, "127.0.0.1")
        return factory

    @defer.inlineCallbacks
    def test_broken_targets_then_a_good_one(self):
        """
        Three broken targets in priority order, then the real b.test: the
        message arrives, each broken target was tried once, in order, and the
        target whose certificate names another domain left a refusal record.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(
            world.gateway("a.test", trust_ca=True, policy='verifiers = ["pkix"]\n')
        )
        bad_tls = yield defer.Deferred.fromCoroutine(self.broken(world, "bad-tls", 0))
        stream_error = yield defer.Deferred.fromCoroutine(self.broken(world, "stream-error", 1))
        wrong_name = yield defer.Deferred.fromCoroutine(
            self.broken(world, "tls", 2, identity="wrong.test")
        )
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test", srv=False, trust_ca=True))
        world.dns.add_srv("_xmpp-server._tcp.b.test", "t3.b.test", b.s2s_port, 3)
        world.dns.add_a("t3.b.test", "127.0.0.1")
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        bob = yield defer.Deferred.fromCoroutine(world.component(b, "b.test"))

        alice.message("alice@a.test", "bob@b.test", "after three failures", "f1")
        received = yield defer.Deferred.fromCoroutine(bob.next(timeout=30))
        self.assertEqual((received["id"], str(received.body)), ("f1", "after three failures"))
        tried = [bad_tls.connections, stream_error.connections, wrong_name.connections]
        self.assertEqual([len(c) for c in tried], [1, 1, 1])
        self.assertEqual([c[0] for c in tried], sorted(c[0] for c in tried))
        records = yield a.records.for_peer("b.test")
        outbound = sorted(
            ((r.authenticated, r.reason or "") for r in records if r.direction == "outbound"),
        )
        self.assertEqual([authenticated for authenticated, _ in outbound], [False, True])
        self.assertIn("wrong.test", outbound[0][1])
        self.assertEqual(a.router.bounced, 0)

    @defer.inlineCallbacks
    def test_all_spent(self):
        """
        When every target fails, the queue is bounced once all are spent,
        with the condition of the attempt that got furthest: here the one
        that dropped the connection while our dialback key waited for its
        answer (XEP-0220: remote-server-timeout), although it was tried
        first; the text lists every attempt.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(
            world.gateway("a.test", trust_ca=True, policy='verifiers = ["pkix"]\n')
        )
        dropping = yield defer.Deferred.fromCoroutine(
            self.broken(world, "tls", 0, identity="b.test", close_after_key=True)
        )
        stream_error = yield defer.Deferred.fromCoroutine(self.broken(world, "stream-error", 1))
        bad_tls = yield defer.Deferred.fromCoroutine(self.broken(world, "bad-tls", 2))
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))

        alice.message("alice@a.test", "bob@b.test", "nowhere", "n1")
        alice.message("alice@a.test", "bob@b.test", "nowhere either", "n2")
        bounces = []
        for _ in range(2):
            bounces.append((yield defer.Deferred.fromCoroutine(alice.next(timeout=30))))
        self.assertEqual(
            [(b["id"], error_condition(b)) for b in bounces],
            [("n1", "remote-server-timeout"), ("n2", "remote-server-timeout")],
        )
        text = str(bounces[0].error.text)
        for host in ("t0.b.test", "t1.b.test", "t2.b.test"):
            self.assertIn(host, text)
        self.assertIn("stream error internal-server-error", text)
        self.assertEqual(
            [len(f.connections) for f in (dropping, stream_error, bad_tls)], [1, 1, 1]
        )

    @defer.inlineCallbacks
    def test_silent_target_then_a_good_one(self):
        """
        A target that accepts the connection and then says nothing costs the
        connect timeout (5 s here), not the whole route: the next target is
        tried and the message arrives.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test"))
        silent = yield defer.Deferred.fromCoroutine(self.broken(world, "silent", 0))
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test", srv=False))
        world.dns.add_srv("_xmpp-server._tcp.b.test", "t1.b.test", b.s2s_port, 1)
        world.dns.add_a("t1.b.test", "127.0.0.1")
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        bob = yield defer.Deferred.fromCoroutine(world.component(b, "b.test"))
        started = reactor.seconds()
        alice.message("alice@a.test", "bob@b.test", "past the silent one", "s1")
        received = yield defer.Deferred.fromCoroutine(bob.next(timeout=20))
        self.assertEqual(received["id"], "s1")
        self.assertEqual(len(silent.connections), 1)
        self.assertLess(reactor.seconds() - started, 10)


def peer_header(sender, receiving):
    """
    The stream header a peer for C{sender} opens with, to C{receiving}.
    """
    return (
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
        b"xmlns:stream='http://etherx.jabber.org/streams' "
        b"xmlns:db='jabber:server:dialback' "
        + f"from='{sender}' to='{receiving}' version='1.0'>".encode()
    )


def authenticated_attacker(port, sender, receiving, timeout=30.0):
    """
    A blocking peer (L{tests.test_hostile.HostilePeer}; run it in a thread)
    that opens a stream to the gateway at C{port}, STARTTLS, and gets its
    C{sender} domain verified by dialback for C{receiving}: the gateway's
    callback must reach a server answering for C{sender} (a hoarding
    L{BrokenPeer}).
    """
    from tests.test_hostile import HostilePeer
    from tests.test_tls import client_context

    header = peer_header(sender, receiving)
    peer = HostilePeer(port, timeout=timeout)
    try:
        peer.send(header)
        assert peer.read_until(b"</stream:features>"), peer.received
        peer.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        assert peer.read_until(b"<proceed"), peer.received
        peer.sock = client_context().wrap_socket(peer.sock)
        peer.received = b""
        peer.send(header.split(b"?>", 1)[1])
        assert peer.read_until(b"</stream:features>"), peer.received
        peer.send(f"<db:result from='{sender}' to='{receiving}'>key</db:result>".encode())
        assert peer.read_until(b"type='valid'"), peer.received
    except BaseException:
        peer.close()
        raise
    return peer


#: An IQ of ~400 KB: 99,000 small children, under the element limit.
_PAYLOAD = b"<a/>" * 99_000


def big_iq(number, sender, recipient):
    return (
        f"<iq type='set' id='big{number}' from='{sender}' to='{recipient}'>".encode()
        + _PAYLOAD + b"</iq>"
    )


class HoardingPeerTests(unittest.TestCase):
    """
    Issue: a peer that authenticates, enables stream management, then never
    acknowledges and stops reading made the gateway hold every stanza sent
    to it, as trees, without limit.  Now what it holds is bounded in bytes,
    and the rest is bounced at once.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_bounded_while_a_peer_hoards(self):
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway(
            "a.test", s2s_extra="max_unacked_bytes = 1048576\nmax_stalled_bytes = 1048576\n",
        ))
        helper = FailoverTests()
        helper.addCleanup = self.addCleanup
        peer = yield defer.Deferred.fromCoroutine(
            helper.broken(world, "hoarding", 0, identity="b.test")
        )
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        size = 100_000
        count = 40  # 4 MB in all
        for n in range(count):
            alice.message("alice@a.test", "bob@b.test", "x" * size, f"h{n}")
        bounces = []
        while len(bounces) < count - 12:
            bounce = yield defer.Deferred.fromCoroutine(alice.next(timeout=30))
            self.assertEqual(error_condition(bounce), "resource-constraint", bounce.toXml()[-300:])
            self.assertIn("b.test has not acknowledged", str(bounce.error.text))
            # The bounce does not echo the 100 KB body.
            self.assertLess(len(bounce.toXml()), 2000)
            bounces.append(bounce["id"])
        stream = a.federation.outbound_stream("a.test", "b.test")
        # Held for the peer: at most the limit and one stanza more.
        self.assertLessEqual(stream.unacked_bytes, 1_048_576 + size + 200)
        self.assertLessEqual(stream.bytes_out, 1_048_576 + size + 200)
        self.assertEqual(len(peer.connections), 1)

    @defer.inlineCallbacks
    def test_bounce_flood_to_a_hoarding_peer(self):
        """
        The reproduction from the security review: b.test authenticates
        (dialback, its own server answering), then sends IQs of ~400 KB, each
        of 99,000 small children, to a local domain with no component; every
        bounce goes back over the gateway's stream to b.test, which enabled
        stream management and stopped reading.  Five such IQs held 190 MB;
        now the gateway's memory grows by a few MB at most, and what it holds
        for b.test stays small (each bounce is answered from the start tag).
        Measured here: 210 MiB of growth before the fix, 2.3 MiB after.
        """
        def rss_kib():
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test"))  # no component
        helper = FailoverTests()
        helper.addCleanup = self.addCleanup
        peer = yield defer.Deferred.fromCoroutine(
            helper.broken(world, "hoarding", 0, identity="b.test")
        )
        def attack():
            attacker = authenticated_attacker(a.s2s_port, "b.test", "a.test", timeout=20)
            try:
                for n in range(5):
                    attacker.send(big_iq(n, "x@b.test", "a.test"))
                return attacker.still_open(1.0)
            finally:
                attacker.close()

        before = rss_kib()
        still_open = yield threads.deferToThread(attack)
        self.assertTrue(still_open)
        yield wait_for(lambda: a.router.bounced >= 5, timeout=20)
        grown_mib = (rss_kib() - before) / 1024
        self.assertLess(grown_mib, 40, f"RSS grew by {grown_mib:.1f} MiB")
        (stream,) = [s for s in a.federation.streams if s.direction == "outbound"]
        self.assertLess(stream.bytes_out, 20_000)
        self.assertGreaterEqual(len(peer.connections), 1)



class FloodingPeerTests(unittest.TestCase):
    """
    A peer that authenticates and then sends as fast as it can is read at
    s2s.read_rate (a token bucket per stream), so that it gets its share of
    the reactor and no more; other peers' messages go on meanwhile.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_read_at_the_rate(self):
        rate = 256 * 1024
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway(
            "a.test",
            s2s_extra=f"read_rate = {rate}\n",
            extra='[domains."empty.test"]\ncomponent_secret = "empty-secret"\n',
        ))
        c = yield defer.Deferred.fromCoroutine(world.gateway("c.test"))
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        carol = yield defer.Deferred.fromCoroutine(world.component(c, "c.test"))
        helper = FailoverTests()
        helper.addCleanup = self.addCleanup
        yield defer.Deferred.fromCoroutine(helper.broken(world, "hoarding", 0, identity="b.test"))
        stop = threading.Event()

        def flood():
            attacker = authenticated_attacker(a.s2s_port, "b.test", "empty.test", timeout=20)
            try:
                sent = 0
                while not stop.is_set():
                    attacker.send(big_iq(sent, "x@b.test", "empty.test"))
                    sent += 1
                return sent
            finally:
                attacker.close()

        flooding = threads.deferToThread(flood)
        yield wait_for(lambda: any(
            s.direction == "inbound" and s.verified and "b.test" in s.peer_name()
            for s in a.federation.streams
        ), timeout=20)
        (stream,) = [s for s in a.federation.streams
                     if s.direction == "inbound" and "b.test" in s.peer_name()]
        # Messages between legitimate peers go on while it floods.
        for n in range(10):
            alice.message("alice@a.test", "carol@c.test", f"during {n}", f"d{n}")
            received = yield defer.Deferred.fromCoroutine(carol.next(timeout=20))
            self.assertEqual(received["id"], f"d{n}")
        yield task.deferLater(reactor, 2.0, lambda: None)
        limiter = stream.read_rate
        elapsed = a.federation.clock.seconds() - limiter.started
        read = limiter.read
        stop.set()
        sent = yield flooding
        self.assertGreater(limiter.pauses, 0)
        # Never more than the burst, the rate for the time, and the read
        # that went past it (one socket read, 64 KiB, and a TLS record left
        # over from the read before).
        self.assertLessEqual(read, limiter.burst + rate * elapsed + 65536 + 16384)
        # The peer could send much more than it was allowed.
        self.assertGreater(sent * len(big_iq(0, "x@b.test", "empty.test")), limiter.read)


class PlaintextStateTests(unittest.TestCase):
    """
    RFC 6120 section 5.4.3.3: nothing negotiated before TLS survives it.
    A peer that policy lets authenticate in plaintext, and then starts TLS,
    must authenticate again: the pair it verified before counts no more.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_pair_verified_before_tls_is_forgotten(self):
        from tests.test_hostile import HostilePeer, Transcript
        from tests.test_tls import client_context

        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway(
            "a.test", extra='[policy.domains."b.test"]\nrequire_tls = false\n',
        ))
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        helper = FailoverTests()
        helper.addCleanup = self.addCleanup
        yield defer.Deferred.fromCoroutine(helper.broken(world, "hoarding", 0, identity="b.test"))
        header = peer_header("b.test", "a.test")
        message = b"<message from='x@b.test' to='alice@a.test'><body>hi</body></message>"

        def session():
            peer = HostilePeer(a.s2s_port, timeout=20)
            try:
                peer.send(header)
                assert peer.read_until(b"</stream:features>"), peer.received
                peer.send(b"<db:result from='b.test' to='a.test'>key</db:result>")
                assert peer.read_until(b"type='valid'"), peer.received
                peer.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                assert peer.read_until(b"<proceed"), peer.received
                peer.sock = client_context().wrap_socket(peer.sock)
                peer.received = b""
                peer.send(header.split(b"?>", 1)[1])
                assert peer.read_until(b"</stream:features>"), peer.received
                peer.send(message)
                assert peer.read_until_closed(10) is not None, peer.received
                return Transcript(peer.received).stream_error()
            finally:
                peer.close()

        condition, text = yield threads.deferToThread(session)
        self.assertEqual((condition, text), ("not-authorized", "stanzas before authentication"))
        self.assertEqual(len(alice.received.pending), 0)
