"""
Hostile peers against a running gateway, over real loopback sockets: RFC
6120 section 11.1 restricted XML, the stanza and header size limits,
STARTTLS injection, dialback from strangers and TLS downgrades.  Each
attack is checked for the exact answer (stream error, dialback error or
TLS alert) and for the connection being closed, while a well-behaved
federation of two other gateways goes on beside it.

At the end, at the level of one L{InboundStream} over a
L{StringTransport}, the malformed addressing and out-of-place elements
that C{tests/test_inbound.py} does not already cover.
"""

import functools
import os
import resource
import select
import socket
import ssl
import time

from twisted.internet import defer, protocol, reactor, threads
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from gateway.xmpp.parser import NS_XML, ShallowStanza, StreamParser, XMLStreamError
from gateway.xmpp.stanzas import NS_DIALBACK, NS_STREAMS, NS_XMPP_STREAMS, error_condition
from tests.support import World, wait_for
from tests.test_inbound import HEADER as UNIT_HEADER
from tests.test_inbound import InboundTestCase
from tests.test_tls import client_context

#: The stanza size limit of the gateway under attack.
LIMIT = 10000
#: What Twisted reads from a socket at most at once: the parser may hold
#: the limit plus one read before it refuses.
ONE_READ = 65536

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
    b"xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
    b"from='evil.test' to='a.test' version='1.0'>"
)
STREAM_OPEN = HEADER.split(b"?>", 1)[1]
STARTTLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
PROCEED = b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
FEATURES_END = b"</stream:features>"


def billion_laughs(levels=10):
    """
    The classic entity expansion bomb: C{levels} entities, each ten times
    the one before, ahead of a stream header (10**levels "lol"s if
    expanded).
    """
    entities = ['<!ENTITY lol0 "lol">']
    for level in range(1, levels):
        entities.append(f'<!ENTITY lol{level} "' + f"&lol{level - 1};" * 10 + '">')
    return (
        b"<?xml version='1.0'?><!DOCTYPE stream:stream ["
        + "".join(entities).encode()
        + b"]>"
        + STREAM_OPEN.replace(b"from='evil.test'", f"from='&lol{levels - 1};'".encode())
    )


def coroutine_test(method):
    """
    Run an C{async def} test method as a Deferred, for trial.
    """

    @functools.wraps(method)
    def run(self):
        return defer.Deferred.fromCoroutine(method(self))

    return run


class Transcript:
    """
    What the gateway said on one stream (from its header on), parsed.
    """

    def __init__(self, data):
        self.data = data
        self.headers = []
        self.elements = []
        self.ended = False
        parser = StreamParser(
            self.headers.append, self.elements.append, self._end, 10 * 1024 * 1024
        )
        try:
            parser.feed(data)
        except XMLStreamError as e:
            raise AssertionError(f"the gateway wrote bad XML ({e.text}): {data!r}") from None

    def _end(self):
        self.ended = True

    def stream_errors(self):
        return [e for e in self.elements if (e.uri, e.name) == (NS_STREAMS, "error")]

    def stream_error(self):
        """
        The one stream error, as C{(condition, text)}; it must be the last
        element, followed by the end of the stream.
        """
        errors = self.stream_errors()
        if len(errors) != 1 or self.elements[-1] is not errors[0] or not self.ended:
            raise AssertionError(f"not exactly one stream error, then the end: {self.data!r}")
        (error,) = errors
        conditions = [
            c.name for c in error.elements() if c.uri == NS_XMPP_STREAMS and c.name != "text"
        ]
        texts = [str(c) for c in error.elements() if (c.uri, c.name) == (NS_XMPP_STREAMS, "text")]
        if len(conditions) != 1:
            raise AssertionError(f"a stream error with conditions {conditions}: {self.data!r}")
        return conditions[0], (texts[0] if texts else None)


