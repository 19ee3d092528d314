"""
The record store interface: where the gateway keeps an
L{AuthenticationRecord<gateway.records.record.AuthenticationRecord>} for
every stream whose peer it checked.
"""

from dataclasses import dataclass

from twisted.internet.defer import Deferred
from zope.interface import Interface

from gateway.records.record import AuthenticationRecord


class RecordStoreError(Exception):
    """
    A record store can't be opened or used: its folder is missing, its
    file is not a database the gateway understands, or it is closed.
    """


class IRecordStore(Interface):
    """
    Keeps authentication records and answers questions about them.

    Every method returns a L{Deferred<twisted.internet.defer.Deferred>};
    none of them waits on a disk in the reactor's thread.  Listings are
    newest first: by C{time}, then, for records with the same C{time}, the
    one added last first.
    """

    def add(record: AuthenticationRecord) -> Deferred[None]:
        """
        Keep C{record}.

        @type record: L{gateway.records.record.AuthenticationRecord}
        @return: a Deferred firing with L{None} once the record is durably
            stored (it fails with L{TypeError} if C{record} is not an
            L{AuthenticationRecord} or is not JSON-serialisable, and with
            L{RecordStoreError} if the store is closed or unusable).
        """

    def for_peer(
        peer_domain: str, limit: int | None = 100
    ) -> Deferred[list[AuthenticationRecord]]:
        """
        The records of streams with C{peer_domain}, newest first.

        @param peer_domain: the peer's domain, spelled as in the records
            (the match is exact).
        @param limit: at most this many records; L{None} for all of them.
        @return: a Deferred firing with a L{list} of
            L{AuthenticationRecord}.
        """

    def recent(limit: int | None = 100) -> Deferred[list[AuthenticationRecord]]:
        """
        The records of streams with any peer, newest first.

        @param limit: at most this many records; L{None} for all of them.
        @return: a Deferred firing with a L{list} of
            L{AuthenticationRecord}.
        """

    def peer_summaries(
        limit: int | None = 100, after: str | None = None
    ) -> "Deferred[list[PeerSummary]]":
        """
        One summary per peer domain, in the order of their names, from the
        first name after C{after} (all if L{None}): at most C{limit}.

        @return: a Deferred firing with a L{list} of L{PeerSummary}.
        """

    def latest_accepted() -> Deferred[list[AuthenticationRecord]]:
        """
        For each peer domain, its newest record that accepted the peer with
        a certificate: what certificate continuity needs at start, without
        loading every record.

        @return: a Deferred firing with a L{list} of L{AuthenticationRecord},
            newest first.
        """

    def prune(before: float | None = None, keep: int | None = None) -> Deferred[int]:
        """
        Forget old records: those made before C{before} (POSIX seconds; no
        limit by age if L{None}), then all but the newest C{keep} (no limit
        by number if L{None}).

        @return: a Deferred firing with how many records were forgotten.
        """

    def close() -> Deferred[None]:
        """
        Finish the work already asked for, then release the store's
        resources (threads, files).  Later calls fail with
        L{RecordStoreError}; closing again does nothing.

        @return: a Deferred firing with L{None} once the store is closed.
        """


def check_limit(limit: int | None) -> int | None:
    """
    Check a listing's C{limit} as L{IRecordStore} defines it.

    @return: C{limit}, a non-negative L{int} or L{None} (no limit).
    @raise ValueError: C{limit} is negative or not an integer.
    """
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be a non-negative integer or None, not {limit!r}")
    return limit


@dataclass(frozen=True)
class PeerSummary:
    """
    What the records say of one peer domain, in short.

    @ivar certificates: how many different certificates it presented.
    """

    peer_domain: str
    last_time: float
    last_method: str
    last_authenticated: bool
    certificates: int

