#!/usr/bin/env python3
"""
The gateway, Debian's Prosody and Debian's ejabberd, side by side, on the
same machine, with the same certificates and the same TLS.

    .venv/bin/python bench/versus_servers.py [--repeats 3] [--messages 200000]
        [--servers gateway,prosody,ejabberd] [--log-level warn]

Each repeat starts the gateway, Prosody and ejabberd, fresh, and runs each
phase against one after the other, so that the figures compared are
measured seconds apart on this shared machine.  All serve the domain
C{sink.bench} with a component attached over XEP-0114, trust the same test
CA, authenticate peers by SASL EXTERNAL (XEP-0178) over TLS 1.3, and log at
the same level (C{--log-level}, default C{warn}: the gateway's C{[log]
level}, Prosody's C{log} levels, ejabberd's C{loglevel}, where it is
C{warning}).  This process plays everything else: the remote servers
C{pN.peers.bench} (one wildcard certificate), the component, and a DNS
server on 127.0.0.1.  It never parses XML: it scans for the few markers it
needs, so that it stays cheaper than the server under test (its own CPU is
reported too).

Phases, per server:

  - start: resident memory once started with the component attached,
    before any s2s stream, read when it has stopped moving (the Erlang
    VM gives memory back for about ten seconds after ejabberd starts);
  - inbound throughput over 1 and over 4 s2s streams: N messages from
    the remote servers to the component, clocked from the first write
    to the component counting the last one; figures: messages per
    second, per CPU-second of the server, and the server's CPU seconds
    per 10,000 stanzas;
  - outbound throughput over 1 and over 4 streams: N messages from the
    component to the remote servers (their streams are set up first by
    one message each), clocked and reported the same way;
  - handshakes: M sequential full s2s establishments (TCP, STARTTLS,
    TLS, SASL EXTERNAL, stream restart, a first message counted by the
    component, close), then M with dialback instead of SASL EXTERNAL;
    figures: per second, median and 95th percentile latency, CPU each;
  - memory: resident memory per idle authenticated s2s stream, holding
    K (default 1,000) inbound streams from K remote domains at once, on
    servers started afresh for it.

A server's CPU time and memory are read from C{/proc} for its own
process: the gateway's Python, Prosody's Lua, ejabberd's Erlang VM
(C{beam.smp}, found under whatever started it).

The remote servers offer (and accept) the key exchange groups of
OpenSSL 3.0 (Prosody's and ejabberd's, on Debian 12), so that all servers
negotiate the same TLS; each phase prints what was negotiated and the run
stops if they differ.  Two more phases run against the gateway alone, with
a peer offering the post-quantum hybrid X25519MLKEM768 first, as OpenSSL
3.5 and later do: SASL EXTERNAL handshakes, and memory per idle stream.

It prints one table per repeat and a final table of medians, with a column
per server and a ratio column for each other server against the gateway
(the median of the per-repeat ratios), written so that a ratio above 1 is
the gateway doing better.  See bench/README.md.
"""

import argparse
import base64
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time

import federation as fed  # noqa: E402  (bench/federation.py; puts the checkout on sys.path)
from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: E402
from federation import (  # noqa: E402
    FEATURES_END_RE,
    HEADER_RE,
    LOOPBACK,
    RESULT_RE,
    VERIFY_RE,
    BenchError,
    attributes,
    bounded,
    own_cpu,
    process_cpu,
    process_rss_kib,
    sleep,
    stream_error,
)
from OpenSSL import SSL  # noqa: E402
from OpenSSL._util import lib as _openssl  # noqa: E402
from twisted.internet import defer, protocol, task  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint  # noqa: E402
from twisted.internet.interfaces import (  # noqa: E402
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from zope.interface import implementer  # noqa: E402

from gateway.s2s.dialback import check_dialback_key, dialback_key  # noqa: E402
from tests.dnsserver import LoopbackDNSServer  # noqa: E402
from tests.interop.ejabberd import EjabberdServer  # noqa: E402
from tests.interop.peers import package_version  # noqa: E402
from tests.interop.prosody import ProsodyServer  # noqa: E402
from tests.pki import CertificateAuthority  # noqa: E402

SINK = "sink.bench"
PEERS = "peers.bench"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
MESSAGE_END = b"</message>"
PHASE_TIMEOUT = 600.0
STALL_SECONDS = 30.0
BOTH_EKUS = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)

# The key exchange groups the remote servers offer and accept, in order.
# "classic" is what a peer on OpenSSL 3.0 (Prosody's, on Debian 12) offers:
# with it both servers negotiate the same TLS.  "hybrid" is what a peer on
# OpenSSL 3.5 or later offers first: the post-quantum hybrid
# X25519MLKEM768, which the gateway's OpenSSL negotiates and Prosody's
# cannot; its phases run against the gateway alone.
GROUPS = {
    "classic": "X25519:P-256:X448:P-521:P-384",
    "hybrid": "X25519MLKEM768:X25519:P-256:X448:P-521:P-384",
}


def peer_domain(n):
    return f"p{n}.{PEERS}"


def s2s_header(sender, recipient, stream_id=None):
    return fed.s2s_header(sender, recipient, stream_id)


# TLS of the remote side -------------------------------------------------------------


def tls_context(certificate_file, key_file, groups, ca_file=None):
    """
    A context presenting the wildcard identity and offering (or, on the
    server side, accepting) only C{groups}, in that order.  Either way,
    both servers under test end up with the same TLS (checked per phase).  With
    C{ca_file}: a client's, checking the server's chain; without: a
    server's, asking for the client's certificate and taking any.
    """
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.use_certificate_chain_file(certificate_file)
    context.use_privatekey_file(key_file)
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    if ca_file is not None:
        context.load_verify_locations(ca_file)
        context.set_verify(SSL.VERIFY_PEER)
    else:
        context.set_verify(SSL.VERIFY_PEER, lambda *args: True)
        # The server picks the cipher, by OpenSSL's default order (Prosody,
        # as a client, lists AES-128 first; the gateway AES-256).
        context.set_options(SSL.OP_CIPHER_SERVER_PREFERENCE)
    # pyOpenSSL has no call for the groups; OpenSSL's own does it.
    if _openssl.SSL_CTX_set1_curves_list(context._context, groups.encode("ascii")) != 1:
        raise BenchError(f"this OpenSSL does not know every group of {groups}")
    return context


