"""
Interoperability with Debian's Prosody 0.12, both directions, over
loopback with real TLS and names from the tests' DNS server.

Each case: a component on the gateway (gw.test) and a component on
Prosody (svc.prosody.test) exchange a message each way; the gateway's
authentication records say how each stream was authenticated.
"""

import os
import socket

from twisted.internet import defer
from twisted.trial import unittest

from tests.interop.peers import package_version, require_program
from tests.interop.prosody import ProsodyServer
from tests.support import TestComponent, World, error_condition

PROSODY_ADDRESS = "127.0.0.5"
PEER = "svc.prosody.test"
SECRET = "prosody-component-secret"


def free_port(address="127.0.0.1"):
    s = socket.socket()
    s.bind((address, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ProsodyTests(unittest.TestCase):
    timeout = 90

    def setUp(self):
        require_program("prosody", "prosody")
        self.world = World(self)

    async def prosody(self, certificate="ca", secure_auth=True):
        """
        Start Prosody serving PEER with a certificate from the test CA
        (C{"ca"}), a self-signed one (C{"self-signed"}), or one from the CA
        for the wrong name (C{"wrong-name"}).
        """
        from cryptography.hazmat.primitives import serialization

        folder = os.path.join(self.world.folder, "prosody")
        os.makedirs(folder, exist_ok=True)
        if certificate == "ca":
            certificate_file, key_file = self.world.ca.write_identity(folder, PEER)
        elif certificate == "wrong-name":
            certificate_file, key_file = self.world.ca.write_identity(folder, "wrong.test")
        else:
            from gateway.state import make_self_signed

            certificate_pem, key_pem = make_self_signed(PEER)
            certificate_file = os.path.join(folder, "self-signed.pem")
            key_file = os.path.join(folder, "self-signed.key")
            with open(certificate_file, "wb") as f:
                f.write(certificate_pem)
            with open(key_file, "wb") as f:
                f.write(key_pem)
        server = ProsodyServer(
            folder,
            PROSODY_ADDRESS,
            s2s_port=free_port(PROSODY_ADDRESS),
            component_port=free_port(PROSODY_ADDRESS),
            component_domain=PEER,
            component_secret=SECRET,
            certificate_file=certificate_file,
            key_file=key_file,
            ca_file=self.world.ca.write_ca(folder),
            dns_port=self.world.dns.port,
            secure_auth=secure_auth,
        )
        self.addCleanup(server.stop)
        self.prosody_server = server
        await server.start()
        self.world.dns.add_srv(f"_xmpp-server._tcp.{PEER}", f"xmpp.{PEER}", server.s2s_port)
        self.world.dns.add_a(f"xmpp.{PEER}", PROSODY_ADDRESS)
        component = TestComponent(PEER, SECRET)
        await component.connect(server.component_port, host=PROSODY_ADDRESS)
        self.addCleanup(component.disconnect)
        return server, component

    async def gateway(self, **kwargs):
        gateway = await self.world.gateway("gw.test", **kwargs)
        component = await self.world.component(gateway, "gw.test")
        return gateway, component

    async def exchange(self, gateway_component, peer_component):
        gateway_component.message("alice@gw.test/a", f"bob@{PEER}", "to prosody", "g1")
        received = await peer_component.next(timeout=20)
        self.assertEqual((received["from"], received["to"], str(received.body)),
                         ("alice@gw.test/a", f"bob@{PEER}", "to prosody"))
        peer_component.message(f"bob@{PEER}", "alice@gw.test/a", "to the gateway", "p1")
        received = await gateway_component.next(timeout=20)
        self.assertEqual((received["from"], str(received.body)), (f"bob@{PEER}", "to the gateway"))

    async def records(self, gateway):
        records = await gateway.records.for_peer(PEER)
        return {r.direction: r for r in records if r.authenticated}

    def describe(self):
        return f"prosody {package_version('prosody')}\n{self.prosody_server.log_tail()}"

    @defer.inlineCallbacks
    def test_sasl_external(self):
        """
        Certificates from a CA both trust: both directions use STARTTLS and
        SASL EXTERNAL, and the gateway verified Prosody by PKIX.
        """
        _, peer = yield defer.Deferred.fromCoroutine(self.prosody())
        gateway, mine = yield defer.Deferred.fromCoroutine(self.gateway(trust_ca=True))
        yield defer.Deferred.fromCoroutine(self.exchange(mine, peer))
        records = yield defer.Deferred.fromCoroutine(self.records(gateway))
        self.assertEqual(sorted(records), ["inbound", "outbound"], self.describe())
        for record in records.values():
            self.assertEqual(record.method, "pkix")
            self.assertEqual(record.evidence["authenticated_by"], "SASL EXTERNAL")
            self.assertEqual(record.tls_version, "TLSv1.3")

    @defer.inlineCallbacks
    def test_dialback_with_self_signed_peer(self):
        """
        A self-signed Prosody (not trusted by PKIX) and the gateway
        authenticate each other by dialback over TLS.
        """
        _, peer = yield defer.Deferred.fromCoroutine(
            self.prosody(certificate="self-signed", secure_auth=False)
        )
        gateway, mine = yield defer.Deferred.fromCoroutine(self.gateway(trust_ca=True))
        yield defer.Deferred.fromCoroutine(self.exchange(mine, peer))
        records = yield defer.Deferred.fromCoroutine(self.records(gateway))
        self.assertEqual(records["inbound"].method, "dialback", self.describe())
        self.assertEqual(records["inbound"].evidence["authenticated_by"], "dialback")
        self.assertEqual(records["inbound"].verdicts[0]["outcome"], "failed")
        self.assertIn("self-signed", records["inbound"].verdicts[0]["reason"])
        # Outbound, the gateway's policy accepts a peer reached through DNS.
        self.assertEqual(records["outbound"].method, "dialback")
        self.assertIsNotNone(records["inbound"].tls_version)

    @defer.inlineCallbacks
    def test_wrong_name_refused(self):
        """
        A Prosody whose certificate names another domain is refused by a
        gateway that requires PKIX, and the component gets a bounce.
        """
        yield defer.Deferred.fromCoroutine(self.prosody(certificate="wrong-name", secure_auth=False))
        gateway, mine = yield defer.Deferred.fromCoroutine(
            self.gateway(trust_ca=True, extra=f'[policy.domains."{PEER}"]\nverifiers = ["pkix"]\n')
        )
        mine.message("alice@gw.test", f"bob@{PEER}", "not for you", "w1")
        bounce = yield defer.Deferred.fromCoroutine(mine.next(timeout=20))
        self.assertEqual((bounce["id"], bounce["type"]), ("w1", "error"))
        self.assertEqual(error_condition(bounce), "remote-server-not-found")
        records = yield gateway.records.for_peer(PEER)
        self.assertTrue(records)
        self.assertFalse(records[0].authenticated)
        self.assertIn("not svc.prosody.test", records[0].reason)

    @defer.inlineCallbacks
    def test_gateway_restart(self):
        """
        The gateway restarts while Prosody keeps running: the next stanza in
        each direction sets up a new stream.
        """
        _, peer = yield defer.Deferred.fromCoroutine(self.prosody())
        port = free_port()
        gateway, mine = yield defer.Deferred.fromCoroutine(self.gateway(trust_ca=True, s2s_port=port))
        yield defer.Deferred.fromCoroutine(self.exchange(mine, peer))
        yield mine.disconnect()
        yield gateway.stopService()
        gateway, mine = yield defer.Deferred.fromCoroutine(self.gateway(trust_ca=True, s2s_port=port))
        yield defer.Deferred.fromCoroutine(self.exchange(mine, peer))
        records = yield gateway.records.for_peer(PEER)
        self.assertEqual(len([r for r in records if r.authenticated]), 4)
