"""
End-to-end cases at the edges of federation, over real loopback sockets:
direct TLS, peers without TLS in both directions, queue limits and
timeouts.
"""

import os
import socket

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.trial import unittest

from gateway.xmpp.parser import StreamParser
from tests.support import World, error_condition, wait_for


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RecordingPeer(protocol.Protocol):
    """
    A raw XMPP server side that never offers TLS: it answers STARTTLS
    with <failure/>, and (playing a lax server) accepts any dialback key.
    It records every element it receives.
    """

    def connectionMade(self):
        self.factory.peers.append(self)
        self.elements = []
        self.headers = []
        self.parser = StreamParser(self.header, self.element, lambda: None, 100000)

    def dataReceived(self, data):
        self.parser.feed(data)

    def header(self, root):
        self.headers.append(root)
        self.transport.write(
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
            b"xmlns:stream='http://etherx.jabber.org/streams' "
            b"xmlns:db='jabber:server:dialback' id='plain1' version='1.0' "
            b"from='plain.test'><stream:features/>"
        )

    def element(self, element):
        self.elements.append(element)
        if element.name == "starttls":
            self.transport.write(
                b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>"
            )
            self.transport.loseConnection()
        elif element.name == "result":
            self.transport.write(
                b"<db:result from='plain.test' to='a.test' type='valid'/>"
            )


class SilentPeer(protocol.Protocol):
    """
    Accepts TCP connections and says nothing.
    """

    def connectionMade(self):
        self.factory.peers.append(self)


def peer_factory(kind):
    factory = protocol.Factory.forProtocol(kind)
    factory.peers = []
    factory.noisy = False
    return factory