@implementer(IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator)
class TLSCreator:
    def __init__(self, context, server_name=None):
        self.context = context
        self.server_name = server_name

    def clientConnectionForTLS(self, protocol):
        connection = SSL.Connection(self.context, None)
        connection.set_tlsext_host_name(self.server_name.encode("idna"))
        connection.set_connect_state()
        return connection

    def serverConnectionForTLS(self, protocol):
        return SSL.Connection(self.context, None)


def negotiated(connection):
    """
    What a TLS connection negotiated: C{"TLSv1.3 TLS_AES_256_GCM_SHA384
    x25519"}.
    """
    return " ".join((
        connection.get_protocol_version_name(),
        connection.get_cipher_name() or "?",
        connection.get_group_name() or "?",
    ))


# The remote servers, as originating servers (streams into the server) ------------


@implementer(IHandshakeListener)
class Originating(protocol.Protocol):
    """
    An s2s stream from a remote domain to the server under test: header,
    STARTTLS, TLS (presenting the wildcard certificate), then SASL EXTERNAL
    and a stream restart, or C{db:result} (dialback); then only writing.

    @ivar authenticated: fires with this protocol once authenticated.
    """

    def __init__(self, remote, domain, method, groups):
        self.remote = remote
        self.domain = domain
        self.method = method
        self.groups = groups
        self.state = "connecting"
        self.buffer = b""
        self.tail = b""
        self.stream_id = None
        self.problem = None
        self.tls = None
        self.authenticated = defer.Deferred()
        self.lost = defer.Deferred()

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        self.state = "header"
        self.transport.write(s2s_header(self.domain, SINK))

    def handshakeCompleted(self):
        self.tls = negotiated(self.transport.getHandle())
        self.state = "header after TLS"
        self.transport.write(s2s_header(self.domain, SINK))

    def dataReceived(self, data):
        if self.state == "open":
            scan = self.tail + data
            if b"<stream:error" in scan or b"</stream:stream>" in scan:
                self.buffer += data
                self.problem = stream_error(self.buffer) or "the server closed the stream"
            self.tail = scan[-16:]
            return
        self.buffer += data
        problem = stream_error(self.buffer)
        if problem:
            self._fail(f"the server sent {problem} while {self.state}")
            return
        while self._step():
            pass

    def _step(self):
        state = self.state
        if state.startswith("header"):
            m = HEADER_RE.search(self.buffer)
            if m is None:
                return False
            self.stream_id = attributes(m.group(1)).get("id")
            self.buffer = self.buffer[m.end():]
            self.state = "features" + state[len("header"):]
            return True
        if state.startswith("features"):
            m = FEATURES_END_RE.search(self.buffer)
            if m is None:
                return False
            features, self.buffer = self.buffer[:m.end()], self.buffer[m.end():]
            if state == "features":
                self.transport.write(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                self.state = "proceed"
            elif state == "features after SASL":
                self._authenticated()
            elif self.method == "external":
                if b">EXTERNAL<" not in features:
                    self._fail(f"the server did not offer SASL EXTERNAL: {features[:400]!r}")
                    return False
                authzid = base64.b64encode(self.domain.encode("ascii")).decode("ascii")
                self.transport.write(
                    f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>{authzid}</auth>".encode("ascii")
                )
                self.state = "SASL"
            else:
                key = dialback_key(self.remote.secret, SINK, self.domain, self.stream_id)
                self.transport.write(
                    f"<db:result from='{self.domain}' to='{SINK}'>{key}</db:result>".encode("ascii")
                )
                self.state = "dialback"
            return True
        if state == "proceed":
            if b"<proceed" in self.buffer:
                self.buffer = b""
                self.state = "TLS handshake"
                self.transport.startTLS(self.remote.client_tls[self.groups])
            elif b"<failure" in self.buffer:
                self._fail("the server refused STARTTLS")
            return False
        if state == "SASL":
            if b"<success" in self.buffer:
                self.buffer = b""
                self.state = "header after SASL"
                self.transport.write(s2s_header(self.domain, SINK))
            elif b"<failure" in self.buffer:
                self._fail(f"the server refused SASL EXTERNAL: {self.buffer[:300]!r}")
            return False
        if state == "dialback":
            m = RESULT_RE.search(self.buffer)
            if m is None:
                return False
            kind = attributes(m.group(1)).get("type")
            if kind != "valid":
                self._fail(f"the server answered dialback with type={kind!r}: {self.buffer[:300]!r}")
                return False
            self._authenticated()
            return False
        return False

    def _authenticated(self):
        self.state = "open"
        self.buffer = b""
        if not self.authenticated.called:
            self.authenticated.callback(self)

    def _fail(self, problem):
        self.problem = problem
        if not self.authenticated.called:
            self.authenticated.errback(BenchError(problem))
        self.transport.loseConnection()

    def close(self):
        if self.transport is not None and not self.lost.called:
            self.transport.write(b"</stream:stream>")
            self.transport.loseConnection()

    def connectionLost(self, reason):
        if self.problem is None and self.state != "open":
            self.problem = stream_error(self.buffer) or (
                f"connection closed while {self.state}: {reason.getErrorMessage()}"
            )
        if not self.authenticated.called:
            self.authenticated.errback(BenchError(self.problem))
        self.state = "closed"
        self.lost.callback(None)


# The remote servers, as receiving servers (streams from the server) ---------------


class Receiving(protocol.Protocol):
    """
    The remote domains' s2s listener.  The server under test connects here
    to deliver stanzas (STARTTLS, TLS with a client certificate, SASL
    EXTERNAL, restart; then every C{</message>} is counted) and to verify
    dialback keys (C{db:verify}, answered after checking the key).
    """

    def __init__(self, remote):
        self.remote = remote
        self.state = "header"
        self.buffer = b""
        self.tail = b""
        self.local = None
        self.other = None

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def dataReceived(self, data):
        if self.state == "counting":
            scan = self.tail + data
            self.remote.received(scan.count(MESSAGE_END))
            self.tail = scan[-(len(MESSAGE_END) - 1):]
            if self.buffer or b"<db:verify" in scan:
                # Dialback callbacks may come on a stream authenticated by
                # SASL EXTERNAL (a server reusing its outbound stream).
                self.buffer += data
                while self._answer_verify():
                    pass
            if b"</stream:stream>" in scan:
                self.transport.write(b"</stream:stream>")
                self.transport.loseConnection()
            return
        self.buffer += data
        problem = stream_error(self.buffer)
        if problem:
            self.remote.problems.append(f"the server sent {problem} to {self.local}")
            self.transport.loseConnection()
            return
        while self._step():
            pass

    def _header(self, features):
        m = HEADER_RE.search(self.buffer)
        if m is None:
            return False
        attrs = attributes(m.group(1))
        self.local, self.other = attrs.get("to"), attrs.get("from")
        self.buffer = self.buffer[m.end():]
        self.transport.write(
            s2s_header(self.local, self.other, secrets.token_hex(12)) + features
        )
        return True

    def _step(self):
        state = self.state
        if state == "header":
            if not self._header(
                b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>"
                b"</starttls><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"
                b"</stream:features>"
            ):
                return False
            self.state = "starttls"
            return True
        if state == "starttls":
            if b"<starttls" in self.buffer:
                self.buffer = b""
                self.state = "header after TLS"
                self.transport.write(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                self.transport.startTLS(self.remote.server_tls)
            return False
        if state == "header after TLS":
            self.remote.outbound_tls.add(negotiated(self.transport.getHandle()))
            external = b""
            if self.transport.getPeerCertificate() is not None:
                external = (
                    f"<mechanisms xmlns='{NS_SASL}'><mechanism>EXTERNAL</mechanism>"
                    "</mechanisms>".encode("ascii")
                )
            if not self._header(
                b"<stream:features>" + external + b"<dialback xmlns='urn:xmpp:features:dialback'>"
                b"<errors/></dialback></stream:features>"
            ):
                return False
            self.state = "open"
            return True
        if state == "open":
            if b"<auth" in self.buffer and (b"</auth>" in self.buffer or b"/>" in self.buffer):
                if b"EXTERNAL" not in self.buffer:
                    self.remote.problems.append(f"unexpected SASL request {self.buffer[:200]!r}")
                    self.transport.loseConnection()
                    return False
                # TLS verified the certificate against the CA; the server's
                # domain is in it (the benchmark does not check that again).
                self.buffer = b""
                self.state = "header after SASL"
                self.transport.write(f"<success xmlns='{NS_SASL}'/>".encode("ascii"))
                return False
            if self._answer_verify():
                return True
            if b"<db:result" in self.buffer or b"<message" in self.buffer:
                self.remote.problems.append(
                    f"the server tried to send stanzas to {self.local} without SASL EXTERNAL"
                )
                self.transport.loseConnection()
                return False
            if b"</stream:stream>" in self.buffer:
                self.transport.write(b"</stream:stream>")
                self.transport.loseConnection()
            return False
        if state == "header after SASL":
            if not self._header(b"<stream:features/>"):
                return False
            self.state = "counting"
            rest, self.buffer = self.buffer, b""
            self.dataReceived(rest)
            return False
        return False

    def _answer_verify(self):
        m = VERIFY_RE.search(self.buffer)
        if m is None:
            if self.state == "counting" and b"<db:verify" not in self.buffer:
                self.buffer = b""
            return False
        self.buffer = self.buffer[m.end():]
        attrs = attributes(m.group(1))
        asking, authoritative = attrs.get("from", ""), attrs.get("to", "")
        stream_id, key = attrs.get("id", ""), m.group(2).decode("ascii", "replace")
        valid = check_dialback_key(self.remote.secret, asking, authoritative, stream_id, key)
        self.remote.callbacks[valid] += 1
        self.transport.write(
            f"<db:verify from='{authoritative}' to='{asking}' id='{stream_id}' "
            f"type='{'valid' if valid else 'invalid'}'/>".encode("ascii")
        )
        return True

    def connectionLost(self, reason):
        if self.state in ("starttls", "header after TLS"):
            self.remote.problems.append(
                f"the server's stream to {self.local} ended while {self.state}: "
                f"{reason.getErrorMessage()}"
            )


class Remote:
    """
    Everything the remote domains share: the wildcard identity, the
    dialback secret, the TLS contexts, the delivery counter.
    """

    def __init__(self, reactor, ca_file, certificate_file, key_file):
        self.reactor = reactor
        self.secret = secrets.token_hex(32)
        # Streams into the server: its certificate is checked against the
        # CA (not its name: this is the load generator); one creator per
        # choice of key exchange groups.
        self.client_tls = {
            name: TLSCreator(tls_context(certificate_file, key_file, groups, ca_file), SINK)
            for name, groups in GROUPS.items()
        }
        # Streams from the server: TLS 1.2+, asks for the client's
        # certificate and takes any (it offers SASL EXTERNAL when one came;
        # this side is the benchmark's sink, not a server whose checks are
        # measured); the classic groups, so that both servers' outbound
        # streams negotiate the same TLS.
        self.server_tls = TLSCreator(
            tls_context(certificate_file, key_file, GROUPS["classic"])
        )
        self.outbound_tls = set()
        self.delivered = 0
        self.target = None
        self.on_target = None
        self.callbacks = {True: 0, False: 0}
        self.problems = []
        self.listener = None
        self.server_port = None

    def listen(self):
        factory = protocol.Factory.forProtocol(lambda: Receiving(self))
        factory.noisy = False
        self.listener = self.reactor.listenTCP(0, factory, interface=LOOPBACK)
        return self.listener.getHost().port

    def received(self, count):
        self.delivered += count
        if self.target is not None and self.delivered >= self.target and self.on_target:
            on_target, self.on_target = self.on_target, None
            on_target()

    async def establish(self, domain, method="external", timeout=30.0, groups="classic"):
        factory = protocol.Factory.forProtocol(lambda: Originating(self, domain, method, groups))
        factory.noisy = False
        endpoint = TCP4ClientEndpoint(self.reactor, LOOPBACK, self.server_port, timeout=timeout)
        started = time.monotonic()
        try:
            stream = await bounded(self.reactor, endpoint.connect(factory), timeout, "connecting")
        except BenchError:
            raise
        except Exception as e:
            raise BenchError(f"cannot connect to the server's s2s port: {e}") from None
        remaining = max(0.1, timeout - (time.monotonic() - started))
        try:
            return await bounded(self.reactor, stream.authenticated, remaining, "s2s establishment")
        except BenchError as e:
            stream.transport.abortConnection()
            raise BenchError(f"{domain}: {e} (state: {stream.state})") from None


# The servers under test ---------------------------------------------------------


class Gateway:
    name = "gateway"

    def __init__(self, folder, pki, dns_port, component_secret, options):
        self.folder = os.path.join(folder, "gateway")
        os.makedirs(self.folder, exist_ok=True)
        self.s2s_port, self.component_port = fed.free_port(), fed.free_port()
        certificate, key, ca_file = pki
        streams = options.streams
        config_file = os.path.join(self.folder, "gateway.toml")
        q = fed.toml_string
        with open(config_file, "w") as f:
            f.write(
                f"state_dir = {q(os.path.join(self.folder, 'state'))}\n"
                f"[log]\nlevel = {q(options.log_level)}\n"
                f"[s2s]\nlisten = [{q(f'tcp:{self.s2s_port}:interface={LOOPBACK}')}]\n"
                # Every stream of the memory phase comes from 127.0.0.1.
                f"max_connections_per_address = {streams + 50}\n"
                f"max_connections = {streams + 50}\n"
                # Throughput as fast as one stream goes: no per-stream read
                # limit (Prosody and ejabberd have none by default either).
                f"read_rate = 0\n"
                f"[components]\nlisten = [{q(f'tcp:{self.component_port}:interface={LOOPBACK}')}]\n"
                f"[admin]\nlisten = []\n"
                f'[domains."{SINK}"]\ncertificate = {q(certificate)}\n'
                f"key = {q(key)}\ncomponent_secret = {q(component_secret)}\n"
                f"[dns]\nservers = [{q(f'{LOOPBACK}:{dns_port}')}]\n"
                'allow_networks = ["127.0.0.0/8"]\n'
                f"[policy]\ntrust_store = {q(ca_file)}\n"
            )
        self.process = fed.GatewayProcess(self.folder, config_file)

    async def start(self, reactor):
        self.process.start()
        await fed.wait_for_gateway(reactor, self.process, [self.s2s_port, self.component_port])

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process.alive()

    def describe(self):
        return fed.log_tail(self.process)

    async def stop(self, reactor):
        await self.process.stop(reactor)


class Prosody:
    name = "Prosody"

    def __init__(self, folder, pki, dns_port, component_secret, options):
        self.folder = os.path.join(folder, "prosody")
        os.makedirs(self.folder, exist_ok=True)
        self.s2s_port, self.component_port = fed.free_port(), fed.free_port()
        certificate, key, ca_file = pki
        self.server = ProsodyServer(
            self.folder, LOOPBACK, self.s2s_port, self.component_port, SINK, component_secret,
            certificate, key, ca_file, dns_port, secure_auth=True, log_level=options.log_level,
        )

    async def start(self, reactor):
        await self.server.start()

    @property
    def pid(self):
        return self.server.process.pid

    def alive(self):
        return self.server.process.poll() is None

    def describe(self):
        return self.server.log_tail(15)

    async def stop(self, reactor):
        await self.server.stop()


# ejabberd's names for the levels of --log-level.
EJABBERD_LOG_LEVELS = {"debug": "debug", "info": "info", "warn": "warning", "error": "error"}


class Ejabberd:
    """
    Debian's ejabberd, run as the interoperability tests run it
    (C{tests/interop/ejabberd.py}): C{erl} started directly (not through
    C{ejabberdctl}), in a private mount namespace whose C{/etc/hosts} names
    the remote servers' SRV target (ejabberd resolves SRV records with
    Erlang's resolver, pointed at the bench DNS server, but SRV targets
    with C{getaddrinfo}).  Its CPU and memory are those of the Erlang VM,
    C{beam.smp}.
    """

    name = "ejabberd"

    def __init__(self, folder, pki, dns_port, component_secret, options):
        self.folder = os.path.join(folder, "ejabberd")
        self.s2s_port, self.component_port = fed.free_port(), fed.free_port()
        certificate, key, ca_file = pki
        self.server = EjabberdServer(
            self.folder,
            address=LOOPBACK,
            s2s_port=self.s2s_port,
            component_port=self.component_port,
            # ejabberd wants a host of its own; it federates as the component.
            domain=f"host.{SINK}",
            component_domain=SINK,
            component_secret=component_secret,
            certificate_file=certificate,
            key_file=key,
            ca_file=ca_file,
            dns_server=(LOOPBACK, dns_port),
            extra_options={"loglevel": EJABBERD_LOG_LEVELS[options.log_level]},
            hosts={f"xmpp.{PEERS}": LOOPBACK},
        )
        self._pid = None

    async def start(self, reactor):
        try:
            await self.server.start(reactor)
        except RuntimeError as e:
            raise BenchError(f"ejabberd did not start: {e}") from None
        self._pid = beam_pid(self.server.pid)
        if self._pid is None:
            raise BenchError(f"no beam.smp process at or under pid {self.server.pid}")

    @property
    def pid(self):
        return self._pid

    def alive(self):
        return self.server.running

    def describe(self):
        return self.server.log_tail(15)

    async def stop(self, reactor):
        await self.server.stop()


# --servers names them so.
SERVERS = {"gateway": Gateway, "prosody": Prosody, "ejabberd": Ejabberd}

# The levels of --log-level, as the gateway names them (Prosody's are the
# same; ejabberd's in EJABBERD_LOG_LEVELS).
LOG_LEVELS = ("debug", "info", "warn", "error")


def beam_pid(pid):
    """
    The Erlang VM (C{beam.smp}) among C{pid} and its descendants: the
    process whose CPU time and memory are ejabberd's, whatever wrappers
    (C{unshare}, C{sh}, C{erl}, C{erlexec}) started it, or exec'd into it.
    """
    def comm(p):
        try:
            with open(f"/proc/{p}/comm") as f:
                return f.read().strip()
        except OSError:
            return None

    def children(p):
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rindex(b")") + 2:].split()[1]) == p:
                found.append(int(entry))
        return found

    pending = [pid]
    while pending:
        p = pending.pop(0)
        if comm(p) == "beam.smp":
            return p
        pending += children(p)
    return None


