"""
Tests for L{gateway.records}: the authentication record, its JSON form,
and the two record stores (SQLite and in-memory), which share one set of
behaviour tests so the fake can't drift from the real thing.
"""

import dataclasses
import functools
import json
import os
import sqlite3
import threading

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactor
from twisted.python import threadable
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from gateway.records.interfaces import IRecordStore, RecordStoreError, check_limit
from gateway.records.memory import MemoryRecordStore
from gateway.records.record import AuthenticationRecord, time_iso
from gateway.records.sqlite import BATCH_DELAY, SCHEMA_VERSION, SQLiteRecordStore
from gateway.verifiers.interfaces import Verdict

#: 2024-05-01T12:00:00Z
MAY_DAY = 1714564800.0

CERTIFICATE = {
    "sha256": "ab" * 32,
    "spki_sha256": "cd" * 32,
    "subject": "CN=bücher.example",
    "issuer": "CN=Ünïcode Test CA,O=Prüfstelle",
    "not_before": "2024-01-01T00:00:00Z",
    "not_after": "2025-01-01T00:00:00Z",
    "sans": [["DNS", "bücher.example"], ["SRV", "_xmpp-server.bücher.example"]],
}


def make_record(**changes):
    """
    A fully populated record, with C{changes}.
    """
    values = dict(
        peer_domain="bücher.example",
        local_domain="example.org",
        direction="inbound",
        stream_id="s-0001",
        time=MAY_DAY,
        method="pkix",
        evidence={
            "identity": "SRV-ID",
            "value": "_xmpp-server.bücher.example",
            "chain": [{"depth": 0, "names": ["bücher.example", "日本.example"]}],
            "nested": {"ok": True, "none": None, "ratio": 0.125, "count": 3},
        },
        tls_version="TLSv1.3",
        cipher="TLS_AES_256_GCM_SHA384",
        certificate=CERTIFICATE,
        verdicts=(
            Verdict.not_applicable("dane", "no TLSA records for _5269._tcp.bücher.example"),
            Verdict.verified("pkix", "certificate matches", identity="SRV-ID"),
        ),
        authenticated=True,
        reason="",
    )
    values.update(changes)
    return AuthenticationRecord(**values)


def refused_record(**changes):
    """
    A record of a refused outbound stream, with every optional value
    missing.
    """
    values = dict(
        peer_domain="evil.example",
        local_domain="example.org",
        direction="outbound",
        stream_id=None,
        time=MAY_DAY + 60,
        method="none",
        evidence={},
        tls_version=None,
        cipher=None,
        certificate=None,
        verdicts=(
            Verdict.failed("dane", "TLSA records don't match", decisive=True, port=5269),
        ),
        authenticated=False,
        reason="DANE: TLSA records don't match — refused",
    )
    values.update(changes)
    return AuthenticationRecord(**values)


def deferred_test(method):
    """
    Run an C{async def} test method as a Deferred, which trial waits for.
    """

    @functools.wraps(method)
    def run(self):
        return defer.Deferred.fromCoroutine(method(self))

    return run


