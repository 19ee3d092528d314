"""
The admin interface end to end (RFC 7590 section 3.6): real gateways on
loopback federate, and the status page, the JSON API, the metrics and the
ctl tool say, for each stream, whether it is encrypted, with which TLS
version and cipher, how the peer was authenticated (or that it was not),
which certificate it presented, and warn once when a peer's certificate
changes.
"""

import datetime
import hashlib
import json
import os
import re
import sys
import urllib.parse
from html.parser import HTMLParser

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import serverFromString
from twisted.trial import unittest
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from gateway.app.config import default_config
from gateway.ops.admin import make_admin_site, render_status_page, session_value
from tests.support import World, error_condition, wait_for

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Helpers ----------------------------------------------------------------------


class Response:
    def __init__(self, code, headers, body):
        self.code = code
        self.headers = headers
        self.body = body

    def header(self, name):
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    @property
    def text(self):
        return self.body.decode("utf-8")


async def admin_port(service):
    (port,) = await service.listening_ports("admin")
    return port.getHost().port


async def http(service, path, token=True, method=b"GET", headers=None, body=None, timeout=10):
    """
    Request C{path} from C{service}'s admin interface; C{token} C{True}
    sends the right bearer token, a string sends that one, L{None} none.
    """
    port = await admin_port(service)
    return await http_port(port, path, service.state.admin_token if token is True else token,
                           method, headers, body, timeout)


async def http_port(port, path, token=None, method=b"GET", headers=None, body=None, timeout=10):
    import io

    from twisted.web.client import FileBodyProducer

    all_headers = Headers()
    if token is not None:
        all_headers.addRawHeader(b"Authorization", b"Bearer " + token.encode("utf-8"))
    for name, value in (headers or {}).items():
        all_headers.addRawHeader(name, value)
    producer = FileBodyProducer(io.BytesIO(body)) if body is not None else None
    d = Agent(reactor).request(
        method, f"http://127.0.0.1:{port}{path}".encode("ascii"), all_headers, producer
    )
    d.addTimeout(timeout, reactor)
    response = await d
    content = readBody(response)
    content.addTimeout(timeout, reactor)
    return Response(response.code, response.headers, await content)


def leaf_sha256(certificate_file):
    with open(certificate_file, "rb") as f:
        certificate = x509.load_pem_x509_certificates(f.read())[0]
    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


def chain_der(pem_bytes):
    return [c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(pem_bytes)]


def certificate_file_of(service, domain):
    return service.state.identity(domain).certificate_file


async def exchange(world, a, b, a_domain="a.test", b_domain="b.test", alice=None, bob=None):
    """
    A message each way between components on C{a} and C{b} (attached
    now unless given).
    """
    alice = alice or await world.component(a, a_domain)
    bob = bob or await world.component(b, b_domain)
    alice.message(f"alice@{a_domain}", f"bob@{b_domain}", "to bob", "ab")
    received = await bob.next()
    assert str(received.body) == "to bob", received.toXml()
    bob.message(f"bob@{b_domain}", f"alice@{a_domain}", "to alice", "ba")
    received = await alice.next()
    assert str(received.body) == "to alice", received.toXml()
    return alice, bob


def by_direction(streams, peer):
    found = {}
    for stream in streams:
        if stream["peer_domain"] == peer:
            assert stream["direction"] not in found, streams
            found[stream["direction"]] = stream
    return found


def live(service, peer):
    return {
        s.direction: s for s in service.federation.streams
        if s.authentications and s.authentications[0].peer_domain == peer
    }


class ProcessResult(protocol.ProcessProtocol):
    """
    Collects a child process's output; kills it (by its own pid) when it
    overruns.
    """

    def __init__(self):
        self.out = []
        self.err = []
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.out.append(data)

    def errReceived(self, data):
        self.err.append(data)

    def processEnded(self, reason):
        self.ended.callback(reason.value.exitCode)


async def run_ctl(*arguments, timeout=30):
    """
    Run C{python -m gateway.ctl ARGUMENTS} without blocking the reactor
    (the gateway it talks to runs on it).

    @return: C{(exit status, stdout, stderr)}.
    """
    result = ProcessResult()
    process = reactor.spawnProcess(
        result, sys.executable, [sys.executable, "-m", "gateway.ctl", *arguments],
        env=dict(os.environ, PYTHONPATH=HERE, PYTHONDONTWRITEBYTECODE="1"), path=HERE,
    )
    timer = reactor.callLater(timeout, lambda: process.signalProcess("KILL"))
    try:
        code = await result.ended
    finally:
        if timer.active():
            timer.cancel()
    return code, b"".join(result.out).decode("utf-8"), b"".join(result.err).decode("utf-8")


def ctl_arguments(service, port):
    return ["--url", f"http://127.0.0.1:{port}", "--state-dir", service.state.state_dir]


def parse_iso(value):
    assert value.endswith("Z"), value
    return datetime.datetime.fromisoformat(value[:-1]).replace(tzinfo=datetime.timezone.utc)


def restart_dns(world, domain):
    world.dns.authority.clear(f"_xmpp-server._tcp.{domain}")
    world.dns.authority.clear(f"xmpp.{domain}")


async def replace_peer(world, old, domain, observer, **gateway_options):
    """
    Stop C{old} (the gateway for C{domain}) and start it again with a new
    certificate from the test CA, on the same state folder and s2s port
    (peers have its SRV record cached), once C{observer} has no stream
    with the old one left.
    """
    port = old.s2s_port
    await old.stopService()
    await wait_for(lambda: not live(observer, domain))
    restart_dns(world, domain)
    folder = os.path.join(world.folder, f"{domain}-renewed")
    files = world.ca.write_identity(folder, domain)
    return await world.gateway(domain, certificate_files=files, s2s_port=port, **gateway_options)


# The streams ----------------------------------------------------------------


