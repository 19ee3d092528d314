"""
The PKIX library: a certificate chain leads to a trusted CA and names a
domain (RFC 6120 section 13.7.2, RFC 9525).  The PKIX verifier
(L{gateway.verifiers.pkix}) and the DANE, POSH and start-up code use it.

Two steps, each a pure function:

  1. L{validate_path}: the presented chain leads to a trust anchor, with
     cryptography's RFC 5280 / Web PKI path validation.  Its extension
     policy is the Web PKI one with two XMPP-specific changes:

       - the extended key usage may be serverAuth, clientAuth, both, or
         absent.  An s2s peer is a TLS client on inbound streams and a
         server on outbound ones; public CAs stopped including clientAuth
         in 2025-26, and servers that insisted on it broke federation.
         An EKU with neither (say, only emailProtection) is refused, on
         the leaf and on CAs;
       - a leaf without subjectAltName passes path validation, so that
         the identity step can say precisely why it does not match.

     The leaf's key usage, when present, must allow digitalSignature or
     keyAgreement and must not assert keyCertSign.

  2. L{match_identity}: the leaf names the domain (RFC 6120 section
     13.7.1.2, RFC 9525 section 6), tried in this order:

       - SRV-ID C{_xmpp-server.<domain>} (id-on-dnsSRV);
       - XmppAddr C{<domain>} (id-on-xmppAddr), exactly, IDN-aware;
       - DNS-ID C{<domain>}; a wildcard only as the whole left-most
         label, matching exactly one label, never under fewer than two
         labels (C{*.com}), never matching an A-label;
       - CN-ID, only when allowed by the policy (C{allow_cn_id}) and the
         certificate has no DNS, SRV, URI or XmppAddr subjectAltName.

     Domains are compared in A-label form, lower case.
"""

import datetime
import ipaddress
import os
import re
import ssl
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from service_identity.exceptions import CertificateError
from service_identity.hazmat import DNS_ID, SRV_ID, DNSPattern, SRVPattern

from gateway.tls.certificates import (
    common_names,
    format_time,
    issued_by,
    srv_ids,
    subject_alt_names,
    xmpp_addrs,
)
from gateway.xmpp.jid import AddressError, canonical_domain

XMPP_SERVER_SERVICE = "_xmpp-server"

_ACCEPTED_EKUS = (
    ExtendedKeyUsageOID.SERVER_AUTH,
    ExtendedKeyUsageOID.CLIENT_AUTH,
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
)

_MAX_CHAIN_DEPTH = 8  # intermediates; cryptography's default, set explicitly

# The SAN kinds whose presence rules out CN-ID (RFC 9525 section 6.3).
_CN_BLOCKING_KINDS = frozenset({"DNS", "SRV", "URI", "XmppAddr"})

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


_Pattern = TypeVar("_Pattern")


class PathError(Exception):
    """
    The chain does not validate; C{str()} says why, for an operator.
    """


class IdentityError(Exception):
    """
    The certificate does not name the domain; C{str()} says why, for an
    operator.
    """


class TrustStoreError(Exception):
    """
    A trust store cannot be loaded; the message names the file.
    """


@dataclass(frozen=True)
class IdentityMatch:
    """
    How a certificate names a domain.

    @ivar identity: C{"SRV-ID"}, C{"XmppAddr"}, C{"DNS-ID"} or C{"CN-ID"}.
    @ivar matched: the certificate's value that matched, as written.
    """

    identity: str
    matched: str


# Path validation


def _oid_name(oid: ObjectIdentifier) -> str:
    name = getattr(oid, "_name", None)
    return name if name and name != "Unknown OID" else oid.dotted_string


def _ku_names(usage: x509.KeyUsage) -> str:
    names = []
    for attribute, label in (
        ("digital_signature", "digitalSignature"),
        ("content_commitment", "nonRepudiation"),
        ("key_encipherment", "keyEncipherment"),
        ("data_encipherment", "dataEncipherment"),
        ("key_agreement", "keyAgreement"),
        ("key_cert_sign", "keyCertSign"),
        ("crl_sign", "cRLSign"),
    ):
        if getattr(usage, attribute):
            names.append(label)
    return ", ".join(names) or "none"


def eku_problem(usages: x509.ExtendedKeyUsage | None) -> str | None:
    """
    What is wrong with the extended key usage C{usages} (an
    L{x509.ExtendedKeyUsage}, or L{None} when absent) of an s2s peer's
    chain, or L{None} when nothing is: it needs serverAuth or clientAuth
    (or anyExtendedKeyUsage), or no EKU at all.
    """
    if usages is None or any(oid in usages for oid in _ACCEPTED_EKUS):
        return None
    found = ", ".join(_oid_name(oid) for oid in usages) or "none"
    return f"({found}): needs serverAuth or clientAuth"


