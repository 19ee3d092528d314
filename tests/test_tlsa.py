"""
Tests for L{gateway.tls.tlsa}: TLSA records (presentation and wire
formats, usability) and matching a presented chain against them per
RFC 6698, RFC 7671 and RFC 7673.  Every certificate is made here, and the
expected record data and reasons are computed here independently of the
module (hashlib over the DER certificate and the key's SubjectPublicKeyInfo).
"""

import datetime
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.verification import Store
from twisted.trial.unittest import SynchronousTestCase

from gateway.tls.pkix import IdentityMatch
from gateway.tls.tlsa import (
    TLSAMatch,
    TLSARecord,
    match_tlsa,
    record_matches,
    tlsa_for,
    unusable_reason,
    usable,
)
from tests.pki import CertificateAuthority, generate_key, srv_name, xmpp_addr
from tests.support import add_case_tests

UTC = datetime.timezone.utc
NOW = datetime.datetime.now(UTC).replace(microsecond=0)
DAY = datetime.timedelta(days=1)

SOURCE = "b.example"  # the source domain
TARGET = "xmpp.b.example"  # its SRV target host
NAMES = (SOURCE, TARGET)
REFERENCES = (
    "b.example / _xmpp-server.b.example / xmpp.b.example / _xmpp-server.xmpp.b.example"
)

ROOT = CertificateAuthority("TLSA Test Root")
INTERMEDIATE = ROOT.intermediate("TLSA Test Intermediate")
OTHER = CertificateAuthority("Unrelated CA")
IMPOSTOR = CertificateAuthority("TLSA Test Intermediate")  # same name, other key
EXPIRED_INTERMEDIATE = ROOT.intermediate(
    "Expired Intermediate", not_before=NOW - 30 * DAY, not_after=NOW - 2 * DAY
)
EXPIRED_ROOT = CertificateAuthority(
    "Expired Root", not_before=NOW - 30 * DAY, not_after=NOW - 3 * DAY
)
NOT_A_CA = ROOT.intermediate("Not A CA", ca=False)
RSA_ROOT = CertificateAuthority("RSA Root", key=generate_key("rsa"))
ED25519_ROOT = CertificateAuthority("Ed25519 Root", key=generate_key("ed25519"))
STORE = Store([ROOT.certificate])

ROOT_SUBJECT = "CN=TLSA Test Root"
INTERMEDIATE_SUBJECT = "CN=TLSA Test Intermediate"


def der(certificate):
    return certificate.public_bytes(Encoding.DER)


EIGHT_INTERMEDIATES = ROOT.intermediates(8)
NINE_INTERMEDIATES = ROOT.intermediates(9)

# The usual chain: a leaf for the source domain, and its intermediate.
LEAF, LEAF_KEY = INTERMEDIATE.issue([SOURCE])
CHAIN = (der(LEAF), der(INTERMEDIATE.certificate))
FULL_CHAIN = CHAIN + (der(ROOT.certificate),)
OTHER_LEAF = INTERMEDIATE.issue([SOURCE])[0]
RENEWED_LEAF = INTERMEDIATE.issue([SOURCE], key=LEAF_KEY)[0]
UNTRUSTED_LEAF = OTHER.issue([SOURCE])[0]
EXPIRED_SELF_SIGNED = ROOT.issue(
    ["elsewhere.example"], self_signed=True, not_before=NOW - 30 * DAY, not_after=NOW - DAY
)[0]
SELF_SIGNED = ROOT.issue([SOURCE], self_signed=True)[0]


# Independent computations of what records hold and reasons show.


def spki(certificate):
    return certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def selected(certificate, selector):
    return der(certificate) if selector == 0 else spki(certificate)


def association(certificate, selector, matching_type):
    data = selected(certificate, selector)
    if matching_type == 1:
        return hashlib.sha256(data).digest()
    if matching_type == 2:
        return hashlib.sha512(data).digest()
    return data


def record(certificate, usage, selector=1, matching_type=1):
    data = association(certificate, selector, matching_type)
    return TLSARecord(usage, selector, matching_type, data)


def short(tlsa):
    digits = tlsa.data.hex()
    if len(digits) > 16:
        digits = digits[:16] + "…"
    return f"{tlsa.usage} {tlsa.selector} {tlsa.matching_type} {digits}"


def value(certificate, selector, matching_type):
    """
    How reasons show what a record with C{selector} and C{matching_type}
    is compared with.
    """
    data = selected(certificate, selector)
    what = "certificate" if selector == 0 else "SPKI"
    if matching_type == 2:
        return f"{what} sha512 {hashlib.sha512(data).hexdigest()}"
    return f"{what} sha256 {hashlib.sha256(data).hexdigest()}"


def subject(certificate):
    return certificate.subject.rfc4514_string()


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


USAGE = {0: "PKIX-TA", 1: "PKIX-EE", 2: "DANE-TA", 3: "DANE-EE"}


def because(tlsa, text):
    """
    The reason L{match_tlsa} gives for one record.
    """
    return f"{USAGE[tlsa.usage]} {short(tlsa)}: {text}"


def leaf(dns_names=(SOURCE,), ca=INTERMEDIATE, **kwargs):
    return ca.issue(list(dns_names), **kwargs)[0]


# A SubjectPublicKeyInfo of an algorithm nothing here knows (OID
# 1.3.6.1.4.1.99999.1): usable as Full(0) data, but not as a key.
UNKNOWN_ALGORITHM_SPKI = b"\x30\x11\x30\x0b\x06\x09\x2b\x06\x01\x04\x01\x86\x8d\x1f\x01" \
    b"\x03\x02\x00\x01"


# Every usage, selector and matching type, matching and not.


def _the_matching_certificate(usage):
    """
    What a record of C{usage} is published for, to match L{CHAIN}: the
    leaf for the -EE usages, the presented intermediate for DANE-TA, the
    root (in the store, not presented) for PKIX-TA.
    """
    return {0: ROOT.certificate, 1: LEAF, 2: INTERMEDIATE.certificate, 3: LEAF}[usage]


def _the_other_certificate(usage):
    return {0: OTHER.certificate, 1: OTHER_LEAF, 2: OTHER.certificate, 3: OTHER_LEAF}[usage]


def _matched_reason(tlsa):
    s, m = tlsa.selector, tlsa.matching_type
    named = "DNS-ID b.example names b.example"
    if tlsa.usage == 3:
        return because(tlsa, f"matches the certificate ({value(LEAF, s, m)})")
    if tlsa.usage == 2:
        return because(tlsa, f"matched {INTERMEDIATE_SUBJECT}; {named}")
    if tlsa.usage == 1:
        return because(
            tlsa,
            f"matches the certificate ({value(LEAF, s, m)}), chain to trusted CA "
            f"{ROOT_SUBJECT}; {named}",
        )
    return because(tlsa, f"matched CA {ROOT_SUBJECT} on the chain to trusted CA "
                         f"{ROOT_SUBJECT}; {named}")


def _unmatched_reason(tlsa):
    s, m = tlsa.selector, tlsa.matching_type
    if tlsa.usage in (1, 3):
        return because(tlsa, f"does not match the certificate ({value(LEAF, s, m)})")
    if tlsa.usage == 2:
        stops = (
            f"but the peer's certificate does not chain to it (the presented chain stops at "
            f"{INTERMEDIATE_SUBJECT}, issued by {ROOT_SUBJECT})"
        )
        if m == 0 and s == 0:
            # A Full(0) record carries its trust anchor (RFC 7671 5.2.2).
            return because(tlsa, f"matched CN=Unrelated CA (from the record), {stops}")
        if m == 0:
            return because(tlsa, f"matched the public key in the record, {stops}")
        presented = f"{INTERMEDIATE_SUBJECT} {value(INTERMEDIATE.certificate, s, m)}"
        return because(
            tlsa, f"matches no issuer certificate the peer presented (presented: {presented})"
        )
    cas = ", ".join(
        f"{subject(ca)} {value(ca, s, m)}" for ca in (INTERMEDIATE.certificate, ROOT.certificate)
    )
    return because(tlsa, f"matches no CA certificate on the validated chain ({cas})")


