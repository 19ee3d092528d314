"""
Finding where a peer domain's s2s service lives (RFC 6120 section 3.2,
XEP-0368).

  1. SRV C{_xmpps-server._tcp.<domain>} (direct TLS) and
     C{_xmpp-server._tcp.<domain>} (STARTTLS); direct TLS targets come
     first when present.  Within each, RFC 2782 order: priority, then a
     weighted random pick.
  2. A single SRV record with target C{.} means the service is decidedly
     not offered.
  3. No SRV records at all: the domain itself, port 5269.

Addresses are looked up with the same resolver (AAAA, then A), so the
gateway never depends on the machine's own resolver when one is
configured.
"""

import ipaddress
import random
import socket
from dataclasses import dataclass

from twisted.internet import defer
from twisted.names import client, dns, error
from twisted.names.hosts import Resolver as HostsResolver
from twisted.names.resolve import ResolverChain

DEFAULT_PORT = 5269

# twisted.names makes a protocol per query and would log its start and stop
# at info level.  (Twisted's UDP port still logs its own opening and closing.)
dns.DNSDatagramProtocol.noisy = False


class ServiceNotOffered(Exception):
    """
    The domain says, with an SRV target of C{.}, that it offers no s2s.
    """


@dataclass(frozen=True)
class Target:
    """
    A host to connect to for a peer domain.
    """

    host: str
    port: int
    direct_tls: bool = False


def make_resolver(dns_config):
    """
    Build the resolver the gateway uses, from a L{gateway.config.DNSConfig}:
    the configured servers, or the system's.  C{/etc/hosts} is consulted
    first either way.
    """
    timeout = (dns_config.timeout,)
    if dns_config.servers:
        upstream = client.Resolver(servers=list(dns_config.servers), timeout=timeout)
    else:
        upstream = client.Resolver(resolv="/etc/resolv.conf", timeout=timeout)
    return ResolverChain([HostsResolver(file=b"/etc/hosts"), upstream])


def order_srv(records, rng=random):
    """
    Order SRV records per RFC 2782: ascending priority; within a priority,
    repeated weighted random selection (weight 0 records last but possible).

    @param records: C{(priority, weight, port, target)} tuples.
    @return: the records, in the order to try them.
    """
    ordered = []
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


async def _srv(resolver, name):
    try:
        answers, _, _ = await resolver.lookupService(name)
    except (error.DNSNameError, error.DNSQueryRefusedError, error.DNSServerError):
        return []
    except (error.DNSQueryTimeoutError, defer.TimeoutError, error.DomainError):
        return []
    return [
        (
            rr.payload.priority,
            rr.payload.weight,
            rr.payload.port,
            rr.payload.target.name.decode("ascii").rstrip("."),
        )
        for rr in answers
        if rr.type == dns.SRV
    ]


async def resolve_targets(resolver, domain, rng=random):
    """
    Return the L{Target}s to try for peer C{domain}, in order.

    @raise ServiceNotOffered: when the domain's SRV says so.
    """
    ascii_domain = domain.encode("idna").decode("ascii")
    direct = await _srv(resolver, f"_xmpps-server._tcp.{ascii_domain}")
    starttls = await _srv(resolver, f"_xmpp-server._tcp.{ascii_domain}")
    if not direct and not starttls:
        return [Target(ascii_domain, DEFAULT_PORT)]
    if all(record[3] == "" for record in direct + starttls):
        raise ServiceNotOffered(domain)
    targets = [
        Target(record[3], record[2], True) for record in order_srv(direct, rng) if record[3]
    ]
    targets += [
        Target(record[3], record[2], False) for record in order_srv(starttls, rng) if record[3]
    ]
    return targets


async def resolve_addresses(resolver, host):
    """
    Return the IP addresses of C{host} (IPv6 first), or C{[host]} when it is
    an IP address already.
    """
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    addresses = []
    for lookup, kind, family in (
        (resolver.lookupIPV6Address, dns.AAAA, socket.AF_INET6),
        (resolver.lookupAddress, dns.A, socket.AF_INET),
    ):
        try:
            answers, _, _ = await lookup(host)
        except (error.DomainError, error.DNSServerError, error.DNSQueryRefusedError,
                error.DNSQueryTimeoutError, defer.TimeoutError):
            continue
        for rr in answers:
            if rr.type == kind:
                address = socket.inet_ntop(family, rr.payload.address)
                if address not in addresses:
                    addresses.append(address)
    return addresses
