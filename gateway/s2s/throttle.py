"""
Bounding what a peer can make the gateway write about it: L{LogThrottle}
for log lines, L{RefusalTally} for refusal records.
"""

from collections.abc import Hashable
from dataclasses import dataclass, field

from twisted.internet.interfaces import IReactorTime


class LogThrottle:
    """
    At most one log line per key (a peer, a kind of warning) every C{every}
    seconds, so that what a peer can make happen over and over can't fill
    the log; the line that is logged says how many events it stands for.
    At most C{keys} keys are remembered (the oldest forgotten first).
    """

    def __init__(self, clock: IReactorTime, every: float = 60.0, keys: int = 10_000) -> None:
        self.clock = clock
        self.every = every
        self.keys = keys
        # key -> (when its last line was logged, events not logged since)
        self._state: dict[Hashable, tuple[float | None, int]] = {}

    def due(self, key: Hashable) -> int | None:
        """
        Count one event for C{key}.

        @return: L{None} when it must not be logged now; else how many
            events the line stands for (this one, and those not logged
            since the last line).
        """
        now = self.clock.seconds()
        last, pending = self._state.get(key, (None, 0))
        pending += 1
        if last is not None and now - last < self.every:
            self._state[key] = (last, pending)
            return None
        self._state.pop(key, None)
        self._state[key] = (now, 0)
        if len(self._state) > self.keys:
            self._state.pop(next(iter(self._state)))
        return pending


@dataclass
class RefusalSummary:
    """
    The refusals from one source that were counted, not recorded one by
    one, in one window.
    """

    #: The source (L{gateway.s2s.registry.connection_source}); L{None}
    #: for a connection with no IP address.
    source: str | None
    count: int
    first_time: float
    last_time: float
    #: The first few domains refused (at most L{RefusalTally.SAMPLE}).
    domains: list[str]
    #: How many different domains that sample was taken from, counted up to
    #: L{RefusalTally.DISTINCT}.
    distinct_domains: int


@dataclass
class _Window:
    """
    One source's refusals in its current window (C{first} and C{last} mean
    something once C{count} does).
    """

    start: float
    recorded: int = 0
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    domains: list[str] = field(default_factory=list)
    distinct: set[str] = field(default_factory=set)


class RefusalTally:
    """
    Refusals counted per source (an IPv4 address or an IPv6 /64) in
    windows of C{every} seconds.  In each window, the first C{allowance}
    refusals of a source, and at most C{total} of all sources together,
    are recorded one by one; the rest are counted, and each source's count
    is summed up in one L{RefusalSummary} when its window ends.  A peer that
    claims a new random domain on every try so makes one record a minute,
    not one per try.  At most C{sources} sources are followed; when more
    turn up, the oldest window is summed up early.
    """

    SAMPLE = 10
    DISTINCT = 1000

    def __init__(
        self,
        clock: IReactorTime,
        allowance: int = 10,
        total: int = 100,
        every: float = 60.0,
        sources: int = 10_000,
    ) -> None:
        self.clock = clock
        self.allowance = allowance
        self.total = total
        self.every = every
        self.sources = sources
        self._windows: dict[str | None, _Window] = {}
        # (when the window of all sources began, refusals recorded in it)
        self._total_window: tuple[float | None, int] = (None, 0)
        self._ended: list[RefusalSummary] = []

    def count(self, source: str | None, peer_domain: str) -> bool:
        """
        Count a refusal of C{peer_domain} from C{source}.

        @return: C{True} if it is to be recorded in full, C{False} if it
            was counted into the source's summary.
        """
        now = self.clock.seconds()
        start, all_recorded = self._total_window
        if start is None or now - start >= self.every:
            start, all_recorded = now, 0
        window = self._windows.get(source)
        if window is not None and now - window.start >= self.every:
            self._end(source)
            window = None
        if window is None:
            window = self._windows[source] = _Window(now)
            if len(self._windows) > self.sources:
                self._end(next(iter(self._windows)))
        if window.recorded < self.allowance and all_recorded < self.total:
            window.recorded += 1
            self._total_window = (start, all_recorded + 1)
            return True
        self._total_window = (start, all_recorded)
        if not window.count:
            window.first = now
        window.count += 1
        window.last = now
        if peer_domain not in window.distinct and len(window.distinct) < self.DISTINCT:
            window.distinct.add(peer_domain)
            if len(window.domains) < self.SAMPLE:
                window.domains.append(peer_domain)
        return False

    def _end(self, source: str | None) -> None:
        window = self._windows.pop(source)
        if window.count:
            self._ended.append(
                RefusalSummary(
                    source,
                    window.count,
                    window.first,
                    window.last,
                    window.domains,
                    len(window.distinct),
                )
            )

    def due(self) -> list[RefusalSummary]:
        """
        The summaries of the windows that have ended (each given once).
        """
        now = self.clock.seconds()
        for source in [s for s, w in self._windows.items() if now - w.start >= self.every]:
            self._end(source)
        ended, self._ended = self._ended, []
        return ended
