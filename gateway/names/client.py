"""
A DNS client that knows whether an answer is secure.

Queries go to the configured resolvers (or those of C{/etc/resolv.conf})
with the DO and AD bits set (RFC 4035, RFC 6840 section 5.7).  An answer
counts as I{secure} only when the resolver set the AD bit I{and} the
operator declared that resolver trusted to validate (C{dns.trust_ad}, for a
validating resolver on loopback, as Postfix and Prosody do): the gateway
does not validate signatures itself.  Answers are one of:

  - secure or insecure data (NOERROR with records);
  - nonexistence (NXDOMAIN, or NOERROR without records: NODATA), secure or
    not — a secure denial is authenticated by the resolver;
  - bogus: SERVFAIL from a resolver trusted to validate (C{trust_ad}),
    which answers it when validation fails (and also for plain failures:
    the two can't be told apart from outside, so both are treated as
    bogus);
  - failed: any other answer that is no answer (SERVFAIL from a resolver
    not trusted to validate, REFUSED, NOTIMP, FORMERR): not data, not
    nonexistence, and not a DNSSEC verdict.

Twisted moves the bytes (UDP, then TCP when the answer is truncated);
dnspython builds and parses the messages, since twisted.names knows no TLSA.
Answers are cached for their TTL.
"""

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdatatype
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

from gateway.cache import ExpiringCache
from gateway.log import Logger
from gateway.names.interfaces import IDNSClient

if TYPE_CHECKING:
    from gateway.names.srv import AddressPolicy

log = Logger()

#: A reactor that provides L{IReactorTime<twisted.internet.interfaces.IReactorTime>},
#: L{IReactorUDP<twisted.internet.interfaces.IReactorUDP>} and
#: L{IReactorTCP<twisted.internet.interfaces.IReactorTCP>}.  zope.interface
#: has no type for a provider of several interfaces; Twisted's own
#: C{HostnameEndpoint} takes its reactor as C{Any} for the same reason.
DNSReactor: TypeAlias = Any

#: A server to ask: C{(address, port)}.
Server: TypeAlias = tuple[str, int]

#: The most seconds an answer is cached, and how long failures are.
MAX_CACHE_TTL = 3600
NEGATIVE_CACHE_TTL = 60
FAILURE_CACHE_TTL = 5


class DNSError(Exception):
    """
    No resolver answered (timeouts, refused connections, garbage).
    """


@dataclass(frozen=True)
class DNSAnswer:
    """
    The answer to one question.

    @ivar rcode: C{"NOERROR"}, C{"NXDOMAIN"}, C{"SERVFAIL"}, …
    @ivar records: the answer's rdata (dnspython) of the type asked, after
        following CNAMEs.
    @ivar secure: whether a trusted validating resolver vouched for it.
    @ivar ttl: seconds it may be cached.
    """

    name: str
    rrtype: str
    rcode: str
    records: tuple[dns.rdata.Rdata, ...] = ()
    secure: bool = False
    ttl: int = 0
    validated: bool = False

    @property
    def bogus(self) -> bool:
        """
        SERVFAIL from a resolver trusted to validate (C{validated}).
        """
        return self.rcode == "SERVFAIL" and self.validated

    @property
    def failed(self) -> bool:
        """
        No answer at all, and not a DNSSEC verdict: SERVFAIL from a resolver
        not trusted to validate, REFUSED, and the like.
        """
        return self.rcode not in ("NOERROR", "NXDOMAIN") and not self.bogus

    @property
    def nonexistent(self) -> bool:
        return self.rcode == "NXDOMAIN" or (self.rcode == "NOERROR" and not self.records)

    @property
    def status(self) -> str:
        """
        One word for logs and evidence: C{secure}, C{insecure}, C{bogus},
        C{nonexistent (secure)}, C{nonexistent (insecure)}, or the rcode.
        """
        if self.bogus:
            return "bogus"
        if self.failed:
            return self.rcode
        if self.nonexistent:
            return "nonexistent (secure)" if self.secure else "nonexistent (insecure)"
        if self.rcode != "NOERROR":
            return self.rcode
        return "secure" if self.secure else "insecure"


