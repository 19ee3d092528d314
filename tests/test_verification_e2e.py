"""
The verifier chain end to end, on loopback with real TLS: SASL EXTERNAL
both ways, dialback when EXTERNAL can't be used, policies that refuse or
(better than nothing) accept an unverified peer, and the authentication
records kept in SQLite.
"""

import os

from twisted.internet import defer
from twisted.trial import unittest

from tests.support import World, error_condition, wait_for


def records_of(service, peer):
    return defer.Deferred.fromCoroutine(_records(service, peer))


async def _records(service, peer):
    return await service.records.for_peer(peer)


class VerificationTests(unittest.TestCase):
    timeout = 60

    async def exchange(self, a, b, world):
        alice = await world.component(a, "a.test")
        bob = await world.component(b, "b.test")
        alice.message("alice@a.test", "bob@b.test", "to bob", "ab")
        received = await bob.next()
        assert str(received.body) == "to bob"
        bob.message("bob@b.test", "alice@a.test", "to alice", "ba")
        received = await alice.next()
        assert str(received.body) == "to alice"
        return alice, bob

    @defer.inlineCallbacks
    def test_sasl_external_both_ways(self):
        """
        With certificates from a CA both trust, each side verifies the other
        by PKIX and authenticates with SASL EXTERNAL; dialback is not used.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test", trust_ca=True))
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test", trust_ca=True))
        yield defer.Deferred.fromCoroutine(self.exchange(a, b, world))
        for service, peer in ((a, "b.test"), (b, "a.test")):
            records = yield records_of(service, peer)
            by_direction = {r.direction: r for r in records}
            self.assertEqual(sorted(by_direction), ["inbound", "outbound"])
            for record in records:
                self.assertTrue(record.authenticated)
                self.assertEqual(record.method, "pkix")
                self.assertEqual(record.evidence["authenticated_by"], "SASL EXTERNAL")
                self.assertEqual(record.evidence["identity"], "DNS-ID")
                self.assertEqual(record.evidence["matched"], peer)
                self.assertIn(record.tls_version, ("TLSv1.2", "TLSv1.3"))
                self.assertTrue(record.cipher)
                self.assertEqual(record.certificate["sans"], [["DNS", peer]])
                self.assertEqual(record.verdicts[0]["verifier"], "pkix")
                self.assertEqual(record.verdicts[0]["outcome"], "verified")
        # No dialback verification connections were needed: one stream each way.
        inbound = [s for s in b.federation.streams if s.direction == "inbound"]
        self.assertEqual(len(inbound), 1)
        self.assertEqual(inbound[0].verified, {("a.test", "b.test")})

    @defer.inlineCallbacks
    def test_dialback_when_external_not_offered(self):
        """
        When the receiving side can't verify the certificate, it doesn't
        offer EXTERNAL, and the initiating side authenticates by dialback;
        the record says dialback, with the PKIX failure before it.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test", trust_ca=True))
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test"))  # system store only
        yield defer.Deferred.fromCoroutine(self.exchange(a, b, world))
        (inbound,) = [r for r in (yield records_of(b, "a.test")) if r.direction == "inbound"]
        self.assertEqual(inbound.method, "dialback")
        self.assertEqual(inbound.evidence["authenticated_by"], "dialback")
        self.assertEqual(
            [(v["verifier"], v["outcome"]) for v in inbound.verdicts],
            [("pkix", "failed"), ("dialback", "verified")],
        )
        self.assertIn("trusted CA", inbound.verdicts[0]["reason"])
        # a.test verified b.test by PKIX on its outbound stream, then used dialback.
        (outbound,) = [r for r in (yield records_of(a, "b.test")) if r.direction == "outbound"]
        self.assertEqual(outbound.method, "pkix")
        self.assertEqual(outbound.evidence["authenticated_by"], "dialback")

    @defer.inlineCallbacks
    def test_pkix_required_refuses_self_signed(self):
        """
        A policy that requires PKIX refuses a peer with a self-signed
        certificate in both directions: its stanzas are refused and ours to
        it are bounced; the refusals are recorded with the reason.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(
            world.gateway("a.test", trust_ca=True, policy='verifiers = ["pkix"]\n')
        )
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test", certificate=False))
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        bob = yield defer.Deferred.fromCoroutine(world.component(b, "b.test"))
        alice.message("alice@a.test", "bob@b.test", "no", "a1")
        bounce = yield defer.Deferred.fromCoroutine(alice.next())
        self.assertEqual((bounce["id"], error_condition(bounce)), ("a1", "remote-server-not-found"))
        # a answers b's key "invalid": XEP-0220 makes b bounce with
        # internal-server-error.
        bob.message("bob@b.test", "alice@a.test", "no", "b1")
        bounce = yield defer.Deferred.fromCoroutine(bob.next())
        self.assertEqual((bounce["id"], error_condition(bounce)), ("b1", "internal-server-error"))
        records = yield records_of(a, "b.test")
        self.assertEqual(sorted(r.direction for r in records), ["inbound", "outbound"])
        for record in records:
            self.assertFalse(record.authenticated)
            self.assertEqual(record.method, "refused")
            self.assertIn("self-signed", record.reason)
            self.assertEqual([v["verifier"] for v in record.verdicts], ["pkix"])
            self.assertTrue(record.certificate["sha256"])

    @defer.inlineCallbacks
    def test_outbound_dialback_is_recorded_as_dns(self):
        """
        RFC 7590 section 3.6: on a stream a opens to a peer with a
        self-signed certificate, dialback proves a's identity, but nothing
        about the peer: the record says method dns, and the status view
        flags the stream as not verified.  With require_certificate_outbound
        the same peer is refused, and what waited bounces.
        """
        from gateway.ops.admin import stream_flags

        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test", trust_ca=True))
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test", certificate=False))
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        bob = yield defer.Deferred.fromCoroutine(world.component(b, "b.test"))
        alice.message("alice@a.test", "bob@b.test", "hello", "d1")
        yield defer.Deferred.fromCoroutine(bob.next())
        records = yield records_of(a, "b.test")
        (outbound,) = [r for r in records if r.direction == "outbound"]
        self.assertEqual(
            (outbound.authenticated, outbound.method, outbound.evidence["authenticated_by"]),
            (True, "dns", "dialback"),
        )
        (stream,) = [s for s in a.status.streams() if s["direction"] == "outbound"]
        self.assertEqual(stream["method"], "dns")
        self.assertIn(("warn", "PEER NOT VERIFIED (DNS ONLY)"), stream_flags(stream))

        strict = yield defer.Deferred.fromCoroutine(
            world.gateway("c.test", trust_ca=True, policy="require_certificate_outbound = true\n")
        )
        carol = yield defer.Deferred.fromCoroutine(world.component(strict, "c.test"))
        carol.message("carol@c.test", "bob@b.test", "not to a stranger", "c1")
        bounce = yield defer.Deferred.fromCoroutine(carol.next())
        self.assertEqual((bounce["id"], error_condition(bounce)), ("c1", "remote-server-not-found"))
        (refused,) = yield records_of(strict, "b.test")
        self.assertFalse(refused.authenticated)
        self.assertIn("require_certificate_outbound", refused.reason)

    @defer.inlineCallbacks
    def test_better_than_nothing(self):
        """
        With allow_unauthenticated, the same self-signed peer is accepted
        over TLS and recorded as method none, with the failed PKIX verdict.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(
            world.gateway(
                "a.test",
                trust_ca=True,
                policy='verifiers = ["pkix"]\nallow_unauthenticated = true\n',
            )
        )
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test", certificate=False))
        yield defer.Deferred.fromCoroutine(self.exchange(a, b, world))
        records = yield records_of(a, "b.test")
        self.assertEqual(sorted(r.direction for r in records), ["inbound", "outbound"])
        for record in records:
            self.assertTrue(record.authenticated)
            self.assertEqual(record.method, "none")
            self.assertEqual([(v["verifier"], v["outcome"]) for v in record.verdicts],
                             [("pkix", "failed")])
            self.assertTrue(record.tls_version)

    @defer.inlineCallbacks
    def test_records_survive_restart(self):
        """
        Records are in the state folder's SQLite database and are there
        after the gateway restarts.
        """
        from gateway.records.sqlite import SQLiteRecordStore

        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test", trust_ca=True))
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test", trust_ca=True))
        yield defer.Deferred.fromCoroutine(self.exchange(a, b, world))
        before = yield records_of(a, "b.test")
        yield a.stopService()
        store = SQLiteRecordStore(a.records.path)
        self.addCleanup(store.close)
        after = yield store.for_peer("b.test")
        self.assertEqual(after, before)


HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE_PLUGINS = os.path.join(HERE, "docs", "examples", "verifier-plugin")


class ThirdPartyPluginTests(unittest.TestCase):
    """
    The example verifier in docs/examples/verifier-plugin is found through
    the plugin mechanism and used by the chain.
    """

    timeout = 60

    def test_discovered_by_a_fresh_process(self):
        """
        Put on the Python path, its gateway/plugins folder is scanned by
        getPlugins like the built-in one.
        """
        import subprocess
        import sys

        here = HERE
        output = subprocess.run(
            [sys.executable, "-c",
             "from gateway.verifiers.registry import available_verifiers;"
             "print(' '.join(sorted(available_verifiers())))"],
            env=dict(os.environ, PYTHONPATH=os.pathsep.join([here, EXAMPLE_PLUGINS]),
                     PYTHONDONTWRITEBYTECODE="1"),
            capture_output=True, text=True, timeout=60, cwd=here,
        )
        self.assertEqual(output.stdout.split(), ["dane", "dialback", "known-peers", "pinned", "pkix", "posh"],
                         output.stderr)

    @defer.inlineCallbacks
    def test_used_by_the_chain(self):
        """
        A policy naming the plugin verifies a peer whose key is listed, and
        the record names the plugin as the method.
        """
        from cryptography import x509

        from gateway import plugins
        from gateway.tls.certificates import spki_sha256

        self.patch(plugins, "__path__", plugins.__path__ + [os.path.join(EXAMPLE_PLUGINS, "gateway", "plugins")])
        world = World(self)
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test"))
        with open(b.state.identity("b.test").certificate_file, "rb") as f:
            key = spki_sha256(x509.load_pem_x509_certificates(f.read())[0])
        os.makedirs(os.path.join(world.folder, "a.test", "state"), exist_ok=True)
        with open(os.path.join(world.folder, "a.test", "state", "known-peers.txt"), "w") as f:
            f.write(f"# partners\nb.test {key}\n")
        a = yield defer.Deferred.fromCoroutine(
            world.gateway("a.test", policy='verifiers = ["known-peers"]\n')
        )
        yield defer.Deferred.fromCoroutine(VerificationTests.exchange(self, a, b, world))
        records = yield records_of(a, "b.test")
        self.assertEqual(sorted(r.direction for r in records), ["inbound", "outbound"])
        for record in records:
            self.assertEqual(record.method, "known-peers")
            self.assertEqual(record.evidence["spki_sha256"], key)