class AuthenticationRecordTests(unittest.SynchronousTestCase):
    """
    L{AuthenticationRecord} is a frozen value with an exact JSON form.
    """

    def test_as_dict_is_json(self):
        """
        C{as_dict} gives every field, JSON-serialisable, with C{time} also
        as an ISO 8601 UTC timestamp.
        """
        record = make_record()
        d = record.as_dict()
        self.assertEqual(
            set(d),
            {field.name for field in dataclasses.fields(AuthenticationRecord)} | {"time_iso"},
        )
        self.assertEqual(d["time_iso"], "2024-05-01T12:00:00.000000Z")
        self.assertEqual(d["time"], MAY_DAY)
        self.assertEqual(d["certificate"], CERTIFICATE)
        self.assertEqual(
            d["verdicts"],
            [
                {
                    "verifier": "dane",
                    "outcome": "not-applicable",
                    "reason": "no TLSA records for _5269._tcp.bücher.example",
                    "evidence": {},
                    "decisive": False,
                },
                {
                    "verifier": "pkix",
                    "outcome": "verified",
                    "reason": "certificate matches",
                    "evidence": {"identity": "SRV-ID"},
                    "decisive": False,
                },
            ],
        )
        json.dumps(d)

    def test_round_trip(self):
        """
        C{from_dict(as_dict())} gives an equal record, directly and through
        JSON text, for a full record and one with every optional value
        missing.
        """
        for record in [make_record(), refused_record()]:
            self.assertEqual(AuthenticationRecord.from_dict(record.as_dict()), record)
            text = json.dumps(record.as_dict())
            self.assertEqual(AuthenticationRecord.from_dict(json.loads(text)), record)

    def test_round_trip_fraction_of_a_second(self):
        """
        Times keep their fraction of a second exactly.
        """
        record = make_record(time=1714564800.123456789)
        again = AuthenticationRecord.from_dict(json.loads(json.dumps(record.as_dict())))
        self.assertEqual(again.time, 1714564800.123456789)
        self.assertEqual(record.time_iso, "2024-05-01T12:00:00.123457Z")

    def test_time_iso(self):
        """
        L{time_iso} spells seconds since the epoch in UTC.
        """
        cases = [
            (0, "1970-01-01T00:00:00.000000Z"),
            (MAY_DAY + 0.25, "2024-05-01T12:00:00.250000Z"),
            (951782400, "2000-02-29T00:00:00.000000Z"),
        ]
        for seconds, expected in cases:
            self.assertEqual(time_iso(seconds), expected)

    def test_normalised(self):
        """
        Verdicts may be given as L{Verdict}s or dicts, in a list or a
        tuple; times as ints.  Equal records compare equal either way.
        """
        verdict = Verdict.verified("pkix", "certificate matches", identity="SRV-ID")
        from_objects = make_record(verdicts=[verdict], time=int(MAY_DAY))
        from_dicts = make_record(verdicts=(verdict.as_dict(),), time=MAY_DAY)
        self.assertEqual(from_objects, from_dicts)
        self.assertEqual(from_objects.verdicts, (verdict.as_dict(),))
        self.assertIsInstance(from_objects.time, float)

    def test_frozen(self):
        """
        A record can't be changed.
        """
        record = make_record()
        with self.assertRaises(dataclasses.FrozenInstanceError):
            record.peer_domain = "other.example"

    def test_as_dict_copies(self):
        """
        Changing what C{as_dict} gives doesn't change the record.
        """
        record = make_record()
        d = record.as_dict()
        d["evidence"]["nested"]["ok"] = False
        d["certificate"]["sans"].append(["DNS", "other.example"])
        d["verdicts"][0]["reason"] = "changed"
        self.assertEqual(record, make_record())

    def test_from_dict_ignores_extra_keys(self):
        """
        C{from_dict} ignores keys it doesn't know, and defaults the
        optional ones.
        """
        d = {
            "peer_domain": "example.net",
            "local_domain": "example.org",
            "direction": "outbound",
            "time": MAY_DAY,
            "method": "dialback",
            "authenticated": True,
            "time_iso": "ignored",
            "future_field": [1, 2],
        }
        self.assertEqual(
            AuthenticationRecord.from_dict(d),
            AuthenticationRecord(
                peer_domain="example.net",
                local_domain="example.org",
                direction="outbound",
                stream_id=None,
                time=MAY_DAY,
                method="dialback",
                evidence={},
                tls_version=None,
                cipher=None,
                certificate=None,
                verdicts=(),
                authenticated=True,
            ),
        )

    def test_from_dict_missing_keys(self):
        """
        C{from_dict} names the required keys that are missing.
        """
        d = make_record().as_dict()
        del d["method"]
        del d["time"]
        error = self.assertRaises(ValueError, AuthenticationRecord.from_dict, d)
        self.assertEqual(str(error), "authentication record lacks 'time', 'method'")

    def test_bad_direction(self):
        """
        The direction is C{inbound} or C{outbound}.
        """
        error = self.assertRaises(ValueError, make_record, direction="sideways")
        self.assertIn("'sideways'", str(error))

    def test_check_limit(self):
        """
        A listing's limit is a non-negative integer or L{None}.
        """
        for good in [0, 1, 100, None]:
            self.assertEqual(check_limit(good), good)
        for bad in [-1, 1.5, "10", True]:
            self.assertRaises(ValueError, check_limit, bad)


