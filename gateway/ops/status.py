"""
What operators can see (RFC 7590 section 3.6): live streams with their
encryption and authentication, peers' certificate history, warnings, and
metrics.  The admin interface (L{gateway.ops.admin}) and the command line
(L{gateway.ops.ctl}) show what this module gathers.

  - L{Continuity} remembers the certificate last seen for each peer domain
    and notices when a peer comes back with another (RFC 7590 3.6: "be
    warned when a peer's certificate changes").
  - L{Warnings} keeps certificate-change and verification-failure
    warnings, newest first, until acknowledged.
  - L{GatewayMetrics} counts for Prometheus/OpenMetrics.
  - L{StatusSource} turns the live streams and the records into the JSON
    the interface serves.
"""

import itertools
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from twisted.logger import Logger

from gateway.tls.certificates import certificate_dict
from gateway.xmpp.jid import AddressError, bare_domain

log = Logger()


class LogThrottle:
    """
    At most one log line per key (a peer, a kind of warning) every C{every}
    seconds, so that what a peer can make happen over and over can't fill
    the log; the line that is logged says how many events it stands for.
    At most C{keys} keys are remembered (the oldest forgotten first).
    """

    def __init__(self, clock, every=60.0, keys=10_000):
        self.clock = clock
        self.every = every
        self.keys = keys
        self._state = {}

    def due(self, key):
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

    source: str
    count: int
    first_time: float
    last_time: float
    #: The first few domains refused (at most L{RefusalTally.SAMPLE}).
    domains: list
    #: How many different domains that sample was taken from, counted up to
    #: L{RefusalTally.DISTINCT}.
    distinct_domains: int


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

    def __init__(self, clock, allowance=10, total=100, every=60.0, sources=10_000):
        self.clock = clock
        self.allowance = allowance
        self.total = total
        self.every = every
        self.sources = sources
        self._windows = {}
        self._total_window = (None, 0)
        self._ended = []

    def count(self, source, peer_domain):
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
        if window is not None and now - window["start"] >= self.every:
            self._end(source)
            window = None
        if window is None:
            window = self._windows[source] = {
                "start": now, "recorded": 0, "count": 0, "first": None, "last": None,
                "domains": [], "distinct": set(),
            }
            if len(self._windows) > self.sources:
                self._end(next(iter(self._windows)))
        if window["recorded"] < self.allowance and all_recorded < self.total:
            window["recorded"] += 1
            self._total_window = (start, all_recorded + 1)
            return True
        self._total_window = (start, all_recorded)
        window["count"] += 1
        window["first"] = now if window["first"] is None else window["first"]
        window["last"] = now
        if peer_domain not in window["distinct"] and len(window["distinct"]) < self.DISTINCT:
            window["distinct"].add(peer_domain)
            if len(window["domains"]) < self.SAMPLE:
                window["domains"].append(peer_domain)
        return False

    def _end(self, source):
        window = self._windows.pop(source)
        if window["count"]:
            self._ended.append(
                RefusalSummary(
                    source,
                    window["count"],
                    window["first"],
                    window["last"],
                    window["domains"],
                    len(window["distinct"]),
                )
            )

    def due(self):
        """
        The summaries of the windows that have ended (each given once).
        """
        now = self.clock.seconds()
        for source in [s for s, w in self._windows.items() if now - w["start"] >= self.every]:
            self._end(source)
        ended, self._ended = self._ended, []
        return ended


@dataclass
class Warning:
    id: int
    time: float
    kind: str
    peer_domain: str
    message: str
    details: dict = field(default_factory=dict)
    acknowledged: bool = False
    #: How many times it happened: a repeated refusal of the same peer
    #: counts here instead of adding a warning each time.
    count: int = 1
    first_time: float | None = None

    def as_dict(self):
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

    def __init__(self, clock, limit=1000, on_acknowledge=None):
        self.clock = clock
        self.limit = limit
        self._warnings = []
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

    def add(self, kind, peer_domain, message, **details):
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

    def _evict(self):
        for index in range(len(self._warnings) - 1, -1, -1):
            old = self._warnings[index]
            if old.acknowledged or old.kind in self.AGGREGATED:
                del self._warnings[index]
                return
        del self._warnings[self.limit:]

    def _log(self, warning):
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

    def list(self, include_acknowledged=True):
        return [w for w in self._warnings if include_acknowledged or not w.acknowledged]

    def acknowledge(self, warning_id):
        for warning in self._warnings:
            if warning.id == warning_id:
                if not warning.acknowledged:
                    warning.acknowledged = True
                    if self.on_acknowledge is not None:
                        self.on_acknowledge(warning)
                return True
        return False


