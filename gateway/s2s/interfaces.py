"""
What a stream needs from the object that owns it (the federation, or a
test's fake): the seams between the stream protocols and
L{gateway.s2s.federation.Federation}.  Fakes declare them too, and the
tests hold both to them with C{verifyObject}, so that neither can drift.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from gateway.s2s.outbound import OutboundStream
    from gateway.s2s.queues import Entry
    from gateway.s2s.stream import S2SStream
    from gateway.verifiers.chain import ChainResult


class IStreamOwner(Interface):
    """
    What both directions of stream read and call on their owner.
    """

    max_stanza_size = Attribute("The most bytes one first-level element may take.")
    max_depth = Attribute("How deeply elements may nest in a stanza.")
    clock = Attribute("An IReactorTime for the stream's timers.")
    dialback_secret = Attribute("The XEP-0185 secret keys are derived from.")
    tls_profile = Attribute("The gateway.tls.profile.TLSProfile for STARTTLS.")
    policy = Attribute("The gateway.app.config.PolicyConfig.")

    def stream_opened(stream: S2SStream) -> None:
        """
        C{stream} is connected.
        """

    def stream_closed(stream: S2SStream) -> None:
        """
        C{stream}'s connection is gone.
        """

    def verify_peer(
        direction: str,
        local_domain: str,
        peer_domain: str,
        stream: S2SStream,
        dialback_key: str | None = None,
    ) -> Deferred[ChainResult]:
        """
        Run the verifier chain for C{peer_domain} over C{stream}.

        @return: a Deferred firing with a
            L{gateway.verifiers.chain.ChainResult}.
        """

    def stream_authenticated(
        stream: S2SStream, peer_domain: str, local_domain: str, result: ChainResult, via: str
    ) -> None:
        """
        C{stream} now carries stanzas for C{(peer_domain, local_domain)}.
        """

    def authentication_refused(
        stream: S2SStream, direction: str, local_domain: str, peer_domain: str, result: ChainResult
    ) -> None:
        """
        The chain refused C{peer_domain} on C{stream}.
        """


class IInboundStreamOwner(IStreamOwner):
    """
    What an L{gateway.s2s.inbound.InboundStream} needs besides.
    """

    local_domains = Attribute("The domains served here.")
    router = Attribute("Where stanzas from peers go (route_from_s2s, refuse_from_s2s).")
    authentication_timeout = Attribute("Seconds a peer has to authenticate.")
    max_verifications = Attribute("Dialback verifications under way at once, overall.")
    max_verifications_per_stream = Attribute("... and on one stream.")
    verifications_in_progress = Attribute("Dialback verifications under way now.")


class IOutboundStreamOwner(IStreamOwner):
    """
    What an L{gateway.s2s.outbound.OutboundStream} needs besides.
    """

    router = Attribute("Where error replies on our own stream go (route_from_s2s).")
    connect_timeout = Attribute("Seconds a silent peer may owe an answer.")
    stalled_timeout = Attribute("Seconds a peer may leave what we sent unread or unacknowledged.")

    def stream_closing(stream: OutboundStream) -> None:
        """
        C{stream} sent its closing tag: new stanzas go to a new stream.
        """

    def resend(unacked: list[Entry], local_domain: str, peer_domain: str) -> None:
        """
        Send again what a stream from C{local_domain} to C{peer_domain}
        sent, as C{(bytes, resent)} pairs, and the peer never acknowledged.
        """
