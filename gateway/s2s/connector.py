"""
Reaching a peer: finding its s2s service (SRV targets, addresses, TLSA
records), connecting to each target and address in turn, and negotiating
an outbound stream, for stanzas (dialback) or to check a dialback key with
the peer's authoritative server.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from twisted.internet import defer
from twisted.internet import error as internet_error
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure

from gateway.log import Logger
from gateway.names.interfaces import IDNSClient
from gateway.names.srv import DNSLookupFailed, ServiceNotOffered, Target, lookup_addresses, resolve_targets
from gateway.s2s.interfaces import IOutboundStreamOwner
from gateway.s2s.outbound import NegotiationFailure, OutboundFactory, OutboundStream, Purpose, Stage
from gateway.tls.tlsa import usable
from gateway.verifiers.dane import DANELookupFailed, target_tlsa
from gateway.xmpp.errors import DialbackError

if TYPE_CHECKING:
    from gateway.app.config import PolicyConfig
    from gateway.tls.profile import TLSProfile

log = Logger()


def _skipped(where: str, why: str) -> tuple[Stage, str, str]:
    return (Stage.DNS, "remote-server-not-found", f"{where}: skipped, {why}")


@dataclass(frozen=True)
class VerifyRequest:
    """
    A key to check with a peer's authoritative server (XEP-0220 2.1.2).
    """

    stream_id: str
    key: str


class Connector:
    """
    Opens outbound streams for C{owner}, the
    L{gateway.s2s.interfaces.IOutboundStreamOwner} of the streams it makes.

    @param connect_timeout: seconds to wait for each TCP connection.
    @param authentication_timeout: seconds a whole attempt may take, every
        target and address included.
    """

    def __init__(
        self,
        reactor: Any,
        resolver: IDNSClient,
        tls_profile: TLSProfile,
        policy: PolicyConfig,
        connect_timeout: float,
        authentication_timeout: float,
        owner: IOutboundStreamOwner,
    ) -> None:
        self.reactor = reactor
        self.resolver = resolver
        self.tls_profile = tls_profile
        self.policy = policy
        self.connect_timeout = connect_timeout
        self.authentication_timeout = authentication_timeout
        self.owner = owner

    def open_stream(self, local_domain: str, peer_domain: str) -> defer.Deferred[OutboundStream]:
        """
        An authenticated stream from C{local_domain} to C{peer_domain}.

        @return: a Deferred firing with the L{OutboundStream}, or failing
            with L{NegotiationFailure}, or with L{defer.TimeoutError} after
            the authentication timeout.
        """
        d: defer.Deferred[OutboundStream] = defer.Deferred.fromCoroutine(
            self._open_stream(local_domain, peer_domain, Purpose.DIALBACK)
        )
        d.addTimeout(self.authentication_timeout, self.reactor)
        return d

    def verify_dialback_key(
        self, originating: str, receiving: str, stream_id: str, key: str
    ) -> defer.Deferred[bool]:
        """
        Ask C{originating}'s authoritative server whether C{key} is genuine
        for the stream C{stream_id} it opened to our C{receiving} domain,
        over a fresh connection (XEP-0220 section 2.1.2).

        @return: a Deferred firing with whether the key is valid, or failing
            with L{DialbackError}.
        """
        d: defer.Deferred[bool] = defer.Deferred.fromCoroutine(
            self._open_stream(
                receiving, originating, Purpose.VERIFY, VerifyRequest(stream_id, key)
            )
        )
        d.addTimeout(self.authentication_timeout, self.reactor)

        def failed(failure: Failure) -> Failure:
            # XEP-0220 section 2.4: whatever went wrong in step 3, the
            # initiating server hears remote-server-not-found.
            error = failure.value
            if isinstance(error, NegotiationFailure):
                raise DialbackError("remote-server-not-found", error.text)
            if failure.check(defer.TimeoutError):
                raise DialbackError(
                    "remote-server-not-found", "the authoritative server did not answer in time"
                )
            return failure

        return d.addErrback(failed)

    async def _open_stream(
        self,
        local_domain: str,
        peer_domain: str,
        purpose: Purpose,
        verify_request: VerifyRequest | None = None,
    ) -> Any:
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
        failures: list[tuple[Stage, str, str]] = []

        def failed(stage: Stage, condition: str, text: str) -> None:
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

    async def _try_address(
        self,
        address: str,
        target: Target,
        local_domain: str,
        peer_domain: str,
        purpose: Purpose,
        verify_request: VerifyRequest | None,
        require_tls: bool,
    ) -> Any:
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
            ready = stream.ready
            # Set until it fires, which is after the connection is made.
            assert ready is not None
            try:
                return await ready
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

    def _connect(
        self,
        address: str,
        target: Target,
        local_domain: str,
        peer_domain: str,
        purpose: Purpose,
        verify_request: VerifyRequest | None,
        attempt_tls: bool,
    ) -> defer.Deferred[OutboundStream]:
        family = ipaddress.ip_address(address).version
        endpoint_type = TCP6ClientEndpoint if family == 6 else TCP4ClientEndpoint
        endpoint: IStreamClientEndpoint = endpoint_type(
            self.reactor, address, target.port, timeout=self.connect_timeout
        )
        if target.direct_tls:
            endpoint = wrapClientTLS(
                self.tls_profile.client_creator(local_domain, peer_domain, direct_tls=True), endpoint
            )
        factory = OutboundFactory(
            self.owner,
            local_domain=local_domain,
            peer_domain=peer_domain,
            purpose=purpose,
            attempt_tls=attempt_tls,
            direct_tls=target.direct_tls,
            verify_request=verify_request,
            target=target,
        )
        # The endpoint says IProtocol; the factory builds OutboundStreams.
        return cast("defer.Deferred[OutboundStream]", endpoint.connect(factory))
