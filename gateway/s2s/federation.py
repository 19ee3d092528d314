"""
The federation side of the gateway: every live s2s stream, the outbound
stream for each C{(local domain, peer domain)} pair, the queue of stanzas
waiting for a stream to come up, and dialback verification requests.
"""

import datetime
import ipaddress
import itertools
from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet import error as internet_error
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.logger import Logger
from zope.interface import implementer

from gateway.names.srv import DNSLookupFailed, ServiceNotOffered, lookup_addresses, resolve_targets
from gateway.records.record import AuthenticationRecord, time_iso
from gateway.s2s.continuity import Continuity
from gateway.s2s.flow import ReadRate, Valve
from gateway.s2s.interfaces import IInboundStreamOwner, IOutboundStreamOwner
from gateway.s2s.metrics import GatewayMetrics
from gateway.s2s.outbound import NegotiationFailure, OutboundFactory, Purpose, Stage
from gateway.s2s.stream import header_bytes, serialise
from gateway.s2s.throttle import LogThrottle, RefusalTally
from gateway.s2s.warnings import Warnings
from gateway.tls.certificates import CertificateSummary, certificate_dict
from gateway.tls.tlsa import usable
from gateway.verifiers.chain import ChainResult, run_chain
from gateway.verifiers.dane import DANELookupFailed, target_tlsa
from gateway.verifiers.interfaces import VerificationRequest
from gateway.xmpp.errors import DialbackError
from gateway.xmpp.parser import element_from_bytes
from gateway.xmpp.stanzas import NS_COMPONENT, NS_SERVER, rewrite_namespace

log = Logger()

#: Seconds a stream must have carried nothing before its parser is put away.
PARK_AFTER = 1.0

#: While the record store is failing: at most this many records are held in
#: memory to be written when it is back (known peers are accepted while
#: there is room), of which at most L{REFUSALS_HELD} refusals.
RECORDS_HELD = 1000
REFUSALS_HELD = 500


#: The namespace context that stanzas serialised for a stream are parsed in
#: again (L{gateway.s2s.stream.serialise} writes for it).
SERVER_CONTEXT = header_bytes({})


