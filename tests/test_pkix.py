"""
Tests for L{gateway.verifiers.pkix}: path validation, identity matching
(RFC 6120 section 13.7.1.2, RFC 9525), the verifier and its factory, and
trust stores.  Every certificate is made here.
"""

import datetime
import ipaddress
import os
from dataclasses import dataclass, field
from types import SimpleNamespace

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import Store
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from gateway.tls.pkix import (
    IdentityError,
    TrustStoreError,
    eku_problem,
    key_usage_problem,
    load_trust_store,
    reference_domain,
)
from gateway.tls.profile import TLSFacts
from gateway.verifiers import pkix
from gateway.verifiers.interfaces import (
    IDomainVerifier,
    IDomainVerifierFactory,
    Outcome,
    VerificationRequest,
    VerifierEnvironment,
)
from gateway.verifiers.pkix import (
    PKIXVerifier,
    PKIXVerifierFactory,
    check_pkix,
)
from tests.pki import (
    ID_ON_DNSSRV,
    ID_ON_XMPPADDR,
    CertificateAuthority,
    key_usage,
    srv_name,
    xmpp_addr,
)
from tests.support import add_case_tests

UTC = datetime.timezone.utc
NOW = datetime.datetime.now(UTC).replace(microsecond=0)
DAY = datetime.timedelta(days=1)

SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
EMAIL = ExtendedKeyUsageOID.EMAIL_PROTECTION
CODE_SIGNING = ExtendedKeyUsageOID.CODE_SIGNING
ANY_EKU = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE

ROOT = CertificateAuthority("PKIX Test Root")
OTHER = CertificateAuthority("Untrusted CA")
INTERMEDIATE = ROOT.intermediate("PKIX Test Intermediate")
EXPIRED_INTERMEDIATE = ROOT.intermediate(
    "Expired Intermediate", not_before=NOW - 30 * DAY, not_after=NOW - 2 * DAY
)
SERVER_AUTH_INTERMEDIATE = ROOT.intermediate("Server Intermediate", eku=[SERVER_AUTH])
EMAIL_INTERMEDIATE = ROOT.intermediate("Email Intermediate", eku=[EMAIL])

EIGHT_INTERMEDIATES = ROOT.intermediates(8)
NINE_INTERMEDIATES = ROOT.intermediates(9)
EXPIRED_ROOT = CertificateAuthority(
    "Expired Root", not_before=NOW - 30 * DAY, not_after=NOW - 3 * DAY
)
IMPOSTOR = CertificateAuthority("PKIX Test Root")  # same name, other key
STORE = Store([ROOT.certificate])

ROOT_SUBJECT = "CN=PKIX Test Root"


def der(certificate):
    return certificate.public_bytes(Encoding.DER)


def leaf(dns_names, ca=ROOT, **kwargs):
    """
    The DER chain (just the leaf) of a certificate C{ca} issues.
    """
    return (der(ca.issue(dns_names, **kwargs)[0]),)


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


SELF_SIGNED = der(ROOT.issue(["example.org"], self_signed=True)[0])


@dataclass(frozen=True)
class Case:
    """
    One check: C{chain} presented for C{domain}.

    @ivar reason: the exact reason expected, or with C{reason_contains},
        a substring of it.
    @ivar evidence: the exact evidence of a verified verdict.
    """

    name: str
    chain: tuple
    domain: str
    outcome: Outcome
    reason: str
    evidence: dict = field(default_factory=dict)
    allow_cn_id: bool = False
    store: object = STORE
    now: datetime.datetime = NOW
    reason_contains: bool = False


def verified(name, chain, domain, identity, matched, chain_subjects, **kwargs):
    reason = f"{identity} {matched} names {domain}, chain to trusted CA {chain_subjects[-1]}"
    evidence = {
        "identity": identity,
        "matched": matched,
        "trust_anchor": chain_subjects[-1],
        "chain": list(chain_subjects),
    }
    return Case(name, chain, domain, Outcome.VERIFIED, reason, evidence, **kwargs)


def failed(name, chain, domain, reason, **kwargs):
    return Case(name, chain, domain, Outcome.FAILED, reason, **kwargs)