def key_usage_problem(usage: x509.KeyUsage | None) -> str | None:
    """
    What is wrong with the key usage C{usage} (an L{x509.KeyUsage}, or
    L{None} when absent) of a TLS end-entity certificate, or L{None} when
    nothing is: it needs digitalSignature or keyAgreement, and must not
    assert keyCertSign.
    """
    if usage is None:
        return None
    if usage.key_cert_sign:
        return f"({_ku_names(usage)}): a server certificate must not assert keyCertSign"
    if not (usage.digital_signature or usage.key_agreement):
        return f"({_ku_names(usage)}): needs digitalSignature or keyAgreement"
    return None


def _extension_policies(problems: list[str]) -> tuple[ExtensionPolicy, ExtensionPolicy]:
    """
    The CA and end-entity extension policies (see the module docstring);
    the validators append operator reasons to C{problems}, since
    cryptography's error text carries only the exception's class and
    message.
    """

    def check_leaf_eku(
        policy: Policy, certificate: x509.Certificate, usages: x509.ExtendedKeyUsage | None
    ) -> None:
        problem = eku_problem(usages)
        if problem is not None:
            problems.append(f"wrong extended key usage {problem}")
            raise ValueError(problem)

    def check_ca_eku(
        policy: Policy, certificate: x509.Certificate, usages: x509.ExtendedKeyUsage | None
    ) -> None:
        problem = eku_problem(usages)
        if problem is not None:
            subject = certificate.subject.rfc4514_string()
            problems.append(f"wrong extended key usage on CA {subject} {problem}")
            raise ValueError(problem)

    def check_leaf_key_usage(
        policy: Policy, certificate: x509.Certificate, usage: x509.KeyUsage | None
    ) -> None:
        problem = key_usage_problem(usage)
        if problem is not None:
            problems.append(f"wrong key usage {problem}")
            raise ValueError(problem)

    ee_policy = (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, check_leaf_eku)
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, check_leaf_key_usage)
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    )
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.AGNOSTIC, check_ca_eku
    )
    return ca_policy, ee_policy


def as_utc(now: datetime.datetime) -> datetime.datetime:
    if now.tzinfo is None:
        return now.replace(tzinfo=datetime.timezone.utc)
    return now.astimezone(datetime.timezone.utc)


def is_self_signed(certificate: x509.Certificate) -> bool:
    """
    Whether C{certificate} is its own issuer and signed with its own key.
    """
    return issued_by(certificate, certificate)


