"""
End-to-end federation over real loopback sockets with real TLS: two
gateways, each with a component, names from a loopback DNS server.
"""

import socket

from twisted.internet import defer
from twisted.trial import unittest
from twisted.words.xish import domish

from tests.support import World, error_condition, wait_for


class FederationTests(unittest.TestCase):
    timeout = 60

    async def federate(self):
        world = World(self)
        a = await world.gateway("a.test")
        b = await world.gateway("b.test")
        alice = await world.component(a, "a.test")
        bob = await world.component(b, "b.test")
        return world, a, b, alice, bob

    @defer.inlineCallbacks
    def test_message_both_ways(self):
        """
        A message from a component on one gateway reaches the component on
        the other over an encrypted, dialback-verified stream, and back.
        """
        world, a, b, alice, bob = yield defer.Deferred.fromCoroutine(self.federate())
        alice.message("alice@a.test/home", "bob@b.test", "hello bob", "m1")
        received = yield defer.Deferred.fromCoroutine(bob.next())
        self.assertEqual(received.name, "message")
        self.assertEqual(received["from"], "alice@a.test/home")
        self.assertEqual(received["to"], "bob@b.test")
        self.assertEqual(received["id"], "m1")
        self.assertEqual(str(received.body), "hello bob")

        bob.message("bob@b.test", "alice@a.test/home", "hello alice", "m2")
        received = yield defer.Deferred.fromCoroutine(alice.next())
        self.assertEqual(str(received.body), "hello alice")
        self.assertEqual(received["from"], "bob@b.test")

        # Each direction has its own outbound stream, over TLS, authenticated.
        outbound_a = a.federation.outbound_stream("a.test", "b.test")
        outbound_b = b.federation.outbound_stream("b.test", "a.test")
        for stream in (outbound_a, outbound_b):
            self.assertIsNotNone(stream.tls)
            self.assertIn(stream.tls.version, ("TLSv1.2", "TLSv1.3"))
        inbound_b = [s for s in b.federation.streams if s.direction == "inbound" and s.verified]
        self.assertEqual([s.verified for s in inbound_b], [{("a.test", "b.test")}])
        self.assertIsNotNone(inbound_b[0].tls)
        # The inbound side saw the certificate a.test presented.
        self.assertTrue(inbound_b[0].tls.peer_chain)

    @defer.inlineCallbacks
    def test_log_has_streams_not_secrets(self):
        """
        Federating logs one event per stream authenticated, with direction,
        peer, its address, method, TLS version and cipher as fields (and,
        at the default level, none when a stream opens), and never a secret,
        a dialback key or a stanza's content.
        """
        from twisted.logger import formatEvent, globalLogPublisher

        from gateway.s2s.dialback import dialback_key

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        world, a, b, alice, bob = yield defer.Deferred.fromCoroutine(self.federate())
        alice.message("alice@a.test", "bob@b.test", "private words")
        yield defer.Deferred.fromCoroutine(bob.next())
        authenticated = [e for e in events if e.get("method") in ("dialback", "dns")]
        self.assertEqual(
            sorted((e["direction"], e["peer"], e["local"], e["method"]) for e in authenticated),
            [("inbound", "a.test", "b.test", "dialback"), ("outbound", "b.test", "a.test", "dns")],
        )
        for event in authenticated:
            self.assertTrue(event["tls_version"].startswith("TLSv1."))
            self.assertTrue(event["cipher"])
            # The peer's address is on the line (the stream-opened line that
            # also says it is only logged at debug level).
            self.assertRegex(event["address"], r"^127\.0\.0\.1:\d+$")
        self.assertEqual(
            [e for e in events if "stream opened" in (e.get("log_format") or "")], []
        )
        text = "\n".join(formatEvent(e) + repr(e) for e in events)
        outbound = a.federation.outbound_stream("a.test", "b.test")
        secrets = [
            a.state.dialback_secret,
            b.state.dialback_secret,
            "secret-for-a.test",
            "secret-for-b.test",
            dialback_key(a.state.dialback_secret, "b.test", "a.test", outbound.stream_id),
            "private words",
        ]
        for secret in secrets:
            self.assertNotIn(secret, text)

    @defer.inlineCallbacks
    def test_iq_round_trip(self):
        """
        An IQ request crosses and its result comes back, and the outbound
        stream is reused for a second request.
        """
        world, a, b, alice, bob = yield defer.Deferred.fromCoroutine(self.federate())
        for n in range(2):
            iq = domish.Element(("jabber:component:accept", "iq"))
            iq["type"] = "get"
            iq["id"] = f"q{n}"
            iq["from"] = "alice@a.test/r"
            iq["to"] = "b.test"
            iq.addElement(("urn:xmpp:ping", "ping"))
            alice.send(iq)
            request = yield defer.Deferred.fromCoroutine(bob.next())
            self.assertEqual((request.name, request["type"], request["id"]), ("iq", "get", f"q{n}"))
            self.assertEqual(request.ping.uri, "urn:xmpp:ping")
            result = domish.Element(("jabber:component:accept", "iq"))
            result["type"] = "result"
            result["id"] = request["id"]
            result["from"] = request["to"]
            result["to"] = request["from"]
            bob.send(result)
            answer = yield defer.Deferred.fromCoroutine(alice.next())
            self.assertEqual((answer.name, answer["type"], answer["id"]), ("iq", "result", f"q{n}"))
        outbound = [s for s in a.federation.streams if s.direction == "outbound"]
        self.assertEqual(len(outbound), 1)

    @defer.inlineCallbacks
    def test_iq_semantics(self):
        """
        RFC 6120 section 8.2.3: an IQ request without an id, with no child
        or two, or an IQ without a valid type, is answered bad-request by
        the gateway, which does not send it on; a result with two children
        can't be answered with an error, and goes on.
        """
        world, a, b, alice, bob = yield defer.Deferred.fromCoroutine(self.federate())

        def iq(kind, stanza_id, children):
            element = domish.Element(("jabber:component:accept", "iq"))
            if kind is not None:
                element["type"] = kind
            if stanza_id is not None:
                element["id"] = stanza_id
            element["from"] = "alice@a.test/r"
            element["to"] = "bob@b.test/r"
            for n in range(children):
                element.addElement(("urn:example", f"child{n}"))
            return element

        for kind, stanza_id, children, problem in (
            ("get", "none", 0, "an IQ request must hold exactly one child element, not 0"),
            ("set", "two", 2, "an IQ request must hold exactly one child element, not 2"),
            ("get", None, 1, "an IQ request without an id"),
            ("fetch", "odd", 1, "an IQ's type must be get, set, result or error, not 'fetch'"),
            (None, "untyped", 1, "an IQ without a type"),
        ):
            alice.send(iq(kind, stanza_id, children))
            answer = yield defer.Deferred.fromCoroutine(alice.next())
            self.assertEqual(
                (answer.getAttribute("id"), answer["type"], error_condition(answer),
                 str(answer.error.text)),
                (stanza_id, "error", "bad-request", problem),
            )
        alice.send(iq("result", "r2", 2))
        received = yield defer.Deferred.fromCoroutine(bob.next())
        self.assertEqual((received["id"], received["type"]), ("r2", "result"))

    @defer.inlineCallbacks
    def test_international_addresses(self):
        """
        Two gateways, one serving an internationalised domain: occupant
        nicknames with emoji (ZWJ sequences too), mixed-direction and
        combining-mark resourceparts cross both ways as written, and every
        spelling of the domain (U-label, upper case, A-label) reaches the
        same component, with the address rewritten to the canonical A-label
        form.  One stream each way carries all of it.
        """
        from tests.support import TestComponent

        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test", trust_ca=True))
        b = yield defer.Deferred.fromCoroutine(
            world.gateway("xn--bcher-kva.test", trust_ca=True)
        )
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        # The component names its domain in U-label form, in upper case.
        bob = TestComponent("B\u00dcCHER.test", "secret-for-xn--bcher-kva.test")
        yield bob.connect(b.component_port)
        self.addCleanup(bob.disconnect)
        cases = [
            ("room@a.test/\U0001F468\u200d\U0001F469\u200d\U0001F467 family",
             "bob@B\u00fccher.Test/\U0001F4F1", "bob@xn--bcher-kva.test/\U0001F4F1"),
            ("room@a.test/Ali \u0639\u0644\u064a", "bob@xn--bcher-kva.test",
             "bob@xn--bcher-kva.test"),
            ("room@a.test/e\u0301\u0327 marks", "Bob@BU\u0308CHER.test.",
             "Bob@xn--bcher-kva.test"),
        ]
        for n, (sender, recipient, arrives_as) in enumerate(cases):
            alice.message(sender, recipient, f"to bob {n}", f"a{n}")
            received = yield defer.Deferred.fromCoroutine(bob.next())
            self.assertEqual(
                (received["from"], received["to"], str(received.body)),
                (sender, arrives_as, f"to bob {n}"),
            )
            # bob answers from the U-label spelling of its domain.
            reply_from = arrives_as.replace("xn--bcher-kva.test", "b\u00fccher.test")
            bob.message(reply_from, sender, f"to alice {n}", f"b{n}")
            received = yield defer.Deferred.fromCoroutine(alice.next())
            self.assertEqual(
                (received["from"], received["to"], str(received.body)),
                (arrives_as, sender, f"to alice {n}"),
            )
        for service, pair in ((a, ("xn--bcher-kva.test", "a.test")),
                              (b, ("a.test", "xn--bcher-kva.test"))):
            inbound = [s for s in service.federation.streams if s.direction == "inbound"]
            self.assertEqual([s.verified for s in inbound], [{pair}])
            records = yield service.records.for_peer(pair[0])
            self.assertEqual(
                sorted((r.direction, r.local_domain) for r in records if r.authenticated),
                [("inbound", pair[1]), ("outbound", pair[1])],
            )
        self.assertEqual((a.router.bounced, b.router.bounced), (0, 0))

    @defer.inlineCallbacks
    def test_records_retention(self):
        """
        [records] max_records and max_age_days bound what the gateway keeps:
        pruning (at start and hourly) forgets all but the newest records,
        and those older than the limit.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(
            world.gateway("a.test", extra="[records]\nmax_records = 1\nmax_age_days = 1\n")
        )
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test"))
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        bob = yield defer.Deferred.fromCoroutine(world.component(b, "b.test"))
        alice.message("alice@a.test", "bob@b.test", "there", "r1")
        yield defer.Deferred.fromCoroutine(bob.next())
        bob.message("bob@b.test", "alice@a.test", "and back", "r2")
        yield defer.Deferred.fromCoroutine(alice.next())
        self.assertEqual(len((yield a.records.recent(limit=None))), 2)
        self.assertIsNotNone(a._pruner)
        a._prune_records()
        # The store's one thread does the pruning before this read.
        kept = yield a.records.recent(limit=None)
        self.assertEqual(len(kept), 1)
        forgotten = yield a.records.prune(before=kept[0].time + 1)
        self.assertEqual(forgotten, 1)

    @defer.inlineCallbacks
    def test_certificate_stuffed_with_names(self):
        """
        Gateways whose certificates carry 3,000 names each (77 KB: handshake
        flights over 32 KiB, as server and as client) federate both ways,
        and each records the other in a few KiB: the record keeps the first
        names and says how many it left out.
        """
        import json

        from gateway.records.record import MAX_BYTES, MAX_ITEMS

        world = World(self)
        gateways = []
        for domain in ("a.test", "b.test"):
            names = [f"name{n}.{domain}.example" for n in range(3000)]
            gateways.append((yield defer.Deferred.fromCoroutine(
                world.gateway(domain, certificate_options={"other_names": names})
            )))
        a, b = gateways
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        bob = yield defer.Deferred.fromCoroutine(world.component(b, "b.test"))
        bob.message("bob@b.test", "alice@a.test", "many names", "n1")
        received = yield defer.Deferred.fromCoroutine(alice.next(timeout=20))
        self.assertEqual(received["id"], "n1")
        alice.message("alice@a.test", "bob@b.test", "and back", "n2")
        received = yield defer.Deferred.fromCoroutine(bob.next(timeout=20))
        self.assertEqual(received["id"], "n2")
        for gateway, peer in ((a, "b.test"), (b, "a.test")):
            records = yield gateway.records.for_peer(peer, limit=None)
            self.assertTrue(records)
            for record in records:
                sans = record.certificate["sans"]
                self.assertEqual(len(sans), MAX_ITEMS)
                self.assertEqual(sans[0], ["DNS", peer])
                self.assertEqual(sans[-1], "(2970 more left out)")
                self.assertLessEqual(
                    len(json.dumps([record.evidence, record.certificate, record.verdicts])),
                    MAX_BYTES,
                )

    @defer.inlineCallbacks
    def test_many_messages_in_order(self):
        """
        Stanzas queued while the stream is set up, and sent after, all
        arrive, in order.
        """
        world, a, b, alice, bob = yield defer.Deferred.fromCoroutine(self.federate())
        for n in range(50):
            alice.message("alice@a.test", "bob@b.test", f"n{n}")
        bodies = []
        for n in range(50):
            received = yield defer.Deferred.fromCoroutine(bob.next())
            bodies.append(str(received.body))
        self.assertEqual(bodies, [f"n{n}" for n in range(50)])

    @defer.inlineCallbacks
    def test_sockets_send_at_once(self):
        """
        Every socket the gateway carries XMPP on has Nagle's algorithm off
        (C{TCP_NODELAY}), s2s streams through their TLS: no small write of
        a handshake waits for the peer's delayed acknowledgement.
        """
        import socket

        world, a, b, alice, bob = yield defer.Deferred.fromCoroutine(self.federate())
        alice.message("alice@a.test", "bob@b.test", "first")
        yield defer.Deferred.fromCoroutine(bob.next())
        outbound = a.federation.outbound_stream("a.test", "b.test")
        (inbound,) = [s for s in b.federation.streams if s.direction == "inbound" and s.verified]
        self.assertIsNotNone(outbound.tls)
        self.assertIsNotNone(inbound.tls)
        # The TCP transports' sockets (their handle is OpenSSL's once TLS
        # has started).
        sockets = [outbound.transport.socket, inbound.transport.socket]
        sockets += [stream.transport.socket for stream in a.components.streams]
        sockets += [stream.transport.socket for stream in b.components.streams]
        self.assertEqual(len(sockets), 4)
        for sock in sockets:
            self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1, sock)

    @defer.inlineCallbacks
    def test_quiet_streams_park_their_parsers(self):
        """
        After a second without traffic, both ends of a stream put their XML
        parsers away; the next stanzas bring them back and arrive intact.
        """
        world, a, b, alice, bob = yield defer.Deferred.fromCoroutine(self.federate())
        alice.message("alice@a.test", "bob@b.test", "first")
        yield defer.Deferred.fromCoroutine(bob.next())
        outbound = a.federation.outbound_stream("a.test", "b.test")
        (inbound,) = [s for s in b.federation.streams if s.direction == "inbound" and s.verified]
        yield wait_for(lambda: inbound._parser.parked and outbound._parser.parked, timeout=5)
        for n in range(3):
            alice.message("alice@a.test", "bob@b.test", f"again {n}")
        bodies = []
        for n in range(3):
            received = yield defer.Deferred.fromCoroutine(bob.next())
            bodies.append((received.uri, str(received.body)))
        self.assertEqual(bodies, [("jabber:component:accept", f"again {n}") for n in range(3)])
        self.assertFalse(inbound._parser.parked)
        self.assertIs(b.federation.streams and inbound in b.federation.streams, True)

    @defer.inlineCallbacks
    def test_dead_port_bounces(self):
        """
        Stanzas for a domain whose server can't be reached are bounced to
        their sender with remote-server-not-found.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test"))
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
        dead.close()
        world.dns.add_srv("_xmpp-server._tcp.dead.test", "xmpp.dead.test", dead_port)
        world.dns.add_a("xmpp.dead.test", "127.0.0.1")
        alice.message("alice@a.test", "someone@dead.test", "one", "d1")
        alice.message("alice@a.test", "someone@dead.test", "two", "d2")
        for expected in ("d1", "d2"):
            bounce = yield defer.Deferred.fromCoroutine(alice.next())
            self.assertEqual(bounce["type"], "error")
            self.assertEqual(bounce["id"], expected)
            self.assertEqual(bounce["from"], "someone@dead.test")
            self.assertEqual(bounce["to"], "alice@a.test")
            self.assertEqual(error_condition(bounce), "remote-server-not-found")

    @defer.inlineCallbacks
    def test_unknown_domain_bounces(self):
        """
        A domain with no DNS at all is remote-server-not-found too.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test"))
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        alice.message("alice@a.test", "x@nowhere.test", "hi", "n1")
        bounce = yield defer.Deferred.fromCoroutine(alice.next())
        self.assertEqual(error_condition(bounce), "remote-server-not-found")

    @defer.inlineCallbacks
    def test_component_stream_language(self):
        """
        The header of a component's stream says xml:lang='en' (RFC 6120
        section 4.7.4): stanzas from peers whose streams are in English go
        on as they are, and those from a stream in another language say it
        on each stanza.
        """
        from twisted.internet import threads

        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test"))

        def header():
            with socket.create_connection(("127.0.0.1", a.component_port), timeout=5) as sock:
                sock.sendall(
                    b"<stream:stream xmlns='jabber:component:accept' "
                    b"xmlns:stream='http://etherx.jabber.org/streams' to='a.test'>"
                )
                received = b""
                while b">" not in received.split(b"<stream:stream", 1)[-1]:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    received += chunk
                return received

        received = yield threads.deferToThread(header)
        self.assertIn(b"xml:lang='en'", received)
        self.assertIn(b"from='a.test'", received)

    @defer.inlineCallbacks
    def test_wrong_component_secret(self):
        """
        A component with the wrong secret gets not-authorized.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test"))
        from tests.support import TestComponent

        intruder = TestComponent("a.test", "wrong secret")
        self.addCleanup(intruder.disconnect)
        with self.assertRaises(Exception) as caught:
            yield intruder.connect(a.component_port)
        self.assertEqual(caught.exception.condition, "not-authorized")
        self.assertNotIn("a.test", a.router.components)

    @defer.inlineCallbacks
    def test_component_for_unknown_domain(self):
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test"))
        from tests.support import TestComponent

        stranger = TestComponent("other.test", "secret-for-a.test")
        self.addCleanup(stranger.disconnect)
        with self.assertRaises(Exception) as caught:
            yield stranger.connect(a.component_port)
        self.assertEqual(caught.exception.condition, "host-unknown")

    @defer.inlineCallbacks
    def test_disconnected_component_bounces(self):
        """
        A stanza from the federation for a local domain whose component is
        not attached comes back to its sender as service-unavailable.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test"))
        yield defer.Deferred.fromCoroutine(world.gateway("b.test"))
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        alice.message("alice@a.test", "bob@b.test", "anyone there?", "u1")
        bounce = yield defer.Deferred.fromCoroutine(alice.next())
        self.assertEqual(bounce["id"], "u1")
        self.assertEqual(error_condition(bounce), "service-unavailable")
