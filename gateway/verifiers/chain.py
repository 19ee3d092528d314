"""
The verifier chain: run the verifiers a trust policy names, in order, and
decide.

  - the first C{verified} verdict authenticates the peer, by that method;
  - a C{failed} verdict that is decisive (by the verifier's own judgement,
    or because the policy lists the verifier in C{decisive}) stops the
    chain and refuses the peer;
  - C{not-applicable} and other failures move on to the next verifier;
  - each verifier has the policy's C{verifier_timeout}; running out is a
    failure, and so is an exception;
  - when nothing verified, an encrypted peer is accepted as
    unauthenticated (method C{none}) only if the policy allows it
    (RFC 7590 section 3.4);
  - I{gates}: a verifier with a true C{gate} attribute (DANE: secure TLSA
    records that don't match, or C{require_dane} without them) is consulted
    before any peer is accepted, wherever the policy lists it: when an
    earlier verifier verifies, the gates not yet run run then, and a
    decisive failure of theirs refuses the peer.  So the order of
    C{verifiers} decides which method authenticates a peer, never whether a
    gate holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from gateway.log import Logger
from gateway.verifiers.interfaces import IDomainVerifier, Outcome, Verdict, VerificationRequest

if TYPE_CHECKING:
    from gateway.app.config import DomainPolicy

log = Logger()


@dataclass(frozen=True, slots=True)
class ChainResult:
    """
    The chain's decision.

    @ivar authenticated: whether the peer is accepted.
    @ivar method: the verifier that verified it, C{"none"} for an accepted
        unauthenticated peer, or L{None} when refused.
    @ivar verdict: the deciding L{Verdict}, if any.
    @ivar verdicts: every verdict, in order.
    @ivar reason: for a refusal, why.
    @ivar durations: seconds each verifier took, in order.
    """

    authenticated: bool
    method: str | None
    verdict: Verdict | None = None
    verdicts: tuple[Verdict, ...] = ()
    reason: str = ""
    durations: tuple[float, ...] = field(default=(), compare=False)

    @property
    def evidence(self) -> dict[str, Any]:
        return dict(self.verdict.evidence) if self.verdict else {}


async def _run_one(
    verifier: IDomainVerifier, request: VerificationRequest, timeout: float, clock: IReactorTime
) -> Verdict:
    d = defer.maybeDeferred(verifier.verify, request)
    if not d.called:
        # A verdict given at once (PKIX, dialback's key check) needs no timer.
        d.addTimeout(timeout, clock)
    try:
        verdict = await d
    except defer.TimeoutError:
        return Verdict.failed(verifier.name, f"no answer within {timeout:g}s")
    except Exception as e:
        log.failure("verifier {name} raised", name=verifier.name)
        return Verdict.failed(verifier.name, f"internal error: {e.__class__.__name__}: {e}")
    if not isinstance(verdict, Verdict):
        return Verdict.failed(verifier.name, f"returned {verdict!r}, not a verdict")
    return verdict


async def run_chain(
    verifiers: Sequence[IDomainVerifier],
    request: VerificationRequest,
    policy: DomainPolicy,
    clock: IReactorTime,
) -> ChainResult:
    """
    Run C{verifiers} over C{request} under C{policy}.

    @param verifiers: L{IDomainVerifier} providers, in order.
    @type request: L{gateway.verifiers.interfaces.VerificationRequest}
    @type policy: L{gateway.app.config.DomainPolicy}
    @param clock: for the timeouts.
    @rtype: L{ChainResult}
    """
    verdicts: list[Verdict] = []
    durations: list[float] = []

    async def run(verifier: IDomainVerifier) -> Verdict:
        started = clock.seconds()
        verdict = await _run_one(verifier, request, policy.verifier_timeout, clock)
        durations.append(clock.seconds() - started)
        verdicts.append(verdict)
        return verdict

    def stops(verdict: Verdict) -> bool:
        return verdict.outcome is Outcome.FAILED and (
            verdict.decisive or verdict.verifier in policy.decisive
        )

    def refused(verdict: Verdict) -> ChainResult:
        return ChainResult(
            False,
            None,
            verdict,
            tuple(verdicts),
            f"{verdict.verifier}: {verdict.reason}",
            tuple(durations),
        )

    for position, verifier in enumerate(verifiers):
        verdict = await run(verifier)
        if verdict.outcome is Outcome.VERIFIED:
            for gate in verifiers[position + 1:]:
                if getattr(gate, "gate", False):
                    checked = await run(gate)
                    if stops(checked):
                        return refused(checked)
            return ChainResult(
                True, verdict.verifier, verdict, tuple(verdicts), "", tuple(durations)
            )
        if stops(verdict):
            return refused(verdict)
    if policy.allow_unauthenticated and request.tls is not None:
        return ChainResult(True, "none", None, tuple(verdicts), "", tuple(durations))
    reasons = "; ".join(f"{v.verifier}: {v.reason}" for v in verdicts) or "no verifier"
    return ChainResult(False, None, None, tuple(verdicts), reasons, tuple(durations))
