"""
The DNS client as the rest of the gateway sees it: what
L{gateway.names.client.DNSClient} and L{gateway.testing.FakeDNSClient}
both provide.
"""

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from gateway.names.client import DNSAnswer


class IDNSClient(Interface):
    """
    Asks for DNS records, and says whether the answers were DNSSEC-secure.
    """

    trust_ad = Attribute(
        "Whether the resolvers' AD bit is believed (dns.trust_ad): only then is an answer "
        "secure, and a SERVFAIL bogus rather than a failure."
    )

    def query(name: str, rrtype: str) -> "Deferred[DNSAnswer]":
        """
        Ask for C{rrtype} records of C{name} (an A-label name).

        @return: a Deferred firing with a L{gateway.names.client.DNSAnswer},
            or failing with L{gateway.names.client.DNSError} when no
            resolver answered.
        """