@dataclass(frozen=True)
class CertificateChange:
    """
    A peer presented another certificate than last time.
    """

    previous_sha256: str
    previous_spki_sha256: str
    sha256: str
    spki_sha256: str

    @property
    def key_changed(self):
        return self.previous_spki_sha256 != self.spki_sha256

    def as_dict(self):
        return {
            "previous_sha256": self.previous_sha256,
            "previous_spki_sha256": self.previous_spki_sha256,
            "key_changed": self.key_changed,
        }


class Continuity:
    """
    The certificate last accepted for each peer domain.
    """

    def __init__(self):
        self.last = {}
        self.pending = {}

    def load(self, records):
        """
        Learn the last certificate of each peer from C{records} (newest
        first, as the record store returns them).
        """
        for record in records:
            if record.authenticated and record.certificate and record.peer_domain not in self.last:
                self.last[record.peer_domain] = (
                    record.certificate["sha256"],
                    record.certificate["spki_sha256"],
                )

    def check(self, peer_domain, summary):
        """
        Compare C{summary} (a L{CertificateSummary}) with the last
        certificate accepted for C{peer_domain}.

        @return: a L{CertificateChange}, or L{None} when it is the same or
            the first seen.
        """
        previous = self.last.get(peer_domain)
        if previous is None or previous[0] == summary.sha256:
            return None
        return CertificateChange(previous[0], previous[1], summary.sha256, summary.spki_sha256)

    def accept(self, peer_domain, summary):
        self.last[peer_domain] = (summary.sha256, summary.spki_sha256)


class GatewayMetrics:
    """
    The gateway's metrics, in a registry of its own.
    """

    def __init__(self, federation=None):
        self.registry = CollectorRegistry()
        self.streams = Gauge(
            "xmpp_gateway_streams", "Live authenticated s2s streams",
            ["direction", "method", "tls_version"], registry=self.registry,
        )
        self.handshakes = Counter(
            "xmpp_gateway_handshakes", "Stream authentications, by outcome",
            ["direction", "outcome"], registry=self.registry,
        )
        self.failures = Counter(
            "xmpp_gateway_handshake_failures", "Refused peers, by the verifier that decided",
            ["direction", "reason"], registry=self.registry,
        )
        self.stanzas_routed = Counter(
            "xmpp_gateway_stanzas_routed", "Stanzas routed", registry=self.registry,
        )
        self.stanzas_bounced = Counter(
            "xmpp_gateway_stanzas_bounced", "Stanzas bounced with an error, by condition",
            ["condition"], registry=self.registry,
        )
        self.warnings = Counter(
            "xmpp_gateway_warnings", "Warnings raised, by kind", ["kind"], registry=self.registry,
        )
        self.verifier_seconds = Histogram(
            "xmpp_gateway_verifier_seconds", "How long each verifier took",
            ["verifier"], registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30),
        )
        self.queued = Gauge(
            "xmpp_gateway_queued_stanzas", "Stanzas waiting for an outbound stream",
            registry=self.registry,
        )
        if federation is not None:
            self.queued.set_function(lambda: sum(len(q) for q in federation._queues.values()))

    def text(self):
        return generate_latest(self.registry)


def _chain_pem(chain):
    return "".join(
        x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode("ascii")
        for der in chain
    )


