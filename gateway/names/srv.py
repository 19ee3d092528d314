"""
Finding where a peer domain's s2s service lives (RFC 6120 section 3.2,
XEP-0368), and whether DNSSEC vouched for it (RFC 7673).

  1. SRV C{_xmpps-server._tcp.<domain>} (direct TLS, XEP-0368) and
     C{_xmpp-server._tcp.<domain>} (STARTTLS), merged into one RFC 2782
     order: by priority, then a weighted random pick; at equal priority
     the direct TLS targets come first (no STARTTLS round trips, and a
     multiplexer in front of the server can route on ALPN).
  2. A single SRV record with target C{.} means the service is decidedly
     not offered.
  3. No SRV records at all: the domain itself, port 5269.
  4. A bogus C{_xmpp-server} answer (or none at all, or a REFUSED or
     similar) aborts: RFC 7673 section 3.1 forbids falling back to the
     domain when the SRV lookup failed.  The direct TLS records are
     optional: a failed look-up for them counts as none, unless bogus.
     Bogus means a SERVFAIL from a resolver trusted to validate
     (C{dns.trust_ad}); from any other it is a failure like REFUSED.

Addresses are looked up with the same client (AAAA, then A; C{/etc/hosts}
first), so the gateway never depends on the machine's own resolver when
one is configured.
"""

import ipaddress
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NoReturn, Protocol, TypeAlias, cast

import dns.name
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
from twisted.names.hosts import searchFileForAll
from twisted.python.filepath import FilePath

from gateway.names.client import DNSClient, DNSError, DNSReactor, Server
from gateway.names.interfaces import IDNSClient
from gateway.xmpp.jid import canonical_domain

DEFAULT_PORT = 5269

#: An SRV record as C{(priority, weight, port, target)}; the target C{""}
#: stands for C{.}, "no service".
SRVRecord: TypeAlias = tuple[int, int, int, str]



class RNG(Protocol):
    """
    What L{order_srv} and L{merge_srv} draw from: the L{random} module, or
    a L{random.Random} with a seed in tests.
    """

    def uniform(self, a: float, b: float, /) -> float: ...


class DNSLookupFailed(Exception):
    """
    A lookup that decides where to connect failed: bogus, unanswered,
    refused.

    @ivar bogus: whether DNSSEC validation said so (rather than no answer).
    """

    def __init__(self, message: str, bogus: bool = False) -> None:
        super().__init__(message)
        self.bogus = bogus


class ServiceNotOffered(Exception):
    """
    The domain says, with an SRV target of C{.}, that it offers no s2s.
    """


@dataclass(frozen=True)
class Target:
    """
    A host to connect to for a peer domain.

    @ivar srv: whether it came from an SRV record (else it is the domain
        itself, on port 5269).
    @ivar srv_secure: whether that SRV answer was DNSSEC-secure (for the
        fallback, whether the absence of SRV records was).
    """

    host: str
    port: int
    direct_tls: bool = False
    srv: bool = True
    srv_secure: bool = False


@dataclass(frozen=True)
class Addresses:
    """
    The addresses of a host, and whether every answer was secure.

    @ivar bogus: whether an answer was bogus; then the host must not be
        used at all (RFC 7673 section 3.2), whatever the other answer says.
    @ivar problems: why answers are missing (failures, timeouts), for logs.
    """

    addresses: tuple[str, ...]
    secure: bool
    bogus: bool = False
    problems: tuple[str, ...] = ()


class AddressPolicy:
    """
    Which addresses DNS may send the gateway to (peers, their SRV targets,
    POSH hosts): public ones, and those in C{allowed} networks.  Loopback,
    private, link-local, shared, reserved and multicast addresses are
    refused by default, so that a peer (anyone who owns a domain) can't
    point the gateway at the operator's own network.
    """

    def __init__(
        self, allowed: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()
    ) -> None:
        self.allowed = tuple(allowed)

    def refusal(self, address: str) -> str | None:
        """
        Why C{address} may not be used, or L{None} when it may.
        """
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return "not an IP address"
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.allowed):
            return None
        if not ip.is_global or ip.is_multicast:
            return "not a public address (dns.allow_networks can allow it)"
        return None


