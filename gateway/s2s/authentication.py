"""
Verifying peers: running the chain a trust policy names, the policies that
apply over its result (certificate changes, outbound certificates, the
record store's health), and what follows an acceptance or a refusal:
records, logs, metrics, warnings, and a stream that lasts no longer than
its certificate.
"""

from __future__ import annotations

import datetime
import functools
from typing import TYPE_CHECKING, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from gateway.log import Logger
from gateway.records.record import AuthenticationRecord
from gateway.s2s.continuity import Continuity
from gateway.s2s.keeper import RecordKeeper
from gateway.s2s.metrics import GatewayMetrics
from gateway.s2s.throttle import LogThrottle, RefusalTally
from gateway.s2s.warnings import Warning, Warnings
from gateway.tls.certificates import CertificateSummary, certificate_dict
from gateway.verifiers.chain import ChainResult, run_chain
from gateway.verifiers.interfaces import IDomainVerifier, VerificationRequest

if TYPE_CHECKING:
    from gateway.app.config import DomainPolicy, PolicyConfig
    from gateway.s2s.stream import S2SStream

log = Logger()


class ChainSource(Protocol):
    """
    Where the verifiers a policy names come from
    (L{gateway.verifiers.registry.VerifierRegistry}).
    """

    def chain_for(self, policy: DomainPolicy) -> list[IDomainVerifier]: ...


def recorded_method(direction: str, result: ChainResult) -> str:
    """
    How the peer was verified, as records, logs, metrics and the status page
    say it (RFC 7590 section 3.6).  On a stream we open, dialback proves our
    identity to the peer but nothing about the peer: we only reached an
    address that DNS gave for its domain.  That is recorded as C{dns}, and
    shown as unverified, like C{none}.  A refused peer's is C{refused}.
    """
    if result.method is None:
        return "refused"
    if direction == "outbound" and result.method == "dialback":
        return "dns"
    return result.method


