"""
The federation side of the gateway: what the s2s streams of both directions
need from their owner, made of five parts, each with one job:

  - L{StreamRegistry}: the live streams, admission, housekeeping;
  - L{Connector}: reaching a peer and negotiating an outbound stream;
  - L{OutboundQueues}: stanzas on their way to peers;
  - L{Authenticator}: verifying peers, and what follows each verdict;
  - L{RecordKeeper}: the authentication records and the store's health.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from twisted.internet import defer
from twisted.internet.interfaces import ITCPTransport
from twisted.logger import LogLevel
from twisted.words.xish import domish
from zope.interface import implementer

from gateway.log import Logger, enabled
from gateway.records.interfaces import IRecordStore
from gateway.s2s.authentication import Authenticator
from gateway.s2s.connector import Connector
from gateway.s2s.continuity import Continuity
from gateway.s2s.flow import Backpressure, transport_of
from gateway.s2s.interfaces import IInboundStreamOwner, IOutboundStreamOwner
from gateway.s2s.keeper import RecordKeeper
from gateway.s2s.metrics import GatewayMetrics
from gateway.s2s.outbound import OutboundStream
from gateway.s2s.queues import Entry, OutboundQueues
from gateway.s2s.registry import StreamRegistry
from gateway.verifiers.chain import ChainResult
from gateway.verifiers.interfaces import IDomainVerifierFactory, VerifierEnvironment
from gateway.verifiers.registry import VerifierRegistry

if TYPE_CHECKING:
    from gateway.app.config import GatewayConfig
    from gateway.app.state import GatewayState
    from gateway.components.routing import Router
    from gateway.names.interfaces import IDNSClient
    from gateway.s2s.stream import S2SStream
    from gateway.tls.profile import TLSProfile

log = Logger()


@implementer(IInboundStreamOwner, IOutboundStreamOwner)
class Federation:
    """
    Owns the s2s streams in both directions.

    @param router: the L{gateway.components.routing.Router} that inbound
        stanzas are handed to and that bounces what can't be delivered; the
        federation attaches itself to it as the route to every domain not
        served here.
    @param resolver: the L{gateway.names.interfaces.IDNSClient}.
    @param reactor: for connections and timers.
    @param records: the L{gateway.records.interfaces.IRecordStore} every
        authentication is recorded in (required: a default could lose
        records without anyone noticing).
    @param backpressure: the valves between components and streams, which
        the component listener shares.
    @param metrics: the L{GatewayMetrics} to count in.
    @param verifier_factories: name → verifier factory for the chain (the
        installed plugins, L{gateway.verifiers.registry.available_verifiers},
        if not given).
    """

    def __init__(
        self,
        config: GatewayConfig,
        state: GatewayState,
        tls_profile: TLSProfile,
        resolver: IDNSClient,
        router: Router,
        reactor: Any,
        records: IRecordStore,
        backpressure: Backpressure,
        metrics: GatewayMetrics,
        verifier_factories: Mapping[str, IDomainVerifierFactory] | None = None,
    ) -> None:
        limits = config.s2s
        timeouts = config.timeouts
        # What the streams read from their owner (IStreamOwner).
        self.local_domains = config.domain_names
        self.max_stanza_size = limits.max_stanza_size
        self.max_depth = limits.max_depth
        self.max_verifications = limits.max_verifications
        self.max_verifications_per_stream = limits.max_verifications_per_stream
        self.verifications_in_progress = 0
        self.authentication_timeout = timeouts.authentication
        self.connect_timeout = timeouts.connect
        self.stalled_timeout = timeouts.stalled
        self.policy = config.policy
        self.dialback_secret = state.dialback_secret
        self.tls_profile = tls_profile
        self.resolver = resolver
        self.router = router
        self.clock = reactor
        self.metrics = metrics
        self.backpressure = backpressure

        self.registry = StreamRegistry(reactor, limits, timeouts.idle, timeouts.stalled)
        self.keeper = RecordKeeper(records, reactor, Continuity())
        self.connector = Connector(
            reactor, resolver, tls_profile, config.policy,
            timeouts.connect, timeouts.authentication, self,
        )
        self.verifiers = VerifierRegistry(
            VerifierEnvironment(
                reactor=reactor,
                config=config,
                resolver=resolver,
                verify_dialback_key=self.connector.verify_dialback_key,
            ),
            verifier_factories,
        )
        self.authenticator = Authenticator(
            config.policy, self.verifiers, reactor, self.keeper, metrics
        )
        self.queues = OutboundQueues(
            limits, reactor, self.registry, self.keeper, self.connector, router,
            backpressure.to_peers,
        )
        metrics.count_queued(self.queues.waiting)
        router.attach_federation(self)

    # What the status pages read ------------------------------------------------

    @property
    def streams(self) -> set[S2SStream]:
        return self.registry.streams

    @property
    def warnings(self) -> Any:
        return self.authenticator.warnings

    @property
    def continuity(self) -> Continuity:
        return self.keeper.continuity

    def records_state(self) -> dict[str, Any]:
        return self.keeper.state()

    def queued(self, local_domain: str, peer_domain: str) -> int:
        return self.queues.queued(local_domain, peer_domain)

    def outbound_stream(self, local_domain: str, peer_domain: str) -> OutboundStream | None:
        """
        The outbound stream that carries stanzas from C{local_domain} to
        C{peer_domain} now, or L{None}.
        """
        return self.registry.outbound_stream((local_domain, peer_domain))

    # Admission and housekeeping ------------------------------------------------

    def admit(self, address: str | None) -> tuple[str, str] | None:
        return self.registry.admit(address)

    def sweep(self) -> None:
        """
        Housekeeping, every few seconds: close stalled and idle streams,
        write the summaries of refusal windows that ended, and see whether a
        failing record store is back.
        """
        self.registry.sweep()
        self.authenticator.keep_refusal_summaries()
        self.keeper.check()

    def park_quiet_parsers(self) -> None:
        self.registry.park_quiet_parsers()

    # IStreamOwner --------------------------------------------------------------

    def stream_opened(self, stream: S2SStream) -> None:
        self.registry.add(stream)
        if stream.direction == "inbound":
            self.backpressure.to_components.add_source(transport_of(stream))
        # Routine, and repeated by the authenticated and closed lines (which
        # name the address too): only at debug.
        if enabled(LogLevel.debug):
            log.debug(
                "s2s {direction} stream opened with {peer} at {address}",
                direction=stream.direction,
                peer=stream.peer_name() if stream.direction == "outbound" else "a peer",
                address=stream.peer_address(),
            )

    def verify_peer(
        self,
        direction: str,
        local_domain: str,
        peer_domain: str,
        stream: S2SStream,
        dialback_key: str | None = None,
    ) -> defer.Deferred[ChainResult]:
        return self.authenticator.verify_peer(
            direction, local_domain, peer_domain, stream, dialback_key
        )

    def stream_authenticated(
        self, stream: S2SStream, peer_domain: str, local_domain: str, result: ChainResult, via: str
    ) -> None:
        self.authenticator.authenticated(stream, peer_domain, local_domain, result, via)

    def authentication_refused(
        self,
        stream: S2SStream,
        direction: str,
        local_domain: str,
        peer_domain: str,
        result: ChainResult,
    ) -> None:
        self.authenticator.refused(stream, direction, local_domain, peer_domain, result)

    def stream_closing(self, stream: OutboundStream) -> None:
        """
        An outbound C{stream} sent its closing tag: stanzas from now on go
        to a new stream.
        """
        if self.registry.stop_carrying(stream):
            self.backpressure.to_peers.detach_sink(stream)

    def stream_closed(self, stream: S2SStream) -> None:
        self.authenticator.stream_closed(stream)
        self.backpressure.to_peers.detach_sink(stream)
        if stream.direction == "inbound":
            self.backpressure.to_components.remove_source(transport_of(stream))
        self.registry.remove(stream)
        tls = stream.tls
        log.info(
            "s2s {direction} {peer} at {address} stream closed after {stanzas_in} stanzas in, "
            "{stanzas_out} out; TLS {tls_version} {cipher}",
            direction=stream.direction,
            peer=stream.peer_name(),
            address=stream.peer_address(),
            tls_version=tls.version if tls else "none",
            cipher=tls.cipher if tls else "none",
            stanzas_in=stream.stanzas_in,
            stanzas_out=stream.stanzas_out,
            stream_id=stream.stream_id,
        )

    def resend(self, unacked: list[Entry], local_domain: str, peer_domain: str) -> None:
        self.queues.resend(unacked, local_domain, peer_domain)

    def verify_dialback_key(
        self, originating: str, receiving: str, stream_id: str, key: str
    ) -> defer.Deferred[bool]:
        return self.connector.verify_dialback_key(originating, receiving, stream_id, key)

    # What the router calls -----------------------------------------------------

    def send(self, stanza: domish.Element, local_domain: str, peer_domain: str) -> None:
        """
        Send C{stanza} from C{local_domain} to C{peer_domain}: at once on an
        authenticated stream, or queued while one is set up.
        """
        self.queues.send(stanza, local_domain, peer_domain)

    # Shutting down -------------------------------------------------------------

    def shut_down(self, grace: float = 2.0) -> defer.Deferred[None]:
        """
        Close every stream with C{system-shutdown} and bounce what is queued.

        @return: a Deferred that fires once every connection is closed; those
            still open after C{grace} seconds are aborted.
        """
        self.queues.shut_down()
        for stream in list(self.streams):
            stream.fail("system-shutdown", "the gateway is shutting down")
        emptied = self.registry.emptied()
        if emptied.called:
            return emptied

        def abort() -> None:
            for stream in list(self.streams):
                _connection(stream).abortConnection()

        timer = self.clock.callLater(grace, abort)

        def done(result: object) -> None:
            if timer.active():
                timer.cancel()

        return emptied.addBoth(done)


def _connection(stream: S2SStream) -> ITCPTransport:
    # A connected stream's transport: TCP, or TLS over it.
    return cast(ITCPTransport, stream.transport)