class CombinationTests(SynchronousTestCase):
    """
    Each of the 4 usages x 2 selectors x 3 matching types, against
    L{CHAIN}: a record for the right certificate matches, one for another
    does not.  The test methods are generated below.
    """

    def check(self, usage, selector, matching_type, matching):
        certificate = (_the_matching_certificate if matching else _the_other_certificate)(usage)
        tlsa = record(certificate, usage, selector, matching_type)
        self.assertEqual(tlsa, tlsa_for(der(certificate), usage, selector, matching_type))
        result = match_tlsa([tlsa], CHAIN, NAMES, STORE, NOW)
        if matching:
            self.assertEqual(
                (result.matched, result.record, result.usage, result.reason),
                (True, tlsa, USAGE[usage], _matched_reason(tlsa)),
            )
        else:
            self.assertEqual(
                (result.matched, result.record, result.usage, result.reason),
                (False, None, None, _unmatched_reason(tlsa)),
            )
        self.assertEqual((result.usable_count, result.ignored), (1, ()))


def _add_combination_tests():
    for usage in range(4):
        for selector in range(2):
            for matching_type in range(3):
                for matching in (True, False):
                    def test(self, u=usage, s=selector, m=matching_type, matching=matching):
                        self.check(u, s, m, matching)

                    outcome = "matches" if matching else "does_not_match"
                    name = f"test_{USAGE[usage].replace('-', '_')}_{usage}_{selector}_" \
                           f"{matching_type}_{outcome}"
                    test.__name__ = name
                    test.__doc__ = f"{usage} {selector} {matching_type} {outcome}"
                    setattr(CombinationTests, name, test)


_add_combination_tests()


# Matching, case by case.


@dataclass(frozen=True)
class Case:
    """
    One L{match_tlsa} call and what it must say.

    @ivar record: the record expected to match (for a match).
    @ivar reason_contains: C{reason} is a substring of the reason.
    """

    name: str
    records: tuple
    chain: tuple
    matched: bool
    reason: str
    names: object = NAMES
    record: TLSARecord | None = None
    store: object = STORE
    now: datetime.datetime = NOW
    usable_count: int | None = None
    allow_cn_id: bool = False
    digest_agility: bool = True
    reason_contains: bool = False


def matches(name, records, chain, expected_record, reason, **kwargs):
    return Case(name, tuple(records), tuple(chain), True, reason, record=expected_record,
                **kwargs)


def fails(name, records, chain, reason, **kwargs):
    return Case(name, tuple(records), tuple(chain), False, reason, **kwargs)


def _matching_ee(certificate=LEAF, selector=1, matching_type=1):
    tlsa = record(certificate, 3, selector, matching_type)
    return tlsa, because(
        tlsa, f"matches the certificate ({value(certificate, selector, matching_type)})"
    )


EE, EE_MATCHED = _matching_ee()
EE_OTHER = record(OTHER_LEAF, 3)
EE_OTHER_UNMATCHED = because(EE_OTHER, f"does not match the certificate ({value(LEAF, 1, 1)})")
EE_512 = record(LEAF, 3, 1, 2)
EE_OTHER_512 = record(OTHER_LEAF, 3, 1, 2)
EE_CERT_OTHER_512 = record(OTHER_LEAF, 3, 0, 2)
EE_FULL = record(LEAF, 3, 1, 0)
TA = record(INTERMEDIATE.certificate, 2)
TA_ROOT = record(ROOT.certificate, 2)
TA_OTHER = record(OTHER.certificate, 2)
PKIX_TA = record(ROOT.certificate, 0)
PKIX_EE = record(LEAF, 1)

USAGE_7 = TLSARecord(7, 1, 1, bytes(32))
SELECTOR_2 = TLSARecord(3, 2, 1, bytes(32))
MATCHING_3 = TLSARecord(3, 1, 3, bytes(32))
SHORT_DIGEST = TLSARecord(3, 1, 1, bytes(31))

DNS_ID = "DNS-ID b.example names b.example"
TA_MATCHED = f"matched {INTERMEDIATE_SUBJECT}; {DNS_ID}"
PRESENTED_INTERMEDIATE = f"{INTERMEDIATE_SUBJECT} {value(INTERMEDIATE.certificate, 1, 1)}"

TA_LEAF = record(LEAF, 2)
SRV_ID_LEAF = leaf((), sans=[srv_name("_xmpp-server.b.example")])
XMPP_ADDR_LEAF = leaf((), sans=[xmpp_addr(SOURCE)])
CN_ONLY_LEAF = leaf((), common_name=SOURCE)
WRONG_NAME_LEAF = leaf(["a.example"])
EXPIRED_LEAF = leaf(not_before=NOW - 10 * DAY, not_after=NOW - DAY)
FUTURE_LEAF = leaf(not_before=NOW + DAY, not_after=NOW + 10 * DAY)
SHORT_LIVED_LEAF = leaf(not_before=NOW - DAY, not_after=NOW + DAY)
NOT_A_CA_LEAF = leaf(ca=NOT_A_CA)
EXPIRED_INTERMEDIATE_LEAF = leaf(ca=EXPIRED_INTERMEDIATE, not_before=NOW - 10 * DAY)
EXPIRED_ROOT_LEAF = leaf(ca=EXPIRED_ROOT, not_before=NOW - 10 * DAY)
RSA_LEAF = leaf(ca=RSA_ROOT)
ED25519_LEAF = leaf(ca=ED25519_ROOT)
EIGHT_LEAF = leaf(ca=EIGHT_INTERMEDIATES[-1])
NINE_LEAF = leaf(ca=NINE_INTERMEDIATES[-1])
EIGHT_CHAIN = (
    (der(EIGHT_LEAF),)
    + tuple(der(ca.certificate) for ca in reversed(EIGHT_INTERMEDIATES))
    + (der(ROOT.certificate),)
)
NINE_CHAIN = (
    (der(NINE_LEAF),)
    + tuple(der(ca.certificate) for ca in reversed(NINE_INTERMEDIATES))
    + (der(ROOT.certificate),)
)

UNKNOWN_KEY_TA = TLSARecord(2, 1, 0, UNKNOWN_ALGORITHM_SPKI)

WRONG_NAMES = f"the certificate names a.example; not {REFERENCES}"


def ta_fails(text, tlsa=TA):
    return because(tlsa, f"matched {INTERMEDIATE_SUBJECT}, but {text}")