class HostilePeer:
    """
    A peer that says exactly what a test tells it, over a blocking socket.
    Every method blocks: run them in a thread (L{threads.deferToThread}).
    Every wait is bounded.

    @ivar received: what the gateway sent on the current stream (after TLS,
        the decrypted bytes of the new stream only).
    """

    def __init__(self, port, timeout=10.0):
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.received = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def _pending(self):
        return isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0

    def readable(self, seconds):
        if self._pending():
            return True
        ready, _, _ = select.select([self.sock], [], [], seconds)
        return bool(ready)

    def _recv(self):
        """
        One read: bytes, or b"" when the connection closed, or L{None} when
        nothing came within the timeout.
        """
        try:
            return self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return None
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            return b""

    def read_until(self, marker, timeout=None):
        """
        Read until C{marker} is in what was received; return whether it is.
        """
        return self.read_until_parsed(lambda data: marker in data, timeout)

    def read_until_parsed(self, found, timeout=None):
        """
        Read until C{found(received)} is true; return whether it is.
        """
        deadline = time.monotonic() + (timeout or self.timeout)
        while not found(self.received) and time.monotonic() < deadline:
            if not self.readable(max(0.0, deadline - time.monotonic())):
                break
            data = self._recv()
            if not data:
                break
            self.received += data
        return bool(found(self.received))

    def read_until_closed(self, timeout=None):
        """
        Read until the gateway closes the connection.

        @return: how long that took in seconds, or L{None} when the
            connection was still open after C{timeout}.
        """
        started = time.monotonic()
        deadline = started + (timeout or self.timeout)
        while time.monotonic() < deadline:
            if not self.readable(max(0.0, deadline - time.monotonic())):
                continue
            data = self._recv()
            if data == b"":
                return time.monotonic() - started
            if data:
                self.received += data
        return None

    def still_open(self, seconds=0.3):
        """
        Whether the gateway neither sent anything nor closed within
        C{seconds}.
        """
        return not self.readable(seconds)

    def tcp_closed_within(self, seconds):
        """
        Whether the gateway closes the TCP connection within C{seconds},
        whatever the TLS layer above it says; this peer itself neither
        closes nor answers a TLS close_notify.
        """
        raw = socket.socket(fileno=os.dup(self.sock.fileno()))
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                ready, _, _ = select.select([raw], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    continue
                try:
                    if raw.recv(65536) == b"":
                        return True
                except (ConnectionResetError, BrokenPipeError):
                    return True
            return False
        finally:
            raw.close()

    def open_stream(self, header=HEADER):
        self.send(header)
        assert self.read_until(FEATURES_END), self.received

    def start_tls(self, context=None):
        """
        STARTTLS, the TLS handshake, and the restarted stream up to its
        features.
        """
        self.send(STARTTLS)
        assert self.read_until(PROCEED), self.received
        context = context or client_context()
        self.sock = context.wrap_socket(self.sock)
        self.received = b""
        self.open_stream(STREAM_OPEN)

    def flood(self, prefix, filler, start, total=1024 * 1024, chunk=2048, patience=2.0,
              budget=20.0):
        """
        Send C{prefix}, then C{filler} over and over in chunks, up to
        C{total} bytes, stopping as soon as the gateway answers.  While the
        element that starts at offset C{start} of C{prefix} is still within
        the limit, each chunk waits only briefly for an answer; past it, up
        to C{patience} seconds, so that the gateway has read every chunk
        sent when it answers.

        @return: C{(sent, answered)}: the bytes sent in all, and whether
            the gateway answered (or closed) before C{total} or C{budget}
            seconds.
        """
        deadline = time.monotonic() + budget
        self.send(prefix)
        sent = len(prefix)
        block = (filler * (chunk // len(filler) + 1))[:chunk]
        while sent < total and time.monotonic() < deadline:
            if self.readable(patience if sent - start > LIMIT else 0.005):
                return sent, True
            try:
                self.send(block)
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                return sent, True
            sent += len(block)
        return sent, self.readable(patience)

    def handshake_refused(self, context):
        """
        After <proceed/>, try a TLS handshake with C{context} over memory
        BIOs, so that the socket stays ours after a failure.

        @return: the L{ssl.SSLError} the handshake failed with, or
            L{None} when it succeeded.
        """
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                tls.do_handshake()
                return None
            except ssl.SSLWantReadError:
                pending = outgoing.read()
                if pending:
                    self.send(pending)
                if not self.readable(max(0.0, deadline - time.monotonic())):
                    break
                data = self._recv()
                if not data:
                    incoming.write_eof()
                else:
                    incoming.write(data)
            except ssl.SSLError as e:
                pending = outgoing.read()
                if pending:
                    try:
                        self.send(pending)
                    except OSError:
                        pass
                return e
        raise AssertionError("the TLS handshake neither finished nor failed in time")


def tls_records(data):
    """
    Split raw bytes into TLS records: C{[(content type, payload)]}; raise
    L{ValueError} if they aren't whole records.
    """
    records = []
    while data:
        if len(data) < 5:
            raise ValueError(f"a truncated TLS record header: {data!r}")
        length = int.from_bytes(data[3:5], "big")
        if len(data) < 5 + length:
            raise ValueError(f"a truncated TLS record: {data!r}")
        records.append((data[0], data[5:5 + length]))
        data = data[5 + length:]
    return records


def record_dns_questions(world):
    """
    Record every name the loopback DNS server of C{world} is asked about.
    """
    asked = []
    original = world.dns.authority._lookup

    def lookup(name, cls, type, timeout=None):
        asked.append(name.decode("ascii", "replace").lower())
        return original(name, cls, type, timeout)

    world.dns.authority._lookup = lookup
    return asked


class HostileTestCase(unittest.TestCase):
    """
    Two gateways, a.test (under attack, stanza limit L{LIMIT}) and b.test,
    each with a component, federating; and hostile peers against a.test.
    """

    timeout = 120

    async def start(self, extra="", limit=LIMIT):
        self.world = World(self)
        self.asked = record_dns_questions(self.world)
        self.stream_errors = []

        def observe(event):
            if "closing with stream error" in (event.get("log_format") or ""):
                self.stream_errors.append((event.get("direction"), event.get("condition")))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        self.target = await self.world.gateway(
            "a.test", s2s_extra=f"max_stanza_size = {limit}\n", extra=extra
        )
        self.other = await self.world.gateway("b.test")
        self.alice = await self.world.component(self.target, "a.test")
        self.bob = await self.world.component(self.other, "b.test")
        self.exchanges = 0

    async def federation_works(self, when):
        """
        A message each way between the well-behaved gateways arrives.
        """
        self.exchanges += 1
        tag = f"{when} #{self.exchanges}"
        self.alice.message("alice@a.test", "bob@b.test", f"to bob {tag}", f"ab{self.exchanges}")
        received = await self.bob.next(timeout=20)
        self.assertEqual((received["id"], str(received.body)), (f"ab{self.exchanges}", f"to bob {tag}"))
        self.bob.message("bob@b.test", "alice@a.test", f"to alice {tag}", f"ba{self.exchanges}")
        received = await self.alice.next(timeout=20)
        self.assertEqual((received["id"], str(received.body)), (f"ba{self.exchanges}", f"to alice {tag}"))

    def in_thread(self, function, *args, **kwargs):
        return threads.deferToThread(function, *args, **kwargs)

    async def connect(self):
        peer = await self.in_thread(HostilePeer, self.target.s2s_port)
        self.addCleanup(peer.close)
        return peer

    async def closed_with(self, peer, timeout=10.0):
        """
        Wait for the gateway to close C{peer}'s connection; return the
        stream error it sent, as C{(condition, text)}.
        """
        seconds = await self.in_thread(peer.read_until_closed, timeout)
        self.assertIsNotNone(seconds, f"still open after {timeout}s: {peer.received!r}")
        return Transcript(peer.received).stream_error()

    def stream_of(self, peer):
        """
        The target's inbound stream for C{peer}'s connection.
        """
        port = peer.sock.getsockname()[1]
        (stream,) = [s for s in self.target.federation.streams
                     if s.direction == "inbound" and s.transport.getPeer().port == port]
        return stream

    def hostile_streams(self):
        """
        The target's inbound streams that no well-behaved peer opened.
        """
        return [s for s in self.target.federation.streams
                if s.direction == "inbound" and not s.verified]

    async def attack(self, data, condition, text=None, after_header=True):
        """
        One hostile stream: optionally a good header first (federating
        while it is open), then C{data}; the gateway must answer with
        stream error C{condition} (and C{text}, when given), close the
        connection, and go on federating.
        """
        peer = await self.connect()
        if after_header:
            await self.in_thread(peer.open_stream)
        await self.federation_works("while a hostile peer is connected")
        started = time.monotonic()
        await self.in_thread(peer.send, data)
        answer = await self.closed_with(peer)
        seconds = time.monotonic() - started
        self.assertEqual(answer[0], condition, peer.received)
        if text is not None:
            self.assertEqual(answer[1], text)
        # As a peer does once the gateway has closed its side: the gateway
        # waits for that (RFC 6120 section 4.4), or for CLOSE_GRACE.
        peer.close()
        await wait_for(lambda: not self.hostile_streams())
        await self.federation_works("after the attack")
        return peer, answer, seconds


class RestrictedXMLTests(HostileTestCase):
    """
    RFC 6120 section 11.1: no comments, processing instructions, DTDs or
    entity references other than the predefined ones.
    """

    @coroutine_test
    async def test_internal_dtd_subset(self):
        await self.start()
        await self.attack(
            b"<?xml version='1.0'?><!DOCTYPE stream:stream [<!ELEMENT stream:stream ANY>]>"
            + STREAM_OPEN,
            "restricted-xml",
            "document type declarations are not allowed in XMPP",
            after_header=False,
        )

    @coroutine_test
    async def test_external_dtd(self):
        """
        An external DTD is refused, and never fetched: neither from a file
        nor from a (loopback) web server.
        """
        await self.start()
        fetched = []
        factory = protocol.Factory.forProtocol(protocol.Protocol)
        factory.noisy = False
        factory.buildProtocol = lambda address: fetched.append(address)
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        for system in (b"file:///etc/passwd", f"http://127.0.0.1:{port.getHost().port}/x.dtd".encode()):
            peer, _, _ = await self.attack(
                b"<?xml version='1.0'?><!DOCTYPE stream:stream SYSTEM '" + system + b"'>"
                + STREAM_OPEN,
                "restricted-xml",
                "document type declarations are not allowed in XMPP",
                after_header=False,
            )
            self.assertNotIn(b"root:", peer.received)
        self.assertEqual(fetched, [])

    @coroutine_test
    async def test_billion_laughs(self):
        """
        An entity expansion bomb is refused at the DTD, before any
        expansion: at once, and without the process growing.
        """
        await self.start()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cpu = time.process_time()
        _, _, seconds = await self.attack(
            billion_laughs(),
            "restricted-xml",
            "document type declarations are not allowed in XMPP",
            after_header=False,
        )
        self.assertLess(seconds, 5.0)
        # A billion "lol"s would take gigabytes and many seconds of CPU.
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        self.assertLess(grown, 100 * 1024, f"peak RSS grew by {grown} KiB")
        self.assertLess(time.process_time() - cpu, 20.0)

    @coroutine_test
    async def test_parameter_entity(self):
        """
        An external parameter entity (the XXE variant that needs no entity
        reference in the document) is refused with the DTD.
        """
        await self.start()
        await self.attack(
            b"<?xml version='1.0'?><!DOCTYPE stream:stream "
            b"[<!ENTITY % p SYSTEM 'file:///etc/passwd'> %p;]>" + STREAM_OPEN,
            "restricted-xml",
            after_header=False,
        )

    @coroutine_test
    async def test_comment(self):
        await self.start()
        await self.attack(
            b"<!-- a comment between stanzas -->",
            "restricted-xml",
            "comments are not allowed in XMPP",
        )

    @coroutine_test
    async def test_comment_before_header(self):
        await self.start()
        await self.attack(
            b"<?xml version='1.0'?><!-- before the header -->" + STREAM_OPEN,
            "restricted-xml",
            "comments are not allowed in XMPP",
            after_header=False,
        )

    @coroutine_test
    async def test_processing_instruction_after_declaration(self):
        await self.start()
        await self.attack(
            b"<?xml version='1.0'?><?xml-stylesheet href='x.xsl'?>" + STREAM_OPEN,
            "restricted-xml",
            "processing instructions are not allowed in XMPP",
            after_header=False,
        )

    @coroutine_test
    async def test_processing_instruction_in_stream(self):
        await self.start()
        await self.attack(
            b"<?evil instruction?>",
            "restricted-xml",
            "processing instructions are not allowed in XMPP",
        )

    @coroutine_test
    async def test_undeclared_entity(self):
        """
        An entity reference that no DTD declares, in content and in the
        header, is restricted XML (not a mere parse error).
        """
        await self.start()
        await self.attack(
            b"<message from='x@evil.test' to='y@a.test'><body>&xxe;</body></message>",
            "restricted-xml",
            "entity references are not allowed in XMPP",
        )
        await self.attack(
            STREAM_OPEN.replace(b"from='evil.test'", b"from='&xxe;'"),
            "restricted-xml",
            "entity references are not allowed in XMPP",
            after_header=False,
        )

    @coroutine_test
    async def test_not_well_formed(self):
        await self.start()
        for data in (
            b"<message><</message>",
            b"<message></presence>",
            b"<message a='1' a='2'/>",
            b"<undeclared:prefix/>",
            b"<message>&#0;</message>",
        ):
            await self.attack(data, "not-well-formed")

    @coroutine_test
    async def test_not_utf8(self):
        """
        RFC 6120 section 11.6: a stream in another encoding than UTF-8, or
        bytes that break UTF-8's rules, get unsupported-encoding (a
        response header first when none was sent).  A UTF-16 stream used to
        open, authenticate, and have its stanzas forwarded to components
        as UTF-16 bytes.
        """
        await self.start()
        for data in (
            b"\xff\xfe\x00garbage",
            b"<message from='x@evil.test' to='y@a.test'><body>\xc0\xaf</body></message>",
            b"<message from='x@evil.test' to='y@a.test'><body>\xed\xa0\x80</body></message>",
        ):
            await self.attack(data, "unsupported-encoding")
        for data in (
            HEADER.decode().encode("utf-16"),
            HEADER.decode().encode("utf-16-le"),
            HEADER.replace(b"version='1.0'?>", b"version='1.0' encoding='UTF-16'?>"),
        ):
            peer, answer, _ = await self.attack(data, "unsupported-encoding", after_header=False)
            (header,) = Transcript(peer.received).headers
            self.assertEqual((header["from"], header[(NS_XML, "lang")]), ("", "en"))
            self.assertTrue(header["id"])
        # A UTF-8 byte order mark is U+FEFF, not allowed before the header.
        await self.attack(b"\xef\xbb\xbf" + HEADER, "not-well-formed", after_header=False)


class LimitTests(HostileTestCase):
    """
    The stanza size limit, and the header size limit, enforced while the
    bytes still come in.
    """

    async def flood(self, peer, prefix, filler, start, what, close=False):
        sending = self.in_thread(peer.flood, prefix, filler, start)
        # Federation goes on while the flood is under way.
        await self.federation_works("during a flood")
        sent, answered = await sending
        self.assertTrue(answered, f"the gateway never refused {sent} bytes of {what}")
        # Refused within the limit plus one read: nothing near the megabyte
        # we were ready to send was taken in.
        self.assertLessEqual(sent - start, LIMIT + ONE_READ + 2048, sent)
        condition, text = await self.closed_with(peer)
        self.assertEqual(
            (condition, text),
            ("policy-violation", f"{what} larger than the limit of {LIMIT} bytes"),
        )
        if close:
            # Answer the gateway's TLS close_notify by closing (see
            # LingeringTests for a peer that doesn't).
            peer.close()
        await wait_for(lambda: not self.hostile_streams())
        await self.federation_works("after a flood")

    @coroutine_test
    async def test_oversized_stanza(self):
        await self.start()
        peer = await self.connect()
        await self.in_thread(peer.open_stream)
        stanza = b"<message from='x@evil.test' to='y@a.test'><body>"
        await self.flood(peer, stanza, b"A", 0, "stanza")

    @coroutine_test
    async def test_oversized_stanza_over_tls(self):
        """
        The same over TLS, after the restart: the limit holds for the
        decrypted stream.
        """
        await self.start()
        peer = await self.connect()
        await self.in_thread(peer.open_stream)
        await self.in_thread(peer.start_tls)
        stanza = b"<message from='x@evil.test' to='y@a.test'><body>"
        await self.flood(peer, stanza, b"B", 0, "stanza", close=True)

    @coroutine_test
    async def test_whitespace_between_stanzas(self):
        """
        Whitespace between stanzas is keepalives (RFC 6120 section 4.6.1),
        not part of any stanza: a megabyte of it is taken, and not kept.
        The stream is still in a sane state afterwards.
        """
        await self.start()
        peer = await self.connect()
        await self.in_thread(peer.open_stream)
        for _ in range(16):
            await self.in_thread(peer.send, b" \n\t\r" * 16384)
        self.assertTrue(await self.in_thread(peer.still_open, 0.5))
        stream = self.stream_of(peer)
        # Internals, for want of a better window: what the parser holds.
        self.assertLessEqual(stream._parser.buffered, LIMIT + ONE_READ)
        await self.federation_works("after a megabyte of whitespace")
        await self.in_thread(peer.send, b"<message from='x@evil.test' to='y@a.test'/>")
        condition, text = await self.closed_with(peer)
        self.assertEqual((condition, text), ("not-authorized", "stanzas before authentication"))

    @coroutine_test
    async def test_endless_header(self):
        """
        A stream header with an attribute that never ends.
        """
        await self.start()
        peer = await self.connect()
        prefix = HEADER[:-1] + b" junk='"
        await self.flood(peer, prefix, b"x", 0, "stream header")

    @coroutine_test
    async def test_endless_attribute_in_stanza(self):
        await self.start()
        peer = await self.connect()
        await self.in_thread(peer.open_stream)
        prefix = b"<message from='x@evil.test' to='y@a.test' junk='"
        await self.flood(peer, prefix, b"y", 0, "stanza")

    @coroutine_test
    async def test_deep_nesting(self):
        """
        A stanza nested deeper than the depth limit (64 by default) is
        refused while it is still open, before anything recurses over it.
        """
        await self.start()
        _, (condition, text), _ = await self.attack(
            b"<message from='x@evil.test' to='y@a.test'>" + b"<a>" * 1000,
            "policy-violation",
        )
        self.assertIn("64", text)

    @coroutine_test
    async def test_stanza_within_limit_is_not_refused(self):
        """
        The limit is on size only: a stanza just under it is taken (and,
        before authentication, refused for what it is, not for its size).
        """
        await self.start()
        opening = b"<message from='x@evil.test' to='y@a.test'><body>"
        closing = b"</body></message>"
        stanza = opening + b"C" * (LIMIT - len(opening) - len(closing)) + closing
        self.assertEqual(len(stanza), LIMIT)
        await self.attack(stanza, "not-authorized", "stanzas before authentication")


class ClosingAfterErrorTests(HostileTestCase):
    """
    RFC 6120 section 4.4: after its stream error and closing tag, the
    gateway ends its direction and waits for the peer's, rather than
    closing a socket with unread bytes (which answers with a reset that can
    overtake the error on its way).
    """

    @coroutine_test
    async def test_half_close_after_an_error(self):
        await self.start()
        peer = await self.connect()
        await self.in_thread(peer.open_stream)
        stream = self.stream_of(peer)
        await self.in_thread(peer.send, b"<message>" + b"x" * (LIMIT + 100))
        self.assertTrue(await self.in_thread(peer.read_until, b"</stream:stream>"))
        self.assertEqual(Transcript(peer.received).stream_error()[0], "policy-violation")
        # Our direction is over (end of file after the closing tag)...
        self.assertIsNotNone(await self.in_thread(peer.read_until_closed, 5.0))

        def keep_sending():
            # ...while the peer may still send (what crossed our error):
            # read and dropped, no reset.
            for _ in range(5):
                peer.send(b"<message>more</message>" * 100)
                time.sleep(0.05)

        await self.in_thread(keep_sending)
        self.assertIn(stream, self.target.federation.streams)
        # The peer closes its side: the connection is gone.
        await self.in_thread(peer.sock.shutdown, socket.SHUT_WR)
        await wait_for(lambda: stream not in self.target.federation.streams, timeout=5)
        await self.federation_works("after the close")


class ElementCountTests(HostileTestCase):
    """
    A stanza of more elements than any Twisted or wokkel component reads
    (100,000), under the size limit, is refused while it is parsed, on the
    fast path as on the slow one, with a stream error naming the limit.
    """

    @coroutine_test
    async def test_too_many_elements(self):
        await self.start(limit=600_000)
        opening = b"<message from='x@evil.test' to='y@a.test'>"
        closing = b"</message>"
        # At the limit: parsed whole, then refused for what it is (before
        # authentication).
        await self.attack(
            opening + b"<a/>" * 99_999 + closing,
            "not-authorized",
            "stanzas before authentication",
        )
        await self.attack(
            opening + b"<a/>" * 100_000 + closing,
            "policy-violation",
            "stanza with more than the limit of 100000 elements",
        )


class StartTLSInjectionTests(HostileTestCase):
    """
    CVE-2011-0411 and kin: what follows <starttls/> in the same TCP
    segment must never be acted on.
    """

    @coroutine_test
    async def test_injected_dialback_not_acted_on(self):
        # evil.test may federate in plaintext, so that a db:result taken
        # from before TLS would start a verification (the control below).
        await self.start(extra='[policy.domains."evil.test"]\nrequire_tls = false\n')
        peer = await self.connect()
        await self.in_thread(peer.open_stream)
        features_end = len(peer.received)
        injected = (
            STARTTLS
            + b"<db:result from='evil.test' to='a.test'>injected-key</db:result>"
            + b"<message from='x@evil.test' to='alice@a.test'><body>injected</body></message>"
        )
        await self.in_thread(peer.send, injected)
        self.assertTrue(await self.in_thread(peer.read_until, PROCEED))
        # The gateway answers <proceed/> and nothing else, then waits for TLS.
        self.assertEqual(peer.received[features_end:], PROCEED)
        await self.federation_works("after the injection")
        self.assertTrue(await self.in_thread(peer.still_open, 0.3))
        # Not TLS: the gateway's TLS layer gives up and closes.
        garbage = b"GET / HTTP/1.0\r\n\r\n" + os.urandom(64)
        before_garbage = len(peer.received)
        await self.in_thread(peer.send, garbage)
        seconds = await self.in_thread(peer.read_until_closed, 10.0)
        self.assertIsNotNone(seconds, "the gateway kept a connection that sent garbage for TLS")
        after = peer.received[before_garbage:]
        self.assertNotIn(b"<stream:error", after)
        tls_records(after)  # a TLS alert at most
        await wait_for(lambda: not self.hostile_streams())
        # The injected db:result started no verification, and the injected
        # message went nowhere.
        self.assertEqual([name for name in self.asked if "evil.test" in name], [])
        self.assertEqual(self.stream_errors, [])
        await self.federation_works("after the garbage")
        self.assertTrue(self.alice.received.pending == [])

        # The control: the same db:result, not injected, is acted on (so
        # the absence of a DNS question above means something).
        control = await self.connect()
        await self.in_thread(control.open_stream)
        await self.in_thread(
            control.send, b"<db:result from='evil.test' to='a.test'>key</db:result>"
        )
        await wait_for(lambda: any("evil.test" in name for name in self.asked))
        self.assertTrue(await self.in_thread(control.read_until, b"</db:result>"))
        (result,) = [e for e in Transcript(control.received).elements if e.name == "result"]
        self.assertEqual(result["type"], "error")


class StrangerDialbackTests(HostileTestCase):
    """
    Dialback from a peer the gateway knows nothing about, over TLS.
    """

    async def answers(self, peer, name):
        """
        Wait for the gateway's answer to one dialback request: the
        C{db:name} elements it sent since the last answer.
        """
        def dialback(data):
            transcript = Transcript(data)
            return [e for e in transcript.elements if (e.uri, e.name) == (NS_DIALBACK, name)]

        self.assertTrue(await self.in_thread(peer.read_until_parsed, dialback), peer.received)
        answers = dialback(peer.received)
        self.assertEqual(Transcript(peer.received).stream_errors(), [])
        # Keep the header and features only, for the next answer.
        peer.received = peer.received[: peer.received.index(FEATURES_END) + len(FEATURES_END)]
        return answers

    async def end_politely(self, peer):
        await self.in_thread(peer.send, b"</stream:stream>")
        seconds = await self.in_thread(peer.read_until_closed, 10.0)
        self.assertIsNotNone(seconds)
        transcript = Transcript(peer.received)
        self.assertEqual(transcript.stream_errors(), [])
        self.assertTrue(transcript.ended)

    @coroutine_test
    async def test_db_result_for_domain_not_hosted(self):
        """
        A db:result for a domain the gateway doesn't serve (one nobody
        serves, and one another gateway serves) is answered with a
        db:result error item-not-found, not a stream error; the stream
        stays open and no verification starts.
        """
        await self.start()
        peer = await self.connect()
        await self.in_thread(peer.open_stream)
        await self.in_thread(peer.start_tls)
        for receiving in ("notours.test", "b.test"):
            await self.in_thread(
                peer.send,
                f"<db:result from='evil.test' to='{receiving}'>key</db:result>".encode(),
            )
            (result,) = await self.answers(peer, "result")
            self.assertEqual(
                (result["from"], result["to"], result["type"], error_condition(result)),
                (receiving, "evil.test", "error", "item-not-found"),
            )
            self.assertTrue(await self.in_thread(peer.still_open))
        await self.federation_works("after the stranger's db:result")
        self.assertEqual([name for name in self.asked if "evil.test" in name], [])
        await self.end_politely(peer)

    @coroutine_test
    async def test_db_verify_with_random_key(self):
        """
        A db:verify from an unknown party with a made-up key, for a made-up
        stream id and for the id of a real stream, is answered invalid.
        """
        await self.start()
        await self.federation_works("before")
        (real,) = [s for s in self.target.federation.streams if s.direction == "inbound" and s.verified]
        peer = await self.connect()
        await self.in_thread(peer.open_stream)
        await self.in_thread(peer.start_tls)
        for asking, stream_id in (("evil.test", os.urandom(8).hex()), ("b.test", real.stream_id)):
            key = os.urandom(32).hex()
            await self.in_thread(
                peer.send,
                f"<db:verify from='{asking}' to='a.test' id='{stream_id}'>{key}</db:verify>".encode(),
            )
            (answer,) = await self.answers(peer, "verify")
            self.assertEqual(
                (answer["from"], answer["to"], answer["id"], answer["type"]),
                ("a.test", asking, stream_id, "invalid"),
            )
            self.assertTrue(await self.in_thread(peer.still_open))
        await self.federation_works("after the stranger's db:verify")
        await self.end_politely(peer)


    @coroutine_test
    async def test_random_domains_make_one_record_per_source(self):
        """
        A peer claiming a new made-up domain in every db:result (each
        refused: nothing in DNS answers for it) gets the first refusals of
        the minute recorded one by one (a record and a warning each); the
        rest are counted into one record and one warning for its address,
        and a certificate change elsewhere stays in sight.
        """
        await self.start()
        federation = self.target.federation
        tally = federation.authenticator.refusal_tally
        tally.every = 2.0
        allowance = tally.allowance
        tries = allowance + 30
        federation.warnings.limit = 20
        federation.warnings.add("certificate-change", "c.test", "c.test presented a new certificate")
        peer = await self.connect()
        await self.in_thread(peer.open_stream)
        await self.in_thread(peer.start_tls)
        for n in range(tries):
            await self.in_thread(
                peer.send,
                f"<db:result from='r{n}.invalid' to='a.test'>key</db:result>".encode(),
            )
            (result,) = await self.answers(peer, "result")
            self.assertEqual((result["from"], result["type"]), ("a.test", "error"))
        await self.federation_works("after the made-up domains")
        await self.in_thread(time.sleep, tally.every)
        federation.authenticator.keep_refusal_summaries()
        for _ in range(100):
            records = await self.target.records.recent(limit=None)
            if any(r.peer_domain == "*" for r in records):
                break
            await deferLater(reactor, 0.1)
        one_by_one = [r for r in records if r.peer_domain.endswith(".invalid")]
        (summary,) = [r for r in records if r.peer_domain == "*"]
        self.assertEqual(len(one_by_one), allowance)
        self.assertEqual(
            (summary.method, summary.evidence["source"], summary.evidence["refusals"],
             summary.evidence["distinct_domains"], len(summary.evidence["domains"])),
            ("refused", "127.0.0.1", tries - allowance, tries - allowance, 10),
        )
        warnings = federation.warnings.list()
        self.assertEqual(
            sorted(w.kind for w in warnings),
            ["certificate-change", "repeated-refusals"] + ["verification-failure"] * allowance,
        )
        (repeated,) = [w for w in warnings if w.kind == "repeated-refusals"]
        self.assertEqual(repeated.count, tries - allowance)
        # More refusals than the list holds push out refusals, not the
        # certificate change.
        for n in range(30):
            federation.warnings.add("verification-failure", f"x{n}.test", "refused")
        self.assertIn("certificate-change", [w.kind for w in federation.warnings.list()])
        self.assertEqual(len(federation.warnings.list()), 20)


class HostileTLSTests(HostileTestCase):
    """
    TLS clients the profile refuses, seen from a hostile peer's side: the
    handshake fails with the gateway's alert, and the gateway closes the
    connection itself (the version and CBC cases of C{tests/test_tls.py}
    check the profile; these check the connection's fate).
    """

    async def refused(self, context, alert):
        peer = await self.connect()
        await self.in_thread(peer.open_stream)
        await self.in_thread(peer.send, STARTTLS)
        self.assertTrue(await self.in_thread(peer.read_until, PROCEED))
        await self.federation_works("during a TLS handshake")
        error = await self.in_thread(peer.handshake_refused, context)
        self.assertIsNotNone(error, "the handshake succeeded")
        self.assertEqual(error.reason, alert)
        before = len(peer.received)
        seconds = await self.in_thread(peer.read_until_closed, 10.0)
        self.assertIsNotNone(seconds, "the gateway kept the connection after a failed handshake")
        self.assertNotIn(b"<stream:error", peer.received[before:])
        await wait_for(lambda: not self.hostile_streams())
        await self.federation_works("after a refused handshake")

    @coroutine_test
    async def test_old_versions(self):
        await self.start()
        for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            context = client_context(minimum=version, maximum=version, ciphers="DEFAULT:@SECLEVEL=0")
            await self.refused(context, "TLSV1_ALERT_PROTOCOL_VERSION")

    @coroutine_test
    async def test_non_aead_suites(self):
        """
        TLS 1.2 clients offering only non-AEAD suites: NULL encryption,
        anonymous ECDH, CBC with SHA-384.
        """
        await self.start()
        for ciphers in (
            "ECDHE-ECDSA-NULL-SHA:@SECLEVEL=0",
            "AECDH-AES128-SHA:AECDH-NULL-SHA:@SECLEVEL=0",
            "ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-CAMELLIA256-SHA384",
        ):
            context = client_context(maximum=ssl.TLSVersion.TLSv1_2, ciphers=ciphers)
            await self.refused(context, "SSLV3_ALERT_HANDSHAKE_FAILURE")

    @coroutine_test
    async def test_garbage_client_hello(self):
        """
        After <proceed/>: a handshake record full of noise, a record too
        long to be one, and something that isn't TLS at all.  Each gets at
        most a TLS alert, then the connection is closed.
        """
        await self.start()
        for garbage in (
            b"\x16\x03\x01\x00\x40" + os.urandom(64),
            b"\x16\x03\x01\xff\xff" + b"\x00" * 1024,
            b"<message>not TLS</message>",
        ):
            peer = await self.connect()
            await self.in_thread(peer.open_stream)
            await self.in_thread(peer.send, STARTTLS)
            self.assertTrue(await self.in_thread(peer.read_until, PROCEED))
            await self.federation_works("while a peer is due to start TLS")
            before = len(peer.received)
            await self.in_thread(peer.send, garbage)
            seconds = await self.in_thread(peer.read_until_closed, 10.0)
            self.assertIsNotNone(seconds, f"still open after {garbage!r}")
            records = tls_records(peer.received[before:])
            self.assertEqual({kind for kind, _ in records} - {21}, set(), records)
            await wait_for(lambda: not self.hostile_streams())
        await self.federation_works("after garbage handshakes")
        self.assertEqual(self.stream_errors, [])


class LingeringTests(HostileTestCase):
    """
    A peer that stops cooperating once TLS is involved: the gateway must
    still let go of the connection in bounded time, or every such peer
    holds a connection (and an unauthenticated stream, counted against
    max_unauthenticated and max_connections_per_address) for ever.
    """

    #: How long the gateway may wait for the peer's part of an orderly
    #: close (RFC 6120 section 4.4: "a reasonable amount of time").
    GRACE = 10.0

    @coroutine_test
    async def test_tls_peer_ignoring_close_notify(self):
        """
        After a stream error over TLS, a peer that never answers the
        gateway's close_notify (and never closes) is disconnected anyway.
        """
        await self.start()
        peer = await self.connect()
        await self.in_thread(peer.open_stream)
        await self.in_thread(peer.start_tls)
        await self.in_thread(peer.send, b"<message><</message>")
        condition, _ = await self.closed_with(peer)
        self.assertEqual(condition, "not-well-formed")
        closed = await self.in_thread(peer.tcp_closed_within, self.GRACE)
        self.assertTrue(closed, f"the connection was still open {self.GRACE}s after the stream error")
        await wait_for(lambda: not self.hostile_streams())
        await self.federation_works("after a lingering TLS peer")

    @coroutine_test
    async def test_stalled_tls_handshake(self):
        """
        A peer that gets <proceed/> and then never starts the handshake
        is disconnected when the authentication timeout fires.
        """
        await self.start()
        self.target.federation.authentication_timeout = 1.0
        peer = await self.connect()
        await self.in_thread(peer.open_stream)
        await self.in_thread(peer.send, STARTTLS)
        self.assertTrue(await self.in_thread(peer.read_until, PROCEED))
        closed = await self.in_thread(peer.tcp_closed_within, 1.0 + self.GRACE)
        self.assertTrue(closed, f"the connection was still open {1.0 + self.GRACE}s after <proceed/>")
        await wait_for(lambda: not self.hostile_streams())
        await self.federation_works("after a stalled handshake")


# Unit level: one InboundStream over a StringTransport -----------------------


class AddressingTests(InboundTestCase):
    """
    Malformed and missing addresses after authentication, beyond the
    cases of C{tests/test_inbound.py}: each is a stream error, and nothing
    is routed.
    """

    def authenticated_stream(self):
        self.connect()
        self.negotiate_tls()
        self.authenticate()

    # What decides the stream (RFC 6120 section 4.9.3) is the domain pair:
    # a missing address or domainpart, a recipient not served here, a pair
    # not authenticated.  Anything else wrong costs only the stanza.
    cases = [
        (b"<message from='' to='b@local.example'/>", "improper-addressing"),
        (b"<message from='a@remote.example' to=''/>", "improper-addressing"),
        (b"<presence/>", "improper-addressing"),
        (b"<iq type='get' id='1'/>", "improper-addressing"),
        (b"<message from='a@remote..example' to='b@local.example'/>", "improper-addressing"),
        (b"<message from='a@remote.example' to='b@.local.example'/>", "improper-addressing"),
        (b"<message from='a@remote.example' to='b@local.example@x'/>", "improper-addressing"),
        # Addressed to the peer's own domain, or a domain nobody verified.
        (b"<message from='a@remote.example' to='b@remote.example'/>", "host-unknown"),
        (b"<message from='a@remote.example.evil' to='b@local.example'/>", "invalid-from"),
        # IDNA2008: straße.de is not strasse.de, whatever IDNA2003 said.
        (b"<message from='a@stra\xc3\x9fe.example' to='b@local.example'/>", "invalid-from"),
        # A malformed localpart or resourcepart: one stanza refused.
        (b"<message from='@remote.example' to='b@local.example'/>", "jid-malformed"),
        (b"<message from='a@remote.example/' to='b@local.example'/>", "jid-malformed"),
        (b"<message from='a&lt;b@remote.example' to='b@local.example'/>", "jid-malformed"),
        (b"<message from='a b@remote.example' to='b@local.example'/>", "jid-malformed"),
        (b"<message from='a@remote.example' to='b:c@local.example'/>", "jid-malformed"),
        (b"<message from='a@remote.example/r&#x85;' to='b@local.example'/>", "jid-malformed"),
        (
            b"<message from='" + b"x" * 1024 + b"@remote.example' to='b@local.example'/>",
            "jid-malformed",
        ),
        (b"<message from='a@remote.example' to='b@local.example/" + b"r" * 1024 + b"'/>",
         "jid-malformed"),
        # Well-formed, whatever the script: routed.
        (b"<message from='remote.example.' to='b@local.example'/>", None),
        ("<message from='room@remote.example/\U0001F98A fox' to='b@local.example'/>".encode(), None),
        ("<message from='room@remote.example/Ali \u0639\u0644\u064a' to='b@local.example'/>"
         .encode(), None),
        ("<message from='room@remote.example/e\u0301\u0327' to='b@local.example'/>".encode(), None),
        # Not a jabber:server stanza.
        (b"<message xmlns='jabber:client' from='a@remote.example' to='b@local.example'/>",
         "invalid-namespace"),
        (b"<iq xmlns='jabber:component:accept' from='a@remote.example' to='b@local.example'/>",
         "invalid-namespace"),
        (b"<stream:stream/>", "unsupported-stanza-type"),
    ]

    def test_addressing(self):
        for data, condition in self.cases:
            self.authenticated_stream()
            self.feed(data)
            router = self.federation.router
            if condition is None:
                self.assertFalse(self.transport.disconnecting, data)
                self.assertEqual(len(router.routed), 1, data)
                continue
            if condition == "jid-malformed":
                self.assertFalse(self.transport.disconnecting, data)
                self.assertEqual(router.routed, [], data)
                ((_, sender, recipient, refused_with),) = router.refused
                self.assertEqual(
                    (sender, recipient, refused_with),
                    ("remote.example", "local.example", "jid-malformed"),
                    data,
                )
                # The stream goes on: the next stanza is routed.
                self.feed(b"<message from='a@remote.example' to='b@local.example'/>")
                self.assertEqual(len(router.routed), 1, data)
                self.assertFalse(self.transport.disconnecting, data)
                continue
            self.assertEqual(self.stream_error(), condition, data)
            self.assertEqual(router.routed, [], data)
            self.assertEqual(router.refused, [], data)

    def test_case_and_dot_insensitive_domains(self):
        """
        Domains are compared in canonical form: upper case and a trailing dot
        name the same verified pair, and the stanza goes on with its
        addresses rewritten to that form.
        """
        self.authenticated_stream()
        self.feed(b"<message from='a@REMOTE.example' to='b@Local.Example.'/>")
        self.assertFalse(self.transport.disconnecting)
        ((stanza, sender, recipient),) = self.federation.router.routed
        self.assertEqual((sender, recipient), ("remote.example", "local.example"))
        self.assertEqual(
            (stanza["from"], stanza["to"]), ("a@remote.example", "b@local.example")
        )
        self.assertNotIsInstance(stanza, ShallowStanza)

    def test_canonical_addresses_keep_their_bytes(self):
        """
        A stanza whose addresses are canonical already goes on as the bytes
        it came in, emoji and all.
        """
        self.authenticated_stream()
        data = "<message from='room@remote.example/\U0001F98A' to='b@local.example'><body>\u0639</body></message>"
        self.feed(data.encode())
        ((stanza, _, _),) = self.federation.router.routed
        self.assertIsInstance(stanza, ShallowStanza)
        self.assertEqual(stanza.raw, data.encode())


class OutOfPlaceTests(InboundTestCase):
    """
    Elements a receiving server never takes from a peer, or not now.
    """

    def test_typed_db_result(self):
        """
        A db:result with a type is an answer, not a request: a peer
        sending one to a receiving server is refused.
        """
        self.connect()
        self.negotiate_tls()
        self.feed(b"<db:result from='remote.example' to='local.example' type='valid'/>")
        self.assertEqual(self.stream_error(), "unsupported-stanza-type")
        self.assertEqual(self.federation.authenticated, [])

    def test_db_result_missing_addresses(self):
        for data in (
            b"<db:result to='local.example'>k</db:result>",
            b"<db:result from='remote.example'>k</db:result>",
            b"<db:result from='x@remote.example' to='local.example'>k</db:result>",
            b"<db:result from='remote.example/r' to='local.example'>k</db:result>",
        ):
            self.connect()
            self.negotiate_tls()
            self.feed(data)
            self.assertEqual(self.stream_error(), "improper-addressing", data)
            self.assertEqual(self.federation.authenticated, [], data)

    def test_db_verify_malformed(self):
        for data, condition in (
            (b"<db:verify to='local.example' id='i'>k</db:verify>", "improper-addressing"),
            (b"<db:verify from='remote.example' to='a@local.example' id='i'>k</db:verify>",
             "improper-addressing"),
            (b"<db:verify from='remote.example' to='local.example' id=''>k</db:verify>",
             "invalid-xml"),
        ):
            self.connect()
            self.negotiate_tls()
            self.feed(data)
            self.assertEqual(self.stream_error(), condition, data)

    def test_server_side_elements_from_the_peer(self):
        """
        Features, <proceed/> and SASL success are what a receiving server
        sends, never receives.
        """
        for data in (
            b"<stream:features/>",
            b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
        ):
            self.connect()
            self.negotiate_tls()
            self.feed(data)
            self.assertEqual(self.stream_error(), "policy-violation", data)

    def test_sasl_before_tls(self):
        self.connect()
        self.feed(UNIT_HEADER)
        self.feed(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        self.assertEqual(self.stream_error(), "policy-violation")

    def test_stanza_in_the_header_state(self):
        """
        Whatever comes before a header is no header: a first-level element
        can't even be parsed as one (it is the root).
        """
        self.connect()
        self.feed(b"<message from='a@remote.example' to='b@local.example'/>")
        self.assertEqual(self.stream_error(), "invalid-namespace")

    def test_restricted_xml_in_header_attributes(self):
        """
        An undeclared entity in the header itself is restricted XML; the
        predefined ones are fine.
        """
        self.connect()
        self.feed(UNIT_HEADER.replace(b"from='remote.example'", b"from='&ent;'"))
        self.assertEqual(self.stream_error(), "restricted-xml")
        self.connect()
        self.feed(UNIT_HEADER.replace(b"to='local.example'", b"to='local.example' x='&amp;&lt;&#65;'"))
        self.assertFalse(self.transport.disconnecting)
