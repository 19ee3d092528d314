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
"""

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()


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
                transport.pauseProducing()
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
                transport.resumeProducing()

    def new_source(self, transport):
        """
        A source that appears while the valve is closed starts paused.
        """
        if self.full:
            transport.pauseProducing()


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
