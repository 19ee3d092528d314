"""
Stanzas on their way to peers: sent at once on the route's stream, or
queued (bounded, in count and bytes) while a stream is set up; sent again
once when a stream dropped them unacknowledged; bounced with an error when
they can't go.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.words.xish import domish

from gateway.log import Logger
from gateway.s2s.flow import Valve, transport_of
from gateway.s2s.keeper import RecordKeeper
from gateway.s2s.outbound import NegotiationFailure, OutboundStream
from gateway.s2s.registry import Route, StreamRegistry
from gateway.s2s.stream import header_bytes, stanza_bytes
from gateway.xmpp.parser import element_from_bytes

if TYPE_CHECKING:
    from gateway.app.config import S2SConfig

log = Logger()

#: The namespace context that stanzas serialised for a stream are parsed in
#: again (L{gateway.s2s.stream.serialise} writes for it).
SERVER_CONTEXT = header_bytes({})

#: A queued stanza: its bytes as they will be sent, and whether it is being
#: sent again.
Entry = tuple[bytes, bool]


class Bouncer(Protocol):
    """
    Answers a stanza that can't be delivered
    (L{gateway.components.routing.Router.bounce}).
    """

    def bounce(self, stanza: domish.Element, condition: str, text: str | None = None) -> None: ...


class StreamOpener(Protocol):
    """
    Sets up authenticated streams (L{gateway.s2s.connector.Connector}).
    """

    authentication_timeout: float

    def open_stream(self, local_domain: str, peer_domain: str) -> defer.Deferred[OutboundStream]: ...


class OutboundQueues:
    """
    Sends stanzas from local domains to peers.

    @param to_peers: the L{Valve} whose sinks are the outbound streams.
    """

    def __init__(
        self,
        limits: S2SConfig,
        clock: IReactorTime,
        registry: StreamRegistry,
        keeper: RecordKeeper,
        connector: StreamOpener,
        bouncer: Bouncer,
        to_peers: Valve,
    ) -> None:
        self.limits = limits
        self.clock = clock
        self.registry = registry
        self.keeper = keeper
        self.connector = connector
        self.bouncer = bouncer
        self.to_peers = to_peers
        self.shutting_down = False
        self._queues: dict[Route, list[Entry]] = {}
        self._queue_bytes: dict[Route, int] = {}
        self._queued_bytes = 0
        self._connecting: dict[Route, defer.Deferred[OutboundStream]] = {}

    def waiting(self) -> int:
        """
        How many stanzas wait for streams, on every route.
        """
        return sum(len(q) for q in self._queues.values())

    def waiting_bytes(self) -> int:
        """
        How many bytes of stanzas wait for streams, on every route.
        """
        return self._queued_bytes

    def queued(self, local_domain: str, peer_domain: str) -> int:
        return len(self._queues.get((local_domain, peer_domain), ()))

    def send(self, stanza: domish.Element, local_domain: str, peer_domain: str) -> None:
        """
        Send C{stanza} from C{local_domain} to C{peer_domain}: at once on an
        authenticated stream, or queued while one is set up.
        """
        route = (local_domain, peer_domain)
        bounce = self.bouncer.bounce
        if self.shutting_down:
            bounce(stanza, "service-unavailable", "the gateway is shutting down")
            return
        stream = self.registry.outbound_stream(route)
        if stream is not None and not (stream.closed or stream.closing):
            self._send_on(stream, stanza)
            return
        queue = self._queues.get(route)
        limits = self.limits
        if self.waiting() >= limits.queue_limit_total:
            bounce(
                stanza,
                "resource-constraint",
                f"too many stanzas waiting for streams (limit {limits.queue_limit_total})",
            )
            return
        if (
            not self.keeper.available
            and stream is None
            and queue is None
            and not self.keeper.known(peer_domain)
        ):
            bounce(
                stanza,
                "internal-server-error",
                "authentications can't be recorded right now, and this peer is not known yet",
            )
            return
        # Queued as the bytes it will be sent as, counted against the byte
        # limits (a few large stanzas would pass any count).
        data = stanza_bytes(stanza)
        if self._queued_bytes + len(data) > limits.queue_limit_total_bytes:
            bounce(
                stanza,
                "resource-constraint",
                f"too many bytes waiting for streams (limit {limits.queue_limit_total_bytes})",
            )
            return
        entry = (data, getattr(stanza, "resent", False))
        if queue is None:
            # Queue first: the attempt may fail (and bounce the queue) at once.
            self._queues[route] = [entry]
            self._queue_bytes[route] = len(data)
            self._queued_bytes += len(data)
            self._connect(route)
            return
        if len(queue) >= limits.queue_limit:
            bounce(
                stanza,
                "resource-constraint",
                f"too many stanzas waiting for {peer_domain} (limit {limits.queue_limit})",
            )
            return
        if self._queue_bytes[route] + len(data) > limits.queue_limit_bytes:
            bounce(
                stanza,
                "resource-constraint",
                f"too many bytes waiting for {peer_domain} (limit {limits.queue_limit_bytes})",
            )
            return
        queue.append(entry)
        self._queue_bytes[route] += len(data)
        self._queued_bytes += len(data)

    def resend(self, unacked: list[Entry], local_domain: str, peer_domain: str) -> None:
        """
        Stanzas an outbound stream sent but the peer never acknowledged
        (XEP-0198) before the connection dropped, as C{(bytes, resent)}
        pairs: send them again on a new stream, once; one that was already
        sent again is bounced instead, so that a peer that keeps dropping
        can't loop.
        """
        if self.shutting_down:
            log.warn(
                "s2s outbound {peer}: {count} stanzas were not acknowledged before the "
                "gateway shut down; they may not have arrived",
                peer=peer_domain,
                count=len(unacked),
            )
            return
        log.info(
            "s2s outbound {peer}: {count} stanzas not acknowledged before the stream "
            "ended; sending them again",
            peer=peer_domain,
            count=len(unacked),
        )
        for data, resent in unacked:
            stanza = element_from_bytes(data, SERVER_CONTEXT)
            if resent:
                self.bouncer.bounce(
                    stanza, "remote-server-timeout", f"{peer_domain} never acknowledged it"
                )
                continue
            # A mark the stream or the queue that takes it reads (getattr).
            stanza.resent = True  # type: ignore[attr-defined]
            self.send(stanza, local_domain, peer_domain)

    def shut_down(self) -> None:
        """
        Take nothing more; give up the streams being set up (their queues
        are bounced).
        """
        self.shutting_down = True
        for d in list(self._connecting.values()):
            d.cancel()

    def _send_on(self, stream: OutboundStream, stanza: domish.Element) -> None:
        refusal = self._over_limits(stream)
        if refusal is not None:
            self.bouncer.bounce(stanza, "resource-constraint", refusal)
            return
        stream.send_stanza(stanza)

    def _over_limits(self, stream: OutboundStream) -> str | None:
        """
        Why C{stream} must take nothing more now, or L{None}: the peer has
        not acknowledged C{max_unacked_bytes}, or has not read
        C{max_stalled_bytes} written since its send buffer filled up.
        """
        limits = self.limits
        if stream.unacked_bytes >= limits.max_unacked_bytes:
            return (
                f"{stream.peer_domain} has not acknowledged {stream.unacked_bytes} bytes "
                f"(limit {limits.max_unacked_bytes})"
            )
        if (
            stream.stalled_since is not None
            and stream.bytes_out - stream.stalled_from >= limits.max_stalled_bytes
        ):
            return (
                f"{stream.peer_domain} is not reading: {stream.bytes_out - stream.stalled_from} "
                f"bytes wait to be sent (limit {limits.max_stalled_bytes})"
            )
        return None

    def _take_queue(self, route: Route) -> list[Entry]:
        """
        The stanzas waiting for C{route}, as C{(bytes, resent)} pairs, no
        longer counted as waiting.
        """
        queue = self._queues.pop(route, [])
        self._queued_bytes -= self._queue_bytes.pop(route, 0)
        return queue

    def _bounce_queued(self, entry: Entry, condition: str, text: str | None) -> None:
        data, _ = entry
        self.bouncer.bounce(element_from_bytes(data, SERVER_CONTEXT), condition, text)

    def _connect(self, route: Route) -> None:
        local_domain, peer_domain = route
        d = self.connector.open_stream(local_domain, peer_domain)
        self._connecting[route] = d
        d.addCallbacks(self._ready, self._failed, callbackArgs=(route,), errbackArgs=(route,))
        d.addErrback(lambda f: log.failure("routing to {peer}", f, peer=peer_domain))

    def _ready(self, stream: OutboundStream, route: Route) -> None:
        del self._connecting[route]
        self.registry.carry(route, stream)
        self.to_peers.attach_sink(
            transport_of(stream), stream, on_full=stream.sink_full, on_drained=stream.sink_drained
        )
        for data, resent in self._take_queue(route):
            refusal = self._over_limits(stream)
            if refusal is not None:
                self._bounce_queued((data, resent), "resource-constraint", refusal)
                continue
            stream.send_serialised(data, resent)

    def _failed(self, failure: Failure, route: Route) -> None:
        del self._connecting[route]
        local_domain, peer_domain = route
        error = failure.value
        if isinstance(error, NegotiationFailure):
            condition, text = error.condition, error.text
        elif failure.check(defer.TimeoutError, defer.CancelledError):
            condition = "remote-server-timeout"
            text = (
                f"no authenticated stream to {peer_domain} within "
                f"{self.connector.authentication_timeout}s"
            )
        else:
            log.failure("s2s outbound {peer}: unexpected failure", failure, peer=peer_domain)
            condition, text = "internal-server-error", "the stream could not be set up"
        queue = self._take_queue(route)
        log.info(
            "s2s outbound {peer} for {local} failed: {condition} ({text}); bouncing {count} stanzas",
            peer=peer_domain,
            local=local_domain,
            condition=condition,
            text=text,
            count=len(queue),
        )
        for entry in queue:
            self._bounce_queued(entry, condition, text)
