"""
Pure functions over X.509 certificates: fingerprints, names, and a
summary an operator can read.

The XMPP-specific subjectAltName entries are otherNames (RFC 5280
section 4.2.1.6) whose value is one DER-encoded string:

  - id-on-xmppAddr (1.3.6.1.5.5.7.8.5), a UTF8String holding a JID
    (RFC 6120 section 13.7.1.4);
  - id-on-dnsSRV (1.3.6.1.5.5.7.8.7), an IA5String holding an SRV-ID
    such as C{_xmpp-server.example.org} (RFC 4985).

They are decoded here with a small, strict DER reader; a malformed value
is skipped, never an exception, because one odd entry must not make a
certificate unreadable.
"""

import datetime
import functools
import hashlib
from dataclasses import dataclass
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import NameOID, ObjectIdentifier

ID_ON_XMPPADDR = ObjectIdentifier("1.3.6.1.5.5.7.8.5")
ID_ON_DNSSRV = ObjectIdentifier("1.3.6.1.5.5.7.8.7")

#: L{CertificateSummary.as_dict}: text, and C{sans} as C{[kind, value]} lists.
SummaryDict: TypeAlias = dict[str, str | list[list[str]]]

_UTF8STRING = 0x0C
_IA5STRING = 0x16
_CONTEXT_0 = 0xA0


class DERError(ValueError):
    """
    Bytes that are not the DER this module expects.
    """