class StreamsTests(unittest.TestCase):
    """
    /api/streams for streams set up each way a peer can be accepted.
    """

    timeout = 60

    def assert_tls_matches_the_other_side(self, ours, theirs):
        """
        C{ours} (JSON) describes the same TLS connection as the live stream
        C{theirs} on the peer gateway.
        """
        self.assertEqual(ours["tls_version"], theirs.tls.version)
        self.assertEqual(ours["cipher"], theirs.tls.cipher)

    @defer.inlineCallbacks
    def test_pkix_streams(self):
        """
        Two gateways that trust each other's CA: both streams at a.test are
        encrypted, verified by PKIX and authenticated with SASL EXTERNAL,
        and show the certificate b.test presents.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test", trust_ca=True))
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test", trust_ca=True))
        yield defer.Deferred.fromCoroutine(exchange(world, a, b))
        response = yield defer.Deferred.fromCoroutine(http(a, "/api/streams"))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.header(b"content-type"), b"application/json; charset=utf-8")
        data = response.json()
        self.assertEqual(list(data), ["streams"])
        streams = by_direction(data["streams"], "b.test")
        self.assertEqual(sorted(streams), ["inbound", "outbound"])
        b_sha256 = leaf_sha256(certificate_file_of(b, "b.test"))
        theirs = live(b, "a.test")
        now = datetime.datetime.now(datetime.timezone.utc)
        for direction, stream in streams.items():
            self.assertEqual(
                sorted(stream),
                sorted([
                    "id", "direction", "local_domain", "peer_domain", "state", "encrypted",
                    "tls_version", "cipher", "authenticated", "method", "authenticated_by",
                    "evidence", "authentications", "certificate", "since", "stanzas_in",
                    "stanzas_out", "certificate_changed", "previous_certificate",
                ]),
            )
            self.assertRegex(stream["id"], r"^s\d+$")
            self.assertEqual(stream["local_domain"], "a.test")
            self.assertIs(stream["encrypted"], True)
            self.assertIn(stream["tls_version"], ("TLSv1.2", "TLSv1.3"))
            self.assertTrue(stream["cipher"])
            other = theirs["outbound" if direction == "inbound" else "inbound"]
            self.assert_tls_matches_the_other_side(stream, other)
            self.assertIs(stream["authenticated"], True)
            self.assertEqual(stream["method"], "pkix")
            self.assertEqual(stream["authenticated_by"], "SASL EXTERNAL")
            self.assertEqual(stream["evidence"]["identity"], "DNS-ID")
            self.assertEqual(stream["evidence"]["matched"], "b.test")
            (authentication,) = stream["authentications"]
            self.assertEqual(
                (authentication["peer_domain"], authentication["local_domain"],
                 authentication["method"], authentication["authenticated_by"]),
                ("b.test", "a.test", "pkix", "SASL EXTERNAL"),
            )
            certificate = stream["certificate"]
            self.assertEqual(certificate["sha256"], b_sha256)
            self.assertEqual(certificate["subject"], "CN=b.test")
            self.assertEqual(certificate["issuer"], "CN=Test CA")
            self.assertEqual(certificate["sans"], [["DNS", "b.test"]])
            self.assertEqual(len(certificate["spki_sha256"]), 64)
            self.assertLess(abs((now - parse_iso(stream["since"])).total_seconds()), 60)
            self.assertIs(stream["certificate_changed"], False)
            self.assertIsNone(stream["previous_certificate"])
            self.assertEqual(
                stream["state"],
                "authenticated" if direction == "outbound" else "open, authenticated by SASL",
            )
        # One message went out to b.test and one came in from it.
        self.assertEqual((streams["outbound"]["stanzas_out"], streams["outbound"]["stanzas_in"]), (1, 0))
        self.assertEqual((streams["inbound"]["stanzas_in"], streams["inbound"]["stanzas_out"]), (1, 0))

        # One stream by id, and its peer's chain as PEM.
        stream_id = streams["outbound"]["id"]
        one = yield defer.Deferred.fromCoroutine(http(a, f"/api/streams/{stream_id}"))
        self.assertEqual(one.json(), streams["outbound"])
        for stream in streams.values():
            pem = yield defer.Deferred.fromCoroutine(
                http(a, f"/api/streams/{stream['id']}/certificate")
            )
            self.assertEqual(pem.code, 200)
            self.assertEqual(pem.header(b"content-type"), b"application/x-pem-file")
            with open(certificate_file_of(b, "b.test"), "rb") as f:
                self.assertEqual(chain_der(pem.body), chain_der(f.read()))
            self.assertEqual(len(chain_der(pem.body)), 2)
        for path in ("/api/streams/s999", "/api/streams/s999/certificate", "/api/streams/%FF"):
            missing = yield defer.Deferred.fromCoroutine(http(a, path))
            self.assertEqual(missing.code, 404, path)
            self.assertIn("error", missing.json())

    @defer.inlineCallbacks
    def test_dialback_stream(self):
        """
        A gateway that can't verify a.test's certificate accepts it by
        dialback: its inbound stream says so, still encrypted, with a.test's
        certificate.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test", trust_ca=True))
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test"))  # system store only
        yield defer.Deferred.fromCoroutine(exchange(world, a, b))
        response = yield defer.Deferred.fromCoroutine(http(b, "/api/streams"))
        streams = by_direction(response.json()["streams"], "a.test")
        inbound = streams["inbound"]
        self.assertEqual(inbound["method"], "dialback")
        self.assertEqual(inbound["authenticated_by"], "dialback")
        self.assertIs(inbound["authenticated"], True)
        self.assertIs(inbound["encrypted"], True)
        self.assertIn(inbound["tls_version"], ("TLSv1.2", "TLSv1.3"))
        self.assert_tls_matches_the_other_side(inbound, live(a, "b.test")["outbound"])
        self.assertEqual(inbound["certificate"]["sha256"], leaf_sha256(certificate_file_of(a, "a.test")))
        self.assertEqual(inbound["stanzas_in"], 1)
        # And a.test, which verified b.test by PKIX, authenticated to it by dialback.
        response = yield defer.Deferred.fromCoroutine(http(a, "/api/streams"))
        outbound = by_direction(response.json()["streams"], "b.test")["outbound"]
        self.assertEqual((outbound["method"], outbound["authenticated_by"]), ("pkix", "dialback"))

    @defer.inlineCallbacks
    def test_unauthenticated_better_than_nothing(self):
        """
        Under a better-than-nothing policy, a self-signed peer's streams are
        encrypted but unauthenticated: method none, the failed PKIX verdict
        in the evidence, and the self-signed certificate shown.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway(
            "a.test", trust_ca=True,
            policy='verifiers = ["pkix"]\nallow_unauthenticated = true\n',
        ))
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test", certificate=False))
        yield defer.Deferred.fromCoroutine(exchange(world, a, b))
        response = yield defer.Deferred.fromCoroutine(http(a, "/api/streams"))
        streams = by_direction(response.json()["streams"], "b.test")
        self.assertEqual(sorted(streams), ["inbound", "outbound"])
        b_sha256 = leaf_sha256(certificate_file_of(b, "b.test"))
        theirs = live(b, "a.test")
        for direction, stream in streams.items():
            self.assertEqual(stream["method"], "none")
            self.assertIs(stream["encrypted"], True)
            self.assertIn(stream["tls_version"], ("TLSv1.2", "TLSv1.3"))
            self.assert_tls_matches_the_other_side(
                stream, theirs["outbound" if direction == "inbound" else "inbound"]
            )
            self.assertEqual(stream["certificate"]["sha256"], b_sha256)
            self.assertEqual(stream["certificate"]["issuer"], "CN=b.test")  # self-signed
        self.assertEqual(streams["inbound"]["authenticated_by"], "dialback")
        # The page marks them for a person.
        page = yield defer.Deferred.fromCoroutine(http(a, "/"))
        self.assertEqual(page.code, 200)
        for stream in streams.values():
            row = re.search(rf'<tr class="([^"]*)" data-stream="{stream["id"]}">', page.text)
            self.assertIsNotNone(row, page.text)
            self.assertIn("unauthenticated", row.group(1).split())
        self.assertIn("UNAUTHENTICATED", page.text)


# Peers ----------------------------------------------------------------------


class PeersTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_peer_history(self):
        """
        /api/peers lists the peers in the records; /api/peers/<domain> has
        each certificate with the verifications that saw it.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test", trust_ca=True))
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test", trust_ca=True))
        yield defer.Deferred.fromCoroutine(exchange(world, a, b))
        yield wait_for(lambda: len(live(a, "b.test")) == 2)
        peers = (yield defer.Deferred.fromCoroutine(http(a, "/api/peers"))).json()
        self.assertEqual(sorted(peers), ["next", "peers"])
        self.assertIsNone(peers["next"])
        (peer,) = peers["peers"]
        self.assertEqual(peer["peer_domain"], "b.test")
        self.assertEqual(peer["last_method"], "pkix")
        self.assertIs(peer["last_authenticated"], True)
        self.assertEqual(peer["certificates"], 1)
        parse_iso(peer["last_seen"])

        detail = (yield defer.Deferred.fromCoroutine(http(a, "/api/peers/b.test"))).json()
        (entry,) = detail["history"]
        self.assertEqual(entry["certificate"]["sha256"], leaf_sha256(certificate_file_of(b, "b.test")))
        self.assertEqual(
            sorted((v["direction"], v["method"], v["authenticated_by"], v["authenticated"])
                   for v in entry["verifications"]),
            [("inbound", "pkix", "SASL EXTERNAL", True), ("outbound", "pkix", "SASL EXTERNAL", True)],
        )
        for verification in entry["verifications"]:
            self.assertIn(verification["tls_version"], ("TLSv1.2", "TLSv1.3"))
            self.assertTrue(verification["cipher"])
            self.assertEqual(verification["local_domain"], "a.test")

        # Any spelling of the domain finds the same history.
        spelt = (yield defer.Deferred.fromCoroutine(http(a, "/api/peers/B.TEST."))).json()
        self.assertEqual(spelt, detail)

        missing = yield defer.Deferred.fromCoroutine(http(a, "/api/peers/nobody.test"))
        self.assertEqual(missing.code, 404)
        self.assertEqual(missing.json(), {"error": "no records for nobody.test"})


