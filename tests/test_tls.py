"""
The TLS profile, checked from outside with Python's own TLS client (and
pyOpenSSL's, for the key exchange groups) over a real loopback connection:
versions, cipher suites, key exchange groups, compression, certificate
selection by stream C{to} and by SNI.
"""

import socket
import ssl

from twisted.internet import defer, threads
from twisted.trial import unittest

from tests.support import World

STREAM_HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
    "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
    "from='client.test' to='{to}' version='1.0'>"
)


def _read_until(sock, marker, limit=65536):
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            break
    return data


def starttls_handshake(port, context, to="a.test", server_name=None):
    """
    Connect, negotiate STARTTLS for C{to}, and do the TLS handshake with
    C{context} (blocking; run in a thread).

    @return: C{(version, cipher, compression, peer certificate DER)}.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(STREAM_HEADER.format(to=to).encode())
        _read_until(raw, b"</stream:features>")
        raw.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        reply = _read_until(raw, b"<proceed")
        assert b"<proceed" in reply, reply
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            return (
                tls.version(),
                tls.cipher()[0],
                tls.compression(),
                tls.getpeercert(binary_form=True),
            )


def direct_tls_handshake(port, context, server_name):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            return tls.version(), tls.getpeercert(binary_form=True)


def client_context(minimum=None, maximum=None, ciphers=None):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if minimum:
        context.minimum_version = minimum
    if maximum:
        context.maximum_version = maximum
    if ciphers:
        context.set_ciphers(ciphers)
    return context


def certificate_names(der):
    from cryptography import x509

    certificate = x509.load_der_x509_certificate(der)
    return certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)


class TLSProfileTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.world = World(self)
        # One gateway serving two domains, each with its own certificate.
        folder = self.world.folder
        certificate, key = self.world.ca.write_identity(folder + "/second", "second.test")
        self.gateway = yield defer.Deferred.fromCoroutine(
            self.world.gateway(
                "a.test",
                direct_tls=True,
                extra=(
                    '[domains."second.test"]\ncomponent_secret = "secret-second"\n'
                    f'certificate = "{certificate}"\nkey = "{key}"\n'
                ),
            )
        )

    def handshake(self, context, **kwargs):
        return threads.deferToThread(
            starttls_handshake, self.gateway.s2s_port, context, **kwargs
        )

    @defer.inlineCallbacks
    def test_tls13_preferred(self):
        version, cipher, compression, _ = yield self.handshake(client_context())
        self.assertEqual(version, "TLSv1.3")
        self.assertIsNone(compression)

    @defer.inlineCallbacks
    def test_tls12_aead_only(self):
        """
        With TLS 1.2, the suite is ECDHE with an AEAD cipher.
        """
        version, cipher, compression, _ = yield self.handshake(
            client_context(maximum=ssl.TLSVersion.TLSv1_2)
        )
        self.assertEqual(version, "TLSv1.2")
        self.assertTrue(cipher.startswith("ECDHE-"), cipher)
        self.assertTrue("GCM" in cipher or "CHACHA20" in cipher, cipher)

    @defer.inlineCallbacks
    def test_cbc_only_client_refused(self):
        """
        A TLS 1.2 client offering only CBC (non-AEAD) suites is refused by
        the server's handshake alert.
        """
        context = client_context(
            maximum=ssl.TLSVersion.TLSv1_2,
            ciphers="ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256",
        )
        with self.assertRaises(ssl.SSLError) as caught:
            yield self.handshake(context)
        self.assertEqual(caught.exception.reason, "SSLV3_ALERT_HANDSHAKE_FAILURE")

    @defer.inlineCallbacks
    def test_old_versions_refused(self):
        """
        A client that speaks at most TLS 1.1 gets a protocol-version alert.
        """
        context = client_context(
            minimum=ssl.TLSVersion.TLSv1, maximum=ssl.TLSVersion.TLSv1_1,
            ciphers="DEFAULT:@SECLEVEL=0",
        )
        with self.assertRaises(ssl.SSLError) as caught:
            yield self.handshake(context)
        # The alert comes from the gateway: this client would have spoken TLS 1.0.
        self.assertEqual(caught.exception.reason, "TLSV1_ALERT_PROTOCOL_VERSION")

    @defer.inlineCallbacks
    def test_certificate_chosen_by_stream_to(self):
        """
        STARTTLS on a stream to second.test presents second.test's
        certificate, even without SNI.
        """
        _, _, _, der = yield self.handshake(client_context(), to="second.test")
        self.assertEqual(certificate_names(der), ["second.test"])
        _, _, _, der = yield self.handshake(client_context(), to="a.test")
        self.assertEqual(certificate_names(der), ["a.test"])

    @defer.inlineCallbacks
    def test_certificate_chosen_by_sni(self):
        """
        Direct TLS (XEP-0368) picks the certificate by SNI.
        """
        for name in ("second.test", "a.test"):
            version, der = yield threads.deferToThread(
                direct_tls_handshake, self.gateway.direct_tls_port, client_context(), name
            )
            self.assertEqual(certificate_names(der), [name])

    @defer.inlineCallbacks
    def test_key_exchange_groups(self):
        """
        The key exchange groups are OpenSSL's defaults: a peer whose OpenSSL
        offers the post-quantum hybrid X25519MLKEM768 gets it; one that
        offers only X25519 (OpenSSL 3.0's first choice) gets X25519.
        """
        hybrid = yield threads.deferToThread(
            direct_tls_group, self.gateway.direct_tls_port, None
        )
        self.assertEqual(hybrid, "X25519MLKEM768")
        classic = yield threads.deferToThread(
            direct_tls_group, self.gateway.direct_tls_port, b"X25519:P-256"
        )
        self.assertEqual(classic.lower(), "x25519")


def direct_tls_group(port, groups):
    """
    Do a direct TLS handshake with the OpenSSL that pyOpenSSL uses (the
    standard library's may be too old for the hybrid), offering C{groups}
    (L{None}: its defaults), and say which group was negotiated.
    """
    from OpenSSL import SSL
    from OpenSSL._util import lib

    context = SSL.Context(SSL.TLS_METHOD)
    if groups is not None:
        # pyOpenSSL has no call for the groups.
        assert lib.SSL_CTX_set1_curves_list(context._context, groups) == 1
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        # pyOpenSSL wants a blocking socket (the test's timeout bounds it).
        raw.settimeout(None)
        connection = SSL.Connection(context, raw)
        connection.set_tlsext_host_name(b"a.test")
        connection.set_connect_state()
        connection.do_handshake()
        return connection.get_group_name()
