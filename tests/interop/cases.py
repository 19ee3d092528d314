"""
The interoperability matrix, run against each real server: a component on
the gateway (gw.test) and one on the peer server (its component domain)
exchange a message each way, and the gateway's authentication records say
how each stream was authenticated.

A server's test case mixes L{InteropCases} into a trial TestCase and
provides C{PEER} (the peer's domain), C{SERVER} (its Debian package) and
C{start_peer(certificate, secure_auth)}.
"""

import os
import socket

from cryptography.x509.oid import ExtendedKeyUsageOID
from twisted.internet import defer

from tests.interop.peers import package_version
from tests.support import World, error_condition, write_self_signed

#: What the gateway's certificate carries: public CAs issue serverAuth
#: only now, but some servers want clientAuth on the initiating side.
BOTH_EKUS = {"eku": (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)}


def free_port(address="127.0.0.1"):
    s = socket.socket()
    s.bind((address, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class InteropCases:
    timeout = 120
    PEER = None
    SERVER = None

    def setUp(self):
        self.world = World(self)

    def peer_identity(self, certificate, folder):
        """
        Certificate and key files for the peer: from the test CA
        (C{"ca"}), self-signed (C{"self-signed"}), or from the CA for the
        wrong name (C{"wrong-name"}).
        """
        os.makedirs(folder, exist_ok=True)
        if certificate == "ca":
            return self.world.ca.write_identity(folder, self.PEER, **BOTH_EKUS)
        if certificate == "wrong-name":
            return self.world.ca.write_identity(folder, "wrong.test", **BOTH_EKUS)
        return write_self_signed(folder, self.PEER)

    async def gateway(self, **kwargs):
        kwargs.setdefault("trust_ca", True)
        gateway = await self.world.gateway("gw.test", **kwargs)
        component = await self.world.component(gateway, "gw.test")
        return gateway, component

    async def exchange(self, gateway_component, peer_component):
        gateway_component.message("alice@gw.test/a", f"bob@{self.PEER}", "to the peer", "g1")
        try:
            received = await peer_component.next(timeout=30)
        except defer.TimeoutError:
            self.fail(f"nothing reached the peer's component\n{self.describe()}")
        self.assertEqual(
            (received["from"], received["to"], str(received.body)),
            ("alice@gw.test/a", f"bob@{self.PEER}", "to the peer"),
        )
        peer_component.message(f"bob@{self.PEER}", "alice@gw.test/a", "to the gateway", "p1")
        received = await gateway_component.next(timeout=30)
        self.assertEqual(
            (received["from"], str(received.body)), (f"bob@{self.PEER}", "to the gateway")
        )

    async def records(self, gateway):
        records = await gateway.records.for_peer(self.PEER)
        return {r.direction: r for r in records if r.authenticated}

    def describe(self):
        return f"{self.SERVER} {package_version(self.SERVER)}\n{self.server.log_tail()}"

    @defer.inlineCallbacks
    def test_sasl_external(self):
        """
        Certificates from a CA both trust: both directions use STARTTLS and
        SASL EXTERNAL, and the gateway verified the peer by PKIX.
        """
        peer = yield defer.Deferred.fromCoroutine(self.start_peer("ca", secure_auth=True))
        gateway, mine = yield defer.Deferred.fromCoroutine(
            self.gateway(certificate_options=BOTH_EKUS)
        )
        yield defer.Deferred.fromCoroutine(self.exchange(mine, peer))
        records = yield defer.Deferred.fromCoroutine(self.records(gateway))
        self.assertEqual(sorted(records), ["inbound", "outbound"], self.describe())
        for record in records.values():
            self.assertEqual(record.method, "pkix", self.describe())
            self.assertEqual(record.evidence["authenticated_by"], "SASL EXTERNAL", self.describe())
            self.assertIn(record.tls_version, ("TLSv1.2", "TLSv1.3"))

    #: Group-chat occupant nicknames as the live network writes them, in
    #: forms the peer servers' own stringprep leaves as they are (NFKC, no
    #: characters it maps to nothing, no mixed-direction strings, which
    #: RFC 3920 resourceprep refuses).
    NICKNAMES = ("\U0001F98A fox", "\u0639\u0644\u064a", "q\u0323\u0303 marks", "\U0001FACE")
    #: Nicknames the peer server itself refuses (its stringprep knows only
    #: Unicode 3.2): they come back to the sender as errors, and the streams
    #: stay up.
    REFUSED_NICKNAMES = ()
    #: The error the peer server answers them with.
    REFUSED_CONDITION = None

    @defer.inlineCallbacks
    def test_international_nicknames(self):
        """
        Occupant addresses with emoji, right-to-left and combining-mark
        resourceparts cross the gateway both ways, unchanged, on the streams
        already up: none of them closes a stream.
        """
        peer = yield defer.Deferred.fromCoroutine(self.start_peer("ca", secure_auth=True))
        gateway, mine = yield defer.Deferred.fromCoroutine(
            self.gateway(certificate_options=BOTH_EKUS)
        )
        yield defer.Deferred.fromCoroutine(self.exchange(mine, peer))
        for number, nickname in enumerate(self.NICKNAMES):
            mine.message(f"room@gw.test/{nickname}", f"bob@{self.PEER}", nickname, f"g{number}")
            try:
                received = yield defer.Deferred.fromCoroutine(peer.next(timeout=30))
            except defer.TimeoutError:
                self.fail(f"{nickname!r} did not arrive\n{self.describe()}")
            self.assertEqual(
                (received["from"], received.getAttribute("type"), str(received.body)),
                (f"room@gw.test/{nickname}", "chat", nickname),
                self.describe(),
            )
            peer.message(f"room@{self.PEER}/{nickname}", "alice@gw.test/a", nickname, f"p{number}")
            received = yield defer.Deferred.fromCoroutine(mine.next(timeout=30))
            self.assertEqual(
                (received["from"], received.getAttribute("type"), str(received.body)),
                (f"room@{self.PEER}/{nickname}", "chat", nickname),
                self.describe(),
            )
        for number, nickname in enumerate(self.REFUSED_NICKNAMES):
            mine.message(f"room@gw.test/{nickname}", f"bob@{self.PEER}", nickname, f"r{number}")
            answer = yield defer.Deferred.fromCoroutine(mine.next(timeout=30))
            self.assertEqual(
                (answer["id"], answer["type"], answer["to"], error_condition(answer)),
                (f"r{number}", "error", f"room@gw.test/{nickname}", self.REFUSED_CONDITION),
                self.describe(),
            )
        yield defer.Deferred.fromCoroutine(self.exchange(mine, peer))
        # One stream each way carried it all.
        records = yield gateway.records.for_peer(self.PEER)
        self.assertEqual(
            sorted(r.direction for r in records if r.authenticated),
            ["inbound", "outbound"],
            self.describe(),
        )

    @defer.inlineCallbacks
    def test_dialback_with_self_signed_peer(self):
        """
        A self-signed peer (not trusted by PKIX) and the gateway
        authenticate each other by dialback over TLS.
        """
        peer = yield defer.Deferred.fromCoroutine(
            self.start_peer("self-signed", secure_auth=False)
        )
        gateway, mine = yield defer.Deferred.fromCoroutine(self.gateway())
        yield defer.Deferred.fromCoroutine(self.exchange(mine, peer))
        records = yield defer.Deferred.fromCoroutine(self.records(gateway))
        inbound = records["inbound"]
        self.assertEqual(inbound.method, "dialback", self.describe())
        self.assertEqual(inbound.evidence["authenticated_by"], "dialback")
        self.assertEqual(inbound.verdicts[0]["verifier"], "pkix")
        self.assertIn("self-signed", inbound.verdicts[0]["reason"])
        self.assertIsNotNone(inbound.tls_version)
        # Outbound, the default policy accepts a peer reached through DNS,
        # and the record says so: method dns, not verified (however the
        # gateway proved its own identity: the peer trusts its CA).
        self.assertEqual(records["outbound"].method, "dns")

    @defer.inlineCallbacks
    def test_wrong_name_refused(self):
        """
        A peer whose certificate names another domain is refused by a
        gateway that requires PKIX for it, and the component gets a bounce.
        """
        yield defer.Deferred.fromCoroutine(self.start_peer("wrong-name", secure_auth=False))
        gateway, mine = yield defer.Deferred.fromCoroutine(
            self.gateway(extra=f'[policy.domains."{self.PEER}"]\nverifiers = ["pkix"]\n')
        )
        mine.message("alice@gw.test", f"bob@{self.PEER}", "not for you", "w1")
        bounce = yield defer.Deferred.fromCoroutine(mine.next(timeout=30))
        self.assertEqual((bounce["id"], bounce["type"]), ("w1", "error"))
        self.assertEqual(error_condition(bounce), "remote-server-not-found")
        records = yield gateway.records.for_peer(self.PEER)
        self.assertTrue(records, self.describe())
        self.assertFalse(records[0].authenticated)
        self.assertIn(f"not {self.PEER}", records[0].reason)

    @defer.inlineCallbacks
    def test_gateway_restart(self):
        """
        The gateway restarts while the peer keeps running: the next stanza
        in each direction sets up a new stream.
        """
        peer = yield defer.Deferred.fromCoroutine(self.start_peer("ca", secure_auth=True))
        port = free_port()
        gateway, mine = yield defer.Deferred.fromCoroutine(
            self.gateway(s2s_port=port, certificate_options=BOTH_EKUS)
        )
        yield defer.Deferred.fromCoroutine(self.exchange(mine, peer))
        yield mine.disconnect()
        yield gateway.stopService()
        gateway, mine = yield defer.Deferred.fromCoroutine(
            self.gateway(s2s_port=port, certificate_options=BOTH_EKUS)
        )
        yield defer.Deferred.fromCoroutine(self.exchange(mine, peer))
        records = yield gateway.records.for_peer(self.PEER)
        self.assertEqual(len([r for r in records if r.authenticated]), 4, self.describe())
