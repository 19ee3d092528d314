"""
The gateway's record store: a SQLite file in the state folder.

Every database call runs in the one thread of a
L{ConnectionPool<twisted.enterprise.adbapi.ConnectionPool>}, so the reactor
never waits on the disk.  With one thread and one connection, calls run in
the order they were made.

The database is opened, and its schema made, when the pool's thread first
needs the connection: by L{SQLiteRecordStore.start} (which the service
calls, so that a bad file is reported at startup) or, if C{start} was not
called, by the first L{add}, L{for_peer} or L{recent}.  The schema is
versioned with C{PRAGMA user_version} (L{SCHEMA_VERSION}); the database uses
write-ahead logging (C{journal_mode=WAL}) with C{synchronous=FULL}, so a
record is on disk when L{add}'s Deferred fires.
"""

import json
import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeAlias, TypeVar

from twisted.enterprise import adbapi
from twisted.internet import defer, threads
from twisted.internet.interfaces import IDelayedCall
from twisted.python import failure
from zope.interface import implementer

from gateway.log import Logger
from gateway.records.interfaces import IRecordStore, PeerSummary, RecordStoreError, check_limit
from gateway.records.record import JSON, AuthenticationRecord

log = Logger()

#: A reactor that provides L{IReactorTime<twisted.internet.interfaces.IReactorTime>},
#: L{IReactorCore<twisted.internet.interfaces.IReactorCore>} and
#: L{IReactorFromThreads<twisted.internet.interfaces.IReactorFromThreads>}:
#: zope.interface has no type for a provider of several interfaces.
StoreReactor: TypeAlias = Any

#: The values of a record's L{COLUMNS}.
Row: TypeAlias = tuple[
    float, str, str, str, str | None, str, int, str, str | None, str | None, str, str | None, str
]

#: The values bound to a query's placeholders.
Parameters: TypeAlias = tuple[str | float | None, ...]

_T = TypeVar("_T")
_R = TypeVar("_R")

#: The schema version this module writes and reads (C{PRAGMA user_version}).
SCHEMA_VERSION = 1