# The component ------------------------------------------------------------------


async def attach_component(reactor, server, secret):
    sink = fed.Sink(secret, SINK)
    endpoint = TCP4ClientEndpoint(reactor, LOOPBACK, server.component_port, timeout=10)
    await bounded(reactor, endpoint.connect(protocol.Factory.forProtocol(lambda: sink)),
                  10, "connecting the component")
    await bounded(reactor, sink.ready, 10, "component handshake")
    sink.transport.setTcpNoDelay(True)
    return sink


def message_batches(count, senders, recipients, batch_bytes=65536):
    """
    C{count} messages, round-robin over C{(sender, recipient)} pairs, as one
    list of byte batches per pair.
    """
    body = fed.BODY
    pairs = list(zip(senders, recipients))
    out = [[] for _ in pairs]
    current = [[] for _ in pairs]
    sizes = [0] * len(pairs)
    total = 0
    for n in range(count):
        i = n % len(pairs)
        sender, recipient = pairs[i]
        stanza = (
            f"<message from='{sender}' to='{recipient}' type='chat' id='b{n}'>"
            f"<body>{body}</body></message>"
        ).encode("ascii")
        current[i].append(stanza)
        sizes[i] += len(stanza)
        total += len(stanza)
        if sizes[i] >= batch_bytes:
            out[i].append(b"".join(current[i]))
            current[i], sizes[i] = [], 0
    for i in range(len(pairs)):
        if current[i]:
            out[i].append(b"".join(current[i]))
    return out, total


