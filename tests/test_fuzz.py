"""
Property-based tests of the inbound s2s stream against random and mutated
input: valid conversations (header, STARTTLS, dialback, SASL, stanzas) cut
at random points, with bytes flipped, garbage inserted and pieces
repeated, fed to an L{InboundStream} over a L{StringTransport} (the
harness of C{tests/test_inbound.py}).

Properties, after every read and at the end of every example:
  - C{dataReceived} never raises;
  - the parser holds at most C{max_stanza_size} plus the last read;
  - the stream is either open, in one of its states, having sent no stream
    error; or closed with exactly one stream error, the last thing before
    its closing tag; or closed because the peer ended the stream or sent
    a stream error.  Never closed silently, never a write after closing,
    and what the gateway wrote is always well-formed XML.

The examples are derandomised (the same every run, so CI is stable); set
C{GATEWAY_FUZZ=explore} to search afresh with many more examples.
"""

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from gateway.s2s.inbound import InboundState, InboundStream
from gateway.tls.profile import TLSFacts
from gateway.verifiers.chain import ChainResult
from gateway.verifiers.interfaces import Verdict
from gateway.xmpp.errors import DialbackError
from gateway.xmpp.parser import StreamParser, XMLStreamError
from gateway.xmpp.stanzas import NS_STREAMS, NS_XMPP_STREAMS
from tests.test_inbound import HEADER, FakeFederation, TLSStringTransport

settings.register_profile(
    "gateway-fuzz-ci",
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "gateway-fuzz-explore",
    max_examples=5000,
    deadline=None,
    database=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile("gateway-fuzz-" + os.environ.get("GATEWAY_FUZZ", "ci"))

STARTTLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
#: The header of a restarted stream (after TLS or SASL).
RESTART = HEADER

#: Pieces of s2s conversations, well-formed and not, to build examples from.
PIECES = [
    HEADER,
    STARTTLS,
    b"<db:result from='remote.example' to='local.example'>k3y</db:result>",
    b"<db:result from='second.example' to='other.local'>k3y</db:result>",
    b"<db:result from='remote.example' to='notours.example'>k3y</db:result>",
    b"<db:result from='remote.example' to='local.example' type='valid'/>",
    b"<db:verify from='remote.example' to='local.example' id='S1'>k3y</db:verify>",
    b"<db:verify from='remote.example' to='local.example'>k3y</db:verify>",
    b"<message from='a@remote.example/r' to='b@local.example' type='chat'><body>hi</body></message>",
    b"<presence from='a@remote.example' to='b@local.example'/>",
    b"<iq type='get' id='q1' from='remote.example' to='local.example'><ping xmlns='urn:xmpp:ping'/></iq>",
    b"<message from='a@@remote.example' to='b@local.example'/>",
    b"<message to='b@local.example'/>",
    b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>",
    b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>cmVtb3RlLmV4YW1wbGU=</auth>",
    b"<stream:features/>",
    b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    b"<foo xmlns='urn:example'/>",
    b"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
    b" \n\t",
    b"</stream:stream>",
    b"<!-- comment -->",
    b"<?pi data?>",
    b"<!DOCTYPE x [<!ENTITY a 'b'>]>",
    b"<message from='a@remote.example' to='b@local.example'>&a;</message>",
    b"<message from='a@remote.example' to='b@local.example'>&amp;&lt;&#x263a;</message>",
    # Near the limit of 10000 bytes, and over it.
    b"<message from='a@remote.example' to='b@local.example'><body>"
    + b"x" * 9900 + b"</body></message>",
    b"<message from='a@remote.example' to='b@local.example'><body>" + b"y" * 10100,
    b"<message from='a@remote.example' to='b@local.example' junk='" + b"z" * 10100,
    # Far over it: bounded only if the limit is enforced while it arrives.
    b"<message from='a@remote.example' to='b@local.example'><body>" + b"w" * 40000,
    # Deeper than the nesting limit, and just within it.
    b"<message>" + b"<a>" * 70 + b"</a>" * 70 + b"</message>",
    b"<message>" + b"<a>" * 60 + b"</a>" * 60 + b"</message>",
    "<message from='ä@remote.example' to='b@local.example'><body>é ☃</body></message>".encode(),
    b"\xff\xfe\x00\x80",
]

DB_RESULT = PIECES[2]
MESSAGE = PIECES[8]
SASL_EXTERNAL = PIECES[13]

#: Valid conversations, in phases: a phase ends where the stream restarts
#: (after STARTTLS, the TLS handshake comes between two phases; after SASL
#: success, the peer's new header starts the next).  Pieces and mutations
#: go into the phases, and a read never spans two.
SCRIPTS = [
    [[HEADER]],
    [[HEADER, STARTTLS], [RESTART]],
    [[HEADER, STARTTLS], [RESTART, DB_RESULT]],
    [[HEADER, STARTTLS], [RESTART, DB_RESULT, MESSAGE]],
    [[HEADER, STARTTLS], [RESTART, SASL_EXTERNAL], [RESTART, MESSAGE]],
]

#: How a pending verification is answered: yes by dialback, not yet, no,
#: the authoritative server unreachable, yes by PKIX (so that SASL
#: EXTERNAL is offered).
ANSWERS = ["valid", "wait", "invalid", "unreachable", "pkix"]


def answer_verification(d, answer):
    if answer == "valid":
        d.callback(True)
    elif answer == "invalid":
        d.callback(False)
    elif answer == "unreachable":
        d.errback(DialbackError("remote-server-not-found", "no such server"))
    elif answer == "pkix":
        verdict = Verdict.verified("pkix", "certificate names the peer", identity="DNS-ID")
        d.callback(ChainResult(True, "pkix", verdict, (verdict,)))


def mutate(draw, data):
    """
    Flip bytes, insert garbage, delete or repeat a stretch of C{data}.
    """
    data = bytearray(data)
    for kind, where, payload in draw(
        st.lists(
            st.tuples(
                st.sampled_from(["flip", "insert", "delete", "repeat"]),
                st.integers(min_value=0, max_value=1 << 20),
                st.binary(min_size=1, max_size=16),
            ),
            max_size=3,
        )
    ):
        at = where % (len(data) + 1)
        if kind == "flip" and at < len(data):
            data[at] ^= payload[0] or 0x20
        elif kind == "insert":
            data[at:at] = payload
        elif kind == "delete":
            del data[at:at + payload[0] % 32 + 1]
        elif kind == "repeat":
            data[at:at] = data[at:at + payload[0] % 200 + 1]
    return bytes(data)


def split(draw, data):
    """
    Cut C{data} into reads at random points.
    """
    cuts = sorted({c % (len(data) + 1) for c in draw(
        st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=8))})
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)]) if b > a]