CASES = [
    # No usable records: never an error, and said before anything else.
    fails("no records", [], CHAIN, "no usable TLSA records", usable_count=0),
    fails("only unusable records", [USAGE_7, SELECTOR_2, MATCHING_3, SHORT_DIGEST], CHAIN,
          "no usable TLSA records (4 ignored: unknown usage 7, unknown selector 2, "
          "unknown matching type 3, SHA-256 data of 31 bytes instead of 32)", usable_count=0),
    fails("only unusable records, and no certificate", [USAGE_7], (),
          "no usable TLSA records (1 ignored: unknown usage 7)", usable_count=0),
    fails("full data that is not a certificate", [TLSARecord(3, 0, 0, b"junk")], CHAIN,
          "no usable TLSA records (1 ignored: Cert Full data is not a DER certificate)"),
    fails("full data that is not a SubjectPublicKeyInfo", [TLSARecord(2, 1, 0, der(LEAF))],
          CHAIN, "no usable TLSA records "
          "(1 ignored: SPKI Full data is not a DER SubjectPublicKeyInfo)"),
    matches("unusable records ignored, a usable one matches", [USAGE_7, EE, SHORT_DIGEST],
            CHAIN, EE, EE_MATCHED, usable_count=1),
    fails("unusable records ignored, the usable one does not match", [USAGE_7, EE_OTHER],
          CHAIN, f"{EE_OTHER_UNMATCHED} (1 ignored: unknown usage 7)", usable_count=1),

    # The chain.
    fails("no certificate", [EE], (), "the peer presented no certificate", usable_count=1),
    fails("garbage certificate", [EE], (b"not a certificate",),
          "could not parse the peer's certificate: ", reason_contains=True),
    fails("garbage intermediate", [EE], (der(LEAF), b"\x30\x03\x02\x01\x01"),
          "could not parse certificate 2 of the peer's chain: ", reason_contains=True),

    # Several records.
    matches("the first of several matches", [EE, EE_OTHER, TA_OTHER], CHAIN, EE, EE_MATCHED,
            usable_count=3),
    matches("the last of several matches", [EE_OTHER, record(OTHER_LEAF, 3, 0, 1), EE],
            CHAIN, EE, EE_MATCHED, usable_count=3),
    matches("a DANE-TA record matches, the DANE-EE one does not", [EE_OTHER, TA], CHAIN, TA,
            because(TA, TA_MATCHED)),
    fails("none of several matches", [TA_OTHER, EE_OTHER], CHAIN,
          f"{EE_OTHER_UNMATCHED}; " + because(
              TA_OTHER, f"matches no issuer certificate the peer presented "
                        f"(presented: {PRESENTED_INTERMEDIATE})"),
          usable_count=2),
    matches("DANE-EE is tried first, whatever the order", [PKIX_TA, TA, EE], CHAIN, EE,
            EE_MATCHED),
    matches("then DANE-TA", [PKIX_TA, PKIX_EE, TA], CHAIN, TA, because(TA, TA_MATCHED)),
    matches("then PKIX-EE", [PKIX_TA, PKIX_EE], CHAIN, PKIX_EE,
            because(PKIX_EE, f"matches the certificate ({value(LEAF, 1, 1)}), chain to "
                             f"trusted CA {ROOT_SUBJECT}; {DNS_ID}")),
    fails("a record twice is tried once", [EE_OTHER, EE_OTHER], CHAIN, EE_OTHER_UNMATCHED,
          usable_count=1),

    # Digest algorithm agility (RFC 7671 section 9).
    fails("a weaker digest is superseded by a stronger one", [EE, EE_OTHER_512], CHAIN,
          because(EE_OTHER_512, f"does not match the certificate ({value(LEAF, 1, 2)})")
          + " (1 ignored: SHA-256 superseded by SHA-512 for DANE-EE SPKI (RFC 7671 section 9))",
          usable_count=1),
    matches("the stronger digest matches", [EE_512, EE_OTHER], CHAIN, EE_512,
            because(EE_512, f"matches the certificate ({value(LEAF, 1, 2)})"), usable_count=1),
    matches("digests compete per selector", [EE, EE_CERT_OTHER_512], CHAIN, EE, EE_MATCHED,
            usable_count=2),
    matches("digests compete per usage", [EE, record(OTHER.certificate, 2, 1, 2)], CHAIN, EE,
            EE_MATCHED, usable_count=2),
    matches("full data is not a digest", [EE_FULL, EE_OTHER_512], CHAIN, EE_FULL,
            because(EE_FULL, f"matches the certificate ({value(LEAF, 1, 0)})"), usable_count=2),
    matches("digest agility off", [EE, EE_OTHER_512], CHAIN, EE, EE_MATCHED, usable_count=2,
            digest_agility=False),

    # DANE-EE: the leaf, nothing else (RFC 7671 section 5.1).
    matches("DANE-EE: an expired self-signed certificate for another name",
            [record(EXPIRED_SELF_SIGNED, 3)], [der(EXPIRED_SELF_SIGNED)],
            record(EXPIRED_SELF_SIGNED, 3), _matching_ee(EXPIRED_SELF_SIGNED)[1]),
    matches("DANE-EE: a certificate not yet valid", [record(FUTURE_LEAF, 3)],
            [der(FUTURE_LEAF)], record(FUTURE_LEAF, 3), _matching_ee(FUTURE_LEAF)[1]),
    matches("DANE-EE: no trust store needed", [EE], CHAIN, EE, EE_MATCHED, store=None),
    matches("DANE-EE: no names needed", [EE], CHAIN, EE, EE_MATCHED, names=()),
    matches("DANE-EE: an untrusted chain", [record(UNTRUSTED_LEAF, 3)],
            [der(UNTRUSTED_LEAF), der(OTHER.certificate)], record(UNTRUSTED_LEAF, 3),
            _matching_ee(UNTRUSTED_LEAF)[1]),
    matches("DANE-EE: a CA certificate as the leaf", [record(OTHER.certificate, 3)],
            [der(OTHER.certificate)], record(OTHER.certificate, 3),
            _matching_ee(OTHER.certificate)[1]),
    matches("DANE-EE: SPKI survives renewal with the same key", [EE], [der(RENEWED_LEAF)],
            EE, EE_MATCHED.replace(value(LEAF, 1, 1), value(RENEWED_LEAF, 1, 1))),
    fails("DANE-EE: the certificate's digest does not", [record(LEAF, 3, 0, 1)],
          [der(RENEWED_LEAF)],
          because(record(LEAF, 3, 0, 1),
                  f"does not match the certificate ({value(RENEWED_LEAF, 0, 1)})")),
    fails("DANE-EE: a record for the intermediate", [record(INTERMEDIATE.certificate, 3)],
          CHAIN, because(record(INTERMEDIATE.certificate, 3),
                         f"does not match the certificate ({value(LEAF, 1, 1)})")),

    # DANE-TA: names (RFC 7673 section 4).
    matches("DANE-TA: DNS-ID of the source domain", [TA], CHAIN, TA, because(TA, TA_MATCHED)),
    matches("DANE-TA: DNS-ID of the SRV target host", [TA],
            [der(leaf([TARGET])), der(INTERMEDIATE.certificate)], TA,
            because(TA, f"matched {INTERMEDIATE_SUBJECT}; "
                        f"DNS-ID xmpp.b.example names xmpp.b.example")),
    matches("DANE-TA: wildcard DNS-ID for the SRV target host", [TA],
            [der(leaf(["*.b.example"])), der(INTERMEDIATE.certificate)], TA,
            because(TA, f"matched {INTERMEDIATE_SUBJECT}; "
                        f"DNS-ID *.b.example names xmpp.b.example")),
    matches("DANE-TA: SRV-ID of the source domain", [TA],
            [der(SRV_ID_LEAF), der(INTERMEDIATE.certificate)], TA,
            because(TA, f"matched {INTERMEDIATE_SUBJECT}; "
                        f"SRV-ID _xmpp-server.b.example names b.example")),
    matches("DANE-TA: XmppAddr of the source domain", [TA],
            [der(XMPP_ADDR_LEAF), der(INTERMEDIATE.certificate)], TA,
            because(TA, f"matched {INTERMEDIATE_SUBJECT}; XmppAddr b.example names b.example")),
    matches("DANE-TA: one name as a string", [TA], CHAIN, TA, because(TA, TA_MATCHED),
            names=SOURCE),
    fails("DANE-TA: the wrong name", [TA],
          [der(WRONG_NAME_LEAF), der(INTERMEDIATE.certificate)], ta_fails(WRONG_NAMES)),
    fails("DANE-TA: the SRV target host only when given", [TA],
          [der(leaf([TARGET])), der(INTERMEDIATE.certificate)],
          ta_fails("the certificate names xmpp.b.example; "
                   "not b.example / _xmpp-server.b.example"),
          names=(SOURCE,)),
    fails("DANE-TA: SRV-ID of another domain", [TA],
          [der(leaf((), sans=[srv_name("_xmpp-server.a.example")])),
           der(INTERMEDIATE.certificate)],
          ta_fails(f"the certificate names _xmpp-server.a.example; not {REFERENCES}")),
    fails("DANE-TA: subject CN only", [TA], [der(CN_ONLY_LEAF), der(INTERMEDIATE.certificate)],
          ta_fails(f"the certificate has no DNS, SRV or XmppAddr subjectAltName "
                   f"(subject CN b.example); not {REFERENCES}")),
    matches("DANE-TA: subject CN only, CN-ID allowed", [TA],
            [der(CN_ONLY_LEAF), der(INTERMEDIATE.certificate)], TA,
            because(TA, f"matched {INTERMEDIATE_SUBJECT}; CN-ID b.example names b.example"),
            allow_cn_id=True),
    fails("DANE-TA: no names to check", [TA], CHAIN,
          ta_fails("no reference identifier to check the certificate's names against"),
          names=()),

    # DANE-TA: the trust anchor and the path to it (RFC 7671 section 5.2).
    matches("DANE-TA: the root, presented", [TA_ROOT], FULL_CHAIN, TA_ROOT,
            because(TA_ROOT, f"matched {ROOT_SUBJECT}; {DNS_ID}")),
    matches("DANE-TA: the root, presented before the intermediate", [TA_ROOT],
            [der(LEAF), der(ROOT.certificate), der(INTERMEDIATE.certificate)], TA_ROOT,
            because(TA_ROOT, f"matched {ROOT_SUBJECT}; {DNS_ID}")),
    matches("DANE-TA: an unrelated certificate presented too", [TA],
            CHAIN + (der(OTHER.certificate),), TA, because(TA, TA_MATCHED)),
    matches("DANE-TA: no trust store needed", [TA], CHAIN, TA, because(TA, TA_MATCHED),
            store=None),
    matches("DANE-TA: eight intermediates", [TA_ROOT], EIGHT_CHAIN, TA_ROOT,
            because(TA_ROOT, f"matched {ROOT_SUBJECT}; {DNS_ID}")),
    fails("DANE-TA: nine intermediates", [TA_ROOT], NINE_CHAIN,
          because(TA_ROOT, f"matched {ROOT_SUBJECT}, but the path to it is longer than "
                           f"8 intermediate certificates")),
    fails("DANE-TA: the trust anchor not presented", [TA_ROOT], CHAIN,
          because(TA_ROOT, f"matches no issuer certificate the peer presented "
                           f"(presented: {PRESENTED_INTERMEDIATE})")),
    fails("DANE-TA: only the leaf presented", [TA], [der(LEAF)],
          because(TA, "matches no issuer certificate the peer presented (presented: none)")),
    fails("DANE-TA: a record for the leaf", [TA_LEAF], CHAIN,
          because(TA_LEAF, "matches the peer's own certificate, not an issuer's; a record "
                           "for it would be DANE-EE (3 1 1 …)")),
    fails("DANE-TA: a self-signed leaf, presented twice", [record(SELF_SIGNED, 2)],
          [der(SELF_SIGNED), der(SELF_SIGNED)],
          because(record(SELF_SIGNED, 2),
                  "matches the peer's own certificate, not an issuer's; a record for it would "
                  "be DANE-EE (3 1 1 …)")),
    fails("DANE-TA: the intermediate missing", [TA_ROOT],
          [der(LEAF), der(ROOT.certificate)],
          because(TA_ROOT, f"matched {ROOT_SUBJECT}, but the peer's certificate does not chain "
                           f"to it (the presented chain stops at CN=b.example, issued by "
                           f"{INTERMEDIATE_SUBJECT})")),
    fails("DANE-TA: an unrelated CA presented and published", [TA_OTHER],
          CHAIN + (der(OTHER.certificate),),
          because(TA_OTHER, f"matched CN=Unrelated CA, but the peer's certificate does not "
                            f"chain to it (the presented chain stops at "
                            f"{INTERMEDIATE_SUBJECT}, issued by {ROOT_SUBJECT})")),
    fails("DANE-TA: same CA name, other key", [record(IMPOSTOR.certificate, 2)],
          [der(LEAF), der(IMPOSTOR.certificate)],
          because(record(IMPOSTOR.certificate, 2),
                  f"matched {INTERMEDIATE_SUBJECT}, but the peer's certificate does not chain "
                  f"to it (the presented chain stops at CN=b.example, issued by "
                  f"{INTERMEDIATE_SUBJECT})")),
    fails("DANE-TA: an intermediate that is not a CA", [TA_ROOT],
          [der(NOT_A_CA_LEAF), der(NOT_A_CA.certificate), der(ROOT.certificate)],
          because(TA_ROOT, f"matched {ROOT_SUBJECT}, but intermediate certificate CN=Not A CA "
                           f"is not a CA (basicConstraints cA)")),

    # DANE-TA: dates.
    fails("DANE-TA: the certificate expired", [TA],
          [der(EXPIRED_LEAF), der(INTERMEDIATE.certificate)],
          ta_fails(f"the certificate expired on {iso(NOW - DAY)}")),
    fails("DANE-TA: the certificate not yet valid", [TA],
          [der(FUTURE_LEAF), der(INTERMEDIATE.certificate)],
          ta_fails(f"the certificate is not valid before {iso(NOW + DAY)}")),
    fails("DANE-TA: checked at the time given", [TA],
          [der(SHORT_LIVED_LEAF), der(INTERMEDIATE.certificate)],
          ta_fails(f"the certificate expired on {iso(NOW + DAY)}"), now=NOW + 2 * DAY),
    fails("DANE-TA: the dates before the names", [TA],
          [der(leaf(["a.example"], not_before=NOW - 10 * DAY, not_after=NOW - DAY)),
           der(INTERMEDIATE.certificate)],
          ta_fails(f"the certificate expired on {iso(NOW - DAY)}")),
    fails("DANE-TA: an intermediate expired", [TA_ROOT],
          [der(EXPIRED_INTERMEDIATE_LEAF), der(EXPIRED_INTERMEDIATE.certificate),
           der(ROOT.certificate)],
          because(TA_ROOT, f"matched {ROOT_SUBJECT}, but intermediate certificate "
                           f"CN=Expired Intermediate expired on {iso(NOW - 2 * DAY)}")),
    fails("DANE-TA: the trust anchor expired", [record(EXPIRED_ROOT.certificate, 2)],
          [der(EXPIRED_ROOT_LEAF), der(EXPIRED_ROOT.certificate)],
          because(record(EXPIRED_ROOT.certificate, 2),
                  f"matched CN=Expired Root, but the trust anchor CN=Expired Root expired on "
                  f"{iso(NOW - 3 * DAY)}")),

    # DANE-TA: a Full(0) record carries its trust anchor (RFC 7671 section 5.2.2).
    matches("DANE-TA: the anchor's certificate in the record, not presented",
            [record(ROOT.certificate, 2, 0, 0)], CHAIN, record(ROOT.certificate, 2, 0, 0),
            because(record(ROOT.certificate, 2, 0, 0),
                    f"matched {ROOT_SUBJECT} (from the record); {DNS_ID}")),
    matches("DANE-TA: the anchor's P-256 key in the record, not presented",
            [record(ROOT.certificate, 2, 1, 0)], CHAIN, record(ROOT.certificate, 2, 1, 0),
            because(record(ROOT.certificate, 2, 1, 0),
                    f"matched the public key in the record; {DNS_ID}")),
    matches("DANE-TA: the anchor's RSA key in the record, not presented",
            [record(RSA_ROOT.certificate, 2, 1, 0)], [der(RSA_LEAF)],
            record(RSA_ROOT.certificate, 2, 1, 0),
            because(record(RSA_ROOT.certificate, 2, 1, 0),
                    f"matched the public key in the record; {DNS_ID}")),
    matches("DANE-TA: the anchor's Ed25519 key in the record, not presented",
            [record(ED25519_ROOT.certificate, 2, 1, 0)], [der(ED25519_LEAF)],
            record(ED25519_ROOT.certificate, 2, 1, 0),
            because(record(ED25519_ROOT.certificate, 2, 1, 0),
                    f"matched the public key in the record; {DNS_ID}")),
    matches("DANE-TA: an RSA anchor, presented", [record(RSA_ROOT.certificate, 2)],
            [der(RSA_LEAF), der(RSA_ROOT.certificate)], record(RSA_ROOT.certificate, 2),
            because(record(RSA_ROOT.certificate, 2), f"matched CN=RSA Root; {DNS_ID}")),
    matches("DANE-TA: an Ed25519 anchor, presented", [record(ED25519_ROOT.certificate, 2)],
            [der(ED25519_LEAF), der(ED25519_ROOT.certificate)],
            record(ED25519_ROOT.certificate, 2),
            because(record(ED25519_ROOT.certificate, 2), f"matched CN=Ed25519 Root; {DNS_ID}")),
    fails("DANE-TA: the key in the record is another CA's",
          [record(RSA_ROOT.certificate, 2, 1, 0)], CHAIN,
          because(record(RSA_ROOT.certificate, 2, 1, 0),
                  f"matched the public key in the record, but the peer's certificate does not "
                  f"chain to it (the presented chain stops at {INTERMEDIATE_SUBJECT}, "
                  f"issued by {ROOT_SUBJECT})")),
    fails("DANE-TA: a key of an unknown algorithm in the record", [UNKNOWN_KEY_TA], CHAIN,
          because(UNKNOWN_KEY_TA, "matches no issuer certificate the peer presented "
                                  f"(presented: {INTERMEDIATE_SUBJECT} "
                                  f"{value(INTERMEDIATE.certificate, 1, 0)})")),
    fails("DANE-TA: the anchor in the record, still the dates",
          [record(EXPIRED_ROOT.certificate, 2, 0, 0)], [der(EXPIRED_ROOT_LEAF)],
          because(record(EXPIRED_ROOT.certificate, 2, 0, 0),
                  "matched CN=Expired Root (from the record), but the trust anchor "
                  f"CN=Expired Root expired on {iso(NOW - 3 * DAY)}")),
    fails("DANE-TA: the anchor in the record, still the names",
          [record(ROOT.certificate, 2, 0, 0)],
          [der(WRONG_NAME_LEAF), der(INTERMEDIATE.certificate)],
          because(record(ROOT.certificate, 2, 0, 0),
                  f"matched {ROOT_SUBJECT} (from the record), but {WRONG_NAMES}")),

    # PKIX-EE (RFC 7671 section 5.3).
    matches("PKIX-EE: trusted, the right name", [PKIX_EE], CHAIN, PKIX_EE,
            because(PKIX_EE, f"matches the certificate ({value(LEAF, 1, 1)}), chain to "
                             f"trusted CA {ROOT_SUBJECT}; {DNS_ID}")),
    fails("PKIX-EE: an untrusted chain, though the digest matches",
          [record(UNTRUSTED_LEAF, 1)], [der(UNTRUSTED_LEAF), der(OTHER.certificate)],
          because(record(UNTRUSTED_LEAF, 1), "matches the certificate, but PKIX validation "
                  "failed: chain does not lead to a trusted CA (issuer: CN=Unrelated CA)")),
    fails("PKIX-EE: self-signed, though the digest matches", [record(SELF_SIGNED, 1)],
          [der(SELF_SIGNED)],
          because(record(SELF_SIGNED, 1), "matches the certificate, but PKIX validation "
                  "failed: self-signed certificate, not from a trusted CA")),
    fails("PKIX-EE: the intermediate missing", [PKIX_EE], [der(LEAF)],
          because(PKIX_EE, "matches the certificate, but PKIX validation failed: chain does "
                  f"not lead to a trusted CA (issuer: {INTERMEDIATE_SUBJECT})")),
    fails("PKIX-EE: expired", [record(EXPIRED_LEAF, 1)],
          [der(EXPIRED_LEAF), der(INTERMEDIATE.certificate)],
          because(record(EXPIRED_LEAF, 1), "matches the certificate, but PKIX validation "
                  f"failed: certificate expired on {iso(NOW - DAY)}")),
    fails("PKIX-EE: the wrong name", [record(WRONG_NAME_LEAF, 1)],
          [der(WRONG_NAME_LEAF), der(INTERMEDIATE.certificate)],
          because(record(WRONG_NAME_LEAF, 1), f"matches the certificate, but {WRONG_NAMES}")),
    fails("PKIX-EE: no trust store", [PKIX_EE], CHAIN,
          because(PKIX_EE, "matches the certificate, but needs PKIX validation, and no trust "
                           "store was given"), store=None),

    # PKIX-TA (RFC 7671 section 5.4).
    matches("PKIX-TA: the trusted root, not presented", [PKIX_TA], CHAIN, PKIX_TA,
            because(PKIX_TA, f"matched CA {ROOT_SUBJECT} on the chain to trusted CA "
                             f"{ROOT_SUBJECT}; {DNS_ID}")),
    matches("PKIX-TA: the intermediate", [record(INTERMEDIATE.certificate, 0)], CHAIN,
            record(INTERMEDIATE.certificate, 0),
            because(record(INTERMEDIATE.certificate, 0),
                    f"matched CA {INTERMEDIATE_SUBJECT} on the chain to trusted CA "
                    f"{ROOT_SUBJECT}; {DNS_ID}")),
    fails("PKIX-TA: an untrusted chain, though the digest matches",
          [record(OTHER.certificate, 0)], [der(UNTRUSTED_LEAF), der(OTHER.certificate)],
          because(record(OTHER.certificate, 0), "PKIX validation failed: chain does not lead "
                                                "to a trusted CA (issuer: CN=Unrelated CA)")),
    fails("PKIX-TA: a CA presented but not on the validated chain",
          [record(OTHER.certificate, 0)], CHAIN + (der(OTHER.certificate),),
          because(record(OTHER.certificate, 0),
                  f"matches no CA certificate on the validated chain ({PRESENTED_INTERMEDIATE}"
                  f", {ROOT_SUBJECT} {value(ROOT.certificate, 1, 1)})")),
    fails("PKIX-TA: a record for the leaf", [record(LEAF, 0)], CHAIN,
          because(record(LEAF, 0), "matches the peer's own certificate, not a CA; a record "
                                   "for it would be PKIX-EE (1 1 1 …)")),
    fails("PKIX-TA: the wrong name", [PKIX_TA],
          [der(WRONG_NAME_LEAF), der(INTERMEDIATE.certificate)],
          because(PKIX_TA, f"matched CA {ROOT_SUBJECT}, but {WRONG_NAMES}")),
    fails("PKIX-TA: no trust store", [PKIX_TA], CHAIN,
          because(PKIX_TA, "needs PKIX validation, and no trust store was given"), store=None),
    fails("PKIX-TA: a trust store without the root", [PKIX_TA], CHAIN,
          because(PKIX_TA, "PKIX validation failed: chain does not lead to a trusted CA "
                           f"(issuer: {ROOT_SUBJECT})"),
          store=Store([OTHER.certificate])),
]


