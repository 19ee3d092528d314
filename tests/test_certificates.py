"""
Tests for L{gateway.tls.certificates}: fingerprints, names and summaries of
certificates made here.
"""

import datetime
import hashlib
import ipaddress
import json

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from twisted.trial.unittest import SynchronousTestCase

from gateway.tls.certificates import (
    ID_ON_DNSSRV,
    ID_ON_XMPPADDR,
    CertificateSummary,
    DERError,
    certificate_sha256,
    common_names,
    decode_der_string,
    format_time,
    read_tlv,
    spki_sha256,
    srv_ids,
    subject_alt_names,
    subject_public_key_info,
    xmpp_addrs,
)
from tests.pki import CertificateAuthority, srv_name, xmpp_addr

UTC = datetime.timezone.utc
NOT_BEFORE = datetime.datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
NOT_AFTER = datetime.datetime(2026, 11, 28, 20, 0, 0, tzinfo=UTC)

CA = CertificateAuthority("Summary CA")

UTF8, IA5 = 0x0C, 0x16

# Every kind of name, in this order, with the ones to leave out between.
KNOWN, _ = CA.issue(
    ["example.org", "*.example.org"],
    common_name="example.org",
    not_before=NOT_BEFORE,
    not_after=NOT_AFTER,
    sans=[
        srv_name("_xmpp-server.example.org"),
        xmpp_addr("bücher.example"),
        x509.RFC822Name("admin@example.org"),  # not a kind we report
        x509.UniformResourceIdentifier("xmpp:example.org"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.1")),
        x509.OtherName(x509.ObjectIdentifier("1.2.3.4"), b"\x0c\x01a"),  # unknown otherName
        x509.OtherName(ID_ON_XMPPADDR, b"\x16\x0bexample.net"),  # IA5String: malformed
        x509.OtherName(ID_ON_DNSSRV, b"\x0c\x18_xmpp-server.example.net"),  # UTF8String: malformed
        x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
        xmpp_addr("example.org"),
    ],
)
KNOWN_DER = KNOWN.public_bytes(serialization.Encoding.DER)

KNOWN_SANS = (
    ("DNS", "example.org"),
    ("DNS", "*.example.org"),
    ("SRV", "_xmpp-server.example.org"),
    ("XmppAddr", "bücher.example"),
    ("URI", "xmpp:example.org"),
    ("IP", "192.0.2.1"),
    ("IP", "2001:db8::1"),
    ("XmppAddr", "example.org"),
)


def independent_spki_sha256(certificate):
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def rsa_certificate():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rsa.example")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .sign(key, hashes.SHA256())
    )


class CertificateSummaryTests(SynchronousTestCase):
    """
    L{CertificateSummary}.
    """

    def test_fields(self):
        summary = CertificateSummary.from_der(KNOWN_DER)
        self.assertEqual(summary.sha256, hashlib.sha256(KNOWN_DER).hexdigest())
        self.assertEqual(summary.spki_sha256, independent_spki_sha256(KNOWN))
        self.assertEqual(summary.subject, "CN=example.org")
        self.assertEqual(summary.issuer, "CN=Summary CA")
        self.assertEqual(summary.not_before, "2026-05-01T12:00:00Z")
        self.assertEqual(summary.not_after, "2026-11-28T20:00:00Z")
        self.assertEqual(summary.sans, KNOWN_SANS)

    def test_fingerprint_format(self):
        summary = CertificateSummary.from_der(KNOWN_DER)
        for value in (summary.sha256, summary.spki_sha256):
            self.assertRegex(value, "^[0-9a-f]{64}$")

    def test_as_dict(self):
        summary = CertificateSummary.from_der(KNOWN_DER)
        data = summary.as_dict()
        self.assertEqual(
            data,
            {
                "sha256": summary.sha256,
                "spki_sha256": summary.spki_sha256,
                "subject": "CN=example.org",
                "issuer": "CN=Summary CA",
                "not_before": "2026-05-01T12:00:00Z",
                "not_after": "2026-11-28T20:00:00Z",
                "sans": [list(pair) for pair in KNOWN_SANS],
            },
        )
        self.assertEqual(json.loads(json.dumps(data)), data)

    def test_no_san(self):
        certificate, _ = CA.issue([], common_name="cn-only.example")
        summary = CertificateSummary.from_der(certificate.public_bytes(serialization.Encoding.DER))
        self.assertEqual(summary.sans, ())
        self.assertEqual(summary.as_dict()["sans"], [])

    def test_rfc4514_names(self):
        name = x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bücher, GmbH"),
            x509.NameAttribute(NameOID.COMMON_NAME, "xn--bcher-kva.example"),
        ])
        key = CA.key
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(CA.name)
            .public_key(key.public_key())
            .serial_number(2)
            .not_valid_before(NOT_BEFORE)
            .not_valid_after(NOT_AFTER)
            .sign(key, hashes.SHA256())
        )
        summary = CertificateSummary.from_der(certificate.public_bytes(serialization.Encoding.DER))
        self.assertEqual(summary.subject, "CN=xn--bcher-kva.example,O=Bücher\\, GmbH,C=DE")

    def test_garbage(self):
        self.assertRaises(ValueError, CertificateSummary.from_der, b"not a certificate")

    def test_frozen(self):
        summary = CertificateSummary.from_der(KNOWN_DER)
        with self.assertRaises(AttributeError):
            summary.sha256 = "0" * 64


