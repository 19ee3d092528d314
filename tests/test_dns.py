"""
Finding a peer's s2s service: RFC 2782 ordering of SRV records (pure,
with a seeded random source), and SRV/A/AAAA resolution against a real
DNS server on loopback.
"""

import ipaddress
import random
from collections import Counter

from twisted.internet import defer, reactor
from twisted.trial import unittest

from gateway.app.config import DNSConfig
from gateway.names.srv import (
    DEFAULT_PORT,
    DNSLookupFailed,
    ServiceNotOffered,
    Target,
    lookup_addresses,
    make_resolver,
    order_srv,
    resolve_targets,
)
from gateway.testing import FakeDNSClient
from tests.dnsserver import LoopbackDNSServer


def srv(priority, weight, port, target):
    return (priority, weight, port, target)


class OrderSRVTests(unittest.TestCase):
    def test_empty(self):
        """
        No records, no order.
        """
        self.assertEqual(order_srv([], random.Random(1)), [])

    def test_single(self):
        """
        One record is returned as is, whatever its weight.
        """
        for weight in (0, 1, 100):
            record = srv(5, weight, 5269, "only.example")
            self.assertEqual(order_srv([record], random.Random(1)), [record])

    def test_pure(self):
        """
        The input is not changed, and the same seed gives the same order.
        """
        records = [srv(0, w, 5269 + w, f"h{w}.example") for w in (1, 5, 10, 20, 40)]
        copy = list(records)
        first = order_srv(records, random.Random(42))
        self.assertEqual(records, copy)
        self.assertEqual(order_srv(records, random.Random(42)), first)

    def test_priority_first(self):
        """
        Lower priorities always come first, whatever the weights.
        """
        records = [
            srv(20, 100, 1, "c1"),
            srv(0, 0, 2, "a0"),
            srv(10, 5, 3, "b1"),
            srv(0, 50, 4, "a1"),
            srv(10, 60, 5, "b2"),
            srv(20, 0, 6, "c0"),
            srv(0, 10, 7, "a2"),
        ]
        rng = random.Random(2782)
        for _ in range(300):
            shuffled = list(records)
            rng.shuffle(shuffled)
            ordered = order_srv(shuffled, rng)
            priorities = [record[0] for record in ordered]
            self.assertEqual(priorities, sorted(priorities))
            self.assertEqual(Counter(ordered), Counter(records))

    def test_weights(self):
        """
        Within a priority the pick is weighted: with weights 90 and 10 the
        heavy record comes first about 90% of the time.
        """
        heavy, light = srv(0, 90, 1, "heavy"), srv(0, 10, 2, "light")
        for seed in (1, 2, 3):
            rng = random.Random(seed)
            firsts = Counter(order_srv([light, heavy], rng)[0] for _ in range(2000))
            self.assertEqual(set(firsts), {heavy, light})
            self.assertTrue(1600 <= firsts[heavy] <= 1940, firsts)

    def test_weights_three(self):
        """
        With weights 60, 30 and 10 each record comes first in proportion
        to its weight.
        """
        records = [srv(0, 60, 1, "a"), srv(0, 30, 2, "b"), srv(0, 10, 3, "c")]
        rng = random.Random(7)
        firsts = Counter(order_srv(records, rng)[0][3] for _ in range(3000))
        self.assertTrue(1650 <= firsts["a"] <= 1950, firsts)
        self.assertTrue(750 <= firsts["b"] <= 1050, firsts)
        self.assertTrue(200 <= firsts["c"] <= 400, firsts)

    def test_zero_weight(self):
        """
        Records of weight 0 are still included, after the weighted ones of
        their priority; when all weights are 0, all records are included.
        """
        records = [srv(0, 0, 1, "zero-a"), srv(0, 10, 2, "ten"), srv(0, 0, 3, "zero-b"), srv(1, 0, 4, "next")]
        rng = random.Random(3)
        for _ in range(200):
            ordered = order_srv(records, rng)
            self.assertEqual(Counter(ordered), Counter(records))
            self.assertEqual(ordered[0], records[1])
            self.assertEqual(ordered[-1], records[3])

        all_zero = [srv(0, 0, port, f"z{port}") for port in range(5)]
        self.assertEqual(Counter(order_srv(all_zero, rng)), Counter(all_zero))

    def test_each_once(self):
        """
        Every record appears exactly once, for many random record sets.
        """
        rng = random.Random(99)
        for _ in range(300):
            records = [
                srv(rng.randrange(3), rng.choice([0, 0, 1, 5, 65535]), port, f"h{port}.example")
                for port in range(rng.randrange(1, 12))
            ]
            ordered = order_srv(records, rng)
            self.assertEqual(sorted(ordered), sorted(records))