class MatchTLSATests(SynchronousTestCase):
    """
    L{match_tlsa}, one test per L{CASES} entry.
    """

    def check(self, case):
        result = match_tlsa(
            case.records, case.chain, case.names, case.store, case.now,
            allow_cn_id=case.allow_cn_id, digest_agility=case.digest_agility,
        )
        self.assertIsInstance(result, TLSAMatch)
        self.assertEqual(result.matched, case.matched, result.reason)
        if case.reason_contains:
            self.assertIn(case.reason, result.reason)
        else:
            self.assertEqual(result.reason, case.reason)
        if case.matched:
            self.assertEqual(result.record, case.record)
            self.assertEqual(result.usage, USAGE[case.record.usage])
        else:
            self.assertEqual((result.record, result.usage), (None, None))
        if case.usable_count is not None:
            self.assertEqual(result.usable_count, case.usable_count)


add_case_tests(MatchTLSATests, CASES)


class MatchResultTests(SynchronousTestCase):
    """
    What a L{TLSAMatch} carries besides the reason.
    """

    def test_dane_ee(self):
        result = match_tlsa([USAGE_7, EE], CHAIN, NAMES, now=NOW)
        self.assertEqual(
            result,
            TLSAMatch(True, EE, "DANE-EE", EE_MATCHED, 1, None, None,
                      ((USAGE_7, "unknown usage 7"),)),
        )

    def test_dane_ta(self):
        result = match_tlsa([TA], [der(SRV_ID_LEAF), der(INTERMEDIATE.certificate)], NAMES,
                            now=NOW)
        self.assertEqual(result.identity, IdentityMatch("SRV-ID", "_xmpp-server.b.example"))
        self.assertEqual(result.trust_anchor, INTERMEDIATE_SUBJECT)

    def test_pkix_ee(self):
        result = match_tlsa([PKIX_EE], CHAIN, NAMES, STORE, NOW)
        self.assertEqual(result.identity, IdentityMatch("DNS-ID", SOURCE))
        self.assertEqual(result.trust_anchor, ROOT_SUBJECT)

    def test_pkix_ta(self):
        result = match_tlsa([record(INTERMEDIATE.certificate, 0)], CHAIN, NAMES, STORE, NOW)
        self.assertEqual(result.identity, IdentityMatch("DNS-ID", SOURCE))
        self.assertEqual(result.trust_anchor, INTERMEDIATE_SUBJECT)

    def test_no_match(self):
        result = match_tlsa([EE_OTHER], CHAIN, NAMES, now=NOW)
        self.assertEqual(
            (result.matched, result.record, result.usage, result.identity, result.trust_anchor),
            (False, None, None, None, None),
        )

    def test_superseded_are_ignored(self):
        result = match_tlsa([EE, EE_OTHER_512], CHAIN, NAMES, now=NOW)
        self.assertEqual(
            result.ignored,
            ((EE, "SHA-256 superseded by SHA-512 for DANE-EE SPKI (RFC 7671 section 9)"),),
        )

    def test_frozen(self):
        result = match_tlsa([EE], CHAIN, NAMES, now=NOW)
        with self.assertRaises(AttributeError):
            result.matched = False