class BoundedTests(unittest.SynchronousTestCase):
    """
    What a peer puts in a record (the names of its certificate, reasons
    quoting what it sent) is cut to a bounded size.
    """

    def test_small_values_untouched(self):
        from gateway.records.record import bounded

        value = {"a": [1, "two", {"c": None}], "b": "text"}
        self.assertIs(bounded(value), value)

    def test_cut(self):
        from gateway.records.record import bounded

        value = {"names": [f"n{i}" for i in range(100)], "long": "x" * 5000,
                 "many": {f"k{i}": i for i in range(50)}}
        cut = bounded(value, max_items=10, max_chars=100)
        self.assertEqual(cut["names"], [f"n{i}" for i in range(9)] + ["(91 more left out)"])
        self.assertEqual(len(cut["long"]), 100)
        self.assertTrue(cut["long"].endswith("(4900 more characters)"))
        self.assertEqual(len(cut["many"]), 10)
        self.assertEqual(cut["many"]["left_out"], "41 more entries left out")
        # Cutting again changes nothing, and the value itself is left as it was.
        self.assertEqual(bounded(cut, max_items=10, max_chars=100), cut)
        self.assertEqual(len(value["names"]), 100)

    def test_within_agrees_with_bounded(self):
        """
        L{within} says, without building anything, whether L{bounded} would
        leave a value as it is.
        """
        from gateway.records.record import bounded, within

        values = [
            "x" * 100, "x" * 101, 7, None, [], {}, ["a"] * 10, ["a"] * 11,
            {"k": ["a", {"b": "y" * 101}]}, {"k" * 101: 1}, {f"k{i}": i for i in range(11)},
            ("a", ("b", "z" * 100)), ("a", ("b", "z" * 101)),
        ]
        for value in values:
            self.assertEqual(within(value, 10, 100), bounded(value, 10, 100) is value, value)

    def test_record_keeps_what_fits(self):
        """
        A record whose parts are within every limit keeps them as given; one
        within the per-item limits but over L{MAX_BYTES} in all is cut.
        """
        import json

        from gateway.records.record import MAX_BYTES

        evidence = {"valid_until": "2030-01-01T00:00:00Z", "names": ["a.example"]}
        certificate = {"sha256": "ab" * 32, "sans": [["DNS", "a.example"]]}
        record = AuthenticationRecord(
            "peer.example", "local.example", "inbound", "s", 1.0, "pkix",
            evidence, "TLSv1.3", "X", certificate, (), True,
        )
        self.assertIs(record.evidence, evidence)
        self.assertIs(record.certificate, certificate)
        large = {f"key{i}": "y" * 1000 for i in range(30)}
        record = AuthenticationRecord(
            "peer.example", "local.example", "inbound", "s", 1.0, "pkix",
            large, "TLSv1.3", "X", certificate, (), True,
        )
        self.assertLessEqual(
            len(json.dumps([record.evidence, record.certificate, record.verdicts, record.reason])),
            MAX_BYTES,
        )
        self.assertNotEqual(record.evidence, large)

    def test_record_size_bounded(self):
        """
        Whatever a record is given, its evidence, certificate and verdicts
        take at most MAX_BYTES of JSON, and it still round-trips.
        """
        import json

        from gateway.records.record import MAX_BYTES

        certificate = {"sha256": "ab" * 32, "spki_sha256": "cd" * 32, "subject": "CN=x",
                       "sans": [["DNS", f"name{i}.example"] for i in range(5000)]}
        evidence = {f"key{i}": ["y" * 1000] * 40 for i in range(40)}
        verdicts = tuple({"verifier": "v", "outcome": "failed", "reason": "z" * 10_000,
                          "evidence": evidence, "decisive": False} for _ in range(40))
        record = AuthenticationRecord(
            "peer.example", "local.example", "inbound", "s", 1.0, "refused",
            evidence, "TLSv1.3", "X", certificate, verdicts, False, "r" * 100_000,
        )
        self.assertLessEqual(
            len(json.dumps([record.evidence, record.certificate, record.verdicts, record.reason])),
            MAX_BYTES,
        )
        self.assertEqual(record.certificate["sha256"], "ab" * 32)
        self.assertEqual(AuthenticationRecord.from_dict(record.as_dict()), record)


