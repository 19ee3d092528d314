"""
POSH (RFC 7711, RFC 7712): parsing and matching as tables; the client
fetching from memory (treq's RequestTraversalAgent, a Clock); the HTTPS
agent on a memory reactor; the whole path against real HTTPS servers on
loopback (certificates from a test CA, names from the loopback DNS server);
the verifier's verdicts; the publisher.
"""

import base64
import datetime
import hashlib
import io
import ipaddress
import json
import os
import socket
import sys
from types import SimpleNamespace

from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from treq.client import HTTPClient
from treq.testing import RequestTraversalAgent
from twisted.internet import defer, error, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import PrivateCertificate
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.plugin import IPlugin
from twisted.protocols.policies import WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web import resource, server
from twisted.web.client import URI, Agent, HTTPConnectionPool, ResponseNeverReceived
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgent
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gateway.app.config import DNSConfig, POSHConfig
from gateway.app.state import LocalIdentity
from gateway.names.client import DNSClient
from gateway.posh.agent import InvalidCertificate, NoAddresses, posh_agent
from gateway.posh.client import (
    ABSENT,
    ERROR,
    FOUND,
    WELL_KNOWN_PATH,
    POSHClient,
    POSHDocument,
    POSHError,
    POSHResult,
    certificate_fingerprint,
    match_posh,
    parse_posh,
    posh_document,
)
from gateway.posh.publisher import main as publisher_main
from gateway.posh.publisher import make_posh_site
from gateway.testing import FakeDNSClient
from gateway.tls.profile import TLSFacts, TLSProfile
from gateway.verifiers.interfaces import (
    IDomainVerifier,
    IDomainVerifierFactory,
    Outcome,
    VerificationRequest,
    VerifierEnvironment,
)
from gateway.verifiers.posh import POSHVerifier, POSHVerifierFactory
from gateway.verifiers.registry import available_verifiers
from tests.dnsserver import LoopbackDNSServer
from tests.pki import CertificateAuthority, _pem_key

TENANT = "tenant.test"
HOSTING = "hosting.test"

# RFC 7711 section 3's example file.
RFC_EXAMPLE = b"""
{
  "fingerprints": [
    {
      "sha-256": "4/mggdlVx8A3pvHAWW5sD+qJyMtUHgiRuPjVC48N0XQ=",
      "sha-512": "25N+1hB2Vo42l9lSGqw+n3BKFhDHsyork8ou+D9B43TXeJ1J81mdQEDqm39oR/EHkPBDDG1y5+AG94Kec0xVqA=="
    }
  ],
  "expires": 604800
}
"""

RFC_REFERENCE = (
    b'{"url":"https://hosting.example.net/.well-known/posh/spice.json","expires":604800}'
)

# A certificate that posh.badxmpp.eu (an interoperability test domain)
# presented in 2021, and the fingerprints published for it, as recorded in
# the tests of xmpp-proxy's POSH support: an independent vector showing that
# the whole DER certificate is hashed, not its SubjectPublicKeyInfo.
BADXMPP_CERTIFICATE = base64.b64decode(
    "MIICHDCCAaGgAwIBAgIUQCykdom3fbgtYxbVzk12uY13FqUwCgYIKoZIzj0EAwIwGjEYMBYGA1UEAwwPcG9zaC5i"
    "YWR4bXBwLmV1MB4XDTIxMTAxNTE0NDkzMloXDTIyMTAxNTE0NDkzMlowGjEYMBYGA1UEAwwPcG9zaC5iYWR4bXBw"
    "LmV1MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEUeyvxJeBihodBTIATT5szGfsgeNE1nNIEjOU+PSDBpfCFEAKw5oI"
    "xB35TGyPvOe1MBSBXcaRFXBSKBZ4AkVRPsKsGjEmUa9GpIbEwcsUvw+NTx8OT81tuTEbpjs0QGy0o4GnMIGkMAwG"
    "A1UdEwQFMAMBAf8wgZMGA1UdEQSBizCBiKAqBggrBgEFBQcIB6AeFhxfeG1wcC1jbGllbnQucG9zaC5iYWR4bXBw"
    "LmV1oCoGCCsGAQUFBwgHoB4WHF94bXBwLXNlcnZlci5wb3NoLmJhZHhtcHAuZXWgHQYIKwYBBQUHCAWgEQwPcG9z"
    "aC5iYWR4bXBwLmV1gg9wb3NoLmJhZHhtcHAuZXUwCgYIKoZIzj0EAwIDaQAwZgIxAKLvjCkY9OV9dX7emghbroYg"
    "bqqWWBaQuIHLqtOEKpS+R88fOfEJbokViKNinY3ugwIxAPJ/oiK8ekF0gfa4aWmoCscbNv2Ns7HD+iSLm4GcSc/t"
    "za9r+uXVsV+0uqJ3UleTFA=="
)
BADXMPP_SHA256 = "6sKZUeE0LBwbCXqeoHJsGCjpFLNrL9QF2W6NhDYnV4I="
BADXMPP_SHA512 = (
    "7S7zdev/QvRxHYguWHhD5Thlolj+H4aHo9Qy3Y1R6p7WGKnNBNPxk+tnHRSIs5CJIHIR3M7a6wNkgAC5uLWL/g=="
)


def der(certificate):
    return certificate.public_bytes(serialization.Encoding.DER)


def b64(data):
    return base64.b64encode(data).decode("ascii")


def spki(certificate):
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def posh_json(**members):
    return json.dumps(members).encode("utf-8")


def wait(seconds):
    d = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