class MatchTLSAArgumentTests(SynchronousTestCase):
    """
    The forms L{match_tlsa}'s arguments may take.
    """

    def test_chain_of_bytearrays(self):
        chain = [bytearray(d) for d in CHAIN]
        self.assertTrue(match_tlsa([TA], chain, NAMES, now=NOW).matched)

    def test_records_and_names_from_generators(self):
        result = match_tlsa((r for r in [TA]), CHAIN, (n for n in NAMES), now=NOW)
        self.assertTrue(result.matched)

    def test_naive_time_is_utc(self):
        chain = [der(SHORT_LIVED_LEAF), der(INTERMEDIATE.certificate)]
        later = (NOW + 2 * DAY).replace(tzinfo=None)
        self.assertFalse(match_tlsa([TA], chain, NAMES, now=later).matched)
        earlier = NOW.replace(tzinfo=None)
        self.assertTrue(match_tlsa([TA], chain, NAMES, now=earlier).matched)

    def test_other_time_zone(self):
        zone = datetime.timezone(datetime.timedelta(hours=-5))
        chain = [der(SHORT_LIVED_LEAF), der(INTERMEDIATE.certificate)]
        result = match_tlsa([TA], chain, NAMES, now=(NOW + 2 * DAY).astimezone(zone))
        self.assertEqual(result.reason, ta_fails(f"the certificate expired on {iso(NOW + DAY)}"))

    def test_current_time_by_default(self):
        self.assertTrue(match_tlsa([TA], CHAIN, NAMES).matched)
        chain = [der(EXPIRED_LEAF), der(INTERMEDIATE.certificate)]
        self.assertFalse(match_tlsa([TA], chain, NAMES).matched)

    def test_pkix_validated_once(self):
        """
        Several PKIX records share one path validation, and say the same.
        """
        records = [record(OTHER.certificate, 0), record(OTHER_LEAF, 0)]
        result = match_tlsa(records, [der(UNTRUSTED_LEAF)], NAMES, STORE, NOW)
        failure = "PKIX validation failed: chain does not lead to a trusted CA " \
                  "(issuer: CN=Unrelated CA)"
        self.assertEqual(
            result.reason, "; ".join(because(r, failure) for r in records)
        )