class ResolverSettings(Protocol):
    """
    What L{make_resolver} reads of a L{gateway.app.config.DNSConfig}.
    """

    @property
    def servers(self) -> Iterable[Server]: ...

    @property
    def timeout(self) -> float: ...

    @property
    def trust_ad(self) -> bool: ...

    @property
    def allow_networks(self) -> Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]: ...


def make_resolver(dns_config: ResolverSettings, reactor: DNSReactor) -> DNSClient:
    """
    Build the DNS client the gateway uses, from a
    L{gateway.app.config.DNSConfig}: the configured servers, or the system's,
    with the address policy that L{lookup_addresses} applies, over
    C{reactor} (its clock and its sockets).
    """
    client = DNSClient(
        reactor,
        servers=dns_config.servers,
        timeout=dns_config.timeout,
        trust_ad=dns_config.trust_ad,
    )
    client.address_policy = AddressPolicy(dns_config.allow_networks)
    return client


def order_srv(records: Sequence[SRVRecord], rng: RNG = random) -> list[SRVRecord]:
    """
    Order SRV records per RFC 2782: ascending priority; within a priority,
    repeated weighted random selection (weight 0 records last but possible).

    @param records: C{(priority, weight, port, target)} tuples.
    @return: the records, in the order to try them.
    """
    ordered: list[SRVRecord] = []
    for priority in sorted({record[0] for record in records}):
        group = sorted(
            (r for r in records if r[0] == priority), key=lambda r: r[1]
        )
        while group:
            total = sum(r[1] for r in group)
            if total == 0:
                ordered.extend(group)
                break
            pick = rng.uniform(0, total)
            running = 0
            for index, record in enumerate(group):
                running += record[1]
                if running >= pick and record[1] > 0:
                    ordered.append(group.pop(index))
                    break
    return ordered


async def _srv(
    client: IDNSClient, name: str, optional: bool = False
) -> tuple[list[SRVRecord], bool]:
    """
    The SRV records at C{name} as C{(priority, weight, port, target)}, and
    whether the answer was secure.

    @param optional: a failed look-up (not bogus) is no records, not an error.
    @raise DNSLookupFailed: when the answer is bogus, or (unless
        C{optional}) when there is none.
    """
    try:
        answer = await client.query(name, "SRV")
    except DNSError as e:
        if optional:
            return [], False
        raise DNSLookupFailed(f"{name}: {e}") from None
    if answer.bogus:
        raise DNSLookupFailed(f"{name}: the answer is bogus (DNSSEC validation failed)", True)
    if answer.failed:
        if optional:
            return [], False
        raise DNSLookupFailed(f"{name}: the resolver answered {answer.rcode}")
    records = [
        (
            rr.priority,
            rr.weight,
            rr.port,
            "" if rr.target == dns.name.root else rr.target.to_text(omit_final_dot=True),
        )
        for rr in cast("tuple[dns.rdtypes.IN.SRV.SRV, ...]", answer.records)
    ]
    return records, answer.secure


def merge_srv(
    direct: list[SRVRecord], starttls: list[SRVRecord], rng: RNG = random
) -> list[tuple[SRVRecord, bool]]:
    """
    One order for direct TLS and STARTTLS SRV records (XEP-0368 section 3):
    ascending priority; within a priority, the direct TLS records first,
    each kind in RFC 2782 weighted order.

    @param direct: C{(priority, weight, port, target)} of C{_xmpps-server}.
    @param starttls: the same of C{_xmpp-server}.
    @return: C{(record, direct_tls)} pairs, in the order to try them.
    """
    ordered: list[tuple[SRVRecord, bool]] = []
    for priority in sorted({record[0] for record in direct + starttls}):
        for records, direct_tls in ((direct, True), (starttls, False)):
            group = [record for record in records if record[0] == priority]
            ordered.extend((record, direct_tls) for record in order_srv(group, rng))
    return ordered