# Phases ----------------------------------------------------------------------------


class Run:
    """
    One server under test, with the component attached and the remote side
    ready.
    """

    def __init__(self, reactor, server, remote, sink, options):
        self.reactor = reactor
        self.server = server
        self.remote = remote
        self.sink = sink
        self.options = options

    def check_alive(self, what):
        if not self.server.alive():
            raise BenchError(f"{self.server.name} exited during {what}\n{self.server.describe()}")
        if self.sink.lost.called:
            raise BenchError(f"the component's stream closed during {what}: {self.sink.problem}")
        if self.remote.problems:
            raise BenchError(f"during {what}: " + "; ".join(self.remote.problems))

    async def wait_until(self, done, counted, what, timeout=PHASE_TIMEOUT):
        deadline = time.monotonic() + timeout
        last, last_progress = counted(), time.monotonic()
        while not done():
            await sleep(self.reactor, 0.05)
            if done():
                break
            self.check_alive(what)
            now = time.monotonic()
            if counted() != last:
                last, last_progress = counted(), now
            elif now - last_progress > STALL_SECONDS:
                raise BenchError(f"{what}: no progress for {STALL_SECONDS:g} s at {counted()}")
            if now > deadline:
                raise BenchError(f"{what}: not done within {timeout:g} s ({counted()})")

    def result(self, count, finished, cpu0, own0, t0):
        elapsed = finished["time"] - t0
        server_cpu = finished["server_cpu"] - cpu0
        return {
            "rate": count / elapsed,
            # None when the run was shorter than the kernel's CPU accounting
            # tick: a figure that can't be measured is not printed.
            "per_cpu": count / server_cpu if server_cpu > 0 else None,
            "cpu_per_10k": 10000 * server_cpu / count if server_cpu > 0 else None,
            "server_share": server_cpu / elapsed,
            "own_share": (finished["own_cpu"] - own0) / elapsed,
        }

    async def inbound(self, streams, count):
        what = f"inbound throughput over {streams} stream(s)"
        domains = [peer_domain(n) for n in range(1, streams + 1)]
        clients = [await self.remote.establish(d) for d in domains]
        tls = {c.tls for c in clients}
        batches, _ = message_batches(
            count, [f"u@{d}" for d in domains], [f"sink@{SINK}"] * streams
        )
        pumps = [fed.Pump(c.transport, b) for c, b in zip(clients, batches)]
        sink = self.sink
        base = sink.count
        finished = {}

        def reached():
            finished["time"] = time.perf_counter()
            finished["server_cpu"] = process_cpu(self.server.pid)
            finished["own_cpu"] = own_cpu()

        sink.target, sink.on_target = base + count, reached
        cpu0, own0 = process_cpu(self.server.pid), own_cpu()
        t0 = time.perf_counter()
        for pump in pumps:
            pump.start()
        await self.wait_until(lambda: "time" in finished, lambda: sink.count - base, what)
        result = self.result(count, finished, cpu0, own0, t0)
        result["tls"] = ", ".join(sorted(t or "?" for t in tls))
        for c in clients:
            c.close()
        for c in clients:
            try:
                await bounded(self.reactor, c.lost, 10, "closing an inbound stream")
            except BenchError:
                c.transport.abortConnection()
        if sink.count - base != count:
            raise BenchError(f"{what}: the component counted {sink.count - base}, not {count}")
        return result

    async def outbound(self, streams, count):
        what = f"outbound throughput over {streams} stream(s)"
        domains = [peer_domain(n) for n in range(1, streams + 1)]
        remote, sink = self.remote, self.sink
        remote.outbound_tls.clear()
        # Set up the streams: one message to each remote domain.
        base = remote.delivered
        sink.transport.write(b"".join(
            f"<message from='source@{SINK}' to='u@{d}' type='chat'><body>hello</body></message>"
            .encode("ascii") for d in domains
        ))
        await self.wait_until(lambda: remote.delivered - base >= streams,
                              lambda: remote.delivered - base, what + " (setting up)", 60)
        batches, _ = message_batches(
            count, [f"source@{SINK}"] * streams, [f"u@{d}" for d in domains]
        )
        # One component stream carries them all: interleave the batches.
        interleaved = [b for group in _round_robin(batches) for b in group]
        pump = fed.Pump(sink.transport, interleaved)
        finished = {}

        def reached():
            finished["time"] = time.perf_counter()
            finished["server_cpu"] = process_cpu(self.server.pid)
            finished["own_cpu"] = own_cpu()

        base = remote.delivered
        remote.target, remote.on_target = base + count, reached
        errors0 = sink.errors
        cpu0, own0 = process_cpu(self.server.pid), own_cpu()
        t0 = time.perf_counter()
        pump.start()
        await self.wait_until(lambda: "time" in finished, lambda: remote.delivered - base, what)
        result = self.result(count, finished, cpu0, own0, t0)
        if sink.errors != errors0:
            raise BenchError(f"{what}: {sink.errors - errors0} messages bounced")
        await sleep(self.reactor, 0.2)
        if remote.delivered - base != count:
            raise BenchError(f"{what}: the remote side counted {remote.delivered - base}, not {count}")
        result["tls"] = ", ".join(sorted(remote.outbound_tls))
        return result

    async def handshakes(self, count, method, groups="classic"):
        what = f"handshakes ({method}, {groups} groups)"
        domain = peer_domain(0)
        sink = self.sink
        latencies = []
        tls = set()
        callbacks0 = sum(self.remote.callbacks.values())
        cpu0, own0 = process_cpu(self.server.pid), own_cpu()
        t0 = time.perf_counter()
        for n in range(count):
            self.check_alive(what)
            started = time.perf_counter()
            client = await self.remote.establish(domain, method, groups=groups)
            tls.add(client.tls)
            arrived = defer.Deferred()
            sink.target, sink.on_target = sink.count + 1, lambda: arrived.callback(None)
            client.transport.write(
                f"<message from='u@{domain}' to='sink@{SINK}' type='chat' id='h{n}'>"
                f"<body>{fed.BODY}</body></message>".encode("ascii")
            )
            await bounded(self.reactor, arrived, 30, f"{what}: first message on stream {n + 1}")
            latencies.append(time.perf_counter() - started)
            client.close()
            try:
                await bounded(self.reactor, client.lost, 10, f"{what}: closing stream {n + 1}")
            except BenchError:
                client.transport.abortConnection()
                raise
        elapsed = time.perf_counter() - t0
        server_cpu = process_cpu(self.server.pid) - cpu0
        if self.remote.callbacks[False]:
            raise BenchError(f"{what}: {self.remote.callbacks[False]} dialback keys were invalid")
        return {
            "rate": count / elapsed,
            "median_ms": 1000 * statistics.median(latencies),
            "p95_ms": 1000 * fed.percentile(latencies, 0.95),
            "cpu_ms": 1000 * server_cpu / count,
            "own_share": (own_cpu() - own0) / elapsed,
            "callbacks": sum(self.remote.callbacks.values()) - callbacks0,
            "tls": ", ".join(sorted(t or "?" for t in tls)),
        }

    async def memory(self, count, groups="classic"):
        what = f"memory with {count} idle streams ({groups} groups)"
        batch = 20

        async def open_streams(first, number):
            opened = []
            for start in range(first, first + number, batch):
                self.check_alive(what)
                opened += await defer.gatherResults([
                    defer.Deferred.fromCoroutine(
                        self.remote.establish(peer_domain(100000 + n), timeout=60, groups=groups)
                    )
                    for n in range(start, min(first + number, start + batch))
                ])
            return opened

        # A first batch, held, so that what is made once (threads, caches,
        # the first records) is not counted per stream.
        warm = await open_streams(0, batch)
        before, _ = await settled_rss(self.reactor, self.server.pid)
        streams = await open_streams(batch, count)
        await sleep(self.reactor, 3.0)
        self.check_alive(what)
        open_count = sum(1 for s in streams if not s.lost.called)
        after = process_rss_kib(self.server.pid)
        if open_count != count:
            raise BenchError(f"{what}: only {open_count} of {count} streams stayed open")
        for s in warm + streams:
            s.close()
        await defer.DeferredList([s.lost for s in warm + streams])
        tls = ", ".join(sorted({s.tls or "?" for s in warm + streams}))
        return {"kib_per_stream": (after - before) / count, "rss_mib": after / 1024, "tls": tls}


