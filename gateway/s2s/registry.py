"""
The stream registry: every live s2s stream, the outbound stream that
carries each route now, who may open another, and the housekeeping of
streams that went quiet or stalled.
"""

from __future__ import annotations

import ipaddress
import itertools
from typing import TYPE_CHECKING, cast

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from gateway.log import Logger
from gateway.s2s.flow import ReadRate

if TYPE_CHECKING:
    from gateway.app.config import S2SConfig
    from gateway.s2s.outbound import OutboundStream
    from gateway.s2s.stream import S2SStream

log = Logger()

#: Seconds a stream must have carried nothing before its parser is put away.
PARK_AFTER = 1.0

#: A route: C{(local domain, peer domain)}.
Route = tuple[str, str]


def connection_source(address: str | None) -> str | None:
    """
    Whom a connection from C{address} counts against: an IPv4 address
    itself (an IPv4-mapped IPv6 address is one), an IPv6 address's /64.
    """
    if address is None:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class StreamRegistry:
    """
    Every live stream, in both directions, and the outbound stream of each
    route.

    @param limits: the C{[s2s]} settings (connection limits, C{read_rate},
        C{max_stanza_size}).
    @param idle_timeout: seconds an authenticated stream may carry nothing
        before L{sweep} closes it.
    @param stalled_timeout: seconds a peer may leave what we sent unread.
    """

    def __init__(
        self, clock: IReactorTime, limits: S2SConfig, idle_timeout: float, stalled_timeout: float
    ) -> None:
        self.clock = clock
        self.limits = limits
        self.idle_timeout = idle_timeout
        self.stalled_timeout = stalled_timeout
        self.streams: set[S2SStream] = set()
        self._outbound: dict[Route, OutboundStream] = {}
        self._serials = itertools.count(1)
        self._emptied: list[defer.Deferred[None]] = []

    def admit(self, address: str | None) -> tuple[str, str] | None:
        """
        Whether a new inbound connection from C{address} may be taken.

        Connections are counted per I{source}: an IPv4 address, or an IPv6
        /64 (one host can hold a whole /64, so counting its addresses one by
        one would be no limit).  Only live streams count: one closing (its
        connection still open for the closing handshake) no longer does.

        @return: L{None}, or C{(condition, text)} for the stream error that
            refuses it.  Existing streams are never touched.
        """
        limits = self.limits
        inbound = [s for s in self.streams if s.direction == "inbound" and not s.closed]
        if len(inbound) >= limits.max_connections:
            return ("resource-constraint", f"too many connections (limit {limits.max_connections})")
        unauthenticated = [s for s in inbound if not s.authenticated]
        if address is not None:
            source = connection_source(address)
            same = [s for s in inbound if s.source == source]
            if len(same) >= limits.max_connections_per_address:
                return (
                    "resource-constraint",
                    f"too many connections from {source} (limit {limits.max_connections_per_address})",
                )
            waiting = sum(1 for s in same if not s.authenticated)
            if waiting >= min(limits.max_unauthenticated_per_address, limits.max_unauthenticated):
                return (
                    "resource-constraint",
                    f"too many unauthenticated streams from {source} "
                    f"(limit {limits.max_unauthenticated_per_address})",
                )
        if len(unauthenticated) >= limits.max_unauthenticated:
            return (
                "resource-constraint",
                f"too many unauthenticated streams (limit {limits.max_unauthenticated})",
            )
        return None

    def add(self, stream: S2SStream) -> None:
        """
        C{stream} is connected: give it its serial, its source and (if the
        setting is on) its read limit, and count it.
        """
        read_rate = None
        if self.limits.read_rate:
            # Each peer gets its share of the one reactor thread, however
            # much it sends: ReadRate pauses reading past the rate.
            read_rate = ReadRate(
                self.clock,
                self.limits.read_rate,
                max(2 * self.limits.read_rate, self.limits.max_stanza_size),
            )
        peer = stream.transport.getPeer() if stream.transport is not None else None
        stream.registered(
            serial=f"s{next(self._serials)}",
            source=connection_source(getattr(peer, "host", None)),
            since=self.clock.seconds(),
            read_rate=read_rate,
        )
        self.streams.add(stream)

    def remove(self, stream: S2SStream) -> None:
        """
        C{stream}'s connection is gone.
        """
        self.streams.discard(stream)
        self.stop_carrying(stream)
        if not self.streams:
            emptied, self._emptied = self._emptied, []
            for d in emptied:
                d.callback(None)

    def emptied(self) -> defer.Deferred[None]:
        """
        @return: a Deferred that fires once no stream is left.
        """
        if not self.streams:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._emptied.append(d)
        return d

    # Routes ------------------------------------------------------------------

    def outbound_stream(self, route: Route) -> OutboundStream | None:
        """
        The outbound stream that carries C{route} now, or L{None}.
        """
        return self._outbound.get(route)

    def carry(self, route: Route, stream: OutboundStream) -> None:
        """
        C{stream} carries C{route} from now on.
        """
        self._outbound[route] = stream

    def stop_carrying(self, stream: S2SStream) -> bool:
        """
        C{stream} carries its route no longer (it is closing, or gone).

        @return: whether it did.
        """
        if stream.direction != "outbound":
            return False
        # Only outbound streams carry routes.
        outbound = cast("OutboundStream", stream)
        route = (outbound.local_domain, outbound.peer_domain)
        if self._outbound.get(route) is stream:
            del self._outbound[route]
            return True
        return False

    # Housekeeping ------------------------------------------------------------

    def sweep(self) -> None:
        """
        Close streams whose peer has not read what we sent for the stalled
        timeout, and authenticated streams idle for the idle timeout
        (gracefully: they reopen when needed).
        """
        now = self.clock.seconds()
        for stream in list(self.streams):
            stalled = stream.stalled_since
            if stalled is not None and now - stalled >= self.stalled_timeout and not stream.closed:
                # Writes count as activity, so the idle timeout would never
                # close a stream whose peer has stopped reading.
                stream.fail(
                    "connection-timeout",
                    f"nothing we sent was read for {now - stalled:.0f}s",
                )
                continue
            if stream.authenticated and now - stream.last_activity >= self.idle_timeout:
                log.info(
                    "s2s {direction} {peer}: closing, idle for {seconds:.0f}s",
                    direction=stream.direction,
                    peer=stream.peer_name(),
                    seconds=now - stream.last_activity,
                )
                stream.close(linger=True)

    def park_quiet_parsers(self) -> None:
        """
        Put away the XML parsers of streams that have carried nothing for
        L{PARK_AFTER} seconds (about 10 KiB each; the next read brings one
        back).
        """
        quiet_since = self.clock.seconds() - PARK_AFTER
        for stream in self.streams:
            if stream.last_activity <= quiet_since:
                stream.park_parser()
