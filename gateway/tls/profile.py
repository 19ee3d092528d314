"""
The TLS profile (RFC 7590, RFC 9325 / BCP 195).  Nothing else in the
gateway builds TLS contexts.

  - TLS 1.2 at least; TLS 1.3 is preferred by OpenSSL's negotiation.
  - TLS 1.2 cipher suites: ECDHE key exchange with AEAD ciphers only
    (AES-GCM, ChaCha20-Poly1305); TLS 1.3 suites are all AEAD with (EC)DHE.
  - No compression (CRIME), no renegotiation.
  - No session resumption: s2s streams are long-lived and few, so
    resumption saves little, while ticket keys that OpenSSL never rotates
    would undo forward secrecy for every recorded stream.  Tickets are
    off and the server-side session cache is disabled.
  - The server certificate is chosen per local domain: from the stream
    header's C{to} for STARTTLS, and from SNI where the peer sends it.
  - Outbound connections send SNI with the peer's XMPP domain
    (RFC 7590 section 3.2) and present our certificate for the local
    domain, so that peers can authenticate us.
  - The peer's certificate is requested and recorded but never judged at
    the TLS layer: deciding who the peer is belongs to the verifiers.
  - A handshake flight of more than 32 KiB (a long chain, a certificate
    with thousands of names) is sent whole: see L{_flush_send_bio}.
"""

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from OpenSSL import SSL, crypto
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    ISystemHandle,
)
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from gateway.xmpp.jid import canonical_domain


def _flush_send_bio(self: TLSMemoryBIOProtocol) -> None:
    """
    Write everything OpenSSL has for the peer, not only its first 32 KiB.

    Twisted's L{TLSMemoryBIOProtocol} (26.10) reads at most 32 KiB from the
    send BIO each time it flushes.  When OpenSSL finishes a handshake flight
    larger than that (a TLS 1.3 client's certificate flight, a server's
    first flight with a long chain), the rest waits in the BIO until
    something else is written, and both sides wait for each other until a
    timeout: a peer with a certificate of 40 KiB could not federate.
    """
    while True:
        try:
            data = self._tlsConnection.bio_read(2**15)
        except SSL.WantReadError:
            return
        assert self.transport is not None  # only connected protocols have data to send
        self.transport.write(data)
        if len(data) < 2**15:
            # A memory BIO gives all it holds, up to what is asked: it is
            # empty now (no need to ask again and be told so by an error).
            return


# A Twisted bug's workaround (see above): replacing the method is the point.
TLSMemoryBIOProtocol._flushSendBIO = _flush_send_bio  # type: ignore[method-assign]

TLS12_CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"

_OPTIONS = (
    SSL.OP_NO_SSLv2
    | SSL.OP_NO_SSLv3
    | SSL.OP_NO_TLSv1
    | SSL.OP_NO_TLSv1_1
    | SSL.OP_NO_COMPRESSION
    | SSL.OP_NO_RENEGOTIATION
    | SSL.OP_NO_TICKET
    | SSL.OP_CIPHER_SERVER_PREFERENCE
    | SSL.OP_SINGLE_ECDH_USE
)


class TLSConfigurationError(Exception):
    """
    A certificate or key can't be loaded.
    """


@dataclass(frozen=True, slots=True)
class TLSFacts:
    """
    What was negotiated on one TLS session.

    @ivar peer_chain: the DER certificates the peer presented, its own
        first; empty when it presented none.
    """

    version: str
    cipher: str
    peer_chain: tuple[bytes, ...] = ()
    server_name: str | None = None
    alpn: str | None = None


def _accept_any_certificate(
    connection: SSL.Connection, certificate: crypto.X509, errno: int, depth: int, ok: int
) -> bool:
    # Ask for and keep the peer's chain; judging it is the verifiers' job.
    return True


def _base_context() -> SSL.Context:
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(_OPTIONS)
    context.set_cipher_list(TLS12_CIPHERS)
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    # Give an idle connection's read and write buffers (about 34 KiB) back
    # until it carries data again: most s2s streams are idle most of the time.
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    context.set_verify(SSL.VERIFY_PEER, _accept_any_certificate)
    return context


#: XEP-0368 section 4: the ALPN protocol of direct TLS s2s, on which TLS
#: multiplexers (sslh, nginx stream, HAProxy) route.
ALPN_XMPP_SERVER = b"xmpp-server"


def _select_alpn(
    connection: SSL.Connection, offered: list[bytes]
) -> "bytes | SSL._NoOverlappingProtocols":
    # Take xmpp-server when it is offered; with anything else (or nothing)
    # go on without ALPN rather than fail the handshake.
    if ALPN_XMPP_SERVER in offered:
        return ALPN_XMPP_SERVER
    return SSL.NO_OVERLAPPING_PROTOCOLS


