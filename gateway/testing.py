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
    """

    def __init__(self, trust_ad=True):
        self.trust_ad = trust_ad
        self.records = {}
        self.secure = {}
        self.failures = {}
        self.queries = []

    def add(self, name, rrtype, text, secure=False, ttl=60):
        key = (name.lower().rstrip("."), rrtype.upper())
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rrtype), text)
        self.records.setdefault(key, []).append(rdata)
        self.secure[key] = secure

    def deny(self, name, rrtype, secure=True):
        """
        Make the absence of C{rrtype} records at C{name} secure (or not).
        """
        self.secure[(name.lower().rstrip("."), rrtype.upper())] = secure

    def bogus(self, name, rrtype):
        self.failures[(name.lower().rstrip("."), rrtype.upper())] = "SERVFAIL"

    def fail(self, name, rrtype, rcode):
        """
        Answer C{rcode} (C{"REFUSED"}, C{"SERVFAIL"}, ...) for C{rrtype} at
        C{name}.
        """
        self.failures[(name.lower().rstrip("."), rrtype.upper())] = rcode

    def unreachable(self, name, rrtype):
        self.failures[(name.lower().rstrip("."), rrtype.upper())] = DNSError("no answer")

    def query(self, name, rrtype):
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
                key[0], key[1], rcode, records, self.secure.get(key, False), 60, self.trust_ad
            )
        )
