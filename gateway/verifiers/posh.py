"""
POSH (RFC 7711, RFC 7712): the peer domain vouches, over HTTPS, for the
certificate its XMPP service presents, typically a hosting provider's that
does not name the domain.

Verdicts:

  - verified: the domain's POSH file (or the one its C{url} points to)
    lists a fingerprint of the peer's certificate (evidence: the file's
    URL, the fingerprint, its C{expires}, and the well-known URL when a
    reference was followed);
  - not applicable: the peer presented no certificate, or the domain
    publishes no POSH file (404, no HTTPS server, a redirect);
  - failed: the POSH file could not be trusted or read (an invalid HTTPS
    certificate, malformed JSON, too large, too slow, a broken reference),
    or it lists fingerprints and none is the certificate's.  Not decisive
    by itself, as RFC 7712 lets other methods still verify the peer; a
    policy can make it so with C{decisive = ["posh"]}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTCP
from zope.interface import implementer

from gateway.verifiers.interfaces import (
    IDomainVerifier,
    IDomainVerifierFactory,
    Verdict,
    VerificationRequest,
    VerifierEnvironment,
)

if TYPE_CHECKING:
    from gateway.posh.client import POSHClient

NAME = "posh"


@implementer(IDomainVerifier)
class POSHVerifier:
    """
    @param client: a L{gateway.posh.client.POSHClient} (or anything with its
        C{fetch}).
    """

    name = NAME

    def __init__(self, client: POSHClient) -> None:
        self.client = client

    def verify(self, request: VerificationRequest) -> defer.Deferred[Verdict]:
        return defer.Deferred.fromCoroutine(self._verify(request))

    async def _verify(self, request: VerificationRequest) -> Verdict:
        # Loaded by the time a client exists (see POSHVerifierFactory.build).
        from gateway.posh.client import ABSENT, FOUND, match_posh

        if not request.peer_chain:
            return Verdict.not_applicable(NAME, "the peer presented no certificate")
        result = await self.client.fetch(request.peer_domain)
        where = result.url if result.via is None else f"{result.url} (from {result.via})"
        if result.status == ABSENT:
            return Verdict.not_applicable(NAME, f"no POSH file at {where}: {result.reason}")
        document = result.document
        if result.status != FOUND or document is None:
            return Verdict.failed(NAME, f"POSH file at {where}: {result.reason}")
        match = match_posh(document, request.peer_chain)
        if not match.matched:
            return Verdict.failed(NAME, f"POSH file at {where} {match.reason}")
        evidence: dict[str, Any] = {
            "url": result.url,
            "fingerprint": match.fingerprint,
            "expires": document.expires,
        }
        if result.via is not None:
            evidence["via"] = result.via
        return Verdict.verified(
            NAME, f"POSH file at {where}: {match.reason}", **evidence
        )


@implementer(IDomainVerifierFactory)
class POSHVerifierFactory:
    """
    Builds the L{POSHVerifier} from the configuration's C{[posh]} table
    and C{policy.trust_store} (the CAs trusted for the HTTPS fetches;
    L{None}: the platform's), with the gateway's resolver and reactor.

    @cvar port: where POSH files are fetched: 443, as RFC 7711 says; tests
        patch it.
    """

    name = NAME
    port = 443

    def build(self, environment: VerifierEnvironment) -> POSHVerifier:
        # The HTTP client (treq, twisted.web: a few MiB) is loaded only by a
        # gateway whose policies use POSH.
        from gateway.posh.client import POSHClient

        config = environment.config
        posh = config.posh
        policy = getattr(config, "policy", None)
        resolver = environment.resolver
        if resolver is None:
            from gateway.names.srv import make_resolver

            resolver = make_resolver(config.dns, environment.reactor)
        client = POSHClient.over_https(
            # The environment names the reactor by the clock every verifier
            # reads; the gateway's reactor makes POSH's connections too.
            cast(IReactorTCP, environment.reactor),
            resolver,
            getattr(policy, "trust_store", None),
            timeout=posh.timeout,
            max_size=posh.max_size,
            max_cache=posh.max_cache,
            negative_cache=posh.negative_cache,
            port=self.port,
        )
        return POSHVerifier(client)
