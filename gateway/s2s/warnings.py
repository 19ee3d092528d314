"""
Warnings for operators (RFC 7590 section 3.6): certificate changes and
refusals, newest first, bounded, until acknowledged.  The federation raises
them; the status interface (L{gateway.ops}) shows them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IReactorTime

from gateway.log import Logger
from gateway.s2s.throttle import LogThrottle

log = Logger()


@dataclass
class Warning:
    id: int
    time: float
    kind: str
    peer_domain: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    acknowledged: bool = False
    #: How many times it happened: a repeated refusal of the same peer
    #: counts here instead of adding a warning each time.
    count: int = 1
    first_time: float | None = None

    def as_dict(self) -> dict[str, Any]:
        from gateway.records.record import time_iso

        return {
            "id": self.id,
            "time": time_iso(self.time),
            "kind": self.kind,
            "peer_domain": self.peer_domain,
            "message": self.message,
            "details": dict(self.details),
            "acknowledged": self.acknowledged,
            "count": self.count,
            "first_time": time_iso(self.first_time if self.first_time is not None else self.time),
        }


class Warnings:
    """
    Warnings for operators, newest first, bounded in number.
    """

    def __init__(
        self,
        clock: IReactorTime,
        limit: int = 1000,
        on_acknowledge: Callable[[Warning], object] | None = None,
    ) -> None:
        self.clock = clock
        self.limit = limit
        self._warnings: list[Warning] = []
        self._ids = itertools.count(1)
        self._throttle = LogThrottle(clock, self.LOG_EVERY, keys=limit)
        self.on_acknowledge = on_acknowledge

    #: Kinds whose repeats, for the same peer (and the same C{source}
    #: detail, when there is one) and while unacknowledged, are counted in
    #: one warning (a peer refused a thousand times is one line, not a
    #: thousand); the log says so at most once a minute per peer.  When the
    #: list is full, these go first (and acknowledged ones), so that
    #: refusals can't push a certificate change out of sight.
    AGGREGATED = frozenset({"verification-failure", "repeated-refusals"})
    LOG_EVERY = 60.0

    def add(self, kind: str, peer_domain: str, message: str, **details: Any) -> Warning:
        now = self.clock.seconds()
        if kind in self.AGGREGATED:
            for warning in self._warnings:
                if (
                    (warning.kind, warning.peer_domain) == (kind, peer_domain)
                    and warning.details.get("source") == details.get("source")
                    and not warning.acknowledged
                ):
                    warning.count += 1
                    warning.time = now
                    warning.message = message
                    warning.details = details
                    self._warnings.remove(warning)
                    self._warnings.insert(0, warning)
                    self._log(warning)
                    return warning
        warning = Warning(next(self._ids), now, kind, peer_domain, message, details,
                          first_time=now)
        self._warnings.insert(0, warning)
        if len(self._warnings) > self.limit:
            self._evict()
        self._log(warning)
        return warning

    def _evict(self) -> None:
        for index in range(len(self._warnings) - 1, -1, -1):
            old = self._warnings[index]
            if old.acknowledged or old.kind in self.AGGREGATED:
                del self._warnings[index]
                return
        del self._warnings[self.limit:]

    def _log(self, warning: Warning) -> None:
        repeated = self._throttle.due(
            (warning.kind, warning.peer_domain, warning.details.get("source"))
        )
        if repeated is None:
            return
        log.warn(
            "warning for {peer}: {message}"
            + (" ({repeated} times since the last line)" if repeated > 1 else ""),
            peer=warning.peer_domain,
            message=warning.message,
            kind=warning.kind,
            repeated=repeated,
        )

    def list(self, include_acknowledged: bool = True) -> list[Warning]:
        return [w for w in self._warnings if include_acknowledged or not w.acknowledged]

    def acknowledge(self, warning_id: int) -> bool:
        for warning in self._warnings:
            if warning.id == warning_id:
                if not warning.acknowledged:
                    warning.acknowledged = True
                    if self.on_acknowledge is not None:
                        self.on_acknowledge(warning)
                return True
        return False
