"""
TLSA matching: does the certificate chain a peer presented match the
DNSSEC-secured TLSA records published for it (RFC 6698, with the
operational updates of RFC 7671 and the SRV rules of RFC 7673)?

Everything here is a pure function over L{TLSARecord}s and DER
certificates; looking the records up, and deciding what a match or a
mismatch means for the stream, belong to the DANE verifier.

A TLSA record has three parameters (RFC 6698 section 2.1, mnemonics from
RFC 7218):

  - the usage: what the record constrains,
      - C{0} PKIX-TA: a CA on a PKIX-validated path (RFC 7671 section 5.4);
      - C{1} PKIX-EE: the peer's own PKIX-validated certificate
        (section 5.3);
      - C{2} DANE-TA: a trust anchor the peer's certificate chains to,
        presented by the peer (section 5.2);
      - C{3} DANE-EE: the peer's own certificate, and nothing else is
        checked: no names, no dates, no path (section 5.1);
  - the selector: C{0} the whole DER certificate, C{1} its DER
    SubjectPublicKeyInfo;
  - the matching type: C{0} the selected bytes themselves, C{1} their
    SHA-256, C{2} their SHA-512.

The rules applied (L{match_tlsa}):

  - records that cannot be used are ignored, never an error (RFC 7671
    section 4 and RFC 6698 section 4.1): unknown usages, selectors or
    matching types, digests of the wrong length, and Full(0) data that is
    not a certificate (selector 0) or a SubjectPublicKeyInfo (selector 1).
    With no usable record left, nothing matches and the reason says so;
    the caller then treats the peer as having no TLSA records;
  - digest algorithm agility (RFC 7671 section 9): for each usage and
    selector, only records with the strongest digest published are used
    (SHA-512 over SHA-256), so that a weaker digest left in the RRset
    cannot be used for a downgrade.  Full(0) records are not digests and
    are always used;
  - names (RFC 7673 section 4, RFC 7671 section 5.2): DANE-TA, PKIX-TA
    and PKIX-EE records also require the peer's certificate to name one
    of the reference identifiers given, normally the source domain and
    the SRV target host, with L{gateway.tls.pkix.match_identity}
    (SRV-ID C{_xmpp-server.<name>}, XmppAddr, DNS-ID).  DANE-EE records
    never check names or dates (RFC 7671 section 5.1);
  - DANE-TA: the trust anchor must be one of the issuers the peer
    presented, never the peer's own certificate, and the peer's
    certificate must chain to it through presented certificates, each
    signature checked, each intermediate a CA, every certificate on the
    path (the anchor's included) within its validity dates.  A DANE-TA
    record with Full(0) data carries the trust anchor itself (a
    certificate, or a bare public key), so that anchor need not be
    presented (RFC 7671 section 5.2.2);
  - PKIX-TA and PKIX-EE: the chain must also pass the path validation of
    L{gateway.tls.pkix.validate_path} against the trust store.  A
    PKIX-TA record must match a CA certificate on the validated path (a
    store's anchor included), a PKIX-EE record the peer's certificate.

Records are tried DANE-EE first, then DANE-TA, PKIX-EE and PKIX-TA, each
usage in the order given; the first that matches decides.  When none
matches, the reason lists why for each record.
"""

import datetime
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.verification import Store

from gateway.tls.certificates import (
    DERError,
    common_names,
    format_time,
    issued_by,
    read_tlv,
    subject_alt_names,
    subject_public_key_info,
)
from gateway.tls.pkix import (
    XMPP_SERVER_SERVICE,
    IdentityError,
    IdentityMatch,
    PathError,
    as_utc,
    match_identity,
    validate_path,
)

PKIX_TA = 0
PKIX_EE = 1
DANE_TA = 2
DANE_EE = 3

CERT = 0
SPKI = 1

FULL = 0
SHA2_256 = 1
SHA2_512 = 2

USAGE_NAMES = {PKIX_TA: "PKIX-TA", PKIX_EE: "PKIX-EE", DANE_TA: "DANE-TA", DANE_EE: "DANE-EE"}
SELECTOR_NAMES = {CERT: "Cert", SPKI: "SPKI"}
MATCHING_TYPE_NAMES = {FULL: "Full", SHA2_256: "SHA2-256", SHA2_512: "SHA2-512"}

