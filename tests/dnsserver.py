"""
A real DNS server on loopback for tests, serving records the test gives it
(twisted.names), so that name resolution never depends on the machine's
own DNS.
"""

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.names import common, dns, error, server


class MemoryAuthority(common.ResolverBase):
    """
    Answers authoritatively from a dictionary; NXDOMAIN for names it has
    nothing for, NODATA for names it has other types for.
    """

    def __init__(self):
        super().__init__()
        self.records = {}
        self.failing = set()

    def add(self, name, payload, ttl=60):
        key = (name.lower().rstrip(".").encode("ascii"), payload.TYPE)
        self.records.setdefault(key, []).append((payload, ttl))

    def fail(self, name):
        """
        Answer SERVFAIL for C{name}, as a validating resolver does for
        bogus data.
        """
        self.failing.add(name.lower().rstrip(".").encode("ascii"))

    def clear(self, name=None):
        if name is None:
            self.records.clear()
        else:
            encoded = name.lower().rstrip(".").encode("ascii")
            for key in [k for k in self.records if k[0] == encoded]:
                del self.records[key]

    def _lookup(self, name, cls, type, timeout=None):
        name = name.lower().rstrip(b".")
        answers = [
            dns.RRHeader(name, type, cls, ttl, payload, auth=True)
            for payload, ttl in self.records.get((name, type), ())
        ]
        if answers or any(key[0] == name for key in self.records):
            return defer.succeed((answers, [], []))
        return defer.fail(error.DomainError(name))


class _ServerFactory(server.DNSServerFactory):
    """
    Copies the query's RD flag into the response, as RFC 1035 section 4.1.1
    asks (Twisted clears it; Erlang's resolver, for one, then rejects the
    answer).
    """

    noisy = False
    #: Set the AD bit on every answer, as a validating resolver would on
    #: secure ones (for tests of clients; it validates nothing).
    authentic_data = False

    def handleQuery(self, message, protocol, address):
        query = message.queries[0]
        if query.name.name.lower().rstrip(b".") in self.authority.failing:
            response = self._responseFromMessage(message, rCode=dns.ESERVER)
            self.sendReply(protocol, response, address)
            return None
        return super().handleQuery(message, protocol, address)

    def _responseFromMessage(self, message, *args, **kwargs):
        response = super()._responseFromMessage(message, *args, **kwargs)
        response.recDes = message.recDes
        response.authenticData = int(self.authentic_data)
        return response


class LoopbackDNSServer:
    """
    A UDP and TCP DNS server on 127.0.0.1 with a random port.
    """

    def __init__(self, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.authority = MemoryAuthority()
        self.factory = _ServerFactory(authorities=[self.authority])
        self.factory.authority = self.authority
        # UDP and TCP on the same port number: take a free UDP port and try
        # TCP on it, again with another port when that one is taken.
        for attempt in range(50):
            self.udp = reactor.listenUDP(
                0, dns.DNSDatagramProtocol(controller=self.factory), interface="127.0.0.1"
            )
            self.port = self.udp.getHost().port
            try:
                self.tcp = reactor.listenTCP(self.port, self.factory, interface="127.0.0.1")
                break
            except CannotListenError:
                self.udp.stopListening()
        else:
            raise RuntimeError("no port free for both UDP and TCP")

    @property
    def address(self):
        return ("127.0.0.1", self.port)

    def add_srv(self, service_name, target, port, priority=0, weight=0):
        self.authority.add(service_name, dns.Record_SRV(priority, weight, port, target))

    def add_a(self, name, address):
        self.authority.add(name, dns.Record_A(address))

    def add_aaaa(self, name, address):
        self.authority.add(name, dns.Record_AAAA(address))

    def stop(self):
        return defer.gatherResults(
            [defer.maybeDeferred(self.udp.stopListening), defer.maybeDeferred(self.tcp.stopListening)]
        )