class EdgeTests(unittest.TestCase):
    timeout = 60

    async def listen(self, world, domain, kind):
        factory = peer_factory(kind)
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        self.addCleanup(
            lambda: [p.transport.abortConnection() for p in factory.peers if p.transport.connected]
        )
        world.dns.add_srv(f"_xmpp-server._tcp.{domain}", f"xmpp.{domain}", port.getHost().port)
        world.dns.add_a(f"xmpp.{domain}", "127.0.0.1")
        return factory

    @defer.inlineCallbacks
    def test_direct_tls_preferred(self):
        """
        When a domain publishes _xmpps-server (XEP-0368), the gateway
        connects with direct TLS, even if _xmpp-server points elsewhere.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test"))
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test", srv=False, direct_tls=True))
        world.dns.add_srv("_xmpp-server._tcp.b.test", "xmpp.b.test", free_port())
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        bob = yield defer.Deferred.fromCoroutine(world.component(b, "b.test"))
        alice.message("alice@a.test", "bob@b.test", "over direct TLS")
        received = yield defer.Deferred.fromCoroutine(bob.next())
        self.assertEqual(str(received.body), "over direct TLS")
        stream = a.federation.outbound_stream("a.test", "b.test")
        self.assertTrue(stream.direct_tls)
        self.assertIsNotNone(stream.tls)
        inbound = [s for s in b.federation.streams if s.direction == "inbound" and s.verified]
        self.assertTrue(inbound[0].direct_tls)
        # The SNI the gateway sent picked b.test's certificate.
        self.assertEqual(inbound[0].tls.server_name, "b.test")
        # XEP-0368: ALPN xmpp-server, offered by a and selected by b (what a
        # TLS multiplexer in front of b would route on).
        self.assertEqual((stream.tls.alpn, inbound[0].tls.alpn), ("xmpp-server", "xmpp-server"))

    @defer.inlineCallbacks
    def test_alpn_seen_by_a_plain_tls_server(self):
        """
        A TLS server that is not XMPP at all, as a multiplexer is, sees the
        ALPN protocol xmpp-server offered on the gateway's direct TLS
        connection (with b.test as SNI).
        """
        import ssl as stdlib_ssl
        import threading

        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test"))
        certificate_file, key_file = world.ca.write_identity(
            os.path.join(world.folder, "mux"), "b.test"
        )
        context = stdlib_ssl.SSLContext(stdlib_ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate_file, key_file)
        context.set_alpn_protocols(["h2", "xmpp-server"])
        seen = {}
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        self.addCleanup(server.close)

        def accept():
            connection, _ = server.accept()
            server_names = []
            context.sni_callback = lambda s, name, c: server_names.append(name)
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    seen["alpn"] = tls.selected_alpn_protocol()
                    seen["sni"] = server_names
            except OSError as e:
                seen["error"] = repr(e)

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        world.dns.add_srv("_xmpps-server._tcp.b.test", "mux.b.test", server.getsockname()[1])
        world.dns.add_a("mux.b.test", "127.0.0.1")
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        alice.message("alice@a.test", "bob@b.test", "to the multiplexer", "x1")
        yield wait_for(lambda: not thread.is_alive(), timeout=20)
        self.assertEqual(seen, {"alpn": "xmpp-server", "sni": ["b.test"]})

    @defer.inlineCallbacks
    def test_plaintext_peer_refused_outbound(self):
        """
        A peer that refuses STARTTLS gets no dialback key and no stanza: the
        stanzas are bounced with remote-server-not-found.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test"))
        peers = yield defer.Deferred.fromCoroutine(self.listen(world, "plain.test", RecordingPeer))
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        alice.message("alice@a.test", "p@plain.test", "secret words", "p1")
        bounce = yield defer.Deferred.fromCoroutine(alice.next())
        self.assertEqual(bounce["id"], "p1")
        self.assertEqual(error_condition(bounce), "remote-server-not-found")
        (peer,) = peers.peers
        self.assertEqual([e.name for e in peer.elements], ["starttls"])

    @defer.inlineCallbacks
    def test_plaintext_fallback_when_policy_allows(self):
        """
        With require_tls = false for a domain, the gateway still tries
        STARTTLS first, and falls back to plaintext when it is refused.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(
            world.gateway("a.test", extra='[policy.domains."plain.test"]\nrequire_tls = false\n')
        )
        peers = yield defer.Deferred.fromCoroutine(self.listen(world, "plain.test", RecordingPeer))
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        alice.message("alice@a.test", "p@plain.test", "legacy", "p2")
        yield wait_for(lambda: len(peers.peers) == 2 and any(
            e.name == "message" for e in peers.peers[1].elements))
        first, second = peers.peers
        self.assertEqual([e.name for e in first.elements], ["starttls"])
        self.assertEqual([e.name for e in second.elements], ["result", "message"])
        self.assertEqual(str(second.elements[1].body), "legacy")

    @defer.inlineCallbacks
    def test_plaintext_peer_refused_inbound(self):
        """
        A peer that sends dialback without STARTTLS gets policy-violation.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test"))
        received = []
        client = protocol.Protocol()
        client.dataReceived = received.append
        lost = defer.Deferred()
        client.connectionLost = lambda reason: lost.callback(None)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", a.s2s_port)
        yield endpoint.connect(protocol.Factory.forProtocol(lambda: client))
        client.transport.write(
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
            b"xmlns:stream='http://etherx.jabber.org/streams' "
            b"xmlns:db='jabber:server:dialback' from='plain.test' to='a.test' version='1.0'>"
        )
        yield wait_for(lambda: b"</stream:features>" in b"".join(received))
        client.transport.write(b"<db:result from='plain.test' to='a.test'>key</db:result>")
        yield lost
        data = b"".join(received)
        self.assertIn(b"<required/>", data)
        self.assertIn(b"<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", data)

    @defer.inlineCallbacks
    def test_queue_limit_and_timeout(self):
        """
        While a stream can't come up, stanzas beyond the queue limit bounce
        at once with resource-constraint; the queued ones bounce with
        remote-server-timeout when authentication times out.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(
            world.gateway(
                "a.test",
                s2s_extra="queue_limit = 2\n",
                extra="",
                authentication_timeout=1.0,
            )
        )
        yield defer.Deferred.fromCoroutine(self.listen(world, "silent.test", SilentPeer))
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        for n in range(4):
            alice.message("alice@a.test", "s@silent.test", "hello?", f"s{n}")
        outcomes = []
        for _ in range(4):
            bounce = yield defer.Deferred.fromCoroutine(alice.next())
            outcomes.append((bounce["id"], error_condition(bounce), bounce["type"]))
        self.assertEqual(
            outcomes,
            [
                ("s2", "resource-constraint", "error"),
                ("s3", "resource-constraint", "error"),
                ("s0", "remote-server-timeout", "error"),
                ("s1", "remote-server-timeout", "error"),
            ],
        )
        self.assertEqual(a.federation.queued("a.test", "silent.test"), 0)

    @defer.inlineCallbacks
    def test_errors_are_not_bounced(self):
        """
        An error stanza that can't be delivered is not answered with
        another error.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test"))
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        from twisted.words.xish import domish

        error = domish.Element(("jabber:component:accept", "message"))
        error["from"], error["to"], error["type"], error["id"] = (
            "alice@a.test", "x@nowhere.test", "error", "e1",
        )
        alice.send(error)
        alice.message("alice@a.test", "x@nowhere.test", "after", "e2")
        bounce = yield defer.Deferred.fromCoroutine(alice.next())
        self.assertEqual(bounce["id"], "e2")
        self.assertEqual(a.router.bounced, 1)