CASES = [
    # Nothing to check, nothing parseable.
    Case("empty chain", (), "example.org", Outcome.NOT_APPLICABLE,
         "the peer presented no certificate"),
    failed("garbage DER", (b"not a certificate",), "example.org",
           "could not parse the peer's certificate: ", reason_contains=True),
    failed("garbage intermediate", leaf(["example.org"]) + (b"\x30\x03\x02\x01\x01",),
           "example.org", "could not parse certificate 2 of the peer's chain: ",
           reason_contains=True),

    # SRV-ID (RFC 6120 section 13.7.1.2.1, RFC 4985).
    verified("SRV-ID", leaf([], common_name="srv", sans=[srv_name("_xmpp-server.example.org")]),
             "example.org", "SRV-ID", "_xmpp-server.example.org", ["CN=srv", ROOT_SUBJECT]),
    verified("SRV-ID, any case",
             leaf([], common_name="srv", sans=[srv_name("_XMPP-Server.Example.ORG")]),
             "example.org", "SRV-ID", "_XMPP-Server.Example.ORG", ["CN=srv", ROOT_SUBJECT]),
    failed("SRV-ID of another service",
           leaf([], common_name="srv", sans=[srv_name("_xmpp-client.example.org")]),
           "example.org", "certificate is for _xmpp-client.example.org; not example.org"),
    failed("SRV-ID of another domain",
           leaf([], common_name="srv", sans=[srv_name("_xmpp-server.example.net")]),
           "example.org", "certificate is for _xmpp-server.example.net; not example.org"),
    verified("SRV-ID preferred to DNS-ID",
             leaf(["example.org"], sans=[srv_name("_xmpp-server.example.org")]),
             "example.org", "SRV-ID", "_xmpp-server.example.org",
             ["CN=example.org", ROOT_SUBJECT]),
    verified("malformed SRV otherName skipped",
             leaf([], common_name="srv", sans=[
                 x509.OtherName(ID_ON_DNSSRV, b"\x0c\x18_xmpp-server.example.org"),
                 srv_name("_xmpp-server.*.example.org"),
                 srv_name("_xmpp-server.example.org"),
             ]),
             "example.org", "SRV-ID", "_xmpp-server.example.org", ["CN=srv", ROOT_SUBJECT]),

    # DNS-ID and wildcards (RFC 9525 section 6.3).
    verified("DNS-ID", leaf(["example.org"]), "example.org", "DNS-ID", "example.org",
             ["CN=example.org", ROOT_SUBJECT]),
    verified("DNS-ID, claimed in upper case", leaf(["example.org"]), "Example.ORG", "DNS-ID",
             "example.org", ["CN=example.org", ROOT_SUBJECT]),
    verified("DNS-ID, trailing dot", leaf(["example.org"]), "example.org.", "DNS-ID",
             "example.org", ["CN=example.org", ROOT_SUBJECT]),
    verified("DNS-ID among others", leaf(["a.example", "example.org", "b.example"]),
             "example.org", "DNS-ID", "example.org", ["CN=a.example", ROOT_SUBJECT]),
    failed("wrong name", leaf(["a.example", "b.example"]), "c.example",
           "certificate is for a.example, b.example; not c.example"),
    failed("wrong name, all kinds listed",
           leaf(["a.example"], sans=[srv_name("_xmpp-server.b.example"), xmpp_addr("d.example")]),
           "c.example",
           "certificate is for a.example, _xmpp-server.b.example, d.example; not c.example"),
    verified("wildcard, one label", leaf(["*.example.org"]), "a.example.org", "DNS-ID",
             "*.example.org", ["CN=*.example.org", ROOT_SUBJECT]),
    failed("wildcard, not the parent", leaf(["*.example.org"]), "example.org",
           "certificate is for *.example.org; not example.org"),
    failed("wildcard, not two labels", leaf(["*.example.org"]), "a.b.example.org",
           "certificate is for *.example.org; not a.b.example.org"),
    failed("partial wildcard refused", leaf(["f*o.example.org"]), "foo.example.org",
           "certificate is for f*o.example.org; not foo.example.org"),
    failed("wildcard suffix refused", leaf(["foo*.example.org"]), "foobar.example.org",
           "certificate is for foo*.example.org; not foobar.example.org"),
    failed("wildcard not left-most refused", leaf(["a.*.example.org"]), "a.b.example.org",
           "certificate is for a.*.example.org; not a.b.example.org"),
    failed("wildcard on a public suffix refused", leaf(["*.com"]), "example.com",
           "certificate is for *.com; not example.com"),
    verified("bad wildcard does not spoil other names", leaf(["*.com", "example.com"]),
             "example.com", "DNS-ID", "example.com", ["CN=*.com", ROOT_SUBJECT]),
    failed("wildcard does not match an A-label", leaf(["*.example.org"]),
           "bücher.example.org",
           "certificate is for *.example.org; not bücher.example.org "
           "(xn--bcher-kva.example.org)"),

    # XmppAddr (RFC 6120 section 13.7.1.4).
    verified("XmppAddr", leaf([], common_name="x", sans=[xmpp_addr("example.org")]),
             "example.org", "XmppAddr", "example.org", ["CN=x", ROOT_SUBJECT]),
    verified("XmppAddr, any case", leaf([], common_name="x", sans=[xmpp_addr("Example.Org")]),
             "example.org", "XmppAddr", "Example.Org", ["CN=x", ROOT_SUBJECT]),
    failed("XmppAddr of an account", leaf([], common_name="x", sans=[xmpp_addr("user@example.org")]),
           "example.org", "certificate is for user@example.org; not example.org"),
    failed("XmppAddr with a resource",
           leaf([], common_name="x", sans=[xmpp_addr("example.org/resource")]),
           "example.org", "certificate is for example.org/resource; not example.org"),
    failed("XmppAddr is exact, no wildcard", leaf([], common_name="x", sans=[xmpp_addr("*.example.org")]),
           "a.example.org", "certificate is for *.example.org; not a.example.org"),
    verified("malformed XmppAddr otherNames skipped",
             leaf([], common_name="x", sans=[
                 x509.OtherName(ID_ON_XMPPADDR, b"\x16\x0bexample.org"),  # IA5String
                 x509.OtherName(ID_ON_XMPPADDR, b"\x0c\x02\xff\xfe"),  # not UTF-8
                 x509.OtherName(ID_ON_XMPPADDR, b"\x30\x0d\x0c\x0bexample.org"),  # SEQUENCE
                 xmpp_addr("example.org"),
             ]),
             "example.org", "XmppAddr", "example.org", ["CN=x", ROOT_SUBJECT]),
    failed("only malformed XmppAddr otherNames",
           leaf([], common_name="x", sans=[x509.OtherName(ID_ON_XMPPADDR, b"\x16\x0bexample.org")]),
           "example.org",
           "certificate has no DNS, SRV or XmppAddr subjectAltName, only the subject CN x, "
           "and CN-ID is not allowed (allow_cn_id); not example.org"),

    # Internationalised domains: compared as A-labels.
    verified("IDN claimed as U-label, DNS-ID A-label", leaf(["xn--bcher-kva.example"]),
             "bücher.example", "DNS-ID", "xn--bcher-kva.example",
             ["CN=xn--bcher-kva.example", ROOT_SUBJECT]),
    verified("IDN claimed in upper case", leaf(["xn--bcher-kva.example"]),
             "BÜCHER.example", "DNS-ID", "xn--bcher-kva.example",
             ["CN=xn--bcher-kva.example", ROOT_SUBJECT]),
    verified("IDN claimed as A-label", leaf(["xn--bcher-kva.example"]),
             "xn--bcher-kva.example", "DNS-ID", "xn--bcher-kva.example",
             ["CN=xn--bcher-kva.example", ROOT_SUBJECT]),
    verified("IDN SRV-ID", leaf([], common_name="x", sans=[srv_name("_xmpp-server.xn--bcher-kva.example")]),
             "bücher.example", "SRV-ID", "_xmpp-server.xn--bcher-kva.example",
             ["CN=x", ROOT_SUBJECT]),
    verified("IDN XmppAddr as U-label", leaf([], common_name="x", sans=[xmpp_addr("bücher.example")]),
             "bücher.example", "XmppAddr", "bücher.example", ["CN=x", ROOT_SUBJECT]),
    verified("IDN XmppAddr as U-label, claimed as A-label",
             leaf([], common_name="x", sans=[xmpp_addr("bücher.example")]),
             "xn--bcher-kva.example", "XmppAddr", "bücher.example", ["CN=x", ROOT_SUBJECT]),
    failed("IDN mismatch names both forms", leaf(["a.example"]), "bücher.example",
           "certificate is for a.example; not bücher.example (xn--bcher-kva.example)"),

    # CN-ID: a last resort, by policy only (RFC 9525 section 6.3).
    failed("CN only, CN-ID not allowed", leaf([], common_name="example.org"), "example.org",
           "certificate has no DNS, SRV or XmppAddr subjectAltName, only the subject CN "
           "example.org, and CN-ID is not allowed (allow_cn_id); not example.org"),
    verified("CN only, CN-ID allowed", leaf([], common_name="example.org"), "example.org",
             "CN-ID", "example.org", ["CN=example.org", ROOT_SUBJECT], allow_cn_id=True),
    verified("CN-ID in U-label", leaf([], common_name="bücher.example"), "xn--bcher-kva.example",
             "CN-ID", "bücher.example", ["CN=bücher.example", ROOT_SUBJECT], allow_cn_id=True),
    failed("CN only, CN-ID allowed, other name", leaf([], common_name="other.example"),
           "example.org", "certificate is for other.example (CN-ID); not example.org",
           allow_cn_id=True),
    failed("CN-ID is exact, no wildcard", leaf([], common_name="*.example.org"),
           "a.example.org", "certificate is for *.example.org (CN-ID); not a.example.org",
           allow_cn_id=True),
    failed("CN ignored when there are subjectAltNames",
           leaf(["a.example"], common_name="example.org"), "example.org",
           "certificate is for a.example; not example.org (its subject CN names it, but "
           "CN-IDs are ignored when there are subjectAltNames)", allow_cn_id=True),
    failed("CN ignored when there is a URI",
           leaf([], common_name="example.org",
                sans=[x509.UniformResourceIdentifier("xmpp:example.org")]),
           "example.org",
           "certificate is for xmpp:example.org; not example.org (its subject CN names it, "
           "but CN-IDs are ignored when there are subjectAltNames)", allow_cn_id=True),
    verified("CN-ID when the only SAN is an IP address",
             leaf([], common_name="example.org",
                  sans=[x509.IPAddress(ipaddress.ip_address("192.0.2.1"))]),
             "example.org", "CN-ID", "example.org", ["CN=example.org", ROOT_SUBJECT],
             allow_cn_id=True),

    # Claimed domains that are not domain names.
    failed("claimed domain with a space", leaf(["example.org"]), "exa mple.org",
           "'exa mple.org' is not a valid domain name", reason_contains=True),
    failed("claimed wildcard", leaf(["*.example.org"]), "*.example.org",
           "'*.example.org' is not a valid domain name", reason_contains=True),
    failed("claimed IP address", leaf(["example.org"]), "192.0.2.1",
           "'192.0.2.1' is an IP address; PKIX checks domain names only"),

    # Extended key usage: serverAuth or clientAuth or none.
    verified("EKU serverAuth only", leaf(["example.org"], eku=[SERVER_AUTH]), "example.org",
             "DNS-ID", "example.org", ["CN=example.org", ROOT_SUBJECT]),
    verified("EKU clientAuth only", leaf(["example.org"], eku=[CLIENT_AUTH]), "example.org",
             "DNS-ID", "example.org", ["CN=example.org", ROOT_SUBJECT]),
    verified("EKU serverAuth and clientAuth", leaf(["example.org"], eku=[SERVER_AUTH, CLIENT_AUTH]),
             "example.org", "DNS-ID", "example.org", ["CN=example.org", ROOT_SUBJECT]),
    verified("no EKU", leaf(["example.org"], eku=()), "example.org", "DNS-ID", "example.org",
             ["CN=example.org", ROOT_SUBJECT]),
    verified("EKU anyExtendedKeyUsage", leaf(["example.org"], eku=[ANY_EKU]), "example.org",
             "DNS-ID", "example.org", ["CN=example.org", ROOT_SUBJECT]),
    verified("EKU serverAuth among others", leaf(["example.org"], eku=[EMAIL, SERVER_AUTH]),
             "example.org", "DNS-ID", "example.org", ["CN=example.org", ROOT_SUBJECT]),
    failed("EKU emailProtection only", leaf(["example.org"], eku=[EMAIL]), "example.org",
           "wrong extended key usage (emailProtection): needs serverAuth or clientAuth"),
    failed("EKU emailProtection and codeSigning", leaf(["example.org"], eku=[EMAIL, CODE_SIGNING]),
           "example.org",
           "wrong extended key usage (emailProtection, codeSigning): "
           "needs serverAuth or clientAuth"),

    # Key usage of the leaf.
    verified("KU digitalSignature", leaf(["example.org"], extensions=[(key_usage("digital_signature"), True)]),
             "example.org", "DNS-ID", "example.org", ["CN=example.org", ROOT_SUBJECT]),
    verified("KU keyAgreement", leaf(["example.org"], extensions=[(key_usage("key_agreement"), True)]),
             "example.org", "DNS-ID", "example.org", ["CN=example.org", ROOT_SUBJECT]),
    verified("KU digitalSignature and keyEncipherment",
             leaf(["example.org"],
                  extensions=[(key_usage("digital_signature", "key_encipherment"), True)]),
             "example.org", "DNS-ID", "example.org", ["CN=example.org", ROOT_SUBJECT]),
    failed("KU keyCertSign only", leaf(["example.org"], extensions=[(key_usage("key_cert_sign"), True)]),
           "example.org",
           "wrong key usage (keyCertSign): a server certificate must not assert keyCertSign"),
    failed("KU digitalSignature and keyCertSign",
           leaf(["example.org"],
                extensions=[(key_usage("digital_signature", "key_cert_sign"), True)]),
           "example.org",
           "wrong key usage (digitalSignature, keyCertSign): "
           "a server certificate must not assert keyCertSign"),
    failed("KU nonRepudiation only",
           leaf(["example.org"], extensions=[(key_usage("content_commitment"), True)]),
           "example.org", "wrong key usage (nonRepudiation): needs digitalSignature or keyAgreement"),
    failed("KU keyEncipherment only",
           leaf(["example.org"], extensions=[(key_usage("key_encipherment"), True)]),
           "example.org", "wrong key usage (keyEncipherment): needs digitalSignature or keyAgreement"),

    # Validity.
    failed("expired", leaf(["example.org"], not_before=NOW - 10 * DAY, not_after=NOW - DAY),
           "example.org", f"certificate expired on {iso(NOW - DAY)}"),
    failed("not yet valid", leaf(["example.org"], not_before=NOW + DAY, not_after=NOW + 10 * DAY),
           "example.org", f"certificate not valid before {iso(NOW + DAY)}"),
    failed("expired and the wrong name: the path is judged first",
           leaf(["a.example"], not_before=NOW - 10 * DAY, not_after=NOW - DAY),
           "example.org", f"certificate expired on {iso(NOW - DAY)}"),
    failed("trust anchor expired", leaf(["example.org"], ca=EXPIRED_ROOT, not_before=NOW - 10 * DAY),
           "example.org", f"trusted CA certificate CN=Expired Root is not valid at {iso(NOW)}",
           store=Store([EXPIRED_ROOT.certificate])),
    verified("an expired certificate off the path is ignored",
             leaf(["example.org"], ca=INTERMEDIATE)
             + (der(EXPIRED_INTERMEDIATE.certificate), der(INTERMEDIATE.certificate)),
             "example.org", "DNS-ID", "example.org",
             ["CN=example.org", "CN=PKIX Test Intermediate", ROOT_SUBJECT]),
    failed("checked at the time given",
           leaf(["example.org"], not_before=NOW - DAY, not_after=NOW + DAY), "example.org",
           f"certificate expired on {iso(NOW + DAY)}", now=NOW + 2 * DAY),

    # Trust.
    failed("self-signed", (SELF_SIGNED,), "example.org",
           "self-signed certificate, not from a trusted CA"),
    failed("self-signed CA certificate", (der(OTHER.certificate),), "example.org",
           "self-signed certificate, not from a trusted CA"),
    verified("self-signed, but in the trust store", (SELF_SIGNED,), "example.org", "DNS-ID",
             "example.org", ["CN=example.org"],
             store=Store([ROOT.certificate, x509.load_der_x509_certificate(SELF_SIGNED)])),
    failed("untrusted CA", leaf(["example.org"], ca=OTHER), "example.org",
           "chain does not lead to a trusted CA (issuer: CN=Untrusted CA)"),
    failed("untrusted CA, its certificate presented too",
           leaf(["example.org"], ca=OTHER) + (der(OTHER.certificate),), "example.org",
           "chain does not lead to a trusted CA (issuer: CN=Untrusted CA)"),
    failed("same CA name, other key", leaf(["example.org"], ca=IMPOSTOR), "example.org",
           "a signature on the chain does not verify (issuer: CN=PKIX Test Root)"),
    failed("a CA certificate as the leaf", (der(INTERMEDIATE.certificate),), "example.org",
           "the peer's certificate is a CA certificate (basicConstraints cA), not a server's"),

    # Intermediates.
    verified("intermediate presented", leaf(["example.org"], ca=INTERMEDIATE) + (der(INTERMEDIATE.certificate),),
             "example.org", "DNS-ID", "example.org",
             ["CN=example.org", "CN=PKIX Test Intermediate", ROOT_SUBJECT]),
    verified("intermediate and root presented",
             leaf(["example.org"], ca=INTERMEDIATE)
             + (der(INTERMEDIATE.certificate), der(ROOT.certificate)),
             "example.org", "DNS-ID", "example.org",
             ["CN=example.org", "CN=PKIX Test Intermediate", ROOT_SUBJECT]),
    verified("intermediate after an unrelated certificate",
             leaf(["example.org"], ca=INTERMEDIATE)
             + (der(OTHER.certificate), der(INTERMEDIATE.certificate)),
             "example.org", "DNS-ID", "example.org",
             ["CN=example.org", "CN=PKIX Test Intermediate", ROOT_SUBJECT]),
    verified("eight intermediates",
             leaf(["example.org"], ca=EIGHT_INTERMEDIATES[-1])
             + tuple(der(ca.certificate) for ca in reversed(EIGHT_INTERMEDIATES)),
             "example.org", "DNS-ID", "example.org",
             ["CN=example.org"] + [f"CN=Intermediate {n}" for n in range(8, 0, -1)]
             + [ROOT_SUBJECT]),
    failed("nine intermediates",
           leaf(["example.org"], ca=NINE_INTERMEDIATES[-1])
           + tuple(der(ca.certificate) for ca in reversed(NINE_INTERMEDIATES)),
           "example.org", "chain is too long: more than 8 intermediate certificates"),
    failed("intermediate missing", leaf(["example.org"], ca=INTERMEDIATE), "example.org",
           "chain does not lead to a trusted CA (issuer: CN=PKIX Test Intermediate)"),
    failed("intermediate expired",
           leaf(["example.org"], ca=EXPIRED_INTERMEDIATE, not_before=NOW - 10 * DAY)
           + (der(EXPIRED_INTERMEDIATE.certificate),),
           "example.org",
           f"intermediate certificate CN=Expired Intermediate expired on {iso(NOW - 2 * DAY)}"),
    verified("intermediate with EKU serverAuth only",
             leaf(["example.org"], ca=SERVER_AUTH_INTERMEDIATE, eku=[CLIENT_AUTH])
             + (der(SERVER_AUTH_INTERMEDIATE.certificate),),
             "example.org", "DNS-ID", "example.org",
             ["CN=example.org", "CN=Server Intermediate", ROOT_SUBJECT]),
    failed("intermediate with EKU emailProtection only",
           leaf(["example.org"], ca=EMAIL_INTERMEDIATE) + (der(EMAIL_INTERMEDIATE.certificate),),
           "example.org",
           "wrong extended key usage on CA CN=Email Intermediate (emailProtection): "
           "needs serverAuth or clientAuth"),
]


