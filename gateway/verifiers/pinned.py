"""
Certificate pinning: when a domain's policy lists pins, the peer's
certificate (C{sha256}) or its public key (C{spki-sha256}) must match one
of them, whatever else could verify it.  Runs first, and a mismatch is
decisive.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet import defer
from zope.interface import implementer

from gateway.verifiers.interfaces import (
    IDomainVerifier,
    IDomainVerifierFactory,
    Verdict,
    VerificationRequest,
    VerifierEnvironment,
)


def fingerprints(der: bytes) -> dict[str, str]:
    """
    The C{sha256} and C{spki-sha256} fingerprints (lower-case hex) of the
    certificate C{der}.
    """
    certificate = x509.load_der_x509_certificate(der)
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "sha256": hashlib.sha256(der).hexdigest(),
        "spki-sha256": hashlib.sha256(spki).hexdigest(),
    }


def check_pins(chain: Sequence[bytes], pins: Iterable[tuple[str, str]]) -> Verdict:
    """
    @param chain: the DER certificates presented, the peer's own first.
    @param pins: C{(kind, hex)} pairs.
    @rtype: L{Verdict}
    """
    if not chain:
        return Verdict.failed("pinned", "the domain is pinned but presented no certificate", True)
    try:
        seen = fingerprints(chain[0])
    except ValueError:
        return Verdict.failed("pinned", "could not parse the peer's certificate", True)
    for kind, value in pins:
        if seen[kind] == value:
            return Verdict.verified("pinned", f"certificate matches pin {kind}:{value}", pin=f"{kind}:{value}")
    return Verdict.failed(
        "pinned",
        f"certificate matches no pin (sha256:{seen['sha256']}, spki-sha256:{seen['spki-sha256']})",
        True,
    )


@implementer(IDomainVerifier)
class PinnedVerifier:
    name = "pinned"

    def verify(self, request: VerificationRequest) -> defer.Deferred[Verdict]:
        pins = getattr(request.policy, "pins", ())
        if not pins:
            return defer.succeed(Verdict.not_applicable(self.name, "no pins for this domain"))
        return defer.succeed(check_pins(request.peer_chain, pins))


@implementer(IDomainVerifierFactory)
class PinnedVerifierFactory:
    name = "pinned"

    def build(self, environment: VerifierEnvironment) -> PinnedVerifier:
        return PinnedVerifier()