def start_dns_server(testcase):
    """
    Start a L{LoopbackDNSServer}, stopped when C{testcase} ends.
    """
    server = LoopbackDNSServer()
    testcase.addCleanup(server.stop)
    return server


class ResolverTestsMixin:
    """
    A loopback DNS server and the gateway's resolver pointed at it.
    """

    #: The documentation and loopback ranges the tests' records use: outside
    #: the public address space, so allowed explicitly (dns.allow_networks).
    ALLOWED = tuple(ipaddress.ip_network(n) for n in (
        "192.0.2.0/24", "2001:db8::/32", "127.0.0.0/8", "::1/128",
    ))

    def setUp(self):
        self.server = start_dns_server(self)
        self.resolver = make_resolver(
            DNSConfig(servers=(self.server.address,), timeout=2.0, allow_networks=self.ALLOWED),
            reactor,
        )

    def targets(self, domain, rng=None):
        return defer.Deferred.fromCoroutine(
            resolve_targets(self.resolver, domain, rng or random.Random(0))
        )

    def addresses(self, host):
        d = defer.Deferred.fromCoroutine(lookup_addresses(self.resolver, host))
        return d.addCallback(lambda found: list(found.addresses))


class ResolveTargetsTests(ResolverTestsMixin, unittest.TestCase):
    async def _direct_tls_first(self):
        self.server.add_srv("_xmpp-server._tcp.peer.test", "starttls1.peer.test", 5269, 0, 0)
        self.server.add_srv("_xmpp-server._tcp.peer.test", "starttls2.peer.test", 5268, 10, 0)
        self.server.add_srv("_xmpps-server._tcp.peer.test", "direct2.peer.test", 5271, 20, 0)
        self.server.add_srv("_xmpps-server._tcp.peer.test", "direct1.peer.test", 5270, 10, 0)
        targets = await self.targets("peer.test")
        self.assertEqual(
            targets,
            [
                Target("starttls1.peer.test", 5269, False),
                Target("direct1.peer.test", 5270, True),
                Target("starttls2.peer.test", 5268, False),
                Target("direct2.peer.test", 5271, True),
            ],
        )

    def test_direct_tls_first(self):
        """
        C{_xmpps-server} (direct TLS) and C{_xmpp-server} targets are merged
        by priority (XEP-0368); at equal priority direct TLS comes first.
        """
        return defer.Deferred.fromCoroutine(self._direct_tls_first())

    async def _starttls_only(self):
        self.server.add_srv("_xmpp-server._tcp.peer.test", "xmpp.peer.test", 5269, 0, 0)
        self.assertEqual(await self.targets("peer.test"), [Target("xmpp.peer.test", 5269, False)])

    def test_starttls_only(self):
        """
        With only C{_xmpp-server} records, their targets are used, not
        direct TLS.
        """
        return defer.Deferred.fromCoroutine(self._starttls_only())

    async def _direct_only(self):
        self.server.add_srv("_xmpps-server._tcp.peer.test", "xmpps.peer.test", 443, 0, 0)
        self.assertEqual(await self.targets("peer.test"), [Target("xmpps.peer.test", 443, True)])

    def test_direct_only(self):
        """
        With only C{_xmpps-server} records, their targets are used with
        direct TLS.
        """
        return defer.Deferred.fromCoroutine(self._direct_only())

    async def _no_srv(self):
        self.server.add_a("peer.test", "192.0.2.1")
        self.assertEqual(await self.targets("peer.test"), [Target("peer.test", DEFAULT_PORT, False, srv=False)])
        self.assertEqual(
            await self.targets("nonexistent.test"), [Target("nonexistent.test", DEFAULT_PORT, False, srv=False)]
        )

    def test_no_srv(self):
        """
        Without SRV records (the name exists without them, or does not
        exist at all), the domain itself on port 5269 is the target.
        """
        return defer.Deferred.fromCoroutine(self._no_srv())

    async def _not_offered(self):
        self.server.add_srv("_xmpp-server._tcp.peer.test", b"", 0, 0, 0)
        with self.assertRaises(ServiceNotOffered):
            await self.targets("peer.test")
        self.server.add_srv("_xmpps-server._tcp.both.test", b"", 0, 0, 0)
        self.server.add_srv("_xmpp-server._tcp.both.test", b"", 0, 0, 0)
        with self.assertRaises(ServiceNotOffered):
            await self.targets("both.test")

    def test_not_offered(self):
        """
        An SRV target of C{.} alone means the service is decidedly not
        offered: L{ServiceNotOffered}, not a fallback to the domain.
        """
        return defer.Deferred.fromCoroutine(self._not_offered())

    async def _dot_with_others(self):
        self.server.add_srv("_xmpps-server._tcp.peer.test", b"", 0, 0, 0)
        self.server.add_srv("_xmpp-server._tcp.peer.test", "xmpp.peer.test", 5269, 0, 0)
        self.assertEqual(await self.targets("peer.test"), [Target("xmpp.peer.test", 5269, False)])

    def test_dot_with_others(self):
        """
        C{.} for direct TLS only, with STARTTLS records, leaves the
        STARTTLS targets.
        """
        return defer.Deferred.fromCoroutine(self._dot_with_others())

    async def _weighted(self):
        self.server.add_srv("_xmpp-server._tcp.peer.test", "a.peer.test", 1, 0, 50)
        self.server.add_srv("_xmpp-server._tcp.peer.test", "b.peer.test", 2, 0, 50)
        self.server.add_srv("_xmpp-server._tcp.peer.test", "c.peer.test", 3, 5, 0)
        firsts = set()
        for seed in range(20):
            targets = await self.targets("peer.test", random.Random(seed))
            self.assertEqual(len(targets), 3)
            self.assertEqual(targets[2], Target("c.peer.test", 3, False))
            firsts.add(targets[0].host)
        self.assertEqual(firsts, {"a.peer.test", "b.peer.test"})

    def test_weighted(self):
        """
        The random source passed in orders records of equal priority; the
        lower-priority-value records always come first.
        """
        return defer.Deferred.fromCoroutine(self._weighted())

    async def _idn(self):
        self.server.add_srv("_xmpp-server._tcp.xn--bcher-kva.test", "xmpp.xn--bcher-kva.test", 5269, 0, 0)
        self.assertEqual(
            await self.targets("b\u00fccher.test"), [Target("xmpp.xn--bcher-kva.test", 5269, False)]
        )
        self.assertEqual(
            await self.targets("st\u00e4dte.test"), [Target("xn--stdte-hra.test", DEFAULT_PORT, False, srv=False)]
        )

    def test_idn(self):
        """
        An internationalised domain is looked up in its A-label form, and
        the fallback target is the A-label form too.
        """
        return defer.Deferred.fromCoroutine(self._idn())


