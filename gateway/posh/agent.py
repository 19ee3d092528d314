"""
The HTTPS agent POSH files are fetched with (RFC 7711 section 3): an
L{IAgent} whose connections

  - go to the addresses the gateway's own DNS client finds for the URL's
    host (never the machine's resolver), IPv6 first, as the address policy
    (C{dns.allow_networks}) allows;
  - speak TLS 1.2 or later, the web server's certificate verified by PKIX
    against the configured trust store, with its name (RFC 6125); a refused
    certificate fails the request with L{InvalidCertificate}, saying why as
    L{gateway.tls.pkix} would;
  - receive at most a given number of bytes in all, and are never kept for
    another request.

L{posh_agent} builds it; L{gateway.posh.client.POSHClient} takes any
L{IAgent}, so that its tests can serve POSH files from memory.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import Store
from OpenSSL import SSL
from service_identity.exceptions import VerificationError
from twisted.internet import defer, error
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IReactorTCP,
    IStreamClientEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import Factory
from twisted.internet.ssl import (
    Certificate,
    TLSVersion,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.web.client import URI, Agent, HTTPConnectionPool, ResponseFailed
from twisted.web.error import SchemeNotSupported
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IAgentEndpointFactory, IBodyProducer, IResponse
from zope.interface import implementer

from gateway.names.interfaces import IDNSClient
from gateway.names.srv import lookup_addresses
from gateway.tls.pkix import (
    IdentityError,
    PathError,
    TrustStoreError,
    load_trust_store,
    match_identity,
    validate_path,
)

if TYPE_CHECKING:
    # Twisted documents it (optionsForClientTLS's trustRoot) but exports
    # it from a private module only.
    from twisted.internet._sslverify import IOpenSSLTrustRoot


class NoAddresses(Exception):
    """
    The host has no address records, or none that may be used: C{args} are
    the host and the problems with the addresses left out (the address
    policy's refusals).
    """

    def explain(self) -> str:
        host, problems = self.args
        if not problems:
            return f"{host} has no address records"
        return f"{host} has no address that may be used ({'; '.join(problems)})"


class InvalidCertificate(Exception):
    """
    The web server's certificate was refused; C{str()} says why, in PKIX's
    words when they can be told.
    """


def ssl_text(e: SSL.Error) -> str:
    """
    OpenSSL's reasons in C{e}, without the library names.
    """
    reasons = [
        entry[-1] for entry in (e.args[0] if e.args and isinstance(e.args[0], list) else ())
        if isinstance(entry, tuple) and entry
    ]
    return "; ".join(str(r) for r in reasons if r) or str(e) or e.__class__.__name__


def _pem_files(path: str) -> list[str]:
    if os.path.isdir(path):
        return [
            os.path.join(path, name) for name in sorted(os.listdir(path))
            if os.path.isfile(os.path.join(path, name))
        ]
    return [path]


def trust_root(path: str | None) -> IOpenSSLTrustRoot:
    """
    The HTTPS trust anchors for fetching POSH files: the CA certificates of
    the PEM file or folder C{path}, as L{gateway.tls.pkix} reads
    them, or the platform's when L{None}.

    @raise gateway.tls.pkix.TrustStoreError: naming the file.
    """
    if path is None:
        root: IOpenSSLTrustRoot = platformTrust()
        return root
    load_trust_store(path)  # the same checks, and messages, as PKIX's
    certificates: list[Certificate] = []
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
    root = trustRootFromCertificates(certificates)
    return root


class _ReceiveLimitProtocol(ProtocolWrapper):
    received = 0
    factory: _ReceiveLimit

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > self.factory.limit:
            # Under TLS over TCP: an ITCPTransport.
            cast(ITCPTransport, self.transport).abortConnection()
            return
        super().dataReceived(data)


class _ReceiveLimit(WrappingFactory[_ReceiveLimitProtocol]):
    """
    Drops a connection that receives more than C{limit} bytes in all (a
    server sending 300,000 headers, say).
    """

    protocol = _ReceiveLimitProtocol
    noisy = False

    def __init__(self, wrapped: IProtocolFactory, limit: int) -> None:
        super().__init__(wrapped)
        self.limit = limit


@implementer(IStreamClientEndpoint)
class _ResolvingEndpoint:
    """
    TCP to C{host}, its addresses looked up with the gateway's DNS client
    (IPv6 first), trying each in turn.
    """

    def __init__(self, reactor: IReactorTCP, dns_client: IDNSClient, host: str, port: int,
                 timeout: float, max_received: int | None = None) -> None:
        self.reactor = reactor
        self.dns_client = dns_client
        self.host = host
        self.port = port
        self.timeout = timeout
        self.max_received = max_received

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        if self.max_received is None:
            return defer.Deferred.fromCoroutine(self._connect(protocolFactory))
        # The caller gets its own protocol back, as from any endpoint.
        limited = _ReceiveLimit(protocolFactory, self.max_received)
        d = defer.Deferred.fromCoroutine(self._connect(limited))
        return d.addCallback(_wrapped_protocol)

    async def _connect(self, factory: IProtocolFactory) -> IProtocol:
        found = await lookup_addresses(self.dns_client, self.host)
        if not found.addresses:
            raise NoAddresses(self.host, tuple(found.problems))
        failure: Exception | None = None
        for address in found.addresses:
            endpoint: IStreamClientEndpoint
            if ipaddress.ip_address(address).version == 6:
                endpoint = TCP6ClientEndpoint(self.reactor, address, self.port, self.timeout)
            else:
                endpoint = TCP4ClientEndpoint(self.reactor, address, self.port, self.timeout)
            try:
                protocol: IProtocol = await endpoint.connect(factory)
                return protocol
            except error.ConnectError as e:
                failure = e
        assert failure is not None  # there was at least one address
        raise failure


def _wrapped_protocol(protocol: IProtocol) -> IProtocol:
    assert isinstance(protocol, ProtocolWrapper)
    wrapped: IProtocol = protocol.wrappedProtocol
    return wrapped


@implementer(IOpenSSLClientConnectionCreator)
class _KeepConnections:
    """
    Twisted's client TLS options, keeping each TLS connection so that a
    failed verification can be explained.
    """

    def __init__(self, options: IOpenSSLClientConnectionCreator,
                 connections: list[SSL.Connection]) -> None:
        self.options = options
        self.connections = connections

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        connection = self.options.clientConnectionForTLS(tlsProtocol)
        self.connections.append(connection)
        return connection


@implementer(IAgentEndpointFactory)
class _EndpointFactory:
    """
    HTTPS endpoints for one request: names resolved by the gateway's DNS
    client, TLS verified against C{trust_root}.  A URL without a port goes
    to C{default_port} (443, but for tests).
    """

    def __init__(self, reactor: IReactorTCP, dns_client: IDNSClient,
                 trust_root: IOpenSSLTrustRoot, default_port: int, timeout: float,
                 max_received: int | None = None) -> None:
        self.reactor = reactor
        self.dns_client = dns_client
        self.trust_root = trust_root
        self.default_port = default_port
        self.timeout = timeout
        self.max_received = max_received
        self.connections: list[SSL.Connection] = []

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        if uri.scheme != b"https":
            raise SchemeNotSupported(f"POSH is fetched over https only, not {uri.scheme!r}")
        host = uri.host.decode("ascii").strip("[]")
        port = self.default_port if uri.port == 443 else uri.port
        options = optionsForClientTLS(
            host,
            trustRoot=self.trust_root,
            extraCertificateOptions={"raiseMinimumTo": TLSVersion.TLSv1_2},
        )
        return _Quiet(wrapClientTLS(
            _KeepConnections(options, self.connections),
            _ResolvingEndpoint(
                self.reactor, self.dns_client, host, port, self.timeout, self.max_received
            ),
        ))


@implementer(IStreamClientEndpoint)
class _Quiet:
    """
    Connects the HTTP client's factory without its logging each start and
    stop.

    Every POSH fetch connects through a factory of its own (the connection
    pool makes one per connection), which, as a L{Factory}, logs "Starting
    factory" and "Stopping factory": two lines per fetch beside the fetch's
    own.  The pool offers no way to choose that factory; its C{noisy}
    attribute, public, is the switch, and this endpoint, which receives the
    factory, turns it off.
    """

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self.endpoint = endpoint

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        if isinstance(protocolFactory, Factory):
            protocolFactory.noisy = False
        connected: defer.Deferred[IProtocol] = self.endpoint.connect(protocolFactory)
        return connected


def _verification_reason(host: str, connections: Sequence[SSL.Connection],
                         store: Store | None) -> str | None:
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


@implementer(IAgent)
class POSHAgent:
    """
    The agent L{posh_agent} makes (see the module docstring).

    @ivar reactor: for connections (an L{IReactorTCP} and L{IReactorTime}).
    @ivar dns_client: the gateway's DNS client, with its address policy.
    @ivar trust_root: the CAs trusted for HTTPS.
    @ivar store: the same CAs for L{gateway.tls.pkix}, to explain a refused
        certificate (L{None}: the platform's, which OpenSSL explains).
    @ivar port: where https URLs without a port are fetched.
    @ivar timeout: seconds for a TCP connection.
    @ivar max_received: the most bytes a connection receives, or L{None}.
    """

    def __init__(self, reactor: IReactorTCP, dns_client: IDNSClient,
                 trust_root: IOpenSSLTrustRoot, store: Store | None, port: int, timeout: float,
                 max_received: int | None) -> None:
        self.reactor = reactor
        self.dns_client = dns_client
        self.trust_root = trust_root
        self.store = store
        self.port = port
        self.timeout = timeout
        self.max_received = max_received

    def request(self, method: bytes, uri: bytes, headers: Headers | None = None,
                bodyProducer: IBodyProducer | None = None) -> defer.Deferred[IResponse]:
        # An endpoint factory per request keeps the TLS connections of this
        # request only, to explain its refused certificate.
        endpoints = _EndpointFactory(
            self.reactor, self.dns_client, self.trust_root, self.port, self.timeout,
            self.max_received,
        )
        # Connections are never kept: POSH servers are asked seldom, and
        # each one once per expiry.
        pool = HTTPConnectionPool(self.reactor, persistent=False)
        agent = Agent.usingEndpointFactory(self.reactor, endpoints, pool=pool)
        requested: defer.Deferred[IResponse] = agent.request(method, uri, headers, bodyProducer)
        host = urlsplit(uri.decode("ascii")).hostname or ""
        return requested.addErrback(self._explain, host, endpoints.connections)

    def _explain(self, failure: Failure, host: str,
                 connections: list[SSL.Connection]) -> Failure:
        """
        Turn a refused certificate into L{InvalidCertificate}; pass on
        other failures.
        """
        failed = failure.value
        if not isinstance(failed, ResponseFailed):
            return failure
        for reason in failed.reasons:
            if reason.check(VerificationError):
                # Verified by OpenSSL, refused by service_identity: the name.
                explained = _verification_reason(host, connections, None)
                raise InvalidCertificate(explained or reason.getErrorMessage())
            if reason.check(SSL.Error):
                if "certificate verify failed" in ssl_text(reason.value):
                    explained = _verification_reason(host, connections, self.store)
                    raise InvalidCertificate(explained or "certificate verify failed")
                break
            if reason.check(defer.CancelledError):
                break
        return failure


def posh_agent(reactor: IReactorTCP, dns_client: IDNSClient, trust_store: str | None,
               timeout: float, max_received: int | None = None, port: int = 443) -> POSHAgent:
    """
    The HTTPS agent for POSH files (see the module docstring).

    @param reactor: for connections (an L{IReactorTCP} and L{IReactorTime}).
    @param dns_client: the gateway's L{gateway.names.client.DNSClient}; its
        C{address_policy} decides which addresses may be connected to.
    @param trust_store: a PEM file or folder of the CAs trusted for HTTPS,
        or L{None} for the platform's.
    @param timeout: seconds for a TCP connection.
    @param max_received: the most bytes a connection may receive, headers
        and TLS included; L{None}: no limit.
    @param port: where https URLs without a port go: 443, as RFC 7711 says;
        tests use another.

    @raise gateway.tls.pkix.TrustStoreError: naming the file.
    """
    root = trust_root(trust_store)
    store: Store | None
    try:
        store = load_trust_store(trust_store)
    except TrustStoreError:
        store = None
    return POSHAgent(reactor, dns_client, root, store, port, timeout, max_received)