async def settled_rss(reactor, pid, window=4.0, tolerance_kib=256, longest=30.0):
    """
    Process C{pid}'s resident memory in KiB once it has moved by less than
    C{tolerance_kib} for C{window} seconds (at most C{longest} seconds
    after the call), and how many seconds that took.  The Erlang VM
    returns memory to the system for about ten seconds after ejabberd has
    started (seen: 108 MiB shrinking to 75 MiB by 1-2 MiB steps, with no
    work to do); read at once, that shrinking would be subtracted from
    what the streams of the memory phase add.
    """
    started = time.monotonic()
    samples = []
    while True:
        now = time.monotonic()
        samples.append((now, process_rss_kib(pid)))
        recent = [rss for at, rss in samples if at >= now - window]
        if (now - started >= window and max(recent) - min(recent) < tolerance_kib) or (
            now - started >= longest
        ):
            return samples[-1][1], now - started
        await sleep(reactor, 0.5)


def _round_robin(lists):
    """
    Groups of one item from each list in turn, until all are used up.
    """
    longest = max(len(items) for items in lists)
    for i in range(longest):
        yield [items[i] for items in lists if i < len(items)]


async def run_repeat(reactor, server_classes, folder, pki, dns_port, remote, options):
    """
    Start every server, then run each phase against each in turn, so that
    the figures compared were measured seconds apart.
    """
    runs = []
    results = {}

    async def start(server_class, where):
        secret = secrets.token_hex(16)
        server = server_class(where, pki, dns_port, secret, options)
        print(f"\n== {server.name}: s2s {LOOPBACK}:{server.s2s_port}, "
              f"components {LOOPBACK}:{server.component_port}")
        run = Run(reactor, server, remote, None, options)
        runs.append(run)
        await server.start(reactor)
        run.sink = await attach_component(reactor, server, secret)
        # Resident memory at start: the component attached, no s2s stream
        # yet, once it has stopped shrinking (the first start of the repeat).
        rss_kib, waited = await settled_rss(reactor, server.pid)
        print(f"   {server.name} pid {server.pid}, {rss_kib / 1024:.1f} MiB resident "
              f"(steady after {waited:.1f} s)")
        results.setdefault(server.name, {}).setdefault("start", {"rss_mib": rss_kib / 1024})

    async def restart(names, where):
        # Memory is measured on servers started for it: what earlier phases
        # allocated and freed would otherwise be reused by the new streams
        # without showing in the resident size.
        for run in [r for r in runs if r.server.name in names]:
            await stop(run)
            runs.remove(run)
            await start(type(run.server), where)

    try:
        for server_class in server_classes:
            await start(server_class, folder)

        async def phase(key, measure, describe, only=None):
            negotiated_by = {}
            for run in runs:
                if only is not None and run.server.name != only:
                    continue
                remote.server_port = run.server.s2s_port
                remote.problems.clear()
                r = await measure(run)
                results[run.server.name][key] = r
                negotiated_by[run.server.name] = r["tls"]
                print(f"   {run.server.name:<8} {describe(r)}; {r['tls']}")
            if len(set(negotiated_by.values())) > 1:
                raise BenchError(
                    f"{key}: the servers did not negotiate the same TLS: "
                    + "; ".join(f"{name}: {tls}" for name, tls in negotiated_by.items())
                )

        def describe_throughput(direction, streams):
            return lambda r: (
                f"{direction}, {streams} stream(s): {r['rate']:,.0f} msg/s, "
                f"{fmt(r['cpu_per_10k'])} CPU-s/10k ({100 * r['server_share']:.0f}% of a core), "
                f"bench {100 * r['own_share']:.0f}%"
            )

        def describe_handshakes(method):
            return lambda r: (
                f"handshakes ({method}): {r['rate']:.1f}/s, median {r['median_ms']:.1f} ms, "
                f"p95 {r['p95_ms']:.1f} ms, "
                f"{r['cpu_ms']:.1f} ms CPU each, {r['callbacks']} dialback callbacks"
            )

        def describe_memory(r):
            return (
                f"memory: {r['kib_per_stream']:.1f} KiB per idle stream "
                f"({options.streams} streams, RSS {r['rss_mib']:.0f} MiB)"
            )

        if options.messages:
            for key, direction, measure in (
                ("in", "inbound", Run.inbound),
                ("out", "outbound", Run.outbound),
            ):
                for streams in (1, 4):
                    await phase(
                        f"{key}{streams}",
                        lambda run, measure=measure, streams=streams: measure(
                            run, streams, options.messages
                        ),
                        describe_throughput(direction, streams),
                    )
        for method in ("external", "dialback"):
            if options.handshakes:
                await phase(
                    f"hs_{method}",
                    lambda run, method=method: run.handshakes(options.handshakes, method),
                    describe_handshakes(method),
                )
        # What a peer on OpenSSL 3.5 or later would negotiate with the
        # gateway (Prosody's OpenSSL has no such group).
        if options.handshakes:
            await phase(
                "hs_external_hybrid",
                lambda run: run.handshakes(options.handshakes, "external", "hybrid"),
                describe_handshakes("external"),
                only="gateway",
            )
        if options.streams:
            await restart({"gateway", "Prosody", "ejabberd"}, os.path.join(folder, "memory"))
            await phase("memory", lambda run: run.memory(options.streams), describe_memory)
            await restart({"gateway"}, os.path.join(folder, "memory-hybrid"))
            await phase(
                "memory_hybrid",
                lambda run: run.memory(options.streams, "hybrid"),
                describe_memory,
                only="gateway",
            )
    finally:
        for run in runs:
            await stop(run)
    return results


