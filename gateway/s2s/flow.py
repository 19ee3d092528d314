"""
Backpressure: a side that doesn't read makes the gateway stop reading from
the side that feeds it, instead of buffering without end.

Stanzas flow from components to outbound s2s streams, and from inbound s2s
streams to components.  A L{Valve} joins each pair of sides: every
receiving transport (a I{sink}) gets a producer from the valve; when any
sink's write buffer fills up, Twisted pauses that producer, and the valve
pauses reading from every source; when every sink has drained, reading
resumes.  It is coarse — all sources wait for the slowest sink — but it
bounds memory, and a sink that stays full is eventually closed by its idle
or authentication timeouts.

A L{ReadRate} limits how fast the gateway reads one stream (a token bucket
in bytes), so that one peer, however much it sends, gets only its share of
the one reactor thread.

Both pause a transport for a reason of their own (L{pause}, L{resume}): it
reads again only when no reason is left, so neither undoes the other.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol, cast

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import BaseProtocol
from zope.interface import implementer

from gateway.log import Logger

log = Logger()


class Transport(Protocol):
    """
    What flow control needs of a transport: Twisted's TCP and TLS
    transports are push producers and consumers.
    """

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def registerProducer(self, producer: object, streaming: bool) -> None: ...


def transport_of(protocol: BaseProtocol) -> Transport:
    """
    The transport of connected C{protocol}, as flow control takes it.
    Twisted's TCP and TLS transports are also the push producers and
    consumers flow control pauses; no single interface says all that.
    """
    return cast(Transport, protocol.transport)


def send_at_once(protocol: BaseProtocol) -> None:
    """
    Turn off Nagle's algorithm (C{TCP_NODELAY}) on C{protocol}'s
    connection, through TLS if any: a handshake's small writes would
    otherwise wait for the peer's delayed acknowledgement, some 40 ms a
    turn.  Writes are still gathered per reactor turn by the transport's
    buffer.  Connections with no TCP under them (UNIX sockets) are left as
    they are.
    """
    set_no_delay = getattr(protocol.transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        try:
            set_no_delay(True)
        except OSError:  # the connection is already gone
            pass


_pauses: weakref.WeakKeyDictionary[Transport, set[object]] = weakref.WeakKeyDictionary()


def pause(transport: Transport, reason: object) -> None:
    """
    Stop reading from C{transport} until every reason given is withdrawn
    (L{resume}).
    """
    reasons = _pauses.setdefault(transport, set())
    if not reasons:
        transport.pauseProducing()
    reasons.add(reason)


def resume(transport: Transport, reason: object) -> None:
    """
    Withdraw C{reason} for pausing C{transport}; read again if it was the
    last.
    """
    reasons = _pauses.get(transport)
    if not reasons or reason not in reasons:
        return
    reasons.discard(reason)
    if not reasons:
        transport.resumeProducing()


class ReadRate:
    """
    Read at most C{rate} bytes a second from a transport, on average, with
    bursts of up to C{burst} bytes: past that, reading stops until the
    bucket has refilled.  What was read is handled at once; only the next
    reads wait.
    """

    def __init__(self, clock: IReactorTime, rate: float, burst: float) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = clock.seconds()
        self.waiting: IDelayedCall | None = None
        self.started = self.last
        #: Bytes read in all; how often, and for how long, reading was held
        #: back.
        self.read = 0
        self.pauses = 0
        self.paused_seconds = 0.0

    def spent(self, transport: Transport, count: int) -> None:
        """
        C{count} bytes were read from C{transport}.
        """
        self._refill()
        self.tokens -= count
        self.read += count
        if self.tokens < 0 and self.waiting is None:
            delay = -self.tokens / self.rate
            self.pauses += 1
            self.paused_seconds += delay
            pause(transport, self)
            self.waiting = self.clock.callLater(delay, self._refilled, transport)

    def _refill(self) -> None:
        """
        Add what the rate has paid since the last look, up to the burst.
        """
        now = self.clock.seconds()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now

    def _refilled(self, transport: Transport) -> None:
        # What was read after the pause began (the rest of that read) is
        # paid for before reading again.
        self._refill()
        if self.tokens < 0:
            delay = -self.tokens / self.rate
            self.paused_seconds += delay
            self.waiting = self.clock.callLater(delay, self._refilled, transport)
            return
        self.waiting = None
        resume(transport, self)

    def stop(self) -> None:
        if self.waiting is not None and self.waiting.active():
            self.waiting.cancel()
        self.waiting = None


class Valve:
    """
    Joins the transports that feed one side (I{sources}) to those that
    receive (I{sinks}).

    @param name: for the log.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.sources: set[Transport] = set()
        self.full: set[Hashable] = set()
        self._callbacks: dict[Hashable, tuple[Callable[[], None] | None, Callable[[], None] | None]] = {}

    @property
    def closed(self) -> bool:
        return bool(self.full)

    def add_source(self, transport: Transport) -> None:
        """
        C{transport} feeds the sinks; one that appears while the valve is
        closed starts paused.
        """
        self.sources.add(transport)
        if self.full:
            pause(transport, self)

    def remove_source(self, transport: Transport) -> None:
        self.sources.discard(transport)

    def attach_sink(
        self,
        transport: Transport,
        key: Hashable,
        on_full: Callable[[], None] | None = None,
        on_drained: Callable[[], None] | None = None,
    ) -> None:
        """
        Let C{transport} (a sink) close the valve while its buffer is full.

        @param on_full: called when its buffer fills up.
        @param on_drained: called when it has drained (or is detached).
        """
        self._callbacks[key] = (on_full, on_drained)
        transport.registerProducer(_SinkProducer(self, key), True)

    def detach_sink(self, key: Hashable) -> None:
        self.opened(key)
        self._callbacks.pop(key, None)

    def closed_by(self, key: Hashable) -> None:
        on_full, _ = self._callbacks.get(key, (None, None))
        if on_full is not None and key not in self.full:
            on_full()
        if not self.full:
            log.info("{valve}: a receiver is full; pausing its sources", valve=self.name)
            for transport in self.sources:
                pause(transport, self)
        self.full.add(key)

    def opened(self, key: Hashable) -> None:
        if key not in self.full:
            return
        self.full.discard(key)
        _, on_drained = self._callbacks.get(key, (None, None))
        if on_drained is not None:
            on_drained()
        if not self.full:
            log.info("{valve}: receivers drained; resuming", valve=self.name)
            for transport in self.sources:
                resume(transport, self)


@dataclass(frozen=True)
class Backpressure:
    """
    The two valves of the gateway: components feed the outbound streams
    (C{to_peers}), inbound streams feed the components (C{to_components}).
    """

    to_peers: Valve = field(default_factory=lambda: Valve("components to peers"))
    to_components: Valve = field(default_factory=lambda: Valve("peers to components"))


@implementer(IPushProducer)
class _SinkProducer:
    def __init__(self, valve: Valve, key: Hashable) -> None:
        self.valve = valve
        self.key = key

    def pauseProducing(self) -> None:
        self.valve.closed_by(self.key)

    def resumeProducing(self) -> None:
        self.valve.opened(self.key)

    def stopProducing(self) -> None:
        self.valve.opened(self.key)