async def resolve_targets(client: IDNSClient, domain: str, rng: RNG = random) -> list[Target]:
    """
    Return the L{Target}s to try for peer C{domain}, in order.

    @raise ServiceNotOffered: when the domain's SRV says so.
    @raise DNSLookupFailed: when the C{_xmpp-server} lookup fails, or either
        is bogus.
    """
    # IDNA2008 A-labels (gateway.xmpp.jid), not Python's IDNA2003 codec, which
    # would look up straße.de as strasse.de.
    ascii_domain = canonical_domain(domain)
    direct, direct_secure = await _srv(client, f"_xmpps-server._tcp.{ascii_domain}", optional=True)
    starttls, starttls_secure = await _srv(client, f"_xmpp-server._tcp.{ascii_domain}")
    if not direct and not starttls:
        return [Target(ascii_domain, DEFAULT_PORT, srv=False, srv_secure=starttls_secure)]
    if all(record[3] == "" for record in direct + starttls):
        raise ServiceNotOffered(domain)
    return [
        Target(
            record[3], record[2], direct_tls,
            srv_secure=direct_secure if direct_tls else starttls_secure,
        )
        for record, direct_tls in merge_srv(direct, starttls, rng)
        if record[3] and not _is_address(record[3])
    ] or _no_usable_target(domain)


def _is_address(name: str) -> bool:
    # RFC 2782: an SRV target is a host name.  One shaped like an IP
    # address would be used as it stands, with no address look-up (and no
    # DNSSEC behind it): it is not a target.
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _no_usable_target(domain: str) -> NoReturn:
    raise DNSLookupFailed(f"{domain}: its SRV records name no host (only IP addresses)")


HOSTS = FilePath(b"/etc/hosts")


async def lookup_addresses(client: IDNSClient, host: str) -> Addresses:
    """
    The IP addresses of C{host} (IPv6 first), and whether the answers were
    secure.  An IP address is its own answer (and not a secure one: no
    DNSSEC vouched for it); names in C{/etc/hosts} are taken from there (and
    count as secure: the operator wrote them).  Addresses that the client's
    C{address_policy} (L{AddressPolicy}) refuses are left out, each with a
    problem saying why.
    """
    policy: AddressPolicy | None = getattr(client, "address_policy", None)
    try:
        ipaddress.ip_address(host)
        literal = True
    except ValueError:
        literal = False
    if literal:
        found = Addresses((host,), False)
    else:
        local = searchFileForAll(HOSTS, host.encode("ascii", "replace"))
        if local:
            ordered = sorted(local, key=lambda a: ipaddress.ip_address(a).version, reverse=True)
            found = Addresses(tuple(dict.fromkeys(ordered)), True)
        else:
            found = await _lookup(client, host)
    if policy is None:
        return found
    kept: list[str] = []
    problems = list(found.problems)
    for address in found.addresses:
        refusal = policy.refusal(address)
        if refusal is None:
            kept.append(address)
        else:
            problems.append(f"{address}: {refusal}")
    if len(kept) == len(found.addresses):
        return found
    return Addresses(tuple(kept), found.secure and bool(kept), found.bogus, tuple(problems))


async def _lookup(client: IDNSClient, host: str) -> Addresses:
    addresses: list[str] = []
    secure = True
    bogus = False
    problems: list[str] = []
    for rrtype in ("AAAA", "A"):
        try:
            answer = await client.query(host, rrtype)
        except DNSError as e:
            secure = False
            problems.append(f"{rrtype}: {e}")
            continue
        if answer.bogus:
            secure = False
            bogus = True
            problems.append(f"{rrtype}: bogus (DNSSEC validation failed)")
            continue
        if answer.failed:
            secure = False
            problems.append(f"{rrtype}: the resolver answered {answer.rcode}")
            continue
        secure = secure and answer.secure
        records = cast("tuple[dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA, ...]", answer.records)
        for rr in records:
            if rr.address not in addresses:
                addresses.append(rr.address)
    return Addresses(tuple(addresses), secure and bool(addresses), bogus, tuple(problems))

