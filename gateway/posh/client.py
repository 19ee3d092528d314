"""
POSH, PKIX over Secure HTTP (RFC 7711), as XMPP uses it for
server-to-server streams (RFC 7712).

A domain hosted by a provider (C{tenant.example}) rarely has a certificate
naming it: its XMPP service presents the provider's certificate
(C{hosting.example}).  With POSH the domain vouches for that certificate
over HTTPS, where it can prove control of its name with an ordinary web
certificate: it publishes, at

    https://tenant.example/.well-known/posh/xmpp-server.json

a JSON object that is one of (RFC 7711 section 3):

  - fingerprints of the certificates its XMPP service may present, and how
    many seconds the answer may be cached:

        {"fingerprints": [{"sha-256": "<base64>", "sha-512": "<base64>"}],
         "expires": 604800}

    Each member of the C{fingerprints} array describes one certificate:
    its keys are names from IANA's "Hash Function Textual Names" registry,
    its values the base64 digest of the B{whole certificate}, in DER (the
    same "certificate fingerprint" as RFC 4572 and JWK's C{x5t#S256}, not
    the SubjectPublicKeyInfo that HPKP and DANE selector 1 hash);

  - a reference, for a domain that delegates to its provider:

        {"url": "https://hosting.example/.well-known/posh/xmpp-server.json",
         "expires": 604800}

    The client fetches that https URL, once: a reference that leads to
    another reference is an error, and so is a document with both members.

This module has the pure part (L{parse_posh}, L{match_posh},
L{posh_document}) and the fetching (L{POSHClient}).  The HTTPS client:

  - resolves names with the gateway's own DNS client (never the machine's
    resolver) and verifies the web server's certificate by PKIX against the
    configured trust store, with its name (RFC 6125), as RFC 7711
    section 3 requires;
  - never follows HTTP redirects: the C{url} member is POSH's delegation,
    and a 3xx at the well-known location (a site redirecting everything to
    C{www.}, typically) means there is no POSH file there: C{absent};
  - treats 404, 410 and other 4xx answers, a refused connection, a host
    without addresses and a port that does not speak TLS as C{absent} (the
    domain does not publish POSH), and everything else that goes wrong (an
    invalid web certificate, a 5xx, a malformed or oversized file, a broken
    reference, the time running out) as C{error};
  - reads at most C{max_size} bytes, refusing a longer C{Content-Length}
    unread and closing the connection as soon as a body runs over;
  - caches a found document for its C{expires} (an indirection: the smaller
    of both), at most C{max_cache} seconds, and C{absent} or C{error}
    results for C{negative_cache} seconds; concurrent fetches for one
    domain share one request.
"""

import base64
import binascii
import datetime
import hashlib
import hmac
import ipaddress
import json
import os
from dataclasses import dataclass, replace
from typing import NamedTuple
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from service_identity.exceptions import VerificationError
from treq.client import HTTPClient
from twisted.internet import defer, error
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import (
    Certificate,
    TLSVersion,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone, ResponseFailed
from twisted.web.error import SchemeNotSupported
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgentEndpointFactory
from zope.interface import implementer

from gateway import __version__
from gateway.cache import ExpiringCache
from gateway.names.srv import lookup_addresses
from gateway.tls.pkix import (
    IdentityError,
    PathError,
    TrustStoreError,
    load_trust_store,
    match_identity,
    validate_path,
)
from gateway.xmpp.jid import AddressError, canonical_domain

log = Logger()

#: The POSH service name of XMPP server-to-server (RFC 7712).
SERVICE = "xmpp-server"
WELL_KNOWN_PATH = f"/.well-known/posh/{SERVICE}.json"

#: The hash functions understood, by their IANA textual names.
HASHES = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}

FOUND = "found"
ABSENT = "absent"
ERROR = "error"

#: Most domains kept in a L{POSHClient}'s cache.
CACHE_ENTRIES = 1024


class POSHError(Exception):
    """
    A POSH document is not well formed; C{str()} says why, for an operator.
    """