async def stop(run):
    if run.sink is not None:
        run.sink.close()
    await run.server.stop(run.reactor)


def throughput_figures(key, what):
    return [
        (key, f"{what}: messages/s", lambda r: r["rate"], True),
        (key, f"{what}: messages per CPU-s", lambda r: r["per_cpu"], True),
        (key, f"{what}: CPU-s per 10k stanzas", lambda r: r["cpu_per_10k"], False),
    ]


def handshake_figures(key, what):
    return [
        (key, f"{what}: per second", lambda r: r["rate"], True),
        (key, f"{what}: median ms", lambda r: r["median_ms"], False),
        (key, f"{what}: p95 ms", lambda r: r["p95_ms"], False),
        (key, f"{what}: CPU ms each", lambda r: r["cpu_ms"], False),
    ]


# (key, label, value from a result, higher is better; None: no ratio)
FIGURES = [
    *throughput_figures("in1", "inbound, 1 stream"),
    *throughput_figures("in4", "inbound, 4 streams"),
    *throughput_figures("out1", "outbound, 1 stream"),
    *throughput_figures("out4", "outbound, 4 streams"),
    *handshake_figures("hs_external", "handshakes, SASL EXTERNAL"),
    *handshake_figures("hs_dialback", "handshakes, dialback"),
    ("hs_dialback", "handshakes, dialback: callbacks made", lambda r: r["callbacks"], None),
    ("start", "memory: MiB resident at start", lambda r: r["rss_mib"], False),
    ("memory", "memory: KiB per idle stream", lambda r: r["kib_per_stream"], False),
    ("hs_external_hybrid", "hybrid key exchange, handshakes: per second",
     lambda r: r["rate"], True),
    ("hs_external_hybrid", "hybrid key exchange, handshakes: CPU ms each",
     lambda r: r["cpu_ms"], False),
    ("memory_hybrid", "hybrid key exchange, memory: KiB per idle stream",
     lambda r: r["kib_per_stream"], False),
]