# Usability (RFC 7671 sections 4 and 5).


def _usable_records():
    records = []
    for usage in range(4):
        for selector in range(2):
            for matching_type in range(3):
                records.append(record(LEAF, usage, selector, matching_type))
    return records


UNUSABLE = [
    (TLSARecord(4, 1, 1, bytes(32)), "unknown usage 4"),
    (TLSARecord(255, 1, 1, bytes(32)), "unknown usage 255"),
    (TLSARecord(7, 9, 9, b""), "unknown usage 7"),
    (TLSARecord(3, 2, 1, bytes(32)), "unknown selector 2"),
    (TLSARecord(3, 255, 1, bytes(32)), "unknown selector 255"),
    (TLSARecord(3, 2, 9, b""), "unknown selector 2"),
    (TLSARecord(3, 1, 3, bytes(32)), "unknown matching type 3"),
    (TLSARecord(3, 1, 255, bytes(64)), "unknown matching type 255"),
    (TLSARecord(3, 1, 1, b""), "SHA-256 data of 0 bytes instead of 32"),
    (TLSARecord(3, 1, 1, b"\x01"), "SHA-256 data of 1 byte instead of 32"),
    (TLSARecord(3, 1, 1, bytes(31)), "SHA-256 data of 31 bytes instead of 32"),
    (TLSARecord(3, 1, 1, bytes(33)), "SHA-256 data of 33 bytes instead of 32"),
    (TLSARecord(3, 1, 1, bytes(64)), "SHA-256 data of 64 bytes instead of 32"),
    (TLSARecord(2, 0, 2, bytes(32)), "SHA-512 data of 32 bytes instead of 64"),
    (TLSARecord(2, 0, 2, bytes(63)), "SHA-512 data of 63 bytes instead of 64"),
    (TLSARecord(2, 0, 2, bytes(65)), "SHA-512 data of 65 bytes instead of 64"),
    (TLSARecord(3, 0, 0, b""), "Cert Full data is not a DER certificate"),
    (TLSARecord(3, 0, 0, b"junk"), "Cert Full data is not a DER certificate"),
    (TLSARecord(3, 0, 0, der(LEAF)[:-1]), "Cert Full data is not a DER certificate"),
    (TLSARecord(3, 0, 0, der(LEAF) + b"\x00"), "Cert Full data is not a DER certificate"),
    (TLSARecord(3, 0, 0, spki(LEAF)), "Cert Full data is not a DER certificate"),
    (TLSARecord(3, 1, 0, b""), "SPKI Full data is not a DER SubjectPublicKeyInfo"),
    (TLSARecord(3, 1, 0, b"junk"), "SPKI Full data is not a DER SubjectPublicKeyInfo"),
    (TLSARecord(3, 1, 0, der(LEAF)), "SPKI Full data is not a DER SubjectPublicKeyInfo"),
    (TLSARecord(3, 1, 0, spki(LEAF)[:-1]), "SPKI Full data is not a DER SubjectPublicKeyInfo"),
    (TLSARecord(3, 1, 0, spki(LEAF) + b"\x00"),
     "SPKI Full data is not a DER SubjectPublicKeyInfo"),
    (TLSARecord(3, 1, 0, b"\x30\x00"), "SPKI Full data is not a DER SubjectPublicKeyInfo"),
    (TLSARecord(3, 1, 0, b"\x30\x06\x30\x02\x05\x00\x03\x00"),
     "SPKI Full data is not a DER SubjectPublicKeyInfo"),  # no algorithm OID
    (TLSARecord(3, 1, 0, b"\x30\x0f\x30\x0b\x06\x09\x2b\x06\x01\x04\x01\x86\x8d\x1f\x01"
                         b"\x03\x00"),
     "SPKI Full data is not a DER SubjectPublicKeyInfo"),  # an empty BIT STRING
]