class ResolveAddressesTests(ResolverTestsMixin, unittest.TestCase):
    async def _both(self):
        self.server.add_a("xmpp.peer.test", "192.0.2.1")
        self.server.add_a("xmpp.peer.test", "192.0.2.2")
        self.server.add_aaaa("xmpp.peer.test", "2001:db8::1")
        self.assertEqual(
            await self.addresses("xmpp.peer.test"), ["2001:db8::1", "192.0.2.1", "192.0.2.2"]
        )

    def test_both(self):
        """
        AAAA and A addresses are both returned, IPv6 first.
        """
        return defer.Deferred.fromCoroutine(self._both())

    async def _single_family(self):
        self.server.add_a("v4.peer.test", "192.0.2.4")
        self.server.add_aaaa("v6.peer.test", "2001:db8::6")
        self.assertEqual(await self.addresses("v4.peer.test"), ["192.0.2.4"])
        self.assertEqual(await self.addresses("v6.peer.test"), ["2001:db8::6"])

    def test_single_family(self):
        """
        A host with only A or only AAAA records gives just those.
        """
        return defer.Deferred.fromCoroutine(self._single_family())

    async def _literal(self):
        for literal in ("192.0.2.9", "2001:db8::9", "::1", "127.0.0.1"):
            self.assertEqual(await self.addresses(literal), [literal])

    def test_literal(self):
        """
        An IP address literal is returned as it is, without a lookup.
        """
        return defer.Deferred.fromCoroutine(self._literal())

    async def _nxdomain(self):
        self.server.add_srv("_xmpp-server._tcp.peer.test", "xmpp.peer.test", 5269, 0, 0)
        self.assertEqual(await self.addresses("missing.peer.test"), [])
        self.assertEqual(await self.addresses("_xmpp-server._tcp.peer.test"), [])

    def test_nxdomain(self):
        """
        A host that does not exist, or has no address records, has no
        addresses.
        """
        return defer.Deferred.fromCoroutine(self._nxdomain())

    async def _idn(self):
        self.server.add_a("xn--bcher-kva.test", "192.0.2.77")
        self.server.add_aaaa("xn--bcher-kva.test", "2001:db8::77")
        self.assertEqual(await self.addresses("b\u00fccher.test"), ["2001:db8::77", "192.0.2.77"])

    def test_idn(self):
        """
        An internationalised host name is looked up in its A-label form.
        """
        return defer.Deferred.fromCoroutine(self._idn())