def _load_identity(context: SSL.Context, certificate_file: str, key_file: str) -> None:
    try:
        context.use_certificate_chain_file(certificate_file)
        context.use_privatekey_file(key_file)
        context.check_privatekey()
    except SSL.Error as e:
        raise TLSConfigurationError(
            f"{certificate_file}, {key_file}: cannot use this certificate and key: {e}"
        ) from None


class Identity(Protocol):
    """
    What L{TLSProfile} reads of a L{gateway.app.state.LocalIdentity}: the
    local domain, and the PEM files of its certificate chain and key.
    """

    @property
    def domain(self) -> str: ...

    @property
    def certificate_file(self) -> str: ...

    @property
    def key_file(self) -> str: ...


class TLSProfile:
    """
    The TLS contexts of every local domain, built once.

    @param identities: L{gateway.app.state.LocalIdentity} values.
    """

    def __init__(self, identities: Sequence[Identity]) -> None:
        self._server_contexts: dict[str, SSL.Context] = {}
        self._client_contexts: dict[str, SSL.Context] = {}
        for identity in identities:
            server = _base_context()
            _load_identity(server, identity.certificate_file, identity.key_file)
            server.set_tlsext_servername_callback(self._select_by_sni)
            server.set_alpn_select_callback(_select_alpn)
            self._server_contexts[identity.domain] = server
            client = _base_context()
            _load_identity(client, identity.certificate_file, identity.key_file)
            self._client_contexts[identity.domain] = client
        if not identities:
            raise TLSConfigurationError("no local domain to serve")
        self._default_domain = identities[0].domain

    def _select_by_sni(self, connection: SSL.Connection) -> None:
        name = connection.get_servername()
        if name is None:
            return
        try:
            domain = name.decode("ascii").lower().rstrip(".")
        except UnicodeDecodeError:
            return
        context = self._server_contexts.get(domain)
        if context is not None:
            connection.set_context(context)

    def server_creator(self, domain: str | None = None) -> "_ServerCreator":
        """
        A connection creator for the server side of a stream to local
        C{domain} (L{None}: decided by SNI alone, for direct TLS).
        """
        context = self._server_contexts.get(domain or self._default_domain)
        if context is None:
            context = self._server_contexts[self._default_domain]
        return _ServerCreator(context)

    def client_creator(
        self, local_domain: str, peer_domain: str, direct_tls: bool = False
    ) -> "_ClientCreator":
        """
        A connection creator for an outbound stream from C{local_domain} to
        C{peer_domain}, sending SNI, and for direct TLS (XEP-0368) the ALPN
        protocol C{xmpp-server}.
        """
        return _ClientCreator(
            self._client_contexts[local_domain],
            peer_domain,
            (ALPN_XMPP_SERVER,) if direct_tls else (),
        )


@implementer(IOpenSSLServerConnectionCreator)
class _ServerCreator:
    def __init__(self, context: SSL.Context) -> None:
        self._context = context

    def serverConnectionForTLS(self, protocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        return SSL.Connection(self._context, None)


@implementer(IOpenSSLClientConnectionCreator)
class _ClientCreator:
    def __init__(
        self, context: SSL.Context, server_name: str, alpn: Iterable[bytes] = ()
    ) -> None:
        self._context = context
        # Domains are canonical (gateway.xmpp.jid): lower-case A-labels already.
        self._server_name = canonical_domain(server_name).encode("ascii")
        self._alpn = list(alpn)

    def clientConnectionForTLS(self, protocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_tlsext_host_name(self._server_name)
        if self._alpn:
            connection.set_alpn_protos(self._alpn)
        connection.set_connect_state()
        return connection


@functools.lru_cache(maxsize=1024)
def _shared_chain(chain: tuple[bytes, ...]) -> tuple[bytes, ...]:
    # Streams from the same peer present the same chain: keep one copy.
    return chain


def tls_facts(transport: ISystemHandle) -> TLSFacts:
    """
    Read the L{TLSFacts} off a transport whose TLS handshake completed.

    @param transport: a TLS transport, whose handle is its
        L{OpenSSL.SSL.Connection}.
    """
    connection = cast(SSL.Connection, transport.getHandle())
    chain = [crypto.dump_certificate(crypto.FILETYPE_ASN1, c) for c in connection.get_peer_cert_chain() or ()]
    certificate = connection.get_peer_certificate()
    if certificate is not None:
        peer = crypto.dump_certificate(crypto.FILETYPE_ASN1, certificate)
        if not chain or chain[0] != peer:
            # A server's view of the chain leaves out the client's own certificate.
            chain.insert(0, peer)
    peer_chain = _shared_chain(tuple(chain))
    server_name = connection.get_servername()
    alpn = connection.get_alpn_proto_negotiated()
    return TLSFacts(
        version=connection.get_protocol_version_name(),
        # Never None once the handshake completed.
        cipher=cast(str, connection.get_cipher_name()),
        peer_chain=peer_chain,
        server_name=server_name.decode("ascii", "replace") if server_name else None,
        alpn=alpn.decode("ascii", "replace") if alpn else None,
    )