class UsableTests(SynchronousTestCase):
    """
    L{usable} and L{unusable_reason}.
    """

    def test_every_defined_combination(self):
        for tlsa in _usable_records():
            self.assertEqual((unusable_reason(tlsa), usable(tlsa)), (None, True), str(tlsa))

    def test_full_data_of_other_key_types(self):
        for ca in (RSA_ROOT, ED25519_ROOT):
            for selector in range(2):
                self.assertTrue(usable(record(ca.certificate, 2, selector, 0)))

    def test_full_spki_of_an_unknown_algorithm(self):
        """
        Only the structure is checked: a key this library cannot use is
        still a SubjectPublicKeyInfo.
        """
        self.assertTrue(usable(UNKNOWN_KEY_TA))

    def test_unusable(self):
        for tlsa, reason in UNUSABLE:
            self.assertEqual((unusable_reason(tlsa), usable(tlsa)), (reason, False), str(tlsa))

    def test_unusable_records_are_ignored(self):
        """
        An unusable record beside a matching one changes nothing.
        """
        for tlsa, reason in UNUSABLE:
            result = match_tlsa([tlsa, EE], CHAIN, NAMES, now=NOW)
            self.assertEqual(
                (result.matched, result.record, result.usable_count, result.ignored),
                (True, EE, 1, ((tlsa, reason),)),
            )


# Records: presentation and wire formats.

SHA256_HEX = hashlib.sha256(b"x").hexdigest()
SHA256 = bytes.fromhex(SHA256_HEX)

PARSED = [
    (f"3 1 1 {SHA256_HEX}", TLSARecord(3, 1, 1, SHA256)),
    (f"3 1 1 {SHA256_HEX.upper()}", TLSARecord(3, 1, 1, SHA256)),
    (f"  3\t1 1\n{SHA256_HEX[:10]} {SHA256_HEX[10:40]}\n\t{SHA256_HEX[40:]}  ",
     TLSARecord(3, 1, 1, SHA256)),
    (f"DANE-EE SPKI SHA2-256 {SHA256_HEX}", TLSARecord(3, 1, 1, SHA256)),
    (f"dane-ta cert sha2-512 {SHA256_HEX * 2}", TLSARecord(2, 0, 2, SHA256 * 2)),
    ("PKIX-TA Cert Full 00", TLSARecord(0, 0, 0, b"\x00")),
    ("PKIX-EE 1 Full 00", TLSARecord(1, 1, 0, b"\x00")),
    ("PrivCert PrivSel PrivMatch ab", TLSARecord(255, 255, 255, b"\xab")),
    ("7 1 1 ab", TLSARecord(7, 1, 1, b"\xab")),  # parses; unusable
    ("255 255 255 ab", TLSARecord(255, 255, 255, b"\xab")),
    ("003 01 1 ab", TLSARecord(3, 1, 1, b"\xab")),
    ("0 0 0 00 11 22", TLSARecord(0, 0, 0, b"\x00\x11\x22")),
]

LONG = "3 1 1 " + "zz" * 40

MALFORMED = [
    ("", "TLSA record '': expected usage, selector, matching type and hex data; "
         "found 0 fields"),
    ("3", "TLSA record '3': expected usage, selector, matching type and hex data; "
          "found 1 field"),
    ("3 1", "TLSA record '3 1': expected usage, selector, matching type and hex data; "
            "found 2 fields"),
    ("3 1 1", "TLSA record '3 1 1': no certificate association data after the matching type"),
    ("3 1 1 abc", "TLSA record '3 1 1 abc': the certificate association data has an odd "
                  "number of hex digits (3)"),
    ("3 1 1 ab c", "TLSA record '3 1 1 ab c': the certificate association data has an odd "
                   "number of hex digits (3)"),
    ("3 1 1 abzz", "TLSA record '3 1 1 abzz': the certificate association data is not hex "
                   "('z' at digit 3)"),
    ("3 1 1 0x12", "TLSA record '3 1 1 0x12': the certificate association data is not hex "
                   "('x' at digit 2)"),
    ("3 1 1 ab:cd", "TLSA record '3 1 1 ab:cd': the certificate association data is not hex "
                    "(':' at digit 3)"),
    (LONG, f"TLSA record {'3 1 1 ' + 'z' * 34 + '…'!r}: the certificate association data "
           "is not hex ('z' at digit 1)"),
    ("256 1 1 ab", "TLSA record '256 1 1 ab': the usage '256' is neither a number from 0 to "
                   "255 nor one of pkix-ta, pkix-ee, dane-ta, dane-ee, privcert"),
    ("-1 1 1 ab", "TLSA record '-1 1 1 ab': the usage '-1' is neither a number from 0 to 255 "
                  "nor one of pkix-ta, pkix-ee, dane-ta, dane-ee, privcert"),
    ("DANE 1 1 ab", "TLSA record 'DANE 1 1 ab': the usage 'DANE' is neither a number from 0 "
                    "to 255 nor one of pkix-ta, pkix-ee, dane-ta, dane-ee, privcert"),
    ("3 SPKY 1 ab", "TLSA record '3 SPKY 1 ab': the selector 'SPKY' is neither a number from 0 "
                    "to 255 nor one of cert, spki, privsel"),
    ("3 1 SHA256 ab", "TLSA record '3 1 SHA256 ab': the matching type 'SHA256' is neither a "
                      "number from 0 to 255 nor one of full, sha2-256, sha2-512, privmatch"),
    ("3 1 1.0 ab", "TLSA record '3 1 1.0 ab': the matching type '1.0' is neither a number from "
                   "0 to 255 nor one of full, sha2-256, sha2-512, privmatch"),
    ("3 1 ١ ab", "TLSA record '3 1 ١ ab': the matching type '١' is neither a number from "
                 "0 to 255 nor one of full, sha2-256, sha2-512, privmatch"),
]


class ParseTests(SynchronousTestCase):
    """
    L{TLSARecord.parse} and C{str()}.
    """

    def test_parse(self):
        for text, expected in PARSED:
            self.assertEqual(TLSARecord.parse(text), expected, text)

    def test_malformed(self):
        for text, message in MALFORMED:
            with self.assertRaises(ValueError, msg=text) as caught:
                TLSARecord.parse(text)
            self.assertEqual(str(caught.exception), message)

    def test_str(self):
        self.assertEqual(str(TLSARecord(3, 1, 1, SHA256)), f"3 1 1 {SHA256_HEX}")
        self.assertEqual(str(TLSARecord(255, 0, 2, b"\xab\xcd")), "255 0 2 abcd")

    def test_str_of_empty_data(self):
        """
        Only the wire format carries empty data; C{str()} shows none.
        """
        self.assertEqual(str(TLSARecord.from_wire(b"\x03\x01\x01")), "3 1 1")

    def test_round_trip(self):
        records = _usable_records() + [tlsa for tlsa, _ in UNUSABLE if tlsa.data]
        records += [expected for _, expected in PARSED]
        for tlsa in records:
            self.assertEqual(TLSARecord.parse(str(tlsa)), tlsa, str(tlsa))

    def test_normalised(self):
        for text, expected in PARSED:
            self.assertEqual(str(TLSARecord.parse(text)), str(expected))
        self.assertEqual(
            str(TLSARecord.parse(f"DANE-EE SPKI SHA2-256 {SHA256_HEX.upper()}")),
            f"3 1 1 {SHA256_HEX}",
        )

    def test_short(self):
        self.assertEqual(TLSARecord(3, 1, 1, SHA256).short(), f"3 1 1 {SHA256_HEX[:16]}…")
        self.assertEqual(TLSARecord(3, 1, 1, bytes(8)).short(), "3 1 1 0000000000000000")
        self.assertEqual(TLSARecord(3, 1, 1, bytes(9)).short(), "3 1 1 0000000000000000…")
        self.assertEqual(TLSARecord(3, 1, 1, b"").short(), "3 1 1")

    def test_usage_name(self):
        self.assertEqual(
            [TLSARecord(usage, 1, 1, b"").usage_name for usage in (0, 1, 2, 3, 7)],
            ["PKIX-TA", "PKIX-EE", "DANE-TA", "DANE-EE", "usage 7"],
        )