def fmt(value):
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if value == 0:
        return "0"
    # CPU seconds per 10,000 stanzas are below 1: three decimals.
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def figure_rows(repeats, names):
    """
    For each figure: each server's median over the repeats (in the order
    of C{names}), and for each server but the gateway, the median of the
    per-repeat ratios gateway/that server (gateway better > 1; L{None}
    without the gateway).
    """
    rows = []
    for key, label, value, higher_better in FIGURES:
        per_repeat = []
        for run in repeats:
            figures = {}
            for name in names:
                result = run.get(name, {}).get(key)
                figures[name] = value(result) if result else None
            per_repeat.append(figures)
        medians = []
        for name in names:
            values = [f[name] for f in per_repeat if f[name] is not None]
            medians.append(statistics.median(values) if values else None)
        if all(m is None for m in medians):
            continue
        ratios = []
        for other in names:
            if other == "gateway":
                continue
            each = []
            if higher_better is not None and "gateway" in names:
                for f in per_repeat:
                    g, o = f["gateway"], f[other]
                    if g is not None and o is not None and g > 0 and o > 0:
                        each.append(g / o if higher_better else o / g)
            ratios.append(statistics.median(each) if each else None)
        rows.append((label, medians, ratios))
    return rows


def print_table(title, repeats, names):
    """
    A column per server in C{names}, then a ratio column per server other
    than the gateway (when the gateway ran): the gateway against it.
    """
    rows = figure_rows(repeats, names)
    width = max(len(r[0]) for r in rows) + 2 if rows else 40
    others = [name for name in names if name != "gateway"]
    ratio_columns = others if "gateway" in names else []
    print("\n" + title)
    print(f"{'figure':<{width}}" + "".join(f"{name:>12}" for name in names)
          + "".join(f"{'vs ' + name:>13}" for name in ratio_columns))
    for label, medians, ratios in rows:
        print(f"{label:<{width}}" + "".join(f"{fmt(m):>12}" for m in medians)
              + "".join(f"{(f'{r:.2f}x' if r is not None else '-'):>13}"
                        for r in ratios[:len(ratio_columns)]))
    return rows


