#!/usr/bin/env python3
"""
Federation benchmark for xmpp-gateway, over loopback with real TLS.

    .venv/bin/python bench/federation.py [--messages N] [--handshakes M]

It starts a gateway for C{gw.bench} as a subprocess (so that its CPU time
can be read separately from /proc), a sink XEP-0114 component attached to
it, and acts itself as the remote server C{peer.bench}: an s2s listener
that answers the gateway's C{db:verify} requests, and a load generator
that opens s2s streams to the gateway (STARTTLS, TLS, dialback).  Names
come from a DNS server on 127.0.0.1 run in this process.

Phases:

  1. inbound throughput: N messages over one authenticated s2s stream,
     from the first write to the sink counting the last message;
  2. handshakes: M sequential full s2s establishments (TCP, STARTTLS, TLS,
     stream restart, dialback with the gateway's verification callback to
     peer.bench), each closed before the next.

See bench/README.md for how to read the figures.
"""

import argparse
import atexit
import hashlib
import json
import math
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

# Use the checkout's code (gateway/, tests/), not an installed copy, and
# leave no bytecode behind in the checkout.
sys.dont_write_bytecode = True
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from twisted.internet import defer, protocol, ssl, task  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint  # noqa: E402
from twisted.internet.interfaces import IHandshakeListener, IPushProducer  # noqa: E402
from twisted.names import client as dns_client  # noqa: E402
from twisted.names import dns
from zope.interface import implementer  # noqa: E402

from gateway.s2s.dialback import check_dialback_key, dialback_key  # noqa: E402
from tests.dnsserver import LoopbackDNSServer  # noqa: E402
from tests.pki import CertificateAuthority  # noqa: E402

GW = "gw.bench"
PEER = "peer.bench"
LOOPBACK = "127.0.0.1"
BODY = (
    "Benchmark payload: the quick brown fox jumps over the lazy dog; "
    "pack my box with five dozen liquor jugs."
)[:100]
STALL_SECONDS = 30.0
ESTABLISH_TIMEOUT = 30.0
CLOSE_TIMEOUT = 10.0
START_TIMEOUT = 30.0

# The gateway, run by twistd exactly as `twistd -n --pidfile= xmpp-gateway
# --config FILE` would, from the checkout.  The plugin is handed to twistd
# directly instead of being discovered, so that twistd does not write a
# plugin cache (twisted/plugins/dropin.cache) into the checkout.
GATEWAY_BOOT = """\
import gateway
from twisted.application.service import IServiceMaker, ServiceMaker
from twisted.scripts import twistd
print("bench: gateway code from", gateway.__file__, flush=True)
maker = ServiceMaker("XMPP federation gateway", "gateway.app.tap", "", "xmpp-gateway")
twistd.ServerOptions._getPlugins = staticmethod(
    lambda interface, package=None: [maker] if interface is IServiceMaker else []
)
twistd.run()
"""


class BenchError(Exception):
    """
    A phase failed or timed out; the message says what happened.
    """


# Minimal stream scanning ------------------------------------------------------
#
# The load generator does not build XML trees.  It only needs the stream
# header's id, the end of the features, <proceed/>, the db:result answer and
# (as authoritative server) db:verify requests, all of which the gateway
# writes in a fixed form.

HEADER_RE = re.compile(rb"<stream:stream\b([^>]*)>")
ATTR_RE = re.compile(rb"""([\w:.-]+)\s*=\s*(?:'([^']*)'|"([^"]*)")""")
RESULT_RE = re.compile(rb"<db:result\b([^>]*?)/?>")
VERIFY_RE = re.compile(rb"<db:verify\b([^>]*)>([^<]*)</db:verify>")
FEATURES_END_RE = re.compile(rb"</stream:features>|<stream:features\s*/>")
ERROR_RE = re.compile(rb"<stream:error\b[^>]*>\s*<([\w-]+)")
ERROR_TEXT_RE = re.compile(rb"<text\b[^>]*>([^<]*)</text>")
MESSAGE_END = b"</message>"
NS_STREAMS = "http://etherx.jabber.org/streams"


def attributes(raw):
    result = {}
    for m in ATTR_RE.finditer(raw):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        result[m.group(1).decode("ascii", "replace")] = value.decode("utf-8", "replace")
    return result


def stream_error(buffer):
    """
    Describe a stream error found in C{buffer}, or return L{None}.
    """
    start = buffer.find(b"<stream:error")
    if start < 0:
        return None
    condition = ERROR_RE.search(buffer, start)
    text = ERROR_TEXT_RE.search(buffer, start)
    described = "stream error " + (condition.group(1).decode() if condition else "(incomplete)")
    if text:
        described += ": " + text.group(1).decode("utf-8", "replace")
    return described


def s2s_header(sender, recipient, stream_id=None):
    header = (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
        f"xmlns:stream='{NS_STREAMS}' xmlns:db='jabber:server:dialback' "
        f"version='1.0' from='{sender}' to='{recipient}'"
    )
    if stream_id:
        header += f" id='{stream_id}'"
    return (header + ">").encode("ascii")