# The RFC 7218 mnemonics L{TLSARecord.parse} accepts, private use included.
_USAGE_MNEMONICS = {**{v.lower(): k for k, v in USAGE_NAMES.items()}, "privcert": 255}
_SELECTOR_MNEMONICS = {**{v.lower(): k for k, v in SELECTOR_NAMES.items()}, "privsel": 255}
_MATCHING_MNEMONICS = {
    **{v.lower(): k for k, v in MATCHING_TYPE_NAMES.items()},
    "privmatch": 255,
}

# matching type: (hash function, digest size, name).  For digest agility
# (RFC 7671 section 9) the higher matching type, SHA-512, is preferred.
_DIGESTS = {
    SHA2_256: (hashlib.sha256, 32, "SHA-256"),
    SHA2_512: (hashlib.sha512, 64, "SHA-512"),
}

# Tried in this order: the most specific usage first, and PKIX path
# validation only when a record needs it.
_USAGE_ORDER = (DANE_EE, DANE_TA, PKIX_EE, PKIX_TA)

_MAX_INTERMEDIATES = 8  # as for PKIX (gateway.tls.pkix)

_SHORT_HEX = 16  # hex digits of a record's data shown in reasons

_DECIMAL = re.compile(r"[0-9]{1,3}")
_NOT_HEX = re.compile(r"[^0-9a-fA-F]")

_DER_SEQUENCE = 0x30
_DER_OID = 0x06
_DER_BIT_STRING = 0x03


# Records


