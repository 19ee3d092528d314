"""
Keeping authentication records: every record goes to the store, and while
the store fails, known peers' records are held (a bounded number) to be
written once it is back.  Which peers count as known lives here too.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from gateway.log import Logger
from gateway.records.interfaces import IRecordStore
from gateway.records.record import AuthenticationRecord, time_iso
from gateway.s2s.continuity import Continuity
from gateway.s2s.throttle import LogThrottle, RefusalSummary

log = Logger()

#: While the record store is failing: at most this many records are held in
#: memory to be written when it is back (known peers are accepted while
#: there is room), of which at most L{REFUSALS_HELD} refusals.
RECORDS_HELD = 1000
REFUSALS_HELD = 500


class RecordKeeper:
    """
    Writes authentication records to C{store}, and knows whether it can.

    @param continuity: the certificates accepted before, read at start:
        a peer with one there is known.
    """

    def __init__(self, store: IRecordStore, clock: IReactorTime, continuity: Continuity) -> None:
        self.store = store
        self.clock = clock
        self.continuity = continuity
        self.available = True
        self.down_since: float | None = None
        self.lost = 0
        self.known_peers: set[str] = set()
        self._unwritten: list[AuthenticationRecord] = []
        self._logged = LogThrottle(clock)

    def known(self, peer_domain: str) -> bool:
        """
        Whether C{peer_domain} was accepted before: in this run, or (with a
        certificate) in the records read at start.
        """
        return peer_domain in self.known_peers or peer_domain in self.continuity.last

    def room(self) -> bool:
        """
        Whether a known peer may be accepted now: the store works, or there
        is room to hold its record.
        """
        return self.available or len(self._unwritten) < RECORDS_HELD

    def keep(self, record: AuthenticationRecord) -> None:
        """
        Write C{record} to the store, or, while the store is failing, hold
        it (a bounded number) to write when the store is back.
        """
        if record.authenticated:
            self.known_peers.add(record.peer_domain)
        if not self.available:
            self._hold(record)
            return
        d = self.store.add(record)
        d.addErrback(self._failed, record)

    def check(self) -> None:
        """
        While the store is failing: see whether it answers again.
        """
        if not self.available:
            d = self.store.recent(limit=1)
            d.addCallbacks(self._back, lambda failure: None)

    def keep_summaries(self, summaries: list[RefusalSummary]) -> None:
        """
        Write one record for each source whose refusals were counted rather
        than recorded: peer domain C{*} (several domains), method
        C{refused}, and in its evidence the source, the count, the time span
        and a sample of the domains.
        """
        for summary in summaries:
            self.keep(
                AuthenticationRecord(
                    peer_domain="*",
                    local_domain="*",
                    direction="inbound",
                    stream_id=None,
                    time=summary.last_time,
                    method="refused",
                    evidence={
                        "aggregated": True,
                        "source": summary.source,
                        "refusals": summary.count,
                        "first_time": time_iso(summary.first_time),
                        "last_time": time_iso(summary.last_time),
                        "domains": summary.domains,
                        "distinct_domains": summary.distinct_domains,
                    },
                    tls_version=None,
                    cipher=None,
                    certificate=None,
                    verdicts=(),
                    authenticated=False,
                    reason=(
                        f"{summary.count} more refusals from {summary.source} (for "
                        f"{summary.distinct_domains} domains), counted rather than recorded one "
                        "by one"
                    ),
                )
            )

    def state(self) -> dict[str, Any]:
        """
        The record store's health, for the status API.
        """
        return {
            "available": self.available,
            "unavailable_since": (
                time_iso(self.down_since) if self.down_since is not None else None
            ),
            "held": len(self._unwritten),
            "held_limit": RECORDS_HELD,
            "lost": self.lost,
            "accepting": "all peers" if self.available else (
                "no peers" if len(self._unwritten) >= RECORDS_HELD else "known peers only"
            ),
        }

    def _back(self, ignored: object) -> None:
        if self.available:
            return
        self.available = True
        self.down_since = None
        held, self._unwritten = self._unwritten, []
        log.info(
            "authentication records can be written again; taking new peers again and "
            "writing the {held} records held meanwhile",
            held=len(held),
        )
        for record in held:
            self.keep(record)

    def _hold(self, record: AuthenticationRecord) -> None:
        room = RECORDS_HELD if record.authenticated else REFUSALS_HELD
        if len(self._unwritten) < room:
            self._unwritten.append(record)
            return
        self.lost += 1
        lost = self._logged.due("lost")
        if lost is not None:
            log.error(
                "authentication record for {peer} lost: the store is failing and "
                "{held} records are already held ({lost} lost since the last line)",
                peer=record.peer_domain,
                held=len(self._unwritten),
                lost=lost,
            )

    def _failed(self, failure: Failure, record: AuthenticationRecord) -> None:
        if self.available:
            self.available = False
            self.down_since = self.clock.seconds()
            log.critical(
                "cannot store authentication records ({error}); until the store is back, only "
                "peers already known are accepted, and their records are held in memory "
                "(at most {held})",
                error=failure.getErrorMessage(),
                held=RECORDS_HELD,
            )
        if self._logged.due("failure") is not None:
            log.failure(
                "could not store the authentication record for {peer}", failure,
                peer=record.peer_domain,
            )
        self._hold(record)