def _presented_path(certificates: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """
    The presented certificates reached from the leaf by following issuer
    names, leaf first; its last is where the presented chain stops.
    """
    path = [certificates[0]]
    remaining = list(certificates[1:])
    while path[-1].issuer != path[-1].subject:
        parent = next((c for c in remaining if c.subject == path[-1].issuer), None)
        if parent is None:
            break
        remaining.remove(parent)
        path.append(parent)
    return path


def _top_issuer(certificates: Sequence[x509.Certificate]) -> str:
    return _presented_path(certificates)[-1].issuer.rfc4514_string()


def _date_problem(
    certificates: Sequence[x509.Certificate], now: datetime.datetime
) -> str | None:
    for position, certificate in enumerate(_presented_path(certificates)):
        what = "certificate" if position == 0 else (
            f"intermediate certificate {certificate.subject.rfc4514_string()}"
        )
        if now > certificate.not_valid_after_utc:
            return f"{what} expired on {format_time(certificate.not_valid_after_utc)}"
        if now < certificate.not_valid_before_utc:
            return f"{what} not valid before {format_time(certificate.not_valid_before_utc)}"
    return None


def _explain(
    message: str,
    certificates: Sequence[x509.Certificate],
    now: datetime.datetime,
    problems: list[str],
) -> str:
    """
    An operator's reason for cryptography's path validation error
    C{message}, looking at the presented C{certificates} where the message
    is vague.
    """
    detail = message.removeprefix("validation failed: ")
    detail = re.sub(r" \(encountered processing .*\)$", "", detail, flags=re.DOTALL)
    detail = detail.removeprefix("candidates exhausted: ")
    if problems and "extension validator failed" in detail:
        return problems[0]
    if "not valid at validation time" in detail:
        # Not a presented certificate: the trust anchor.
        return _date_problem(certificates, now) or (
            f"trusted CA certificate {_top_issuer(certificates)} "
            f"is not valid at {format_time(now)}"
        )
    if is_self_signed(certificates[0]):
        return "self-signed certificate, not from a trusted CA"
    if "basicConstraints.cA must not be asserted" in detail:
        return "the peer's certificate is a CA certificate (basicConstraints cA), not a server's"
    if "all candidates exhausted with no interior errors" in detail:
        return f"chain does not lead to a trusted CA (issuer: {_top_issuer(certificates)})"
    if "exceeds max depth" in detail:
        if is_self_signed(_presented_path(certificates)[-1]):
            # cryptography keeps trying a presented, untrusted root as its
            # own issuer until the depth limit.
            return f"chain does not lead to a trusted CA (issuer: {_top_issuer(certificates)})"
        return f"chain is too long: more than {_MAX_CHAIN_DEPTH} intermediate certificates"
    if "signature does not match" in detail:
        return f"a signature on the chain does not verify (issuer: {_top_issuer(certificates)})"
    return f"path validation failed: {detail}"


def validate_path(
    certificates: Sequence[x509.Certificate], store: Store, now: datetime.datetime
) -> list[x509.Certificate]:
    """
    Validate the presented chain (see the module docstring) without
    matching any name.

    @param certificates: L{x509.Certificate}s, the leaf first, then the
        intermediates in any order.
    @param store: the trust anchors, a L{Store}.
    @param now: the validation time, a datetime (naive means UTC).
    @return: the validated chain, leaf first, trust anchor last.
    @raise PathError: with the reason.
    """
    now = as_utc(now)
    problems: list[str] = []
    ca_policy, ee_policy = _extension_policies(problems)
    verifier = (
        PolicyBuilder()
        .store(store)
        .time(now)
        .max_chain_depth(_MAX_CHAIN_DEPTH)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(certificates[0], list(certificates[1:]))
    except VerificationError as e:
        raise PathError(_explain(str(e), certificates, now, problems)) from None
    return list(verified.chain)


# Identity


def reference_domain(domain: str) -> str:
    """
    The domain C{domain} (a U-label or A-label name, any case, with or
    without a trailing dot) in the form certificates are compared with:
    A-labels, lower case.

    @raise IdentityError: when it is not a domain name.
    """
    name = domain[:-1] if domain.endswith(".") else domain
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        raise IdentityError(f"{domain!r} is an IP address; PKIX checks domain names only")
    try:
        a_label = canonical_domain(name)
        DNS_ID(a_label)
    except (AddressError, ValueError) as e:
        raise IdentityError(f"{domain!r} is not a valid domain name: {e}") from None
    return a_label


def _normalised(name: str) -> str | None:
    """
    C{name} as L{reference_domain} would give it, or L{None}.
    """
    try:
        return reference_domain(name)
    except IdentityError:
        return None


def _patterns(
    values: Iterable[str], make: Callable[[bytes], _Pattern]
) -> list[tuple[_Pattern, str]]:
    patterns: list[tuple[_Pattern, str]] = []
    for value in values:
        try:
            patterns.append((make(value.encode("ascii")), value))
        except (CertificateError, UnicodeError, ValueError, IndexError):
            # Not a usable pattern (*.com, f*o*.example, an IP, empty...):
            # it names nothing, and must not spoil the certificate's other
            # names.
            continue
    return patterns


def _match_srv_id(certificate: x509.Certificate, a_label: str) -> IdentityMatch | None:
    wanted = SRV_ID(f"{XMPP_SERVER_SERVICE}.{a_label}")
    for pattern, value in _patterns(srv_ids(certificate), SRVPattern.from_bytes):
        if wanted.verify(pattern):
            return IdentityMatch("SRV-ID", value)
    return None


def _match_xmpp_addr(certificate: x509.Certificate, a_label: str) -> IdentityMatch | None:
    for value in xmpp_addrs(certificate):
        # A server's XmppAddr is a bare domain; a JID with a localpart or
        # resource names an account, not a server.
        if "@" in value or "/" in value:
            continue
        if _normalised(value) == a_label:
            return IdentityMatch("XmppAddr", value)
    return None


def _match_dns_id(certificate: x509.Certificate, a_label: str) -> IdentityMatch | None:
    wanted = DNS_ID(a_label)
    dns_names = [value for kind, value in subject_alt_names(certificate) if kind == "DNS"]
    for pattern, value in _patterns(dns_names, DNSPattern.from_bytes):
        if wanted.verify(pattern):
            return IdentityMatch("DNS-ID", value)
    return None


def _match_cn_id(certificate: x509.Certificate, a_label: str) -> IdentityMatch | None:
    for value in common_names(certificate):
        if _normalised(value) == a_label:
            return IdentityMatch("CN-ID", value)
    return None


def _shown(domain: str, a_label: str) -> str:
    return domain if domain.lower() == a_label else f"{domain} ({a_label})"


def match_identity(
    certificate: x509.Certificate, domain: str, allow_cn_id: bool = False
) -> IdentityMatch:
    """
    Find how C{certificate} names the XMPP server C{domain} (see the
    module docstring).

    @rtype: L{IdentityMatch}
    @raise IdentityError: saying what the certificate is for instead.
    """
    a_label = reference_domain(domain)
    for matcher in (_match_srv_id, _match_xmpp_addr, _match_dns_id):
        found = matcher(certificate, a_label)
        if found is not None:
            return found

    sans = subject_alt_names(certificate)
    identifiers = [value for kind, value in sans if kind in _CN_BLOCKING_KINDS]
    shown = _shown(domain, a_label)
    if identifiers:
        reason = f"certificate is for {', '.join(identifiers)}; not {shown}"
        if _match_cn_id(certificate, a_label) is not None:
            reason += " (its subject CN names it, but CN-IDs are ignored when there are subjectAltNames)"
        raise IdentityError(reason)

    cns = common_names(certificate)
    if allow_cn_id:
        found = _match_cn_id(certificate, a_label)
        if found is not None:
            return found
        if cns:
            raise IdentityError(f"certificate is for {', '.join(cns)} (CN-ID); not {shown}")
    elif cns:
        raise IdentityError(
            f"certificate has no DNS, SRV or XmppAddr subjectAltName, only the subject CN "
            f"{', '.join(cns)}, and CN-ID is not allowed (allow_cn_id); not {shown}"
        )
    raise IdentityError(f"certificate names no domain; not {shown}")


# The check


def _pem_certificates(data: bytes) -> list[x509.Certificate | ValueError]:
    """
    The PEM certificate blocks of C{data}, each as a parsed certificate or
    the L{ValueError} parsing it raised.
    """
    parsed: list[x509.Certificate | ValueError] = []
    with warnings.catch_warnings():
        # System stores hold old roots with, say, negative serial numbers;
        # cryptography still parses them, with a deprecation warning.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        for block in _PEM_CERTIFICATE.findall(data):
            try:
                parsed.append(x509.load_pem_x509_certificate(block))
            except ValueError as e:
                parsed.append(e)
    return parsed


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TrustStoreError(f"{path}: cannot read the trust store: {e.strerror}") from None


def _load_file(path: str) -> list[x509.Certificate]:
    certificates = []
    for position, parsed in enumerate(_pem_certificates(_read(path)), 1):
        if isinstance(parsed, ValueError):
            raise TrustStoreError(f"{path}: certificate {position} is not valid: {parsed}")
        certificates.append(parsed)
    if not certificates:
        raise TrustStoreError(f"{path}: no PEM certificate in the trust store")
    return certificates


def _load_folder(path: str, strict: bool) -> list[x509.Certificate]:
    """
    Every PEM certificate in the files of folder C{path} (like OpenSSL's
    capath); unreadable files are skipped unless C{strict}.
    """
    try:
        names = sorted(os.listdir(path))
    except OSError as e:
        raise TrustStoreError(f"{path}: cannot read the trust store: {e.strerror}") from None
    certificates: list[x509.Certificate] = []
    for name in names:
        full = os.path.join(path, name)
        if not os.path.isfile(full):
            continue
        try:
            data = _read(full)
        except TrustStoreError:
            if strict:
                raise
            continue
        certificates.extend(c for c in _pem_certificates(data) if not isinstance(c, ValueError))
    return certificates


def _unique(certificates: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    seen: dict[bytes, x509.Certificate] = {}
    for certificate in certificates:
        seen.setdefault(certificate.fingerprint(hashes.SHA256()), certificate)
    return list(seen.values())


def _system_certificates() -> list[x509.Certificate]:
    paths = ssl.get_default_verify_paths()
    certificates: list[x509.Certificate] = []
    if paths.cafile:
        data = _read(paths.cafile)
        certificates.extend(c for c in _pem_certificates(data) if not isinstance(c, ValueError))
    if paths.capath and os.path.isdir(paths.capath):
        certificates.extend(_load_folder(paths.capath, strict=False))
    if not certificates:
        raise TrustStoreError(
            "no CA certificate in the system trust store "
            f"(cafile {paths.cafile or paths.openssl_cafile}, "
            f"capath {paths.capath or paths.openssl_capath})"
        )
    return certificates


def load_trust_store(path: str | None = None) -> Store:
    """
    Load trust anchors.

    @param path: a PEM file of one or more CA certificates, or a folder of
        PEM files; L{None} for the system store (OpenSSL's default
        C{cafile} and every PEM certificate in its C{capath}, as
        L{ssl.get_default_verify_paths} finds them, honouring
        C{SSL_CERT_FILE} and C{SSL_CERT_DIR}).
    @rtype: L{Store}
    @raise TrustStoreError: naming the file when it is unreadable, holds
        an invalid certificate, or holds none.
    """
    if path is None:
        certificates = _system_certificates()
    elif os.path.isdir(path):
        certificates = _load_folder(path, strict=True)
        if not certificates:
            raise TrustStoreError(f"{path}: no PEM certificate in the trust store folder")
    else:
        certificates = _load_file(path)
    return Store(_unique(certificates))


# The verifier