def system_servers(path: str = "/etc/resolv.conf") -> list[Server]:
    """
    The name servers listed in C{path}, as C{(address, 53)} pairs.
    """
    servers: list[Server] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    address = parts[1].split("%")[0]
                    try:
                        ipaddress.ip_address(address)
                    except ValueError:
                        continue
                    servers.append((address, 53))
    except OSError:
        pass
    return servers or [("127.0.0.1", 53)]


class _UDPQuery(protocol.DatagramProtocol):
    noisy = False

    def __init__(self, server: Server, wire: bytes, query_id: int) -> None:
        self.server = server
        self.wire = wire
        self.query_id = query_id
        self.answer: defer.Deferred[bytes] = defer.Deferred()

    def startProtocol(self) -> None:
        assert self.transport is not None  # startProtocol comes once it is connected
        self.transport.write(self.wire, self.server)

    def datagramReceived(self, data: bytes, address: Any) -> None:
        if address[:2] != self.server or len(data) < 2:
            return  # not from the server we asked: ignore, keep waiting
        if struct.unpack("!H", data[:2])[0] != self.query_id:
            return
        if not self.answer.called:
            self.answer.callback(data)


class _TCPQuery(protocol.Protocol):
    def __init__(self, wire: bytes) -> None:
        self.wire = wire
        self.buffer = b""
        self.answer: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None  # connectionMade comes once it is connected
        self.transport.write(struct.pack("!H", len(self.wire)) + self.wire)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= 2:
            length = struct.unpack("!H", self.buffer[:2])[0]
            if len(self.buffer) >= 2 + length and not self.answer.called:
                self.answer.callback(self.buffer[2:2 + length])
                assert self.transport is not None  # data only comes while connected
                self.transport.loseConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if not self.answer.called:
            self.answer.errback(DNSError("the server closed the TCP connection"))


