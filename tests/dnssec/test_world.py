"""
The DNSSEC world answers as a validating resolver should (RFC 4035, section
4.3): secure names with AD, insecure names without, bogus names SERVFAIL,
and nonexistent names in a signed zone NXDOMAIN with AD (authenticated
denial).  Every test asks the real unbound, which asks the real knot.
"""

import os
import socket

from twisted.trial import unittest

from tests.dnssec.world import (
    LDNS_PROGRAMS,
    SERVER_PROGRAMS,
    DNSSECWorld,
    DNSWorldError,
    absolute_name,
    mismatched_ds,
)
from tests.interop.peers import require_program

TLSA_DATA = "3 1 1 " + "0123456789abcdef" * 4


def running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class DeclarationTests(unittest.TestCase):
    """
    Names, anchors and declarations, without servers.
    """

    def test_absolute_name(self):
        for owner, expected in [
            ("@", "secure.test."),
            ("secure.test.", "secure.test."),
            ("xmpp", "xmpp.secure.test."),
            ("_5269._tcp.xmpp", "_5269._tcp.xmpp.secure.test."),
            ("xmpp.secure.test", "xmpp.secure.test."),
            ("XMPP.Secure.Test.", "xmpp.secure.test."),
        ]:
            self.assertEqual(absolute_name(owner, "secure.test"), expected, owner)

    def test_absolute_name_outside_zone(self):
        self.assertRaises(ValueError, absolute_name, "xmpp.other.test.", "secure.test")
        self.assertRaises(ValueError, absolute_name, "notsecure.test.", "secure.test")

    def test_mismatched_ds_keeps_tag_and_algorithm(self):
        ds = "secure.test. DS 64080 13 2 " + "46e2" * 16
        bogus = mismatched_ds(ds, "secure.test").split()
        self.assertEqual(bogus[:5], ["secure.test.", "DS", "64080", "13", "2"])
        self.assertNotEqual(bogus[5], "46e2" * 16)
        self.assertEqual(len(bogus[5]), 64)

    def test_break_signature_needs_ldns(self):
        world = DNSSECWorld(self.mktemp())
        world.zone("secure.test")
        self.assertRaises(ValueError, world.break_signature, "secure.test", "xmpp", "A")

    def test_declarations_checked(self):
        world = DNSSECWorld(self.mktemp())
        world.zone("secure.test")
        self.assertRaises(ValueError, world.zone, "Secure.Test.")
        self.assertRaises(ValueError, world.zone, "bogus.test", signed=False, bogus=True)
        self.assertRaises(ValueError, world.add, "other.test", "xmpp", "A", "127.0.0.5")
        self.assertRaises(ValueError, world.add, "secure.test", "xmpp.other.test.", "A",
                          "127.0.0.5")
        record = world.add("secure.test", "xmpp", "a", "127.0.0.5")
        self.assertEqual(record, ("xmpp.secure.test.", 60, "A", "127.0.0.5"))
        self.assertEqual(world.remove("secure.test", "xmpp.secure.test.", "A"), 1)