@dataclass(frozen=True)
class POSHDocument:
    """
    A parsed POSH file.

    @ivar fingerprints: C{(hash name, digest)} pairs, in the file's order,
        for the supported hashes only (see L{HASHES}).
    @ivar expires: seconds the document may be cached (0: not at all).
    @ivar url: for a reference document, the https URL it points to (then
        C{fingerprints} is empty).
    @ivar descriptors: how many fingerprint descriptors (certificates) the
        file lists with at least one supported hash.
    """

    fingerprints: tuple = ()
    expires: int = 0
    url: str | None = None
    descriptors: int = 0

    @property
    def is_reference(self):
        return self.url is not None


class POSHMatch(NamedTuple):
    """
    The answer of L{match_posh}.

    @ivar matched: whether a fingerprint matches the certificate.
    @ivar fingerprint: the fingerprint that matched, C{"sha-256:<base64>"},
        or L{None}.
    @ivar reason: what matched, or why nothing did.
    """

    matched: bool
    fingerprint: str | None
    reason: str


# Parsing


def _no_constants(name):
    raise POSHError(f"not valid JSON: {name} is not a JSON number")


def _unique_members(pairs):
    members = {}
    for key, value in pairs:
        if key in members:
            raise POSHError(f"the member {key!r} appears twice")
        members[key] = value
    return members