class FingerprintTests(SynchronousTestCase):
    """
    L{certificate_sha256}, L{spki_sha256}, L{subject_public_key_info}.
    """

    def test_certificate_sha256(self):
        for der in (KNOWN_DER, b"", b"anything"):
            self.assertEqual(certificate_sha256(der), hashlib.sha256(der).hexdigest())

    def test_spki_sha256(self):
        for certificate in (KNOWN, CA.certificate, rsa_certificate()):
            self.assertEqual(spki_sha256(certificate), independent_spki_sha256(certificate))

    def test_spki_is_part_of_the_certificate(self):
        """
        The SubjectPublicKeyInfo is the bytes in the certificate, as they
        are.
        """
        spki = subject_public_key_info(KNOWN)
        self.assertIn(spki, KNOWN_DER)
        self.assertEqual(spki[0], 0x30)

    def test_different_keys(self):
        one, _ = CA.issue(["example.org"])
        two, _ = CA.issue(["example.org"])
        self.assertNotEqual(spki_sha256(one), spki_sha256(two))


class NameTests(SynchronousTestCase):
    """
    L{xmpp_addrs}, L{srv_ids}, L{subject_alt_names}, L{common_names}.
    """

    def test_xmpp_addrs(self):
        self.assertEqual(xmpp_addrs(KNOWN), ("bücher.example", "example.org"))

    def test_srv_ids(self):
        self.assertEqual(srv_ids(KNOWN), ("_xmpp-server.example.org",))

    def test_malformed_values_skipped(self):
        for type_id, value in [
            (ID_ON_XMPPADDR, b"\x16\x0bexample.org"),  # IA5String, not UTF8String
            (ID_ON_XMPPADDR, b"\x0c\x02\xff\xfe"),  # not UTF-8
            (ID_ON_XMPPADDR, b"\x0c\x03a\x00b"),  # NUL
            (ID_ON_XMPPADDR, b"\x30\x0d\x0c\x0bexample.org"),  # a SEQUENCE
            (ID_ON_XMPPADDR, b"\x04\x0bexample.org"),  # OCTET STRING
            (ID_ON_DNSSRV, b"\x0c\x05_x.eu"),  # UTF8String, not IA5String
            (ID_ON_DNSSRV, b"\x16\x05_\xe9.eu"),  # not ASCII
            (ID_ON_DNSSRV, b"\x05\x00"),  # NULL
        ]:
            certificate, _ = CA.issue(
                [], common_name="x",
                sans=[x509.OtherName(type_id, value), xmpp_addr("ok.example"), srv_name("_s.ok")],
            )
            self.assertEqual(xmpp_addrs(certificate), ("ok.example",), value)
            self.assertEqual(srv_ids(certificate), ("_s.ok",), value)
            self.assertEqual(
                subject_alt_names(certificate),
                (("XmppAddr", "ok.example"), ("SRV", "_s.ok")),
                value,
            )

    def test_long_values(self):
        """
        Values of 128 bytes and more have long-form DER lengths.
        """
        long_name = "a" * 60 + "." + "b" * 60 + "." + "c" * 20 + ".example"
        certificate, _ = CA.issue(
            [], common_name="x", sans=[xmpp_addr(long_name), srv_name("_xmpp-server." + long_name)]
        )
        self.assertEqual(xmpp_addrs(certificate), (long_name,))
        self.assertEqual(srv_ids(certificate), ("_xmpp-server." + long_name,))

    def test_no_san(self):
        certificate, _ = CA.issue([], common_name="x")
        self.assertEqual(
            (xmpp_addrs(certificate), srv_ids(certificate), subject_alt_names(certificate)),
            ((), (), ()),
        )

    def test_common_names(self):
        self.assertEqual(common_names(KNOWN), ("example.org",))
        name = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, "one.example"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Org"),
            x509.NameAttribute(NameOID.COMMON_NAME, "two.example"),
        ])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(CA.name)
            .public_key(CA.key.public_key())
            .serial_number(3)
            .not_valid_before(NOT_BEFORE)
            .not_valid_after(NOT_AFTER)
            .sign(CA.key, hashes.SHA256())
        )
        self.assertEqual(common_names(certificate), ("one.example", "two.example"))