class DNSSECWorldTests(unittest.TestCase):
    """
    A world with a signed, an unsigned, a bogus and an ldns-signed zone, on
    127.0.0.20 (knot) and 127.0.0.21 (unbound), port 53.
    """

    timeout = 120

    def setUp(self):
        for program, package in {**SERVER_PROGRAMS, **LDNS_PROGRAMS}.items():
            require_program(program, package)

    async def start_world(self, **options):
        world = DNSSECWorld(self.mktemp(), **options)
        self.addCleanup(world.stop)
        world.zone("secure.test")
        world.zone("insecure.test", signed=False)
        world.zone("bogus.test", bogus=True)
        world.zone("partly.test", signer="ldns")
        for zone in ("secure.test", "insecure.test", "bogus.test", "partly.test"):
            world.add(zone, f"xmpp.{zone}.", "A", "127.0.0.5")
            world.add(zone, f"_xmpp-server._tcp.{zone}.", "SRV", f"0 5 5269 xmpp.{zone}.")
            world.add(zone, f"_5269._tcp.xmpp.{zone}.", "TLSA", TLSA_DATA)
        world.break_signature("partly.test", "_5269._tcp.xmpp", "TLSA")
        await world.start()
        return world

    async def test_signed_name_is_authenticated(self):
        world = await self.start_world()
        rcode, authenticated, answers = await world.query("xmpp.secure.test", "A")
        self.assertEqual((rcode, authenticated), ("NOERROR", True))
        self.assertEqual([(r.rrtype, r.rdata) for r in answers], [("A", "127.0.0.5")])

    async def test_signed_tlsa_is_authenticated(self):
        world = await self.start_world()
        rcode, authenticated, answers = await world.query("_5269._tcp.xmpp.secure.test", "TLSA")
        self.assertEqual((rcode, authenticated), ("NOERROR", True))
        self.assertEqual([r.rdata.lower() for r in answers], [TLSA_DATA])

    async def test_signed_srv_is_authenticated(self):
        world = await self.start_world()
        rcode, authenticated, answers = await world.query("_xmpp-server._tcp.secure.test", "SRV")
        self.assertEqual((rcode, authenticated), ("NOERROR", True))
        self.assertEqual([r.rdata for r in answers], ["0 5 5269 xmpp.secure.test."])

    async def test_unsigned_name_is_not_authenticated(self):
        world = await self.start_world()
        rcode, authenticated, answers = await world.query("xmpp.insecure.test", "A")
        self.assertEqual((rcode, authenticated), ("NOERROR", False))
        self.assertEqual([r.rdata for r in answers], ["127.0.0.5"])

    async def test_bogus_zone_is_servfail(self):
        world = await self.start_world()
        for name, rrtype in [("xmpp.bogus.test", "A"), ("_5269._tcp.xmpp.bogus.test", "TLSA")]:
            rcode, authenticated, answers = await world.query(name, rrtype)
            self.assertEqual((rcode, authenticated, answers), ("SERVFAIL", False, ()), name)
        # SERVFAIL because validation failed, not because knot didn't answer.
        failures = world.validation_failures()
        self.assertTrue(any("xmpp.bogus.test." in line for line in failures), failures)
        authoritative = await world.query(
            "xmpp.bogus.test", "A", server=world.authoritative_address
        )
        self.assertEqual(authoritative.rcode, "NOERROR")

    async def test_nonexistent_signed_name_is_authenticated_denial(self):
        world = await self.start_world()
        rcode, authenticated, answers = await world.query("nowhere.secure.test", "A")
        self.assertEqual((rcode, authenticated, answers), ("NXDOMAIN", True, ()))

    async def test_nonexistent_unsigned_name_is_not_authenticated(self):
        world = await self.start_world()
        rcode, authenticated, answers = await world.query("nowhere.insecure.test", "A")
        self.assertEqual((rcode, authenticated, answers), ("NXDOMAIN", False, ()))

    async def test_broken_signature_makes_only_that_rrset_bogus(self):
        world = await self.start_world()
        tlsa = await world.query("_5269._tcp.xmpp.partly.test", "TLSA")
        self.assertEqual(tlsa.rcode, "SERVFAIL")
        for name, rrtype in [("xmpp.partly.test", "A"), ("_xmpp-server._tcp.partly.test", "SRV")]:
            rcode, authenticated, _ = await world.query(name, rrtype)
            self.assertEqual((rcode, authenticated), ("NOERROR", True), name)
        denial = await world.query("nowhere.partly.test", "A")
        self.assertEqual((denial.rcode, denial.authenticated), ("NXDOMAIN", True))

    async def test_names_outside_the_world_are_nxdomain(self):
        world = await self.start_world()
        for name in ("undeclared.test", "xmpp.example.com"):
            rcode, authenticated, _ = await world.query(name, "A")
            self.assertEqual((rcode, authenticated), ("NXDOMAIN", False), name)

    async def test_publish_after_start(self):
        world = await self.start_world()
        missing = await world.query("late.secure.test", "A")
        self.assertEqual(missing.rcode, "NXDOMAIN")
        world.add("secure.test", "late", "A", "127.0.0.7")
        world.replace("secure.test", "_5269._tcp.xmpp", "TLSA", ["3 1 1 " + "ff" * 32])
        world.break_signature("partly.test", "_5269._tcp.xmpp", "TLSA", broken=False)
        world.break_signature("partly.test", "xmpp", "A")
        await world.publish()

        late = await world.query("late.secure.test", "A")
        self.assertEqual((late.rcode, late.authenticated), ("NOERROR", True))
        self.assertEqual([r.rdata for r in late.answers], ["127.0.0.7"])
        tlsa = await world.query("_5269._tcp.xmpp.secure.test", "TLSA")
        self.assertEqual([r.rdata.lower() for r in tlsa.answers], ["3 1 1 " + "ff" * 32])
        self.assertTrue(tlsa.authenticated)
        mended = await world.query("_5269._tcp.xmpp.partly.test", "TLSA")
        self.assertEqual((mended.rcode, mended.authenticated), ("NOERROR", True))
        broken = await world.query("xmpp.partly.test", "A")
        self.assertEqual(broken.rcode, "SERVFAIL")

    async def test_bad_record_after_start_keeps_serving(self):
        world = await self.start_world()
        world.add("secure.test", "broken", "TLSA", "3 1 1 not-hex")
        error = None
        try:
            await world.publish()
        except DNSWorldError as e:
            error = e
        self.assertIn("hexadecimal", str(error))
        served = await world.query("xmpp.secure.test", "A")
        self.assertEqual((served.rcode, served.authenticated), ("NOERROR", True))
        world.remove("secure.test", "broken")
        world.add("secure.test", "fixed", "A", "127.0.0.8")
        await world.publish()
        fixed = await world.query("fixed.secure.test", "A")
        self.assertEqual((fixed.rcode, fixed.authenticated), ("NOERROR", True))

    async def test_authoritative_server_signs(self):
        world = await self.start_world()
        keys = await world.query("secure.test", "DNSKEY", server=world.authoritative_address)
        self.assertEqual(keys.rcode, "NOERROR")
        self.assertTrue(keys.answers)
        signatures = await world.query(
            "xmpp.secure.test", "RRSIG", server=world.authoritative_address
        )
        self.assertTrue([r for r in signatures.answers if r.rdata.startswith("A 13 ")])
        unsigned = await world.query(
            "xmpp.insecure.test", "RRSIG", server=world.authoritative_address
        )
        self.assertEqual(unsigned.answers, ())
        self.assertEqual(
            sorted(world.trust_anchors), ["bogus.test", "partly.test", "secure.test"]
        )
        with open(world.trust_anchor_file) as f:
            self.assertEqual(len(f.read().splitlines()), 3)

    async def test_stop_leaves_no_process(self):
        world = await self.start_world()
        pids = world.process_ids
        self.assertEqual(sorted(pids), ["knotd", "unbound"])
        await world.stop()
        self.assertEqual(world.process_ids, {})
        self.assertEqual([name for name, pid in pids.items() if running(pid)], [])
        await world.stop()

    async def test_other_addresses(self):
        world = DNSSECWorld(self.mktemp(), address_auth="127.0.0.22",
                            address_resolver="127.0.0.23")
        self.addCleanup(world.stop)
        world.zone("secure.test")
        world.add("secure.test", "xmpp", "A", "127.0.0.5")
        await world.start()
        self.assertEqual(world.authoritative_address[0], "127.0.0.22")
        self.assertEqual(world.resolver_address[0], "127.0.0.23")
        result = await world.query("xmpp.secure.test", "A")
        self.assertEqual((result.rcode, result.authenticated), ("NOERROR", True))
        # Zones are fixed once the servers run: unbound's anchors are made.
        self.assertRaises(DNSWorldError, world.zone, "late.test")

    async def test_port_taken_before_start(self):
        """
        When another process takes the free port chosen for a server before
        it binds it, the world picks another port.
        """
        world = DNSSECWorld(self.mktemp(), address_auth="127.0.0.22",
                            address_resolver="127.0.0.23")
        self.addCleanup(world.stop)
        world.zone("secure.test")
        world.add("secure.test", "xmpp", "A", "127.0.0.5")
        taken = []
        for address, port in (world.authoritative_address, world.resolver_address):
            thief = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.addCleanup(thief.close)
            thief.bind((address, port))
            taken.append(port)
        await world.start()
        self.assertNotIn(world.authoritative_address[1], taken)
        self.assertNotIn(world.resolver_address[1], taken)
        result = await world.query("xmpp.secure.test", "A")
        self.assertEqual((result.rcode, result.authenticated), ("NOERROR", True))

    async def test_bad_record_fails_start_cleanly(self):
        world = DNSSECWorld(self.mktemp())
        self.addCleanup(world.stop)
        world.zone("secure.test")
        world.add("secure.test", "_5269._tcp.xmpp", "TLSA", "3 1 1 not-hex")
        error = None
        try:
            await world.start()
        except DNSWorldError as e:
            error = e
        self.assertIsNotNone(error)
        self.assertIn("hexadecimal", str(error))
        self.assertEqual(world.process_ids, {})