@st.composite
def conversations(draw):
    """
    A conversation as the reads it arrives in, and how the test plays TLS
    and verification: C{(chunks, with_certificate, answers)}.
    """
    # The deeper a script, the more of the state machine it reaches.
    script = draw(st.integers(min_value=0, max_value=2 * len(SCRIPTS) - 1))
    phases = [list(phase) for phase in SCRIPTS[min(script, len(SCRIPTS) - 1)]]
    piece = st.one_of(
        st.sampled_from(PIECES), st.sampled_from(PIECES), st.sampled_from(PIECES),
        st.binary(max_size=48),
    )
    for extra in draw(st.lists(piece, max_size=6)):
        phase = phases[draw(st.integers(min_value=0, max_value=len(phases) - 1))]
        # Mostly after the header: the rest of the machine is behind it.
        first = 0 if draw(st.integers(min_value=0, max_value=7)) == 0 else min(1, len(phase))
        phase.insert(draw(st.integers(min_value=first, max_value=len(phase))), extra)
    chunks = []
    for phase in phases:
        data = b"".join(phase)
        if draw(st.integers(min_value=0, max_value=3)) == 0:
            data = mutate(draw, data)
        chunks += split(draw, data)
    with_certificate = draw(st.booleans())
    answers = draw(st.lists(st.sampled_from(ANSWERS), min_size=len(chunks), max_size=len(chunks)))
    return chunks, with_certificate, answers


class ObservedStream(InboundStream):
    """
    An L{InboundStream} that notes the legitimate ways of closing without
    a stream error of its own, and every write after closing.
    """

    peer_ended = False
    peer_failed = False

    def _on_stream_end(self):
        if not self.closed:
            self.peer_ended = True
        super()._on_stream_end()

    def stream_error_received(self, element):
        if not self.closed:
            self.peer_failed = True
        super().stream_error_received(element)


class WriteAfterClose(AssertionError):
    pass


class GuardedTransport(TLSStringTransport):
    """
    Refuses writes once the connection is being closed.
    """

    def write(self, data):
        if self.disconnecting:
            raise WriteAfterClose(data)
        super().write(data)


def gateway_streams(output):
    """
    Parse what the gateway wrote: one or more streams (a header starts
    each).  Return C{[(elements, ended)]}, one per stream.
    """
    marker = b"<?xml version='1.0'?>"
    if output and not output.startswith(marker):
        raise AssertionError(f"output before any header: {output!r}")
    streams = []
    for part in output.split(marker)[1:]:
        elements, ended = [], []
        parser = StreamParser(lambda root: None, elements.append, lambda: ended.append(True),
                              10 * 1024 * 1024)
        try:
            parser.feed(marker + part)
        except XMLStreamError as e:
            raise AssertionError(f"the gateway wrote bad XML ({e.text}): {output!r}") from None
        streams.append((elements, bool(ended)))
    return streams


