"""
Fakes for tests, the gateway's own and those of plugin authors: they
provide the same interfaces as the real parts, in memory.
"""

import dns.rdata
import dns.rdataclass
import dns.rdatatype
from twisted.internet import defer
from zope.interface import implementer

from gateway.names.client import DNSAnswer, DNSError
from gateway.names.interfaces import IDNSClient
from gateway.names.srv import AddressPolicy

#: A question: C{(name, rrtype)}, the name lower-case without a final dot.
_Question = tuple[str, str]


@implementer(IDNSClient)
class FakeDNSClient:
    """
    Answers from records given to it, like L{gateway.names.client.DNSClient}.

        client = FakeDNSClient()
        client.add("_xmpp-server._tcp.example.org", "SRV", "0 0 5269 xmpp.example.org.",
                   secure=True)
        client.bogus("broken.example", "TLSA")

    A name with no records of any type is NXDOMAIN; a name with records of
    other types is NODATA; the security of a negative answer is given with
    L{deny}.  Like a validating resolver trusted for its AD bit (C{dns.trust_ad}),
    unless made with C{trust_ad=False}: then SERVFAIL is a failure, not bogus.

    @ivar queries: every question asked, in order.
    @ivar address_policy: as L{gateway.names.client.DNSClient}'s, for
        L{gateway.names.srv.lookup_addresses}.
    """

    address_policy: AddressPolicy | None = None

    def __init__(self, trust_ad: bool = True) -> None:
        self.trust_ad = trust_ad
        self.records: dict[_Question, list[dns.rdata.Rdata]] = {}
        self.secure: dict[_Question, bool] = {}
        self.failures: dict[_Question, str | DNSError] = {}
        self.ttls: dict[_Question, int] = {}
        self.queries: list[_Question] = []

    def add(
        self, name: str, rrtype: str, text: str, secure: bool = False, ttl: int = 60
    ) -> None:
        """
        Add one C{rrtype} record at C{name}, in presentation format; the
        answer's TTL is the least of its records' (60 seconds without any).
        """
        key = (name.lower().rstrip("."), rrtype.upper())
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rrtype), text)
        self.records.setdefault(key, []).append(rdata)
        self.secure[key] = secure
        self.ttls[key] = min(ttl, self.ttls.get(key, ttl))

    def deny(self, name: str, rrtype: str, secure: bool = True) -> None:
        """
        Make the absence of C{rrtype} records at C{name} secure (or not).
        """
        self.secure[(name.lower().rstrip("."), rrtype.upper())] = secure

    def bogus(self, name: str, rrtype: str) -> None:
        self.failures[(name.lower().rstrip("."), rrtype.upper())] = "SERVFAIL"

    def fail(self, name: str, rrtype: str, rcode: str) -> None:
        """
        Answer C{rcode} (C{"REFUSED"}, C{"SERVFAIL"}, ...) for C{rrtype} at
        C{name}.
        """
        self.failures[(name.lower().rstrip("."), rrtype.upper())] = rcode

    def unreachable(self, name: str, rrtype: str) -> None:
        self.failures[(name.lower().rstrip("."), rrtype.upper())] = DNSError("no answer")

    def query(self, name: str, rrtype: str) -> defer.Deferred[DNSAnswer]:
        key = (name.lower().rstrip("."), rrtype.upper())
        self.queries.append(key)
        failure = self.failures.get(key)
        if isinstance(failure, Exception):
            return defer.fail(failure)
        if failure is not None:
            return defer.succeed(DNSAnswer(key[0], key[1], failure, validated=self.trust_ad))
        records = tuple(self.records.get(key, ()))
        known = any(k[0] == key[0] for k in self.records)
        rcode = "NOERROR" if records or known else "NXDOMAIN"
        return defer.succeed(
            DNSAnswer(
                key[0],
                key[1],
                rcode,
                records,
                self.secure.get(key, False),
                self.ttls.get(key, 60),
                self.trust_ad,
            )
        )
