"""
The outbound s2s state machine over a L{StringTransport}, and the
federation's connection logic over a L{MemoryReactorClock} with an
in-memory resolver.
"""

from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.words.xish import domish
from zope.interface import implementer

from gateway.app.config import PolicyConfig, parse_config
from gateway.app.state import GatewayState
from gateway.records.memory import MemoryRecordStore
from gateway.s2s.connector import VerifyRequest
from gateway.s2s.dialback import dialback_key
from gateway.s2s.federation import Federation
from gateway.s2s.flow import Backpressure
from gateway.s2s.interfaces import IOutboundStreamOwner
from gateway.s2s.metrics import GatewayMetrics
from gateway.s2s.outbound import NegotiationFailure, OutboundState, OutboundStream, Purpose
from gateway.testing import FakeDNSClient
from gateway.tls.profile import TLSFacts
from gateway.verifiers.chain import ChainResult
from gateway.verifiers.interfaces import Verdict
from tests.test_inbound import Output, TLSStringTransport

SECRET = "outbound secret"
PEER_HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
    b"xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
    b"from='remote.example' to='local.example' id='{id}' version='1.0'>"
)
FEATURES_TLS = (
    b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>"
    b"</starttls></stream:features>"
)
FEATURES_DIALBACK = (
    b"<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"
    b"</stream:features>"
)


def peer_header(stream_id):
    return PEER_HEADER.replace(b"{id}", stream_id.encode())


class FakeTLSProfile:
    def client_creator(self, local, peer):
        return ("client creator", local, peer)


@implementer(IOutboundStreamOwner)
class FakeStreamFederation:
    def __init__(self):
        self.max_stanza_size = 10000
        self.max_depth = 64
        from twisted.internet.task import Clock

        self.clock = Clock()
        self.dialback_secret = SECRET
        self.tls_profile = FakeTLSProfile()
        self.connect_timeout = 10.0
        self.stalled_timeout = 60.0
        self.opened, self.closed, self.authenticated = [], [], []
        self.verifications, self.refused = [], []
        verdict = Verdict.verified("pkix", "certificate verified", identity="DNS-ID")
        self.peer_result = ChainResult(True, "pkix", verdict, (verdict,))
        self.policy = PolicyConfig()
        self.router = FakeRouter()
        self.resent = []

    def resend(self, unacked, local_domain, peer_domain):
        self.resent.append((list(unacked), local_domain, peer_domain))

    def stream_opened(self, stream):
        self.opened.append(stream)

    def stream_closed(self, stream):
        self.closed.append(stream)

    def stream_closing(self, stream):
        self.closing = stream

    def stream_authenticated(self, stream, peer, local, result, via):
        self.authenticated.append((peer, local, via))

    def verify_peer(self, direction, local, peer, stream, dialback_key=None):
        """
        The chain's answer is C{self.peer_verdict}, or held when L{None}.
        """
        d = defer.Deferred()
        self.verifications.append(((direction, local, peer), d))
        if self.peer_result is not None:
            d.callback(self.peer_result)
        return d

    def authentication_refused(self, stream, direction, local, peer, result):
        self.refused.append((direction, peer, result.reason))