class RefusingExternalPeer:
    """
    A raw server for C{ext.test}, with a certificate from the test CA, that
    offers SASL EXTERNAL, refuses it, and then (playing a lax server)
    accepts any dialback key.  It records what it receives.
    """

    def __init__(self, certificate_file, key_file):
        from OpenSSL import SSL
        from twisted.internet import protocol

        from gateway.xmpp.parser import StreamParser

        context = SSL.Context(SSL.TLS_METHOD)
        context.use_certificate_chain_file(certificate_file)
        context.use_privatekey_file(key_file)
        peer = self
        self.elements = []
        self.connections = []

        class Creator:
            def getContext(self):
                return context

        class Server(protocol.Protocol):
            def connectionMade(self):
                peer.connections.append(self)
                self.secure = False
                self.restart()

            def restart(self):
                self.parser = StreamParser(self.header, self.element, lambda: None, 100000)

            def dataReceived(self, data):
                self.parser.feed(data)

            def header(self, root):
                features = (
                    b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                    b"<mechanism>EXTERNAL</mechanism></mechanisms>"
                    b"<dialback xmlns='urn:xmpp:features:dialback'/>"
                    if self.secure else
                    b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
                )
                self.transport.write(
                    b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                    b"xmlns:stream='http://etherx.jabber.org/streams' "
                    b"xmlns:db='jabber:server:dialback' id='ext1' version='1.0' "
                    b"from='ext.test'><stream:features>" + features + b"</stream:features>"
                )

            def element(self, element):
                peer.elements.append(element.name)
                if element.name == "starttls":
                    self.parser.close()
                    self.transport.write(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                    self.transport.startTLS(Creator())
                    self.secure = True
                    self.restart()
                elif element.name == "auth":
                    self.transport.write(
                        b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
                    )
                elif element.name == "result":
                    self.transport.write(b"<db:result from='ext.test' to='a.test' type='valid'/>")

        self.factory = protocol.Factory.forProtocol(Server)
        self.factory.noisy = False


class ExternalRefusedTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_external_refused_then_dialback(self):
        """
        A peer that offers SASL EXTERNAL and then refuses it is
        authenticated to by dialback on the same stream, and the stanza
        follows; the record says how.
        """
        from twisted.internet import reactor
        from twisted.internet.endpoints import TCP4ServerEndpoint

        world = World(self)
        certificate, key = world.ca.write_identity(os.path.join(world.folder, "ext"), "ext.test")
        peer = RefusingExternalPeer(certificate, key)
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(peer.factory)
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: [c.transport.abortConnection() for c in peer.connections])
        world.dns.add_srv("_xmpp-server._tcp.ext.test", "xmpp.ext.test", port.getHost().port)
        world.dns.add_a("xmpp.ext.test", "127.0.0.1")
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test", trust_ca=True))
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        alice.message("alice@a.test", "e@ext.test", "after all")
        yield wait_for(lambda: "message" in peer.elements)
        self.assertEqual(peer.elements, ["starttls", "auth", "result", "message"])
        (record,) = yield records_of(a, "ext.test")
        self.assertEqual((record.direction, record.method), ("outbound", "pkix"))
        self.assertEqual(record.evidence["authenticated_by"], "dialback")


class ExpiryTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_certificate_expiring_under_a_live_stream(self):
        """
        RFC 6120 section 13.7.2.3: b authenticates to a by SASL EXTERNAL with
        a certificate valid for a few more seconds.  When it expires, a
        closes the stream with <reset/>; b's next stanza opens a new stream,
        on which the expired certificate no longer verifies by PKIX, and
        dialback takes over.
        """
        import datetime

        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        world = World(self)
        lifetime = 4
        not_after = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
            seconds=lifetime
        )
        files = world.ca.write_identity(
            os.path.join(world.folder, "short-lived"), "b.test", not_after=not_after
        )
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test", trust_ca=True))
        b = yield defer.Deferred.fromCoroutine(
            world.gateway("b.test", trust_ca=True, certificate_files=files)
        )
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        bob = yield defer.Deferred.fromCoroutine(world.component(b, "b.test"))
        bob.message("bob@b.test", "alice@a.test", "while valid", "v1")
        received = yield defer.Deferred.fromCoroutine(alice.next())
        self.assertEqual(received["id"], "v1")
        (first,) = [r for r in (yield records_of(a, "b.test")) if r.direction == "inbound"]
        self.assertEqual((first.method, first.evidence["authenticated_by"]), ("pkix", "SASL EXTERNAL"))
        self.assertEqual(first.evidence["valid_until"], not_after.strftime("%Y-%m-%dT%H:%M:%SZ"))

        def reset_by_a():
            return any(
                e.get("condition") == "reset" and e.get("direction") == "outbound"
                and e.get("peer") == "a.test"
                for e in events
            )

        yield wait_for(reset_by_a, timeout=lifetime + 5)
        yield wait_for(lambda: not [
            s for s in a.federation.streams if s.direction == "inbound" and s.verified
        ])
        bob.message("bob@b.test", "alice@a.test", "after expiry", "v2")
        received = yield defer.Deferred.fromCoroutine(alice.next(timeout=20))
        self.assertEqual(received["id"], "v2")
        inbound = [r for r in (yield records_of(a, "b.test"))
                   if r.direction == "inbound" and r.authenticated]
        self.assertEqual(sorted(r.method for r in inbound), ["dialback", "pkix"])
        (second,) = [r for r in inbound if r.method == "dialback"]
        self.assertIn("expired", second.verdicts[0]["reason"])