def connection_source(address):
    """
    Whom a connection from C{address} counts against: an IPv4 address
    itself (an IPv4-mapped IPv6 address is one), an IPv6 address's /64.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def recorded_method(direction, result):
    """
    How the peer was verified, as records, logs, metrics and the status page
    say it (RFC 7590 section 3.6).  On a stream we open, dialback proves our
    identity to the peer but nothing about the peer: we only reached an
    address that DNS gave for its domain.  That is recorded as C{dns}, and
    shown as unverified, like C{none}.
    """
    if direction == "outbound" and result.method == "dialback":
        return "dns"
    return result.method


def _skipped(where, why):
    return (Stage.DNS, "remote-server-not-found", f"{where}: skipped, {why}")


@dataclass(frozen=True)
class VerifyRequest:
    """
    A key to check with a peer's authoritative server (XEP-0220 2.1.2).
    """

    stream_id: str
    key: str


@implementer(IInboundStreamOwner, IOutboundStreamOwner)
class Federation:
    """
    Owns the s2s streams in both directions.

    @param router: the L{gateway.components.routing.Router} that inbound stanzas are
        handed to and that bounces what can't be delivered.
    @param resolver: an L{twisted.internet.interfaces.IResolver}.
    @param reactor: for connections and timers.
    @param records: the L{gateway.records.interfaces.IRecordStore} every
        authentication is recorded in (required: a default could lose
        records without anyone noticing).
    @param metrics: the L{GatewayMetrics} to count in; a registry of its
        own if not given.
    """

    def __init__(self, config, state, tls_profile, resolver, router, reactor,
                 records, verifiers=None, metrics=None):
        self.local_domains = config.domain_names
        self.max_stanza_size = config.s2s.max_stanza_size
        self.max_depth = config.s2s.max_depth
        self.limits = config.s2s
        self.max_verifications = config.s2s.max_verifications
        self.max_verifications_per_stream = config.s2s.max_verifications_per_stream
        self.verifications_in_progress = 0
        self.idle_timeout = config.timeouts.idle
        self.stalled_timeout = config.timeouts.stalled
        self.records_available = True
        self.records_down_since = None
        self.records_lost = 0
        self._unwritten = []
        self.known_peers = set()
        self.shutting_down = False
        self.queue_limit = config.s2s.queue_limit
        self.authentication_timeout = config.timeouts.authentication
        self.connect_timeout = config.timeouts.connect
        self.policy = config.policy
        self.dialback_secret = state.dialback_secret
        self.tls_profile = tls_profile
        self.resolver = resolver
        self.router = router
        self.reactor = reactor
        self.clock = reactor
        self.records = records
        # Components feed outbound streams; inbound streams feed components.
        self.to_peers = Valve(
            "components to peers",
            lambda: [c.transport for c in router.components.values()],
            on_full=self._sink_full,
            on_drained=self._sink_drained,
        )
        self.to_components = Valve(
            "peers to components",
            lambda: [s.transport for s in self.streams if s.direction == "inbound"],
        )
        self.metrics = metrics if metrics is not None else GatewayMetrics()
        self.metrics.count_queued(lambda: sum(len(q) for q in self._queues.values()))
        self.warnings = Warnings(reactor, on_acknowledge=self.certificate_change_acknowledged)
        self.continuity = Continuity()
        self._warned = set()
        self._refusals_logged = LogThrottle(reactor)
        self.refusal_tally = RefusalTally(reactor)
        self._store_logged = LogThrottle(reactor)
        self._serials = itertools.count(1)
        self.verifiers = verifiers
        self.streams = set()
        self._outbound = {}
        self._queues = {}
        self._queue_bytes = {}
        self._queued_bytes = 0
        self._connecting = {}
        self._drained = []

    # The stream registry ---------------------------------------------------

    def admit(self, address):
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
            same = [s for s in inbound if getattr(s, "source", None) == source]
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

    def sweep(self):
        """
        Housekeeping, every few seconds: close authenticated streams idle
        for longer than the idle timeout (gracefully: they reopen when
        needed), and check whether the record store is back.
        """
        now = self.clock.seconds()
        for stream in list(self.streams):
            stalled = getattr(stream, "stalled_since", None)
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
        self.record_refusal_summaries()
        if not self.records_available:
            d = self.records.recent(limit=1)
            d.addCallbacks(self._records_back, lambda failure: None)

    def park_quiet_parsers(self):
        """
        Every second: put away the XML parsers of streams that have carried
        nothing for L{PARK_AFTER} seconds (about 10 KiB each; the next read
        brings one back).
        """
        quiet_since = self.clock.seconds() - PARK_AFTER
        for stream in self.streams:
            if stream.last_activity <= quiet_since:
                stream.park_parser()

    def _records_back(self, ignored):
        if not self.records_available:
            self.records_available = True
            self.records_down_since = None
            held, self._unwritten = self._unwritten, []
            log.info(
                "authentication records can be written again; taking new peers again and "
                "writing the {held} records held meanwhile",
                held=len(held),
            )
            for record in held:
                self._keep(record)

    def known(self, peer_domain):
        """
        Whether C{peer_domain} was accepted before: in this run, or (with a
        certificate) in the records read at start.
        """
        return peer_domain in self.known_peers or peer_domain in self.continuity.last

    def _keep(self, record):
        """
        Write C{record} to the store, or, while the store is failing, hold
        it (a bounded number) to write when the store is back.
        """
        if not self.records_available:
            self._hold(record)
            return
        d = self.records.add(record)
        d.addErrback(self._records_failed, record)

    def _hold(self, record):
        room = RECORDS_HELD if record.authenticated else REFUSALS_HELD
        if len(self._unwritten) < room:
            self._unwritten.append(record)
            return
        self.records_lost += 1
        lost = self._store_logged.due("lost")
        if lost is not None:
            log.error(
                "authentication record for {peer} lost: the store is failing and "
                "{held} records are already held ({lost} lost since the last line)",
                peer=record.peer_domain,
                held=len(self._unwritten),
                lost=lost,
            )

    def _records_failed(self, failure, record):
        if self.records_available:
            self.records_available = False
            self.records_down_since = self.clock.seconds()
            log.critical(
                "cannot store authentication records ({error}); until the store is back, only "
                "peers already known are accepted, and their records are held in memory "
                "(at most {held})",
                error=failure.getErrorMessage(),
                held=RECORDS_HELD,
            )
        if self._store_logged.due("failure") is not None:
            log.failure(
                "could not store the authentication record for {peer}", failure,
                peer=record.peer_domain,
            )
        self._hold(record)

    def records_state(self):
        """
        The record store's health, for the status API.
        """
        return {
            "available": self.records_available,
            "unavailable_since": (
                time_iso(self.records_down_since) if self.records_down_since is not None else None
            ),
            "held": len(self._unwritten),
            "held_limit": RECORDS_HELD,
            "lost": self.records_lost,
            "accepting": "all peers" if self.records_available else (
                "no peers" if len(self._unwritten) >= RECORDS_HELD else "known peers only"
            ),
        }

    def stream_opened(self, stream):
        if self.limits.read_rate:
            # Each peer gets its share of the one reactor thread, however
            # much it sends: ReadRate pauses reading past the rate.
            stream.read_rate = ReadRate(
                self.clock,
                self.limits.read_rate,
                max(2 * self.limits.read_rate, self.max_stanza_size),
            )
        stream.serial = f"s{next(self._serials)}"
        stream.source = connection_source(getattr(stream.transport.getPeer(), "host", None))
        stream.since = self.clock.seconds()
        stream.authentications = []
        stream.certificate_change = None
        self.streams.add(stream)
        if stream.direction == "inbound":
            self.to_components.new_source(stream.transport)
        peer = stream.transport.getPeer()
        log.info(
            "s2s {direction} stream opened with {peer} at {address}",
            direction=stream.direction,
            peer=stream.peer_name() if stream.direction == "outbound" else "a peer",
            address=f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}",
        )

    # Verification and records -----------------------------------------------

    def verify_peer(self, direction, local_domain, peer_domain, stream, dialback_key=None):
        """
        Run the verifier chain that the trust policy for C{peer_domain}
        names, over what C{stream} knows.

        @return: a Deferred firing with a L{ChainResult}.
        """
        policy = self.policy.for_domain(peer_domain)
        request = VerificationRequest(
            direction=direction,
            local_domain=local_domain,
            peer_domain=peer_domain,
            stream_id=stream.stream_id,
            tls=stream.tls,
            dialback_key=dialback_key,
            target=getattr(stream, "target", None),
            policy=policy,
        )
        d = defer.Deferred.fromCoroutine(
            run_chain(self.verifiers.chain_for(policy), request, policy, self.clock)
        )
        return d.addCallback(self._checked, stream, peer_domain, policy)

    def _checked(self, result, stream, peer_domain, policy):
        """
        Count the chain's timings, and hold an accepted peer's certificate
        against the one it presented last time (RFC 7590 section 3.6).
        """
        for verdict, seconds in zip(result.verdicts, result.durations):
            self.metrics.verifier_seconds.labels(verdict.verifier).observe(seconds)
        if (
            result.authenticated
            and stream.direction == "outbound"
            and policy.require_certificate_outbound
            and result.method in ("dialback", "none")
        ):
            return ChainResult(
                False,
                None,
                result.verdict,
                result.verdicts,
                f"{peer_domain} was only reached through DNS; policy requires a certificate-based "
                "method on streams we open (require_certificate_outbound)",
                result.durations,
            )
        if result.authenticated and not self.records_available:
            if not self.known(peer_domain) or len(self._unwritten) >= RECORDS_HELD:
                return ChainResult(
                    False,
                    None,
                    result.verdict,
                    result.verdicts,
                    "authentication records can't be written right now; until the store is "
                    "back, only peers already known are accepted"
                    + (" (and no more records can be held)" if self.known(peer_domain) else ""),
                    result.durations,
                )
        if not result.authenticated or stream.tls is None or not stream.tls.peer_chain:
            return result
        try:
            summary = CertificateSummary.from_der(stream.tls.peer_chain[0])
        except ValueError:
            return result
        change = self.continuity.check(peer_domain, summary)
        if change is None:
            return result
        refuse = policy.on_certificate_change == "refuse" or bool(policy.pins)
        what = "certificate and key" if change.key_changed else "certificate (same key)"
        seen = (peer_domain, summary.sha256)
        if seen not in self._warned:
            self._warned.add(seen)
            self.metrics.warnings.labels("certificate-change").inc()
            self.warnings.add(
                "certificate-change",
                peer_domain,
                f"{peer_domain} presented a new {what}"
                + ("; refused, as policy says" if refuse else ""),
                sha256=summary.sha256,
                spki_sha256=summary.spki_sha256,
                refused=refuse,
                **change.as_dict(),
            )
        if refuse:
            return ChainResult(
                False,
                None,
                None,
                result.verdicts,
                f"{peer_domain} presented a new {what} (was sha256 {change.previous_sha256}); "
                "policy refuses certificate changes until a warning is acknowledged",
                result.durations,
            )
        stream.certificate_change = change
        return result

    def certificate_change_acknowledged(self, warning):
        """
        An operator accepted a changed certificate: it is the one to expect.
        """
        if warning.kind == "certificate-change":
            self.continuity.last[warning.peer_domain] = (
                warning.details["sha256"],
                warning.details["spki_sha256"],
            )

    def _record(self, stream, direction, local_domain, peer_domain, result, authenticated, via):
        tls = stream.tls
        certificate = None
        if tls is not None and tls.peer_chain:
            try:
                certificate = certificate_dict(tls.peer_chain[0])
            except ValueError:
                certificate = None
        evidence = result.evidence
        if via:
            evidence["authenticated_by"] = via
        record = AuthenticationRecord(
            peer_domain=peer_domain,
            local_domain=local_domain,
            direction=direction,
            stream_id=stream.stream_id,
            time=self.clock.seconds(),
            method=recorded_method(direction, result) if authenticated else "refused",
            evidence=evidence,
            tls_version=tls.version if tls else None,
            cipher=tls.cipher if tls else None,
            certificate=certificate,
            verdicts=tuple(v.as_dict() for v in result.verdicts),
            authenticated=authenticated,
            reason=result.reason,
        )
        self._keep(record)
        return record

    def stream_authenticated(self, stream, peer_domain, local_domain, result, via):
        """
        C{stream} is now authenticated for C{(peer_domain, local_domain)}:
        log it and keep the authentication record.

        @param result: the L{ChainResult} that says how the peer was verified.
        @param via: how the stream itself was authenticated (C{"SASL
            EXTERNAL"}, C{"dialback"}).
        """
        tls = stream.tls
        log.info(
            "s2s {direction} {peer} authenticated for {local} via {method}"
            " ({via}); TLS {tls_version} {cipher}",
            direction=stream.direction,
            peer=peer_domain,
            local=local_domain,
            method=recorded_method(stream.direction, result),
            via=via,
            reason=result.verdict.reason if result.verdict else "unauthenticated, as policy allows",
            tls_version=tls.version if tls else "none",
            cipher=tls.cipher if tls else "none",
            stream_id=stream.stream_id,
        )
        record = self._record(stream, stream.direction, local_domain, peer_domain, result, True, via)
        self.known_peers.add(peer_domain)
        stream.authentications.append(record)
        self._expire_with_certificate(stream, result)
        if tls is not None and tls.peer_chain:
            try:
                self.continuity.accept(peer_domain, CertificateSummary.from_der(tls.peer_chain[0]))
            except ValueError:
                pass
        self.metrics.handshakes.labels(stream.direction, "authenticated").inc()
        self.metrics.streams.labels(
            stream.direction, record.method, tls.version if tls else "none"
        ).inc()

    def _expire_with_certificate(self, stream, result):
        """
        RFC 6120 section 13.7.2.3: a stream authenticated by a certificate
        lasts no longer than that certificate's path.  At the earliest
        C{valid_until} of the verdicts that authenticated it, the stream is
        closed with C{<reset/>}; the peer reconnects and presents its new
        certificate, which is verified afresh.
        """
        valid_until = (result.verdict.evidence.get("valid_until") if result.verdict else None)
        if not valid_until:
            return
        try:
            moment = datetime.datetime.strptime(valid_until, "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=datetime.timezone.utc
            )
        except ValueError:
            return
        # RFC 5280 section 4.1.2.5: valid through notAfter, inclusive, to
        # the second; the first moment it is not is a second later.
        delay = max(0.0, moment.timestamp() + 1 - self.clock.seconds())
        timer = getattr(stream, "certificate_timer", None)
        if timer is not None and timer.active():
            if timer.getTime() <= self.clock.seconds() + delay:
                return
            timer.cancel()
        stream.certificate_timer = self.clock.callLater(
            delay, self._certificate_expired, stream, valid_until
        )

    def _certificate_expired(self, stream, valid_until):
        stream.certificate_timer = None
        if stream.closed:
            return
        log.info(
            "s2s {direction} {peer}: the certificate that authenticated the stream was valid until "
            "{valid_until}; resetting the stream",
            direction=stream.direction,
            peer=stream.peer_name(),
            valid_until=valid_until,
        )
        stream.fail("reset", f"the certificate that authenticated this stream was valid until {valid_until}")

    def authentication_refused(self, stream, direction, local_domain, peer_domain, result):
        """
        The chain refused C{peer_domain} on C{stream}: log and record it.
        """
        self.metrics.handshakes.labels(direction, "refused").inc()
        deciding = result.verdict.verifier if result.verdict else "chain exhausted"
        self.metrics.failures.labels(direction, deciding).inc()
        self.metrics.warnings.labels("verification-failure").inc()
        source = getattr(stream, "source", None)
        if not self.refusal_tally.count(source, peer_domain):
            # Over the source's allowance: counted into one record and one
            # warning for the source (a peer claiming a new random domain
            # each time must not make a record, a warning and a log line
            # per try).
            refusals = self._refusals_logged.due(("source", source))
            if refusals is not None:
                log.info(
                    "s2s {direction} refusals from {source} are being counted, not recorded one "
                    "by one ({count} since the last line; latest: {peer}: {reason})",
                    direction=direction,
                    source=source,
                    count=refusals,
                    peer=peer_domain,
                    reason=result.reason,
                )
            self.warnings.add(
                "repeated-refusals",
                "*",
                f"{direction} streams from {source} refused over and over, for one domain "
                f"after another (latest {peer_domain}: {result.reason})",
                source=source,
                direction=direction,
            )
            return
        # At most one line a minute per peer: a peer (or someone claiming to
        # be one) refused over and over must not fill the log.
        refusals = self._refusals_logged.due(peer_domain)
        if refusals is not None:
            log.info(
                "s2s {direction} {peer} refused for {local}: {reason}"
                + (" ({suppressed} more refusals since the last line)" if refusals > 1 else ""),
                direction=direction,
                peer=peer_domain,
                local=local_domain,
                reason=result.reason,
                stream_id=stream.stream_id,
                suppressed=refusals - 1,
            )
        self._record(stream, direction, local_domain, peer_domain, result, False, None)
        self.warnings.add(
            "verification-failure",
            peer_domain,
            f"{direction} stream with {peer_domain} refused: {result.reason}",
            direction=direction,
            local_domain=local_domain,
        )

    def record_refusal_summaries(self):
        """
        Write one record for each source whose refusals were counted rather
        than recorded, once its window has ended: peer domain C{*} (several
        domains), method C{refused}, and in its evidence the source, the
        count, the time span and a sample of the domains.
        """
        for summary in self.refusal_tally.due():
            record = AuthenticationRecord(
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
                    f"{summary.distinct_domains} domains), counted rather than recorded one by one"
                ),
            )
            self._keep(record)

    def stream_closing(self, stream):
        """
        An outbound C{stream} sent its closing tag: stanzas from now on go
        to a new stream.
        """
        key = (stream.local_domain, stream.peer_domain)
        if self._outbound.get(key) is stream:
            del self._outbound[key]
            self.to_peers.detach_sink(stream)

    def stream_closed(self, stream):
        self.streams.discard(stream)
        timer = getattr(stream, "certificate_timer", None)
        if timer is not None and timer.active():
            timer.cancel()
        self.to_peers.detach_sink(stream)
        for record in getattr(stream, "authentications", ()):
            self.metrics.streams.labels(
                stream.direction, record.method, record.tls_version or "none"
            ).dec()
        if stream.direction == "outbound":
            key = (stream.local_domain, stream.peer_domain)
            if self._outbound.get(key) is stream:
                del self._outbound[key]
        if not self.streams:
            drained, self._drained = self._drained, []
            for d in drained:
                d.callback(None)
        tls = stream.tls
        log.info(
            "s2s {direction} {peer} stream closed after {stanzas_in} stanzas in, "
            "{stanzas_out} out; TLS {tls_version} {cipher}",
            direction=stream.direction,
            peer=stream.peer_name(),
            tls_version=tls.version if tls else "none",
            cipher=tls.cipher if tls else "none",
            stanzas_in=stream.stanzas_in,
            stanzas_out=stream.stanzas_out,
            stream_id=stream.stream_id,
        )

    # Outbound stanzas ------------------------------------------------------

    def send(self, stanza, local_domain, peer_domain):
        """
        Send C{stanza} from C{local_domain} to C{peer_domain}: at once on an
        authenticated stream, or queued while one is set up.
        """
        key = (local_domain, peer_domain)
        if self.shutting_down:
            self.router.bounce(stanza, "service-unavailable", "the gateway is shutting down")
            return
        stream = self._outbound.get(key)
        if stream is not None and not (stream.closed or stream.closing):
            self._send_on(stream, stanza)
            return
        queue = self._queues.get(key)
        waiting = sum(len(q) for q in self._queues.values())
        if waiting >= self.limits.queue_limit_total:
            self.router.bounce(
                stanza,
                "resource-constraint",
                f"too many stanzas waiting for streams (limit {self.limits.queue_limit_total})",
            )
            return
        if (
            not self.records_available
            and stream is None
            and queue is None
            and not self.known(peer_domain)
        ):
            self.router.bounce(
                stanza,
                "internal-server-error",
                "authentications can't be recorded right now, and this peer is not known yet",
            )
            return
        # Queued as the bytes it will be sent as, counted against the byte
        # limits (a few large stanzas would pass any count).
        rewrite_namespace(stanza, NS_COMPONENT, NS_SERVER)
        data = serialise(stanza)
        if self._queued_bytes + len(data) > self.limits.queue_limit_total_bytes:
            self.router.bounce(
                stanza,
                "resource-constraint",
                f"too many bytes waiting for streams (limit {self.limits.queue_limit_total_bytes})",
            )
            return
        entry = (data, getattr(stanza, "resent", False))
        if queue is None:
            # Queue first: the attempt may fail (and bounce the queue) at once.
            self._queues[key] = [entry]
            self._queue_bytes[key] = len(data)
            self._queued_bytes += len(data)
            self._connect_route(key)
            return
        if len(queue) >= self.queue_limit:
            self.router.bounce(
                stanza,
                "resource-constraint",
                f"too many stanzas waiting for {peer_domain} (limit {self.queue_limit})",
            )
            return
        if self._queue_bytes[key] + len(data) > self.limits.queue_limit_bytes:
            self.router.bounce(
                stanza,
                "resource-constraint",
                f"too many bytes waiting for {peer_domain} (limit {self.limits.queue_limit_bytes})",
            )
            return
        queue.append(entry)
        self._queue_bytes[key] += len(data)
        self._queued_bytes += len(data)

    def _send_on(self, stream, stanza):
        refusal = self._over_limits(stream)
        if refusal is not None:
            self.router.bounce(stanza, "resource-constraint", refusal)
            return
        stream.send_stanza(stanza)

    def _over_limits(self, stream):
        """
        Why C{stream} must take nothing more now, or L{None}: the peer has
        not acknowledged C{max_unacked_bytes}, or has not read
        C{max_stalled_bytes} written since its send buffer filled up.
        """
        limits = self.limits
        if stream.unacked_bytes >= limits.max_unacked_bytes:
            return (
                f"{stream.peer_domain} has not acknowledged {stream.unacked_bytes} bytes "
                f"(limit {limits.max_unacked_bytes})"
            )
        if (
            stream.stalled_since is not None
            and stream.bytes_out - stream.stalled_from >= limits.max_stalled_bytes
        ):
            return (
                f"{stream.peer_domain} is not reading: {stream.bytes_out - stream.stalled_from} "
                f"bytes wait to be sent (limit {limits.max_stalled_bytes})"
            )
        return None

    # The sinks of to_peers are the outbound streams (_route_ready).

    def _sink_full(self, stream):
        if stream.stalled_since is None:
            stream.stalled_since = self.clock.seconds()
            stream.stalled_from = stream.bytes_out

    def _sink_drained(self, stream):
        stream.stalled_since = None

    def resend(self, unacked, local_domain, peer_domain):
        """
        Stanzas an outbound stream sent but the peer never acknowledged
        (XEP-0198) before the connection dropped, as C{(bytes, resent)}
        pairs: send them again on a new stream, once; one that was already
        sent again is bounced instead, so that a peer that keeps dropping
        can't loop.
        """
        if self.shutting_down:
            log.warn(
                "s2s outbound {peer}: {count} stanzas were not acknowledged before the "
                "gateway shut down; they may not have arrived",
                peer=peer_domain,
                count=len(unacked),
            )
            return
        log.info(
            "s2s outbound {peer}: {count} stanzas not acknowledged before the stream "
            "ended; sending them again",
            peer=peer_domain,
            count=len(unacked),
        )
        for data, resent in unacked:
            stanza = element_from_bytes(data, SERVER_CONTEXT)
            if resent:
                self.router.bounce(
                    stanza, "remote-server-timeout", f"{peer_domain} never acknowledged it"
                )
                continue
            stanza.resent = True
            self.send(stanza, local_domain, peer_domain)

    def _take_queue(self, key):
        """
        The stanzas waiting for route C{key}, as C{(bytes, resent)} pairs,
        no longer counted as waiting.
        """
        queue = self._queues.pop(key, [])
        self._queued_bytes -= self._queue_bytes.pop(key, 0)
        return queue

    def _bounce_queued(self, entry, condition, text):
        data, _ = entry
        self.router.bounce(element_from_bytes(data, SERVER_CONTEXT), condition, text)

    def queued(self, local_domain, peer_domain):
        return len(self._queues.get((local_domain, peer_domain), ()))

    def outbound_stream(self, local_domain, peer_domain):
        """
        The outbound stream that carries stanzas from C{local_domain} to
        C{peer_domain} now, or L{None}.
        """
        return self._outbound.get((local_domain, peer_domain))

    def _connect_route(self, key):
        local_domain, peer_domain = key
        d = defer.Deferred.fromCoroutine(
            self._open_stream(local_domain, peer_domain, Purpose.DIALBACK)
        )
        self._connecting[key] = d
        d.addTimeout(self.authentication_timeout, self.clock)
        d.addCallbacks(self._route_ready, self._route_failed, (key,), None, (key,))
        d.addErrback(lambda f: log.failure("routing to {peer}", f, peer=peer_domain))

    def _route_ready(self, stream, key):
        del self._connecting[key]
        self._outbound[key] = stream
        self.to_peers.attach_sink(stream.transport, stream)
        for data, resent in self._take_queue(key):
            refusal = self._over_limits(stream)
            if refusal is not None:
                self._bounce_queued((data, resent), "resource-constraint", refusal)
                continue
            stream.send_serialised(data, resent)

    def _route_failed(self, failure, key):
        del self._connecting[key]
        local_domain, peer_domain = key
        if failure.check(NegotiationFailure):
            condition, text = failure.value.condition, failure.value.text
        elif failure.check(defer.TimeoutError, defer.CancelledError):
            condition = "remote-server-timeout"
            text = f"no authenticated stream to {peer_domain} within {self.authentication_timeout}s"
        else:
            log.failure("s2s outbound {peer}: unexpected failure", failure, peer=peer_domain)
            condition, text = "internal-server-error", "the stream could not be set up"
        queue = self._take_queue(key)
        log.info(
            "s2s outbound {peer} for {local} failed: {condition} ({text}); bouncing {count} stanzas",
            peer=peer_domain,
            local=local_domain,
            condition=condition,
            text=text,
            count=len(queue),
        )
        for entry in queue:
            self._bounce_queued(entry, condition, text)

    # Dialback verification -------------------------------------------------

    def verify_dialback_key(self, originating, receiving, stream_id, key):
        """
        Ask C{originating}'s authoritative server whether C{key} is genuine
        for the stream C{stream_id} it opened to our C{receiving} domain,
        over a fresh connection (XEP-0220 section 2.1.2).

        @return: a Deferred firing with whether the key is valid, or failing
            with L{DialbackError}.
        """
        d = defer.Deferred.fromCoroutine(
            self._open_stream(
                receiving, originating, Purpose.VERIFY, VerifyRequest(stream_id, key)
            )
        )
        d.addTimeout(self.authentication_timeout, self.clock)

        def failed(failure):
            # XEP-0220 section 2.4: whatever went wrong in step 3, the
            # initiating server hears remote-server-not-found.
            if failure.check(NegotiationFailure):
                raise DialbackError("remote-server-not-found", failure.value.text)
            if failure.check(defer.TimeoutError):
                raise DialbackError(
                    "remote-server-not-found", "the authoritative server did not answer in time"
                )
            return failure

        return d.addErrback(failed)

    # Connecting --------------------------------------------------------------

    async def _open_stream(self, local_domain, peer_domain, purpose, verify_request=None):
        """
        Find the peer's s2s service, connect, and negotiate a stream for
        C{purpose}, trying each target and address in turn (RFC 6120 section
        3.2.1, RFC 7673 section 3.4): any failure before the stream is
        authenticated moves on to the next address, then the next target,
        except an answer the peer's domain gave for itself (a dialback
        verdict).  A target whose address or TLSA answers are bogus is
        skipped; one with usable, secure TLSA records is reached over TLS
        only, whatever the policy allows.

        @return: the authenticated L{OutboundStream} (L{Purpose.DIALBACK})
            or whether the key is valid (L{Purpose.VERIFY}).
        @raise NegotiationFailure: when every target is spent, with the
            condition of the failure that got furthest.
        """
        policy = self.policy.for_domain(peer_domain)
        try:
            targets = await resolve_targets(self.resolver, peer_domain)
        except ServiceNotOffered:
            raise NegotiationFailure(
                "remote-server-not-found", f"{peer_domain} publishes no s2s service", stage=Stage.DNS
            ) from None
        except DNSLookupFailed as e:
            raise NegotiationFailure(
                "remote-server-not-found", f"DNS lookup for {peer_domain} failed: {e}",
                stage=Stage.DNS,
            ) from None
        dane_applies = "dane" in policy.verifiers or policy.require_dane
        failures = []

        def failed(stage, condition, text):
            failures.append((stage, condition, text))
            log.info(
                "s2s outbound {peer}: {attempt}; trying the next address or target",
                peer=peer_domain,
                attempt=text,
            )

        for target in targets:
            where = f"{target.host}:{target.port}"
            addresses = await lookup_addresses(self.resolver, target.host)
            if addresses.bogus:
                failed(*_skipped(where, "its address records are bogus"))
                continue
            if not addresses.addresses:
                failed(*_skipped(where, "no address" + "".join(
                    f"; {problem}" for problem in addresses.problems)))
                continue
            require_tls = policy.require_tls
            if dane_applies:
                try:
                    records, _ = await target_tlsa(self.resolver, target, peer_domain)
                except DANELookupFailed as e:
                    failed(*_skipped(where, str(e)))
                    continue
                if records and any(usable(record) for record in records):
                    # RFC 7673 section 3.3: secure, usable TLSA records make
                    # TLS mandatory for this target.
                    require_tls = True
            for address in addresses.addresses:
                failure = await self._try_address(
                    address, target, local_domain, peer_domain, purpose, verify_request,
                    require_tls,
                )
                if not isinstance(failure, NegotiationFailure):
                    return failure
                if failure.final:
                    raise failure
                failed(failure.stage, failure.condition, f"{where} [{address}]: {failure.text}")
        if not failures:
            raise NegotiationFailure(
                "remote-server-not-found", f"{peer_domain} has no targets", stage=Stage.DNS
            )
        stage, condition, _ = max(failures, key=lambda failure: failure[0])
        raise NegotiationFailure(
            condition,
            f"could not reach {peer_domain}: " + "; ".join(text for _, _, text in failures),
            stage=stage,
        )

    async def _try_address(self, address, target, local_domain, peer_domain, purpose,
                           verify_request, require_tls):
        """
        One address of one target: connect and negotiate, in plaintext again
        if the peer refuses TLS and C{require_tls} is false.

        @return: what the stream's C{ready} gave, or the L{NegotiationFailure}.
        """
        attempt_tls = True
        while True:
            try:
                stream = await self._connect(
                    address, target, local_domain, peer_domain, purpose, verify_request, attempt_tls,
                )
            except internet_error.ConnectingCancelledError:
                # Our own timeout cancelled the attempt.
                raise defer.CancelledError() from None
            except internet_error.ConnectError as e:
                return NegotiationFailure(
                    "remote-server-not-found", f"connecting: {e.__class__.__name__}",
                    stage=Stage.CONNECT,
                )
            stream.target = target
            try:
                return await stream.ready
            except NegotiationFailure as failure:
                if not failure.tls_refused or target.direct_tls or not attempt_tls:
                    return failure
                if require_tls:
                    return NegotiationFailure(
                        "remote-server-not-found",
                        "no TLS offered, which policy (or DANE) requires",
                        stage=failure.stage,
                    )
                log.warn(
                    "s2s outbound {peer}: no TLS offered at {address}; continuing in "
                    "plaintext as policy allows",
                    peer=peer_domain,
                    address=address,
                )
                attempt_tls = False

    def _connect(self, address, target, local_domain, peer_domain, purpose, verify_request, attempt_tls):
        family = ipaddress.ip_address(address).version
        endpoint_type = TCP6ClientEndpoint if family == 6 else TCP4ClientEndpoint
        endpoint = endpoint_type(self.reactor, address, target.port, timeout=self.connect_timeout)
        if target.direct_tls:
            endpoint = wrapClientTLS(
                self.tls_profile.client_creator(local_domain, peer_domain, direct_tls=True), endpoint
            )
        factory = OutboundFactory(
            self,
            local_domain=local_domain,
            peer_domain=peer_domain,
            purpose=purpose,
            attempt_tls=attempt_tls,
            direct_tls=target.direct_tls,
            verify_request=verify_request,
        )
        return endpoint.connect(factory)

    # Shutting down -----------------------------------------------------------

    def shut_down(self, grace=2.0):
        """
        Close every stream with C{system-shutdown} and bounce what is queued.

        @return: a Deferred that fires once every connection is closed; those
            still open after C{grace} seconds are aborted.
        """
        self.shutting_down = True
        for d in list(self._connecting.values()):
            d.cancel()
        for stream in list(self.streams):
            stream.fail("system-shutdown", "the gateway is shutting down")
        if not self.streams:
            return defer.succeed(None)
        drained = defer.Deferred()
        self._drained.append(drained)

        def abort():
            for stream in list(self.streams):
                stream.transport.abortConnection()

        timer = self.clock.callLater(grace, abort)
        return drained.addBoth(lambda result: timer.active() and timer.cancel())
