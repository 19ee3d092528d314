"""
The domain verifier interface and the values verifiers work with.

A verifier answers one question: is the peer on this stream really the
domain it claims?  It gets a L{VerificationRequest} (what is known about
the stream) and returns a Deferred firing with a L{Verdict}: verified (with
evidence), not applicable (it has nothing to say), or failed (with a reason
an operator can act on).  Verifiers are built by factories found as Twisted
plugins (L{IDomainVerifierFactory}); the chain (L{gateway.verifiers.chain})
runs them in the order the trust policy names them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    # Only the types: the configuration sits above the
    # verifiers (tools/import_graph.py), and TLS and DNS need not be
    # imported to make a request.
    from gateway.app.config import DomainPolicy, GatewayConfig
    from gateway.names.interfaces import IDNSClient
    from gateway.names.srv import Target
    from gateway.tls.profile import TLSFacts


class Outcome(enum.Enum):
    VERIFIED = "verified"
    NOT_APPLICABLE = "not-applicable"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Verdict:
    """
    One verifier's answer.

    @ivar verifier: the verifier's name (C{pkix}, C{dialback}, …).
    @ivar outcome: an L{Outcome}.
    @ivar reason: for an operator: what matched, or what did not.
    @ivar evidence: facts supporting a C{verified} verdict (for example
        C{{"identity": "SRV-ID", "value": "_xmpp-server.example.org"}}),
        JSON-serialisable.
    @ivar decisive: for a failure: stop the chain and refuse the peer even
        if later verifiers could succeed (DANE with secure, non-matching
        TLSA records; a pinned certificate that doesn't match).
    """

    verifier: str
    outcome: Outcome
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    decisive: bool = False

    @classmethod
    def verified(cls, verifier: str, reason: str, **evidence: Any) -> Verdict:
        return cls(verifier, Outcome.VERIFIED, reason, evidence)

    @classmethod
    def not_applicable(cls, verifier: str, reason: str) -> Verdict:
        return cls(verifier, Outcome.NOT_APPLICABLE, reason)

    @classmethod
    def failed(cls, verifier: str, reason: str, decisive: bool = False, **evidence: Any) -> Verdict:
        return cls(verifier, Outcome.FAILED, reason, evidence, decisive)

    def as_dict(self) -> dict[str, Any]:
        return {
            "verifier": self.verifier,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "evidence": dict(self.evidence),
            "decisive": self.decisive,
        }


@dataclass(frozen=True)
class VerificationRequest:
    """
    What is known about a stream when its peer's domain is checked.

    @ivar direction: C{"inbound"} or C{"outbound"}.
    @ivar local_domain: our domain on the stream.
    @ivar peer_domain: the domain the peer claims (inbound) or that we
        connected to (outbound).
    @ivar stream_id: the stream's id.
    @ivar tls: the L{gateway.tls.profile.TLSFacts} of the stream, or L{None} when
        it is not encrypted.
    @ivar dialback_key: the key of an inbound C{db:result}, when the
        verification was asked for by one (L{None} otherwise).
    @ivar target: for outbound streams, the L{gateway.names.srv.Target} the
        stream is connected to (L{None} when unknown).
    @ivar policy: the L{gateway.app.config.DomainPolicy} that applies, for
        per-domain settings (L{None} when unknown).
    """

    direction: str
    local_domain: str
    peer_domain: str
    stream_id: str | None
    tls: TLSFacts | None = None
    dialback_key: str | None = field(default=None, repr=False)
    target: Target | None = None
    policy: DomainPolicy | None = None

    @property
    def peer_chain(self) -> tuple[bytes, ...]:
        """
        The DER certificates the peer presented, its own first.
        """
        return self.tls.peer_chain if self.tls is not None else ()


class IDomainVerifier(Interface):
    """
    Decides whether a stream's peer is the domain it claims, one way.
    """

    name = Attribute("The verifier's name, as policies and records spell it.")

    def verify(request: VerificationRequest) -> Deferred[Verdict]:
        """
        Check C{request.peer_domain}.

        @type request: L{VerificationRequest}
        @return: a Deferred firing with a L{Verdict}.  It should not fail:
            a verifier that cannot decide returns a C{failed} or
            C{not-applicable} verdict with the reason.
        """


class IDomainVerifierFactory(Interface):
    """
    A Twisted plugin that makes a verifier.  Put a module with an object
    that provides both this and L{twisted.plugin.IPlugin} in a
    C{gateway/plugins/} folder on the Python path (no C{__init__.py}
    there); the gateway finds it with L{twisted.plugin.getPlugins}.
    """

    name = Attribute("The verifier's name, as trust policies spell it.")

    def build(environment: VerifierEnvironment) -> IDomainVerifier:
        """
        Make the verifier.

        @param environment: a L{VerifierEnvironment}: what the gateway
            offers verifiers (its reactor, resolver, configuration and, for
            dialback, a way to ask a peer's authoritative server).
        @rtype: L{IDomainVerifier}
        """


@dataclass(frozen=True)
class VerifierEnvironment:
    """
    What the gateway offers verifier factories.

    @ivar reactor: the gateway's reactor: its clock (L{IReactorTime}, the
        one the whole gateway reads), and for POSH its connections too.
    @ivar config: the L{gateway.app.config.GatewayConfig}.
    @ivar resolver: the gateway's DNS resolver, an
        L{gateway.names.interfaces.IDNSClient}; a factory given none makes
        one from C{config.dns}.
    @ivar verify_dialback_key: for dialback, which asks the peer's
        authoritative server: C{(originating, receiving, stream_id, key)} →
        a Deferred firing with whether the key is valid, or failing with
        L{gateway.xmpp.errors.DialbackError}
        (L{gateway.s2s.connector.Connector.verify_dialback_key}).
    """

    reactor: IReactorTime
    config: GatewayConfig
    resolver: IDNSClient | None = None
    verify_dialback_key: Callable[[str, str, str, str], Deferred[bool]] | None = None