def _kind(value):
    if isinstance(value, bool):
        return "a boolean"
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _expires(document):
    if "expires" not in document:
        # A file without expires is used, but not cached: the safe reading.
        return 0
    value = document["expires"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise POSHError(f"expires must be a whole number of seconds, not {_kind(value)}")
    if value < 0:
        raise POSHError(f"expires must not be negative ({value})")
    return value


def _reference(value):
    if not isinstance(value, str):
        raise POSHError(f"url must be a string, not {_kind(value)}")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as e:
        raise POSHError(f"url {value!r} is not a URL: {e}") from None
    if parts.scheme.lower() != "https":
        raise POSHError(f"url {value!r} is not an https URL (RFC 7711 section 3)")
    if not host:
        raise POSHError(f"url {value!r} names no host")
    if parts.username is not None or parts.password is not None:
        raise POSHError(f"url {value!r} carries credentials")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        # As for SRV targets: a host name, never an address, which would
        # skip DNS, the address policy's view of it, and name checks.
        raise POSHError(f"url {value!r} names an IP address, not a host")
    return value


def _digest(name, value, position):
    if not isinstance(value, str):
        raise POSHError(f"fingerprint {position} has a {name} that is {_kind(value)}, not a string")
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise POSHError(
            f"fingerprint {position} has a {name} that is not base64: {value!r}"
        ) from None
    size = HASHES[name]().digest_size
    if len(digest) != size:
        raise POSHError(
            f"fingerprint {position} has a {name} of {len(digest)} bytes, not {size}"
        )
    return digest


def _fingerprints(value):
    if not isinstance(value, list):
        raise POSHError(f"fingerprints must be an array, not {_kind(value)}")
    if not value:
        raise POSHError("fingerprints is empty")
    fingerprints = []
    descriptors = 0
    for position, descriptor in enumerate(value, 1):
        if not isinstance(descriptor, dict):
            raise POSHError(f"fingerprint {position} must be an object, not {_kind(descriptor)}")
        known = [
            (name.lower(), digest) for name, digest in descriptor.items()
            if name.lower() in HASHES
        ]
        if len({name for name, _ in known}) != len(known):
            raise POSHError(f"fingerprint {position} names a hash twice")
        # Names not in HASHES (sha-1, md5, a future hash...) are ignored,
        # as the registry may grow.
        for name, digest in known:
            fingerprints.append((name, _digest(name, digest, position)))
        descriptors += bool(known)
    if not fingerprints:
        raise POSHError(
            "no fingerprint with a supported hash (" + ", ".join(HASHES) + ")"
        )
    return tuple(fingerprints), descriptors


def parse_posh(body):
    """
    Parse a POSH file (RFC 7711 section 3).

    @param body: the file's bytes (JSON, UTF-8).
    @rtype: L{POSHDocument}
    @raise POSHError: when it is not valid JSON, not an object, has both
        or neither of C{fingerprints} and C{url}, a member of the wrong
        type, a negative C{expires}, a C{url} that is not https, a
        fingerprint that is not base64 or of the wrong size, or no
        fingerprint with a supported hash.
    """
    try:
        text = bytes(body).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise POSHError("not UTF-8 text") from None
    try:
        document = json.loads(
            text, object_pairs_hook=_unique_members, parse_constant=_no_constants
        )
    except json.JSONDecodeError as e:
        raise POSHError(f"not valid JSON: {e}") from None
    except RecursionError:
        raise POSHError("not valid JSON: nested too deeply") from None
    if not isinstance(document, dict):
        raise POSHError(f"not a JSON object but {_kind(document)}")
    has_url = "url" in document
    has_fingerprints = "fingerprints" in document
    if has_url and has_fingerprints:
        raise POSHError("both fingerprints and url (a POSH file has one or the other)")
    if not has_url and not has_fingerprints:
        raise POSHError("neither fingerprints nor url")
    expires = _expires(document)
    if has_url:
        return POSHDocument(expires=expires, url=_reference(document["url"]))
    fingerprints, descriptors = _fingerprints(document["fingerprints"])
    return POSHDocument(fingerprints, expires, None, descriptors)


# Matching and publishing


def _b64(digest):
    return base64.b64encode(digest).decode("ascii")


def certificate_fingerprint(der, name="sha-256"):
    """
    The POSH fingerprint of certificate C{der}: C{"<hash>:<base64>"} of
    the whole DER certificate.
    """
    return f"{name}:{_b64(HASHES[name](bytes(der)).digest())}"


def match_posh(document, chain):
    """
    Whether the certificate the peer presented is one the POSH document
    lists (RFC 7711 section 3, RFC 7712): any fingerprint of a
    supported hash over the whole DER leaf certificate.

    @type document: L{POSHDocument}
    @param chain: the DER certificates the peer presented, its own first.
    @rtype: L{POSHMatch}
    """
    if document.is_reference:
        return POSHMatch(False, None, f"the document only points to {document.url}")
    if not chain:
        return POSHMatch(False, None, "the peer presented no certificate")
    leaf = bytes(chain[0])
    digests = {}
    for name, digest in document.fingerprints:
        if name not in digests:
            digests[name] = HASHES[name](leaf).digest()
        if hmac.compare_digest(digests[name], digest):
            fingerprint = f"{name}:{_b64(digest)}"
            return POSHMatch(True, fingerprint, f"the certificate matches {fingerprint}")
    count = document.descriptors
    listed = f"{count} fingerprint{'s' if count != 1 else ''}"
    return POSHMatch(
        False,
        None,
        f"lists {listed}; none matches the certificate ({certificate_fingerprint(leaf)})",
    )


def posh_document(certificate_der, expires, more=()):
    """
    The POSH file to publish for a domain whose XMPP service presents
    C{certificate_der} (and, during a change of certificates, those in
    C{more}): a descriptor with its sha-256 and sha-512 fingerprints each.

    @param expires: seconds peers may cache it.
    @rtype: L{bytes} (UTF-8 JSON, ending with a newline)
    """
    if isinstance(expires, bool) or not isinstance(expires, int) or expires < 0:
        raise ValueError(f"expires must be a non-negative integer, not {expires!r}")
    descriptors = []
    for der in (certificate_der, *more):
        der = bytes(der)
        descriptors.append({name: _b64(HASHES[name](der).digest()) for name in HASHES})
    document = {"fingerprints": descriptors, "expires": expires}
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


# Fetching


@dataclass(frozen=True)
class POSHResult:
    """
    The outcome of fetching a domain's POSH file.

    @ivar status: C{"found"}, C{"absent"} or C{"error"}.
    @ivar url: the URL of the document the result is about: for a followed
        reference, the URL it pointed to.
    @ivar document: the L{POSHDocument} with the fingerprints (C{found}).
    @ivar reason: for an operator: what was found, or what went wrong.
    @ivar via: the well-known URL, when its C{url} member was followed.
    @ivar cached: whether the result came from the cache.
    """

    status: str
    url: str
    document: POSHDocument | None = None
    reason: str = ""
    via: str | None = None
    cached: bool = False


class _Outcome(Exception):
    """
    Ends a fetch early: its C{status} (absent or error) and C{reason}.
    """

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _NoAddresses(Exception):
    """
    The host has no address records, or none that may be used: C{args} are
    the host and the problems with the addresses left out (the address
    policy's refusals).
    """

    def explain(self):
        host, problems = self.args
        if not problems:
            return f"{host} has no address records"
        return f"{host} has no address that may be used ({'; '.join(problems)})"


def posh_url(domain):
    """
    The well-known URL of C{domain}'s POSH file for XMPP s2s.
    """
    return f"https://{domain}{WELL_KNOWN_PATH}"


def _a_label(domain):
    try:
        return canonical_domain(domain)
    except AddressError as e:
        raise _Outcome(ERROR, f"{domain!r} is not a domain name: {e}") from None


def _pem_files(path):
    if os.path.isdir(path):
        return [
            os.path.join(path, name) for name in sorted(os.listdir(path))
            if os.path.isfile(os.path.join(path, name))
        ]
    return [path]


def trust_root(path):
    """
    The HTTPS trust anchors for fetching POSH files: the CA certificates of
    the PEM file or folder C{path}, as L{gateway.tls.pkix} reads
    them, or the platform's when L{None}.

    @raise gateway.tls.pkix.TrustStoreError: naming the file.
    """
    if path is None:
        return platformTrust()
    load_trust_store(path)  # the same checks, and messages, as PKIX's
    certificates = []
    for name in _pem_files(path):
        try:
            with open(name, "rb") as f:
                data = f.read()
            found = x509.load_pem_x509_certificates(data)
        except (OSError, ValueError):
            continue  # PKIX skips these in a folder, and refused them in a file
        certificates.extend(
            Certificate.load(c.public_bytes(serialization.Encoding.DER))
            for c in found
        )
    if not certificates:
        raise TrustStoreError(f"{path}: no PEM certificate in the trust store")
    return trustRootFromCertificates(certificates)


#: Bytes a POSH server may send beyond the document's own limit: the status
#: line, headers and TLS records.  Twisted's HTTP client caps each header
#: line but not how many there are; this caps them all.
MAX_HEADER_BYTES = 64 * 1024


class _ReceiveLimit(WrappingFactory):
    """
    Drops a connection that receives more than C{limit} bytes in all (a
    server sending 300,000 headers, say).
    """

    protocol = None

    def __init__(self, wrapped, limit):
        super().__init__(wrapped)
        self.limit = limit

    def buildProtocol(self, address):
        return _ReceiveLimitProtocol(self, self.wrappedFactory.buildProtocol(address))


class _ReceiveLimitProtocol(ProtocolWrapper):
    received = 0

    def dataReceived(self, data):
        self.received += len(data)
        if self.received > self.factory.limit:
            self.transport.abortConnection()
            return
        super().dataReceived(data)


@implementer(IStreamClientEndpoint)
class _ResolvingEndpoint:
    """
    TCP to C{host}, its addresses looked up with the gateway's DNS client
    (IPv6 first), trying each in turn.
    """

    def __init__(self, reactor, dns_client, host, port, timeout, max_received=None):
        self.reactor = reactor
        self.dns_client = dns_client
        self.host = host
        self.port = port
        self.timeout = timeout
        self.max_received = max_received

    def connect(self, factory):
        if self.max_received is None:
            return defer.Deferred.fromCoroutine(self._connect(factory))
        # The caller gets its own protocol back, as from any endpoint.
        d = defer.Deferred.fromCoroutine(self._connect(_ReceiveLimit(factory, self.max_received)))
        return d.addCallback(lambda protocol: protocol.wrappedProtocol)

    async def _connect(self, factory):
        found = await lookup_addresses(self.dns_client, self.host)
        if not found.addresses:
            raise _NoAddresses(self.host, tuple(found.problems))
        failure = None
        for address in found.addresses:
            kind = TCP6ClientEndpoint if ipaddress.ip_address(address).version == 6 else (
                TCP4ClientEndpoint
            )
            endpoint = kind(self.reactor, address, self.port, timeout=self.timeout)
            try:
                return await endpoint.connect(factory)
            except error.ConnectError as e:
                failure = e
        raise failure


@implementer(IOpenSSLClientConnectionCreator)
class _KeepConnections:
    """
    Twisted's client TLS options, keeping each TLS connection so that a
    failed verification can be explained.
    """

    def __init__(self, options, connections):
        self.options = options
        self.connections = connections

    def clientConnectionForTLS(self, tlsProtocol):
        connection = self.options.clientConnectionForTLS(tlsProtocol)
        self.connections.append(connection)
        return connection


@implementer(IAgentEndpointFactory)
class _EndpointFactory:
    """
    HTTPS endpoints for the POSH client's agent: names resolved by the
    gateway's DNS client, TLS verified against C{trust_root}.  A URL
    without a port goes to C{default_port} (443, but for tests).
    """

    def __init__(self, reactor, dns_client, trust_root, default_port, timeout,
                 max_received=None):
        self.reactor = reactor
        self.dns_client = dns_client
        self.trust_root = trust_root
        self.default_port = default_port
        self.timeout = timeout
        self.max_received = max_received
        self.connections = []

    def endpointForURI(self, uri):
        if uri.scheme != b"https":
            raise SchemeNotSupported(f"POSH is fetched over https only, not {uri.scheme!r}")
        host = uri.host.decode("ascii").strip("[]")
        port = self.default_port if uri.port == 443 else uri.port
        options = optionsForClientTLS(
            host,
            trustRoot=self.trust_root,
            extraCertificateOptions={"raiseMinimumTo": TLSVersion.TLSv1_2},
        )
        return wrapClientTLS(
            _KeepConnections(options, self.connections),
            _ResolvingEndpoint(
                self.reactor, self.dns_client, host, port, self.timeout, self.max_received
            ),
        )


class _QuietPool(HTTPConnectionPool):
    """
    A pool of one-shot connections that doesn't log each one.
    """

    def __init__(self, reactor):
        super().__init__(reactor, persistent=False)
        # Twisted's (private) connection factory logs every connection.
        factory = getattr(self, "_factory", None)
        if isinstance(factory, type):
            self._factory = type("_QuietHTTPClientFactory", (factory,), {"noisy": False})


class _LimitedBody(Protocol):
    """
    Collects a response body of at most C{limit} bytes; past it, closes the
    connection and fails.
    """

    def __init__(self, limit):
        self.limit = limit
        self.received = 0
        self.chunks = []
        self.finished = defer.Deferred(self._cancel)

    def _cancel(self, d):
        self.finished = None
        self._stop()

    def _stop(self):
        if self.transport is not None:
            self.transport.stopProducing()

    def _fire(self, outcome):
        finished, self.finished = self.finished, None
        if finished is not None:
            if isinstance(outcome, Exception):
                finished.errback(outcome)
            else:
                finished.callback(outcome)

    def dataReceived(self, data):
        if self.finished is None:
            return
        self.received += len(data)
        if self.received > self.limit:
            self._stop()
            self._fire(_Outcome(ERROR, f"the file is larger than the limit of {self.limit} bytes"))
            return
        self.chunks.append(data)

    def connectionLost(self, reason):
        if reason.check(ResponseDone, PotentialDataLoss):
            self._fire(b"".join(self.chunks))
        else:
            broke = reason.getErrorMessage()
            self._fire(_Outcome(ERROR, f"the connection broke while reading: {broke}"))


class _Discard(Protocol):
    """
    Closes the connection instead of reading a body we don't want.
    """

    def connectionMade(self):
        self.transport.stopProducing()


def _verification_reason(host, connections, store):
    """
    Why the web server's certificate was refused, as PKIX would say it, or
    L{None} when that can't be told.
    """
    for connection in reversed(connections):
        try:
            chain = connection.get_peer_cert_chain(as_cryptography=True)
        except (SSL.Error, ValueError):
            chain = None
        if not chain:
            continue
        if store is not None:
            try:
                # OpenSSL judged the chain by the system's time: so does the
                # explanation of its verdict.
                validate_path(chain, store, datetime.datetime.now(datetime.timezone.utc))
            except PathError as e:
                return str(e)
        try:
            match_identity(chain[0], host)
        except IdentityError as e:
            return str(e)
        break
    return None


def _ssl_text(e):
    """
    OpenSSL's reasons in C{e} (an L{SSL.Error}), without the library names.
    """
    reasons = [
        entry[-1] for entry in (e.args[0] if e.args and isinstance(e.args[0], list) else ())
        if isinstance(entry, tuple) and entry
    ]
    return "; ".join(str(r) for r in reasons if r) or str(e) or e.__class__.__name__


class POSHClient:
    """
    Fetches POSH files over HTTPS (see the module docstring).

    @param reactor: for connections and timers.
    @param dns_client: the gateway's L{gateway.names.client.DNSClient} (or
        anything with its C{query}).
    @param trust_store: a PEM file or folder of the CAs trusted for HTTPS,
        or L{None} for the platform's.
    @param timeout: seconds for a whole fetch, references included.
    @param max_size: the most bytes read of a POSH file.
    @param max_cache: the most seconds a found document is cached.
    @param negative_cache: seconds an C{absent} or C{error} result is.
    @param port: where https URLs without a port are fetched: 443, as RFC
        7711 says; tests use another.
    """

    def __init__(self, reactor, dns_client, trust_store, timeout, max_size, max_cache,
                 negative_cache, port=443, cache_entries=CACHE_ENTRIES):
        self.reactor = reactor
        self.dns_client = dns_client
        self.trust_root = trust_root(trust_store)
        try:
            # For explaining refused web certificates the way PKIX does.
            self._store = load_trust_store(trust_store)
        except TrustStoreError:
            self._store = None
        self.timeout = timeout
        self.max_size = max_size
        self.max_cache = max_cache
        self.negative_cache = negative_cache
        self.port = port
        self.cache_entries = cache_entries
        self._cache = ExpiringCache(cache_entries)
        self._waiters = {}

    async def fetch(self, domain):
        """
        Fetch C{domain}'s POSH file for XMPP s2s, or answer from the cache.

        @rtype: L{POSHResult}; never raises.
        """
        try:
            key = _a_label(domain)
        except _Outcome as e:
            return POSHResult(e.status, posh_url(domain), reason=e.reason)
        cached = self._cache.get(key, self.reactor.seconds())
        if cached is not None:
            return replace(cached, cached=True)
        waiter = defer.Deferred()
        waiters = self._waiters.get(key)
        if waiters is not None:
            # Concurrent fetches for one domain share one request.
            waiters.append(waiter)
        else:
            self._waiters[key] = [waiter]
            defer.Deferred.fromCoroutine(self._fetch_and_keep(key)).addBoth(self._done, key)
        return await waiter

    def _done(self, outcome, key):
        for waiter in self._waiters.pop(key):
            waiter.callback(outcome)

    async def _fetch_and_keep(self, domain):
        url = posh_url(domain)
        fetching = defer.Deferred.fromCoroutine(self._fetch(domain))
        fetching.addTimeout(self.timeout, self.reactor)
        try:
            result = await fetching
        except defer.TimeoutError:
            result = POSHResult(ERROR, url, reason=f"no answer within {self.timeout:g}s")
        except Exception as e:
            log.failure("fetching the POSH file of {domain} failed", domain=domain)
            result = POSHResult(ERROR, url, reason=f"internal error: {e.__class__.__name__}: {e}")
        if result.status == FOUND:
            keep = min(result.document.expires, self.max_cache)
        else:
            keep = self.negative_cache
        log.info(
            "POSH {url}: {status} ({reason}); kept {keep:g}s",
            url=result.url, status=result.status, reason=result.reason, keep=keep,
        )
        if keep > 0:
            self._cache.put(domain, result, self.reactor.seconds() + keep)
        return result

    async def _fetch(self, domain):
        url = posh_url(domain)
        try:
            document = await self._get(url)
        except _Outcome as e:
            return POSHResult(e.status, url, reason=e.reason)
        if not document.is_reference:
            return POSHResult(FOUND, url, document, _found(document))
        reference = document.url
        try:
            target = await self._get(reference)
        except _Outcome as e:
            # The domain delegated; a broken delegation is an error, not
            # the absence of POSH.
            return POSHResult(ERROR, reference, reason=f"{url} points here: {e.reason}", via=url)
        if target.is_reference:
            return POSHResult(
                ERROR,
                reference,
                reason=f"{url} points here, and this points on to {target.url}; "
                "POSH follows one url only",
                via=url,
            )
        target = replace(target, expires=min(document.expires, target.expires))
        return POSHResult(FOUND, reference, target, _found(target), via=url)

    async def _get(self, url):
        """
        GET C{url}; return the parsed document.

        @raise _Outcome: when there is none.
        """
        host = urlsplit(url).hostname or ""
        endpoints = _EndpointFactory(
            self.reactor, self.dns_client, self.trust_root, self.port, self.timeout,
            max_received=self.max_size + MAX_HEADER_BYTES,
        )
        agent = Agent.usingEndpointFactory(
            self.reactor, endpoints, pool=_QuietPool(self.reactor)
        )
        # A client per request: no cookies kept between POSH servers.
        client = HTTPClient(agent)
        try:
            response = await client.get(
                url,
                headers=Headers({
                    b"Accept": [b"application/json"],
                    b"User-Agent": [f"xmpp-gateway/{__version__} (POSH)".encode("ascii")],
                }),
                allow_redirects=False,
            )
        except _NoAddresses as e:
            raise _Outcome(ABSENT, e.explain()) from None
        except error.ConnectionRefusedError:
            raise _Outcome(ABSENT, f"{host} refused the connection") from None
        except error.ConnectError as e:
            raise _Outcome(ERROR, f"could not connect: {e.__class__.__name__} {e}") from None
        except ResponseFailed as e:
            raise self._failed(host, e, endpoints.connections) from None
        except SchemeNotSupported as e:
            raise _Outcome(ERROR, str(e)) from None
        return await self._read(url, response)

    def _failed(self, host, failed, connections):
        """
        The L{_Outcome} of a request that got no response: TLS refused
        (verification), not spoken (absent), or a broken connection.
        """
        for reason in failed.reasons:
            if reason.check(defer.CancelledError):
                # The fetch is being cancelled (its time is up): not a
                # server's doing.
                return defer.CancelledError()
            if reason.check(VerificationError):
                explained = _verification_reason(host, connections, None)
                return _Outcome(
                    ERROR, f"invalid HTTPS certificate: {explained or reason.getErrorMessage()}"
                )
            if reason.check(SSL.Error):
                text = _ssl_text(reason.value)
                if "certificate verify failed" in text:
                    explained = _verification_reason(host, connections, self._store)
                    explained = explained or "certificate verify failed"
                    return _Outcome(ERROR, f"invalid HTTPS certificate: {explained}")
                return _Outcome(ABSENT, f"{host} does not serve HTTPS there (TLS: {text})")
        messages = "; ".join(reason.getErrorMessage() for reason in failed.reasons)
        return _Outcome(ERROR, f"no response: {messages}")

    async def _read(self, url, response):
        code = response.code
        if code != 200:
            response.deliverBody(_Discard())
            if 300 <= code < 400:
                location = response.headers.getRawHeaders(b"location", [b"?"])[0]
                raise _Outcome(
                    ABSENT,
                    f"HTTP {code} redirect to {location.decode('ascii', 'replace')}, not "
                    "followed: POSH delegates with a url member, not HTTP redirects",
                )
            if 400 <= code < 500:
                raise _Outcome(ABSENT, f"HTTP {code}")
            raise _Outcome(ERROR, f"HTTP {code}")
        if response.length is not UNKNOWN_LENGTH and response.length > self.max_size:
            response.deliverBody(_Discard())
            raise _Outcome(
                ERROR,
                f"the file is {response.length} bytes, larger than the limit of {self.max_size}",
            )
        body = _LimitedBody(self.max_size)
        response.deliverBody(body)
        data = await body.finished
        try:
            return parse_posh(data)
        except POSHError as e:
            raise _Outcome(ERROR, f"malformed POSH file: {e}") from None


def _found(document):
    count = document.descriptors
    return f"{count} fingerprint{'s' if count != 1 else ''}, expires {document.expires}s"