class DERTests(SynchronousTestCase):
    """
    L{read_tlv} and L{decode_der_string}: strict DER.
    """

    def test_strings(self):
        for value, tag, expected in [
            (b"\x0c\x0bexample.org", UTF8, "example.org"),
            (b"\x0c\x00", UTF8, ""),
            (b"\x0c\x03\xc3\xa9a", UTF8, "éa"),
            (b"\x16\x05_x.eu", IA5, "_x.eu"),
            (b"\x0c\x81\x80" + b"a" * 128, UTF8, "a" * 128),
            (b"\x0c\x82\x01\x00" + b"a" * 256, UTF8, "a" * 256),
            # Malformed: None.
            (b"", UTF8, None),
            (b"\x0c", UTF8, None),  # no length
            (b"\x16\x05_x.eu", UTF8, None),  # wrong tag
            (b"\x0c\x05_x.eu", IA5, None),  # wrong tag
            (b"\x0c\x05abcd", UTF8, None),  # truncated
            (b"\x0c\x03abcd", UTF8, None),  # trailing byte
            (b"\x0c\x80abc\x00\x00", UTF8, None),  # indefinite length
            (b"\x0c\x81\x03abc", UTF8, None),  # long form for a short length
            (b"\x0c\x82\x00\x80" + b"a" * 128, UTF8, None),  # leading zero length byte
            (b"\x0c\x85\x01\x00\x00\x00\x00", UTF8, None),  # absurd length size
            (b"\x0c\x81", UTF8, None),  # truncated length
            (b"\x0c\x02\xff\xfe", UTF8, None),  # not UTF-8
            (b"\x16\x02\xc3\xa9", IA5, None),  # not ASCII
            (b"\x0c\x01\x00", UTF8, None),  # NUL
            (b"\x1f\x0c\x01a", UTF8, None),  # multi-byte tag
        ]:
            self.assertEqual(decode_der_string(value, tag), expected, value)

    def test_read_tlv(self):
        self.assertEqual(read_tlv(b"\x30\x03\x02\x01\x05"), (0x30, 2, 5))
        self.assertEqual(read_tlv(b"\x30\x03\x02\x01\x05", 2), (0x02, 4, 5))
        self.assertEqual(read_tlv(b"\x04\x81\x80" + bytes(128)), (0x04, 3, 131))
        for data in (b"", b"\x30", b"\x30\x05\x00", b"\x30\x80", b"\x30\x81\x7f" + bytes(127)):
            self.assertRaises(DERError, read_tlv, data)


class FormatTimeTests(SynchronousTestCase):
    """
    L{format_time}: ISO 8601 UTC, to the second.
    """

    def test_format(self):
        plus_two = datetime.timezone(datetime.timedelta(hours=2))
        for moment, expected in [
            (NOT_AFTER, "2026-11-28T20:00:00Z"),
            (NOT_AFTER.replace(microsecond=999999), "2026-11-28T20:00:00Z"),
            (NOT_AFTER.replace(tzinfo=None), "2026-11-28T20:00:00Z"),
            (datetime.datetime(2026, 11, 28, 22, 0, 0, tzinfo=plus_two), "2026-11-28T20:00:00Z"),
            (datetime.datetime(2000, 1, 2, 3, 4, 5, tzinfo=UTC), "2000-01-02T03:04:05Z"),
        ]:
            self.assertEqual(format_time(moment), expected, moment)