def read_tlv(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """
    Read the DER tag-length-value starting at C{offset} of C{data}
    (single-byte tags, minimal definite lengths, as DER requires).

    @return: C{(tag, content_start, end)}.
    @raise DERError: when it is truncated or not minimal DER.
    """
    if len(data) < offset + 2:
        raise DERError("truncated header")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DERError("multi-byte tags are not supported")
    first = data[offset + 1]
    if first < 0x80:
        length, start = first, offset + 2
    else:
        count = first & 0x7F
        if count == 0:
            raise DERError("indefinite length is not DER")
        if count > 4:
            raise DERError("length too large")
        length_bytes = data[offset + 2 : offset + 2 + count]
        if len(length_bytes) != count:
            raise DERError("truncated length")
        if length_bytes[0] == 0:
            raise DERError("length is not minimal")
        length = int.from_bytes(length_bytes, "big")
        if length < 0x80:
            raise DERError("length is not minimal")
        start = offset + 2 + count
    end = start + length
    if end > len(data):
        raise DERError("truncated value")
    return tag, start, end


def decode_der_string(value: bytes, tag: int) -> str | None:
    """
    Decode C{value}, one DER string of ASN.1 type C{tag} (C{0x0C}
    UTF8String or C{0x16} IA5String) and nothing after it.

    @return: the text, or L{None} when C{value} is not exactly that (a
        wrong tag, a bad length, trailing bytes, bytes the type does not
        allow, or a NUL character).
    """
    try:
        found, start, end = read_tlv(value)
    except DERError:
        return None
    if found != tag or end != len(value):
        return None
    content = bytes(value[start:end])
    if tag == _IA5STRING and any(byte > 0x7F for byte in content):
        return None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\x00" in text:
        return None
    return text


def _subject_alt_name(certificate: x509.Certificate) -> x509.SubjectAlternativeName | None:
    """
    The certificate's L{x509.SubjectAlternativeName}, or L{None} when it
    has none (or its extensions cannot be parsed).
    """
    try:
        return certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return None


def _other_names(
    certificate: x509.Certificate, type_id: ObjectIdentifier, tag: int
) -> tuple[str, ...]:
    san = _subject_alt_name(certificate)
    if san is None:
        return ()
    values: list[str] = []
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == type_id:
            text = decode_der_string(other.value, tag)
            if text is not None:
                values.append(text)
    return tuple(values)


def xmpp_addrs(certificate: x509.Certificate) -> tuple[str, ...]:
    """
    The id-on-xmppAddr values of C{certificate} (JIDs, as written), in
    certificate order; malformed ones are skipped.
    """
    return _other_names(certificate, ID_ON_XMPPADDR, _UTF8STRING)


def srv_ids(certificate: x509.Certificate) -> tuple[str, ...]:
    """
    The id-on-dnsSRV values of C{certificate} (such as
    C{_xmpp-server.example.org}), in certificate order; malformed ones are
    skipped.
    """
    return _other_names(certificate, ID_ON_DNSSRV, _IA5STRING)


def subject_alt_names(certificate: x509.Certificate) -> tuple[tuple[str, str], ...]:
    """
    The names C{certificate} carries in its subjectAltName, in certificate
    order, as C{(kind, value)} pairs; C{kind} is C{"DNS"}, C{"SRV"},
    C{"XmppAddr"}, C{"URI"} or C{"IP"}.  Other kinds and malformed
    otherName values are left out.
    """
    san = _subject_alt_name(certificate)
    if san is None:
        return ()
    names: list[tuple[str, str]] = []
    for name in san:
        if isinstance(name, x509.DNSName):
            names.append(("DNS", name.value))
        elif isinstance(name, x509.UniformResourceIdentifier):
            names.append(("URI", name.value))
        elif isinstance(name, x509.IPAddress):
            names.append(("IP", str(name.value)))
        elif isinstance(name, x509.OtherName):
            if name.type_id == ID_ON_DNSSRV:
                kind, text = "SRV", decode_der_string(name.value, _IA5STRING)
            elif name.type_id == ID_ON_XMPPADDR:
                kind, text = "XmppAddr", decode_der_string(name.value, _UTF8STRING)
            else:
                continue
            if text is not None:
                names.append((kind, text))
    return tuple(names)


def common_names(certificate: x509.Certificate) -> tuple[str, ...]:
    """
    The subject's commonName values, as written.
    """
    return tuple(
        str(attribute.value)
        for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    )


def subject_public_key_info(certificate: x509.Certificate) -> bytes:
    """
    The DER SubjectPublicKeyInfo of C{certificate}, exactly as encoded in
    it (the bytes DANE selector 1 and SPKI pins are computed over).
    """
    tbs = certificate.tbs_certificate_bytes
    _, offset, _ = read_tlv(tbs)  # TBSCertificate ::= SEQUENCE {
    tag, _, end = read_tlv(tbs, offset)
    if tag == _CONTEXT_0:  # version [0] EXPLICIT, absent for v1
        offset = end
    # serialNumber, signature, issuer, validity, subject
    for _ in range(5):
        _, _, offset = read_tlv(tbs, offset)
    _, _, end = read_tlv(tbs, offset)
    return bytes(tbs[offset:end])


def spki_sha256(certificate: x509.Certificate) -> str:
    """
    The SHA-256 of C{certificate}'s DER SubjectPublicKeyInfo, lower-case
    hex: a pin on the key that survives renewal with the same key.
    """
    return hashlib.sha256(subject_public_key_info(certificate)).hexdigest()


def certificate_sha256(der: bytes) -> str:
    """
    The SHA-256 of the DER certificate C{der}, lower-case hex, no colons.
    """
    return hashlib.sha256(der).hexdigest()


def format_time(moment: datetime.datetime) -> str:
    """
    C{moment} (an aware datetime, or a naive one in UTC) as ISO 8601 UTC
    to the second: C{2026-11-28T20:00:00Z}.
    """
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class CertificateSummary:
    """
    What an operator wants to see of a certificate.

    @ivar sha256: SHA-256 of the DER certificate, lower-case hex.
    @ivar spki_sha256: SHA-256 of its DER SubjectPublicKeyInfo.
    @ivar subject: the subject, RFC 4514.
    @ivar issuer: the issuer, RFC 4514.
    @ivar not_before: ISO 8601 UTC (C{2026-11-28T20:00:00Z}).
    @ivar not_after: ISO 8601 UTC.
    @ivar sans: C{(kind, value)} pairs, see L{subject_alt_names}.
    """

    sha256: str
    spki_sha256: str
    subject: str
    issuer: str
    not_before: str
    not_after: str
    sans: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_der(cls, der: bytes) -> "CertificateSummary":
        """
        Summarise the DER certificate C{der}.  Summaries (immutable) of
        the certificates seen most recently are kept: every stream from a
        peer presents the same one.

        @raise ValueError: when C{der} is not a certificate.
        """
        # A class is hashable; mypy checks it against its instances' __hash__.
        return _summarise(cls, bytes(der))  # type: ignore[arg-type]

    @classmethod
    def _from_der(cls, der: bytes) -> "CertificateSummary":
        certificate = x509.load_der_x509_certificate(der)
        return cls(
            sha256=certificate_sha256(der),
            spki_sha256=spki_sha256(certificate),
            subject=certificate.subject.rfc4514_string(),
            issuer=certificate.issuer.rfc4514_string(),
            not_before=format_time(certificate.not_valid_before_utc),
            not_after=format_time(certificate.not_valid_after_utc),
            sans=subject_alt_names(certificate),
        )

    def as_dict(self) -> SummaryDict:
        """
        The summary as JSON-serialisable data (C{sans} as a list of
        C{[kind, value]} lists).
        """
        return {
            "sha256": self.sha256,
            "spki_sha256": self.spki_sha256,
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "sans": [[kind, value] for kind, value in self.sans],
        }


@functools.lru_cache(maxsize=512)
def _summarise(cls: type[CertificateSummary], der: bytes) -> CertificateSummary:
    return cls._from_der(der)


@functools.lru_cache(maxsize=512)
def certificate_dict(der: bytes) -> SummaryDict:
    """
    L{CertificateSummary.as_dict} of the DER certificate C{der}: one dict
    per certificate seen recently, shared by the records and status views of
    every stream that presented it (they read it; none may change it).

    @raise ValueError: when C{der} is not a certificate.
    """
    return CertificateSummary.from_der(der).as_dict()


def issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """
    Whether the certificate C{issuer} names and signed C{certificate} (both
    cryptography certificates).
    """
    if certificate.issuer != issuer.subject:
        return False
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True
