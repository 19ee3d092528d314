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

import weakref

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()

_pauses = weakref.WeakKeyDictionary()


def pause(transport, reason):
    """
    Stop reading from C{transport} until every reason given is withdrawn
    (L{resume}).
    """
    reasons = _pauses.setdefault(transport, set())
    if not reasons:
        transport.pauseProducing()
    reasons.add(reason)


def resume(transport, reason):
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

    def __init__(self, clock, rate, burst):
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = clock.seconds()
        self.waiting = None
        self.started = self.last
        #: Bytes read in all; how often, and for how long, reading was held
        #: back.
        self.read = 0
        self.pauses = 0
        self.paused_seconds = 0.0

    def spent(self, transport, count):
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

    def _refill(self):
        """
        Add what the rate has paid since the last look, up to the burst.
        """
        now = self.clock.seconds()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now

    def _refilled(self, transport):
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

    def stop(self):
        if self.waiting is not None and self.waiting.active():
            self.waiting.cancel()
        self.waiting = None


class Valve:
    """
    @param name: for the log.
    @param sources: a callable returning the transports to pause and resume.
    @param on_full: called with a sink's key when its buffer fills up.
    @param on_drained: called with a sink's key when it has drained (or is
        detached).
    """

    def __init__(self, name, sources, on_full=None, on_drained=None):
        self.name = name
        self.sources = sources
        self.full = set()
        self.on_full = on_full
        self.on_drained = on_drained

    @property
    def closed(self):
        return bool(self.full)

    def attach_sink(self, transport, key):
        """
        Let C{transport} (a sink) close the valve while its buffer is full.
        """
        transport.registerProducer(_SinkProducer(self, key), True)

    def detach_sink(self, key):
        self.opened(key)

    def closed_by(self, key):
        if self.on_full is not None and key not in self.full:
            self.on_full(key)
        if not self.full:
            log.info("{valve}: a receiver is full; pausing its sources", valve=self.name)
            for transport in self.sources():
                pause(transport, self)
        self.full.add(key)

    def opened(self, key):
        if key not in self.full:
            return
        self.full.discard(key)
        if self.on_drained is not None:
            self.on_drained(key)
        if not self.full:
            log.info("{valve}: receivers drained; resuming", valve=self.name)
            for transport in self.sources():
                resume(transport, self)

    def new_source(self, transport):
        """
        A source that appears while the valve is closed starts paused.
        """
        if self.full:
            pause(transport, self)


@implementer(IPushProducer)
class _SinkProducer:
    def __init__(self, valve, key):
        self.valve = valve
        self.key = key

    def pauseProducing(self):
        self.valve.closed_by(self.key)

    def resumeProducing(self):
        self.valve.opened(self.key)

    def stopProducing(self):
        self.valve.opened(self.key)
