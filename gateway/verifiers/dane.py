"""
DANE (RFC 6698, RFC 7671) for XMPP over SRV (RFC 7673, RFC 7712).

Where the TLSA records are:

  - for each SRV target of the peer domain (C{_xmpps-server._tcp} and
    C{_xmpp-server._tcp}), when the SRV answer is DNSSEC-secure and the
    target's address records are too, at C{_<port>._tcp.<target>};
  - when the peer domain has no SRV records and their absence is secure,
    at C{_5269._tcp.<domain>}, if the domain's address records are secure.

Outbound, only the target the stream is connected to counts; inbound, the
peer domain's own SRV targets are looked up (as Prosody's C{use_dane}
does), and a certificate matching any of them verifies the peer.

Verdicts:

  - verified: a usable, secure record matched (evidence: the TLSA name, the
    record, its usage, the target, whether SRV was secure);
  - not applicable: the DNS data is insecure, or there are no usable TLSA
    records, so DANE has nothing to say (unless the policy requires DANE:
    then it is a decisive failure);
  - failed, decisive: secure, usable TLSA records exist and none matches
    (the peer must not then be accepted by a weaker method), or a lookup
    that DANE depends on is bogus.
"""

from __future__ import annotations

import datetime
from typing import cast

import dns.rdtypes.ANY.TLSA
from cryptography.x509.verification import Store
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from gateway.log import Logger
from gateway.names.client import DNSError
from gateway.names.interfaces import IDNSClient
from gateway.names.srv import (
    DNSLookupFailed,
    ServiceNotOffered,
    Target,
    lookup_addresses,
    resolve_targets,
)
from gateway.tls.tlsa import TLSARecord, match_tlsa
from gateway.verifiers.interfaces import (
    IDomainVerifier,
    IDomainVerifierFactory,
    Verdict,
    VerificationRequest,
    VerifierEnvironment,
)

log = Logger()


class DANELookupFailed(Exception):
    """
    A lookup DANE depends on came back bogus or unanswered: the target must
    not be used (RFC 7673 section 3.2).
    """


_Bogus = DANELookupFailed


def tlsa_name(target: Target) -> str:
    return f"_{target.port}._tcp.{target.host}"


async def target_tlsa(
    client: IDNSClient, target: Target, domain: str
) -> tuple[list[TLSARecord] | None, str | None]:
    """
    The TLSA records that apply to C{target} of peer C{domain} (RFC 7673
    sections 3.2 and 3.3): looked up only once the target's SRV answer (or
    the secure absence of SRV records) and its address records are
    DNSSEC-secure.

    @return: C{(records, note)}: the secure TLSA records, or L{None} and why
        DANE does not apply to this target.
    @raise DANELookupFailed: when the address or TLSA answer is bogus, or the
        TLSA look-up got no answer: the target must not be used.
    """
    if target.srv and not target.srv_secure:
        return None, f"the SRV records of {domain} are not DNSSEC-signed"
    if not target.srv and not target.srv_secure:
        return None, f"{domain} has no SRV records, and their absence is not DNSSEC-signed"
    addresses = await lookup_addresses(client, target.host)
    if addresses.bogus:
        raise DANELookupFailed(f"the address records of {target.host} are bogus")
    if not addresses.secure:
        return None, f"the address records of {target.host} are not DNSSEC-signed"
    name = tlsa_name(target)
    try:
        answer = await client.query(name, "TLSA")
    except DNSError as e:
        raise DANELookupFailed(f"TLSA lookup at {name} failed: {e}") from None
    if answer.bogus:
        raise DANELookupFailed(f"the TLSA records at {name} are bogus (DNSSEC validation failed)")
    if answer.failed:
        raise DANELookupFailed(f"TLSA lookup at {name} failed: the resolver answered {answer.rcode}")
    if not answer.secure:
        return None, f"the TLSA answer at {name} is not DNSSEC-signed"
    if not answer.records:
        return None, f"no TLSA records at {name}"
    tlsa = cast("tuple[dns.rdtypes.ANY.TLSA.TLSA, ...]", answer.records)
    records = [TLSARecord(rr.usage, rr.selector, rr.mtype, rr.cert) for rr in tlsa]
    return records, None