class CheckPKIXTests(SynchronousTestCase):
    """
    L{check_pkix}, one test per L{CASES} entry.
    """

    def check(self, case):
        verdict = check_pkix(case.chain, case.domain, case.store, case.now, case.allow_cn_id)
        self.assertEqual(verdict.verifier, "pkix")
        self.assertEqual((verdict.outcome, verdict.decisive), (case.outcome, False), verdict.reason)
        if case.reason_contains:
            self.assertIn(case.reason, verdict.reason)
        else:
            self.assertEqual(verdict.reason, case.reason)
        evidence = dict(verdict.evidence)
        valid_until = evidence.pop("valid_until", None)
        self.assertEqual(evidence, case.evidence)
        if case.outcome is Outcome.VERIFIED:
            # Until the first certificate of the validated path expires.
            leaf_until = x509.load_der_x509_certificate(case.chain[0]).not_valid_after_utc
            self.assertLessEqual(valid_until, leaf_until.strftime("%Y-%m-%dT%H:%M:%SZ"))
            self.assertRegex(valid_until, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        else:
            self.assertIsNone(valid_until)


add_case_tests(CheckPKIXTests, CASES)


class CheckPKIXTimeTests(SynchronousTestCase):
    """
    The validation time may be naive (UTC) or in any time zone.
    """

    def test_naive_time_is_utc(self):
        verdict = check_pkix(leaf(["example.org"]), "example.org", STORE, NOW.replace(tzinfo=None))
        self.assertEqual(verdict.outcome, Outcome.VERIFIED)

    def test_other_time_zone(self):
        chain = leaf(["example.org"], not_before=NOW - 10 * DAY, not_after=NOW - DAY)
        zone = datetime.timezone(datetime.timedelta(hours=5))
        verdict = check_pkix(chain, "example.org", STORE, NOW.astimezone(zone))
        self.assertEqual(verdict.reason, f"certificate expired on {iso(NOW - DAY)}")

    def test_chain_may_be_a_list_of_bytearrays(self):
        chain = [bytearray(d) for d in leaf(["example.org"])]
        verdict = check_pkix(chain, "example.org", STORE, NOW)
        self.assertEqual(verdict.outcome, Outcome.VERIFIED)


class ProblemTests(SynchronousTestCase):
    """
    L{eku_problem} and L{key_usage_problem}.
    """

    def test_eku(self):
        for usages, expected in [
            (None, None),
            ([SERVER_AUTH], None),
            ([CLIENT_AUTH], None),
            ([ANY_EKU], None),
            ([EMAIL, CLIENT_AUTH], None),
            ([EMAIL], "(emailProtection): needs serverAuth or clientAuth"),
            ([x509.ObjectIdentifier("1.2.3.4")], "(1.2.3.4): needs serverAuth or clientAuth"),
        ]:
            value = None if usages is None else x509.ExtendedKeyUsage(usages)
            self.assertEqual(eku_problem(value), expected, usages)

    def test_key_usage(self):
        for bits, expected in [
            (None, None),
            (("digital_signature",), None),
            (("key_agreement",), None),
            (("digital_signature", "key_encipherment"), None),
            ((), "(none): needs digitalSignature or keyAgreement"),
            (("crl_sign",), "(cRLSign): needs digitalSignature or keyAgreement"),
            (("data_encipherment",), "(dataEncipherment): needs digitalSignature or keyAgreement"),
            (("key_cert_sign", "crl_sign"),
             "(keyCertSign, cRLSign): a server certificate must not assert keyCertSign"),
        ]:
            value = None if bits is None else key_usage(*bits)
            self.assertEqual(key_usage_problem(value), expected, bits)


class ReferenceDomainTests(SynchronousTestCase):
    """
    L{reference_domain}: the claimed domain as A-labels, lower case.
    """

    def test_valid(self):
        for domain, expected in [
            ("example.org", "example.org"),
            ("Example.ORG", "example.org"),
            ("example.org.", "example.org"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("BÜCHER.example", "xn--bcher-kva.example"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("localhost", "localhost"),
        ]:
            self.assertEqual(reference_domain(domain), expected, domain)

    def test_invalid(self):
        for domain, message in [
            ("", "'' is not a valid domain name"),
            ("a..b", "'a..b' is not a valid domain name"),
            ("-a.example", "'-a.example' is not a valid domain name"),
            ("a_b.example", "'a_b.example' is not a valid domain name"),
            ("xn--zz.example", "'xn--zz.example' is not a valid domain name"),
            ("192.0.2.1", "'192.0.2.1' is an IP address"),
            ("[2001:db8::1]", "'[2001:db8::1]' is an IP address"),
        ]:
            with self.assertRaises(IdentityError, msg=domain) as caught:
                reference_domain(domain)
            self.assertIn(message, str(caught.exception))


def request(chain, domain="example.org", policy=None):
    tls = None if chain is None else TLSFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", tuple(chain))
    return VerificationRequest("inbound", "local.example", domain, "id1", tls, policy=policy)


def result(d):
    verdicts = []
    d.addCallback(verdicts.append)
    assert len(verdicts) == 1, "the Deferred has not fired"
    return verdicts[0]


def clock_at(moment):
    clock = Clock()
    clock.advance(moment.timestamp())
    return clock


class PKIXVerifierTests(SynchronousTestCase):
    """
    L{PKIXVerifier}: L{check_pkix} on a stream's chain, at the clock's time.
    """

    cn_only = leaf([], common_name="example.org")

    def test_interface(self):
        verifier = PKIXVerifier(STORE, Clock())
        self.assertTrue(verifyObject(IDomainVerifier, verifier))
        self.assertEqual(verifier.name, "pkix")

    def test_verified(self):
        verdict = result(PKIXVerifier(STORE, clock_at(NOW)).verify(request(leaf(["example.org"]))))
        self.assertEqual(verdict.outcome, Outcome.VERIFIED)
        self.assertEqual(verdict.evidence["identity"], "DNS-ID")

    def test_no_tls(self):
        verdict = result(PKIXVerifier(STORE, clock_at(NOW)).verify(request(None)))
        self.assertEqual(
            (verdict.outcome, verdict.reason),
            (Outcome.NOT_APPLICABLE, "the peer presented no certificate"),
        )

    def test_uses_the_clock(self):
        """
        The reactor's clock, not the system's, decides validity.
        """
        clock = clock_at(NOW)
        verifier = PKIXVerifier(STORE, clock)
        chain = leaf(["example.org"])
        self.assertEqual(result(verifier.verify(request(chain))).outcome, Outcome.VERIFIED)
        clock.advance(8 * 86400)
        self.assertIn("certificate expired on", result(verifier.verify(request(chain))).reason)

    def test_not_a_clock(self):
        """
        The clock is the gateway's one IReactorTime; nothing else will do.
        """
        for not_a_clock in (42, None, lambda: NOW):
            self.assertRaises(TypeError, PKIXVerifier, STORE, not_a_clock)

    def test_allow_cn_id(self):
        """
        The keyword overrides the request's policy, which overrides the
        verifier's default.
        """
        yes, no = SimpleNamespace(allow_cn_id=True), SimpleNamespace(allow_cn_id=False)
        for default, policy, keyword, expected in [
            (False, None, None, Outcome.FAILED),
            (True, None, None, Outcome.VERIFIED),
            (False, None, True, Outcome.VERIFIED),
            (True, None, False, Outcome.FAILED),
            (False, yes, None, Outcome.VERIFIED),
            (True, no, None, Outcome.FAILED),
            (False, yes, False, Outcome.FAILED),
            (True, no, True, Outcome.VERIFIED),
            (True, SimpleNamespace(), None, Outcome.VERIFIED),
        ]:
            verifier = PKIXVerifier(STORE, clock_at(NOW), allow_cn_id=default)
            verdict = result(
                verifier.verify(request(self.cn_only, policy=policy), allow_cn_id=keyword)
            )
            self.assertEqual(verdict.outcome, expected, (default, policy, keyword))

    def test_never_fails(self):
        """
        An unexpected exception becomes a failed verdict, and is logged.
        """

        class BrokenStore:
            pass

        verdict = result(PKIXVerifier(BrokenStore(), clock_at(NOW)).verify(request(leaf(["example.org"]))))
        self.assertEqual(verdict.outcome, Outcome.FAILED)
        self.assertIn("internal error: TypeError", verdict.reason)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)


class PKIXCacheTests(SynchronousTestCase):
    """
    L{PKIXVerifier} remembers its verdicts: a peer that connects again with
    the same chain costs no new path validation, within the validity the
    verdict was given.
    """

    def setUp(self):
        self.validations = []
        original = pkix.validate_path

        def counting(certificates, store, now):
            self.validations.append(now)
            return original(certificates, store, now)

        self.patch(pkix, "validate_path", counting)
        self.clock = clock_at(NOW)
        self.verifier = PKIXVerifier(STORE, self.clock)

    def verify(self, chain, domain="example.org"):
        return result(self.verifier.verify(request(chain, domain)))

    def test_seen_chain(self):
        chain = leaf(["example.org"])
        first, second = self.verify(chain), self.verify(chain)
        self.assertEqual(second.outcome, Outcome.VERIFIED)
        self.assertIs(second, first)
        self.assertEqual(len(self.validations), 1)
        self.assertEqual((self.verifier.cache.hits, self.verifier.cache.misses), (1, 1))

    def test_other_domain(self):
        """
        The same chain for another domain is a new check (and here a refusal).
        """
        chain = leaf(["example.org"])
        self.verify(chain)
        verdict = self.verify(chain, "example.net")
        self.assertEqual(verdict.outcome, Outcome.FAILED)
        self.assertEqual(len(self.validations), 2)

    def test_other_chain(self):
        self.verify(leaf(["example.org"]))
        self.verify(leaf(["example.org"]))
        self.assertEqual(len(self.validations), 2)

    def test_expiry(self):
        """
        A verified chain is reused only while every certificate of its path
        is valid: after the leaf expires, it is checked again and refused.
        """
        chain = leaf(["example.org"], not_after=NOW + DAY)
        self.assertEqual(self.verify(chain).outcome, Outcome.VERIFIED)
        self.clock.advance(DAY.total_seconds() - 1)
        self.assertEqual(self.verify(chain).outcome, Outcome.VERIFIED)
        self.assertEqual(len(self.validations), 1)
        self.clock.advance(2)
        self.assertIn("expired on", self.verify(chain).reason)
        self.assertEqual(len(self.validations), 2)

    def test_refusal_remembered_briefly(self):
        """
        A refusal is remembered for FAILURE_TTL seconds: a certificate that
        is not valid yet is checked again after that.
        """
        chain = leaf(["example.org"], not_before=NOW + datetime.timedelta(seconds=30))
        self.assertEqual(self.verify(chain).outcome, Outcome.FAILED)
        self.clock.advance(31)
        self.assertEqual(self.verify(chain).outcome, Outcome.FAILED)
        self.assertEqual(len(self.validations), 1)
        self.clock.advance(pkix.FAILURE_TTL)
        self.assertEqual(self.verify(chain).outcome, Outcome.VERIFIED)
        self.assertEqual(len(self.validations), 2)

    def test_bounded(self):
        verifier = PKIXVerifier(STORE, self.clock, cache_size=2)
        chains = [leaf(["example.org"]) for _ in range(3)]
        for chain in chains:
            result(verifier.verify(request(chain)))
        self.assertEqual(len(verifier.cache), 2)
        # The oldest was forgotten, the newest are remembered.
        result(verifier.verify(request(chains[2])))
        self.assertEqual(len(self.validations), 3)
        result(verifier.verify(request(chains[0])))
        self.assertEqual(len(self.validations), 4)


def _write(folder, name, data):
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


class PKIXVerifierFactoryTests(SynchronousTestCase):
    """
    L{PKIXVerifierFactory}.
    """

    def test_interface(self):
        factory = PKIXVerifierFactory()
        self.assertTrue(verifyObject(IDomainVerifierFactory, factory))
        self.assertEqual(factory.name, "pkix")

    def test_configured_trust_store_and_reactor_clock(self):
        folder = self.mktemp()
        os.makedirs(folder)
        path = _write(folder, "ca.pem", ROOT.pem)
        config = SimpleNamespace(policy=SimpleNamespace(trust_store=path))
        environment = VerifierEnvironment(reactor=clock_at(NOW), config=config)
        verifier = PKIXVerifierFactory().build(environment)
        self.assertTrue(verifyObject(IDomainVerifier, verifier))
        verdict = result(verifier.verify(request(leaf(["example.org"]))))
        self.assertEqual(verdict.outcome, Outcome.VERIFIED)
        environment.reactor.advance(8 * 86400)
        verdict = result(verifier.verify(request(leaf(["example.org"]))))
        self.assertIn("certificate expired on", verdict.reason)

    def test_unreadable_trust_store(self):
        path = os.path.join(self.mktemp(), "missing.pem")
        config = SimpleNamespace(policy=SimpleNamespace(trust_store=path))
        environment = VerifierEnvironment(reactor=Clock(), config=config)
        with self.assertRaises(TrustStoreError) as caught:
            PKIXVerifierFactory().build(environment)
        self.assertIn(path, str(caught.exception))

    def test_system_trust_store(self):
        """
        Without C{policy.trust_store} (or without a policy), the system's
        store: a server certificate from our test CA is not trusted.
        """
        for config in (SimpleNamespace(), SimpleNamespace(policy=SimpleNamespace(trust_store=None))):
            environment = VerifierEnvironment(reactor=clock_at(NOW), config=config)
            try:
                verifier = PKIXVerifierFactory().build(environment)
            except TrustStoreError as e:
                raise self.skipTest(f"this system has no trust store: {e}") from None
            verdict = result(verifier.verify(request(leaf(["example.org"]))))
            self.assertEqual(
                verdict.reason, "chain does not lead to a trusted CA (issuer: CN=PKIX Test Root)"
            )


class LoadTrustStoreTests(SynchronousTestCase):
    """
    L{load_trust_store}.
    """

    def setUp(self):
        self.folder = self.mktemp()
        os.makedirs(self.folder)

    def assertTrusts(self, store, ca, trusted=True):
        verdict = check_pkix(leaf(["example.org"], ca=ca), "example.org", store, NOW)
        expected = Outcome.VERIFIED if trusted else Outcome.FAILED
        self.assertEqual(verdict.outcome, expected, verdict.reason)

    def assertTrustStoreError(self, path, message):
        with self.assertRaises(TrustStoreError) as caught:
            load_trust_store(path)
        self.assertEqual(str(caught.exception), f"{path}: {message}")

    def test_one_certificate(self):
        store = load_trust_store(_write(self.folder, "ca.pem", ROOT.pem))
        self.assertIsInstance(store, Store)
        self.assertTrusts(store, ROOT)
        self.assertTrusts(store, OTHER, trusted=False)

    def test_several_certificates(self):
        path = _write(self.folder, "cas.pem", b"comment\n" + ROOT.pem + b"\n" + OTHER.pem)
        store = load_trust_store(path)
        self.assertTrusts(store, ROOT)
        self.assertTrusts(store, OTHER)

    def test_crlf(self):
        path = _write(self.folder, "ca.pem", ROOT.pem.replace(b"\n", b"\r\n"))
        self.assertTrusts(load_trust_store(path), ROOT)

    def test_duplicates(self):
        self.assertTrusts(load_trust_store(_write(self.folder, "ca.pem", ROOT.pem * 2)), ROOT)

    def test_folder(self):
        _write(self.folder, "root.pem", ROOT.pem)
        _write(self.folder, "other.crt", OTHER.pem)
        _write(self.folder, "README", b"not a certificate")
        store = load_trust_store(self.folder)
        self.assertTrusts(store, ROOT)
        self.assertTrusts(store, OTHER)

    def test_empty_folder(self):
        self.assertTrustStoreError(self.folder, "no PEM certificate in the trust store folder")

    def test_empty_file(self):
        path = _write(self.folder, "empty.pem", b"")
        self.assertTrustStoreError(path, "no PEM certificate in the trust store")

    def test_no_certificate_in_file(self):
        path = _write(self.folder, "key.pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        self.assertTrustStoreError(path, "no PEM certificate in the trust store")

    def test_der_file(self):
        path = _write(self.folder, "ca.der", ROOT.der)
        self.assertTrustStoreError(path, "no PEM certificate in the trust store")

    def test_missing_file(self):
        path = os.path.join(self.folder, "missing.pem")
        self.assertTrustStoreError(path, "cannot read the trust store: No such file or directory")

    def test_invalid_certificate(self):
        broken = b"-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
        path = _write(self.folder, "cas.pem", ROOT.pem + broken)
        with self.assertRaises(TrustStoreError) as caught:
            load_trust_store(path)
        self.assertTrue(
            str(caught.exception).startswith(f"{path}: certificate 2 is not valid: "),
            str(caught.exception),
        )

    def test_system_store(self):
        try:
            store = load_trust_store()
        except TrustStoreError as e:
            raise self.skipTest(f"this system has no trust store: {e}") from None
        self.assertIsInstance(store, Store)
        self.assertTrusts(store, ROOT, trusted=False)

    def test_system_store_from_environment(self):
        """
        C{SSL_CERT_FILE} and C{SSL_CERT_DIR} choose the system store, as
        for OpenSSL.
        """
        path = _write(self.folder, "ca.pem", ROOT.pem)
        self.patch(os, "environ", dict(os.environ, SSL_CERT_FILE=path, SSL_CERT_DIR=self.folder + "-none"))
        self.assertTrusts(load_trust_store(), ROOT)

    def test_empty_system_store(self):
        path = _write(self.folder, "empty.pem", b"")
        self.patch(os, "environ", dict(os.environ, SSL_CERT_FILE=path, SSL_CERT_DIR=self.folder))
        with self.assertRaises(TrustStoreError) as caught:
            load_trust_store()
        self.assertIn("no CA certificate in the system trust store", str(caught.exception))
        self.assertIn(path, str(caught.exception))