def _shown_text(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _parse_field(token: str, what: str, mnemonics: Mapping[str, int], text: str) -> int:
    value = mnemonics.get(token.lower())
    if value is not None:
        return value
    if _DECIMAL.fullmatch(token) and int(token) <= 255:
        return int(token)
    names = ", ".join(name for name in mnemonics)
    raise ValueError(
        f"TLSA record {_shown_text(text)}: the {what} {token!r} is neither a number "
        f"from 0 to 255 nor one of {names}"
    )


@dataclass(frozen=True)
class TLSARecord:
    """
    One TLSA record (RFC 6698 section 2.1).

    @ivar usage: the certificate usage, 0 to 255 (see the module
        docstring; only 0 to 3 are usable).
    @ivar selector: 0 (certificate) or 1 (SubjectPublicKeyInfo); other
        values up to 255 are unusable.
    @ivar matching_type: 0 (full), 1 (SHA-256) or 2 (SHA-512); other
        values up to 255 are unusable.
    @ivar data: the certificate association data.
    """

    usage: int
    selector: int
    matching_type: int
    data: bytes

    def __post_init__(self) -> None:
        for attribute in ("usage", "selector", "matching_type"):
            value = getattr(self, attribute)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
                what = attribute.replace("_", " ")
                raise ValueError(f"TLSA {what} must be an integer from 0 to 255, not {value!r}")
        if not isinstance(self.data, bytes):
            if isinstance(self.data, str):
                raise TypeError("TLSA data must be bytes; use TLSARecord.parse for hex text")
            object.__setattr__(self, "data", bytes(self.data))

    @classmethod
    def parse(cls, text: str) -> "TLSARecord":
        """
        Parse the presentation format of a TLSA record's data (RFC 6698
        section 2.2): usage, selector and matching type, as numbers or
        RFC 7218 mnemonics (C{DANE-EE SPKI SHA2-256}), then the data in
        hex, which may contain whitespace.

        @raise ValueError: saying what is wrong with C{text}.
        """
        fields = text.split()
        if len(fields) < 3:
            raise ValueError(
                f"TLSA record {_shown_text(text)}: expected usage, selector, matching type "
                f"and hex data; found {len(fields)} field{'' if len(fields) == 1 else 's'}"
            )
        usage = _parse_field(fields[0], "usage", _USAGE_MNEMONICS, text)
        selector = _parse_field(fields[1], "selector", _SELECTOR_MNEMONICS, text)
        matching_type = _parse_field(fields[2], "matching type", _MATCHING_MNEMONICS, text)
        digits = "".join(fields[3:])
        if not digits:
            raise ValueError(
                f"TLSA record {_shown_text(text)}: no certificate association data after "
                f"the matching type"
            )
        wrong = _NOT_HEX.search(digits)
        if wrong is not None:
            raise ValueError(
                f"TLSA record {_shown_text(text)}: the certificate association data is not "
                f"hex ({wrong.group()!r} at digit {wrong.start() + 1})"
            )
        if len(digits) % 2:
            raise ValueError(
                f"TLSA record {_shown_text(text)}: the certificate association data has an "
                f"odd number of hex digits ({len(digits)})"
            )
        return cls(usage, selector, matching_type, bytes.fromhex(digits))

    @classmethod
    def from_wire(cls, rdata: bytes) -> "TLSARecord":
        """
        Decode the RDATA of a TLSA record (RFC 6698 section 2.1): one byte
        each for usage, selector and matching type, then the data.

        @raise ValueError: when C{rdata} is shorter than 3 bytes.
        """
        rdata = bytes(rdata)
        if len(rdata) < 3:
            raise ValueError(
                f"TLSA RDATA of {len(rdata)} byte{'' if len(rdata) == 1 else 's'} is too "
                f"short: it needs usage, selector and matching type"
            )
        return cls(rdata[0], rdata[1], rdata[2], rdata[3:])

    def to_wire(self) -> bytes:
        """
        The record's RDATA, as L{from_wire} reads it.
        """
        return bytes([self.usage, self.selector, self.matching_type]) + self.data

    def __str__(self) -> str:
        """
        The presentation format, C{3 1 1 <lower-case hex>}, which
        L{parse} reads back (unless the data is empty, which only the
        wire format can carry).
        """
        return " ".join(
            [str(self.usage), str(self.selector), str(self.matching_type), self.data.hex()]
        ).rstrip()

    def short(self) -> str:
        """
        The presentation format with the data cut to its first 16 hex
        digits, for reasons and logs.
        """
        digits = self.data.hex()
        if len(digits) > _SHORT_HEX:
            digits = digits[:_SHORT_HEX] + "…"
        return f"{self.usage} {self.selector} {self.matching_type} {digits}".rstrip()

    @property
    def usage_name(self) -> str:
        """
        C{"DANE-EE"} and so on, or C{"usage 7"} for an unknown usage.
        """
        return USAGE_NAMES.get(self.usage, f"usage {self.usage}")


def _is_spki(data: bytes) -> bool:
    """
    Whether C{data} is one DER SubjectPublicKeyInfo (RFC 5280 section
    4.1): a SEQUENCE of an AlgorithmIdentifier (a SEQUENCE starting with
    an OID) and a BIT STRING, and nothing after it.  The structure only:
    a key of an algorithm this library doesn't know is still one.
    """
    try:
        tag, start, end = read_tlv(data)
        if tag != _DER_SEQUENCE or end != len(data):
            return False
        tag, algorithm_start, algorithm_end = read_tlv(data, start)
        if tag != _DER_SEQUENCE:
            return False
        tag, _, _ = read_tlv(data, algorithm_start)
        if tag != _DER_OID:
            return False
        tag, key_start, key_end = read_tlv(data, algorithm_end)
    except DERError:
        return False
    return tag == _DER_BIT_STRING and key_end == end and key_end > key_start


def unusable_reason(record: TLSARecord) -> str | None:
    """
    Why C{record} cannot be used (RFC 7671 sections 4 and 5, RFC 6698
    section 4.1), or L{None} when it can.

    @return: for example C{"unknown usage 7"}, C{"SHA-256 data of 31
        bytes instead of 32"} or C{"Cert Full data is not a DER certificate"}.
    """
    if record.usage not in USAGE_NAMES:
        return f"unknown usage {record.usage}"
    if record.selector not in SELECTOR_NAMES:
        return f"unknown selector {record.selector}"
    if record.matching_type not in MATCHING_TYPE_NAMES:
        return f"unknown matching type {record.matching_type}"
    if record.matching_type in _DIGESTS:
        _, size, name = _DIGESTS[record.matching_type]
        if len(record.data) != size:
            count = len(record.data)
            return f"{name} data of {count} byte{'' if count == 1 else 's'} instead of {size}"
        return None
    if record.selector == CERT:
        try:
            x509.load_der_x509_certificate(record.data)
        except ValueError:
            return "Cert Full data is not a DER certificate"
    elif not _is_spki(record.data):
        return "SPKI Full data is not a DER SubjectPublicKeyInfo"
    return None


def usable(record: TLSARecord) -> bool:
    """
    Whether C{record} can be used; see L{unusable_reason}.  Records that
    cannot be used are ignored, never an error.
    """
    return unusable_reason(record) is None


# Selecting and matching certificate data


def _as_certificate(certificate: bytes | x509.Certificate) -> tuple[bytes, x509.Certificate]:
    """
    C{(der, parsed)} for a DER certificate or an L{x509.Certificate}.
    """
    if isinstance(certificate, x509.Certificate):
        return certificate.public_bytes(serialization.Encoding.DER), certificate
    der = bytes(certificate)
    return der, x509.load_der_x509_certificate(der)


def _selected(selector: int, der: bytes, certificate: x509.Certificate) -> bytes:
    return der if selector == CERT else subject_public_key_info(certificate)


def _association(matching_type: int, selected: bytes) -> bytes:
    if matching_type == FULL:
        return selected
    digest, _, _ = _DIGESTS[matching_type]
    return digest(selected).digest()


def tlsa_for(
    certificate: bytes | x509.Certificate,
    usage: int = DANE_EE,
    selector: int = SPKI,
    matching_type: int = SHA2_256,
) -> TLSARecord:
    """
    The TLSA record to publish for C{certificate}: for operators, and for
    tests.

    @param certificate: a DER certificate, or an L{x509.Certificate}.
    @param usage: 0 (PKIX-TA), 1 (PKIX-EE), 2 (DANE-TA) or 3 (DANE-EE,
        the default).
    @param selector: 0 (certificate) or 1 (SubjectPublicKeyInfo, the
        default: survives renewal with the same key).
    @param matching_type: 0 (full), 1 (SHA-256, the default) or 2
        (SHA-512).
    @rtype: L{TLSARecord}
    @raise ValueError: for a parameter without a definition, or when
        C{certificate} is not a certificate.
    """
    for value, names, what in (
        (usage, USAGE_NAMES, "usage"),
        (selector, SELECTOR_NAMES, "selector"),
        (matching_type, MATCHING_TYPE_NAMES, "matching type"),
    ):
        if value not in names:
            known = ", ".join(f"{number} ({name})" for number, name in names.items())
            raise ValueError(f"TLSA {what} {value!r} is not one of {known}")
    der, parsed = _as_certificate(certificate)
    data = _association(matching_type, _selected(selector, der, parsed))
    return TLSARecord(usage, selector, matching_type, data)


def record_matches(record: TLSARecord, certificate: bytes | x509.Certificate) -> bool:
    """
    Whether the data of the usable C{record} matches C{certificate} (a DER
    certificate or an L{x509.Certificate}) under its selector and
    matching type.  The usage is not looked at: this is the comparison
    alone.
    """
    der, parsed = _as_certificate(certificate)
    return _matches(record, _Presented(der, parsed))


@dataclass(frozen=True)
class _Presented:
    """
    A certificate as the peer sent it: its DER bytes, and parsed.
    """

    der: bytes
    certificate: x509.Certificate

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()


def _matches(record: TLSARecord, presented: _Presented) -> bool:
    selected = _selected(record.selector, presented.der, presented.certificate)
    return _association(record.matching_type, selected) == record.data


def _value(record: TLSARecord, presented: _Presented) -> str:
    """
    What the record is compared with, for reasons: C{SPKI sha256 <hex>}
    (a SHA-256 for Full(0) records, since the full data is long).
    """
    selected = _selected(record.selector, presented.der, presented.certificate)
    what = "certificate" if record.selector == CERT else "SPKI"
    if record.matching_type == SHA2_512:
        return f"{what} sha512 {hashlib.sha512(selected).hexdigest()}"
    return f"{what} sha256 {hashlib.sha256(selected).hexdigest()}"


def _values(record: TLSARecord, presented: Iterable[_Presented]) -> str:
    return ", ".join(f"{p.subject} {_value(record, p)}" for p in presented)


# Paths and signatures (DANE-TA)


def _signed_by_key(certificate: x509.Certificate, key: PublicKeyTypes | None) -> bool:
    """
    Whether the bare public key C{key} signed C{certificate}.
    """
    signature = certificate.signature
    signed = certificate.tbs_certificate_bytes
    # A certificate signed with another algorithm than the key's has other
    # parameters: it was not signed by this key.
    parameters = certificate.signature_algorithm_parameters
    hash_algorithm = certificate.signature_hash_algorithm
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if not isinstance(parameters, (padding.PSS, padding.PKCS1v15)) or hash_algorithm is None:
                return False
            key.verify(signature, signed, parameters, hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(parameters, ec.ECDSA):
                return False
            key.verify(signature, signed, parameters)
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(signature, signed)
        elif isinstance(key, dsa.DSAPublicKey):
            if hash_algorithm is None:
                return False
            key.verify(signature, signed, hash_algorithm)
        else:
            return False
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


@dataclass(frozen=True)
class _Anchor:
    """
    A DANE-TA trust anchor: a certificate (presented, or carried by a
    Full(0) record) or a bare public key from a Full(0) SPKI record.
    """

    description: str
    certificate: x509.Certificate | None = None
    key: PublicKeyTypes | None = None

    def issued(self, certificate: x509.Certificate) -> bool:
        if self.certificate is not None:
            return issued_by(certificate, self.certificate)
        return _signed_by_key(certificate, self.key)


def _path_to(
    leaf: _Presented, presented: Iterable[_Presented], anchors: Sequence[_Anchor]
) -> tuple[list[_Presented], _Anchor | None]:
    """
    Build a path from C{leaf} up to one of C{anchors} through the
    C{presented} certificates, checking each signature.

    @return: C{(path, anchor)}: the path, leaf first, without the anchor,
        and the anchor reached; or C{(path, None)} with the path as far
        as it went.
    """
    path = [leaf]
    remaining = list(presented)
    while True:
        current = path[-1].certificate
        for anchor in anchors:
            if anchor.issued(current):
                return path, anchor
        if len(path) > _MAX_INTERMEDIATES:
            return path, None
        parent = next((p for p in remaining if issued_by(current, p.certificate)), None)
        if parent is None:
            return path, None
        remaining.remove(parent)
        path.append(parent)


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except (x509.ExtensionNotFound, ValueError):
        return False
    return constraints.value.ca


def _date_problem(
    path: Sequence[_Presented], anchor: _Anchor, now: datetime.datetime
) -> str | None:
    """
    Why a certificate on C{path} (leaf first) or the anchor's certificate
    is not valid at C{now}, or L{None}.
    """
    described = [("the certificate", path[0].certificate)]
    described += [(f"intermediate certificate {p.subject}", p.certificate) for p in path[1:]]
    if anchor.certificate is not None:
        subject = anchor.certificate.subject.rfc4514_string()
        described.append((f"the trust anchor {subject}", anchor.certificate))
    for what, certificate in described:
        if now > certificate.not_valid_after_utc:
            return f"{what} expired on {format_time(certificate.not_valid_after_utc)}"
        if now < certificate.not_valid_before_utc:
            return f"{what} is not valid before {format_time(certificate.not_valid_before_utc)}"
    return None


# Names


def _reference_identifiers(names: Iterable[str]) -> str:
    shown: list[str] = []
    for name in names:
        shown.extend([name, f"{XMPP_SERVER_SERVICE}.{name}"])
    return " / ".join(shown)


def _certificate_names(certificate: x509.Certificate) -> str:
    values = [
        value for kind, value in subject_alt_names(certificate)
        if kind in ("DNS", "SRV", "XmppAddr")
    ]
    if values:
        return f"the certificate names {', '.join(values)}"
    cns = common_names(certificate)
    if cns:
        return (
            f"the certificate has no DNS, SRV or XmppAddr subjectAltName "
            f"(subject CN {', '.join(cns)})"
        )
    return "the certificate names no domain"


def _match_names(
    certificate: x509.Certificate, names: Sequence[str], allow_cn_id: bool
) -> tuple[IdentityMatch, str] | tuple[None, str]:
    """
    C{(identity match, reference name)} for the first of C{names} the
    certificate names, or C{(None, reason)}.
    """
    if not names:
        return None, "no reference identifier to check the certificate's names against"
    for name in names:
        try:
            return match_identity(certificate, name, allow_cn_id), name
        except IdentityError:
            continue
    return None, f"{_certificate_names(certificate)}; not {_reference_identifiers(names)}"


def _named(found: IdentityMatch, name: str) -> str:
    return f"{found.identity} {found.matched} names {name}"


# The checks, one per usage


@dataclass(frozen=True)
class _Outcome:
    matched: bool
    reason: str
    identity: IdentityMatch | None = None
    trust_anchor: str | None = None


class _Context:
    """
    What the checks of one L{match_tlsa} call share: its arguments, and
    the PKIX validation of the chain, done at most once.
    """

    def __init__(
        self,
        presented: Sequence[_Presented],
        names: Sequence[str],
        store: Store | None,
        now: datetime.datetime,
        allow_cn_id: bool,
    ) -> None:
        self.presented = presented
        self.names = names
        self.store = store
        self.now = now
        self.allow_cn_id = allow_cn_id
        self._pkix: tuple[list[x509.Certificate], None] | tuple[None, str] | None = None

    @property
    def leaf(self) -> _Presented:
        return self.presented[0]

    def pkix(self) -> tuple[list[x509.Certificate], None] | tuple[None, str]:
        """
        C{(validated chain, None)} or C{(None, reason)}.
        """
        if self._pkix is None:
            # The checks that need PKIX validation look for a store first.
            assert self.store is not None
            try:
                chain = validate_path(
                    [p.certificate for p in self.presented], self.store, self.now
                )
            except PathError as e:
                self._pkix = (None, str(e))
            else:
                self._pkix = (chain, None)
        return self._pkix


def _check_dane_ee(record: TLSARecord, context: _Context) -> _Outcome:
    """
    RFC 7671 section 5.1: the peer's own certificate, nothing else.
    """
    value = _value(record, context.leaf)
    if _matches(record, context.leaf):
        return _Outcome(True, f"matches the certificate ({value})")
    return _Outcome(False, f"does not match the certificate ({value})")


def _record_anchor(record: TLSARecord) -> "_Anchor | None":
    """
    The trust anchor a DANE-TA Full(0) record carries (RFC 7671 section
    5.2.2), or L{None} when it carries none this library can use.
    """
    if record.matching_type != FULL:
        return None
    if record.selector == CERT:
        certificate = x509.load_der_x509_certificate(record.data)
        return _Anchor(f"{certificate.subject.rfc4514_string()} (from the record)", certificate)
    try:
        key = serialization.load_der_public_key(record.data)
    except (ValueError, UnsupportedAlgorithm):
        return None
    return _Anchor("the public key in the record", key=key)


def _check_dane_ta(record: TLSARecord, context: _Context) -> _Outcome:
    """
    RFC 7671 section 5.2: a presented issuer (or the anchor a Full(0)
    record carries) the certificate chains to; its names and dates.
    """
    # The peer's own certificate is never its trust anchor, even when sent
    # twice.
    issuers = [p for p in context.presented[1:] if p.der != context.leaf.der]
    anchors = [_Anchor(p.subject, p.certificate) for p in issuers if _matches(record, p)]
    if not anchors:
        if _matches(record, context.leaf):
            return _Outcome(
                False,
                "matches the peer's own certificate, not an issuer's; a record for it "
                f"would be DANE-EE ({DANE_EE} {record.selector} {record.matching_type} …)",
            )
        carried = _record_anchor(record)
        if carried is None:
            presented = _values(record, issuers) if issuers else "none"
            return _Outcome(
                False, f"matches no issuer certificate the peer presented (presented: {presented})"
            )
        anchors = [carried]
    described = " or ".join(anchor.description for anchor in anchors)
    path, anchor = _path_to(context.leaf, issuers, anchors)
    if anchor is None:
        top = path[-1].certificate
        if len(path) > _MAX_INTERMEDIATES:
            return _Outcome(
                False,
                f"matched {described}, but the path to it is longer than "
                f"{_MAX_INTERMEDIATES} intermediate certificates",
            )
        return _Outcome(
            False,
            f"matched {described}, but the peer's certificate does not chain to it "
            f"(the presented chain stops at {top.subject.rfc4514_string()}, "
            f"issued by {top.issuer.rfc4514_string()})",
        )
    for intermediate in path[1:]:
        if not _is_ca(intermediate.certificate):
            return _Outcome(
                False,
                f"matched {anchor.description}, but intermediate certificate "
                f"{intermediate.subject} is not a CA (basicConstraints cA)",
            )
    problem = _date_problem(path, anchor, context.now)
    if problem is not None:
        return _Outcome(False, f"matched {anchor.description}, but {problem}")
    found, name = _match_names(context.leaf.certificate, context.names, context.allow_cn_id)
    if found is None:
        return _Outcome(False, f"matched {anchor.description}, but {name}")
    return _Outcome(
        True,
        f"matched {anchor.description}; {_named(found, name)}",
        found,
        anchor.description,
    )


_NO_STORE = "needs PKIX validation, and no trust store was given"


def _check_pkix_ee(record: TLSARecord, context: _Context) -> _Outcome:
    """
    RFC 7671 section 5.3: the peer's own certificate, PKIX-validated.
    """
    value = _value(record, context.leaf)
    if not _matches(record, context.leaf):
        return _Outcome(False, f"does not match the certificate ({value})")
    if context.store is None:
        return _Outcome(False, f"matches the certificate, but {_NO_STORE}")
    chain, problem = context.pkix()
    if chain is None:
        return _Outcome(False, f"matches the certificate, but PKIX validation failed: {problem}")
    found, name = _match_names(context.leaf.certificate, context.names, context.allow_cn_id)
    if found is None:
        return _Outcome(False, f"matches the certificate, but {name}")
    anchor = chain[-1].subject.rfc4514_string()
    return _Outcome(
        True,
        f"matches the certificate ({value}), chain to trusted CA {anchor}; {_named(found, name)}",
        found,
        anchor,
    )


def _check_pkix_ta(record: TLSARecord, context: _Context) -> _Outcome:
    """
    RFC 7671 section 5.4: a CA on the PKIX-validated path.
    """
    if context.store is None:
        return _Outcome(False, _NO_STORE)
    chain, problem = context.pkix()
    if chain is None:
        return _Outcome(False, f"PKIX validation failed: {problem}")
    cas = [_Presented(*_as_certificate(certificate)) for certificate in chain[1:]]
    matched = next((ca for ca in cas if _matches(record, ca)), None)
    if matched is None:
        if _matches(record, context.leaf):
            return _Outcome(
                False,
                "matches the peer's own certificate, not a CA; a record for it would be "
                f"PKIX-EE ({PKIX_EE} {record.selector} {record.matching_type} …)",
            )
        return _Outcome(
            False, f"matches no CA certificate on the validated chain ({_values(record, cas)})"
        )
    found, name = _match_names(context.leaf.certificate, context.names, context.allow_cn_id)
    if found is None:
        return _Outcome(False, f"matched CA {matched.subject}, but {name}")
    anchor = chain[-1].subject.rfc4514_string()
    return _Outcome(
        True,
        f"matched CA {matched.subject} on the chain to trusted CA {anchor}; "
        f"{_named(found, name)}",
        found,
        matched.subject,
    )


_CHECKS: dict[int, Callable[[TLSARecord, _Context], _Outcome]] = {
    DANE_EE: _check_dane_ee,
    DANE_TA: _check_dane_ta,
    PKIX_EE: _check_pkix_ee,
    PKIX_TA: _check_pkix_ta,
}


# Matching a record set


@dataclass(frozen=True)
class TLSAMatch:
    """
    How a presented chain fares against a TLSA record set.

    @ivar matched: whether a usable record matched.
    @ivar record: the L{TLSARecord} that matched, or L{None}.
    @ivar usage: that record's usage name (C{"DANE-EE"}, …), or L{None}.
    @ivar reason: for an operator: what matched and how, or why each
        usable record did not, or that no record was usable.
    @ivar usable_count: how many records were tried (usable, and not
        superseded by a stronger digest).  Zero means the peer has, in
        effect, no TLSA records (RFC 7671 section 4).
    @ivar identity: for records that check names, the
        L{gateway.tls.pkix.IdentityMatch} of the peer's certificate.
    @ivar trust_anchor: for DANE-TA and PKIX-TA, the anchor (or CA) that
        matched; for PKIX-EE, the trusted CA; as an RFC 4514 name.
    @ivar ignored: C{(record, reason)} for each record not tried.
    """

    matched: bool
    record: TLSARecord | None
    usage: str | None
    reason: str
    usable_count: int
    identity: IdentityMatch | None = None
    trust_anchor: str | None = None
    ignored: tuple[tuple[TLSARecord, str], ...] = ()


def _select(
    records: Iterable[TLSARecord], digest_agility: bool
) -> tuple[list[TLSARecord], list[tuple[TLSARecord, str]]]:
    """
    C{(records to try, (record, reason) pairs ignored)}.
    """
    tried: list[TLSARecord] = []
    ignored: list[tuple[TLSARecord, str]] = []
    for record in records:
        reason = unusable_reason(record)
        if reason is None:
            tried.append(record)
        else:
            ignored.append((record, reason))
    if not digest_agility:
        return tried, ignored
    strongest: dict[tuple[int, int], int] = {}
    for record in tried:
        if record.matching_type in _DIGESTS:
            group = (record.usage, record.selector)
            strongest[group] = max(strongest.get(group, 0), record.matching_type)
    kept = []
    for record in tried:
        # Every digest record's group has a strongest; other records have none.
        best = strongest.get((record.usage, record.selector), record.matching_type)
        if record.matching_type in _DIGESTS and record.matching_type != best:
            weaker, stronger = _DIGESTS[record.matching_type][2], _DIGESTS[best][2]
            ignored.append(
                (
                    record,
                    f"{weaker} superseded by {stronger} for {record.usage_name} "
                    f"{SELECTOR_NAMES[record.selector]} (RFC 7671 section 9)",
                )
            )
        else:
            kept.append(record)
    return kept, ignored


def _ignored_note(ignored: Sequence[tuple[TLSARecord, str]]) -> str:
    return f"{len(ignored)} ignored: {', '.join(reason for _, reason in ignored)}"


def _parse_chain(chain: Iterable[bytes]) -> list[_Presented] | str:
    """
    The presented chain as L{_Presented}s, or the reason it cannot be read.
    """
    presented: list[_Presented] = []
    for position, der in enumerate(chain):
        der = bytes(der)
        try:
            presented.append(_Presented(der, x509.load_der_x509_certificate(der)))
        except ValueError as e:
            which = "the peer's certificate" if position == 0 else (
                f"certificate {position + 1} of the peer's chain"
            )
            return f"could not parse {which}: {e}"
    return presented


def match_tlsa(
    records: Iterable[TLSARecord],
    chain: Sequence[bytes],
    names: str | Iterable[str],
    store: Store | None = None,
    now: datetime.datetime | None = None,
    allow_cn_id: bool = False,
    digest_agility: bool = True,
) -> TLSAMatch:
    """
    Match the presented C{chain} against the TLSA C{records} (see the
    module docstring for the rules).

    @param records: L{TLSARecord}s, the secure TLSA RRset of the service.
    @param chain: the DER certificates the peer presented, its own first.
    @param names: the reference identifiers the certificate may name, for
        the usages that check names: the source domain, then the SRV
        target host (RFC 7673 section 4); one domain may be given as a
        string.
    @param store: the trust anchors (a cryptography L{Store}) for PKIX-TA
        and PKIX-EE records; without one they cannot match.
    @param now: the validation time, a datetime (naive means UTC);
        L{None} for the current time.
    @param allow_cn_id: accept the subject CN as a last resort, as
        L{gateway.tls.pkix.match_identity} does.
    @param digest_agility: use only the strongest digest per usage and
        selector (RFC 7671 section 9).
    @rtype: L{TLSAMatch}
    """
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    now = datetime.datetime.now(datetime.timezone.utc) if now is None else as_utc(now)
    tried, not_tried = _select(tuple(dict.fromkeys(records)), digest_agility)
    ignored = tuple(not_tried)
    if not tried:
        reason = "no usable TLSA records"
        if ignored:
            reason += f" ({_ignored_note(ignored)})"
        return TLSAMatch(False, None, None, reason, 0, ignored=ignored)

    def failed(reason: str) -> TLSAMatch:
        if ignored:
            reason += f" ({_ignored_note(ignored)})"
        return TLSAMatch(False, None, None, reason, len(tried), ignored=ignored)

    if not chain:
        return failed("the peer presented no certificate")
    presented = _parse_chain(chain)
    if isinstance(presented, str):
        return failed(presented)

    context = _Context(presented, names, store, now, allow_cn_id)
    reasons = []
    for record in sorted(tried, key=lambda r: _USAGE_ORDER.index(r.usage)):
        outcome = _CHECKS[record.usage](record, context)
        reason = f"{record.usage_name} {record.short()}: {outcome.reason}"
        if outcome.matched:
            return TLSAMatch(
                True,
                record,
                record.usage_name,
                reason,
                len(tried),
                outcome.identity,
                outcome.trust_anchor,
                ignored,
            )
        reasons.append(reason)
    return failed("; ".join(reasons))
