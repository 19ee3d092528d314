"""
The PKIX verifier: the peer's certificate chains to a trusted CA and names
the peer's domain (RFC 6120 section 13.7.2, RFC 9525), as
L{gateway.tls.pkix} checks it; verdicts are cached until the validated
path expires (or briefly, for refusals).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.x509.verification import Store
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from gateway.cache import ExpiringCache
from gateway.log import Logger
from gateway.tls.certificates import format_time
from gateway.tls.pkix import (
    IdentityError,
    PathError,
    load_trust_store,
    match_identity,
    validate_path,
)
from gateway.verifiers.interfaces import (
    IDomainVerifier,
    IDomainVerifierFactory,
    Verdict,
    VerificationRequest,
    VerifierEnvironment,
)

log = Logger()

NAME = "pkix"


def check_pkix(
    chain: Sequence[bytes],
    domain: str,
    store: Store,
    now: datetime.datetime,
    allow_cn_id: bool = False,
) -> Verdict:
    """
    Decide whether the presented C{chain} authenticates C{domain} by PKIX.

    @param chain: the DER certificates the peer presented, its own first.
    @param domain: the XMPP domain claimed (U-labels or A-labels).
    @param store: the trust anchors, a L{Store}.
    @param now: the validation time, a datetime (naive means UTC).
    @param allow_cn_id: accept the subject CN as a last resort, for a
        certificate without DNS, SRV, URI or XmppAddr names.
    @rtype: L{Verdict}
    """
    return _check_pkix(chain, domain, store, now, allow_cn_id)[0]


def _check_pkix(
    chain: Sequence[bytes],
    domain: str,
    store: Store,
    now: datetime.datetime,
    allow_cn_id: bool = False,
) -> tuple[Verdict, list[x509.Certificate] | None]:
    """
    L{check_pkix}, also returning the validated path (for the cache).

    @return: C{(verdict, validated chain or None)}.
    """
    if not chain:
        return Verdict.not_applicable(NAME, "the peer presented no certificate"), None
    certificates = []
    for position, der in enumerate(chain):
        try:
            certificates.append(x509.load_der_x509_certificate(bytes(der)))
        except ValueError as e:
            which = "the peer's certificate" if position == 0 else (
                f"certificate {position + 1} of the peer's chain"
            )
            return Verdict.failed(NAME, f"could not parse {which}: {e}"), None
    try:
        validated = validate_path(certificates, store, now)
    except PathError as e:
        return Verdict.failed(NAME, str(e)), None
    try:
        found = match_identity(certificates[0], domain, allow_cn_id)
    except IdentityError as e:
        return Verdict.failed(NAME, str(e)), None
    anchor = validated[-1].subject.rfc4514_string()
    return Verdict.verified(
        NAME,
        f"{found.identity} {found.matched} names {domain}, chain to trusted CA {anchor}",
        identity=found.identity,
        matched=found.matched,
        trust_anchor=anchor,
        chain=[certificate.subject.rfc4514_string() for certificate in validated],
        # The verdict holds while every certificate of the path is valid: a
        # stream it authenticated is reset then (RFC 6120 section 13.7.2.3).
        valid_until=format_time(min(c.not_valid_after_utc for c in validated)),
    ), validated


# Trust stores


def _now_function(clock: IReactorTime) -> Callable[[], datetime.datetime]:
    """
    A function of no arguments returning the clock's time as an aware UTC
    datetime.

    @param clock: an L{IReactorTime}, the one the whole gateway reads.
    @raise TypeError: C{clock} is not one.
    """
    if not hasattr(clock, "seconds"):
        raise TypeError(f"{clock!r} is not a clock (an IReactorTime)")

    def now() -> datetime.datetime:
        return datetime.datetime.fromtimestamp(clock.seconds(), datetime.timezone.utc)

    return now


#: Checks remembered by each PKIX verifier.
CACHE_SIZE = 1024
#: Seconds a refusal is remembered (a certificate not valid yet may become so).
FAILURE_TTL = 60


@implementer(IDomainVerifier)
class PKIXVerifier:
    """
    The PKIX verifier: L{check_pkix} on the stream's peer chain.

    @param store: the trust anchors, a L{Store}.
    @param clock: an L{IReactorTime}.
    @param allow_cn_id: the default for L{verify}.
    """

    name = NAME

    def __init__(
        self,
        store: Store,
        clock: IReactorTime,
        allow_cn_id: bool = False,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.store = store
        self.allow_cn_id = allow_cn_id
        self._now = _now_function(clock)
        # Verdicts of chains already checked: a peer that connects again
        # with the same chain costs no new path validation.  The trust store
        # is read once at start, so it can't change under the cache.
        self.cache: ExpiringCache[
            tuple[tuple[bytes, ...], str, bool], Verdict, datetime.datetime
        ] = ExpiringCache(cache_size)

    def verify(
        self, request: VerificationRequest, allow_cn_id: bool | None = None
    ) -> defer.Deferred[Verdict]:
        """
        Check C{request.peer_domain} against C{request.peer_chain}.

        @param allow_cn_id: overrides, in this order, the request's
            C{policy.allow_cn_id} (when it has a policy) and this
            verifier's own setting.
        @return: a Deferred firing with a L{Verdict}; never fails.
        """
        if allow_cn_id is None:
            allow_cn_id = getattr(getattr(request, "policy", None), "allow_cn_id", None)
        if allow_cn_id is None:
            allow_cn_id = self.allow_cn_id
        try:
            verdict = self._check(request.peer_chain, request.peer_domain, allow_cn_id)
        except Exception as e:
            log.failure("pkix check of {peer} raised", peer=request.peer_domain)
            verdict = Verdict.failed(NAME, f"internal error: {e.__class__.__name__}: {e}")
        return defer.succeed(verdict)

    def _check(self, chain: Sequence[bytes], domain: str, allow_cn_id: bool) -> Verdict:
        if not chain:
            return check_pkix(chain, domain, self.store, self._now(), allow_cn_id)
        now = self._now()
        key = (tuple(bytes(der) for der in chain), domain, bool(allow_cn_id))
        verdict = self.cache.get(key, now)
        if verdict is not None:
            return verdict
        verdict, validated = _check_pkix(chain, domain, self.store, now, allow_cn_id)
        if validated is not None:
            # Good while every certificate of the validated path is.
            start = max(c.not_valid_before_utc for c in validated)
            end = min(c.not_valid_after_utc for c in validated)
        else:
            start, end = now, now + datetime.timedelta(seconds=FAILURE_TTL)
        self.cache.put(key, verdict, end, since=start)
        return verdict


@implementer(IDomainVerifierFactory)
class PKIXVerifierFactory:
    """
    Builds the L{PKIXVerifier} from the configuration's
    C{policy.trust_store} (L{None}: the system store) and the reactor's
    clock.
    """

    name = NAME

    def build(self, environment: VerifierEnvironment) -> PKIXVerifier:
        policy = getattr(environment.config, "policy", None)
        store = load_trust_store(getattr(policy, "trust_store", None))
        return PKIXVerifier(store, environment.reactor)
