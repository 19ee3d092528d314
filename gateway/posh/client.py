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
L{posh_document}) and the fetching (L{POSHClient}), which:

  - fetches over any HTTP agent (L{twisted.web.iweb.IAgent}); the
    gateway's, L{gateway.posh.agent.posh_agent}, resolves names with the gateway's own DNS client (never the machine's
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

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple, NoReturn, TypeAlias, cast
from urllib.parse import urlsplit

from OpenSSL import SSL
from treq.client import HTTPClient
from twisted.internet import defer, error
from twisted.internet.interfaces import IPushProducer, IReactorTCP, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, ResponseFailed
from twisted.web.error import SchemeNotSupported
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IResponse

from gateway import __version__
from gateway.cache import ExpiringCache
from gateway.log import Logger
from gateway.names.interfaces import IDNSClient
from gateway.posh.agent import InvalidCertificate, NoAddresses, posh_agent, ssl_text
from gateway.xmpp.jid import AddressError, canonical_domain

log = Logger()

_BytesLike: TypeAlias = bytes | bytearray | memoryview

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

    fingerprints: tuple[tuple[str, bytes], ...] = ()
    expires: int = 0
    url: str | None = None
    descriptors: int = 0

    @property
    def is_reference(self) -> bool:
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


def _no_constants(name: str) -> NoReturn:
    raise POSHError(f"not valid JSON: {name} is not a JSON number")


def _unique_members(pairs: list[tuple[str, object]]) -> dict[str, object]:
    members: dict[str, object] = {}
    for key, value in pairs:
        if key in members:
            raise POSHError(f"the member {key!r} appears twice")
        members[key] = value
    return members


def _kind(value: object) -> str:
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


def _expires(document: dict[str, object]) -> int:
    if "expires" not in document:
        # A file without expires is used, but not cached: the safe reading.
        return 0
    value = document["expires"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise POSHError(f"expires must be a whole number of seconds, not {_kind(value)}")
    if value < 0:
        raise POSHError(f"expires must not be negative ({value})")
    return value


def _reference(value: object) -> str:
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


def _digest(name: str, value: object, position: int) -> bytes:
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


def _fingerprints(value: object) -> tuple[tuple[tuple[str, bytes], ...], int]:
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


def parse_posh(body: _BytesLike) -> POSHDocument:
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


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def certificate_fingerprint(der: _BytesLike, name: str = "sha-256") -> str:
    """
    The POSH fingerprint of certificate C{der}: C{"<hash>:<base64>"} of
    the whole DER certificate.
    """
    return f"{name}:{_b64(HASHES[name](bytes(der)).digest())}"


def match_posh(document: POSHDocument, chain: Sequence[_BytesLike]) -> POSHMatch:
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


def posh_document(
    certificate_der: _BytesLike,
    expires: int,
    more: Iterable[_BytesLike] = (),
) -> bytes:
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

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def posh_url(domain: str) -> str:
    """
    The well-known URL of C{domain}'s POSH file for XMPP s2s.
    """
    return f"https://{domain}{WELL_KNOWN_PATH}"


def _a_label(domain: str) -> str:
    try:
        return canonical_domain(domain)
    except AddressError as e:
        raise _Outcome(ERROR, f"{domain!r} is not a domain name: {e}") from None


#: Bytes a POSH server may send beyond the document's own limit: the status
#: line, headers and TLS records.  Twisted's HTTP client caps each header
#: line but not how many there are; this caps them all.
MAX_HEADER_BYTES = 64 * 1024


def _producer(transport: object) -> IPushProducer:
    """
    The transport of a protocol given to L{IResponse.deliverBody}: an
    L{IPushProducer}, not an L{ITransport} as L{Protocol} declares.
    """
    return cast(IPushProducer, transport)


class _LimitedBody(Protocol):
    """
    Collects a response body of at most C{limit} bytes; past it, closes the
    connection and fails.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.received = 0
        self.chunks: list[bytes] = []
        self.finished: defer.Deferred[bytes] | None = defer.Deferred(self._cancel)

    def _cancel(self, d: defer.Deferred[bytes]) -> None:
        self.finished = None
        self._stop()

    def _stop(self) -> None:
        if self.transport is not None:
            _producer(self.transport).stopProducing()

    def _fire(self, outcome: bytes | _Outcome) -> None:
        finished, self.finished = self.finished, None
        if finished is not None:
            if isinstance(outcome, _Outcome):
                finished.errback(outcome)
            else:
                finished.callback(outcome)

    def dataReceived(self, data: bytes) -> None:
        if self.finished is None:
            return
        self.received += len(data)
        if self.received > self.limit:
            self._stop()
            self._fire(_Outcome(ERROR, f"the file is larger than the limit of {self.limit} bytes"))
            return
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if reason.check(ResponseDone, PotentialDataLoss):
            self._fire(b"".join(self.chunks))
        else:
            broke = reason.getErrorMessage()
            self._fire(_Outcome(ERROR, f"the connection broke while reading: {broke}"))


class _Discard(Protocol):
    """
    Closes the connection instead of reading a body we don't want.
    """

    def connectionMade(self) -> None:
        _producer(self.transport).stopProducing()


class POSHClient:
    """
    Fetches POSH files over HTTPS (see the module docstring).

    @param agent: the HTTP client: L{gateway.posh.agent.posh_agent}'s (see
        L{over_https}), or one serving files from memory in tests.  It may
        fail a request with L{NoAddresses} and L{InvalidCertificate}, as
        that one does.
    @param clock: for the timeout and the cache's lifetimes.
    @param timeout: seconds for a whole fetch, references included.
    @param max_size: the most bytes read of a POSH file.
    @param max_cache: the most seconds a found document is cached.
    @param negative_cache: seconds an C{absent} or C{error} result is.
    @param cache_entries: the most domains kept in the cache.
    """

    def __init__(self, agent: IAgent, clock: IReactorTime, timeout: float, max_size: int,
                 max_cache: float, negative_cache: float,
                 cache_entries: int = CACHE_ENTRIES) -> None:
        self.agent = agent
        self.clock = clock
        self.timeout = timeout
        self.max_size = max_size
        self.max_cache = max_cache
        self.negative_cache = negative_cache
        self.cache_entries = cache_entries
        self._cache: ExpiringCache[str, POSHResult, float] = ExpiringCache(cache_entries)
        self._waiters: dict[str, list[defer.Deferred[POSHResult]]] = {}

    @classmethod
    def over_https(cls, reactor: IReactorTCP, dns_client: IDNSClient, trust_store: str | None,
                   timeout: float, max_size: int, max_cache: float, negative_cache: float,
                   port: int = 443, cache_entries: int = CACHE_ENTRIES) -> POSHClient:
        """
        The client the gateway uses: fetching with L{posh_agent} (names
        resolved by C{dns_client}, certificates verified against
        C{trust_store}), timed by C{reactor}.

        @param reactor: for connections and timers (an L{IReactorTCP} and
            L{IReactorTime}).
        @param dns_client: the gateway's L{gateway.names.client.DNSClient}.
        @param trust_store: a PEM file or folder of the CAs trusted for
            HTTPS, or L{None} for the platform's.
        @param port: where https URLs without a port are fetched: 443, as
            RFC 7711 says; tests use another.

        The other parameters are L{POSHClient}'s.

        @raise gateway.tls.pkix.TrustStoreError: naming the file.
        """
        agent = posh_agent(
            reactor, dns_client, trust_store, timeout,
            max_received=max_size + MAX_HEADER_BYTES, port=port,
        )
        # A reactor is both; Python's types can't say so.
        clock = cast(IReactorTime, reactor)
        return cls(agent, clock, timeout, max_size, max_cache, negative_cache, cache_entries)

    async def fetch(self, domain: str) -> POSHResult:
        """
        Fetch C{domain}'s POSH file for XMPP s2s, or answer from the cache.

        @return: the L{POSHResult}; never raises.
        """
        try:
            key = _a_label(domain)
        except _Outcome as e:
            return POSHResult(e.status, posh_url(domain), reason=e.reason)
        cached = self._cache.get(key, self.clock.seconds())
        if cached is not None:
            return replace(cached, cached=True)
        waiter: defer.Deferred[POSHResult] = defer.Deferred()
        waiters = self._waiters.get(key)
        if waiters is not None:
            # Concurrent fetches for one domain share one request.
            waiters.append(waiter)
        else:
            self._waiters[key] = [waiter]
            defer.Deferred.fromCoroutine(self._fetch_and_keep(key)).addBoth(self._done, key)
        return await waiter

    def _done(self, outcome: POSHResult | Failure, key: str) -> None:
        for waiter in self._waiters.pop(key):
            waiter.callback(outcome)

    async def _fetch_and_keep(self, domain: str) -> POSHResult:
        url = posh_url(domain)
        fetching = defer.Deferred.fromCoroutine(self._fetch(domain))
        fetching.addTimeout(self.timeout, self.clock)
        try:
            result = await fetching
        except defer.TimeoutError:
            result = POSHResult(ERROR, url, reason=f"no answer within {self.timeout:g}s")
        except Exception as e:
            log.failure("fetching the POSH file of {domain} failed", domain=domain)
            result = POSHResult(ERROR, url, reason=f"internal error: {e.__class__.__name__}: {e}")
        keep: float
        if result.status == FOUND and result.document is not None:
            keep = min(result.document.expires, self.max_cache)
        else:
            keep = self.negative_cache
        log.info(
            "POSH {url}: {status} ({reason}); kept {keep:g}s",
            url=result.url, status=result.status, reason=result.reason, keep=keep,
        )
        if keep > 0:
            self._cache.put(domain, result, self.clock.seconds() + keep)
        return result

    async def _fetch(self, domain: str) -> POSHResult:
        url = posh_url(domain)
        try:
            document = await self._get(url)
        except _Outcome as e:
            return POSHResult(e.status, url, reason=e.reason)
        if document.url is None:
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

    async def _get(self, url: str) -> POSHDocument:
        """
        GET C{url}; return the parsed document.

        @raise _Outcome: when there is none.
        """
        host = urlsplit(url).hostname or ""
        # A client per request: no cookies kept between POSH servers.
        client = HTTPClient(self.agent)
        try:
            response = await client.get(
                url,
                headers=Headers({
                    b"Accept": [b"application/json"],
                    b"User-Agent": [f"xmpp-gateway/{__version__} (POSH)".encode("ascii")],
                }),
                allow_redirects=False,
            )
        except NoAddresses as e:
            raise _Outcome(ABSENT, e.explain()) from None
        except InvalidCertificate as e:
            raise _Outcome(ERROR, f"invalid HTTPS certificate: {e}") from None
        except error.ConnectionRefusedError:
            raise _Outcome(ABSENT, f"{host} refused the connection") from None
        except error.ConnectError as e:
            raise _Outcome(ERROR, f"could not connect: {e.__class__.__name__} {e}") from None
        except ResponseFailed as e:
            raise self._failed(host, e) from None
        except SchemeNotSupported as e:
            raise _Outcome(ERROR, str(e)) from None
        return await self._read(response)

    def _failed(self, host: str, failed: ResponseFailed) -> Exception:
        """
        The L{_Outcome} of a request that got no response: TLS not spoken
        (absent), or a broken connection.
        """
        for reason in failed.reasons:
            if reason.check(defer.CancelledError):
                # The fetch is being cancelled (its time is up): not a
                # server's doing.
                return defer.CancelledError()
            if reason.check(SSL.Error):
                text = ssl_text(reason.value)
                return _Outcome(ABSENT, f"{host} does not serve HTTPS there (TLS: {text})")
        messages = "; ".join(reason.getErrorMessage() for reason in failed.reasons)
        return _Outcome(ERROR, f"no response: {messages}")

    async def _read(self, response: IResponse) -> POSHDocument:
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
        length = response.length
        if length is not UNKNOWN_LENGTH and isinstance(length, int) and length > self.max_size:
            response.deliverBody(_Discard())
            raise _Outcome(
                ERROR,
                f"the file is {length} bytes, larger than the limit of {self.max_size}",
            )
        body = _LimitedBody(self.max_size)
        finished = body.finished
        assert finished is not None
        response.deliverBody(body)
        data = await finished
        try:
            return parse_posh(data)
        except POSHError as e:
            raise _Outcome(ERROR, f"malformed POSH file: {e}") from None


def _found(document: POSHDocument) -> str:
    count = document.descriptors
    return f"{count} fingerprint{'s' if count != 1 else ''}, expires {document.expires}s"
