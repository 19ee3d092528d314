"""
Helpers for end-to-end tests: gateways on loopback with certificates from
a test CA and names served by a loopback DNS server, and XEP-0114
components attached to them.
"""

import os

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.words.protocols.jabber import component, jid, xmlstream
from twisted.words.xish import domish

from gateway.app.config import parse_config
from gateway.app.service import make_service
from gateway.verifiers.registry import available_verifiers
from gateway.xmpp.stanzas import error_condition  # noqa: F401 (for tests)
from tests.dnsserver import LoopbackDNSServer
from tests.pki import CertificateAuthority


def wait_for(predicate, timeout=10.0, interval=0.01):
    """
    Poll C{predicate} on the reactor until it is true.
    """
    d = defer.Deferred()
    deadline = reactor.seconds() + timeout

    def check():
        if predicate():
            d.callback(None)
        elif reactor.seconds() > deadline:
            d.errback(AssertionError(f"timed out waiting for {predicate}"))
        else:
            reactor.callLater(interval, check)

    check()
    return d


class World:
    """
    A loopback world: a CA, a DNS server, and gateways added to it.
    """

    def __init__(self, testcase):
        self.testcase = testcase
        self.folder = os.path.abspath(testcase.mktemp())
        os.makedirs(self.folder)
        self.ca = CertificateAuthority()
        self.dns = LoopbackDNSServer()
        testcase.addCleanup(self.dns.stop)

    async def gateway(self, domain, extra="", certificate=True, srv=True,
                      direct_tls=False, s2s_extra="", trust_ca=False, policy="", s2s_port=0,
                      authentication_timeout=10.0,
                      certificate_options=None, dns_server=None, certificate_files=None):
        """
        Start a gateway for C{domain}; publish its SRV and A records.

        @param certificate: give it a certificate from the test CA (else it
            makes itself a self-signed one).
        @param trust_ca: let its PKIX verifier trust the test CA.
        @param policy: more keys for its C{[policy]} table.

        @return: the running L{GatewayService}.
        """
        folder = os.path.join(self.folder, domain)
        os.makedirs(folder, exist_ok=True)
        domain_table = f'[domains."{domain}"]\ncomponent_secret = "secret-for-{domain}"\n'
        if certificate_files:
            certificate_file, key_file = certificate_files
            domain_table += f'certificate = "{certificate_file}"\nkey = "{key_file}"\n'
        elif certificate:
            certificate_file, key_file = self.ca.write_identity(
                folder, domain, **(certificate_options or {})
            )
            domain_table += f'certificate = "{certificate_file}"\nkey = "{key_file}"\n'
        servers = [f"127.0.0.1:{self.dns.port}"]
        trust_ad = "false"
        if dns_server is not None:
            # A validating resolver on loopback, trusted for its AD bit.
            servers = [f"{dns_server[0]}:{dns_server[1]}"]
            trust_ad = "true"
        if trust_ca:
            policy = f'trust_store = "{self.ca.write_ca(self.folder)}"\n' + policy
        if policy:
            extra = f"[policy]\n{policy}" + extra
        if direct_tls:
            s2s_extra += 'listen_direct_tls = ["tcp:0:interface=127.0.0.1"]\n'
        text = (
            f'state_dir = "state"\n'
            f'[s2s]\nlisten = ["tcp:{s2s_port}:interface=127.0.0.1"]\n{s2s_extra}'
            f'[components]\nlisten = ["tcp:0:interface=127.0.0.1"]\n'
            f'[admin]\nlisten = ["tcp:0:interface=127.0.0.1"]\n'
            f"[dns]\nservers = {servers!r}\ntimeout = 2.0\ntrust_ad = {trust_ad}\n"
            # Every peer of the tests is on loopback, which DNS may not send
            # a gateway to unless allowed.
            f'allow_networks = ["127.0.0.0/8", "::1/128"]\n'
            f"[timeouts]\nconnect = 5.0\nauthentication = {authentication_timeout!r}\n"
            f"{domain_table}{extra}"
        ).replace("'", '"')
        # As start-up does (gateway.app.tap): the installed plugins' names.
        config = parse_config(
            text, os.path.join(folder, "gateway.toml"), folder,
            known_verifiers=frozenset(available_verifiers()),
        )
        service = make_service(config)
        service.startService()
        self.testcase.addCleanup(service.stopService)
        (port,) = await service.listening_ports("s2s (STARTTLS)")
        (component_port,) = await service.listening_ports("components")
        service.s2s_port = port.getHost().port
        service.component_port = component_port.getHost().port
        host = f"xmpp.{domain}"
        if srv:
            self.dns.add_srv(f"_xmpp-server._tcp.{domain}", host, service.s2s_port)
            self.dns.add_a(host, "127.0.0.1")
        if direct_tls:
            (direct,) = await service.listening_ports("s2s (direct TLS)")
            service.direct_tls_port = direct.getHost().port
            self.dns.add_srv(f"_xmpps-server._tcp.{domain}", host, service.direct_tls_port)
            self.dns.add_a(host, "127.0.0.1")
        return service

    async def component(self, service, domain):
        """
        Attach a L{TestComponent} for C{domain} to C{service}.
        """
        attached = TestComponent(domain, f"secret-for-{domain}")
        await attached.connect(service.component_port)
        self.testcase.addCleanup(attached.disconnect)
        return attached


