"""
Server Dialback (XEP-0220) as a member of the verifier chain.

Inbound, for a C{db:result}: the key is checked with the claimed domain's
authoritative server, over a fresh connection.  When TLS is in place and an
earlier verifier (PKIX, DANE, POSH) already verified the certificate for
the domain, the chain stops there and the callback is never made: the
XEP-0344 "dialback without dialback" short-cut, with the certificate as
the proof.  Without a key (SASL EXTERNAL eligibility) dialback has
nothing to say.

Outbound, dialback proves our identity to the peer; about the peer, it
says only that it was reached through DNS for its domain (the XEP-0220
trust model), which is what a policy that lists C{dialback} accepts.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer
from zope.interface import implementer

from gateway.verifiers.interfaces import (
    IDomainVerifier,
    IDomainVerifierFactory,
    Verdict,
    VerificationRequest,
    VerifierEnvironment,
)
from gateway.xmpp.errors import DialbackError

#: C{(originating, receiving, stream_id, key)} → a Deferred firing with
#: whether the key is valid.
VerifyKey = Callable[[str, str, str, str], "defer.Deferred[bool]"]


@implementer(IDomainVerifier)
class DialbackVerifier:
    name = "dialback"

    def __init__(self, verify_key: VerifyKey) -> None:
        """
        @param verify_key: C{(originating, receiving, stream_id, key)} →
            Deferred firing with whether the key is valid, or failing with
            L{gateway.xmpp.errors.DialbackError}
            (L{gateway.s2s.connector.Connector.verify_dialback_key}).
        """
        self._verify_key = verify_key

    def verify(self, request: VerificationRequest) -> defer.Deferred[Verdict]:
        if request.direction == "outbound":
            return defer.succeed(
                Verdict.verified(
                    self.name,
                    f"reached through DNS for {request.peer_domain} (XEP-0220 trust model)",
                    basis="dns",
                )
            )
        if request.dialback_key is None:
            return defer.succeed(
                Verdict.not_applicable(self.name, "no dialback key offered on this stream")
            )
        if request.stream_id is None:
            return defer.succeed(
                Verdict.failed(self.name, "the stream has no id for the dialback key to be checked with")
            )
        return defer.Deferred.fromCoroutine(
            self._check(request, request.stream_id, request.dialback_key)
        )

    async def _check(self, request: VerificationRequest, stream_id: str, key: str) -> Verdict:
        try:
            valid = await self._verify_key(
                request.peer_domain, request.local_domain, stream_id, key
            )
        except DialbackError as e:
            return Verdict.failed(
                self.name,
                f"could not reach the authoritative server: {e.condition}: {e.text}",
                condition=e.condition,
            )
        if valid:
            return Verdict.verified(
                self.name,
                f"the authoritative server for {request.peer_domain} confirmed the key",
                basis="authoritative server",
            )
        return Verdict.failed(
            self.name,
            f"the authoritative server for {request.peer_domain} says the key is invalid",
            decisive=True,
        )


@implementer(IDomainVerifierFactory)
class DialbackVerifierFactory:
    name = "dialback"

    def build(self, environment: VerifierEnvironment) -> DialbackVerifier:
        if environment.verify_dialback_key is None:
            raise ValueError("the dialback verifier needs a way to reach peers (verify_dialback_key)")
        return DialbackVerifier(environment.verify_dialback_key)
