"""
The DNS client against a real DNS server on loopback: answers, negative
answers, SERVFAIL, the AD bit and when it is believed, TCP fallback,
timeouts, caching and shared queries.
"""

import socket

from twisted.internet import defer, reactor
from twisted.names import dns as tdns
from twisted.trial import unittest

from gateway.names.client import DNSClient, DNSError, system_servers
from tests.dnsserver import LoopbackDNSServer


class DNSClientTests(unittest.TestCase):
    def setUp(self):
        self.server = LoopbackDNSServer()
        self.addCleanup(self.server.stop)
        self.server.add_a("host.test", "192.0.2.1")
        self.server.authority.add("host.test", tdns.Record_AAAA("2001:db8::1"), ttl=30)
        self.server.add_srv("_xmpp-server._tcp.host.test", "xmpp.host.test", 5269)

    def client(self, trust_ad=False, servers=None, timeout=2.0):
        return DNSClient(reactor, servers or [self.server.address], timeout, trust_ad)

    @defer.inlineCallbacks
    def test_answers(self):
        client = self.client()
        answer = yield client.query("host.test", "A")
        self.assertEqual(
            (answer.rcode, [r.address for r in answer.records], answer.ttl, answer.status),
            ("NOERROR", ["192.0.2.1"], 60, "insecure"),
        )
        answer = yield client.query("HOST.test.", "AAAA")
        self.assertEqual(([r.address for r in answer.records], answer.ttl), (["2001:db8::1"], 30))
        answer = yield client.query("_xmpp-server._tcp.host.test", "SRV")
        (srv,) = answer.records
        self.assertEqual((srv.port, str(srv.target)), (5269, "xmpp.host.test."))

    @defer.inlineCallbacks
    def test_negative(self):
        client = self.client()
        answer = yield client.query("missing.test", "A")
        self.assertEqual((answer.rcode, answer.nonexistent, answer.status),
                         ("NXDOMAIN", True, "nonexistent (insecure)"))
        answer = yield client.query("host.test", "TLSA")
        self.assertEqual((answer.rcode, answer.records, answer.nonexistent), ("NOERROR", (), True))

    @defer.inlineCallbacks
    def test_servfail_is_bogus(self):
        self.server.authority.fail("broken.test")
        answer = yield self.client(trust_ad=True).query("broken.test", "A")
        self.assertEqual((answer.rcode, answer.bogus, answer.status), ("SERVFAIL", True, "bogus"))

    @defer.inlineCallbacks
    def test_servfail_untrusted_is_a_failure(self):
        """
        From a resolver not trusted to validate, SERVFAIL says nothing about
        DNSSEC: a failure, not bogus.
        """
        self.server.authority.fail("broken.test")
        answer = yield self.client(trust_ad=False).query("broken.test", "A")
        self.assertEqual(
            (answer.rcode, answer.bogus, answer.failed, answer.status),
            ("SERVFAIL", False, True, "SERVFAIL"),
        )

    @defer.inlineCallbacks
    def test_ad_believed_only_when_trusted(self):
        """
        An AD bit makes an answer secure only when the resolver is trusted
        to validate; without AD nothing is secure.
        """
        self.server.factory.authentic_data = True
        self.assertTrue((yield self.client(trust_ad=True).query("host.test", "A")).secure)
        self.assertFalse((yield self.client(trust_ad=False).query("host.test", "A")).secure)
        self.server.factory.authentic_data = False
        self.assertFalse((yield self.client(trust_ad=True).query("host.test", "AAAA")).secure)

    @defer.inlineCallbacks
    def test_tcp_fallback(self):
        """
        A truncated UDP answer is asked again over TCP.
        """
        for n in range(60):
            self.server.add_a("many.test", f"192.0.2.{n + 1}")
        answer = yield self.client().query("many.test", "A")
        self.assertEqual(len(answer.records), 60)

    @defer.inlineCallbacks
    def test_timeout_then_next_server(self):
        """
        A server that doesn't answer is given up after the timeout and the
        next one is asked; when none answers, DNSError says so.
        """
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(silent.close)
        silent.bind(("127.0.0.1", 0))
        dead = ("127.0.0.1", silent.getsockname()[1])
        client = self.client(servers=[dead, self.server.address], timeout=0.3)
        answer = yield client.query("host.test", "A")
        self.assertEqual(answer.rcode, "NOERROR")
        with self.assertRaises(DNSError) as caught:
            yield self.client(servers=[dead], timeout=0.3).query("host.test", "A")
        self.assertIn("no answer for host.test A", str(caught.exception))

    @defer.inlineCallbacks
    def test_cache_and_sharing(self):
        """
        Answers are cached for their TTL; concurrent questions share one
        query.
        """
        client = self.client()
        first, second = yield defer.gatherResults(
            [client.query("host.test", "A"), client.query("host.test", "A")]
        )
        self.assertIs(first, second)
        self.server.authority.clear("host.test")
        self.server.add_a("host.test", "192.0.2.99")
        cached = yield client.query("host.test", "A")
        self.assertEqual([r.address for r in cached.records], ["192.0.2.1"])
        client._cache.clear()
        fresh = yield client.query("host.test", "A")
        self.assertEqual([r.address for r in fresh.records], ["192.0.2.99"])

    def test_system_servers(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("# comment\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver bogus\nsearch x\n")
        self.assertEqual(system_servers(path), [("192.0.2.53", 53), ("fe80::1", 53)])
        self.assertEqual(system_servers(self.mktemp()), [("127.0.0.1", 53)])