@implementer(IDNSClient)
class DNSClient:
    """
    Asks the configured resolvers, in turn, with a timeout each.

    @param reactor: for sockets and timers.
    @param servers: C{(address, port)} pairs; empty for the system's.
    @param timeout: seconds to wait for each server.
    @param trust_ad: whether the AD bit of these resolvers is believed.
    @ivar address_policy: the addresses L{gateway.names.srv.lookup_addresses}
        may give out, or L{None} for any
        (L{gateway.names.srv.make_resolver} sets it).
    """

    address_policy: "AddressPolicy | None" = None

    def __init__(
        self,
        reactor: DNSReactor,
        servers: Iterable[Server] = (),
        timeout: float = 5.0,
        trust_ad: bool = False,
        cache_size: int = 4096,
    ) -> None:
        self.reactor = reactor
        self.servers = list(servers) or system_servers()
        self.timeout = timeout
        self.trust_ad = trust_ad
        self._cache: ExpiringCache[tuple[str, str], DNSAnswer, float] = ExpiringCache(cache_size)
        self._pending: dict[tuple[str, str], list[defer.Deferred[DNSAnswer]]] = {}

    def query(self, name: str, rrtype: str) -> defer.Deferred[DNSAnswer]:
        """
        Ask for C{rrtype} records of C{name} (an A-label name).

        @return: a Deferred firing with a L{DNSAnswer}, or failing with
            L{DNSError} when no resolver answered.
        """
        key = (name.lower().rstrip("."), rrtype.upper())
        cached = self._cache.get(key, self.reactor.seconds())
        if cached is not None:
            return defer.succeed(cached)
        waiters = self._pending.get(key)
        if waiters is None:
            # Concurrent questions for the same name share one query.
            waiters = self._pending[key] = []
            defer.Deferred.fromCoroutine(self._ask(*key)).addBoth(self._done, key)
        answer: defer.Deferred[DNSAnswer] = defer.Deferred()
        waiters.append(answer)
        return answer

    def _done(self, outcome: DNSAnswer | Failure, key: tuple[str, str]) -> None:
        waiters = self._pending.pop(key)
        if isinstance(outcome, Failure):
            for waiter in waiters:
                waiter.errback(outcome)
            return None
        ttl = FAILURE_CACHE_TTL if outcome.bogus or outcome.failed else outcome.ttl
        if ttl > 0:
            self._cache.put(key, outcome, self.reactor.seconds() + ttl)
        for waiter in waiters:
            waiter.callback(outcome)
        return None

    async def _ask(self, name: str, rrtype: str) -> DNSAnswer:
        message = dns.message.make_query(name, rrtype, want_dnssec=True, use_edns=0, payload=1232)
        message.flags |= dns.flags.AD
        wire = message.to_wire()
        problems = []
        for server in self.servers:
            try:
                data = await self._udp(server, wire, message.id)
                response = dns.message.from_wire(data)
                if response.flags & dns.flags.TC:
                    data = await self._tcp(server, wire)
                    response = dns.message.from_wire(data)
                if not _answers(response, message):
                    raise DNSError("the answer is not for our question")
            except (DNSError, defer.TimeoutError, dns.exception.DNSException, OSError) as e:
                problems.append(f"{server[0]}:{server[1]}: {e.__class__.__name__} {e}".strip())
                continue
            return self._answer(name, rrtype, response)
        raise DNSError(f"no answer for {name} {rrtype}: " + "; ".join(problems))

    def _udp(self, server: Server, wire: bytes, query_id: int) -> defer.Deferred[bytes]:
        query = _UDPQuery(server, wire, query_id)
        family = ipaddress.ip_address(server[0]).version
        port = self.reactor.listenUDP(0, query, interface="::" if family == 6 else "0.0.0.0")
        query.answer.addTimeout(self.timeout, self.reactor)
        query.answer.addBoth(lambda outcome: (port.stopListening(), outcome)[1])
        return query.answer

    def _tcp(self, server: Server, wire: bytes) -> defer.Deferred[bytes]:
        family = ipaddress.ip_address(server[0]).version
        endpoint = (TCP6ClientEndpoint if family == 6 else TCP4ClientEndpoint)(
            self.reactor, server[0], server[1], timeout=self.timeout
        )
        query = _TCPQuery(wire)
        connecting = endpoint.connect(protocol.Factory.forProtocol(lambda: query))

        async def exchange() -> bytes:
            await connecting  # fires with query, the protocol the factory builds
            try:
                return await query.answer
            finally:
                assert query.transport is not None  # it connected
                query.transport.loseConnection()

        d = defer.Deferred.fromCoroutine(exchange())
        d.addTimeout(self.timeout, self.reactor)
        return d

    def _answer(self, name: str, rrtype: str, response: dns.message.Message) -> DNSAnswer:
        rcode = dns.rcode.to_text(response.rcode())
        secure = bool(self.trust_ad and response.flags & dns.flags.AD)
        wanted = dns.rdatatype.from_text(rrtype)
        records: list[dns.rdata.Rdata] = []
        ttls = []
        for rrset in response.answer:
            if rrset.rdtype == wanted:
                records.extend(rrset)
                ttls.append(rrset.ttl)
        if records:
            ttl = min(ttls)
        elif rcode in ("NOERROR", "NXDOMAIN"):
            ttl = min(
                [NEGATIVE_CACHE_TTL]
                + [min(rrset.ttl, rrset[0].minimum) for rrset in response.authority
                   if rrset.rdtype == dns.rdatatype.SOA]
            )
        else:
            ttl = FAILURE_CACHE_TTL
        return DNSAnswer(
            name, rrtype, rcode, tuple(records), secure, min(ttl, MAX_CACHE_TTL), self.trust_ad
        )


def _answers(response: dns.message.Message, query: dns.message.Message) -> bool:
    """
    Whether C{response} answers C{query}: same id, a response, the same
    question.  (Resolvers that don't speak EDNS answer without it.)
    """
    return (
        response.id == query.id
        and bool(response.flags & dns.flags.QR)
        and response.question == query.question
    )