class ParseTests(unittest.SynchronousTestCase):
    """
    L{parse_posh}.
    """

    def test_rfc_example(self):
        document = parse_posh(RFC_EXAMPLE)
        self.assertEqual(document.expires, 604800)
        self.assertIsNone(document.url)
        self.assertEqual(document.descriptors, 1)
        self.assertEqual([name for name, _ in document.fingerprints], ["sha-256", "sha-512"])
        self.assertEqual(
            document.fingerprints[0][1],
            base64.b64decode("4/mggdlVx8A3pvHAWW5sD+qJyMtUHgiRuPjVC48N0XQ="),
        )
        self.assertEqual(len(document.fingerprints[1][1]), 64)

    def test_rfc_reference_example(self):
        document = parse_posh(RFC_REFERENCE)
        self.assertEqual(document.url, "https://hosting.example.net/.well-known/posh/spice.json")
        self.assertEqual(document.expires, 604800)
        self.assertEqual(document.fingerprints, ())
        self.assertTrue(document.is_reference)

    def test_valid_documents(self):
        one = hashlib.sha256(b"one").digest()
        two = hashlib.sha256(b"two").digest()
        long = hashlib.sha512(b"two").digest()
        cases = [
            # (body, fingerprints, expires, descriptors)
            (posh_json(fingerprints=[{"sha-256": b64(one)}], expires=0),
             (("sha-256", one),), 0, 1),
            (posh_json(fingerprints=[{"sha-512": b64(long)}], expires=60),
             (("sha-512", long),), 60, 1),
            (posh_json(fingerprints=[{"sha-256": b64(one)},
                                     {"sha-256": b64(two), "sha-512": b64(long)}],
                       expires=3600),
             (("sha-256", one), ("sha-256", two), ("sha-512", long)), 3600, 2),
            # Unknown hash names are ignored, whatever their values.
            (posh_json(fingerprints=[{"sha-1": "AAAA", "sha-256": b64(one), "blake9": 7}],
                       expires=1),
             (("sha-256", one),), 1, 1),
            (posh_json(fingerprints=[{"md5": "xx"}, {"sha-256": b64(one)}], expires=1),
             (("sha-256", one),), 1, 1),
            # Hash names are compared without case.
            (posh_json(fingerprints=[{"SHA-256": b64(one)}], expires=1),
             (("sha-256", one),), 1, 1),
            # Without expires: used, never cached.
            (posh_json(fingerprints=[{"sha-256": b64(one)}]), (("sha-256", one),), 0, 1),
            # Other members are ignored.
            (posh_json(fingerprints=[{"sha-256": b64(one)}], expires=5, comment="hi"),
             (("sha-256", one),), 5, 1),
            # UTF-8 with a byte order mark.
            (b"\xef\xbb\xbf" + posh_json(fingerprints=[{"sha-256": b64(one)}], expires=5),
             (("sha-256", one),), 5, 1),
        ]
        for body, fingerprints, expires, descriptors in cases:
            document = parse_posh(body)
            self.assertEqual(
                (document.fingerprints, document.expires, document.url, document.descriptors),
                (fingerprints, expires, None, descriptors),
                body,
            )

    def test_references(self):
        cases = [
            (posh_json(url="https://hosting.example/.well-known/posh/xmpp-server.json", expires=10),
             "https://hosting.example/.well-known/posh/xmpp-server.json", 10),
            (posh_json(url="HTTPS://hosting.example:8443/x.json"),
             "HTTPS://hosting.example:8443/x.json", 0),
        ]
        for body, url, expires in cases:
            document = parse_posh(body)
            self.assertEqual((document.url, document.expires, document.fingerprints),
                             (url, expires, ()), body)

    def test_malformed(self):
        good = b64(hashlib.sha256(b"x").digest())
        cases = [
            (b"", "not valid JSON"),
            (b"not json", "not valid JSON"),
            (b'{"fingerprints": [', "not valid JSON"),
            (b"\xff\xfe{}", "not UTF-8 text"),
            (b"[]", "not a JSON object but an array"),
            (b'"text"', "not a JSON object but a string"),
            (b"null", "not a JSON object but null"),
            (b"{}", "neither fingerprints nor url"),
            (b'{"expires": 10}', "neither fingerprints nor url"),
            (posh_json(fingerprints=[{"sha-256": good}], url="https://h.example/x.json"),
             "both fingerprints and url"),
            (posh_json(url="http://hosting.example/x.json"), "is not an https URL"),
            (posh_json(url="ftp://hosting.example/x.json"), "is not an https URL"),
            (posh_json(url="/.well-known/posh/xmpp-server.json"), "is not an https URL"),
            (posh_json(url="https:///x.json"), "names no host"),
            (posh_json(url="https://user:pw@hosting.example/x.json"), "carries credentials"),
            (posh_json(url="https://hosting.example:99999/x.json"), "is not a URL"),
            (posh_json(url=7), "url must be a string, not an integer"),
            (posh_json(fingerprints={"sha-256": good}),
             "fingerprints must be an array, not an object"),
            (posh_json(fingerprints=good), "fingerprints must be an array, not a string"),
            (posh_json(fingerprints=[]), "fingerprints is empty"),
            (posh_json(fingerprints=[good]), "fingerprint 1 must be an object, not a string"),
            (posh_json(fingerprints=[{"sha-256": good}, []]), "fingerprint 2 must be an object"),
            (posh_json(fingerprints=[{"sha-1": "AAAA"}]), "no fingerprint with a supported hash"),
            (posh_json(fingerprints=[{}]), "no fingerprint with a supported hash"),
            (posh_json(fingerprints=[{"sha-256": 12}]), "has a sha-256 that is an integer"),
            (posh_json(fingerprints=[{"sha-256": "not base64!"}]), "is not base64"),
            (posh_json(fingerprints=[{"sha-256": b64(b"short")}]), "of 5 bytes, not 32"),
            (posh_json(fingerprints=[{"sha-512": good}]), "of 32 bytes, not 64"),
            (posh_json(fingerprints=[{"sha-256": good, "SHA-256": good}]), "names a hash twice"),
            (posh_json(fingerprints=[{"sha-256": good}], expires=-1), "must not be negative (-1)"),
            (posh_json(fingerprints=[{"sha-256": good}], expires="3600"),
             "expires must be a whole number of seconds, not a string"),
            (posh_json(fingerprints=[{"sha-256": good}], expires=1.5),
             "expires must be a whole number of seconds, not a number"),
            (posh_json(fingerprints=[{"sha-256": good}], expires=True),
             "expires must be a whole number of seconds, not a boolean"),
            (posh_json(fingerprints=[{"sha-256": good}], expires=None),
             "expires must be a whole number of seconds, not null"),
            (b'{"url": "https://a.example/x", "url": "https://b.example/x"}',
             "the member 'url' appears twice"),
            (b'{"fingerprints": [{"sha-256": "%s"}], "expires": NaN}' % good.encode(),
             "NaN is not a JSON number"),
            (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
        ]
        for body, message in cases:
            with self.assertRaises(POSHError, msg=body[:80]) as caught:
                parse_posh(body)
            self.assertIn(message, str(caught.exception), body[:80])


class MatchTests(unittest.SynchronousTestCase):
    """
    L{match_posh} hashes the whole DER certificate the peer presented.
    """

    def setUp(self):
        self.ca = CertificateAuthority()
        certificate, self.key = self.ca.issue([HOSTING])
        self.certificate = certificate
        self.leaf = der(certificate)
        other, _ = self.ca.issue([HOSTING])
        self.other = der(other)
        # The same key, another certificate: same SPKI, different DER.
        renewed, _ = self.ca.issue([HOSTING], key=self.key)
        self.renewed = der(renewed)

    def document(self, *pairs, url=None):
        return POSHDocument(
            tuple((name, digest) for name, digest in pairs), 3600, url, len(pairs)
        )

    def test_table(self):
        leaf256 = hashlib.sha256(self.leaf).digest()
        leaf512 = hashlib.sha512(self.leaf).digest()
        other256 = hashlib.sha256(self.other).digest()
        spki256 = hashlib.sha256(spki(self.certificate)).digest()
        ca256 = hashlib.sha256(self.ca.der).digest()
        cases = [
            # (document, chain, matched, fingerprint)
            (self.document(("sha-256", leaf256)), [self.leaf], True, f"sha-256:{b64(leaf256)}"),
            (self.document(("sha-512", leaf512)), [self.leaf], True, f"sha-512:{b64(leaf512)}"),
            (self.document(("sha-256", other256), ("sha-256", leaf256)), [self.leaf], True,
             f"sha-256:{b64(leaf256)}"),
            (self.document(("sha-256", other256)), [self.leaf], False, None),
            # The SubjectPublicKeyInfo's hash is not a POSH fingerprint.
            (self.document(("sha-256", spki256)), [self.leaf], False, None),
            # A renewed certificate with the same key needs a new file.
            (self.document(("sha-256", leaf256)), [self.renewed], False, None),
            # Only the peer's own certificate counts, not its CA's.
            (self.document(("sha-256", ca256)), [self.leaf, self.ca.der], False, None),
            (self.document(("sha-256", leaf256)), [self.other, self.leaf], False, None),
            (self.document(("sha-256", leaf256)), [], False, None),
            (self.document(url="https://hosting.test/x.json"), [self.leaf], False, None),
        ]
        for document, chain, matched, fingerprint in cases:
            found = match_posh(document, chain)
            self.assertEqual(
                (found.matched, found.fingerprint), (matched, fingerprint), found.reason
            )
            matched_, fingerprint_, reason = found  # a 3-tuple
            self.assertEqual(reason, found.reason)

    def test_reasons(self):
        other256 = hashlib.sha256(self.other).digest()
        found = match_posh(self.document(("sha-256", other256)), [self.leaf])
        self.assertEqual(
            found.reason,
            f"lists 1 fingerprint; none matches the certificate "
            f"(sha-256:{b64(hashlib.sha256(self.leaf).digest())})",
        )
        two = POSHDocument((("sha-256", other256), ("sha-512", b"\0" * 64)), 1, None, 2)
        self.assertIn("lists 2 fingerprints; none matches", match_posh(two, [self.leaf]).reason)
        self.assertEqual(match_posh(two, []).reason, "the peer presented no certificate")
        self.assertEqual(
            match_posh(self.document(url="https://h.test/x"), [self.leaf]).reason,
            "the document only points to https://h.test/x",
        )

    def test_independent_vector(self):
        """
        The fingerprints posh.badxmpp.eu published for its certificate match
        it, each hash alone; hashes of its SubjectPublicKeyInfo would not.
        """
        for name, value in (("sha-256", BADXMPP_SHA256), ("sha-512", BADXMPP_SHA512)):
            body = posh_json(fingerprints=[{name: value}], expires=86400)
            found = match_posh(parse_posh(body), [BADXMPP_CERTIFICATE])
            self.assertTrue(found.matched, name)
            self.assertEqual(found.fingerprint, f"{name}:{value}")

    def test_rfc_example_matches_nothing_here(self):
        self.assertFalse(match_posh(parse_posh(RFC_EXAMPLE), [self.leaf]).matched)

    def test_certificate_fingerprint(self):
        self.assertEqual(
            certificate_fingerprint(BADXMPP_CERTIFICATE), f"sha-256:{BADXMPP_SHA256}"
        )
        self.assertEqual(
            certificate_fingerprint(BADXMPP_CERTIFICATE, "sha-512"), f"sha-512:{BADXMPP_SHA512}"
        )

    def test_posh_document_round_trip(self):
        body = posh_document(self.leaf, 3600)
        self.assertEqual(
            json.loads(body),
            {
                "fingerprints": [{
                    "sha-256": b64(hashlib.sha256(self.leaf).digest()),
                    "sha-512": b64(hashlib.sha512(self.leaf).digest()),
                }],
                "expires": 3600,
            },
        )
        document = parse_posh(body)
        self.assertEqual(document.descriptors, 1)
        self.assertTrue(match_posh(document, [self.leaf]).matched)
        self.assertFalse(match_posh(document, [self.other]).matched)

    def test_posh_document_several_certificates(self):
        document = parse_posh(posh_document(self.leaf, 60, [self.other]))
        self.assertEqual(document.descriptors, 2)
        self.assertEqual(document.expires, 60)
        for chain in ([self.leaf], [self.other]):
            self.assertTrue(match_posh(document, chain).matched)
        self.assertFalse(match_posh(document, [self.renewed]).matched)

    def test_posh_document_expires(self):
        for bad in (-1, 1.5, "60", True):
            self.assertRaises(ValueError, posh_document, self.leaf, bad)


# A real HTTPS server on loopback.


class Streamer:
    """
    A handler sending C{total} bytes of JSON whitespace a chunk at a time,
    noting how much it sent and whether the client hung up first.
    """

    def __init__(self, total, chunk=1024, declare_length=False, clock=reactor):
        self.clock = clock
        self.total = total
        self.chunk = chunk
        self.declare_length = declare_length
        self.sent = 0
        self.lost = False
        self._call = None

    def __call__(self, request):
        if self.declare_length:
            request.setHeader(b"Content-Length", str(self.total).encode("ascii"))
        request.setHeader(b"Content-Type", b"application/json")
        request.notifyFinish().addErrback(self._hung_up)
        self._next(request)
        return server.NOT_DONE_YET

    def _hung_up(self, failure):
        self.lost = True
        if self._call is not None and self._call.active():
            self._call.cancel()

    def _next(self, request):
        self._call = None
        if self.lost:
            return
        if self.sent >= self.total:
            request.finish()
            return
        request.write(b" " * self.chunk)
        self.sent += self.chunk
        self._call = self.clock.callLater(0.001, self._next, request)


class Never:
    """
    A handler that never answers, noting when the client hangs up.
    """

    def __init__(self):
        self.requests = 0
        self.lost = 0

    def __call__(self, request):
        self.requests += 1
        request.notifyFinish().addErrback(self._hung_up)
        return server.NOT_DONE_YET

    def _hung_up(self, failure):
        self.lost += 1


def later(delay, body, clock=reactor):
    """
    A handler answering C{body} after C{delay} seconds of C{clock}.
    """

    def handle(request):
        def answer():
            if not request.finished and not request._disconnected:
                request.setHeader(b"Content-Type", b"application/json")
                request.write(body)
                request.finish()

        call = clock.callLater(delay, answer)
        request.notifyFinish().addErrback(lambda _: call.active() and call.cancel())
        return server.NOT_DONE_YET

    return handle


class _Routes(resource.Resource):
    isLeaf = True

    def __init__(self, web):
        super().__init__()
        self.web = web

    def render(self, request):
        host = request.getRequestHostname().decode("ascii")
        path = request.path.decode("ascii")
        self.web.requests.append((host, path))
        handler = self.web.routes.get((host, path))
        if handler is None:
            request.setResponseCode(404)
            return b"no such file\n"
        return handler(request)


class _Routing:
    """
    Answers per C{Host} and path (404 for the rest), and records what it
    was asked: C{(host, path)} pairs.
    """

    def __init__(self):
        self.routes = {}
        self.requests = []

    def serve(self, host, body, code=200, path=WELL_KNOWN_PATH, headers=()):
        def handle(request):
            request.setResponseCode(code)
            request.setHeader(b"Content-Type", b"application/json")
            for name, value in headers:
                request.setHeader(name, value)
            return body

        self.routes[(host, path)] = handle

    def route(self, host, handler, path=WELL_KNOWN_PATH):
        self.routes[(host, path)] = handler

    def count(self, host, path=WELL_KNOWN_PATH):
        return self.requests.count((host, path))


class MemoryWeb(_Routing):
    """
    POSH files served from memory: C{agent} (treq's
    L{RequestTraversalAgent}) takes requests for any host to the routes;
    C{clock} times the handlers and the client.
    """

    def __init__(self):
        super().__init__()
        self.clock = Clock()
        self.agent = RequestTraversalAgent(_Routes(self))

    def settle(self):
        """
        Deliver what both sides have written (a fetch that follows a
        reference makes a second request once the first is read).
        """
        for _ in range(10):
            self.agent.flush()


class POSHWebServer(_Routing):
    """
    An HTTPS server on 127.0.0.1 (a random port) answering per C{Host} and
    path, with a certificate from C{ca} for C{names} (or the given
    C{certificate}).  It records what it was asked, and closes every
    connection when the test ends.
    """

    def __init__(self, testcase, ca, names=(TENANT, HOSTING), certificate=None):
        super().__init__()
        if certificate is None:
            certificate = ca.issue(list(names))
        cert, key = certificate
        self.site = server.Site(_Routes(self))
        self.site.noisy = False
        pem = cert.public_bytes(serialization.Encoding.PEM) + _pem_key(key)
        options = PrivateCertificate.loadPEM(pem).options()
        self.connections = WrappingFactory(TLSMemoryBIOFactory(options, False, self.site))
        self.connections.noisy = False
        self.listening = reactor.listenTCP(0, self.connections, interface="127.0.0.1")
        self.port = self.listening.getHost().port
        testcase.addCleanup(self.stop)

    async def stop(self):
        for protocol in list(self.connections.protocols):
            protocol.transport.abortConnection()
        await self.listening.stopListening()
        for _ in range(200):
            if not self.connections.protocols:
                break
            await wait(0.01)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ClientTestsMixin:
    """
    A test CA, a loopback DNS server naming C{tenant.test} and
    C{hosting.test}, and a POSH web server for both.
    """

    def setUp(self):
        self.ca = CertificateAuthority()
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        self.ca_file = self.ca.write_ca(self.folder)
        self.dns = LoopbackDNSServer()
        self.addCleanup(self.dns.stop)
        for name in (TENANT, HOSTING):
            self.dns.add_a(name, "127.0.0.1")
        self.resolver = DNSClient(reactor, servers=[self.dns.address], timeout=2.0)
        self.web = POSHWebServer(self, self.ca)
        self.xmpp_certificate, _ = self.ca.issue([HOSTING])
        self.xmpp = der(self.xmpp_certificate)

    def client(self, port=None, trust_store=None, timeout=5.0, max_size=4096, max_cache=86400,
               negative_cache=300):
        return POSHClient.over_https(
            reactor,
            self.resolver,
            self.ca_file if trust_store is None else trust_store,
            timeout=timeout,
            max_size=max_size,
            max_cache=max_cache,
            negative_cache=negative_cache,
            port=self.web.port if port is None else port,
        )

    def fetch(self, client, domain=TENANT):
        return defer.Deferred.fromCoroutine(client.fetch(domain))


class POSHClientTests(unittest.SynchronousTestCase):
    """
    L{POSHClient} fetching from memory (L{MemoryWeb}), timed by a L{Clock}.
    """

    def setUp(self):
        self.web = MemoryWeb()
        self.xmpp = der(CertificateAuthority().issue([HOSTING])[0])

    def client(self, agent=None, timeout=5.0, max_size=4096, max_cache=86400,
               negative_cache=300):
        return POSHClient(
            self.web.agent if agent is None else agent,
            self.web.clock,
            timeout=timeout,
            max_size=max_size,
            max_cache=max_cache,
            negative_cache=negative_cache,
        )

    def start(self, client, domain=TENANT):
        d = defer.Deferred.fromCoroutine(client.fetch(domain))
        self.web.settle()
        return d

    def fetch(self, client, domain=TENANT):
        return self.successResultOf(self.start(client, domain))

    def stream(self, client, streamer):
        """
        Fetch while C{streamer} sends, a chunk a millisecond.
        """
        d = self.start(client)
        for _ in range(10_000):
            if d.called and (streamer.lost or streamer.sent >= streamer.total):
                break
            self.web.clock.advance(0.001)
            self.web.settle()
        return self.successResultOf(d)

    def test_found(self):
        self.web.serve(TENANT, posh_document(self.xmpp, 3600))
        result = self.fetch(self.client())
        self.assertEqual(result.status, FOUND, result.reason)
        self.assertEqual(result.url, f"https://{TENANT}{WELL_KNOWN_PATH}")
        self.assertIsNone(result.via)
        self.assertEqual(result.document.expires, 3600)
        self.assertEqual(result.reason, "1 fingerprint, expires 3600s")
        self.assertTrue(match_posh(result.document, [self.xmpp]).matched)
        self.assertEqual(self.web.requests, [(TENANT, WELL_KNOWN_PATH)])

    def test_request(self):
        """
        A GET asking for JSON, naming the gateway.
        """
        asked = []

        def handle(request):
            asked.append((request.method, request.requestHeaders))
            return posh_document(self.xmpp, 60)

        self.web.route(TENANT, handle)
        self.assertEqual(self.fetch(self.client()).status, FOUND)
        [(method, headers)] = asked
        self.assertEqual(method, b"GET")
        self.assertEqual(headers.getRawHeaders(b"accept"), [b"application/json"])
        (agent,) = headers.getRawHeaders(b"user-agent")
        self.assertTrue(agent.startswith(b"xmpp-gateway/"), agent)
        self.assertTrue(agent.endswith(b" (POSH)"), agent)

    def test_idn_domain(self):
        """
        Domains are fetched by their A-label name.
        """
        self.web.serve("xn--bcher-kva.test", posh_document(self.xmpp, 60))
        result = self.fetch(self.client(), "bücher.test")
        self.assertEqual(result.status, FOUND, result.reason)
        self.assertEqual(result.url, f"https://xn--bcher-kva.test{WELL_KNOWN_PATH}")

    def test_cached_until_expires(self):
        client = self.client()
        self.web.serve(TENANT, posh_document(self.xmpp, 100))
        first = self.fetch(client)
        self.assertFalse(first.cached)
        self.web.clock.advance(99)
        second = self.fetch(client)
        self.assertTrue(second.cached)
        self.assertEqual(second.document, first.document)
        self.assertEqual(self.web.count(TENANT), 1)
        self.web.clock.advance(2)
        third = self.fetch(client)
        self.assertFalse(third.cached)
        self.assertEqual(third.status, FOUND)
        self.assertEqual(self.web.count(TENANT), 2)

    def test_max_cache_bounds_expires(self):
        client = self.client(max_cache=10)
        self.web.serve(TENANT, posh_document(self.xmpp, 86400))
        self.fetch(client)
        self.web.clock.advance(9)
        self.assertTrue(self.fetch(client).cached)
        self.web.clock.advance(2)
        self.assertFalse(self.fetch(client).cached)
        self.assertEqual(self.web.count(TENANT), 2)

    def test_expires_zero_not_cached(self):
        client = self.client()
        self.web.serve(TENANT, posh_document(self.xmpp, 0))
        for _ in range(2):
            result = self.fetch(client)
            self.assertEqual((result.status, result.cached), (FOUND, False))
        self.assertEqual(self.web.count(TENANT), 2)

    def test_negative_cache(self):
        client = self.client(negative_cache=30)
        first = self.fetch(client)
        self.assertEqual((first.status, first.reason), (ABSENT, "HTTP 404"))
        self.web.clock.advance(29)
        second = self.fetch(client)
        self.assertEqual((second.status, second.cached), (ABSENT, True))
        self.assertEqual(self.web.count(TENANT), 1)
        self.web.serve(TENANT, posh_document(self.xmpp, 60))
        self.web.clock.advance(2)
        third = self.fetch(client)
        self.assertEqual((third.status, third.cached), (FOUND, False))
        self.assertEqual(self.web.count(TENANT), 2)

    def test_errors_negatively_cached(self):
        client = self.client(negative_cache=30)
        self.web.serve(TENANT, b"{not json")
        first = self.fetch(client)
        self.assertEqual(first.status, ERROR)
        self.assertIn("malformed POSH file: not valid JSON", first.reason)
        self.assertTrue(self.fetch(client).cached)
        self.web.clock.advance(31)
        self.assertFalse(self.fetch(client).cached)
        self.assertEqual(self.web.count(TENANT), 2)

    def test_reference_followed_once(self):
        target = f"https://{HOSTING}/.well-known/posh/xmpp-server.json"
        self.web.serve(TENANT, posh_json(url=target, expires=600))
        self.web.serve(HOSTING, posh_document(self.xmpp, 3600))
        result = self.fetch(self.client())
        self.assertEqual(result.status, FOUND, result.reason)
        self.assertEqual(result.url, target)
        self.assertEqual(result.via, f"https://{TENANT}{WELL_KNOWN_PATH}")
        # The smaller of both expires.
        self.assertEqual(result.document.expires, 600)
        self.assertTrue(match_posh(result.document, [self.xmpp]).matched)
        self.assertEqual(
            self.web.requests, [(TENANT, WELL_KNOWN_PATH), (HOSTING, WELL_KNOWN_PATH)]
        )

    def test_reference_with_port_and_path(self):
        target = f"https://{HOSTING}:8443/posh/tenant.json"
        self.web.serve(TENANT, posh_json(url=target, expires=600))
        self.web.serve(HOSTING, posh_document(self.xmpp, 60), path="/posh/tenant.json")
        result = self.fetch(self.client())
        self.assertEqual(result.status, FOUND, result.reason)
        self.assertEqual((result.url, result.document.expires), (target, 60))

    def test_reference_to_an_address(self):
        """
        A url reference naming an IP address (anywhere) is refused as
        malformed, as SRV targets are, and never fetched.
        """
        for literal in ("127.0.0.1", "10.1.2.3", "[::1]", "203.0.114.1"):
            target = f"https://{literal}:8443/secret.json"
            self.web.serve(TENANT, posh_json(url=target, expires=600))
            result = self.fetch(self.client())
            self.assertEqual(result.status, ERROR, result.reason)
            self.assertIn("names an IP address, not a host", result.reason)
        self.assertEqual(self.web.requests, [(TENANT, WELL_KNOWN_PATH)] * 4)

    def test_reference_never_followed_twice(self):
        self.web.serve(TENANT, posh_json(url=f"https://{HOSTING}/a.json", expires=600))
        self.web.serve(
            HOSTING, posh_json(url=f"https://{HOSTING}/b.json", expires=600), path="/a.json"
        )
        self.web.serve(HOSTING, posh_document(self.xmpp, 60), path="/b.json")
        result = self.fetch(self.client())
        self.assertEqual(result.status, ERROR)
        self.assertEqual(result.url, f"https://{HOSTING}/a.json")
        self.assertIn("points on to https://hosting.test/b.json; POSH follows one url only",
                      result.reason)
        self.assertEqual(self.web.count(HOSTING, "/b.json"), 0)

    def test_broken_reference_is_an_error(self):
        self.web.serve(TENANT, posh_json(url=f"https://{HOSTING}/gone.json", expires=600))
        result = self.fetch(self.client())
        self.assertEqual(result.status, ERROR)
        self.assertEqual(
            result.reason, f"https://{TENANT}{WELL_KNOWN_PATH} points here: HTTP 404"
        )

    def test_http_statuses(self):
        cases = [
            (404, ABSENT, "HTTP 404"),
            (410, ABSENT, "HTTP 410"),
            (403, ABSENT, "HTTP 403"),
            (500, ERROR, "HTTP 500"),
            (503, ERROR, "HTTP 503"),
        ]
        for code, status, reason in cases:
            self.web.serve(TENANT, posh_document(self.xmpp, 60), code=code)
            result = self.fetch(self.client())
            self.assertEqual((result.status, result.reason), (status, reason), code)

    def test_redirect_not_followed(self):
        """
        A 3xx is not followed (POSH delegates with url): the domain has no
        POSH file at the well-known place.
        """
        target = f"https://{HOSTING}{WELL_KNOWN_PATH}"
        for code in (301, 302, 307, 308):
            self.web.serve(TENANT, b"", code=code, headers=[(b"Location", target.encode())])
            self.web.serve(HOSTING, posh_document(self.xmpp, 60))
            result = self.fetch(self.client())
            self.assertEqual(result.status, ABSENT, code)
            self.assertEqual(
                result.reason,
                f"HTTP {code} redirect to {target}, not followed: POSH delegates with a url "
                "member, not HTTP redirects",
            )
        self.assertEqual(self.web.count(HOSTING), 0)

    def test_oversized_by_content_length(self):
        """
        A Content-Length over the limit is refused unread: the server sees
        the connection closed after sending little.
        """
        streamer = Streamer(10 * 1024 * 1024, declare_length=True, clock=self.web.clock)
        self.web.route(TENANT, streamer)
        result = self.stream(self.client(max_size=4096), streamer)
        self.assertEqual(result.status, ERROR)
        self.assertEqual(
            result.reason, "the file is 10485760 bytes, larger than the limit of 4096"
        )
        self.assertTrue(streamer.lost)
        self.assertLess(streamer.sent, 1024 * 1024)

    def test_oversized_body(self):
        """
        Without a Content-Length, the body is counted as it comes, and the
        connection closed as soon as it runs over.
        """
        streamer = Streamer(10 * 1024 * 1024, clock=self.web.clock)
        self.web.route(TENANT, streamer)
        result = self.stream(self.client(max_size=4096), streamer)
        self.assertEqual(result.status, ERROR)
        self.assertEqual(result.reason, "the file is larger than the limit of 4096 bytes")
        self.assertTrue(streamer.lost)
        self.assertLess(streamer.sent, 1024 * 1024)

    def test_body_at_the_limit(self):
        body = posh_document(self.xmpp, 60)
        self.web.serve(TENANT, body)
        result = self.fetch(self.client(max_size=len(body)))
        self.assertEqual(result.status, FOUND, result.reason)
        result = self.fetch(self.client(max_size=len(body) - 1))
        self.assertEqual(result.status, ERROR)
        self.assertIn("larger than the limit", result.reason)

    def test_timeout(self):
        never = Never()
        self.web.route(TENANT, never)
        d = self.start(self.client(timeout=0.5))
        self.web.clock.advance(0.499)
        self.assertNoResult(d)
        self.web.clock.advance(0.001)
        result = self.successResultOf(d)
        self.assertEqual((result.status, result.reason), (ERROR, "no answer within 0.5s"))
        # The client hung up.
        self.web.settle()
        self.assertEqual(never.lost, 1)

    def test_timeout_covers_the_reference(self):
        never = Never()
        self.web.serve(TENANT, posh_json(url=f"https://{HOSTING}/slow.json", expires=60))
        self.web.route(HOSTING, never, path="/slow.json")
        d = self.start(self.client(timeout=0.5))
        self.web.clock.advance(0.5)
        result = self.successResultOf(d)
        self.assertEqual((result.status, result.reason), (ERROR, "no answer within 0.5s"))
        self.assertEqual(never.requests, 1)

    def test_concurrent_fetches_share_one_request(self):
        self.web.route(TENANT, later(0.3, posh_document(self.xmpp, 60), self.web.clock))
        client = self.client()
        fetches = [self.start(client) for _ in range(3)]
        self.web.clock.advance(0.3)
        self.web.settle()
        results = [self.successResultOf(d) for d in fetches]
        self.assertEqual([r.status for r in results], [FOUND] * 3)
        self.assertEqual(self.web.count(TENANT), 1)
        again = self.fetch(client)
        self.assertTrue(again.cached)
        self.assertEqual(self.web.count(TENANT), 1)

    def test_not_a_domain(self):
        result = self.fetch(self.client(), "bad domain!")
        self.assertEqual(result.status, ERROR)
        self.assertIn("is not a domain name", result.reason)
        self.assertEqual(self.web.requests, [])

    def test_agent_failures(self):
        """
        How the failures of the agent (as L{posh_agent}'s fail) read: a
        host without addresses, or only refused ones, a refused connection
        and a server not speaking TLS mean no POSH file; a refused
        certificate, a failed connection and a broken one are errors.
        """
        tls = SSL.Error([("SSL routines", "", "wrong version number")])
        cases = [
            (NoAddresses(TENANT, ()), ABSENT, "tenant.test has no address records"),
            (NoAddresses(TENANT, ("10.0.0.1: not a public address",)), ABSENT,
             "tenant.test has no address that may be used (10.0.0.1: not a public address)"),
            (error.ConnectionRefusedError(), ABSENT, "tenant.test refused the connection"),
            (ResponseNeverReceived([Failure(tls)]), ABSENT,
             "tenant.test does not serve HTTPS there (TLS: wrong version number)"),
            (InvalidCertificate("certificate expired on 2026-01-01"), ERROR,
             "invalid HTTPS certificate: certificate expired on 2026-01-01"),
            (error.TimeoutError(), ERROR, "could not connect: TimeoutError User timeout caused "
             "connection failure."),
            (ResponseNeverReceived([Failure(error.ConnectionLost())]), ERROR,
             "no response: Connection to the other side was lost in a non-clean fashion."),
        ]
        for failure, status, reason in cases:
            result = self.fetch(self.client(FailingAgent(failure)))
            self.assertEqual((result.status, result.reason), (status, reason))

    def test_reference_to_a_refused_address(self):
        """
        A reference whose host the agent finds no usable address for (the
        address policy's refusal) is an error, saying so.
        """
        target = "https://internal.test/secret.json"
        self.web.serve(TENANT, posh_json(url=target, expires=600))
        refused = NoAddresses("internal.test", ("10.0.0.2: not a public address",))
        agent = FailingAgent(refused, passing=self.web.agent, hosts={"internal.test"})
        result = self.fetch(self.client(agent))
        self.assertEqual((result.status, result.url), (ERROR, target), result.reason)
        self.assertEqual(
            result.reason, f"https://{TENANT}{WELL_KNOWN_PATH} points here: internal.test has "
            "no address that may be used (10.0.0.2: not a public address)"
        )


@implementer(IAgent)
class FailingAgent:
    """
    Fails every request with C{failure}, or only those for C{hosts},
    passing the others to C{passing}.
    """

    def __init__(self, failure, passing=None, hosts=None):
        self.failure = failure
        self.passing = passing
        self.hosts = hosts

    def request(self, method, uri, headers=None, bodyProducer=None):
        if self.hosts is not None and URI.fromBytes(uri).host.decode() not in self.hosts:
            return self.passing.request(method, uri, headers, bodyProducer)
        return defer.fail(self.failure)


class POSHAgentTests(unittest.SynchronousTestCase):
    """
    L{posh_agent}'s connections, on a L{MemoryReactorClock}, with names from
    a L{FakeDNSClient}.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.dns = FakeDNSClient()
        folder = self.mktemp()
        self.ca_file = CertificateAuthority().write_ca(folder)

    def agent(self, **options):
        options.setdefault("port", 8443)
        return posh_agent(self.reactor, self.dns, self.ca_file, 2.5, **options)

    def get(self, agent, url):
        return agent.request(b"GET", url.encode("ascii"))

    def test_interface(self):
        self.assertTrue(verifyObject(IAgent, self.agent()))

    def test_addresses_in_turn(self):
        """
        The host's addresses, IPv6 first, each tried in turn, at the
        default port (443 but for tests) or the URL's, with the timeout.
        """
        self.dns.add(TENANT, "AAAA", "2001:db8::1")
        self.dns.add(TENANT, "A", "192.0.2.1")
        d = self.get(self.agent(), f"https://{TENANT}{WELL_KNOWN_PATH}")
        [(host, port, factory, timeout, _)] = self.reactor.tcpClients
        self.assertEqual((host, port, timeout), ("2001:db8::1", 8443, 2.5))
        factory.clientConnectionFailed(None, Failure(error.ConnectionRefusedError()))
        self.assertEqual(
            [(host, port) for host, port, *_ in self.reactor.tcpClients],
            [("2001:db8::1", 8443), ("192.0.2.1", 8443)],
        )
        self.reactor.tcpClients[1][2].clientConnectionFailed(
            None, Failure(error.ConnectionRefusedError())
        )
        self.failureResultOf(d, error.ConnectionRefusedError)
        self.get(self.agent(), f"https://{TENANT}:9443/other.json")
        self.assertEqual(self.reactor.tcpClients[2][:2], ("2001:db8::1", 9443))

    def test_no_addresses(self):
        d = self.get(self.agent(), f"https://{TENANT}{WELL_KNOWN_PATH}")
        failure = self.failureResultOf(d, NoAddresses)
        self.assertEqual(failure.value.explain(), "tenant.test has no address records")
        self.assertEqual(self.reactor.tcpClients, [])

    def test_address_policy(self):
        """
        Addresses the DNS client's address policy refuses are never
        connected to; the failure says which and why.
        """
        from gateway.names.srv import AddressPolicy

        self.dns.address_policy = AddressPolicy()
        self.dns.add("internal.test", "A", "10.0.0.2")
        d = self.get(self.agent(), "https://internal.test/secret.json")
        failure = self.failureResultOf(d, NoAddresses)
        self.assertIn(
            "internal.test has no address that may be used (10.0.0.2: not a public address",
            failure.value.explain(),
        )
        self.assertEqual(self.reactor.tcpClients, [])

    def test_https_only(self):
        d = self.get(self.agent(), f"http://{TENANT}{WELL_KNOWN_PATH}")
        self.failureResultOf(d, SchemeNotSupported)

    def test_quiet(self):
        """
        The HTTP client's factory, one per connection, doesn't log its
        start and stop.
        """
        self.dns.add(TENANT, "A", "192.0.2.1")
        self.get(self.agent(), f"https://{TENANT}{WELL_KNOWN_PATH}")
        [(_, _, factory, _, _)] = self.reactor.tcpClients
        with capturedLogs() as events:
            factory.doStart()
            factory.doStop()
        self.assertEqual([e["log_format"] for e in events], [])

    def test_unreadable_trust_store(self):
        from gateway.tls.pkix import TrustStoreError

        path = os.path.abspath(os.path.join(self.mktemp(), "missing.pem"))
        e = self.assertRaises(TrustStoreError, posh_agent, self.reactor, self.dns, path, 2.5)
        self.assertIn(path, str(e))


class POSHOverHTTPSTests(ClientTestsMixin, unittest.TestCase):
    """
    L{POSHClient.over_https} against real HTTPS servers on loopback, names
    from a loopback DNS server: the whole path, and what only real TLS and
    sockets show (certificates refused, TLS not spoken, connections refused
    or cut off).
    """

    timeout = 30

    @defer.inlineCallbacks
    def test_found(self):
        self.web.serve(TENANT, posh_document(self.xmpp, 3600))
        result = yield self.fetch(self.client())
        self.assertEqual(result.status, FOUND, result.reason)
        self.assertEqual(result.url, f"https://{TENANT}{WELL_KNOWN_PATH}")
        self.assertIsNone(result.via)
        self.assertEqual(result.document.expires, 3600)
        self.assertEqual(result.reason, "1 fingerprint, expires 3600s")
        self.assertTrue(match_posh(result.document, [self.xmpp]).matched)
        self.assertEqual(self.web.requests, [(TENANT, WELL_KNOWN_PATH)])

    @defer.inlineCallbacks
    def test_reference_to_a_refused_address(self):
        """
        A url reference is fetched only from addresses the address policy
        allows (dns.allow_networks): one naming a host on the operator's
        own network is never connected to, and the result says which
        address was refused; one naming an address (anywhere) is refused
        as malformed, as SRV targets are.
        """
        from gateway.names.srv import AddressPolicy

        self.resolver.address_policy = AddressPolicy([ipaddress.ip_network("127.0.0.1/32")])
        self.dns.add_a("internal.test", "127.0.0.2")
        target = f"https://internal.test:{self.web.port}/secret.json"
        self.web.serve(TENANT, posh_json(url=target, expires=600))
        result = yield self.fetch(self.client())
        self.assertEqual((result.status, result.url), (ERROR, target), result.reason)
        self.assertIn("internal.test has no address that may be used (127.0.0.2: not a public "
                      "address", result.reason)
        for literal in ("127.0.0.1", "10.1.2.3", "[::1]", "203.0.114.1"):
            target = f"https://{literal}:{self.web.port}/secret.json"
            self.web.serve(TENANT, posh_json(url=target, expires=600))
            result = yield self.fetch(self.client())
            self.assertEqual(result.status, ERROR, result.reason)
            self.assertIn("names an IP address, not a host", result.reason)
        self.assertEqual([path for _, path in self.web.requests], [WELL_KNOWN_PATH] * 5)

    @defer.inlineCallbacks
    def test_connection_refused(self):
        result = yield self.fetch(self.client(port=free_port()))
        self.assertEqual(
            (result.status, result.reason), (ABSENT, "tenant.test refused the connection")
        )

    @defer.inlineCallbacks
    def test_no_address(self):
        result = yield self.fetch(self.client(), "nowhere.test")
        self.assertEqual(
            (result.status, result.reason), (ABSENT, "nowhere.test has no address records")
        )

    @defer.inlineCallbacks
    def test_https_not_served(self):
        """
        A server answering in plain HTTP (as web servers do to a TLS
        handshake on a plain port) does not serve POSH.
        """

        class PlainHTTP(Protocol):
            def dataReceived(self, data):
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                self.transport.loseConnection()

        port = reactor.listenTCP(0, Factory.forProtocol(PlainHTTP), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        result = yield self.fetch(self.client(port=port.getHost().port))
        self.assertEqual(result.status, ABSENT, result.reason)
        # "wrong version number", in the words of this OpenSSL.
        self.assertIn("tenant.test does not serve HTTPS there (TLS: ", result.reason)

    @defer.inlineCallbacks
    def test_invalid_https_certificates(self):
        """
        The web server's certificate must chain to the trust store and name
        the domain; the reason says what is wrong, as PKIX would.
        """
        now = datetime.datetime.now(datetime.timezone.utc)
        other_ca = CertificateAuthority("Other CA")
        cases = [
            (self.ca.issue([TENANT], self_signed=True),
             "invalid HTTPS certificate: self-signed certificate, not from a trusted CA"),
            (other_ca.issue([TENANT]),
             "invalid HTTPS certificate: chain does not lead to a trusted CA "
             "(issuer: CN=Other CA)"),
            (self.ca.issue([TENANT], not_before=now - datetime.timedelta(days=3),
                           not_after=now - datetime.timedelta(days=1)),
             "invalid HTTPS certificate: certificate expired on"),
            (self.ca.issue(["elsewhere.test"]),
             "invalid HTTPS certificate: certificate is for elsewhere.test; not tenant.test"),
        ]
        for certificate, reason in cases:
            web = POSHWebServer(self, self.ca, certificate=certificate)
            web.serve(TENANT, posh_document(self.xmpp, 60))
            result = yield self.fetch(self.client(port=web.port))
            self.assertEqual(result.status, ERROR, reason)
            self.assertIn(reason, result.reason)
            self.assertEqual(web.requests, [])

    @defer.inlineCallbacks
    def test_platform_trust(self):
        """
        Without a trust store, the platform's: the test CA is not in it.
        """
        self.web.serve(TENANT, posh_document(self.xmpp, 60))
        client = POSHClient.over_https(
            reactor, self.resolver, None, 5.0, 4096, 60, 60, port=self.web.port
        )
        result = yield self.fetch(client)
        self.assertEqual(result.status, ERROR)
        self.assertIn("invalid HTTPS certificate", result.reason)

    @defer.inlineCallbacks
    def test_endless_headers(self):
        """
        A server sending headers without end (100,000 here) is cut off once
        the connection has received the file's limit plus 64 KiB: Twisted's
        HTTP client caps each header line, not how many there are.
        """
        from gateway.posh.client import MAX_HEADER_BYTES

        body = posh_document(self.xmpp, 60)
        self.web.serve(
            TENANT, body, headers=[(b"X-Filler-%d" % n, b"0123456789") for n in range(100_000)]
        )
        result = yield self.fetch(self.client(max_size=4096))
        self.assertEqual(result.status, ERROR, result.reason)
        self.assertIn("no response: Connection to the other side was lost", result.reason)
        self.assertEqual(MAX_HEADER_BYTES, 64 * 1024)
        self.web.serve(TENANT, body, headers=[(b"X-Filler-%d" % n, b"x") for n in range(100)])
        result = yield self.fetch(self.client(max_size=4096))
        self.assertEqual(result.status, FOUND, result.reason)

    def test_unreadable_trust_store(self):
        from gateway.tls.pkix import TrustStoreError

        path = os.path.join(self.folder, "missing.pem")
        error = self.assertRaises(TrustStoreError, self.client, trust_store=path)
        self.assertIn(path, str(error))



class FakePOSHClient:
    """
    Answers L{POSHClient.fetch} with a given result.
    """

    def __init__(self, result):
        self.result = result
        self.fetched = []

    async def fetch(self, domain):
        self.fetched.append(domain)
        return self.result


URL = f"https://{TENANT}{WELL_KNOWN_PATH}"


class VerifierTests(unittest.SynchronousTestCase):
    """
    L{POSHVerifier}'s verdicts.
    """

    def setUp(self):
        ca = CertificateAuthority()
        certificate, _ = ca.issue([HOSTING])
        self.leaf = der(certificate)
        other, _ = ca.issue([HOSTING])
        self.other = der(other)

    def verify(self, result, chain=None):
        client = FakePOSHClient(result)
        verifier = POSHVerifier(client)
        request = VerificationRequest(
            "inbound", "a.test", TENANT, "s1",
            TLSFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", (self.leaf,) if chain is None else chain),
        )
        verdict = self.successResultOf(verifier.verify(request))
        self.assertEqual(verdict.verifier, "posh")
        return verdict, client

    def test_interface(self):
        self.assertTrue(verifyObject(IDomainVerifier, POSHVerifier(FakePOSHClient(None))))

    def test_verified(self):
        document = parse_posh(posh_document(self.leaf, 3600))
        verdict, client = self.verify(POSHResult(FOUND, URL, document, "1 fingerprint"))
        self.assertEqual(client.fetched, [TENANT])
        self.assertEqual(verdict.outcome, Outcome.VERIFIED)
        fingerprint = certificate_fingerprint(self.leaf)
        self.assertEqual(
            verdict.evidence, {"url": URL, "fingerprint": fingerprint, "expires": 3600}
        )
        self.assertEqual(
            verdict.reason, f"POSH file at {URL}: the certificate matches {fingerprint}"
        )
        self.assertFalse(verdict.decisive)

    def test_verified_by_reference(self):
        target = f"https://{HOSTING}{WELL_KNOWN_PATH}"
        document = parse_posh(posh_document(self.leaf, 60))
        verdict, _ = self.verify(POSHResult(FOUND, target, document, "", via=URL))
        self.assertEqual(verdict.outcome, Outcome.VERIFIED)
        self.assertEqual(verdict.evidence["url"], target)
        self.assertEqual(verdict.evidence["via"], URL)
        self.assertIn(f"POSH file at {target} (from {URL})", verdict.reason)

    def test_no_match(self):
        document = parse_posh(posh_document(self.other, 60, [self.other]))
        verdict, _ = self.verify(POSHResult(FOUND, URL, document, ""))
        self.assertEqual(verdict.outcome, Outcome.FAILED)
        self.assertFalse(verdict.decisive)
        self.assertEqual(
            verdict.reason,
            f"POSH file at {URL} lists 2 fingerprints; none matches the certificate "
            f"({certificate_fingerprint(self.leaf)})",
        )

    def test_absent(self):
        verdict, _ = self.verify(POSHResult(ABSENT, URL, reason="HTTP 404"))
        self.assertEqual(verdict.outcome, Outcome.NOT_APPLICABLE)
        self.assertEqual(verdict.reason, f"no POSH file at {URL}: HTTP 404")

    def test_error(self):
        reason = "invalid HTTPS certificate: self-signed certificate, not from a trusted CA"
        verdict, _ = self.verify(POSHResult(ERROR, URL, reason=reason))
        self.assertEqual(verdict.outcome, Outcome.FAILED)
        self.assertFalse(verdict.decisive)
        self.assertEqual(verdict.reason, f"POSH file at {URL}: {reason}")

    def test_no_certificate(self):
        verdict, client = self.verify(POSHResult(ABSENT, URL), chain=())
        self.assertEqual(verdict.outcome, Outcome.NOT_APPLICABLE)
        self.assertEqual(verdict.reason, "the peer presented no certificate")
        self.assertEqual(client.fetched, [])


class FactoryTests(unittest.TestCase):
    """
    L{POSHVerifierFactory}, the plugin.
    """

    def config(self, trust_store=None, **posh):
        return SimpleNamespace(
            posh=POSHConfig(**posh),
            policy=SimpleNamespace(trust_store=trust_store),
            dns=DNSConfig(servers=(("127.0.0.1", 53),)),
        )

    def test_interface_and_plugin(self):
        factory = available_verifiers()["posh"]
        self.assertIsInstance(factory, POSHVerifierFactory)
        self.assertTrue(verifyObject(IDomainVerifierFactory, factory))
        self.assertTrue(IPlugin.providedBy(factory))
        self.assertEqual(factory.name, "posh")
        self.assertEqual(POSHVerifierFactory.port, 443)

    def test_build(self):
        folder = self.mktemp()
        ca_file = CertificateAuthority().write_ca(folder)
        resolver = FakeDNSClient()
        self.patch(POSHVerifierFactory, "port", 8443)
        environment = VerifierEnvironment(
            reactor, self.config(ca_file, timeout=2.5, max_size=100, max_cache=50,
                                 negative_cache=5), resolver
        )
        verifier = POSHVerifierFactory().build(environment)
        self.assertTrue(verifyObject(IDomainVerifier, verifier))
        client = verifier.client
        self.assertEqual(
            (client.agent.dns_client, client.agent.port, client.timeout, client.max_size, client.max_cache,
             client.negative_cache),
            (resolver, 8443, 2.5, 100, 50, 5),
        )

    def test_without_resolver(self):
        verifier = POSHVerifierFactory().build(VerifierEnvironment(reactor, self.config()))
        self.assertEqual(verifier.client.agent.dns_client.servers, [("127.0.0.1", 53)])

    def test_bad_trust_store(self):
        from gateway.tls.pkix import TrustStoreError

        path = os.path.abspath(os.path.join(self.mktemp(), "missing.pem"))
        environment = VerifierEnvironment(reactor, self.config(path), FakeDNSClient())
        error = self.assertRaises(TrustStoreError, POSHVerifierFactory().build, environment)
        self.assertIn(path, str(error))


class PublisherTests(ClientTestsMixin, unittest.TestCase):
    """
    L{make_posh_site} and the command.
    """

    timeout = 30

    def identity(self, domain, names=None):
        certificate_file, key_file = self.ca.write_identity(
            os.path.join(self.folder, domain), domain, other_names=names or ()
        )
        return LocalIdentity(domain, certificate_file, key_file, "secret-secret")

    def certificate_of(self, identity):
        from gateway.posh.publisher import certificate_der

        return certificate_der(identity.certificate_file)

    def listen(self, identities, expires, tls=True):
        site = make_posh_site(identities, expires)
        factory = site
        if tls:
            factory = TLSMemoryBIOFactory(TLSProfile(identities).server_creator(None), False, site)
        wrapping = WrappingFactory(factory)
        port = reactor.listenTCP(0, wrapping, interface="127.0.0.1")

        async def stop():
            for protocol in list(wrapping.protocols):
                protocol.transport.abortConnection()
            await port.stopListening()

        self.addCleanup(lambda: defer.Deferred.fromCoroutine(stop()))
        return port.getHost().port

    @defer.inlineCallbacks
    def test_served_over_https_by_host(self):
        """
        Each local domain's document, by Host (the TLS certificate chosen
        by SNI), read back by the POSH client and matching the domain's
        certificate.
        """
        identities = [self.identity(TENANT), self.identity(HOSTING)]
        port = self.listen(identities, 7200)
        client = self.client(port=port)
        for identity in identities:
            result = yield self.fetch(client, identity.domain)
            self.assertEqual(result.status, FOUND, result.reason)
            self.assertEqual(result.document.expires, 7200)
            found = match_posh(result.document, [self.certificate_of(identity)])
            self.assertTrue(found.matched, found.reason)
        tenant = yield self.fetch(client, TENANT)
        self.assertFalse(match_posh(tenant.document, [self.certificate_of(identities[1])]).matched)

    @defer.inlineCallbacks
    def test_http_details(self):
        identity = self.identity(TENANT)
        port = self.listen([identity], 600, tls=False)
        http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

        def get(path, host, method="GET"):
            return http.request(
                method, f"http://127.0.0.1:{port}{path}", headers={"Host": host}
            )

        response = yield get(WELL_KNOWN_PATH, TENANT)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        self.assertEqual(response.headers.getRawHeaders("cache-control"), ["max-age=600"])
        body = yield response.content()
        self.assertEqual(body, posh_document(self.certificate_of(identity), 600))
        # The Host's port, case and trailing dot don't matter.
        for host in (f"{TENANT}:443", "Tenant.Test", f"{TENANT}."):
            response = yield get(WELL_KNOWN_PATH, host)
            self.assertEqual(response.code, 200, host)
            yield response.content()
        for path, host in (
            (WELL_KNOWN_PATH, "other.test"),
            ("/.well-known/posh/xmpp-client.json", TENANT),
            ("/", TENANT),
            (WELL_KNOWN_PATH + "/x", TENANT),
        ):
            response = yield get(path, host)
            self.assertEqual(response.code, 404, (path, host))
            yield response.content()
        response = yield get(WELL_KNOWN_PATH, TENANT, "HEAD")
        self.assertEqual(response.code, 200)
        self.assertEqual((yield response.content()), b"")
        response = yield get(WELL_KNOWN_PATH, TENANT, "POST")
        self.assertEqual(response.code, 405)
        yield response.content()

    def test_command(self):
        identity = self.identity(TENANT)
        other = self.identity(HOSTING)
        out = io.StringIO()
        self.assertEqual(publisher_main([identity.certificate_file, "--expires", "3600"], out), 0)
        document = parse_posh(out.getvalue().encode("utf-8"))
        self.assertEqual(document.expires, 3600)
        self.assertTrue(match_posh(document, [self.certificate_of(identity)]).matched)

        out = io.StringIO()
        publisher_main([identity.certificate_file, other.certificate_file], out)
        document = parse_posh(out.getvalue().encode("utf-8"))
        self.assertEqual((document.expires, document.descriptors), (86400, 2))
        self.assertTrue(match_posh(document, [self.certificate_of(other)]).matched)

    def test_command_errors(self):
        not_pem = os.path.join(self.folder, "not.pem")
        with open(not_pem, "w") as f:
            f.write("hello\n")
        identity = self.identity(TENANT)
        for argv in (
            [os.path.join(self.folder, "missing.pem")],
            [not_pem],
            [identity.certificate_file, "--expires", "-1"],
            [],
        ):
            stderr = io.StringIO()
            self.patch(sys, "stderr", stderr)
            self.assertRaises(SystemExit, publisher_main, argv, io.StringIO())
            self.assertIn("error", stderr.getvalue(), argv)