#: Made in one transaction on a database whose C{user_version} is 0.
SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS authentication (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    peer_domain TEXT NOT NULL,
    local_domain TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    stream_id TEXT,
    method TEXT NOT NULL,
    authenticated INTEGER NOT NULL,
    reason TEXT NOT NULL,
    tls_version TEXT,
    cipher TEXT,
    evidence TEXT NOT NULL,
    certificate TEXT,
    verdicts TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS authentication_time
    ON authentication (time);
CREATE INDEX IF NOT EXISTS authentication_peer_domain_time
    ON authentication (peer_domain, time);
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""

#: The columns of a record, in the order of L{_row} and the queries.
COLUMNS = (
    "time",
    "peer_domain",
    "local_domain",
    "direction",
    "stream_id",
    "method",
    "authenticated",
    "reason",
    "tls_version",
    "cipher",
    "evidence",
    "certificate",
    "verdicts",
)

INSERT = "INSERT INTO authentication ({}) VALUES ({})".format(
    ", ".join(COLUMNS), ", ".join("?" for _ in COLUMNS)
)
SELECT = "SELECT {} FROM authentication".format(", ".join(COLUMNS))
# Newest first; the id breaks ties between records with the same time, so
# that the one added last comes first.
NEWEST_FIRST = "ORDER BY time DESC, id DESC LIMIT ?"


def _json(value: JSON) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _row(record: AuthenticationRecord) -> Row:
    """
    The values of C{record}'s columns, in L{COLUMNS} order.

    @raise TypeError: C{record} is not an L{AuthenticationRecord}, or
        C{evidence}, C{certificate} or C{verdicts} is not JSON-serialisable.
    """
    if not isinstance(record, AuthenticationRecord):
        raise TypeError(f"expected an AuthenticationRecord, not {record!r}")
    try:
        evidence = _json(record.evidence)
        certificate = None if record.certificate is None else _json(record.certificate)
        verdicts = _json(list(record.verdicts))
    except ValueError as error:  # NaN or infinity
        raise TypeError(f"record is not JSON-serialisable: {error}") from error
    return (
        record.time,
        record.peer_domain,
        record.local_domain,
        record.direction,
        record.stream_id,
        record.method,
        int(record.authenticated),
        record.reason,
        record.tls_version,
        record.cipher,
        evidence,
        certificate,
        verdicts,
    )


def _record(row: Sequence[Any]) -> AuthenticationRecord:
    """
    The L{AuthenticationRecord} a row of L{COLUMNS} holds.
    """
    values = dict(zip(COLUMNS, row))
    certificate = values["certificate"]
    return AuthenticationRecord(
        peer_domain=values["peer_domain"],
        local_domain=values["local_domain"],
        direction=values["direction"],
        stream_id=values["stream_id"],
        time=values["time"],
        method=values["method"],
        evidence=json.loads(values["evidence"]),
        tls_version=values["tls_version"],
        cipher=values["cipher"],
        certificate=None if certificate is None else json.loads(certificate),
        verdicts=tuple(json.loads(values["verdicts"])),
        authenticated=bool(values["authenticated"]),
        reason=values["reason"],
    )


#: Seconds a record waits for others to be written with it.
BATCH_DELAY = 0.05


@implementer(IRecordStore)
class SQLiteRecordStore:
    """
    Authentication records in a SQLite file.

    @ivar path: the database file.
    """

    def __init__(
        self, path: str | os.PathLike[str], reactor: StoreReactor | None = None
    ) -> None:
        """
        @param path: the database file (made if missing).  Its folder must
            exist: the store makes no folders.
        @param reactor: the reactor the pool's results are delivered in;
            the global reactor if L{None}.
        @raise RecordStoreError: the folder of C{path} doesn't exist.
        """
        path = os.fspath(path)
        if path != ":memory:":
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise RecordStoreError(
                    f"can't keep authentication records in {path}: "
                    f"the folder {folder} does not exist"
                )
        if reactor is None:
            from twisted.internet import reactor
        self.path = path
        self._reactor: StoreReactor = reactor
        self._pool = adbapi.ConnectionPool(
            "sqlite3",
            path,
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_reactor=reactor,
            cp_openfun=self._prepare_connection,
        )
        self._requested = False
        self._waiting: list[tuple[Row, defer.Deferred[None]]] = []
        self._last_added: defer.Deferred[None] | None = None
        self._writing = False
        self._gathering: IDelayedCall | None = None
        self._drained: list[defer.Deferred[None]] = []
        self._close_requested = False
        self._closing = False
        self._closed = False
        self._close_waiters: list[defer.Deferred[None]] = []

    def start(self) -> defer.Deferred[None]:
        """
        Open the database, making its schema if it is new.  Optional: the
        first L{add}, L{for_peer} or L{recent} does the same.

        @return: a Deferred firing with L{None} when the schema is ready, or
            failing with L{RecordStoreError} if the file can't be used (not
            a database, or one with a newer schema).
        """
        return self._run(self._pool.runWithConnection, lambda connection: None)

    def add(self, record: AuthenticationRecord) -> defer.Deferred[None]:
        """
        Records are written in batches, one transaction each (a group
        commit): a batch gathers the records added within L{BATCH_DELAY}
        seconds, and while one batch is being written, new records wait for
        the next.  Each record's Deferred fires once its batch is
        committed, or fails with the batch.
        """
        try:
            row = _row(record)
        except TypeError:
            return defer.fail()
        if self._close_requested or self._closing or self._pool_state() == "stopped":
            return self._run(self._pool.runInteraction, self._insert_many, [row])
        written: defer.Deferred[None] = defer.Deferred()
        self._last_added = written
        self._waiting.append((row, written))
        if not self._writing:
            # Gather what arrives in the next moment into the same batch.
            self._writing = True
            self._gathering = self._reactor.callLater(BATCH_DELAY, self._write_batch)
        return written

    def _write_now(self) -> None:
        """
        Write the batch being gathered at once, so that what is asked for
        next (in the pool's one thread) sees it.
        """
        if self._gathering is not None and self._gathering.active():
            self._gathering.cancel()
            self._write_batch()

    def _write_batch(self) -> None:
        self._gathering = None
        batch, self._waiting = self._waiting, []
        self._writing = True
        result = self._run(
            self._pool.runInteraction, self._insert_many, [row for row, _ in batch], draining=True
        )

        def done(outcome: None | failure.Failure) -> None:
            for _, written in batch:
                if isinstance(outcome, failure.Failure):
                    written.errback(outcome)
                else:
                    written.callback(None)
            if self._waiting:
                self._write_batch()
            else:
                self._writing = False
                drained, self._drained = self._drained, []
                for d in drained:
                    d.callback(None)

        result.addBoth(done)

    def for_peer(
        self, peer_domain: str, limit: int | None = 100
    ) -> defer.Deferred[list[AuthenticationRecord]]:
        return self._newest(f"{SELECT} WHERE peer_domain = ? {NEWEST_FIRST}", (peer_domain,), limit)

    def recent(self, limit: int | None = 100) -> defer.Deferred[list[AuthenticationRecord]]:
        return self._newest(f"{SELECT} {NEWEST_FIRST}", (), limit)

    def peer_summaries(
        self, limit: int | None = 100, after: str | None = None
    ) -> defer.Deferred[list[PeerSummary]]:
        try:
            limit = check_limit(limit)
        except ValueError:
            return defer.fail()
        query = (
            "SELECT n.peer_domain, n.time, n.method, n.authenticated, c.certificates FROM "
            "(SELECT peer_domain, time, method, authenticated, ROW_NUMBER() OVER "
            "(PARTITION BY peer_domain ORDER BY time DESC, id DESC) AS newest "
            "FROM authentication WHERE peer_domain > ?) AS n "
            "JOIN (SELECT peer_domain, COUNT(DISTINCT json_extract(certificate, '$.sha256')) "
            "AS certificates FROM authentication WHERE peer_domain > ? GROUP BY peer_domain) "
            "AS c USING (peer_domain) "
            "WHERE n.newest = 1 ORDER BY n.peer_domain LIMIT ?"
        )

        after = "" if after is None else after
        return self._after_writes(
            self._pool.runInteraction, self._summaries, query,
            (after, after, -1 if limit is None else limit),
        )

    def _summaries(
        self, transaction: adbapi.Transaction, query: str, parameters: Parameters
    ) -> list[PeerSummary]:
        transaction.execute(query, parameters)
        return [
            PeerSummary(domain, time, method, bool(authenticated), certificates)
            for domain, time, method, authenticated, certificates in transaction.fetchall()
        ]

    def latest_accepted(self) -> defer.Deferred[list[AuthenticationRecord]]:
        columns = ", ".join(COLUMNS)
        query = (
            f"SELECT {columns} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY peer_domain "
            "ORDER BY time DESC, id DESC) AS newest FROM authentication "
            "WHERE authenticated = 1 AND certificate IS NOT NULL) "
            "WHERE newest = 1 ORDER BY time DESC, id DESC LIMIT ?"
        )
        return self._newest(query, (), None)

    def prune(
        self, before: float | None = None, keep: int | None = None
    ) -> defer.Deferred[int]:
        """
        After every record added so far is written, forget those made before
        C{before} and all but the newest C{keep}, in one transaction.
        """
        if keep is not None:
            try:
                keep = check_limit(keep)
            except ValueError:
                return defer.fail()
        return self._after_writes(self._pool.runInteraction, self._prune, before, keep)

    def _newest(
        self, query: str, parameters: Parameters, limit: int | None
    ) -> defer.Deferred[list[AuthenticationRecord]]:
        try:
            limit = check_limit(limit)
        except ValueError:
            return defer.fail()
        return self._after_writes(
            self._pool.runInteraction,
            self._select,
            query,
            (*parameters, -1 if limit is None else limit),
        )

    def _after_writes(
        self, method: Callable[..., defer.Deferred[_T]], *args: Any
    ) -> defer.Deferred[_T]:
        """
        L{_run} C{method(*args)} once every record added before now is
        written, so that what it reads or deletes includes them: the last
        one's batch is started at once, without its gathering delay.
        """
        last = self._last_added
        if last is None or last.called:
            return self._run(method, *args)
        self._write_now()
        written: defer.Deferred[None] = defer.Deferred()

        def settled(result: _R) -> _R:
            written.callback(None)
            return result

        last.addBoth(settled)
        return written.addCallback(lambda ignored: self._run(method, *args))

    def close(self) -> defer.Deferred[None]:
        if self._closed:
            return defer.succeed(None)
        if self._writing:
            # Records added before closing are written first; none after.
            self._close_requested = True
            self._write_now()
            drained: defer.Deferred[None] = defer.Deferred()
            self._drained.append(drained)
            drained.addCallback(lambda _: self.close())
            return drained
        waiter: defer.Deferred[None] = defer.Deferred()
        self._close_waiters.append(waiter)
        if not self._closing:
            self._closing = True
            state = self._pool_state()
            if state == "running":
                self._close_in_thread()
            elif state == "waiting" and self._requested:
                # Work is queued for the pool's thread, which starts with
                # the reactor (after the pool's own start, registered
                # first): close once it has been done.
                self._reactor.callWhenRunning(self._close_in_thread)
            else:
                self._finish_close(stop_pool=state == "waiting")
        return waiter

    def _pool_state(self) -> str:
        """
        C{"running"}; C{"waiting"} for the reactor to start the pool; or
        C{"stopped"} (by the reactor's shutdown).
        """
        if self._pool.running:
            return "running"
        if self._pool.startID is not None:
            return "waiting"
        return "stopped"

    def _close_in_thread(self) -> None:
        # Queued behind the work already asked for; closing the
        # connection (a WAL checkpoint) happens in the pool's thread.
        if self._pool_state() != "running":
            self._finish_close(stop_pool=False)
            return
        closed = threads.deferToThreadPool(
            self._reactor, self._pool.threadpool, self._disconnect
        )
        closed.addErrback(
            lambda failure: log.failure(
                "closing the records database {path}", failure, path=self.path
            )
        )
        closed.addCallback(lambda _: self._finish_close(stop_pool=True))

    def _finish_close(self, stop_pool: bool) -> None:
        if stop_pool and self._pool_state() != "stopped":
            self._pool.close()
        self._closed = True
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _run(
        self, method: Callable[..., defer.Deferred[_T]], *args: Any, draining: bool = False
    ) -> defer.Deferred[_T]:
        """
        Run C{method(*args)} (a pool method) unless the store is closed,
        turning database errors into L{RecordStoreError}s naming the file.

        @param draining: the work was asked for before L{close}: do it
            while the store waits to close.
        """
        closing = self._closing or (self._close_requested and not draining)
        if closing or self._pool_state() == "stopped":
            # A stopped pool drops work without a word: say so instead.
            return defer.fail(
                RecordStoreError(f"the record store {self.path} is closed")
            )
        self._requested = True
        result = method(*args)
        result.addErrback(self._explain)
        return result

    def _explain(self, failure: failure.Failure) -> NoReturn:
        failure.trap(sqlite3.Error)
        raise RecordStoreError(
            f"authentication records database {self.path}: {failure.value}"
        ) from failure.value

    # What follows runs in the pool's thread.

    def _prepare_connection(self, connection: sqlite3.Connection) -> None:
        """
        Set up a new connection: write-ahead logging, full sync, and the
        schema if the database is new.
        """
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            (version,) = connection.execute("PRAGMA user_version").fetchone()
            if version == 0:
                connection.executescript(SCHEMA)
            elif version != SCHEMA_VERSION:
                raise RecordStoreError(
                    f"authentication records database {self.path} has schema "
                    f"version {version}; this gateway knows version {SCHEMA_VERSION}"
                )
        except sqlite3.Error as error:
            connection.close()
            raise RecordStoreError(
                f"can't open the authentication records database {self.path}: {error}"
            ) from error
        except RecordStoreError:
            connection.close()
            raise

    def _insert_many(self, transaction: adbapi.Transaction, rows: list[Row]) -> None:
        transaction.executemany(INSERT, rows)

    def _prune(
        self, transaction: adbapi.Transaction, before: float | None, keep: int | None
    ) -> int:
        forgotten = 0
        if before is not None:
            transaction.execute("DELETE FROM authentication WHERE time < ?", (before,))
            forgotten += transaction.rowcount
        if keep is not None:
            transaction.execute(
                "DELETE FROM authentication WHERE id IN (SELECT id FROM authentication "
                "ORDER BY time DESC, id DESC LIMIT -1 OFFSET ?)",
                (keep,),
            )
            forgotten += transaction.rowcount
        return forgotten

    def _select(
        self, transaction: adbapi.Transaction, query: str, parameters: Parameters
    ) -> list[AuthenticationRecord]:
        transaction.execute(query, parameters)
        return [_record(row) for row in transaction.fetchall()]

    def _disconnect(self) -> None:
        connection = self._pool.connections.get(self._pool.threadID())
        if connection is not None:
            self._pool.disconnect(connection)