@implementer(IDomainVerifier)
class DANEVerifier:
    """
    @param client: the gateway's L{gateway.names.client.DNSClient}.
    @param store: trust anchors for PKIX-TA / PKIX-EE records (or L{None}).
    @param clock: an L{IReactorTime}, for validity checks.
    """

    name = "dane"
    #: A gate (L{gateway.verifiers.chain}): secure TLSA records that don't
    #: match, and C{require_dane} without any, refuse the peer whatever the
    #: order of the policy's verifiers.
    gate = True

    def __init__(self, client: IDNSClient, clock: IReactorTime, store: Store | None = None) -> None:
        self.client = client
        self.clock = clock
        self.store = store

    def verify(self, request: VerificationRequest) -> defer.Deferred[Verdict]:
        return defer.Deferred.fromCoroutine(self._verify(request))

    async def _verify(self, request: VerificationRequest) -> Verdict:
        required = bool(getattr(request.policy, "require_dane", False))

        def nothing_to_say(reason: str) -> Verdict:
            if required:
                return Verdict.failed(self.name, f"DANE is required, but {reason}", True)
            return Verdict.not_applicable(self.name, reason)

        if not request.peer_chain:
            return nothing_to_say("the peer presented no certificate")
        try:
            found, notes = await self._tlsa_sets(request)
        except _Bogus as e:
            return Verdict.failed(self.name, str(e), True)
        if not found:
            return nothing_to_say("; ".join(notes) or "no TLSA records")
        allow_cn_id = bool(getattr(request.policy, "allow_cn_id", False))
        failures: list[str] = []
        usable = 0
        for name, target, records in found:
            match = match_tlsa(
                records,
                request.peer_chain,
                (request.peer_domain, target.host),
                store=self.store,
                now=self._now(),
                allow_cn_id=allow_cn_id,
            )
            usable += match.usable_count
            if match.matched:
                return Verdict.verified(
                    self.name,
                    f"{name}: {match.reason}",
                    tlsa=name,
                    record=str(match.record),
                    usage=match.usage,
                    target=f"{target.host}:{target.port}",
                    srv=target.srv,
                    srv_secure=target.srv_secure,
                )
            failures.append(f"{name}: {match.reason}")
        if usable == 0:
            return nothing_to_say("; ".join(failures))
        return Verdict.failed(
            self.name,
            "secure TLSA records exist and none matches: " + "; ".join(failures),
            True,
        )

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.timezone.utc)

    async def _tlsa_sets(
        self, request: VerificationRequest
    ) -> tuple[list[tuple[str, Target, list[TLSARecord]]], list[str]]:
        """
        The secure TLSA record sets that apply, as C{(name, target,
        records)}; and notes on why others don't.
        """
        if request.direction == "outbound" and request.target is not None:
            targets = [request.target]
        else:
            try:
                targets = await resolve_targets(self.client, request.peer_domain)
            except DNSLookupFailed as e:
                raise _Bogus(f"SRV lookup failed: {e}") from None
            except ServiceNotOffered:
                return [], [f"{request.peer_domain} publishes no s2s service"]
        found: list[tuple[str, Target, list[TLSARecord]]] = []
        notes: list[str] = []
        failures: list[DANELookupFailed] = []
        for target in dict.fromkeys(targets):
            try:
                records, note = await target_tlsa(self.client, target, request.peer_domain)
            except DANELookupFailed as e:
                # RFC 7673 section 3.2: that target is out; others may speak.
                failures.append(e)
                continue
            if records:
                found.append((tlsa_name(target), target, records))
            elif note:
                notes.append(note)
        if failures and not found:
            raise failures[0]
        return found, notes + [str(e) for e in failures]


@implementer(IDomainVerifierFactory)
class DANEVerifierFactory:
    """
    Builds the L{DANEVerifier} with the gateway's resolver (or, when the
    environment has none, one made from the configuration's C{[dns]}, as
    for POSH), the reactor's clock, and C{policy.trust_store} for PKIX-TA
    and PKIX-EE records.
    """

    name = "dane"

    def build(self, environment: VerifierEnvironment) -> DANEVerifier:
        from gateway.tls.pkix import load_trust_store

        policy = getattr(environment.config, "policy", None)
        store = load_trust_store(getattr(policy, "trust_store", None))
        resolver = environment.resolver
        if resolver is None:
            from gateway.names.srv import make_resolver

            resolver = make_resolver(environment.config.dns, environment.reactor)
        return DANEVerifier(resolver, environment.reactor, store)