class DNSFailureTests(unittest.TestCase):
    """
    What each kind of DNS failure means for finding a peer (RFC 7673
    section 3): bogus only from a resolver trusted to validate, an optional
    look-up that fails is no records, other failures are errors of their
    own, and a host with a bogus address answer is not used.
    """

    def targets(self, client, domain="peer.test"):
        return defer.Deferred.fromCoroutine(resolve_targets(client, domain, random.Random(0)))

    def with_starttls(self, trust_ad=True):
        client = FakeDNSClient(trust_ad=trust_ad)
        client.add("_xmpp-server._tcp.peer.test", "SRV", "0 0 5269 xmpp.peer.test.")
        return client

    @defer.inlineCallbacks
    def test_optional_direct_tls_failure_is_no_records(self):
        """
        A SERVFAIL from an untrusted resolver, a REFUSED or a timeout on the
        optional C{_xmpps-server} look-up leaves the STARTTLS targets.
        """
        for fail in (
            lambda c: c.fail("_xmpps-server._tcp.peer.test", "SRV", "REFUSED"),
            lambda c: c.unreachable("_xmpps-server._tcp.peer.test", "SRV"),
        ):
            client = self.with_starttls()
            fail(client)
            self.assertEqual(
                (yield self.targets(client)), [Target("xmpp.peer.test", 5269, False)]
            )
        client = self.with_starttls(trust_ad=False)
        client.bogus("_xmpps-server._tcp.peer.test", "SRV")
        self.assertEqual((yield self.targets(client)), [Target("xmpp.peer.test", 5269, False)])

    @defer.inlineCallbacks
    def test_bogus_direct_tls_aborts(self):
        """
        A bogus C{_xmpps-server} answer from a trusted validating resolver
        aborts, as a bogus C{_xmpp-server} does.
        """
        for name in ("_xmpps-server._tcp.peer.test", "_xmpp-server._tcp.peer.test"):
            client = self.with_starttls()
            client.bogus(name, "SRV")
            failure = yield self.assertFailure(self.targets(client), DNSLookupFailed)
            self.assertTrue(failure.bogus)
            self.assertIn("bogus", str(failure))

    @defer.inlineCallbacks
    def test_failed_srv_is_no_fallback(self):
        """
        REFUSED, or SERVFAIL from a resolver not trusted to validate, on
        C{_xmpp-server} is an error naming what the resolver said, not "no
        records" (which would fall back to the domain on port 5269), and not
        bogus.
        """
        for rcode, trust_ad in (("REFUSED", True), ("SERVFAIL", False), ("NOTIMP", True)):
            client = FakeDNSClient(trust_ad=trust_ad)
            client.fail("_xmpp-server._tcp.peer.test", "SRV", rcode)
            failure = yield self.assertFailure(self.targets(client), DNSLookupFailed)
            self.assertFalse(failure.bogus)
            self.assertIn(f"answered {rcode}", str(failure))

    @defer.inlineCallbacks
    def test_bogus_addresses(self):
        """
        A bogus AAAA answer marks the host bogus even when its A answer is
        fine; a REFUSED one only leaves that family out.
        """
        client = FakeDNSClient()
        client.add("xmpp.peer.test", "A", "192.0.2.1", secure=True)
        client.bogus("xmpp.peer.test", "AAAA")
        addresses = yield defer.Deferred.fromCoroutine(lookup_addresses(client, "xmpp.peer.test"))
        self.assertEqual((addresses.addresses, addresses.bogus, addresses.secure),
                         (("192.0.2.1",), True, False))
        client = FakeDNSClient()
        client.add("xmpp.peer.test", "A", "192.0.2.1", secure=True)
        client.fail("xmpp.peer.test", "AAAA", "REFUSED")
        addresses = yield defer.Deferred.fromCoroutine(lookup_addresses(client, "xmpp.peer.test"))
        self.assertEqual((addresses.addresses, addresses.bogus, addresses.secure),
                         (("192.0.2.1",), False, False))
        self.assertEqual(addresses.problems, ("AAAA: the resolver answered REFUSED",))