async def main(reactor, options):
    folder = tempfile.mkdtemp(prefix="xmpp-gateway-versus-")
    print(f"bench: gateway code {fed.code_version()}; Prosody {package_version('prosody')}; "
          f"ejabberd {package_version('ejabberd')}; working folder {folder}")
    print(f"bench: servers {', '.join(options.servers)}; log level {options.log_level}")
    print(f"bench: machine: {machine()}")
    dns_server = remote = None
    repeats = []
    failure = None
    # The table's columns, always in this order.
    names = [server.name for key, server in SERVERS.items() if key in options.servers]
    try:
        ca = CertificateAuthority("Bench CA")
        pki_folder = os.path.join(folder, "pki")
        ca_file = ca.write_ca(pki_folder)
        sink_certificate, sink_key = ca.write_identity(pki_folder, SINK, eku=BOTH_EKUS)
        peers_certificate, peers_key = ca.write_identity(
            pki_folder, PEERS, [f"*.{PEERS}"], eku=BOTH_EKUS
        )
        remote = Remote(reactor, ca_file, peers_certificate, peers_key)
        remote_port = remote.listen()
        dns_server = LoopbackDNSServer(reactor)
        for n in range(0, 5):
            dns_server.add_srv(f"_xmpp-server._tcp.{peer_domain(n)}", f"xmpp.{PEERS}", remote_port)
        dns_server.add_a(f"xmpp.{PEERS}", LOOPBACK)
        servers = [SERVERS[name] for name in options.servers]
        for repeat in range(1, options.repeats + 1):
            print(f"\n#### repeat {repeat}/{options.repeats}")
            results = await run_repeat(
                reactor, servers, os.path.join(folder, f"repeat-{repeat}"),
                (sink_certificate, sink_key, ca_file),
                dns_server.port, remote, options,
            )
            repeats.append(results)
            print_table(f"repeat {repeat}:", [results], names)
    except BenchError as e:
        failure = str(e)
    finally:
        if remote is not None and remote.listener is not None:
            await remote.listener.stopListening()
        if dns_server is not None:
            await dns_server.stop()
    if repeats:
        print("\n" + "=" * 78)
        print_table(
            f"medians of {len(repeats)} repeat(s); ratio > 1: the gateway does better "
            f"({options.messages:,} messages, {options.handshakes} handshakes, "
            f"{options.streams} idle streams)",
            repeats,
            names,
        )
        print("=" * 78)
    if failure:
        print(f"\nBENCHMARK FAILED: {failure}\n(files kept in {folder})", file=sys.stderr)
        raise SystemExit(1)
    if options.keep:
        print(f"files kept in {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Python {sys.version.split()[0]}"


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description="Benchmark the gateway against Debian's Prosody and ejabberd, side by side."
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of every phase (default 3)")
    parser.add_argument("--messages", type=int, default=200000,
                        help="messages per throughput phase (default 200000; 0 skips them)")
    parser.add_argument("--handshakes", type=int, default=200,
                        help="establishments per handshake phase (default 200; 0 skips them)")
    parser.add_argument("--streams", type=int, default=1000,
                        help="idle streams held for the memory phase (default 1000; 0 skips it)")
    parser.add_argument("--servers", default="gateway,prosody,ejabberd",
                        help="which servers, in order (default gateway,prosody,ejabberd)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="warn",
                        help="the log level of every server (default warn)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    options = parser.parse_args(argv)
    names = [s.strip().lower() for s in options.servers.split(",") if s.strip()]
    options.servers = list(dict.fromkeys(names))
    if not options.servers or set(options.servers) - set(SERVERS):
        parser.error("--servers takes one or more of gateway, prosody, ejabberd")
    if min(options.repeats, options.messages, options.handshakes, options.streams) < 0:
        parser.error("counts must not be negative")
    return options


if __name__ == "__main__":
    arguments = parse_arguments(sys.argv[1:])
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, arguments)))