class RecordStoreHealthTests(unittest.TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def test_known_peers_served_while_records_fail(self):
        """
        When records can't be written, a peer accepted before is accepted
        again on new streams (its record is held, and written once the store
        is back), a peer never seen is refused, and /api/records and the
        status page say so.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test"))
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test"))
        c = yield defer.Deferred.fromCoroutine(world.gateway("c.test"))
        alice = yield defer.Deferred.fromCoroutine(world.component(a, "a.test"))
        bob = yield defer.Deferred.fromCoroutine(world.component(b, "b.test"))
        carol = yield defer.Deferred.fromCoroutine(world.component(c, "c.test"))
        yield defer.Deferred.fromCoroutine(exchange(world, a, b, alice=alice, bob=bob))
        health = (yield defer.Deferred.fromCoroutine(http(a, "/api/records"))).json()
        self.assertEqual((health["available"], health["accepting"]), (True, "all peers"))

        # The store fails; b's streams end, so that it must authenticate anew.
        store = a.records
        self.patch(store, "add", lambda record: defer.fail(OSError("disk full")))
        self.patch(store, "recent", lambda limit=100: defer.fail(OSError("disk full")))
        for stream in list(a.federation.streams):
            stream.transport.abortConnection()
        yield wait_for(lambda: not a.federation.streams and not b.federation.streams)
        before = len((yield b.records.recent(limit=None)))

        bob.message("bob@b.test", "alice@a.test", "while the disk is full", "known")
        received = yield defer.Deferred.fromCoroutine(alice.next(timeout=20))
        self.assertEqual(received["id"], "known")
        self.flushLoggedErrors(OSError)
        self.assertGreater(len((yield b.records.recent(limit=None))), before)

        carol.message("carol@c.test", "alice@a.test", "hello?", "stranger")
        bounced = yield defer.Deferred.fromCoroutine(carol.next(timeout=20))
        self.assertEqual((bounced["id"], bounced["type"]), ("stranger", "error"))
        self.assertEqual(len(alice.received.pending), 0)

        health = (yield defer.Deferred.fromCoroutine(http(a, "/api/records"))).json()
        self.assertEqual(
            (health["available"], health["accepting"], health["lost"]),
            (False, "known peers only", 0),
        )
        self.assertGreaterEqual(health["held"], 2)
        page = (yield defer.Deferred.fromCoroutine(http(a, "/"))).body.decode("utf-8")
        self.assertIn("authentication records can't be written: accepting known peers only",
                      page)

        # The store is back: what was held is written.
        held = health["held"]
        self.patch(store, "add", type(store).add.__get__(store))
        self.patch(store, "recent", type(store).recent.__get__(store))
        a.federation.sweep()
        yield wait_for(lambda: a.federation.keeper.available)
        yield wait_for(lambda: a.federation.records_state()["held"] == 0)
        store._write_now()
        written = yield store.recent(limit=None)
        refused = [r for r in written if r.peer_domain == "c.test" and not r.authenticated]
        self.assertTrue(refused)
        self.assertGreaterEqual(len(written), held)


# Certificate changes --------------------------------------------------------


def certificate_change_warnings(warnings):
    return [w for w in warnings if w["kind"] == "certificate-change"]


class CertificateChangeTests(unittest.TestCase):
    """
    RFC 7590 section 3.6: operators are warned when a peer's certificate
    changes; a policy can refuse the new one until they accept it.
    """

    timeout = 90

    @defer.inlineCallbacks
    def test_warned_once(self):
        """
        b.test comes back with a new certificate: exactly one warning, the
        stream that saw it says what it was before, and acknowledging the
        warning marks it so.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test", trust_ca=True))
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test", trust_ca=True))
        alice, _ = yield defer.Deferred.fromCoroutine(exchange(world, a, b))
        old_sha256 = leaf_sha256(certificate_file_of(b, "b.test"))
        warnings = (yield defer.Deferred.fromCoroutine(http(a, "/api/warnings"))).json()
        self.assertEqual(warnings, {"warnings": []})

        b = yield defer.Deferred.fromCoroutine(replace_peer(world, b, "b.test", a, trust_ca=True))
        new_sha256 = leaf_sha256(certificate_file_of(b, "b.test"))
        self.assertNotEqual(new_sha256, old_sha256)
        yield defer.Deferred.fromCoroutine(exchange(world, a, b, alice=alice))

        warnings = (yield defer.Deferred.fromCoroutine(http(a, "/api/warnings"))).json()["warnings"]
        (warning,) = warnings
        self.assertEqual(warning["kind"], "certificate-change")
        self.assertEqual(warning["peer_domain"], "b.test")
        self.assertIs(warning["acknowledged"], False)
        self.assertEqual(warning["details"]["sha256"], new_sha256)
        self.assertEqual(warning["details"]["previous_sha256"], old_sha256)
        self.assertIs(warning["details"]["key_changed"], True)
        self.assertIs(warning["details"]["refused"], False)
        self.assertIn("b.test presented a new certificate and key", warning["message"])

        streams = (yield defer.Deferred.fromCoroutine(http(a, "/api/streams"))).json()["streams"]
        ours = [s for s in streams if s["peer_domain"] == "b.test"]
        self.assertEqual(len(ours), 2)
        for stream in ours:
            self.assertEqual(stream["certificate"]["sha256"], new_sha256)
        # The first stream to see the new certificate carries the change;
        # after that it is the one expected.
        (changed,) = [s for s in ours if s["certificate_changed"]]
        self.assertEqual(changed["previous_certificate"]["previous_sha256"], old_sha256)
        self.assertIs(changed["previous_certificate"]["key_changed"], True)
        page = yield defer.Deferred.fromCoroutine(http(a, "/"))
        self.assertRegex(page.text, rf'<tr class="changed" data-stream="{changed["id"]}">')
        self.assertIn("CERTIFICATE CHANGED", page.text)

        metrics = (yield defer.Deferred.fromCoroutine(http(a, "/metrics"))).text
        self.assertIn('xmpp_gateway_warnings_total{kind="certificate-change"} 1.0', metrics)

        # Acknowledging it.
        wrong_method = yield defer.Deferred.fromCoroutine(
            http(a, f"/api/warnings/{warning['id']}/acknowledge")
        )
        self.assertEqual(wrong_method.code, 405)
        self.assertEqual(wrong_method.header(b"allow"), b"POST")
        acknowledged = yield defer.Deferred.fromCoroutine(
            http(a, f"/api/warnings/{warning['id']}/acknowledge", method=b"POST")
        )
        self.assertEqual((acknowledged.code, acknowledged.json()), (200, {"acknowledged": True}))
        (warning,) = (yield defer.Deferred.fromCoroutine(http(a, "/api/warnings"))).json()["warnings"]
        self.assertIs(warning["acknowledged"], True)
        for unknown in ("999", "x"):
            missing = yield defer.Deferred.fromCoroutine(
                http(a, f"/api/warnings/{unknown}/acknowledge", method=b"POST")
            )
            self.assertEqual(missing.code, 404)

    @defer.inlineCallbacks
    def test_refused_until_acknowledged(self):
        """
        With on_certificate_change = "refuse" for b.test, its new
        certificate is refused (our message bounces) and warned about once;
        once the warning is acknowledged, the new certificate is accepted.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway(
            "a.test", trust_ca=True,
            extra='[policy.domains."b.test"]\non_certificate_change = "refuse"\n',
        ))
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test", trust_ca=True))
        alice, _ = yield defer.Deferred.fromCoroutine(exchange(world, a, b))

        b = yield defer.Deferred.fromCoroutine(replace_peer(world, b, "b.test", a, trust_ca=True))
        new_sha256 = leaf_sha256(certificate_file_of(b, "b.test"))
        bob = yield defer.Deferred.fromCoroutine(world.component(b, "b.test"))
        alice.message("alice@a.test", "bob@b.test", "refused", "r1")
        bounce = yield defer.Deferred.fromCoroutine(alice.next())
        self.assertEqual(bounce["id"], "r1")
        self.assertEqual(bounce["type"], "error")
        self.assertEqual(error_condition(bounce), "remote-server-not-found")
        self.assertIn("policy refuses certificate changes until a warning is acknowledged",
                      str(bounce.error.text))
        self.assertEqual(live(a, "b.test"), {})

        warnings = (yield defer.Deferred.fromCoroutine(http(a, "/api/warnings"))).json()["warnings"]
        (change,) = certificate_change_warnings(warnings)
        self.assertIs(change["details"]["refused"], True)
        self.assertEqual(change["details"]["sha256"], new_sha256)
        self.assertIn("refused", change["message"])
        # Trying again before the acknowledgement is refused again, and not
        # warned about again.
        alice.message("alice@a.test", "bob@b.test", "refused again", "r2")
        bounce = yield defer.Deferred.fromCoroutine(alice.next())
        self.assertEqual((bounce["id"], error_condition(bounce)), ("r2", "remote-server-not-found"))
        warnings = (yield defer.Deferred.fromCoroutine(http(a, "/api/warnings"))).json()["warnings"]
        self.assertEqual(len(certificate_change_warnings(warnings)), 1)

        acknowledged = yield defer.Deferred.fromCoroutine(
            http(a, f"/api/warnings/{change['id']}/acknowledge", method=b"POST")
        )
        self.assertEqual(acknowledged.json(), {"acknowledged": True})
        alice.message("alice@a.test", "bob@b.test", "accepted", "ok")
        received = yield defer.Deferred.fromCoroutine(bob.next())
        self.assertEqual(str(received.body), "accepted")
        streams = (yield defer.Deferred.fromCoroutine(http(a, "/api/streams"))).json()["streams"]
        (outbound,) = [s for s in streams if s["peer_domain"] == "b.test" and s["direction"] == "outbound"]
        self.assertEqual(outbound["certificate"]["sha256"], new_sha256)
        self.assertEqual(outbound["method"], "pkix")
        self.assertIs(outbound["certificate_changed"], False)  # accepted: it is the expected one now
        warnings = (yield defer.Deferred.fromCoroutine(http(a, "/api/warnings"))).json()["warnings"]
        self.assertEqual(len(certificate_change_warnings(warnings)), 1)


# Access control -------------------------------------------------------------


class AccessTests(unittest.TestCase):
    timeout = 60

    def test_default_listener_is_loopback(self):
        """
        The embedded default configuration serves the admin interface on
        loopback only.
        """
        listen = default_config(self.mktemp()).admin.listen
        self.assertTrue(listen)
        for description in listen:
            endpoint = serverFromString(reactor, description)
            self.assertIn(endpoint._interface, ("127.0.0.1", "::1"), description)

    @defer.inlineCallbacks
    def test_token_required(self):
        """
        Without the token, or with a wrong one, every path answers 401 with
        a JSON error and a Bearer challenge, and no data.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test", trust_ca=True))
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test", trust_ca=True))
        yield defer.Deferred.fromCoroutine(exchange(world, a, b))
        paths = ["/api/streams", "/api/streams/s1", "/api/streams/s1/certificate", "/api/peers",
                 "/api/peers/b.test", "/api/warnings", "/metrics", "/nowhere",
                 f"/api/streams?token={a.state.admin_token}"]
        for token in (None, "wrong", a.state.admin_token + "x", ""):
            for path in paths:
                response = yield defer.Deferred.fromCoroutine(http(a, path, token=token))
                self.assertEqual(response.code, 401, (token, path))
                self.assertTrue(response.header(b"www-authenticate").startswith(b"Bearer"))
                self.assertEqual(list(response.json()), ["error"])
                self.assertNotIn(b"b.test", response.body)
            ack = yield defer.Deferred.fromCoroutine(
                http(a, "/api/warnings/1/acknowledge", token=token, method=b"POST")
            )
            self.assertEqual(ack.code, 401)
            page = yield defer.Deferred.fromCoroutine(http(a, "/", token=token))
            self.assertEqual(page.code, 401)
            self.assertIn('action="/login"', page.text)
            self.assertNotIn("b.test", page.text)
        # Other schemes are not the bearer token.
        basic = yield defer.Deferred.fromCoroutine(http(a, "/api/streams", token=None, headers={
            b"Authorization": b"Basic " + a.state.admin_token.encode("ascii")}))
        self.assertEqual(basic.code, 401)
        # The right one works, on every path.
        for path in paths[:-3]:
            response = yield defer.Deferred.fromCoroutine(http(a, path))
            self.assertEqual(response.code, 200, path)

    @defer.inlineCallbacks
    def test_refused_on_every_path(self):
        """
        Every resource of the interface, with every method, refuses a
        request without the token, with a wrong one, or with the session
        cookie where it does not reach: 401 and no data.  The page, its
        acknowledge buttons and the sign-in form first say which methods
        they take (405); nothing is acknowledged.
        """
        status = FakeStatus([stream_data()], peers=[{"peer_domain": "b.test"}])
        site = make_admin_site(status, "t0ken")
        port = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site)
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        cookie = {b"Cookie": b"xmpp_gateway_admin=" + session_value("t0ken")}
        reading = [
            "/api", "/api/", "/api/streams", "/api/streams/", "/api/streams/s1",
            "/api/streams/s1/certificate", "/api/streams/s9", "/api/streams/%FF", "/api//streams",
            "/api/peers", "/api/peers?limit=2&after=a.test", "/api/peers/b.test",
            "/api/peers/B.TEST.", "/api/records", "/api/warnings", "/api/warnings/1",
            "/api/warnings/1/acknowledge", "/metrics", "/warnings", "/warnings/1", "/login/x",
            "/nowhere", "/api/streams?token=t0ken",
        ]
        # (path, the methods it takes): other methods get a 405 first.
        doors = [("/", (b"GET", b"HEAD")), ("/?limit=1", (b"GET", b"HEAD")),
                 ("/warnings/1/acknowledge", (b"POST",)), ("/login", (b"POST",))]
        methods = (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE")
        for token, headers in ((None, {}), ("wrong", {}), ("", {}), (None, cookie)):
            for path in reading:
                for method in methods:
                    if headers and method in (b"GET", b"HEAD"):
                        continue  # the cookie reads; see test_browser_session
                    response = yield defer.Deferred.fromCoroutine(
                        http_port(number, path, token, method, headers))
                    where = (token, headers, method, path)
                    self.assertEqual(response.code, 401, where)
                    self.assertTrue(response.header(b"www-authenticate").startswith(b"Bearer"), where)
                    if method != b"HEAD":
                        self.assertEqual(list(response.json()), ["error"], where)
            for path, taken in doors:
                for method in methods:
                    if headers and method in taken and path != "/login":
                        continue  # the cookie reads the page and presses its buttons
                    response = yield defer.Deferred.fromCoroutine(
                        http_port(number, path, token, method, headers))
                    where = (token, headers, method, path)
                    if method in taken:
                        self.assertEqual(response.code, 401, where)
                        self.assertNotIn(b"b.test", response.body, where)
                    else:
                        self.assertEqual((response.code, response.header(b"allow")),
                                         (405, b", ".join(taken)), where)
        self.assertEqual(status.acknowledged, [])
        # The token itself opens every one of them.
        for path in reading:
            response = yield defer.Deferred.fromCoroutine(http_port(number, path, "t0ken"))
            self.assertNotEqual(response.code, 401, path)

    @defer.inlineCallbacks
    def test_browser_session(self):
        """
        A browser signs in with a form post (or a ?token= link) and gets an
        HttpOnly, SameSite=Strict cookie that reads but can't act across
        sites, and is not the token itself.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test"))
        token = a.state.admin_token
        wrong = yield defer.Deferred.fromCoroutine(http(a, "/login", token=None, method=b"POST", headers={
            b"Content-Type": b"application/x-www-form-urlencoded"}, body=b"token=nope"))
        self.assertEqual(wrong.code, 401)
        self.assertIsNone(wrong.header(b"set-cookie"))
        login = yield defer.Deferred.fromCoroutine(http(a, "/login", token=None, method=b"POST", headers={
            b"Content-Type": b"application/x-www-form-urlencoded"},
            body=urllib.parse.urlencode({"token": token}).encode("ascii")))
        self.assertEqual(login.code, 303)
        self.assertEqual(login.header(b"location"), b"/")
        cookie = login.header(b"set-cookie")
        attributes = [part.strip() for part in cookie.split(b";")]
        self.assertIn(b"HttpOnly", attributes)
        self.assertIn(b"SameSite=Strict", attributes)
        self.assertIn(b"Path=/", attributes)
        name_value = attributes[0]
        self.assertEqual(name_value, b"xmpp_gateway_admin=" + session_value(token))
        self.assertNotIn(token.encode("ascii"), cookie)

        link = yield defer.Deferred.fromCoroutine(http(a, "/?token=" + token, token=None))
        self.assertEqual((link.code, link.header(b"location")), (303, b"/"))
        self.assertEqual(link.header(b"set-cookie"), cookie)
        bad_link = yield defer.Deferred.fromCoroutine(http(a, "/?token=nope", token=None))
        self.assertEqual(bad_link.code, 401)

        with_cookie = {b"Cookie": name_value}
        page = yield defer.Deferred.fromCoroutine(http(a, "/", token=None, headers=with_cookie))
        self.assertEqual(page.code, 200)
        self.assertIn("<h1>XMPP gateway status</h1>", page.text)
        for name, value in (
            (b"content-type", b"text/html; charset=utf-8"),
            (b"x-content-type-options", b"nosniff"),
            (b"cache-control", b"no-store"),
            (b"referrer-policy", b"no-referrer"),
        ):
            self.assertEqual(page.header(name), value)
        policy = page.header(b"content-security-policy").decode("ascii")
        self.assertTrue(policy.startswith("default-src 'none'; "), policy)
        self.assertNotIn("script-src", policy)
        self.assertNotIn("<script", page.text)
        api = yield defer.Deferred.fromCoroutine(http(a, "/api/streams", token=None, headers=with_cookie))
        self.assertEqual(api.code, 200)
        # The cookie acts only through the page's own form, from this origin.
        post = yield defer.Deferred.fromCoroutine(http(
            a, "/api/warnings/1/acknowledge", token=None, method=b"POST", headers=with_cookie))
        self.assertEqual(post.code, 401)
        port = yield defer.Deferred.fromCoroutine(admin_port(a))
        cross = yield defer.Deferred.fromCoroutine(http(
            a, "/warnings/1/acknowledge", token=None, method=b"POST",
            headers={**with_cookie, b"Origin": b"http://evil.example"}))
        self.assertEqual(cross.code, 403)
        same = yield defer.Deferred.fromCoroutine(http(
            a, "/warnings/1/acknowledge", token=None, method=b"POST",
            headers={**with_cookie, b"Origin": f"http://127.0.0.1:{port}".encode("ascii")}))
        self.assertEqual((same.code, same.header(b"location")), (303, b"/#warnings"))
        # The cookie is not a bearer token.
        as_bearer = yield defer.Deferred.fromCoroutine(
            http(a, "/api/streams", token=session_value(token).decode("ascii")))
        self.assertEqual(as_bearer.code, 401)
        logout = yield defer.Deferred.fromCoroutine(http(a, "/logout", token=None, method=b"POST"))
        self.assertEqual(logout.code, 303)
        self.assertIn(b"Max-Age=0", logout.header(b"set-cookie"))


# Metrics --------------------------------------------------------------------


class MetricsTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_metrics_after_traffic(self):
        """
        /metrics is Prometheus text: live streams by direction, method and
        TLS version, handshakes by outcome, stanzas routed.
        """
        from prometheus_client.parser import text_string_to_metric_families

        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test", trust_ca=True))
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test", trust_ca=True))
        yield defer.Deferred.fromCoroutine(exchange(world, a, b))
        response = yield defer.Deferred.fromCoroutine(http(a, "/metrics"))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.header(b"content-type"), b"text/plain; version=0.0.4; charset=utf-8")
        samples = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        tls_version = live(a, "b.test")["outbound"].tls.version
        for direction in ("inbound", "outbound"):
            self.assertEqual(samples[("xmpp_gateway_streams", (
                ("direction", direction), ("method", "pkix"), ("tls_version", tls_version)))], 1.0)
            self.assertEqual(samples[("xmpp_gateway_handshakes_total", (
                ("direction", direction), ("outcome", "authenticated")))], 1.0)
        self.assertGreaterEqual(samples[("xmpp_gateway_stanzas_routed_total", ())], 2.0)
        self.assertIn("# TYPE xmpp_gateway_streams gauge", response.text)


# The ctl tool -----------------------------------------------------------------


class CtlTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_ctl_against_a_live_gateway(self):
        """
        python -m gateway.ctl prints the streams table, one stream, its
        certificate, the peers and the warnings; a wrong token exits 1 with
        the gateway's message.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway("a.test", trust_ca=True))
        b = yield defer.Deferred.fromCoroutine(world.gateway("b.test", trust_ca=True))
        yield defer.Deferred.fromCoroutine(exchange(world, a, b))
        port = yield defer.Deferred.fromCoroutine(admin_port(a))
        arguments = ctl_arguments(a, port)

        code, out, err = yield defer.Deferred.fromCoroutine(run_ctl(*arguments, "streams"))
        self.assertEqual((code, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(
            lines[0].split()[:9],
            ["ID", "DIRECTION", "LOCAL", "PEER", "ENCRYPTED", "TLS", "CIPHER", "METHOD", "AUTHENTICATED"],
        )
        self.assertTrue(set(lines[1]) <= {"-", " "})
        rows = [line.split() for line in lines[2:]]
        self.assertEqual(sorted(row[1] for row in rows), ["inbound", "outbound"])
        sha256 = leaf_sha256(certificate_file_of(b, "b.test"))
        for row in rows:
            self.assertEqual(row[2:5], ["a.test", "b.test", "yes"])
            self.assertIn(row[5], ("TLSv1.2", "TLSv1.3"))
            self.assertEqual(row[7:10], ["pkix", "SASL", "EXTERNAL"])
            self.assertEqual(row[10], sha256[:16])
            self.assertEqual(row[11], "CN=b.test")
        stream_id = rows[0][0]

        code, out, err = yield defer.Deferred.fromCoroutine(run_ctl(*arguments, "stream", stream_id))
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"(?m)^method\s+pkix$")
        self.assertRegex(out, rf"(?m)^certificate sha256\s+{sha256}$")
        code, out, err = yield defer.Deferred.fromCoroutine(run_ctl(*arguments, "certificate", stream_id))
        self.assertEqual(code, 0, err)
        with open(certificate_file_of(b, "b.test"), "rb") as f:
            self.assertEqual(chain_der(out.encode("ascii")), chain_der(f.read()))
        code, out, err = yield defer.Deferred.fromCoroutine(run_ctl(*arguments, "peers"))
        self.assertEqual(code, 0, err)
        self.assertEqual(out.splitlines()[2].split()[0], "b.test")
        code, out, err = yield defer.Deferred.fromCoroutine(run_ctl(*arguments, "peer", "b.test"))
        self.assertEqual(code, 0, err)
        self.assertIn(f"certificate {sha256}", out)
        code, out, err = yield defer.Deferred.fromCoroutine(run_ctl(*arguments, "--json", "warnings"))
        self.assertEqual((code, json.loads(out)), (0, {"warnings": []}))
        code, out, err = yield defer.Deferred.fromCoroutine(run_ctl(*arguments, "warnings"))
        self.assertEqual((code, out), (0, "No warnings.\n"))

        # Errors.
        code, out, err = yield defer.Deferred.fromCoroutine(run_ctl(*arguments, "ack", "42"))
        self.assertEqual((code, out, err), (1, "", "gateway.ctl: HTTP 404: no warning 42\n"))
        wrong = os.path.join(world.folder, "wrong.token")
        with open(wrong, "w") as f:
            f.write("not-the-token\n")
        code, out, err = yield defer.Deferred.fromCoroutine(run_ctl(
            "--url", f"http://127.0.0.1:{port}", "--token-file", wrong, "streams"))
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, "gateway.ctl: HTTP 401: the token is not right\n")
        code, out, err = yield defer.Deferred.fromCoroutine(run_ctl(
            "--url", f"http://127.0.0.1:{port}", "--state-dir", world.folder, "streams"))
        self.assertEqual(code, 1)
        self.assertIn("cannot read the admin token from", err)
        code, out, err = yield defer.Deferred.fromCoroutine(run_ctl(*arguments))
        self.assertEqual(code, 2)
        self.assertIn("usage:", err)

    @defer.inlineCallbacks
    def test_unreachable(self):
        """
        No gateway at the URL: exit 1 saying so.
        """
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        with open(os.path.join(folder, "admin.token"), "w") as f:
            f.write("t\n")
        # A port that was free a moment ago.
        port = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(protocol.Factory())
        number = port.getHost().port
        yield port.stopListening()
        code, out, err = yield defer.Deferred.fromCoroutine(run_ctl(
            "--url", f"http://127.0.0.1:{number}", "--state-dir", folder, "streams"))
        self.assertEqual(code, 1)
        self.assertIn(f"cannot reach the admin interface at http://127.0.0.1:{number}", err)


# The page, from data -------------------------------------------------------------


def stream_data(**overrides):
    data = {
        "id": "s1", "direction": "inbound", "local_domain": "a.test", "peer_domain": "b.test",
        "state": "open", "encrypted": True, "tls_version": "TLSv1.3",
        "cipher": "TLS_AES_256_GCM_SHA384", "authenticated": True, "method": "pkix",
        "authenticated_by": "SASL EXTERNAL", "evidence": {}, "authentications": [],
        "certificate": {
            "sha256": "ab" * 32, "spki_sha256": "cd" * 32, "subject": "CN=b.test",
            "issuer": "CN=CA", "not_before": "2026-01-01T00:00:00Z",
            "not_after": "2027-01-01T00:00:00Z", "sans": [["DNS", "b.test"]],
        },
        "since": "2026-11-28T21:14:03.250000Z", "stanzas_in": 3, "stanzas_out": 4,
        "certificate_changed": False, "previous_certificate": None,
    }
    data.update(overrides)
    return data


class FakeStatus:
    """
    What L{gateway.ops.status.StatusSource} offers the admin interface, from
    fixed data.
    """

    def __init__(self, streams=(), warnings=(), peers=()):
        self._streams = list(streams)
        self._warnings = list(warnings)
        self._peers = list(peers)
        self.acknowledged = []

    def streams(self):
        return self._streams

    def stream(self, stream_id):
        for stream in self._streams:
            if stream["id"] == stream_id:
                return stream
        return None

    def stream_info(self, stream):
        return stream

    def stream_certificate_pem(self, stream_id):
        return None

    async def peers(self, limit=1000, after=None):
        names = [p for p in self._peers if after is None or p["peer_domain"] > after]
        return names[:limit]

    async def peer(self, domain):
        return None

    def warnings(self):
        return self._warnings

    def acknowledge(self, warning_id):
        self.acknowledged.append(warning_id)
        return False

    def metrics_text(self):
        return b""

    def records_state(self):
        return {"available": True, "unavailable_since": None, "accepting": "all peers",
                "held": 0, "held_limit": 1000, "lost": 0}


#: The elements and attributes the status page is made of.
PAGE_ELEMENTS = {
    "html", "head", "meta", "link", "title", "style", "body", "h1", "h2", "p", "a", "span",
    "table", "thead", "tbody", "tr", "th", "td", "code", "br", "ul", "li", "strong", "form",
    "button",
}
PAGE_ATTRIBUTES = {
    "lang", "charset", "name", "content", "rel", "href", "class", "id", "title", "data-stream",
    "data-warning", "method", "action", "type",
}


class Markup(HTMLParser):
    """
    A page as a browser reads it: its elements, its attributes as
    C{(name, value)} pairs, and its text, character references resolved.
    """

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements = set()
        self.attributes = set()
        self.text = ""

    @classmethod
    def read(cls, page):
        markup = cls()
        markup.feed(page)
        markup.close()
        return markup

    def handle_starttag(self, tag, attributes):
        self.elements.add(tag)
        self.attributes.update(attributes)
        self.text += "\n"

    def handle_endtag(self, tag):
        self.text += "\n"

    def handle_data(self, data):
        self.text += data


class PageTests(unittest.TestCase):
    """
    The page from data: every peer-controlled string escaped, insecure
    streams marked.
    """

    hostile = "<script>alert('x')</script>&\"'"

    @defer.inlineCallbacks
    def test_escapes_everything(self):
        """
        Every peer-controlled string reaches the browser as text or as an
        attribute value, never as markup: parsed, the page has the strings
        as they were, in every place they are shown, and no element or
        attribute but the page's own.
        """
        hostile = self.hostile
        page = (yield render_status_page(
            [stream_data(
                peer_domain=hostile, local_domain=hostile, cipher=hostile, method=hostile,
                authenticated_by=hostile, state=hostile, id=hostile,
                certificate={**stream_data()["certificate"], "subject": hostile, "sha256": hostile},
            )],
            [{"id": 1, "time": "2026-11-28T21:14:03.250000Z", "kind": hostile,
              "peer_domain": hostile, "message": hostile,
              "details": {"sha256": hostile, "previous_sha256": hostile}, "acknowledged": False},
             {"id": 2, "time": "2026-11-28T21:14:03.250000Z", "kind": "certificate-change",
              "peer_domain": "b.test", "message": "changed",
              "details": {"sha256": hostile, "previous_sha256": hostile}, "acknowledged": True}],
            [{"peer_domain": hostile, "last_seen": "2026-11-28T21:14:03.250000Z",
              "last_method": hostile, "last_authenticated": True, "certificates": 1}],
        )).decode("utf-8")
        self.assertNotIn("<script", page)
        # Text escapes <, > and &; attribute values (in double quotes) " too.
        self.assertIn("&lt;script&gt;alert('x')&lt;/script&gt;&amp;\"'", page)
        self.assertIn('"&lt;script&gt;alert(\'x\')&lt;/script&gt;&amp;&quot;\'"', page)

        markup = Markup.read(page)
        self.assertEqual(markup.elements - PAGE_ELEMENTS, set())
        self.assertEqual({name for name, _ in markup.attributes} - PAGE_ATTRIBUTES, set())
        # The stream's id, local and peer domains, cipher, method, how it
        # was authenticated and the certificate's subject; the warning's
        # kind, peer and message; a certificate change's two fingerprints;
        # the peer's domain and last method.
        self.assertEqual(markup.text.count(hostile), 14, markup.text)
        self.assertIn(("data-stream", hostile), markup.attributes)
        self.assertIn(("title", "SHA-256 " + hostile), markup.attributes)
        quoted = urllib.parse.quote(hostile, safe="")
        self.assertIn(("href", f"/api/streams/{quoted}"), markup.attributes)
        self.assertIn(("href", f"/api/streams/{quoted}/certificate"), markup.attributes)
        self.assertIn(("href", f"/api/peers/{quoted}"), markup.attributes)

    @defer.inlineCallbacks
    def test_marks_insecure_streams(self):
        page = (yield render_status_page(
            [
                stream_data(id="s1"),
                stream_data(id="s2", encrypted=False, tls_version=None, cipher=None,
                            certificate=None, method="dialback", authenticated_by="dialback"),
                stream_data(id="s3", method="none", authenticated_by="dialback"),
                stream_data(id="s4", certificate_changed=True, previous_certificate={
                    "previous_sha256": "ef" * 32, "previous_spki_sha256": "01" * 32,
                    "key_changed": True}),
            ],
            [], [],
        )).decode("utf-8")
        rows = dict(re.findall(r'<tr class="([^"]*)" data-stream="(s\d)">', page)[i][::-1]
                    for i in range(4))
        self.assertEqual(rows, {"s1": "", "s2": "unencrypted", "s3": "unauthenticated", "s4": "changed"})
        self.assertIn("NOT ENCRYPTED", page)
        self.assertIn("UNAUTHENTICATED", page)
        self.assertIn("CERTIFICATE CHANGED", page)
        self.assertIn("efefefefefefefef", page)
        self.assertIn("1 not encrypted", page)
        self.assertIn("1 unauthenticated", page)

    @defer.inlineCallbacks
    def test_warnings_unacknowledged_first(self):
        warnings = [
            {"id": n, "time": "2026-11-28T21:14:03.250000Z", "kind": "certificate-change",
             "peer_domain": "b.test", "message": f"m{n}", "details": {}, "acknowledged": n % 2 == 0}
            for n in (4, 3, 2, 1)
        ]
        page = (yield render_status_page([], warnings, [])).decode("utf-8")
        self.assertEqual(re.findall(r'data-warning="(\d)"', page), ["3", "1", "4", "2"])
        self.assertEqual(page.count('action="/warnings/'), 2)

    @defer.inlineCallbacks
    def test_served_with_a_fake_status(self):
        """
        make_admin_site needs only what StatusSource offers; a failing
        source gives a 500 JSON error, not a traceback.
        """
        status = FakeStatus([stream_data()])
        site = make_admin_site(status, "t0ken")
        port = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site)
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        response = yield defer.Deferred.fromCoroutine(http_port(number, "/api/streams/s1", "t0ken"))
        self.assertEqual(response.json(), stream_data())
        missing = yield defer.Deferred.fromCoroutine(http_port(number, "/api/streams/s1/certificate", "t0ken"))
        self.assertEqual(missing.json(), {"error": "stream s1 has no peer certificate"})
        head = yield defer.Deferred.fromCoroutine(http_port(number, "/api/streams", "t0ken", method=b"HEAD"))
        self.assertEqual((head.code, head.body), (200, b""))

        def broken():
            raise RuntimeError("boom")

        status.warnings = broken
        failed = yield defer.Deferred.fromCoroutine(http_port(number, "/api/warnings", "t0ken"))
        self.assertEqual((failed.code, failed.json()), (500, {"error": "internal error; see the gateway's log"}))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @defer.inlineCallbacks
    def test_paths(self):
        """
        With the token: a trailing slash names the same resource; an empty
        segment inside a path, a segment that is not UTF-8 or one below a
        leaf is not found; each resource says which methods it takes.
        """
        site = make_admin_site(FakeStatus([stream_data()], peers=[{"peer_domain": "b.test"}]), "t0ken")
        port = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site)
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        not_found = {"error": "not found"}
        for method, path, code, body in (
            (b"GET", "/api/streams/", 200, {"streams": [stream_data()]}),
            (b"GET", "/api/streams/s1/", 200, stream_data()),
            (b"GET", "/api/streams/s1/certificate/",
             404, {"error": "stream s1 has no peer certificate"}),
            (b"GET", "/api/peers//", 200, {"peers": [{"peer_domain": "b.test"}], "next": None}),
            (b"GET", "/api/peers/a%2Fb", 404, {"error": "no records for a/b"}),
            (b"GET", "/api/peers?limit=", 400, {"error": "limit must be an integer from 1 to 1000"}),
            (b"GET", "/api", 404, not_found),
            (b"GET", "/api//streams", 404, not_found),
            (b"GET", "/api/streams/%FF", 404, not_found),
            (b"GET", "/api/streams/s1/certificate/x", 404, not_found),
            (b"POST", "/nowhere", 404, not_found),
            (b"POST", "/api/warnings//acknowledge", 404, {"error": "no warning "}),
            (b"PUT", "/api/streams", 405, {"error": "method not allowed"}),
            (b"GET", "/api/warnings/1/acknowledge", 405, {"error": "method not allowed"}),
            (b"POST", "/", 405, {"error": "method not allowed"}),
            (b"GET", "/login", 405, {"error": "method not allowed"}),
        ):
            response = yield defer.Deferred.fromCoroutine(http_port(number, path, "t0ken", method))
            self.assertEqual((response.code, response.json()), (code, body), (method, path))
            if code == 405:
                self.assertEqual(response.header(b"allow"),
                                 b"GET, HEAD" if method != b"GET" else b"POST", path)

    @defer.inlineCallbacks
    def test_peers_paged(self):
        """
        /api/peers comes a page at a time: limit (1 to 1000), after, and
        "next" naming where the next page starts.
        """
        peers = [{"peer_domain": name} for name in ("a.example", "b.example", "c.example")]
        site = make_admin_site(FakeStatus(peers=peers), "t0ken")
        port = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site)
        self.addCleanup(port.stopListening)
        number = port.getHost().port

        def get(path):
            return defer.Deferred.fromCoroutine(http_port(number, path, "t0ken"))

        first = (yield get("/api/peers?limit=2")).json()
        self.assertEqual(
            ([p["peer_domain"] for p in first["peers"]], first["next"]),
            (["a.example", "b.example"], "b.example"),
        )
        rest = (yield get("/api/peers?limit=2&after=b.example")).json()
        self.assertEqual(([p["peer_domain"] for p in rest["peers"]], rest["next"]),
                         (["c.example"], None))
        for bad in ("0", "1001", "x"):
            refused = yield get(f"/api/peers?limit={bad}")
            self.assertEqual(refused.code, 400, bad)

    @defer.inlineCallbacks
    def test_ctl_reads_every_page(self):
        """
        gateway.ctl peers lists every peer, however many pages it takes, and
        gateway.ctl records says whether records can be written.
        """
        peers = [{"peer_domain": f"p{n:04d}.example", "last_seen": "2026-12-02T10:00:00.000000Z",
                  "last_method": "dialback", "last_authenticated": True, "certificates": 0}
                 for n in range(2500)]
        status = FakeStatus(peers=peers)
        status.records_state = lambda: {
            "available": False, "unavailable_since": "2026-12-02T10:00:00.000000Z",
            "accepting": "known peers only", "held": 3, "held_limit": 1000, "lost": 0,
        }
        site = make_admin_site(status, "t0ken")
        port = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site)
        self.addCleanup(port.stopListening)
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        with open(os.path.join(folder, "token"), "w") as f:
            f.write("t0ken")
        arguments = ["--url", f"http://127.0.0.1:{port.getHost().port}",
                     "--token-file", os.path.join(folder, "token")]
        code, out, err = yield defer.Deferred.fromCoroutine(run_ctl(*arguments, "--json", "peers"))
        self.assertEqual(code, 0, err)
        self.assertEqual([p["peer_domain"] for p in json.loads(out)["peers"]],
                         [p["peer_domain"] for p in peers])
        code, out, err = yield defer.Deferred.fromCoroutine(run_ctl(*arguments, "records"))
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"(?m)^accepting\s+known peers only$")
        self.assertRegex(out, r"(?m)^held\s+3 of 1000$")

    def test_needs_a_token(self):
        self.assertRaises(ValueError, make_admin_site, FakeStatus(), "")
        self.assertRaises(ValueError, make_admin_site, FakeStatus(), None)