class RecordStoreTestsMixin:
    """
    What every L{IRecordStore} does.  Mixed into a L{unittest.TestCase}
    that defines C{make_store()}.
    """

    def store(self):
        """
        A new store that is closed when the test ends.
        """
        store = self.make_store()
        self.addCleanup(store.close)
        return store

    def test_interface(self):
        """
        The store provides L{IRecordStore}.
        """
        self.assertTrue(verifyObject(IRecordStore, self.store()))

    @deferred_test
    async def test_peer_summaries(self):
        """
        One summary per peer, by name, a page at a time: when last seen, how,
        and how many certificates it presented.
        """
        from gateway.records.interfaces import PeerSummary

        store = self.store()
        other = dict(make_record().certificate, sha256="ff" * 32)
        await store.add(make_record(time=1.0, peer_domain="b.example"))
        await store.add(make_record(time=2.0, peer_domain="b.example", certificate=other))
        await store.add(refused_record(time=3.0, peer_domain="b.example"))
        await store.add(make_record(time=4.0, peer_domain="a.example", certificate=None))
        await store.add(make_record(time=5.0, peer_domain="c.example"))
        first = await store.peer_summaries(limit=2)
        self.assertEqual([s.peer_domain for s in first], ["a.example", "b.example"])
        self.assertEqual(
            first[1], PeerSummary("b.example", 3.0, refused_record().method, False, 2)
        )
        self.assertEqual(first[0].certificates, 0)
        rest = await store.peer_summaries(limit=2, after="b.example")
        self.assertEqual([(s.peer_domain, s.last_method) for s in rest], [("c.example", "pkix")])
        self.assertEqual(len(await store.peer_summaries(limit=None)), 3)

    @deferred_test
    async def test_latest_accepted(self):
        """
        One record per peer: its newest that accepted it with a certificate;
        refusals and records without a certificate don't count.
        """
        store = self.store()
        await store.add(make_record(time=1.0, peer_domain="a.example"))
        await store.add(make_record(time=3.0, peer_domain="a.example"))
        await store.add(refused_record(time=4.0, peer_domain="a.example"))
        await store.add(make_record(time=2.0, peer_domain="b.example"))
        await store.add(make_record(time=5.0, peer_domain="b.example", certificate=None))
        await store.add(refused_record(time=6.0, peer_domain="c.example"))
        latest = await store.latest_accepted()
        self.assertEqual([(r.peer_domain, r.time) for r in latest],
                         [("a.example", 3.0), ("b.example", 2.0)])

    @deferred_test
    async def test_prune(self):
        """
        Records made before a time are forgotten, then all but the newest N;
        the count of those forgotten comes back.
        """
        store = self.store()
        for n in range(10):
            store.add(make_record(time=1000.0 + n, peer_domain=f"p{n % 2}.example"))
        self.assertEqual(await store.prune(before=1003.0), 3)
        self.assertEqual([r.time for r in await store.recent(limit=None)],
                         [1009.0, 1008.0, 1007.0, 1006.0, 1005.0, 1004.0, 1003.0])
        self.assertEqual(await store.prune(keep=4), 3)
        self.assertEqual([r.time for r in await store.recent(limit=None)],
                         [1009.0, 1008.0, 1007.0, 1006.0])
        self.assertEqual([r.time for r in await store.for_peer("p1.example")], [1009.0, 1007.0])
        self.assertEqual(await store.prune(), 0)
        self.assertEqual(await store.prune(before=2000.0, keep=10), 4)
        self.assertEqual(await store.recent(), [])

    @deferred_test
    async def test_empty(self):
        """
        A new store has no records.
        """
        store = self.store()
        self.assertEqual(await store.recent(), [])
        self.assertEqual(await store.for_peer("example.net"), [])

    @deferred_test
    async def test_round_trip(self):
        """
        A record comes back equal, every field included: nested dicts,
        unicode, L{None}s, a refusal.
        """
        store = self.store()
        full = make_record()
        refused = refused_record()
        self.assertIsNone(await store.add(full))
        await store.add(refused)
        self.assertEqual(await store.recent(), [refused, full])
        self.assertEqual(await store.for_peer("bücher.example"), [full])
        [again] = await store.for_peer("evil.example")
        self.assertEqual(again, refused)
        self.assertIs(again.authenticated, False)
        self.assertIsNone(again.certificate)

    @deferred_test
    async def test_recent_newest_first(self):
        """
        C{recent} lists records newest first, whatever order they were
        added in.
        """
        store = self.store()
        times = [MAY_DAY + 5, MAY_DAY, MAY_DAY + 10, MAY_DAY + 1]
        for index, time in enumerate(times):
            await store.add(make_record(time=time, stream_id=f"s-{index}"))
        records = await store.recent()
        self.assertEqual([r.time for r in records], sorted(times, reverse=True))
        self.assertEqual([r.stream_id for r in records], ["s-2", "s-0", "s-3", "s-1"])

    @deferred_test
    async def test_same_time_last_added_first(self):
        """
        Of records with the same time, the one added last is listed first.
        """
        store = self.store()
        for index in range(3):
            await store.add(make_record(stream_id=f"s-{index}"))
        records = await store.recent()
        self.assertEqual([r.stream_id for r in records], ["s-2", "s-1", "s-0"])

    @deferred_test
    async def test_limit(self):
        """
        C{limit} keeps the newest records; 0 gives none and L{None} all.
        """
        store = self.store()
        for index in range(5):
            await store.add(make_record(time=MAY_DAY + index, stream_id=f"s-{index}"))
        await store.add(refused_record(time=MAY_DAY + 100))
        self.assertEqual(len(await store.recent()), 6)
        self.assertEqual(
            [r.stream_id for r in await store.recent(limit=2)], [None, "s-4"]
        )
        self.assertEqual(
            [r.stream_id for r in await store.for_peer("bücher.example", limit=2)],
            ["s-4", "s-3"],
        )
        self.assertEqual(
            [r.stream_id for r in await store.for_peer("bücher.example", 3)],
            ["s-4", "s-3", "s-2"],
        )
        self.assertEqual(await store.recent(limit=0), [])
        self.assertEqual(len(await store.recent(limit=None)), 6)
        self.assertEqual(len(await store.for_peer("bücher.example", limit=None)), 5)

    @deferred_test
    async def test_default_limit(self):
        """
        By default, listings give at most 100 records.
        """
        store = self.store()
        for index in range(105):
            await store.add(make_record(time=MAY_DAY + index))
        records = await store.recent()
        self.assertEqual(len(records), 100)
        self.assertEqual(records[0].time, MAY_DAY + 104)
        self.assertEqual(len(await store.for_peer("bücher.example")), 100)

    @deferred_test
    async def test_bad_limit(self):
        """
        A negative limit fails the listing with L{ValueError}.
        """
        store = self.store()
        with self.assertRaises(ValueError):
            await store.recent(limit=-1)
        with self.assertRaises(ValueError):
            await store.for_peer("example.net", limit=-1)

    @deferred_test
    async def test_for_peer_filters(self):
        """
        C{for_peer} gives the records of one peer only, both directions,
        and matches the domain exactly.
        """
        store = self.store()
        await store.add(make_record(peer_domain="a.example", time=MAY_DAY))
        await store.add(make_record(peer_domain="b.example", time=MAY_DAY + 1))
        await store.add(
            make_record(peer_domain="a.example", direction="outbound", time=MAY_DAY + 2)
        )
        await store.add(make_record(peer_domain="aa.example", time=MAY_DAY + 3))
        records = await store.for_peer("a.example")
        self.assertEqual(
            [(r.peer_domain, r.direction) for r in records],
            [("a.example", "outbound"), ("a.example", "inbound")],
        )
        self.assertEqual(await store.for_peer("A.EXAMPLE"), [])
        self.assertEqual(await store.for_peer("%.example"), [])

    @deferred_test
    async def test_add_not_a_record(self):
        """
        Adding something that isn't an L{AuthenticationRecord} fails with
        L{TypeError}.
        """
        store = self.store()
        with self.assertRaises(TypeError):
            await store.add(make_record().as_dict())
        self.assertEqual(await store.recent(), [])

    @deferred_test
    async def test_add_not_json(self):
        """
        A record whose evidence or certificate isn't JSON-serialisable is
        refused with L{TypeError}, and nothing is stored.
        """
        store = self.store()
        with self.assertRaises(TypeError):
            await store.add(make_record(evidence={"when": object()}))
        with self.assertRaises(TypeError):
            await store.add(make_record(certificate={"ratio": float("nan")}))
        self.assertEqual(await store.recent(), [])

    @deferred_test
    async def test_stored_records_are_snapshots(self):
        """
        Changing a record's evidence after adding it changes nothing
        stored.
        """
        store = self.store()
        record = make_record()
        await store.add(record)
        record.evidence["nested"]["ok"] = False
        [stored] = await store.recent()
        self.assertEqual(stored, make_record())

    @deferred_test
    async def test_closed(self):
        """
        After C{close}, calls fail with L{RecordStoreError}; closing again
        is harmless.
        """
        store = self.store()
        await store.add(make_record())
        self.assertIsNone(await store.close())
        with self.assertRaises(RecordStoreError):
            await store.add(make_record())
        with self.assertRaises(RecordStoreError):
            await store.recent()
        with self.assertRaises(RecordStoreError):
            await store.for_peer("bücher.example")
        self.assertIsNone(await store.close())