class Authenticator:
    """
    Verifies peers for the streams, and keeps what each verification
    decided.
    """

    def __init__(
        self,
        policy: PolicyConfig,
        verifiers: ChainSource,
        clock: IReactorTime,
        keeper: RecordKeeper,
        metrics: GatewayMetrics,
    ) -> None:
        self.policy = policy
        self.verifiers = verifiers
        self.clock = clock
        self.keeper = keeper
        self.metrics = metrics
        self.continuity: Continuity = keeper.continuity
        self.warnings = Warnings(clock, on_acknowledge=self.certificate_change_acknowledged)
        self.refusal_tally = RefusalTally(clock)
        self._refusals_logged = LogThrottle(clock)
        self._warned: set[tuple[str, str]] = set()

    def verify_peer(
        self,
        direction: str,
        local_domain: str,
        peer_domain: str,
        stream: S2SStream,
        dialback_key: str | None = None,
    ) -> defer.Deferred[ChainResult]:
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
            target=stream.target,
            policy=policy,
        )
        d = defer.Deferred.fromCoroutine(
            run_chain(self.verifiers.chain_for(policy), request, policy, self.clock)
        )
        return d.addCallback(self.checked, stream, peer_domain, policy)

    def checked(
        self, result: ChainResult, stream: S2SStream, peer_domain: str, policy: DomainPolicy
    ) -> ChainResult:
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
        keeper = self.keeper
        if result.authenticated and not keeper.available:
            if not keeper.known(peer_domain) or not keeper.room():
                return ChainResult(
                    False,
                    None,
                    result.verdict,
                    result.verdicts,
                    "authentication records can't be written right now; until the store is "
                    "back, only peers already known are accepted"
                    + (" (and no more records can be held)" if keeper.known(peer_domain) else ""),
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

    def certificate_change_acknowledged(self, warning: Warning) -> None:
        """
        An operator accepted a changed certificate: it is the one to expect.
        """
        if warning.kind == "certificate-change":
            self.continuity.last[warning.peer_domain] = (
                warning.details["sha256"],
                warning.details["spki_sha256"],
            )

    def record(
        self,
        stream: S2SStream,
        direction: str,
        local_domain: str,
        peer_domain: str,
        result: ChainResult,
        authenticated: bool,
        via: str | None,
    ) -> AuthenticationRecord:
        """
        Keep the authentication record of C{result} on C{stream}.
        """
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
        self.keeper.keep(record)
        return record

    def authenticated(
        self, stream: S2SStream, peer_domain: str, local_domain: str, result: ChainResult, via: str
    ) -> None:
        """
        C{stream} is now authenticated for C{(peer_domain, local_domain)}:
        log it and keep the authentication record.

        @param result: the L{ChainResult} that says how the peer was verified.
        @param via: how the stream itself was authenticated (C{"SASL
            EXTERNAL"}, C{"dialback"}).
        """
        tls = stream.tls
        log.info(
            "s2s {direction} {peer} at {address} authenticated for {local} via {method}"
            " ({via}); TLS {tls_version} {cipher}",
            direction=stream.direction,
            peer=peer_domain,
            address=stream.peer_address(),
            local=local_domain,
            method=recorded_method(stream.direction, result),
            via=via,
            reason=result.verdict.reason if result.verdict else "unauthenticated, as policy allows",
            tls_version=tls.version if tls else "none",
            cipher=tls.cipher if tls else "none",
            stream_id=stream.stream_id,
        )
        record = self.record(stream, stream.direction, local_domain, peer_domain, result, True, via)
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

    def _expire_with_certificate(self, stream: S2SStream, result: ChainResult) -> None:
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
        end = _end_of_validity(valid_until)
        if end is None:
            return
        delay = max(0.0, end - self.clock.seconds())
        timer = stream.certificate_timer
        if timer is not None and timer.active():
            if timer.getTime() <= self.clock.seconds() + delay:
                return
            timer.cancel()
        stream.certificate_timer = self.clock.callLater(
            delay, self._certificate_expired, stream, valid_until
        )

    def _certificate_expired(self, stream: S2SStream, valid_until: str) -> None:
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

    def refused(
        self,
        stream: S2SStream,
        direction: str,
        local_domain: str,
        peer_domain: str,
        result: ChainResult,
    ) -> None:
        """
        The chain refused C{peer_domain} on C{stream}: log and record it.
        """
        self.metrics.handshakes.labels(direction, "refused").inc()
        deciding = result.verdict.verifier if result.verdict else "chain exhausted"
        self.metrics.failures.labels(direction, deciding).inc()
        self.metrics.warnings.labels("verification-failure").inc()
        source = stream.source
        if not self.refusal_tally.count(source, peer_domain):
            # Over the source's allowance: counted into one record and one
            # warning for the source (a peer claiming a new random domain
            # each time must not make a record, a warning and a log line
            # per try).
            refusals = self._refusals_logged.due(("source", source))
            if refusals is not None:
                log.warn(
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
            log.warn(
                "s2s {direction} {peer} refused for {local}: {reason}"
                + (" ({suppressed} more refusals since the last line)" if refusals > 1 else ""),
                direction=direction,
                peer=peer_domain,
                local=local_domain,
                reason=result.reason,
                stream_id=stream.stream_id,
                suppressed=refusals - 1,
            )
        self.record(stream, direction, local_domain, peer_domain, result, False, None)
        self.warnings.add(
            "verification-failure",
            peer_domain,
            f"{direction} stream with {peer_domain} refused: {result.reason}",
            direction=direction,
            local_domain=local_domain,
        )

    def keep_refusal_summaries(self) -> None:
        """
        Write the summaries of the refusal windows that have ended.
        """
        self.keeper.keep_summaries(self.refusal_tally.due())

    def stream_closed(self, stream: S2SStream) -> None:
        """
        C{stream} is gone: its certificate timer and its count in the
        metrics go with it.
        """
        timer = stream.certificate_timer
        if timer is not None and timer.active():
            timer.cancel()
        for record in stream.authentications:
            self.metrics.streams.labels(
                stream.direction, record.method, record.tls_version or "none"
            ).dec()


@functools.lru_cache(maxsize=1024)
def _end_of_validity(valid_until: str) -> float | None:
    """
    The first moment (seconds since the epoch) after C{valid_until}
    (C{YYYY-MM-DDTHH:MM:SSZ}), or L{None} if it is not spelled so.  Every
    stream from a peer has the same one: it is worked out once.
    """
    try:
        moment = datetime.datetime.strptime(valid_until, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc
        )
    except ValueError:
        return None
    # RFC 5280 section 4.1.2.5: valid through notAfter, inclusive, to the
    # second; the first moment it is not is a second later.
    return moment.timestamp() + 1