# The load generator, as originating server ------------------------------------


@implementer(IHandshakeListener)
class PeerClient(protocol.Protocol):
    """
    An outbound s2s stream from peer.bench to gw.bench: header, STARTTLS,
    TLS, restart, db:result, and then only writing.

    @ivar authenticated: fires with this protocol once the gateway answers
        the db:result with type='valid'; fails with L{BenchError}.
    @ivar lost: fires when the connection is gone.
    """

    def __init__(self, peer):
        self.peer = peer
        self.state = "connecting"
        self.buffer = b""
        self.tail = b""
        self.stream_id = None
        self.problem = None
        self.authenticated = defer.Deferred()
        self.lost = defer.Deferred()

    def connectionMade(self):
        self.state = "awaiting header"
        self.transport.write(s2s_header(PEER, GW))

    def handshakeCompleted(self):
        self.state = "awaiting header after TLS"
        self.transport.write(s2s_header(PEER, GW))

    def dataReceived(self, data):
        if self.state == "open":
            # Authenticated: only watch for the gateway ending the stream.
            scan = self.tail + data
            if b"<stream:error" in scan or b"</stream:stream>" in scan:
                self.buffer += data
                self.problem = stream_error(self.buffer) or "the gateway closed the stream"
            self.tail = scan[-16:]
            return
        self.buffer += data
        problem = stream_error(self.buffer)
        if problem:
            self._fail(f"gateway sent {problem} while {self.state}")
            return
        while self._step():
            pass

    def _step(self):
        state = self.state
        if state in ("awaiting header", "awaiting header after TLS"):
            m = HEADER_RE.search(self.buffer)
            if m is None:
                return False
            self.stream_id = attributes(m.group(1)).get("id")
            if not self.stream_id:
                self._fail("the gateway's stream header has no id")
                return False
            self.buffer = self.buffer[m.end():]
            self.state = "awaiting features" if state == "awaiting header" else "awaiting features after TLS"
            return True
        if state in ("awaiting features", "awaiting features after TLS"):
            m = FEATURES_END_RE.search(self.buffer)
            if m is None:
                return False
            self.buffer = self.buffer[m.end():]
            if state == "awaiting features":
                self.transport.write(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                self.state = "awaiting proceed"
            else:
                key = dialback_key(self.peer.secret, GW, PEER, self.stream_id)
                self.transport.write(
                    f"<db:result from='{PEER}' to='{GW}'>{key}</db:result>".encode("ascii")
                )
                self.state = "awaiting db:result answer"
            return True
        if state == "awaiting proceed":
            if b"<proceed" in self.buffer:
                self.buffer = b""
                self.state = "TLS handshake"
                self.transport.startTLS(self.peer.client_tls)
            elif b"<failure" in self.buffer:
                self._fail("the gateway refused STARTTLS")
            return False
        if state == "awaiting db:result answer":
            m = RESULT_RE.search(self.buffer)
            if m is None:
                return False
            kind = attributes(m.group(1)).get("type")
            if kind != "valid":
                self._fail(f"the gateway answered dialback with type={kind!r}: {self.buffer[:300]!r}")
                return False
            self.state = "open"
            self.buffer = b""
            if not self.authenticated.called:
                self.authenticated.callback(self)
            return False
        return False

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


# The load generator, as authoritative server ------------------------------------


class PeerServer(protocol.Protocol):
    """
    peer.bench's s2s listener: the gateway connects here to verify the
    dialback keys peer.bench sent it (XEP-0220 db:verify), after STARTTLS.
    """

    def __init__(self, peer):
        self.peer = peer
        self.state = "awaiting header"
        self.buffer = b""

    def connectionMade(self):
        self.peer.verify_connections += 1

    def dataReceived(self, data):
        self.buffer += data
        problem = stream_error(self.buffer)
        if problem:
            self.peer.problems.append(f"gateway sent {problem} on a db:verify stream")
            self.transport.loseConnection()
            return
        while self._step():
            pass

    def _step(self):
        state = self.state
        if state in ("awaiting header", "awaiting header after TLS"):
            m = HEADER_RE.search(self.buffer)
            if m is None:
                return False
            self.buffer = self.buffer[m.end():]
            header = s2s_header(PEER, GW, secrets.token_hex(12))
            if state == "awaiting header":
                features = (
                    b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
                    b"<required/></starttls><dialback xmlns='urn:xmpp:features:dialback'>"
                    b"<errors/></dialback></stream:features>"
                )
                self.state = "awaiting starttls"
            else:
                features = (
                    b"<stream:features><dialback xmlns='urn:xmpp:features:dialback'>"
                    b"<errors/></dialback></stream:features>"
                )
                self.state = "open"
            self.transport.write(header + features)
            return True
        if state == "awaiting starttls":
            if b"<starttls" in self.buffer:
                self.buffer = b""
                self.state = "awaiting header after TLS"
                self.transport.write(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                self.transport.startTLS(self.peer.server_tls)
            elif b"<db:" in self.buffer:
                self.peer.problems.append("the gateway sent dialback before STARTTLS")
                self.transport.loseConnection()
            return False
        if state == "open":
            m = VERIFY_RE.search(self.buffer)
            if m is not None:
                self.buffer = self.buffer[m.end():]
                attrs = attributes(m.group(1))
                asking, authoritative = attrs.get("from", ""), attrs.get("to", "")
                stream_id, key = attrs.get("id", ""), m.group(2).decode("ascii", "replace")
                valid = authoritative == PEER and check_dialback_key(
                    self.peer.secret, asking, authoritative, stream_id, key
                )
                self.peer.verify_answers[valid] += 1
                self.transport.write(
                    f"<db:verify from='{PEER}' to='{asking}' id='{stream_id}' "
                    f"type='{'valid' if valid else 'invalid'}'/>".encode("ascii")
                )
                return True
            if b"<db:result" in self.buffer:
                # The gateway wants to send stanzas to peer.bench: bounces.
                self.peer.problems.append(
                    "the gateway opened a dialback stream to deliver stanzas to peer.bench "
                    "(bounces?); the benchmark does not accept them"
                )
                self.transport.write(
                    b"<stream:error><undefined-condition "
                    b"xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"
                )
                self.transport.loseConnection()
                return False
            if b"</stream:stream>" in self.buffer:
                self.state = "closed"
                self.transport.write(b"</stream:stream>")
                self.transport.loseConnection()
            return False
        return False


class Peer:
    """
    Everything peer.bench knows: its dialback secret, its TLS settings,
    and what its listener saw.
    """

    def __init__(self, reactor, ca, certificate_file, key_file):
        self.reactor = reactor
        self.secret = secrets.token_hex(32)
        with open(certificate_file, "rb") as f:
            chain = f.read()
        with open(key_file, "rb") as f:
            key = f.read()
        ca_certificate = ssl.Certificate.loadPEM(ca.pem)
        identity = ssl.PrivateCertificate.loadPEM(chain + key)
        # Outbound: verify the gateway's certificate for gw.bench against the
        # CA, and present peer.bench's.  One context for every connection.
        self.client_tls = ssl.optionsForClientTLS(
            GW,
            trustRoot=ca_certificate,
            clientCertificate=identity,
            extraCertificateOptions={"extraCertChain": [ca_certificate.original]},
        )
        # Inbound (the gateway's db:verify streams): present peer.bench's.
        self.server_tls = ssl.CertificateOptions(
            privateKey=identity.privateKey.original,
            certificate=identity.original,
            extraCertChain=[ca_certificate.original],
        )
        self.verify_connections = 0
        self.verify_answers = {True: 0, False: 0}
        self.problems = []
        self.listener = None
        self.gateway_port = None

    def listen(self):
        factory = protocol.Factory.forProtocol(lambda: PeerServer(self))
        factory.noisy = False
        self.listener = self.reactor.listenTCP(0, factory, interface=LOOPBACK)
        return self.listener.getHost().port

    async def establish(self, timeout=ESTABLISH_TIMEOUT):
        """
        Open one authenticated s2s stream to the gateway.

        @return: the L{PeerClient}, authenticated.
        """
        factory = protocol.Factory.forProtocol(lambda: PeerClient(self))
        factory.noisy = False
        endpoint = TCP4ClientEndpoint(self.reactor, LOOPBACK, self.gateway_port, timeout=timeout)
        started = time.monotonic()
        try:
            client = await bounded(self.reactor, endpoint.connect(factory), timeout, "connecting to the gateway's s2s port")
        except BenchError:
            raise
        except Exception as e:
            raise BenchError(f"cannot connect to the gateway's s2s port: {e}") from None
        remaining = max(0.1, timeout - (time.monotonic() - started))
        try:
            return await bounded(self.reactor, client.authenticated, remaining, "s2s establishment")
        except BenchError as e:
            client.transport.abortConnection()
            raise BenchError(f"{e} (load generator state: {client.state})") from None


# The sink component ------------------------------------------------------------


class Sink(protocol.Protocol):
    """
    An XEP-0114 component (for gw.bench unless C{domain} says otherwise)
    that counts the messages it receives by scanning the raw bytes for
    C{</message>}, and stanza errors by C{type='error'}.
    """

    def __init__(self, secret, domain=GW):
        self.secret = secret
        self.domain = domain
        self.errors = 0
        self.error_tail = b""
        self.state = "awaiting header"
        self.buffer = b""
        self.tail = b""
        self.recent = b""
        self.count = 0
        self.target = None
        self.on_target = None
        self.problem = None
        self.ready = defer.Deferred()
        self.lost = defer.Deferred()

    def connectionMade(self):
        self.transport.write(
            f"<stream:stream xmlns='jabber:component:accept' xmlns:stream='{NS_STREAMS}' "
            f"to='{self.domain}'>".encode("ascii")
        )

    def dataReceived(self, data):
        if self.state == "counting":
            self._count(data)
            return
        self.buffer += data
        problem = stream_error(self.buffer)
        if problem:
            self._fail(f"gateway sent {problem} while the sink was {self.state}")
            return
        if self.state == "awaiting header":
            m = HEADER_RE.search(self.buffer)
            if m is None:
                return
            stream_id = attributes(m.group(1)).get("id")
            if not stream_id:
                self._fail("the component stream header has no id")
                return
            self.buffer = self.buffer[m.end():]
            digest = hashlib.sha1((stream_id + self.secret).encode("utf-8")).hexdigest()
            self.transport.write(f"<handshake>{digest}</handshake>".encode("ascii"))
            self.state = "awaiting handshake"
        if self.state == "awaiting handshake":
            for answer in (b"<handshake/>", b"<handshake></handshake>"):
                at = self.buffer.find(answer)
                if at >= 0:
                    rest = self.buffer[at + len(answer):]
                    self.buffer = b""
                    self.state = "counting"
                    if not self.ready.called:
                        self.ready.callback(self)
                    self._count(rest)
                    return

    def _count(self, data):
        # Keep the last 9 bytes: a "</message>" split across reads is
        # counted once, and 9 bytes can't hold a whole one.
        scan = self.tail + data
        self.count += scan.count(MESSAGE_END)
        # The same for error stanzas, with a tail of their own.
        errors = self.error_tail + data
        self.errors += errors.count(b"type='error'") + errors.count(b'type="error"')
        self.error_tail = errors[-12:]
        self.tail = scan[-(len(MESSAGE_END) - 1):]
        # The last bytes seen, to describe a stream error if one comes.
        self.recent = (self.recent + data)[-1024:]
        if self.target is not None and self.count >= self.target and self.on_target:
            on_target, self.on_target = self.on_target, None
            on_target()

    def _fail(self, problem):
        self.problem = problem
        if not self.ready.called:
            self.ready.errback(BenchError(problem))
        self.transport.loseConnection()

    def close(self):
        if self.transport is not None and not self.lost.called:
            self.transport.write(b"</stream:stream>")
            self.transport.loseConnection()

    def connectionLost(self, reason):
        if self.problem is None:
            self.problem = stream_error(self.recent + self.buffer) or (
                f"connection closed while {self.state}: {reason.getErrorMessage()}"
            )
        if not self.ready.called:
            self.ready.errback(BenchError(self.problem))
        self.lost.callback(None)


# Writing with backpressure --------------------------------------------------------


@implementer(IPushProducer)
class Pump:
    """
    Writes pre-built batches to a transport for as long as it does not ask
    us to pause (TCP backpressure, through the TLS layer).
    """

    def __init__(self, transport, batches):
        self.transport = transport
        self.batches = batches
        self.next = 0
        self.paused = False
        self.stopped = False
        self.writing = False
        self.first_write = None
        self.done = defer.Deferred()

    def start(self):
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def pauseProducing(self):
        self.paused = True

    def stopProducing(self):
        self.stopped = True

    def resumeProducing(self):
        self.paused = False
        if self.writing:
            return
        self.writing = True
        try:
            while not self.paused and not self.stopped and self.next < len(self.batches):
                if self.first_write is None:
                    self.first_write = time.perf_counter()
                batch = self.batches[self.next]
                self.next += 1
                self.transport.write(batch)
        finally:
            self.writing = False
        if self.next == len(self.batches) and not self.done.called:
            self.transport.unregisterProducer()
            self.done.callback(None)


def build_batches(count, batch_bytes=65536):
    batches, current, size, total = [], [], 0, 0
    for n in range(count):
        stanza = (
            f"<message from='u@{PEER}' to='sink@{GW}' type='chat' id='b{n}'>"
            f"<body>{BODY}</body></message>"
        ).encode("ascii")
        current.append(stanza)
        size += len(stanza)
        if size >= batch_bytes:
            batches.append(b"".join(current))
            total += size
            current, size = [], 0
    if current:
        batches.append(b"".join(current))
        total += size
    return batches, total


# The gateway subprocess -------------------------------------------------------------


class GatewayProcess:
    def __init__(self, folder, config_file):
        self.folder = folder
        self.config_file = config_file
        self.log_file = os.path.join(folder, "gateway.log")
        self.process = None

    def start(self):
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log_file, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", GATEWAY_BOOT, "-n", "--pidfile=",
                 *os.environ.get("BENCH_TWISTD_ARGS", "").split(), "xmpp-gateway",
                 "--config", self.config_file],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        atexit.register(self.kill_now)

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def cpu(self):
        """
        The gateway's user + system CPU seconds so far.
        """
        return process_cpu(self.pid)

    def rss_mib(self):
        try:
            return process_rss_kib(self.pid) / 1024
        except OSError:
            return float("nan")

    def log_lines(self):
        try:
            with open(self.log_file, encoding="utf-8", errors="replace") as f:
                return f.read().splitlines()
        except OSError:
            return []

    def exited_message(self):
        return f"the gateway exited with status {self.process.returncode}"

    async def stop(self, reactor, grace=10.0):
        """
        SIGTERM (twistd shuts down cleanly), then SIGKILL after C{grace}.
        """
        if not self.alive():
            return
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.alive() and time.monotonic() < deadline:
            await sleep(reactor, 0.05)
        if self.alive():
            print(f"bench: the gateway (pid {self.pid}) ignored SIGTERM for {grace:g} s; killing it")
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(5)

    def kill_now(self):
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(5)


# Helpers ------------------------------------------------------------------------------


def sleep(reactor, seconds):
    return task.deferLater(reactor, seconds, lambda: None)


async def bounded(reactor, d, seconds, what):
    d.addTimeout(seconds, reactor)
    try:
        return await d
    except defer.TimeoutError:
        raise BenchError(f"{what}: nothing within {seconds:.1f} s") from None


def process_cpu(pid):
    """
    Process C{pid}'s user + system CPU seconds so far (/proc/PID/stat).
    """
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss_kib(pid):
    """
    Process C{pid}'s resident memory in KiB (/proc/PID/status).

    @raise OSError: when the process is gone.
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise OSError(f"process {pid} has no resident memory (a zombie?)")


def own_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def toml_string(value):
    return json.dumps(value)


async def port_accepts(reactor, port):
    endpoint = TCP4ClientEndpoint(reactor, LOOPBACK, port, timeout=1)
    try:
        connected = await endpoint.connect(protocol.Factory.forProtocol(protocol.Protocol))
    except Exception:
        return False
    connected.transport.abortConnection()
    return True


async def wait_for_gateway(reactor, gateway, ports):
    deadline = time.monotonic() + START_TIMEOUT
    waiting = list(ports)
    while waiting:
        if not gateway.alive():
            raise BenchError(gateway.exited_message() + " during start-up")
        if await port_accepts(reactor, waiting[0]):
            waiting.pop(0)
            continue
        if time.monotonic() > deadline:
            raise BenchError(
                f"the gateway's port {waiting[0]} did not accept connections within "
                f"{START_TIMEOUT:g} s"
            )
        await sleep(reactor, 0.1)


async def resolve_gateway(reactor, dns_port):
    """
    Find the gateway as a remote server would: SRV _xmpp-server._tcp.gw.bench
    on the bench DNS server, then the target's A record.
    """
    resolver = dns_client.Resolver(servers=[(LOOPBACK, dns_port)], reactor=reactor, timeout=(2,))
    answers, _, _ = await bounded(
        reactor, resolver.lookupService(f"_xmpp-server._tcp.{GW}"), 5, "SRV lookup"
    )
    srv = [a.payload for a in answers if a.type == dns.SRV]
    if not srv:
        raise BenchError(f"no SRV record for _xmpp-server._tcp.{GW}")
    target = srv[0].target.name.decode("ascii")
    answers, _, _ = await bounded(reactor, resolver.lookupAddress(target), 5, "A lookup")
    addresses = [socket.inet_ntoa(a.payload.address) for a in answers if a.type == dns.A]
    if addresses != [LOOPBACK]:
        raise BenchError(f"{target} resolves to {addresses}, expected only {LOOPBACK}")
    return srv[0].port


def code_version():
    """
    The checkout's commit, and whether the gateway's code differs from it
    (read-only git commands; "unknown" without git).
    """
    try:
        head = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", REPO, "diff", "--quiet", "HEAD", "--", "gateway", "twisted"],
            capture_output=True, timeout=10,
        ).returncode
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown"
    return head + (" with uncommitted changes to gateway/" if changed else "")


def percentile(values, fraction):
    """
    Nearest-rank percentile.
    """
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


async def explain(reactor, gateway, peer):
    """
    What else went wrong when an establishment failed: problems peer.bench's
    listener saw, and whether the gateway died (given a moment to be reaped).
    """
    problems = list(peer.problems)
    await sleep(reactor, 0.3)
    if not gateway.alive():
        problems.append(gateway.exited_message())
    return "".join("; " + problem for problem in problems)


def log_tail(gateway, count=15):
    lines = gateway.log_lines()[-count:]
    return "\n".join("    " + line for line in lines)


# The phases -----------------------------------------------------------------------------


async def throughput_phase(reactor, gateway, peer, sink, count, timeout):
    print(f"\n[1/2] inbound throughput: {count} messages over one s2s stream")
    try:
        client = await peer.establish()
    except BenchError as e:
        problems = await explain(reactor, gateway, peer)
        raise BenchError(f"establishing the throughput stream failed: {e}{problems}") from None
    batches, total_bytes = build_batches(count)
    print(f"      stream authenticated; writing {total_bytes / 1e6:.1f} MB in {len(batches)} batches")

    base = sink.count
    finished = {}

    def reached():
        finished["time"] = time.perf_counter()
        finished["gateway_cpu"] = gateway.cpu()
        finished["own_cpu"] = own_cpu()
        finished["pump_next"] = pump.next

    sink.target = base + count
    sink.on_target = reached
    pump = Pump(client.transport, batches)
    rss_before = gateway.rss_mib()
    gateway_cpu0, own_cpu0 = gateway.cpu(), own_cpu()
    pump.start()
    t0 = pump.first_write
    deadline = time.monotonic() + timeout
    last_count, last_progress, last_report = sink.count, time.monotonic(), time.monotonic()
    while "time" not in finished:
        await sleep(reactor, 0.2)
        if "time" in finished:
            break
        now = time.monotonic()
        delivered = sink.count - base
        if sink.lost.called:
            raise BenchError(f"the gateway closed the sink component's stream ({sink.problem}) "
                             f"after {delivered}/{count} messages")
        if client.lost.called:
            raise BenchError(f"the s2s stream closed ({client.problem}) after {delivered}/{count} "
                             f"messages delivered, {pump.next}/{len(batches)} batches written")
        if not gateway.alive():
            raise BenchError(gateway.exited_message() + f" after {delivered}/{count} messages")
        if peer.problems:
            raise BenchError("; ".join(peer.problems))
        if sink.count != last_count:
            last_count, last_progress = sink.count, now
        elif now - last_progress > STALL_SECONDS:
            raise BenchError(
                f"no message reached the sink for {STALL_SECONDS:g} s: {delivered}/{count} delivered, "
                f"{pump.next}/{len(batches)} batches written (producer paused: {pump.paused})"
            )
        if now > deadline:
            raise BenchError(f"throughput phase exceeded {timeout:g} s: {delivered}/{count} delivered")
        if now - last_report >= 5:
            last_report = now
            print(f"      ... {delivered}/{count} delivered, {pump.next}/{len(batches)} batches written")
    elapsed = finished["time"] - t0
    result = {
        "count": count,
        "bytes": total_bytes,
        "elapsed": elapsed,
        "rate": count / elapsed,
        "gateway_cpu": finished["gateway_cpu"] - gateway_cpu0,
        "own_cpu": finished["own_cpu"] - own_cpu0,
        "rss_before": rss_before,
        "rss_after": gateway.rss_mib(),
        "extra": sink.count - base - count,
    }
    if result["extra"]:
        print(f"      warning: the sink counted {result['extra']} more messages than were sent")
    client.close()
    try:
        await bounded(reactor, client.lost, CLOSE_TIMEOUT, "closing the throughput stream")
    except BenchError:
        client.transport.abortConnection()
    # The gateway logs how many stanzas the stream carried when it closes.
    deadline = time.monotonic() + 5
    result["gateway_counted"] = None
    while time.monotonic() < deadline and result["gateway_counted"] is None:
        for line in gateway.log_lines():
            m = re.search(rf"s2s inbound {re.escape(PEER)} stream closed after (\d+) stanzas in", line)
            if m and int(m.group(1)) >= count:
                result["gateway_counted"] = int(m.group(1))
        await sleep(reactor, 0.1)
    r = result
    print(
        f"      {count} messages in {r['elapsed']:.2f} s = {r['rate']:,.0f} messages/s "
        f"({r['bytes'] / r['elapsed'] / 1e6:.1f} MB/s of stanzas)"
    )
    print(
        f"      gateway CPU {r['gateway_cpu']:.2f} s ({100 * r['gateway_cpu'] / r['elapsed']:.0f}% of one core), "
        f"{10000 * r['gateway_cpu'] / count:.3f} s per 10,000 stanzas; "
        f"bench CPU {r['own_cpu']:.2f} s ({100 * r['own_cpu'] / r['elapsed']:.0f}%)"
    )
    return result


async def handshake_phase(reactor, gateway, peer, count, timeout):
    print(f"\n[2/2] handshakes: {count} sequential s2s establishments")
    latencies = []
    verifies_before = sum(peer.verify_answers.values())
    gateway_cpu0, own_cpu0 = gateway.cpu(), own_cpu()
    t0 = time.perf_counter()
    last_report = time.monotonic()
    for n in range(count):
        if time.perf_counter() - t0 > timeout:
            raise BenchError(f"handshake phase exceeded {timeout:g} s after {n}/{count} establishments")
        if not gateway.alive():
            raise BenchError(gateway.exited_message() + f" after {n}/{count} establishments")
        started = time.perf_counter()
        try:
            client = await peer.establish()
        except BenchError as e:
            problems = await explain(reactor, gateway, peer)
            raise BenchError(f"establishment {n + 1}/{count} failed: {e}{problems}") from None
        latencies.append(time.perf_counter() - started)
        client.close()
        try:
            await bounded(reactor, client.lost, CLOSE_TIMEOUT, f"closing stream {n + 1}")
        except BenchError:
            client.transport.abortConnection()
            raise
        if time.monotonic() - last_report >= 5:
            last_report = time.monotonic()
            print(f"      ... {n + 1}/{count}")
    elapsed = time.perf_counter() - t0
    gateway_cpu = gateway.cpu() - gateway_cpu0
    own = own_cpu() - own_cpu0
    if peer.problems:
        raise BenchError("; ".join(peer.problems))
    result = {
        "count": count,
        "elapsed": elapsed,
        "rate": count / elapsed,
        "median": statistics.median(latencies),
        "p90": percentile(latencies, 0.9),
        "min": min(latencies),
        "max": max(latencies),
        "gateway_cpu": gateway_cpu,
        "own_cpu": own,
        "verifies": sum(peer.verify_answers.values()) - verifies_before,
    }
    r = result
    print(
        f"      {count} establishments in {elapsed:.2f} s = {r['rate']:.1f}/s; latency median "
        f"{1000 * r['median']:.1f} ms, p90 {1000 * r['p90']:.1f} ms"
    )
    print(
        f"      gateway CPU {gateway_cpu:.2f} s ({100 * gateway_cpu / elapsed:.0f}% of one core), "
        f"{1000 * gateway_cpu / count:.1f} ms per establishment; bench CPU {own:.2f} s "
        f"({100 * own / elapsed:.0f}%)"
    )
    return result


def print_table(throughput, handshakes):
    print("\n" + "=" * 78)
    print("xmpp-gateway federation benchmark (loopback, TLS, one machine)")
    print("=" * 78)
    rows = []
    if throughput:
        t = throughput
        rows += [
            ("inbound messages (one s2s stream -> component)", ""),
            ("  messages", f"{t['count']:,}"),
            ("  elapsed, first write to last counted", f"{t['elapsed']:.2f} s"),
            ("  throughput", f"{t['rate']:,.0f} messages/s"),
            ("  gateway CPU", f"{t['gateway_cpu']:.2f} s ({100 * t['gateway_cpu'] / t['elapsed']:.0f}% of a core)"),
            ("  gateway CPU per 10,000 stanzas", f"{10000 * t['gateway_cpu'] / t['count']:.3f} s"),
            ("  bench (load generator + sink) CPU", f"{t['own_cpu']:.2f} s ({100 * t['own_cpu'] / t['elapsed']:.0f}% of a core)"),
            ("  gateway RSS before / after", f"{t['rss_before']:.0f} / {t['rss_after']:.0f} MiB"),
            ("  gateway's own count of stanzas in", f"{t['gateway_counted'] if t['gateway_counted'] is not None else 'not logged'}"),
        ]
    if handshakes:
        h = handshakes
        rows += [
            ("s2s establishments (STARTTLS + dialback with verify)", ""),
            ("  establishments", f"{h['count']:,}"),
            ("  elapsed", f"{h['elapsed']:.2f} s"),
            ("  rate", f"{h['rate']:.1f} establishments/s"),
            ("  latency median / p90", f"{1000 * h['median']:.1f} / {1000 * h['p90']:.1f} ms"),
            ("  latency min / max", f"{1000 * h['min']:.1f} / {1000 * h['max']:.1f} ms"),
            ("  gateway CPU", f"{h['gateway_cpu']:.2f} s ({100 * h['gateway_cpu'] / h['elapsed']:.0f}% of a core)"),
            ("  gateway CPU per establishment", f"{1000 * h['gateway_cpu'] / h['count']:.1f} ms"),
            ("  bench (peer + DNS server) CPU", f"{h['own_cpu']:.2f} s ({100 * h['own_cpu'] / h['elapsed']:.0f}% of a core)"),
            ("  db:verify callbacks answered", f"{h['verifies']}"),
        ]
    if not rows:
        print("no phase completed")
    width = max((len(label) for label, _ in rows), default=0) + 2
    for label, value in rows:
        print(f"{label:<{width}}{value}")
    print("=" * 78)


def report_log(gateway):
    """
    Print the gateway log lines worth a reader's attention.
    """
    lines = gateway.log_lines()
    interesting = [
        line for line in lines
        if re.search(r"#(critical|error|warn)\]|Traceback|Unhandled|stream error|failed", line)
    ]
    print(f"\ngateway log: {gateway.log_file} ({len(lines)} lines)")
    if not interesting:
        print("  no errors, warnings or stream errors logged")
        return
    print(f"  {len(interesting)} line(s) with errors, warnings or stream errors (the first 20):")
    for line in interesting[:20]:
        print("    " + line)


async def main(reactor, options):
    folder = tempfile.mkdtemp(prefix="xmpp-gateway-bench-")
    print(f"bench: gateway code {code_version()} from {REPO}; working folder {folder}")
    gateway = dns_server = peer = sink = None
    results = {}
    failure = None
    try:
        ca = CertificateAuthority("Bench CA")
        gw_certificate, gw_key = ca.write_identity(os.path.join(folder, "pki"), GW)
        peer_certificate, peer_key = ca.write_identity(os.path.join(folder, "pki"), PEER)

        peer = Peer(reactor, ca, peer_certificate, peer_key)
        peer_port = peer.listen()
        dns_server = LoopbackDNSServer(reactor)
        s2s_port, component_port = free_port(), free_port()
        dns_server.add_srv(f"_xmpp-server._tcp.{PEER}", f"xmpp.{PEER}", peer_port)
        dns_server.add_a(f"xmpp.{PEER}", LOOPBACK)
        dns_server.add_srv(f"_xmpp-server._tcp.{GW}", f"xmpp.{GW}", s2s_port)
        dns_server.add_a(f"xmpp.{GW}", LOOPBACK)

        component_secret = secrets.token_hex(16)
        config_file = os.path.join(folder, "gateway.toml")
        with open(config_file, "w") as f:
            f.write(
                f"state_dir = {toml_string(os.path.join(folder, 'state'))}\n"
                f"[s2s]\nlisten = [{toml_string(f'tcp:{s2s_port}:interface={LOOPBACK}')}]\n"
                f"queue_limit = {max(100000, options.messages * 2)}\n"
                # Throughput as fast as one stream goes: no per-stream read
                # limit (Prosody has none by default either).
                f"read_rate = 0\n"
                f"[components]\nlisten = [{toml_string(f'tcp:{component_port}:interface={LOOPBACK}')}]\n"
                f"[admin]\nlisten = []\n"
                f'[domains."{GW}"]\ncertificate = {toml_string(gw_certificate)}\n'
                f"key = {toml_string(gw_key)}\ncomponent_secret = {toml_string(component_secret)}\n"
                f"[dns]\nservers = [{toml_string(f'{LOOPBACK}:{dns_server.port}')}]\ntimeout = 2.0\n"
                # The load generator is on loopback: let DNS send the gateway there.
                'allow_networks = ["127.0.0.0/8"]\n'
                f"[timeouts]\nconnect = 10.0\nauthentication = 20.0\n"
                f"[policy]\nrequire_tls = true\n"
            )

        gateway = GatewayProcess(folder, config_file)
        gateway.start()
        print(f"bench: gateway pid {gateway.pid}, s2s on {LOOPBACK}:{s2s_port}, "
              f"components on {LOOPBACK}:{component_port}; DNS on {LOOPBACK}:{dns_server.port}; "
              f"peer.bench s2s on {LOOPBACK}:{peer_port}")
        await wait_for_gateway(reactor, gateway, [s2s_port, component_port])
        peer.gateway_port = await resolve_gateway(reactor, dns_server.port)

        sink = Sink(component_secret)
        endpoint = TCP4ClientEndpoint(reactor, LOOPBACK, component_port, timeout=10)
        await bounded(reactor, endpoint.connect(protocol.Factory.forProtocol(lambda: sink)),
                      10, "connecting the sink component")
        await bounded(reactor, sink.ready, 10, "sink component handshake")
        print("bench: gateway up, sink component attached")

        if options.messages > 0:
            results["throughput"] = await throughput_phase(
                reactor, gateway, peer, sink, options.messages, options.timeout
            )
        if options.handshakes > 0:
            results["handshakes"] = await handshake_phase(
                reactor, gateway, peer, options.handshakes, options.timeout
            )
    except BenchError as e:
        failure = str(e)
    finally:
        if sink is not None:
            sink.close()
        if gateway is not None and gateway.process is not None:
            if failure and gateway.alive():
                print(f"\nbench: last gateway log lines before stopping it:\n{log_tail(gateway)}")
            await gateway.stop(reactor)
        if peer is not None and peer.listener is not None:
            await peer.listener.stopListening()
        if dns_server is not None:
            await dns_server.stop()
    print_table(results.get("throughput"), results.get("handshakes"))
    if gateway is not None:
        report_log(gateway)
    if failure:
        print(f"\nBENCHMARK FAILED: {failure}", file=sys.stderr)
        print(f"(files kept in {folder})", file=sys.stderr)
        raise SystemExit(1)
    if options.keep:
        print(f"files kept in {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description="Benchmark xmpp-gateway federation over loopback: inbound s2s throughput "
        "and s2s establishments."
    )
    parser.add_argument("--messages", type=int, default=200000,
                        help="messages for the throughput phase (default 200000; 0 skips it)")
    parser.add_argument("--handshakes", type=int, default=200,
                        help="sequential s2s establishments (default 200; 0 skips them)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="the most seconds each phase may take (default 600)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the working folder (certificates, config, gateway log)")
    options = parser.parse_args(argv)
    if options.messages < 0 or options.handshakes < 0:
        parser.error("counts must not be negative")
    return options


if __name__ == "__main__":
    arguments = parse_arguments(sys.argv[1:])
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, arguments)))