class MemoryRecordStoreTests(RecordStoreTestsMixin, unittest.TestCase):
    """
    L{MemoryRecordStore} behaves as a record store.
    """

    def make_store(self):
        return MemoryRecordStore()

    def test_synchronous(self):
        """
        Its Deferreds have already fired, and C{records} lists what was
        added, in order.
        """
        store = self.store()
        first, second = make_record(time=MAY_DAY + 1), make_record(time=MAY_DAY)
        self.assertIsNone(self.successResultOf(store.start()))
        self.assertIsNone(self.successResultOf(store.add(first)))
        self.successResultOf(store.add(second))
        self.assertEqual(store.records, [first, second])
        self.assertEqual(self.successResultOf(store.recent()), [first, second])
        self.successResultOf(store.close())
        self.assertTrue(store.closed)


class SQLiteRecordStoreTests(RecordStoreTestsMixin, unittest.TestCase):
    """
    L{SQLiteRecordStore} behaves as a record store, keeps its records in a
    file, and never makes the reactor wait.
    """

    def setUp(self):
        self.folder = self.mktemp()
        os.makedirs(self.folder)
        self.path = os.path.join(self.folder, "records.sqlite")

    def make_store(self):
        # No start(): the behaviour tests also cover the lazy schema.
        return SQLiteRecordStore(self.path)

    @deferred_test
    async def test_start(self):
        """
        C{start} makes the file and its schema; calling it again is
        harmless.
        """
        store = self.store()
        self.assertIsNone(await store.start())
        self.assertTrue(os.path.exists(self.path))
        self.assertIsNone(await store.start())
        await store.add(make_record())
        self.assertEqual(await store.recent(), [make_record()])

    @deferred_test
    async def test_survives_reopen(self):
        """
        A new store on the same file gives the records added before, and
        adds to them.
        """
        store = SQLiteRecordStore(self.path)
        await store.start()
        await store.add(make_record())
        await store.add(refused_record())
        await store.close()

        store = self.store()
        await store.start()
        self.assertEqual(await store.recent(), [refused_record(), make_record()])
        await store.add(make_record(time=MAY_DAY + 3600, stream_id="s-later"))
        await store.close()

        store = self.store()
        self.assertEqual(
            [r.stream_id for r in await store.recent()], ["s-later", None, "s-0001"]
        )

    @deferred_test
    async def test_schema(self):
        """
        The file holds the versioned schema, in WAL mode, with indexes on
        peer domain and time, and the JSON columns as JSON text.
        """
        store = SQLiteRecordStore(self.path)
        await store.start()
        await store.add(make_record())
        await store.add(refused_record())
        await store.close()

        connection = sqlite3.connect(self.path)
        self.addCleanup(connection.close)
        self.assertEqual(
            connection.execute("PRAGMA user_version").fetchone(), (SCHEMA_VERSION,)
        )
        self.assertEqual(SCHEMA_VERSION, 1)
        self.assertEqual(connection.execute("PRAGMA journal_mode").fetchone(), ("wal",))
        columns = {
            row[1]: row[2]
            for row in connection.execute("PRAGMA table_info(authentication)")
        }
        self.assertEqual(
            columns,
            {
                "id": "INTEGER",
                "time": "REAL",
                "peer_domain": "TEXT",
                "local_domain": "TEXT",
                "direction": "TEXT",
                "stream_id": "TEXT",
                "method": "TEXT",
                "authenticated": "INTEGER",
                "reason": "TEXT",
                "tls_version": "TEXT",
                "cipher": "TEXT",
                "evidence": "TEXT",
                "certificate": "TEXT",
                "verdicts": "TEXT",
            },
        )
        indexed = set()
        for (name,) in connection.execute(
            "SELECT name FROM sqlite_master "
            "WHERE type = 'index' AND tbl_name = 'authentication'"
        ):
            indexed.update(
                row[2] for row in connection.execute(f"PRAGMA index_info({name})")
            )
        self.assertTrue({"peer_domain", "time"} <= indexed)
        for peer_domain, evidence, certificate, verdicts in connection.execute(
            "SELECT peer_domain, evidence, certificate, verdicts FROM authentication"
        ):
            record = make_record() if peer_domain == "bücher.example" else refused_record()
            self.assertEqual(json.loads(evidence), record.evidence)
            self.assertEqual(
                None if certificate is None else json.loads(certificate),
                record.certificate,
            )
            self.assertEqual(json.loads(verdicts), list(record.verdicts))
        # Unicode is stored as such, not as escapes, for operators reading
        # the file with the sqlite3 shell.
        (evidence,) = connection.execute(
            "SELECT evidence FROM authentication WHERE peer_domain = 'bücher.example'"
        ).fetchone()
        self.assertIn("日本.example", evidence)

    @deferred_test
    async def test_reactor_not_blocked(self):
        """
        C{add} and the listings return before the database is touched,
        which happens in another thread; their Deferreds fire later, in the
        reactor's thread.
        """
        store = self.store()
        threads_seen = []
        original_insert = store._insert_many

        def insert(transaction, rows):
            threads_seen.append(threadable.isInIOThread())
            return original_insert(transaction, rows)

        self.patch(store, "_insert_many", insert)

        added = store.add(make_record())
        self.assertFalse(added.called)
        listed = store.recent()
        self.assertFalse(listed.called)

        fired_in_io_thread = []
        added.addCallback(lambda result: fired_in_io_thread.append(threadable.isInIOThread()))
        await added
        self.assertEqual(await listed, [make_record()])

        # Again, now that the reactor is running and the pool started.
        added = store.add(make_record(time=MAY_DAY + 1))
        self.assertFalse(added.called)
        await added
        self.assertEqual(len(await store.recent()), 2)
        self.assertEqual(threads_seen, [False, False])
        self.assertEqual(fired_in_io_thread, [True])

    @deferred_test
    async def test_group_commit(self):
        """
        Records added together are written in one transaction, and those
        added while a batch is being written wait for the next; each
        Deferred fires once its own record is committed, in order.
        """
        store = self.store()
        batches = []
        original_insert = store._insert_many

        def insert(transaction, rows):
            batches.append(len(rows))
            return original_insert(transaction, rows)

        self.patch(store, "_insert_many", insert)
        added = [store.add(make_record(time=MAY_DAY + n)) for n in range(3)]
        fired = []
        for n, d in enumerate(added):
            d.addCallback(lambda _, n=n: fired.append(n))
        # The batch is being written: these wait for the next one.
        await deferLater(reactor, BATCH_DELAY * 1.5, lambda: None)
        added += [store.add(make_record(time=MAY_DAY + n)) for n in range(3, 5)]
        for n, d in enumerate(added[3:], 3):
            d.addCallback(lambda _, n=n: fired.append(n))
        await defer.gatherResults(added)
        self.assertEqual(batches, [3, 2])
        self.assertEqual(fired, list(range(5)))
        self.assertEqual(len(await store.recent()), 5)

    @deferred_test
    async def test_read_sees_what_waits_for_a_batch(self):
        """
        A listing includes every record added before it, even one waiting
        while another batch is being written.
        """
        store = self.store()
        gate = threading.Event()
        original_insert = store._insert_many

        def insert(transaction, rows):
            gate.wait(10)
            return original_insert(transaction, rows)

        self.patch(store, "_insert_many", insert)
        first = store.add(make_record(time=MAY_DAY))
        # The first batch is now being written (held at the gate).
        await deferLater(reactor, BATCH_DELAY * 3, lambda: None)
        second = store.add(make_record(time=MAY_DAY + 1))
        listed = store.recent()
        gate.set()
        self.assertEqual(len(await listed), 2)
        await defer.gatherResults([first, second])

    @deferred_test
    async def test_batch_failure(self):
        """
        When a batch can't be written, every record in it fails with
        L{RecordStoreError}; the next batch is tried afresh.
        """
        store = self.store()
        original_insert = store._insert_many
        failing = [True]

        def insert(transaction, rows):
            if failing[0]:
                raise sqlite3.OperationalError("disk I/O error")
            return original_insert(transaction, rows)

        self.patch(store, "_insert_many", insert)
        added = [store.add(make_record(time=MAY_DAY + n)) for n in range(3)]
        for d in added:
            with self.assertRaises(RecordStoreError) as caught:
                await d
            self.assertIn("disk I/O error", str(caught.exception))
        failing[0] = False
        await store.add(make_record(time=MAY_DAY + 10))
        self.assertEqual(len(await store.recent()), 1)

    @deferred_test
    async def test_close_writes_what_was_added(self):
        """
        Closing while a batch is being written writes the records added
        before it, and refuses those added after it.
        """
        store = self.store()
        added = [store.add(make_record(time=MAY_DAY + n)) for n in range(3)]
        closed = store.close()
        late = store.add(make_record(time=MAY_DAY + 100))
        with self.assertRaises(RecordStoreError):
            await late
        await defer.gatherResults(added)
        await closed
        reopened = self.store()
        self.assertEqual(len(await reopened.recent()), 3)

    def test_missing_folder(self):
        """
        A path whose folder doesn't exist is refused at once, with a
        message naming the folder.
        """
        missing = os.path.join(self.folder, "no-such-state")
        path = os.path.join(missing, "records.sqlite")
        error = self.assertRaises(RecordStoreError, SQLiteRecordStore, path)
        self.assertIn(os.path.abspath(missing), str(error))
        self.assertIn("does not exist", str(error))
        self.assertFalse(os.path.exists(missing))

    @deferred_test
    async def test_not_a_database(self):
        """
        A file that isn't a SQLite database makes C{start} fail with
        L{RecordStoreError} naming the file; the file is left alone.
        """
        with open(self.path, "wb") as f:
            f.write(b"not a database, but an operator's notes\n" * 100)
        store = self.store()
        with self.assertRaises(RecordStoreError) as caught:
            await store.start()
        self.assertIn(self.path, str(caught.exception))
        with self.assertRaises(RecordStoreError):
            await store.recent()
        with open(self.path, "rb") as f:
            self.assertTrue(f.read().startswith(b"not a database"))

    @deferred_test
    async def test_newer_schema(self):
        """
        A database with a newer schema version is refused, not changed.
        """
        connection = sqlite3.connect(self.path)
        connection.execute("PRAGMA user_version = 7")
        connection.close()
        store = self.store()
        with self.assertRaises(RecordStoreError) as caught:
            await store.start()
        self.assertIn("schema version 7", str(caught.exception))
        connection = sqlite3.connect(self.path)
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute("PRAGMA user_version").fetchone(), (7,))

    @deferred_test
    async def test_close_waits_for_work(self):
        """
        C{close} right after C{add} still stores the record, and every
        caller of C{close} is told when it is done.
        """
        store = SQLiteRecordStore(self.path)
        added = store.add(make_record())
        first = store.close()
        second = store.close()
        self.assertIsNone(await added)
        self.assertIsNone(await first)
        self.assertIsNone(await second)

        store = self.store()
        self.assertEqual(await store.recent(), [make_record()])

    def test_close_before_reactor_runs(self):
        """
        A store whose reactor never ran closes at once.
        """
        reactor = MemoryReactor()
        store = SQLiteRecordStore(self.path, reactor=reactor)
        self.assertIsNone(self.successResultOf(store.close()))
        self.assertFalse(os.path.exists(self.path))

    @deferred_test
    async def test_pool_stopped_by_shutdown(self):
        """
        Once the reactor's shutdown has stopped the pool, calls fail with
        L{RecordStoreError} rather than never firing, and C{close} still
        fires.
        """
        store = self.store()
        await store.start()
        # What the reactor's shutdown trigger does.
        store._pool.finalClose()
        with self.assertRaises(RecordStoreError):
            await store.add(make_record())
        self.assertIsNone(await store.close())