class TestComponent:
    """
    An XEP-0114 component that records what it receives.
    """

    def __init__(self, domain, secret):
        self.domain = domain
        self.secret = secret
        self.received = defer.DeferredQueue()
        self.stream = None
        self.errors = []
        self._lost = defer.Deferred()

    def connect(self, port, secret=None, host="127.0.0.1"):
        factory = component.componentFactory(self.domain, secret or self.secret)
        authenticated = defer.Deferred()

        def authd(stream):
            self.stream = stream
            stream.addObserver("/*", self.received.put)
            authenticated.callback(self)

        def stream_error(failure):
            self.errors.append(failure.value)
            if not authenticated.called:
                authenticated.errback(failure)

        def connected(stream):
            stream.addObserver(xmlstream.STREAM_END_EVENT, lambda reason: self._lost.called or self._lost.callback(None))
            stream.addObserver(xmlstream.STREAM_ERROR_EVENT, stream_error)

        factory.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, connected)
        factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, authd)
        endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=5)
        endpoint.connect(factory).addErrback(authenticated.errback)
        return authenticated

    def send(self, stanza):
        self.stream.send(stanza)

    def message(self, sender, recipient, body, stanza_id=None):
        message = domish.Element((component.NS_COMPONENT_ACCEPT, "message"))
        message["from"] = sender
        message["to"] = recipient
        message["type"] = "chat"
        if stanza_id:
            message["id"] = stanza_id
        message.addElement("body", content=body)
        self.send(message)
        return message

    def disconnect(self):
        if self.stream is None or self._lost.called:
            return None
        self.stream.sendFooter()
        self.stream.transport.loseConnection()
        return self._lost

    async def next(self, timeout=10.0):
        d = self.received.get()
        d.addTimeout(timeout, reactor)
        return await d


def full_jid(value):
    return jid.JID(value).full()


def add_case_tests(cls, cases):
    """
    Add to C{cls} one test method per case of a table, named after the
    case's C{name}, each calling C{self.check(case)}.
    """
    names = set()
    for case in cases:
        name = "test_" + "".join(c if c.isalnum() else "_" for c in case.name.lower())
        assert name not in names, f"duplicate case name {case.name!r}"
        names.add(name)

        def test(self, case=case):
            self.check(case)

        test.__name__ = name
        test.__doc__ = case.name
        setattr(cls, name, test)


def write_self_signed(folder, domain):
    """
    Make a self-signed certificate for C{domain} (as the gateway makes for
    itself) and write it and its key into C{folder}.

    @return: C{(certificate file, key file)}.
    """
    from gateway.app.state import make_self_signed

    os.makedirs(folder, exist_ok=True)
    certificate_pem, key_pem = make_self_signed(domain)
    paths = (os.path.join(folder, f"{domain}.pem"), os.path.join(folder, f"{domain}.key"))
    for path, data in zip(paths, (certificate_pem, key_pem)):
        with open(path, "wb") as f:
            f.write(data)
    return paths