class WireTests(SynchronousTestCase):
    """
    L{TLSARecord.from_wire} and L{TLSARecord.to_wire}.
    """

    def test_from_wire(self):
        self.assertEqual(
            TLSARecord.from_wire(b"\x03\x01\x01" + SHA256), TLSARecord(3, 1, 1, SHA256)
        )
        self.assertEqual(TLSARecord.from_wire(b"\xff\x07\x09"), TLSARecord(255, 7, 9, b""))

    def test_bytes_like(self):
        for rdata in (bytearray(b"\x02\x00\x02ab"), memoryview(b"\x02\x00\x02ab")):
            tlsa = TLSARecord.from_wire(rdata)
            self.assertEqual(tlsa, TLSARecord(2, 0, 2, b"ab"))
            self.assertIs(type(tlsa.data), bytes)

    def test_too_short(self):
        for rdata, message in [
            (b"", "TLSA RDATA of 0 bytes is too short: it needs usage, selector and "
                  "matching type"),
            (b"\x03", "TLSA RDATA of 1 byte is too short: it needs usage, selector and "
                      "matching type"),
            (b"\x03\x01", "TLSA RDATA of 2 bytes is too short: it needs usage, selector and "
                          "matching type"),
        ]:
            with self.assertRaises(ValueError) as caught:
                TLSARecord.from_wire(rdata)
            self.assertEqual(str(caught.exception), message)

    def test_round_trip(self):
        for tlsa in _usable_records() + [tlsa for tlsa, _ in UNUSABLE]:
            self.assertEqual(tlsa.to_wire()[:3], bytes([tlsa.usage, tlsa.selector,
                                                        tlsa.matching_type]))
            self.assertEqual(TLSARecord.from_wire(tlsa.to_wire()), tlsa)


class RecordValueTests(SynchronousTestCase):
    """
    L{TLSARecord} is a checked, frozen, hashable value.
    """

    def test_field_ranges(self):
        for arguments, message in [
            ((256, 1, 1, b""), "TLSA usage must be an integer from 0 to 255, not 256"),
            ((-1, 1, 1, b""), "TLSA usage must be an integer from 0 to 255, not -1"),
            ((3, 256, 1, b""), "TLSA selector must be an integer from 0 to 255, not 256"),
            ((3, 1, 256, b""), "TLSA matching type must be an integer from 0 to 255, not 256"),
            (("3", 1, 1, b""), "TLSA usage must be an integer from 0 to 255, not '3'"),
            ((3, True, 1, b""), "TLSA selector must be an integer from 0 to 255, not True"),
            ((3, 1, 1.0, b""), "TLSA matching type must be an integer from 0 to 255, not 1.0"),
        ]:
            with self.assertRaises(ValueError) as caught:
                TLSARecord(*arguments)
            self.assertEqual(str(caught.exception), message)

    def test_data_as_text(self):
        with self.assertRaises(TypeError) as caught:
            TLSARecord(3, 1, 1, SHA256_HEX)
        self.assertEqual(
            str(caught.exception), "TLSA data must be bytes; use TLSARecord.parse for hex text"
        )

    def test_data_as_bytes_like(self):
        tlsa = TLSARecord(3, 1, 1, bytearray(SHA256))
        self.assertEqual(tlsa, TLSARecord(3, 1, 1, SHA256))
        self.assertIs(type(tlsa.data), bytes)

    def test_frozen_and_hashable(self):
        tlsa = TLSARecord(3, 1, 1, SHA256)
        with self.assertRaises(AttributeError):
            tlsa.usage = 2
        self.assertEqual(len({tlsa, TLSARecord(3, 1, 1, SHA256)}), 1)


# Publishing records.


class TLSAForTests(SynchronousTestCase):
    """
    L{tlsa_for}: the record to publish for a certificate.
    """

    def test_every_combination(self):
        for usage in range(4):
            for selector in range(2):
                for matching_type in range(3):
                    self.assertEqual(
                        tlsa_for(der(LEAF), usage, selector, matching_type),
                        TLSARecord(usage, selector, matching_type,
                                   association(LEAF, selector, matching_type)),
                    )

    def test_known_values(self):
        tlsa = tlsa_for(der(LEAF), 3, 1, 1)
        self.assertEqual(tlsa.data, hashlib.sha256(spki(LEAF)).digest())
        tlsa = tlsa_for(der(LEAF), 3, 0, 2)
        self.assertEqual(tlsa.data, hashlib.sha512(der(LEAF)).digest())
        self.assertEqual(tlsa_for(der(LEAF), 2, 0, 0).data, der(LEAF))

    def test_defaults_are_3_1_1(self):
        self.assertEqual(tlsa_for(der(LEAF)), tlsa_for(der(LEAF), 3, 1, 1))

    def test_other_key_types(self):
        for ca in (RSA_ROOT, ED25519_ROOT):
            self.assertEqual(tlsa_for(der(ca.certificate), 2, 1, 0).data, spki(ca.certificate))

    def test_certificate_forms(self):
        expected = tlsa_for(der(LEAF))
        self.assertEqual(tlsa_for(LEAF), expected)
        self.assertEqual(tlsa_for(bytearray(der(LEAF))), expected)

    def test_published_records_are_usable(self):
        for usage in range(4):
            for selector in range(2):
                for matching_type in range(3):
                    self.assertTrue(usable(tlsa_for(der(LEAF), usage, selector, matching_type)))

    def test_undefined_parameters(self):
        for arguments, message in [
            ((4, 1, 1), "TLSA usage 4 is not one of 0 (PKIX-TA), 1 (PKIX-EE), 2 (DANE-TA), "
                        "3 (DANE-EE)"),
            ((3, 2, 1), "TLSA selector 2 is not one of 0 (Cert), 1 (SPKI)"),
            ((3, 1, 3), "TLSA matching type 3 is not one of 0 (Full), 1 (SHA2-256), "
                        "2 (SHA2-512)"),
            (("3", 1, 1), "TLSA usage '3' is not one of 0 (PKIX-TA), 1 (PKIX-EE), "
                          "2 (DANE-TA), 3 (DANE-EE)"),
        ]:
            with self.assertRaises(ValueError) as caught:
                tlsa_for(der(LEAF), *arguments)
            self.assertEqual(str(caught.exception), message)

    def test_not_a_certificate(self):
        self.assertRaises(ValueError, tlsa_for, b"not a certificate")


class RecordMatchesTests(SynchronousTestCase):
    """
    L{record_matches}: the comparison alone, whatever the usage.
    """

    def test_matches(self):
        for tlsa in _usable_records():
            self.assertTrue(record_matches(tlsa, der(LEAF)), str(tlsa))
            self.assertTrue(record_matches(tlsa, LEAF), str(tlsa))

    def test_does_not_match(self):
        for tlsa in _usable_records():
            self.assertFalse(record_matches(tlsa, der(OTHER_LEAF)), str(tlsa))

    def test_same_key(self):
        self.assertTrue(record_matches(record(LEAF, 3, 1, 2), der(RENEWED_LEAF)))
        self.assertFalse(record_matches(record(LEAF, 3, 0, 2), der(RENEWED_LEAF)))
