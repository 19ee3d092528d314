"""
An in-memory L{IRecordStore}, for tests: the gateway's and plugin
authors'.  It behaves as L{SQLiteRecordStore<gateway.records.sqlite.
SQLiteRecordStore>} does, down to refusing records that are not
JSON-serialisable and returning copies, but its Deferreds have already
fired, so it works in a L{SynchronousTestCase<twisted.trial.unittest.
SynchronousTestCase>}.
"""

import itertools
import json
from collections.abc import Callable, Iterable
from typing import TypeAlias, TypeVar

from twisted.internet import defer
from zope.interface import implementer

from gateway.records.interfaces import IRecordStore, PeerSummary, RecordStoreError, check_limit
from gateway.records.record import AuthenticationRecord

#: A record kept: C{(time, sequence, peer_domain, JSON)}.
_Row: TypeAlias = tuple[float, int, str, str]

_T = TypeVar("_T")


@implementer(IRecordStore)
class MemoryRecordStore:
    """
    Keeps records in a list.

    @ivar closed: whether L{close} was called.
    """

    def __init__(self) -> None:
        # (time, sequence, peer_domain, JSON) per record: the JSON is a snapshot, so a
        # caller changing a record's evidence dict afterwards changes
        # nothing here, as with a database.
        self._rows: list[_Row] = []
        self._sequence = itertools.count()
        self.closed = False

    @property
    def records(self) -> list[AuthenticationRecord]:
        """
        Every record kept, in the order they were added (copies).
        """
        rows = sorted(self._rows, key=lambda row: row[1])
        return [self._load(row) for row in rows]

    def start(self) -> defer.Deferred[None]:
        """
        Nothing to prepare; for parity with L{SQLiteRecordStore}.
        """
        return self._guard(lambda: None)

    def add(self, record: AuthenticationRecord) -> defer.Deferred[None]:
        def store() -> None:
            if not isinstance(record, AuthenticationRecord):
                raise TypeError(f"expected an AuthenticationRecord, not {record!r}")
            try:
                encoded = json.dumps(record.as_dict(), allow_nan=False)
            except ValueError as error:  # NaN or infinity
                raise TypeError(f"record is not JSON-serialisable: {error}") from error
            self._rows.append(
                (record.time, next(self._sequence), record.peer_domain, encoded)
            )

        return self._guard(store)

    def for_peer(
        self, peer_domain: str, limit: int | None = 100
    ) -> defer.Deferred[list[AuthenticationRecord]]:
        return self._guard(
            lambda: self._newest(
                (row for row in self._rows if row[2] == peer_domain), limit
            )
        )

    def recent(self, limit: int | None = 100) -> defer.Deferred[list[AuthenticationRecord]]:
        return self._guard(lambda: self._newest(self._rows, limit))

    def peer_summaries(
        self, limit: int | None = 100, after: str | None = None
    ) -> defer.Deferred[list[PeerSummary]]:
        def summaries() -> list[PeerSummary]:
            by_peer: dict[str, list[_Row]] = {}
            for row in sorted(self._rows, key=lambda row: (row[0], row[1])):
                by_peer.setdefault(row[2], []).append(row)
            names = sorted(name for name in by_peer if after is None or name > after)
            chosen = []
            for name in names[:check_limit(limit)] if limit is not None else names:
                records = [self._load(row) for row in by_peer[name]]
                latest = records[-1]
                chosen.append(PeerSummary(
                    name, latest.time, latest.method, latest.authenticated,
                    len({r.certificate["sha256"] for r in records if r.certificate}),
                ))
            return chosen

        return self._guard(summaries)

    def latest_accepted(self) -> defer.Deferred[list[AuthenticationRecord]]:
        def latest() -> list[AuthenticationRecord]:
            seen: set[str] = set()
            chosen = []
            for row in sorted(self._rows, key=lambda row: (row[0], row[1]), reverse=True):
                record = self._load(row)
                if record.authenticated and record.certificate and row[2] not in seen:
                    seen.add(row[2])
                    chosen.append(record)
            return chosen

        return self._guard(latest)

    def prune(
        self, before: float | None = None, keep: int | None = None
    ) -> defer.Deferred[int]:
        def prune() -> int:
            count = len(self._rows)
            rows = self._rows
            if before is not None:
                rows = [row for row in rows if row[0] >= before]
            if keep is not None:
                rows = sorted(rows, key=lambda row: (row[0], row[1]), reverse=True)[:keep]
            self._rows = sorted(rows, key=lambda row: row[1])
            return count - len(self._rows)

        return self._guard(prune)

    def close(self) -> defer.Deferred[None]:
        self.closed = True
        return defer.succeed(None)

    def _guard(self, work: Callable[[], _T]) -> defer.Deferred[_T]:
        if self.closed:
            return defer.fail(RecordStoreError("the record store is closed"))
        try:
            return defer.succeed(work())
        except Exception:
            return defer.fail()

    def _newest(self, rows: Iterable[_Row], limit: int | None) -> list[AuthenticationRecord]:
        limit = check_limit(limit)
        newest = sorted(rows, key=lambda row: (row[0], row[1]), reverse=True)
        if limit is not None:
            newest = newest[:limit]
        return [self._load(row) for row in newest]

    @staticmethod
    def _load(row: _Row) -> AuthenticationRecord:
        return AuthenticationRecord.from_dict(json.loads(row[3]))