class StatusSource:
    """
    The data behind the admin interface.

    @param federation: the L{gateway.s2s.federation.Federation}.
    @param records: the L{gateway.records.interfaces.IRecordStore}.
    """

    def __init__(self, federation, records, warnings, metrics):
        self.federation = federation
        self.records = records
        self.warnings_store = warnings
        self.metrics = metrics

    def _summary(self, stream):
        if stream.tls is None or not stream.tls.peer_chain:
            return None
        try:
            return certificate_dict(stream.tls.peer_chain[0])
        except ValueError:
            return None

    def stream_info(self, stream):
        """
        One live stream as JSON-ready data.
        """
        from gateway.records.record import time_iso

        tls = stream.tls
        authentications = [
            {
                "peer_domain": record.peer_domain,
                "local_domain": record.local_domain,
                "method": record.method,
                "authenticated_by": record.evidence.get("authenticated_by"),
                "evidence": dict(record.evidence),
            }
            for record in stream.authentications
        ]
        first = stream.authentications[0] if stream.authentications else None
        change = stream.certificate_change
        return {
            "id": stream.serial,
            "direction": stream.direction,
            "local_domain": stream.local_domain,
            "peer_domain": first.peer_domain if first else stream.peer_name(),
            "state": stream.state.value,
            "encrypted": tls is not None,
            "tls_version": tls.version if tls else None,
            "cipher": tls.cipher if tls else None,
            "authenticated": bool(stream.authentications),
            "method": first.method if first else None,
            "authenticated_by": first.evidence.get("authenticated_by") if first else None,
            "evidence": dict(first.evidence) if first else {},
            "authentications": authentications,
            "certificate": self._summary(stream),
            "since": time_iso(stream.since),
            "stanzas_in": stream.stanzas_in,
            "stanzas_out": stream.stanzas_out,
            "certificate_changed": change is not None,
            "previous_certificate": change.as_dict() if change else None,
        }

    def records_state(self):
        return self.federation.records_state()

    def streams(self):
        return sorted(
            (self.stream_info(s) for s in self.federation.streams),
            key=lambda info: info["since"],
        )

    def stream(self, stream_id):
        for stream in self.federation.streams:
            if stream.serial == stream_id:
                return stream
        return None

    def stream_certificate_pem(self, stream_id):
        stream = self.stream(stream_id)
        if stream is None or stream.tls is None or not stream.tls.peer_chain:
            return None
        return _chain_pem(stream.tls.peer_chain)

    #: The most peers one listing holds, and records one peer's history.
    PAGE = 1000

    async def peers(self, limit=PAGE, after=None):
        """
        The peer domains in the records, by name, a page at a time (those
        after C{after}, at most C{limit}): when last seen, how, and how many
        certificates.  Summed up by the store, not read record by record.
        """
        from gateway.records.record import time_iso

        return [
            {
                "peer_domain": summary.peer_domain,
                "last_seen": time_iso(summary.last_time),
                "last_method": summary.last_method,
                "last_authenticated": summary.last_authenticated,
                "certificates": summary.certificates,
            }
            for summary in await self.records.peer_summaries(limit=limit, after=after)
        ]

    async def peer(self, domain):
        """
        The history of peer C{domain}, in any spelling of it (records are
        kept under its canonical form), or L{None} when it has none.
        """
        try:
            domain = bare_domain(domain)
        except AddressError:
            return None
        records = await self.records.for_peer(domain, limit=self.PAGE)
        if not records:
            return None
        return self._peer(domain, records, detail=True)

    def _peer(self, domain, records, detail=False):
        from gateway.records.record import time_iso

        certificates = {}
        for record in reversed(records):  # oldest first
            certificate = record.certificate
            key = certificate["sha256"] if certificate else None
            entry = certificates.get(key)
            if entry is None:
                entry = certificates[key] = {
                    "certificate": certificate,
                    "first_seen": time_iso(record.time),
                    "last_seen": time_iso(record.time),
                    "verifications": [],
                }
            entry["last_seen"] = time_iso(record.time)
            entry["verifications"].append({
                "time": time_iso(record.time),
                "direction": record.direction,
                "local_domain": record.local_domain,
                "authenticated": record.authenticated,
                "method": record.method,
                "authenticated_by": record.evidence.get("authenticated_by"),
                "reason": record.reason,
                "tls_version": record.tls_version,
                "cipher": record.cipher,
            })
        latest = records[0]
        data = {
            "peer_domain": domain,
            "last_seen": time_iso(latest.time),
            "last_method": latest.method,
            "last_authenticated": latest.authenticated,
            "certificates": len([k for k in certificates if k is not None]),
        }
        if detail:
            data["history"] = list(reversed(list(certificates.values())))
        return data

    def warnings(self):
        return [w.as_dict() for w in self.warnings_store.list()]

    def acknowledge(self, warning_id):
        return self.warnings_store.acknowledge(warning_id)

    def metrics_text(self):
        return self.metrics.text()