class CtlFormattingTests(unittest.TestCase):
    """
    The ctl tool's output, from data.
    """

    def test_control_characters_escaped(self):
        from gateway.ops.ctl import printable

        self.assertEqual(printable("CN=\x1b[2Jevil\n"), "CN=\\x1b[2Jevil\\n")
        self.assertEqual(printable(None), "-")
        self.assertEqual((printable(True), printable(False)), ("yes", "no"))

    def test_streams_table_notes(self):
        from gateway.ops.ctl import format_streams

        text = format_streams({"streams": [
            stream_data(id="s1"),
            stream_data(id="s2", encrypted=False, tls_version=None, cipher=None,
                        certificate=None, method="dialback"),
            stream_data(id="s3", method="none", certificate_changed=True),
        ]})
        lines = text.splitlines()
        self.assertEqual(len(lines), 5)
        self.assertTrue(lines[2].startswith("s1 ") and lines[2].rstrip().endswith("4"))
        self.assertTrue(lines[3].endswith("NOT ENCRYPTED"))
        self.assertTrue(lines[4].endswith("UNAUTHENTICATED, CERTIFICATE CHANGED"))
        self.assertEqual(format_streams({"streams": []}), "No live streams.")

    def test_each_command_asks_and_shows(self):
        """
        Each command asks the admin interface for its path (peers page by
        page, ack by POST) and shows the answer formatted, or with
        C{--json} as it came.
        """
        import io

        from gateway.ops import ctl

        def peer(domain):
            return {"peer_domain": domain, "last_seen": None, "last_method": "pkix",
                    "last_authenticated": True, "certificates": 0}

        answers = {
            "/api/streams": {"streams": []},
            "/api/streams/s%2F1": stream_data(id="s/1"),
            "/api/peers?limit=1000": {"peers": [peer("a.test")], "next": "a.test"},
            "/api/peers?limit=1000&after=a.test": {"peers": [peer("b.test")]},
            "/api/records": {"available": True, "unavailable_since": None, "accepting": "all peers",
                             "held": 0, "held_limit": 10, "lost": 0},
            "/api/peers/b.test": peer("b.test"),
            "/api/warnings": {"warnings": []},
            "/api/warnings/7/acknowledge": {"acknowledged": True},
        }
        asked = []

        class Client:
            def __init__(self, url, token):
                pass

            def json(self, path, method="GET"):
                asked.append((method, path))
                return answers[path]

        self.patch(ctl, "AdminClient", Client)
        self.patch(ctl, "read_token", lambda arguments: "token")

        def run(*argv):
            del asked[:]
            out = io.StringIO()
            self.assertEqual(ctl.main(list(argv), out, io.StringIO()), 0)
            return out.getvalue()

        self.assertEqual(run("streams"), "No live streams.\n")
        self.assertRegex(run("stream", "s/1"), r"(?m)^id\s+s/1$")
        self.assertEqual(asked, [("GET", "/api/streams/s%2F1")])
        text = run("peers")
        self.assertEqual([line.split()[0] for line in text.splitlines()[2:]], ["a.test", "b.test"])
        self.assertEqual(len(asked), 2)
        self.assertEqual(
            json.loads(run("--json", "peers")),
            {"peers": [peer("a.test"), peer("b.test")]},
        )
        self.assertRegex(run("records"), r"(?m)^held\s+0 of 10$")
        self.assertRegex(run("peer", "b.test"), r"(?m)^last method\s+pkix$")
        self.assertEqual(run("warnings"), "No warnings.\n")
        self.assertEqual(run("ack", "7"), "warning 7 acknowledged\n")
        self.assertEqual(asked, [("POST", "/api/warnings/7/acknowledge")])
        self.assertEqual(json.loads(run("--json", "ack", "7")), {"acknowledged": True})