class OutboundStreamTests(unittest.TestCase):
    def connect(self, **kwargs):
        self.federation = FakeStreamFederation()
        self.stream = OutboundStream(self.federation, "local.example", "remote.example", **kwargs)
        self.transport = TLSStringTransport()
        self.stream.makeConnection(self.transport)
        self.output = Output(self.transport)
        self.outcomes = []
        self.stream.ready.addBoth(self.outcomes.append)
        return self.stream

    def feed(self, data):
        self.stream.dataReceived(data)
        return self.output.read()

    def through_tls(self, features=FEATURES_TLS, stream_id="second"):
        self.feed(peer_header("first") + features)
        self.assertEqual(self.output.elements[-1].name, "starttls")
        self.feed(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.assertEqual(
            self.transport.tls_creator, ("client creator", "local.example", "remote.example")
        )
        self.output.restart()
        self.stream.tls = TLSFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", ())
        self.stream.tls_established()
        self.feed(peer_header(stream_id) + FEATURES_DIALBACK)

    def stream_error(self):
        self.output.read()
        (error,) = [e for e in self.output.elements if e.name == "error"]
        self.assertTrue(self.transport.disconnecting)
        return [c.name for c in error.elements() if c.name != "text"][0]

    def test_header(self):
        self.connect()
        (header,) = self.output.read().headers
        self.assertEqual((header["from"], header["to"], header["version"]),
                         ("local.example", "remote.example", "1.0"))

    def test_starttls_even_when_not_offered(self):
        """
        RFC 7590 section 3.1: STARTTLS is attempted even when the features
        don't offer it.
        """
        self.connect()
        self.feed(peer_header("s1") + b"<stream:features/>")
        self.assertEqual(self.output.elements[-1].name, "starttls")
        self.assertEqual(self.stream.state, OutboundState.PROCEED)

    def test_dialback_key_after_tls(self):
        """
        After TLS the stream restarts, and the db:result carries the
        XEP-0185 key for the id of the restarted stream.
        """
        self.connect()
        self.through_tls(stream_id="restarted-id")
        (header,) = self.output.headers[1:]
        self.assertEqual(header["to"], "remote.example")
        result = self.output.elements[-1]
        self.assertEqual((result.name, result["from"], result["to"]),
                         ("result", "local.example", "remote.example"))
        self.assertEqual(
            str(result), dialback_key(SECRET, "remote.example", "local.example", "restarted-id")
        )

    def test_authenticated(self):
        self.connect()
        self.through_tls()
        self.feed(b"<db:result from='remote.example' to='local.example' type='valid'/>")
        self.assertEqual(self.outcomes, [self.stream])
        self.assertEqual(self.stream.state, OutboundState.AUTHENTICATED)
        self.assertEqual(self.federation.authenticated,
                         [("remote.example", "local.example", "dialback")])
        stanza = domish.Element(("jabber:component:accept", "message"))
        stanza["to"] = "x@remote.example"
        stanza.addElement("body", content="hi")
        self.stream.send_stanza(stanza)
        message = self.output.read().elements[-1]
        self.assertEqual((message.uri, message.name, str(message.body)),
                         ("jabber:server", "message", "hi"))

    def test_silent_peer(self):
        """
        A peer that says nothing for the connect timeout while it owes an
        answer fails the attempt (so that the next target is tried); while
        it checks our dialback key, silence is allowed.
        """
        self.connect()
        self.federation.clock.advance(9)
        self.feed(peer_header("first"))
        self.federation.clock.advance(9)
        self.assertFalse(self.transport.disconnecting)
        self.federation.clock.advance(1)
        self.assertEqual(self.stream_error(), "connection-timeout")
        (failure,) = self.outcomes
        self.assertIn("nothing from the peer for 10s", failure.value.text)

        self.connect()
        self.through_tls()
        self.assertEqual(self.stream.state, OutboundState.DIALBACK)
        self.federation.clock.advance(60)
        self.assertFalse(self.transport.disconnecting)
        self.feed(b"<db:result from='remote.example' to='local.example' type='valid'/>")
        self.assertEqual(self.outcomes, [self.stream])
        self.federation.clock.advance(60)
        self.assertFalse(self.transport.disconnecting)

    def test_peer_version(self):
        """
        RFC 6120 section 4.7.5: the version's numbers are integers read
        separately, leading zeros ignored; below 1.0 or not a version at
        all is unsupported-version.
        """
        for version, condition in (("00.9", "unsupported-version"), ("abc", "unsupported-version"),
                                   ("-1.0", "unsupported-version"), ("1", "unsupported-version"),
                                   ("01.00", None), ("1.1", None), ("2.0", None)):
            self.connect()
            self.feed(peer_header("first").replace(b"version='1.0'>", f"version='{version}'>".encode()))
            if condition is None:
                self.assertFalse(self.transport.disconnecting, version)
            else:
                self.assertEqual(self.stream_error(), condition, version)

    def test_closing_tag_after_peer_error(self):
        """
        RFC 6120 section 4.9.1.1: the side that receives a stream error
        closes the stream too.
        """
        self.connect()
        self.feed(peer_header("first") + b"<stream:error><conflict "
                  b"xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>")
        self.assertTrue(self.transport.value().endswith(b"</stream:stream>"))
        self.assertTrue(self.transport.disconnecting)

    def test_silent_during_tls_handshake(self):
        """
        An attempt whose TLS handshake stalls fails without a word: RFC
        6120 section 5.4.3.2; and a stream error written then would go out
        only after the handshake, on a new stream with no header, were it
        to complete.  Completing it afterwards sends nothing either.
        """
        self.connect()
        self.feed(peer_header("first") + FEATURES_TLS)
        self.feed(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        written = len(self.transport.value())
        self.federation.clock.advance(10)
        self.assertTrue(self.transport.disconnecting)
        (failure,) = self.outcomes
        self.assertIn("nothing from the peer for 10s", failure.value.text)
        self.stream.handshakeCompleted()
        self.assertEqual(len(self.transport.value()), written)

    def test_dialback_answer_in_another_spelling(self):
        """
        The dialback answer may name the domains in any spelling of them.
        """
        self.connect()
        self.through_tls()
        self.feed(b"<db:result from='REMOTE.example.' to='Local.Example' type='valid'/>")
        self.assertEqual(self.outcomes, [self.stream])

    def test_error_replies_on_our_stream(self):
        """
        An error stanza the peer sends back on our stream, from its domain to
        ours, is routed (ejabberd answers that way); the stream goes on.
        """
        routed = []
        self.connect()
        self.federation.router = type(
            "Router", (), {"route_from_s2s": lambda self, *args: routed.append(args)}
        )()
        self.through_tls()
        self.feed(b"<db:result from='remote.example' to='local.example' type='valid'/>")
        self.feed(
            b"<message type='error' id='m1' from='u@Remote.Example' to='a@local.example/\xf0\x9f\xa6\x8a'>"
            b"<error type='modify'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            b"</error></message>"
        )
        ((stanza, sender, recipient),) = routed
        self.assertEqual(
            (stanza["id"], stanza["from"], stanza["to"], sender, recipient),
            ("m1", "u@remote.example", "a@local.example/\U0001F98A", "remote.example",
             "local.example"),
        )
        self.assertFalse(self.transport.disconnecting)

    def test_other_stanzas_on_our_stream_refused(self):
        """
        Anything but an error from the peer's domain to ours is refused.
        """
        for data, condition in [
            (b"<message from='u@remote.example' to='a@local.example'/>", "policy-violation"),
            (b"<message type='error' from='u@evil.example' to='a@local.example'/>", "invalid-from"),
            (b"<message type='error' from='u@remote.example' to='a@other.example'/>",
             "invalid-from"),
            (b"<message type='error' from='u@remote..example' to='a@local.example'/>",
             "improper-addressing"),
        ]:
            self.connect()
            self.through_tls()
            self.feed(b"<db:result from='remote.example' to='local.example' type='valid'/>")
            self.feed(data)
            self.assertEqual(self.stream_error(), condition, data)

    def test_key_refused(self):
        """
        XEP-0220 section 2.1.1: after C{type='invalid'} what waited is
        returned with C{internal-server-error}, and no other address of the
        peer is tried (its domain has answered).
        """
        self.connect()
        self.through_tls()
        self.feed(b"<db:result from='remote.example' to='local.example' type='invalid'/>")
        (failure,) = self.outcomes
        failure.trap(NegotiationFailure)
        self.assertEqual(
            (failure.value.condition, failure.value.final), ("internal-server-error", True)
        )
        self.assertTrue(self.transport.disconnecting)

    def test_dialback_error(self):
        """
        XEP-0220 section 2.1.1: after a dialback error, whatever its
        condition, what waited is returned with C{remote-server-timeout}.
        """
        for condition in (b"item-not-found", b"remote-connection-failed", b"forbidden"):
            self.connect()
            self.through_tls()
            self.feed(
                b"<db:result from='remote.example' to='local.example' type='error'>"
                b"<error type='cancel'><" + condition + b" "
                b"xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>"
            )
            (failure,) = self.outcomes
            self.assertEqual(
                (failure.value.condition, failure.value.final), ("remote-server-timeout", True)
            )
            self.assertIn(condition.decode(), failure.value.text)

    def test_answer_for_another_pair(self):
        self.connect()
        self.through_tls()
        self.feed(b"<db:result from='evil.example' to='local.example' type='valid'/>")
        self.assertEqual(self.stream_error(), "invalid-from")
        self.assertEqual(self.federation.authenticated, [])

    def test_tls_refused(self):
        self.connect()
        self.feed(peer_header("s1") + b"<stream:features/>")
        self.feed(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        (failure,) = self.outcomes
        self.assertTrue(failure.value.tls_refused)

    def test_stream_error_instead_of_proceed(self):
        self.connect()
        self.feed(peer_header("s1") + b"<stream:features/>")
        self.feed(
            b"<stream:error><unsupported-stanza-type "
            b"xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
        )
        (failure,) = self.outcomes
        self.assertTrue(failure.value.tls_refused)

    def test_plaintext_when_not_attempting_tls(self):
        """
        With attempt_tls off (policy allowed plaintext after a refusal),
        dialback goes ahead without STARTTLS.
        """
        self.connect(attempt_tls=False)
        self.feed(peer_header("plain") + b"<stream:features/>")
        self.assertEqual(self.output.elements[-1].name, "result")

    def test_proceed_injection(self):
        """
        Bytes after <proceed/> in the same read are not acted on: a forged
        "valid" answer does not authenticate the stream.
        """
        self.connect()
        self.feed(peer_header("s1") + FEATURES_TLS)
        self.feed(
            b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
            b"<db:result from='remote.example' to='local.example' type='valid'/>"
        )
        self.assertEqual(self.stream.state, OutboundState.TLS)
        self.assertEqual(self.outcomes, [])

    def test_bad_headers(self):
        for header, condition in [
            # No id: refused once the stream goes on without one.
            (peer_header("x").replace(b" id='x'", b"") + FEATURES_TLS, "invalid-xml"),
            (peer_header("x").replace(b"version='1.0'>", b"version='0.9'>"), "unsupported-version"),
            (peer_header("x").replace(b"xmlns='jabber:server'", b"xmlns='jabber:client'"),
             "invalid-namespace"),
        ]:
            self.connect()
            self.feed(header)
            self.assertEqual(self.stream_error(), condition, header)
            self.assertIsInstance(self.outcomes[0].value, NegotiationFailure)

    def test_refusal_without_id_is_heard(self):
        """
        A server refusing us may send a header without an id before its
        stream error: the failure names that error, not the missing id.
        """
        self.connect()
        self.feed(
            peer_header("x").replace(b" id='x'", b"")
            + b"<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            b"</stream:error>"
        )
        (failure,) = self.outcomes
        self.assertIn("stream error host-unknown", failure.value.text)

    def test_verify(self):
        """
        A verification stream sends db:verify with the id and key given,
        and reports the answer.
        """
        self.connect(purpose=Purpose.VERIFY, verify_request=VerifyRequest("their-id", "abcd"))
        self.through_tls()
        verify = self.output.elements[-1]
        self.assertEqual(
            (verify.name, verify["from"], verify["to"], verify["id"], str(verify)),
            ("verify", "local.example", "remote.example", "their-id", "abcd"),
        )
        self.feed(b"<db:verify from='remote.example' to='local.example' id='their-id' type='valid'/>")
        self.assertEqual(self.outcomes, [True])
        self.assertTrue(self.transport.disconnecting)

    def test_verify_wrong_id(self):
        self.connect(purpose=Purpose.VERIFY, verify_request=VerifyRequest("their-id", "abcd"))
        self.through_tls()
        self.feed(b"<db:verify from='remote.example' to='local.example' id='other' type='valid'/>")
        self.assertEqual(self.stream_error(), "invalid-xml")
        self.assertIsInstance(self.outcomes[0].value, NegotiationFailure)

    def test_connection_lost_before_authentication(self):
        self.connect()
        self.feed(peer_header("s1") + FEATURES_TLS)
        self.stream.connectionLost(Failure(ConnectionRefusedError()))
        (failure,) = self.outcomes
        self.assertEqual(failure.value.condition, "remote-server-not-found")
        self.assertEqual(self.federation.closed, [self.stream])


FEATURES_EXTERNAL = (
    b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    b"<mechanism>EXTERNAL</mechanism></mechanisms>"
    b"<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>"
)


class OutboundVerificationTests(OutboundStreamTests):
    """
    The peer is verified by the chain before we authenticate, and we use
    SASL EXTERNAL when offered, dialback otherwise or after it fails.
    """

    def through_tls_to(self, features):
        self.feed(peer_header("first") + FEATURES_TLS)
        self.feed(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.output.restart()
        self.stream.tls = TLSFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", (b"cert",))
        self.stream.tls_established()
        self.feed(peer_header("second") + features)

    def sm_stream(self):
        self.connect()
        self.through_tls_to(
            b"<stream:features><dialback xmlns='urn:xmpp:features:dialback'/>"
            b"<sm xmlns='urn:xmpp:sm:3'/></stream:features>"
        )
        self.feed(b"<db:result from='remote.example' to='local.example' type='valid'/>")
        self.feed(b"<enabled xmlns='urn:xmpp:sm:3'/>")

    def message(self, n, size=100):
        stanza = domish.Element(("jabber:server", "message"))
        stanza["to"] = "x@remote.example"
        stanza["id"] = f"m{n}"
        stanza.addElement("body", content="x" * size)
        return stanza

    def test_unacked_kept_as_bytes(self):
        """
        What the peer has yet to acknowledge is kept as the bytes sent, and
        counted; acknowledgements release them.
        """
        self.sm_stream()
        for n in range(3):
            self.stream.send_stanza(self.message(n))
        self.assertEqual([type(data) for data, _ in self.stream.unacked], [bytes] * 3)
        self.assertEqual(self.stream.unacked_bytes, sum(len(d) for d, _ in self.stream.unacked))
        self.assertIn(self.stream.unacked[0][0], self.transport.value())
        self.feed(b"<a xmlns='urn:xmpp:sm:3' h='2'/>")
        self.assertEqual(len(self.stream.unacked), 1)
        self.assertEqual(self.stream.unacked_bytes, len(self.stream.unacked[0][0]))

    def test_acknowledgement_overdue(self):
        """
        A peer asked to acknowledge that says nothing for the stall timeout
        is closed with connection-timeout; one that acknowledges some gets
        the timeout again.
        """
        self.sm_stream()
        self.stream.send_stanza(self.message(1))
        self.federation.clock.advance(0)  # the request goes out
        self.assertTrue(self.transport.value().endswith(b"<r xmlns='urn:xmpp:sm:3'/>"))
        self.federation.clock.advance(50)
        self.stream.send_stanza(self.message(2))
        self.feed(b"<a xmlns='urn:xmpp:sm:3' h='1'/>")
        self.federation.clock.advance(50)
        self.assertFalse(self.transport.disconnecting)
        self.federation.clock.advance(10)
        self.assertEqual(self.stream_error(), "connection-timeout")

    def test_handled_count_too_high(self):
        """
        XEP-0198 section 4: an acknowledgement of more stanzas than were sent
        closes the stream with undefined-condition and the
        handled-count-too-high detail, saying both counts.
        """
        self.connect()
        self.through_tls_to(
            b"<stream:features><dialback xmlns='urn:xmpp:features:dialback'/>"
            b"<sm xmlns='urn:xmpp:sm:3'/></stream:features>"
        )
        self.feed(b"<db:result from='remote.example' to='local.example' type='valid'/>")
        stanza = domish.Element(("jabber:server", "message"))
        stanza["to"] = "x@remote.example"
        self.stream.send_stanza(stanza)
        self.feed(b"<enabled xmlns='urn:xmpp:sm:3'/><a xmlns='urn:xmpp:sm:3' h='5'/>")
        self.output.read()
        (error,) = [e for e in self.output.elements if e.name == "error"]
        conditions = {(c.uri, c.name): c for c in error.elements()}
        self.assertIn(("urn:ietf:params:xml:ns:xmpp-streams", "undefined-condition"), conditions)
        detail = conditions[("urn:xmpp:sm:3", "handled-count-too-high")]
        self.assertEqual((detail["h"], detail["send-count"]), ("5", "1"))
        self.assertTrue(self.transport.disconnecting)

    def test_peer_refused(self):
        """
        A peer the chain refuses gets a policy-violation, no key and no
        auth; the failure says why and is recorded.
        """
        self.connect()
        verdict = Verdict.failed("pkix", "self-signed certificate")
        self.federation.peer_result = ChainResult(False, None, None, (verdict,), "pkix: self-signed certificate")
        self.through_tls_to(FEATURES_EXTERNAL)
        self.assertEqual(self.federation.verifications[0][0], ("outbound", "local.example", "remote.example"))
        self.assertEqual(self.stream_error(), "policy-violation")
        self.assertNotIn(b"<auth", self.transport.value())
        self.assertNotIn(b"db:result", self.transport.value())
        (failure,) = self.outcomes
        self.assertIn("pkix: self-signed certificate", failure.value.text)
        self.assertEqual(self.federation.refused, [("outbound", "remote.example", "pkix: self-signed certificate")])

    def test_waits_for_the_chain(self):
        self.connect()
        self.federation.peer_result = None
        self.through_tls_to(FEATURES_EXTERNAL)
        self.assertEqual(self.stream.state, OutboundState.VERIFYING)
        self.assertNotIn(b"<auth", self.transport.value())
        self.federation.verifications[0][1].callback(
            ChainResult(True, "pkix", Verdict.verified("pkix", "ok"), ())
        )
        self.assertIn(b"mechanism='EXTERNAL'>bG9jYWwuZXhhbXBsZQ==</auth>", self.transport.value())

    def test_external(self):
        """
        EXTERNAL is used when offered, with our domain as the authzid
        (XEP-0178, RFC 6120 section 6.4.2: base64 of local.example); on
        success the stream restarts and is authenticated once the new
        features arrive.
        """
        self.connect()
        self.through_tls_to(FEATURES_EXTERNAL)
        self.assertTrue(self.transport.value().endswith(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
            b"bG9jYWwuZXhhbXBsZQ==</auth>"))
        self.assertEqual(self.stream.state, OutboundState.SASL)
        self.stream.dataReceived(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
        self.assertEqual(self.stream.state, OutboundState.SASL_RESTART)
        self.output.restart()
        self.assertEqual(self.output.headers[-1]["to"], "remote.example")  # new header sent
        self.assertEqual(self.outcomes, [])
        self.feed(peer_header("third") + b"<stream:features/>")
        self.assertEqual(self.outcomes, [self.stream])
        self.assertEqual(self.federation.authenticated,
                         [("remote.example", "local.example", "SASL EXTERNAL")])
        self.assertEqual(self.output.elements, [])  # no dialback key was sent

    def test_external_refused_then_dialback(self):
        self.connect()
        self.through_tls_to(FEATURES_EXTERNAL)
        self.feed(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>")
        result = self.output.read().elements[-1]
        self.assertEqual(result.name, "result")
        self.assertEqual(str(result), dialback_key(SECRET, "remote.example", "local.example", "second"))
        self.feed(b"<db:result from='remote.example' to='local.example' type='valid'/>")
        self.assertEqual(self.federation.authenticated,
                         [("remote.example", "local.example", "dialback")])

    def test_success_injection(self):
        """
        Bytes after <success/> in the same read belong to the old stream
        and are not acted on.
        """
        self.connect()
        self.through_tls_to(FEATURES_EXTERNAL)
        self.stream.dataReceived(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/><stream:features/>")
        self.assertEqual(self.outcomes, [])
        self.assertEqual(self.stream.state, OutboundState.SASL_RESTART)


class FakeRouter:
    def __init__(self):
        self.bounces = []
        self.federation = None

    def attach_federation(self, federation):
        self.federation = federation

    def bounce(self, stanza, condition, text=None):
        self.bounces.append((stanza["id"], condition))


class FederationConnectionTests(unittest.TestCase):
    """
    Where and how the federation connects, with a memory reactor.
    """

    def setUp(self):
        config = parse_config(
            '[domains."local.example"]\n[timeouts]\nconnect = 5\nauthentication = 20\n'
            "[s2s]\nqueue_limit = 3\n",
            "test.toml",
            "/nonexistent",
        )
        self.reactor = MemoryReactorClock()
        self.resolver = FakeDNSClient()
        self.router = FakeRouter()
        state = GatewayState("/nonexistent", SECRET, ())
        self.federation = Federation(
            config, state, FakeTLSProfile(), self.resolver, self.router, self.reactor,
            records=MemoryRecordStore(),
            backpressure=Backpressure(), metrics=GatewayMetrics(),
        )

    def stanza(self, stanza_id):
        message = domish.Element(("jabber:server", "message"))
        message["from"] = "a@local.example"
        message["to"] = "b@remote.example"
        message["id"] = stanza_id
        return message

    def connection_attempts(self):
        return [(host, port) for host, port, *_ in self.reactor.tcpClients]

    def refuse(self, index):
        _, _, factory, _, _ = self.reactor.tcpClients[index]
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))

    def test_srv_targets_in_order(self):
        """
        SRV targets are tried in priority order, each address in turn; when
        all refuse, the queue bounces with remote-server-not-found.
        """
        self.resolver.add("_xmpp-server._tcp.remote.example", "SRV", "20 0 5270 b.remote.example.")
        self.resolver.add("_xmpp-server._tcp.remote.example", "SRV", "10 0 5269 a.remote.example.")
        self.resolver.add("a.remote.example", "A", "127.0.0.10")
        self.resolver.add("b.remote.example", "A", "127.0.0.11")
        self.resolver.add("b.remote.example", "AAAA", "::1")
        self.federation.send(self.stanza("m1"), "local.example", "remote.example")
        self.assertEqual(self.connection_attempts(), [("127.0.0.10", 5269)])
        self.refuse(0)
        self.assertEqual(self.connection_attempts()[1:], [("::1", 5270)])
        self.refuse(1)
        self.assertEqual(self.connection_attempts()[2:], [("127.0.0.11", 5270)])
        self.assertEqual(self.router.bounces, [])
        self.refuse(2)
        self.assertEqual(self.router.bounces, [("m1", "remote-server-not-found")])

    def test_verify_failures_relayed_as_remote_server_not_found(self):
        """
        XEP-0220 section 2.4: whatever stops us asking the authoritative
        server (here, no connection) fails the verification with
        remote-server-not-found, which the receiving side relays.
        """
        from gateway.xmpp.errors import DialbackError

        self.resolver.add("remote.example", "A", "127.0.0.12")
        d = self.federation.verify_dialback_key("remote.example", "local.example", "id1", "key")
        self.refuse(0)
        failure = self.failureResultOf(d, DialbackError)
        self.assertEqual(failure.value.condition, "remote-server-not-found")
        d = self.federation.verify_dialback_key("remote.example", "local.example", "id2", "key")
        self.reactor.advance(20)
        failure = self.failureResultOf(d, DialbackError)
        self.assertEqual(failure.value.condition, "remote-server-not-found")

    def test_private_addresses_not_connected(self):
        """
        With the default address policy, a peer whose DNS points at
        loopback or private addresses (anyone's DNS can) is not connected
        to: nothing is attempted, and the bounce says why.  The same holds
        for the dialback callback a db:result would trigger.
        """
        from gateway.names.srv import AddressPolicy
        from gateway.xmpp.errors import DialbackError

        self.resolver.address_policy = AddressPolicy()
        self.resolver.add("_xmpp-server._tcp.remote.example", "SRV", "0 0 5269 in.remote.example.")
        self.resolver.add("in.remote.example", "A", "127.0.0.10")
        self.resolver.add("in.remote.example", "A", "10.0.0.10")
        self.federation.send(self.stanza("m1"), "local.example", "remote.example")
        self.assertEqual(self.connection_attempts(), [])
        self.assertEqual(self.router.bounces, [("m1", "remote-server-not-found")])
        d = self.federation.verify_dialback_key("remote.example", "local.example", "id1", "key")
        failure = self.failureResultOf(d, DialbackError)
        self.assertIn("not a public address", failure.value.text)
        self.assertEqual(self.connection_attempts(), [])

    def test_fallback_to_domain(self):
        self.resolver.add("remote.example", "A", "127.0.0.12")
        self.federation.send(self.stanza("m1"), "local.example", "remote.example")
        self.assertEqual(self.connection_attempts(), [("127.0.0.12", 5269)])
        self.assertEqual(self.reactor.tcpClients[0][3], 5)  # the connect timeout

    def test_srv_dot_means_no_service(self):
        self.resolver.add("_xmpp-server._tcp.remote.example", "SRV", "0 0 0 .")
        self.federation.send(self.stanza("m1"), "local.example", "remote.example")
        self.assertEqual(self.connection_attempts(), [])
        self.assertEqual(self.router.bounces, [("m1", "remote-server-not-found")])

    def test_one_connection_per_pair(self):
        self.resolver.add("remote.example", "A", "127.0.0.12")
        for n in range(3):
            self.federation.send(self.stanza(f"m{n}"), "local.example", "remote.example")
        self.assertEqual(len(self.connection_attempts()), 1)
        self.assertEqual(self.federation.queued("local.example", "remote.example"), 3)

    def test_queue_overflow(self):
        self.resolver.add("remote.example", "A", "127.0.0.12")
        for n in range(5):
            self.federation.send(self.stanza(f"m{n}"), "local.example", "remote.example")
        self.assertEqual(
            self.router.bounces, [("m3", "resource-constraint"), ("m4", "resource-constraint")]
        )

    def test_authentication_timeout(self):
        """
        A stream that isn't authenticated within the configured time is
        given up: the queue bounces with remote-server-timeout.
        """
        self.resolver.add("remote.example", "A", "127.0.0.12")
        self.federation.send(self.stanza("m1"), "local.example", "remote.example")
        self.reactor.advance(19)
        self.assertEqual(self.router.bounces, [])
        self.reactor.advance(1)
        self.assertEqual(self.router.bounces, [("m1", "remote-server-timeout")])
        # A new stanza starts a new attempt.
        self.federation.send(self.stanza("m2"), "local.example", "remote.example")
        self.assertEqual(len(self.connection_attempts()), 2)

    def test_verification_unreachable(self):
        """
        A dialback verification whose authoritative server can't be reached
        fails with DialbackError(remote-server-not-found).
        """
        from gateway.xmpp.errors import DialbackError

        self.resolver.add("remote.example", "A", "127.0.0.12")
        d = self.federation.verify_dialback_key("remote.example", "local.example", "id1", "key")
        self.refuse(0)
        failure = self.failureResultOf(d, DialbackError)
        self.assertEqual(failure.value.condition, "remote-server-not-found")