class FakeDNSClientTests(unittest.SynchronousTestCase):
    def test_ttl(self):
        """
        An answer's TTL is the least its records were added with, 60
        seconds by default, as a resolver's would be.
        """
        client = FakeDNSClient()
        client.add("xmpp.peer.test", "A", "192.0.2.1", ttl=300)
        client.add("xmpp.peer.test", "A", "192.0.2.2", ttl=30)
        client.add("xmpp.peer.test", "AAAA", "2001:db8::1")
        self.assertEqual(self.successResultOf(client.query("xmpp.peer.test", "A")).ttl, 30)
        self.assertEqual(self.successResultOf(client.query("xmpp.peer.test", "AAAA")).ttl, 60)
        self.assertEqual(self.successResultOf(client.query("xmpp.peer.test", "TXT")).ttl, 60)

class AddressPolicyTests(ResolverTestsMixin, unittest.TestCase):
    """
    Where DNS may send the gateway: public addresses, and the networks the
    operator allows (dns.allow_networks); never, by default, the operator's
    own network on a peer's word.
    """

    @defer.inlineCallbacks
    def test_private_addresses_refused_by_default(self):
        strict = make_resolver(DNSConfig(servers=(self.server.address,), timeout=2.0), reactor)
        for name, address in (
            ("loopback.peer.test", "127.0.0.1"), ("private.peer.test", "10.1.2.3"),
            ("linklocal.peer.test", "169.254.169.254"), ("shared.peer.test", "100.64.0.1"),
            ("mixed.peer.test", "192.168.1.1"),
        ):
            self.server.add_a(name, address)
        self.server.add_aaaa("v6.peer.test", "fe80::1")
        self.server.add_aaaa("ula.peer.test", "fd00::1")
        self.server.add_a("public.peer.test", "203.0.114.1")
        self.server.add_a("mixed.peer.test", "203.0.114.2")
        for host in ("loopback.peer.test", "private.peer.test", "linklocal.peer.test",
                     "shared.peer.test", "v6.peer.test", "ula.peer.test"):
            found = yield defer.Deferred.fromCoroutine(lookup_addresses(strict, host))
            self.assertEqual(found.addresses, (), host)
            self.assertTrue(any("not a public address" in p for p in found.problems), host)
        found = yield defer.Deferred.fromCoroutine(lookup_addresses(strict, "mixed.peer.test"))
        self.assertEqual(found.addresses, ("203.0.114.2",))
        found = yield defer.Deferred.fromCoroutine(lookup_addresses(strict, "public.peer.test"))
        self.assertEqual(found.addresses, ("203.0.114.1",))
        # An allowed network is reachable.
        found = yield defer.Deferred.fromCoroutine(
            lookup_addresses(self.resolver, "loopback.peer.test")
        )
        self.assertEqual(found.addresses, ("127.0.0.1",))

    @defer.inlineCallbacks
    def test_ip_literal_srv_targets_refused(self):
        """
        RFC 2782: an SRV target is a host name; one shaped like an address
        is not used (it would skip every address check and DNSSEC).
        """
        self.server.add_srv("_xmpp-server._tcp.peer.test", "10.0.0.1", 5269, 0, 0)
        self.server.add_srv("_xmpp-server._tcp.peer.test", "xmpp.peer.test", 5269, 5, 0)
        self.assertEqual(
            (yield self.targets("peer.test")), [Target("xmpp.peer.test", 5269, False)]
        )
        self.server.add_srv("_xmpp-server._tcp.only.test", "127.0.0.1", 5269, 0, 0)
        yield self.assertFailure(self.targets("only.test"), DNSLookupFailed)