def stream_errors(elements):
    return [e for e in elements if (e.uri, e.name) == (NS_STREAMS, "error")]


def parser_buffer(stream):
    """
    How many bytes the stream's parser holds (its internal buffer).
    """
    return stream._parser.buffered


class FuzzInboundTests(unittest.TestCase):
    def run_conversation(self, chunks, with_certificate, answers):
        federation = FakeFederation()
        stream = ObservedStream(federation)
        transport = GuardedTransport()
        stream.makeConnection(transport)
        last_read = 0
        for chunk, answer in zip(chunks, answers):
            if not stream.closed:
                # A closed stream feeds its parser nothing more.
                last_read = len(chunk)
            # Never raises: WriteAfterClose, or anything else, fails here.
            stream.dataReceived(chunk)
            self.assertLessEqual(
                parser_buffer(stream), federation.max_stanza_size + last_read,
                f"the parser holds {parser_buffer(stream)} bytes",
            )
            if transport.tls_creator is not None and stream.tls is None and not stream.closed:
                # The TLS handshake "completes" between reads.
                chain = (b"certificate",) if with_certificate else ()
                stream.tls = TLSFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", chain)
            for _, d in list(federation.verifications):
                if not d.called:
                    answer_verification(d, answer)
        self.check_outcome(stream, transport)

    def check_outcome(self, stream, transport):
        output = transport.value()
        streams = gateway_streams(output)
        errors = [e for elements, _ in streams for e in stream_errors(elements)]
        self.assertEqual(stream.closed, bool(transport.disconnecting), output)
        if not stream.closed:
            self.assertEqual(errors, [], output)
            # The state agrees with what was negotiated: pairs are verified
            # only while negotiating in plaintext (policy permitting) or once
            # open, never across a TLS restart (RFC 6120 section 5.4.3.3); the
            # states after TLS have TLS.
            if stream.verified:
                self.assertIn(
                    stream.state,
                    {InboundState.FEATURES_SENT, InboundState.OPEN, InboundState.SASL_RESTART,
                     InboundState.SASL_OPEN},
                )
            if stream.state in (InboundState.CHECKING, InboundState.OPEN,
                                InboundState.SASL_RESTART, InboundState.SASL_OPEN):
                self.assertIsNotNone(stream.tls)
            return
        if stream.peer_ended or stream.peer_failed:
            # The peer closed: the gateway may answer with its closing tag
            # (or, after a stream error it received, nothing more).
            self.assertEqual(errors, [], output)
            return
        self.assertEqual(len(errors), 1, f"closed without exactly one stream error: {output!r}")
        elements, ended = streams[-1]
        self.assertIs(elements[-1], errors[0], output)
        self.assertTrue(ended, output)
        conditions = [c.name for c in errors[0].elements()
                      if c.uri == NS_XMPP_STREAMS and c.name != "text"]
        self.assertEqual(len(conditions), 1, output)

    def run_reported(self, chunks, with_certificate, answers):
        """
        L{run_conversation}, naming the input in any failure (trial does
        not show the falsifying example that Hypothesis attaches as a
        note).
        """
        try:
            self.run_conversation(chunks, with_certificate, answers)
        except Exception as e:
            raise AssertionError(
                f"{e!r}\nfor reads {chunks!r}, certificate {with_certificate}, answers {answers}"
            ) from e

    @PROFILE
    @given(conversations())
    def test_mutated_conversations(self, conversation):
        self.run_reported(*conversation)

    @PROFILE
    @given(st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=16))
    def test_random_bytes_after_header(self, chunks):
        self.run_reported([HEADER] + chunks, False, ["valid"] * (len(chunks) + 1))

    @PROFILE
    @given(st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=16))
    def test_random_bytes(self, chunks):
        self.run_reported(chunks, False, ["valid"] * len(chunks))

    def test_known_conversations(self):
        """
        The properties hold for some conversations worth keeping whatever
        the search finds: injection after STARTTLS, a stanza split in
        every place, a peer that ends the stream.
        """
        message = MESSAGE
        self.run_conversation(
            [HEADER, STARTTLS + DB_RESULT + message, RESTART, DB_RESULT, message],
            False, ["valid"] * 5,
        )
        for at in range(len(message) + 1):
            self.run_conversation(
                [HEADER, STARTTLS, RESTART, DB_RESULT, message[:at], message[at:]],
                True, ["valid"] * 6,
            )
        self.run_conversation([HEADER, b"</stream:stream>"], False, ["wait"] * 2)
        flood = [b"<message><body>"] + [b"v" * 1024] * 100
        self.run_conversation([HEADER] + flood, False, ["wait"] * 102)
        self.run_conversation([HEADER[:-1], b" a='"] + [b"u" * 1024] * 100, False, ["wait"] * 102)
