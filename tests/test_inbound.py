"""
The inbound s2s state machine, driven byte by byte over a
L{StringTransport}: header checks, STARTTLS, dialback in both roles, and
stanza addressing.
"""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from zope.interface import implementer

from gateway.app.config import DomainPolicy, PolicyConfig
from gateway.s2s.dialback import dialback_key
from gateway.s2s.inbound import InboundState, InboundStream
from gateway.s2s.interfaces import IInboundStreamOwner
from gateway.s2s.stream import step
from gateway.tls.profile import TLSFacts
from gateway.verifiers.chain import ChainResult
from gateway.verifiers.interfaces import Verdict
from gateway.xmpp.errors import DialbackError
from gateway.xmpp.parser import NS_XML, ShallowStanza, StreamParser, expand
from gateway.xmpp.stanzas import NS_SERVER, error_condition

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
    b"xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
    b"from='remote.example' to='local.example' version='1.0'>"
)
SECRET = "s3cr3t"


class TLSStringTransport(StringTransport):
    """
    A L{StringTransport} that records a switch to TLS.
    """

    tls_creator = None

    def startTLS(self, creator):
        self.tls_creator = creator


class FakeTLSProfile:
    def server_creator(self, domain):
        return ("server creator", domain)


class FakeRouter:
    def __init__(self):
        self.routed = []
        self.refused = []
        self.federation = None

    def attach_federation(self, federation):
        self.federation = federation

    def route_from_s2s(self, stanza, sender, recipient):
        self.routed.append((stanza, sender, recipient))

    def refuse_from_s2s(self, stanza, sender_domain, recipient_domain, condition, text):
        self.refused.append((stanza, sender_domain, recipient_domain, condition))


@implementer(IInboundStreamOwner)
class FakeFederation:
    """
    What an L{InboundStream} needs of the federation, with verification
    requests held for the test to answer.
    """

    def __init__(self, policy=PolicyConfig()):
        self.local_domains = frozenset(["local.example", "other.local"])
        self.max_stanza_size = 10000
        self.max_depth = 64
        self.verifications_in_progress = 0
        self.max_verifications = 200
        self.max_verifications_per_stream = 10
        self.clock = Clock()
        self.authentication_timeout = 30
        self.policy = policy
        self.tls_profile = FakeTLSProfile()
        self.dialback_secret = SECRET
        self.router = FakeRouter()
        self.verifications = []
        self.authenticated = []
        self.via = []
        self.refused = []
        self.opened = []
        self.closed = []

    def verify_peer(self, direction, local, peer, stream, dialback_key=None):
        """
        Hold the verification for the test, which answers with a
        L{ChainResult}, or C{True}/C{False} for a dialback verdict, or a
        L{DialbackError} for an unreachable authoritative server.
        """
        d = defer.Deferred()
        self.verifications.append(((peer, local, stream.stream_id, dialback_key), d))

        def decide(answer):
            if isinstance(answer, ChainResult):
                return answer
            if answer:
                verdict = Verdict.verified("dialback", "key confirmed")
                return ChainResult(True, "dialback", verdict, (verdict,))
            verdict = Verdict.failed("dialback", "key invalid", decisive=True)
            return ChainResult(False, None, verdict, (verdict,), "dialback: key invalid")

        def unreachable(failure):
            failure.trap(DialbackError)
            verdict = Verdict.failed(
                "dialback", failure.value.text, condition=failure.value.condition
            )
            return ChainResult(False, None, None, (verdict,), "dialback: unreachable")

        return d.addCallbacks(decide, unreachable)

    def authentication_refused(self, stream, direction, local, peer, result):
        self.refused.append((peer, local, result.reason))

    def stream_opened(self, stream):
        self.opened.append(stream)

    def stream_closed(self, stream):
        self.closed.append(stream)

    def stream_authenticated(self, stream, peer, local, result, via):
        self.authenticated.append((peer, local, result.method))
        self.via.append(via)


class Output:
    """
    Parses what the stream under test wrote.
    """

    def __init__(self, transport):
        self.transport = transport
        self.headers = []
        self.elements = []
        self.ended = False
        self._parser = self._new_parser()
        self._seen = 0

    def _new_parser(self):
        return StreamParser(
            self.headers.append, lambda e: self.elements.append(e), self._end, 100000
        )

    def _end(self):
        self.ended = True

    def read(self):
        data = self.transport.value()
        self._parser.feed(data[self._seen:])
        self._seen = len(data)
        return self

    def restart(self):
        """
        The stream restarted: what follows the last header written so far
        (if any is unread) belongs to a new stream.
        """
        data = self.transport.value()
        at = data.rfind(b"<?xml", self._seen)
        cut = at if at >= 0 else len(data)
        self._parser.feed(data[self._seen:cut])
        self._seen = cut
        self._parser = self._new_parser()
        self.elements = []
        self.read()


class InboundTestCase(unittest.TestCase):
    def connect(self, policy=PolicyConfig()):
        self.federation = FakeFederation(policy)
        self.stream = InboundStream(self.federation)
        self.transport = TLSStringTransport()
        self.stream.makeConnection(self.transport)
        self.output = Output(self.transport)
        return self.stream

    def feed(self, data):
        self.stream.dataReceived(data)
        return self.output.read()

    def stream_error(self):
        self.output.read()
        errors = [e for e in self.output.elements if e.name == "error"]
        self.assertEqual(len(errors), 1, self.transport.value())
        condition = [c.name for c in errors[0].elements() if c.name != "text"]
        self.assertTrue(self.transport.disconnecting)
        return condition[0]

    def negotiate_tls(self):
        """
        Go through STARTTLS and the restarted header, as if TLS came up.
        """
        self.feed(HEADER)
        self.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.assertIn(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", self.transport.value())
        self.assertEqual(self.transport.tls_creator, ("server creator", "local.example"))
        self.output.restart()
        self.stream.tls = TLSFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", ())
        self.feed(HEADER)
        self.assertEqual(self.stream.state, InboundState.OPEN)

    def authenticate(self, originating="remote.example", receiving="local.example"):
        self.feed(
            f"<db:result from='{originating}' to='{receiving}'>somekey</db:result>".encode()
        )
        (args, d), = [v for v in self.federation.verifications if v[0][:2] == (originating, receiving)]
        d.callback(True)
        return args


class IQSemanticsTests(InboundTestCase):
    """
    RFC 6120 section 8.2.3 on stanzas from a peer: IQ requests that break
    it are answered bad-request and not routed; the stream goes on.  The
    same whether the stanza is forwarded as bytes (shallow) or built (here,
    because a child uses a prefix the header declared).
    """

    cases = [
        (b"<iq type='get' id='1' from='a@remote.example' to='b@local.example'/>", "bad-request"),
        (b"<iq type='get' id='1' from='a@remote.example' to='b@local.example'>"
         b"<a xmlns='urn:x'/><b xmlns='urn:x'/></iq>", "bad-request"),
        (b"<iq type='set' from='a@remote.example' to='b@local.example'><a xmlns='urn:x'/></iq>",
         "bad-request"),
        (b"<iq type='GET' id='1' from='a@remote.example' to='b@local.example'>"
         b"<a xmlns='urn:x'/></iq>", "bad-request"),
        (b"<iq id='1' from='a@remote.example' to='b@local.example'><a xmlns='urn:x'/></iq>",
         "bad-request"),
        (b"<iq type='get' id='1' from='a@remote.example' to='b@local.example'>"
         b"<db:x/><db:y/></iq>", "bad-request"),
        # Built whole: its start tag declares a namespace.
        (b"<iq xmlns:p='urn:p' type='get' id='1' from='a@remote.example' to='b@local.example'>"
         b"<p:a/><p:b/></iq>", "bad-request"),
        (b"<iq xmlns:p='urn:p' type='get' id='1' from='a@remote.example' to='b@local.example'>"
         b"<p:a><p:b/></p:a></iq>", None),
        # Routed: a good request, and a result that can't be answered.
        (b"<iq type='get' id='1' from='a@remote.example' to='b@local.example'>"
         b"<a xmlns='urn:x'><deep/><deeper/></a></iq>", None),
        (b"<iq type='get' id='1' from='a@remote.example' to='b@local.example'><db:x/></iq>", None),
        (b"<iq type='result' id='1' from='a@remote.example' to='b@local.example'>"
         b"<a xmlns='urn:x'/><b xmlns='urn:x'/></iq>", None),
    ]

    def test_iq_semantics(self):
        for data, condition in self.cases:
            self.connect()
            self.negotiate_tls()
            self.authenticate()
            self.feed(data)
            router = self.federation.router
            if condition is None:
                self.assertEqual((len(router.routed), router.refused), (1, []), data)
            else:
                self.assertEqual(router.routed, [], data)
                self.assertEqual([r[3] for r in router.refused], [condition], data)
            self.assertFalse(self.transport.disconnecting, data)


class LanguageTests(InboundTestCase):
    """
    RFC 6120 sections 4.7.4 and 8.1.5: a stanza that says no language is
    in the stream's, and is given it (xml:lang) when routed on; one that
    says its own keeps it.
    """

    def routed_on_stream(self, header, data):
        self.connect()
        self.feed(header)
        self.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.output.restart()
        self.stream.tls = TLSFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", ())
        self.feed(header)
        self.authenticate()
        self.feed(data)
        ((stanza, _, _),) = self.federation.router.routed
        return stanza

    def test_stream_language(self):
        german = HEADER.replace(b"version='1.0'>", b"version='1.0' xml:lang='de'>")
        prefixed = german.replace(b"xmlns:db=", b"xmlns:s='jabber:server' xmlns:db=")
        for header, data, raw in (
            (german,
             b"<message from='a@remote.example' to='b@local.example'><body>hallo</body></message>",
             b"<message xml:lang='de' from='a@remote.example' to='b@local.example'>"
             b"<body>hallo</body></message>"),
            (german, b"<presence from='a@remote.example' to='b@local.example'/>",
             b"<presence xml:lang='de' from='a@remote.example' to='b@local.example'/>"),
            (prefixed,
             b"<s:message from='a@remote.example' to='b@local.example'><s:body>x</s:body></s:message>",
             b"<s:message xml:lang='de' from='a@remote.example' to='b@local.example'>"
             b"<s:body>x</s:body></s:message>"),
        ):
            stanza = self.routed_on_stream(header, data)
            self.assertEqual(stanza[(NS_XML, "lang")], "de")
            self.assertEqual(stanza.raw, raw)
            self.assertEqual(expand(stanza)[(NS_XML, "lang")], "de")

    def test_stanza_language_kept(self):
        german = HEADER.replace(b"version='1.0'>", b"version='1.0' xml:lang='de'>")
        data = (b"<message xml:lang='fr' from='a@remote.example' to='b@local.example'>"
                b"<body>salut</body></message>")
        stanza = self.routed_on_stream(german, data)
        self.assertEqual((stanza[(NS_XML, "lang")], stanza.raw), ("fr", data))

    def test_built_stanza(self):
        german = HEADER.replace(b"version='1.0'>", b"version='1.0' xml:lang='de'>")
        stanza = self.routed_on_stream(
            german, b"<message xmlns:x='urn:x' from='a@remote.example' to='b@local.example'>"
                    b"<x:y/></message>",
        )
        self.assertEqual(stanza[(NS_XML, "lang")], "de")

    def test_no_stream_language(self):
        """
        No language on the stream, or the components' own (English): the
        stanza goes on as it came.
        """
        data = b"<message from='a@remote.example' to='b@local.example'/>"
        for header in (HEADER, HEADER.replace(b"version='1.0'>", b"version='1.0' xml:lang='EN'>")):
            stanza = self.routed_on_stream(header, data)
            self.assertEqual(((NS_XML, "lang") in stanza.attributes, stanza.raw), (False, data))


class HeaderTests(InboundTestCase):
    def test_good_header(self):
        """
        A good header gets our header (from our domain, a fresh id) and
        features with STARTTLS required and dialback with errors.
        """
        self.connect()
        self.feed(HEADER)
        (header,) = self.output.headers
        self.assertEqual(header["from"], "local.example")
        self.assertEqual(header["to"], "remote.example")
        self.assertEqual(header["version"], "1.0")
        self.assertTrue(len(header["id"]) >= 16)
        (features,) = self.output.elements
        self.assertEqual(features.name, "features")
        starttls = next(features.elements("urn:ietf:params:xml:ns:xmpp-tls", "starttls"))
        self.assertEqual([c.name for c in starttls.elements()], ["required"])
        dialback = next(features.elements("urn:xmpp:features:dialback", "dialback"))
        self.assertEqual([c.name for c in dialback.elements()], ["errors"])

    def test_ids_differ(self):
        ids = set()
        for _ in range(3):
            self.connect()
            self.feed(HEADER)
            ids.add(self.output.headers[0]["id"])
        self.assertEqual(len(ids), 3)

    cases = [
        (HEADER.replace(b"xmlns='jabber:server'", b"xmlns='jabber:client'"), "invalid-namespace"),
        (HEADER.replace(b"http://etherx.jabber.org/streams", b"urn:wrong"), "invalid-namespace"),
        (HEADER.replace(b" version='1.0'>", b">"), "unsupported-version"),
        (HEADER.replace(b"version='1.0'>", b"version='0.9'>"), "unsupported-version"),
        (HEADER.replace(b"to='local.example'", b"to='elsewhere.example'"), "host-unknown"),
        (HEADER.replace(b" to='local.example'", b""), "host-unknown"),
        (HEADER.replace(b"from='remote.example'", b"from='a@b@c'"), "invalid-from"),
        (b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' <<", "not-well-formed"),
        (HEADER + b"<message><</message>", "not-well-formed"),
        (b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><x/>", "restricted-xml"),
    ]

    def test_bad_headers(self):
        """
        Each bad header gets our header first, then its stream error, and
        the connection is closed.
        """
        for data, condition in self.cases:
            self.connect()
            self.feed(data)
            self.assertTrue(self.transport.value().startswith(b"<?xml version='1.0'?><stream:stream"), data)
            self.assertEqual(self.stream_error(), condition, data)

    def test_response_header(self):
        """
        RFC 6120 sections 4.7 and 4.9.1.3: the response header has an id,
        xml:lang, a from that is ours or empty, and the lower of the peer's
        version and ours (none when the peer gave none).
        """
        for data, version, sender in (
            (HEADER, "1.0", "local.example"),
            (HEADER.replace(b"version='1.0'>", b"version='2.5'>"), "1.0", "local.example"),
            (HEADER.replace(b"version='1.0'>", b"version='0.9'>"), "0.9", "local.example"),
            (HEADER.replace(b" version='1.0'>", b">"), None, "local.example"),
            (HEADER.replace(b"to='local.example'", b"to='elsewhere.example'"), "1.0", ""),
            (b"GET / HTTP/1.1\r\n\r\n", "1.0", ""),
        ):
            self.connect()
            self.feed(data)
            (header,) = self.output.read().headers
            self.assertEqual(
                (header.getAttribute("version"), header["from"], header[(NS_XML, "lang")]),
                (version, sender, "en"),
                data,
            )
            self.assertTrue(header["id"])

    def test_version_above_one(self):
        self.connect()
        self.feed(HEADER.replace(b"version='1.0'>", b"version='1.1'>"))
        self.assertEqual(self.stream.state, InboundState.FEATURES_SENT)


class BeforeTLSTests(InboundTestCase):
    def test_stanza_before_tls(self):
        """
        A stanza before TLS (and so before authentication) is refused with
        not-authorized (RFC 6120 section 4.9.3.12).
        """
        self.connect()
        self.feed(HEADER)
        self.feed(b"<message from='a@remote.example' to='b@local.example'><body>x</body></message>")
        self.assertEqual(self.stream_error(), "not-authorized")
        self.assertEqual(self.federation.router.routed, [])

    def test_dialback_before_tls(self):
        """
        Dialback before TLS is refused with policy-violation when policy
        requires TLS, and no verification is started.
        """
        self.connect()
        self.feed(HEADER)
        self.feed(b"<db:result from='remote.example' to='local.example'>k</db:result>")
        self.assertEqual(self.stream_error(), "policy-violation")
        self.assertEqual(self.federation.verifications, [])

    def test_plaintext_allowed_by_policy(self):
        """
        A domain that policy lets federate without TLS can authenticate in
        plaintext; STARTTLS is then offered but not required.
        """
        policy = PolicyConfig(domains=(("remote.example", DomainPolicy(require_tls=False)),))
        self.connect(policy)
        self.feed(HEADER)
        starttls = next(self.output.elements[0].elements("urn:ietf:params:xml:ns:xmpp-tls", "starttls"))
        self.assertEqual(list(starttls.elements()), [])
        self.authenticate()
        self.assertEqual(self.federation.authenticated, [("remote.example", "local.example", "dialback")])
        # Another domain is still held to the default policy.
        self.feed(b"<db:result from='strict.example' to='local.example'>k</db:result>")
        self.assertEqual(self.stream_error(), "policy-violation")

    def test_plaintext_state_forgotten_after_starttls(self):
        """
        RFC 6120 section 5.4.3.3: a pair verified in plaintext, and a
        verification under way, are discarded when TLS starts; over TLS the
        peer must authenticate again before its stanzas are taken, and in
        time.
        """
        policy = PolicyConfig(domains=(
            ("remote.example", DomainPolicy(require_tls=False)),
            ("other.example", DomainPolicy(require_tls=False)),
        ))
        self.connect(policy)
        self.feed(HEADER)
        self.authenticate()
        self.feed(b"<db:result from='other.example' to='local.example'>k</db:result>")
        ((_, pending),) = [v for v in self.federation.verifications if v[0][0] == "other.example"]
        self.assertEqual(self.federation.verifications_in_progress, 1)
        self.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.assertEqual(self.stream.verified, set())
        self.assertTrue(pending.called)
        self.assertEqual(self.federation.verifications_in_progress, 0)
        self.output.restart()
        self.stream.tls = TLSFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", ())
        self.feed(HEADER)
        self.feed(b"<message from='a@remote.example' to='b@local.example'/>")
        self.assertEqual(self.stream_error(), "not-authorized")
        self.assertEqual(self.federation.router.routed, [])

    def test_authentication_timeout_again_after_starttls(self):
        """
        Authentication starts over with TLS, and its deadline with it.  The
        TLS handshake not done by then, the connection is closed without a
        word (RFC 6120 section 5.4.3.2: what was written would go out only
        after a handshake, on a stream without a header).
        """
        policy = PolicyConfig(domains=(("remote.example", DomainPolicy(require_tls=False)),))
        self.connect(policy)
        self.feed(HEADER)
        self.authenticate()
        self.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        written = len(self.transport.value())
        self.federation.clock.advance(30)
        self.assertTrue(self.stream.closed)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(len(self.transport.value()), written)

    def test_internal_error(self):
        """
        A fault of ours while handling what the peer sent still ends the
        stream with a stream error (internal-server-error), not a bare
        close; the traceback goes to the log.
        """
        self.connect()

        def broken(stream, root):
            raise RuntimeError("a bug")

        self.stream.TRANSITIONS = {
            state: {kind: step(broken, *targets) for kind, (_, targets) in steps.items()}
            for state, steps in type(self.stream).TRANSITIONS.items()
        }
        self.feed(HEADER)
        self.assertEqual(self.stream_error(), "internal-server-error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_unknown_element(self):
        self.connect()
        self.feed(HEADER)
        self.feed(b"<foo xmlns='urn:example'/>")
        self.assertEqual(self.stream_error(), "unsupported-stanza-type")

    def test_starttls_injection(self):
        """
        Bytes after <starttls/> in the same read are never acted on
        (CVE-2011-0411): the injected stanza is not routed and no error is
        sent for it.
        """
        self.connect()
        self.feed(HEADER)
        self.feed(
            b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
            b"<db:result from='remote.example' to='local.example'>k</db:result>"
            b"<message from='a@remote.example' to='b@local.example'/>"
        )
        self.assertEqual(self.stream.state, InboundState.TLS)
        self.assertEqual(self.federation.verifications, [])
        self.assertEqual(self.federation.router.routed, [])
        self.assertFalse(self.transport.disconnecting)
        self.assertTrue(self.transport.value().endswith(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"))

    def test_starttls_twice(self):
        self.connect()
        self.negotiate_tls()
        self.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.assertEqual(self.stream_error(), "policy-violation")

    def test_features_after_tls(self):
        """
        After TLS, the features offer dialback and no STARTTLS.
        """
        self.connect()
        self.negotiate_tls()
        (header,) = self.output.headers[1:]
        self.assertEqual(header["from"], "local.example")
        self.assertNotEqual(header["id"], self.output.headers[0]["id"])
        (features,) = self.output.elements
        self.assertEqual([c.name for c in features.elements()], ["dialback", "sm"])

    def test_authentication_timeout(self):
        """
        A peer not authenticated in time breaks a local policy
        (policy-violation); RFC 6120 section 4.9.3.4 keeps
        connection-timeout for a peer that stopped answering.
        """
        self.connect()
        self.feed(HEADER)
        self.federation.clock.advance(30)
        self.assertEqual(self.stream_error(), "policy-violation")

    def test_authentication_timeout_while_verifying(self):
        """
        When what did not finish in time is our own check of the peer's
        dialback key, the answer is remote-connection-failed.
        """
        self.connect()
        self.negotiate_tls()
        self.feed(b"<db:result from='remote.example' to='local.example'>key</db:result>")
        self.federation.clock.advance(30)
        self.assertEqual(self.stream_error(), "remote-connection-failed")


class ReceivingServerTests(InboundTestCase):
    def setUp(self):
        self.connect()
        self.negotiate_tls()

    def test_db_result_verified(self):
        """
        A db:result is checked with the authoritative server for the stream
        id we gave; a valid answer authenticates the pair.
        """
        self.feed(b"<db:result from='remote.example' to='local.example'> abc </db:result>")
        ((args, d),) = self.federation.verifications
        self.assertEqual(args, ("remote.example", "local.example", self.stream.stream_id, "abc"))
        self.assertEqual(self.stream.stream_id, self.output.headers[-1]["id"])
        d.callback(True)
        result = self.output.read().elements[-1]
        self.assertEqual(
            (result.name, result["from"], result["to"], result["type"]),
            ("result", "local.example", "remote.example", "valid"),
        )
        self.assertEqual(self.stream.verified, {("remote.example", "local.example")})
        self.assertEqual(self.federation.authenticated, [("remote.example", "local.example", "dialback")])

    def test_db_result_invalid(self):
        self.feed(b"<db:result from='remote.example' to='local.example'>abc</db:result>")
        self.federation.verifications[0][1].callback(False)
        self.output.read()
        result = [e for e in self.output.elements if e.name == "result"][0]
        self.assertEqual(result["type"], "invalid")
        self.assertEqual(self.stream_error(), "not-authorized")
        self.assertEqual(self.stream.verified, set())

    def test_db_result_invalid_with_other_pairs(self):
        """
        XEP-0220 section 2.1.2: when other pairs stay verified on the stream,
        an invalid key gets a <forbidden/> dialback error instead of
        "invalid" (after which the stream would have to close), and the
        verified pair goes on.
        """
        self.authenticate()
        self.feed(b"<db:result from='sub.remote.example' to='local.example'>abc</db:result>")
        ((_, d),) = [v for v in self.federation.verifications if v[0][0] == "sub.remote.example"]
        d.callback(False)
        result = self.output.read().elements[-1]
        self.assertEqual((result.name, result["type"]), ("result", "error"))
        self.assertEqual(error_condition(result), "forbidden")
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.stream.verified, {("remote.example", "local.example")})
        self.feed(b"<message from='a@sub.remote.example' to='b@local.example'/>")
        self.assertEqual(self.stream_error(), "invalid-from")

    def test_db_result_unreachable_authority(self):
        """
        When the authoritative server can't be reached, the answer is a
        db:result error with the reason (XEP-0220 errors).
        """
        self.feed(b"<db:result from='remote.example' to='local.example'>abc</db:result>")
        self.federation.verifications[0][1].errback(DialbackError("remote-server-not-found", "x"))
        result = self.output.read().elements[-1]
        self.assertEqual(result["type"], "error")
        self.assertEqual(error_condition(result), "remote-server-not-found")
        self.assertFalse(self.transport.disconnecting)

    def test_db_result_for_unknown_domain(self):
        self.feed(b"<db:result from='remote.example' to='notours.example'>abc</db:result>")
        result = self.output.read().elements[-1]
        self.assertEqual(result["type"], "error")
        self.assertEqual(error_condition(result), "item-not-found")
        self.assertEqual(self.federation.verifications, [])

    def test_db_result_claiming_a_local_domain(self):
        """
        A peer can't claim to be one of our own domains.
        """
        self.feed(b"<db:result from='other.local' to='local.example'>abc</db:result>")
        self.assertEqual(self.stream_error(), "invalid-from")
        self.assertEqual(self.federation.verifications, [])

    def test_db_result_malformed_address(self):
        self.feed(b"<db:result from='a@b@c' to='local.example'>abc</db:result>")
        self.assertEqual(self.stream_error(), "improper-addressing")

    def test_piggybacked_domains(self):
        """
        A second domain pair on the same stream is accepted only once it is
        verified itself.
        """
        self.authenticate()
        stanza = b"<message from='x@second.example' to='y@other.local'/>"
        self.feed(b"<db:result from='second.example' to='other.local'>k2</db:result>")
        self.assertEqual(len(self.federation.verifications), 2)
        self.federation.verifications[1][1].callback(True)
        self.feed(stanza)
        self.assertEqual(
            [(s, r) for _, s, r in self.federation.router.routed], [("second.example", "other.local")]
        )

    def test_stanza_routed(self):
        """
        A stanza is routed as parsed as far as its start tag, with its bytes
        (see gateway.components.routing for how those are forwarded).
        """
        self.authenticate()
        data = b"<message from='a@remote.example/r' to='b@local.example'><body>hi</body></message>"
        self.feed(data)
        ((stanza, sender, recipient),) = self.federation.router.routed
        self.assertEqual((sender, recipient), ("remote.example", "local.example"))
        self.assertIsInstance(stanza, ShallowStanza)
        self.assertEqual((stanza.uri, stanza.name, stanza["id"] if stanza.hasAttribute("id") else None),
                         (NS_SERVER, "message", None))
        self.assertEqual((stanza.raw, stanza.contained), (data, True))
        self.assertEqual(list(stanza.children), [])
        whole = expand(stanza)
        self.assertEqual((whole.uri, str(whole.body), whole.body.uri), (NS_SERVER, "hi", NS_SERVER))
        self.assertEqual(self.stream.stanzas_in, 1)

    stanza_cases = [
        (b"<message to='b@local.example'/>", "improper-addressing"),
        (b"<message from='a@remote.example'/>", "improper-addressing"),
        (b"<message from='a@@remote.example' to='b@local.example'/>", "improper-addressing"),
        (b"<message from='a@remote.example' to='b@elsewhere.example'/>", "host-unknown"),
        (b"<message from='a@unverified.example' to='b@local.example'/>", "invalid-from"),
        # RFC 6120 section 8.1.1.2: a to not validated on this stream.
        (b"<iq type='get' id='1' from='remote.example' to='other.local'/>", "host-unknown"),
    ]

    def test_stanza_addressing(self):
        for data, condition in self.stanza_cases:
            self.connect()
            self.negotiate_tls()
            self.authenticate()
            self.feed(data)
            self.assertEqual(self.stream_error(), condition, data)
            self.assertEqual(self.federation.router.routed, [])

    def test_stanza_before_authentication(self):
        self.feed(b"<message from='a@remote.example' to='b@local.example'/>")
        self.assertEqual(self.stream_error(), "not-authorized")


class AuthoritativeServerTests(InboundTestCase):
    def setUp(self):
        self.connect()
        self.negotiate_tls()

    def verify(self, key, asking="remote.example", local="local.example", stream_id="S1"):
        self.feed(
            f"<db:verify from='{asking}' to='{local}' id='{stream_id}'>{key}</db:verify>".encode()
        )
        return self.output.elements[-1]

    def test_valid_key(self):
        key = dialback_key(SECRET, "remote.example", "local.example", "S1")
        answer = self.verify(key)
        self.assertEqual(
            (answer.name, answer["from"], answer["to"], answer["id"], answer["type"]),
            ("verify", "local.example", "remote.example", "S1", "valid"),
        )

    def test_invalid_keys(self):
        """
        Keys for another stream id, another pair, or made with another
        secret are invalid.
        """
        for key in (
            dialback_key(SECRET, "remote.example", "local.example", "S2"),
            dialback_key(SECRET, "third.example", "local.example", "S1"),
            dialback_key("other secret", "remote.example", "local.example", "S1"),
            "",
        ):
            self.assertEqual(self.verify(key)["type"], "invalid")

    def test_unknown_domain(self):
        answer = self.verify("k", local="notours.example")
        self.assertEqual(answer["type"], "error")
        self.assertEqual(error_condition(answer), "item-not-found")

    def test_missing_id(self):
        self.feed(b"<db:verify from='remote.example' to='local.example'>k</db:verify>")
        self.assertEqual(self.stream_error(), "invalid-xml")


class SASLExternalTests(InboundTestCase):
    """
    XEP-0178 on inbound streams: EXTERNAL is offered only when the
    verifiers verified the certificate for the header's from.
    """

    def verified(self, method="pkix"):
        verdict = Verdict.verified(method, "certificate names remote.example", identity="DNS-ID")
        return ChainResult(True, method, verdict, (verdict,))

    def secure_header(self, answer):
        """
        Negotiate TLS with a peer certificate, then answer the eligibility
        check with C{answer}; return the features sent.
        """
        self.feed(HEADER)
        self.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.output.restart()
        self.stream.tls = TLSFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", (b"certificate",))
        self.feed(HEADER)
        self.assertEqual(self.stream.state, InboundState.CHECKING)
        self.assertEqual(self.output.elements, [])  # no features before the check
        ((args, d),) = self.federation.verifications
        self.assertEqual(args, ("remote.example", "local.example", self.stream.stream_id, None))
        d.callback(answer)
        (features,) = self.output.read().elements
        return features

    def mechanisms(self, features):
        return [
            str(m) for ms in features.elements("urn:ietf:params:xml:ns:xmpp-sasl", "mechanisms")
            for m in ms.elements()
        ]

    def test_offered_when_verified(self):
        self.connect()
        features = self.secure_header(self.verified())
        self.assertEqual(self.mechanisms(features), ["EXTERNAL"])
        self.assertEqual(
            [c.name for c in features.elements()], ["mechanisms", "dialback", "sm"]
        )

    def test_not_offered(self):
        """
        Not offered when the chain refused, verified only by dialback, or
        accepted the peer unauthenticated.
        """
        verdict = Verdict.failed("pkix", "self-signed")
        for answer in (
            ChainResult(False, None, None, (verdict,), "pkix: self-signed"),
            ChainResult(True, "none", None, (verdict,)),
            self.verified("dialback"),
        ):
            self.connect()
            features = self.secure_header(answer)
            self.assertEqual(self.mechanisms(features), [])
            self.feed(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
            failure = self.output.read().elements[-1]
            self.assertEqual((failure.name, [c.name for c in failure.elements()]),
                             ("failure", ["invalid-mechanism"]))
            self.assertEqual(self.stream.verified, set())

    def succeed(self, response):
        self.connect()
        self.secure_header(self.verified())
        self.feed(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
            + response + b"</auth>"
        )

    def test_success_and_restart(self):
        """
        EXTERNAL with an empty authzid succeeds; the stream restarts, the
        new features offer neither SASL nor dialback, and stanzas flow.
        """
        self.succeed(b"=")
        self.assertTrue(self.transport.value().endswith(
            b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"))
        self.assertEqual(self.stream.verified, {("remote.example", "local.example")})
        self.assertEqual(self.federation.authenticated, [("remote.example", "local.example", "pkix")])
        self.assertEqual(self.federation.via, ["SASL EXTERNAL"])
        self.assertEqual(self.stream.state, InboundState.SASL_RESTART)
        self.output.restart()
        self.feed(HEADER)
        (features,) = self.output.elements
        self.assertEqual([c.name for c in features.elements()], ["sm"])
        self.feed(b"<message from='a@remote.example' to='b@local.example'/>")
        self.assertEqual(len(self.federation.router.routed), 1)

    def test_authzid(self):
        import base64

        self.succeed(base64.b64encode(b"remote.example"))
        self.assertEqual(self.stream.verified, {("remote.example", "local.example")})

    def test_authzid_in_another_spelling(self):
        import base64

        self.succeed(base64.b64encode(b"REMOTE.example."))
        self.assertEqual(self.stream.verified, {("remote.example", "local.example")})

    def test_bad_encoding(self):
        """
        A response that is not base64 gets C{incorrect-encoding}; dialback
        is still possible on the stream.
        """
        self.succeed(b"!!notbase64")
        failure = self.output.read().elements[-1]
        self.assertEqual([c.name for c in failure.elements()], ["incorrect-encoding"])
        self.assertEqual(self.stream.verified, set())
        self.assertEqual(self.stream.state, InboundState.OPEN)
        self.assertFalse(self.transport.disconnecting)

    def test_mismatching_authzid(self):
        """
        XEP-0178: an authzid for another domain (or none at all) than the
        certificate verified for gets C{not-authorized}, and the stream is
        closed.
        """
        import base64

        for authzid in (b"other.example", b"user@remote.example", b"a..b"):
            self.succeed(base64.b64encode(authzid))
            failure = self.output.read().elements[-1]
            self.assertEqual([c.name for c in failure.elements()], ["not-authorized"], authzid)
            self.assertEqual(self.stream.verified, set())
            self.assertTrue(self.transport.disconnecting)
            self.assertTrue(self.transport.value().endswith(b"</stream:stream>"))

    def test_retries_capped(self):
        """
        RFC 6120 section 6.4.5: two failed attempts may be retried; the
        third failure closes the stream with C{policy-violation}.
        """
        self.connect()
        self.secure_header(self.verified())
        for attempt in range(3):
            self.feed(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>")
            self.assertEqual(self.transport.disconnecting, attempt == 2)
        self.assertEqual(self.stream_error(), "policy-violation")

    def test_other_mechanism(self):
        self.connect()
        self.secure_header(self.verified())
        self.feed(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>")
        failure = self.output.read().elements[-1]
        self.assertEqual([c.name for c in failure.elements()], ["invalid-mechanism"])

    def test_sasl_twice(self):
        self.succeed(b"=")
        self.output.restart()
        self.feed(HEADER)
        self.feed(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        self.assertEqual(self.stream_error(), "policy-violation")

    def test_input_while_checking(self):
        """
        Nothing may arrive before the features: a db:result while the
        certificate is being checked is a policy violation.
        """
        self.connect()
        self.feed(HEADER)
        self.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.output.restart()
        self.stream.tls = TLSFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", (b"certificate",))
        self.feed(HEADER)
        self.feed(b"<db:result from='remote.example' to='local.example'>k</db:result>")
        self.assertEqual(self.stream_error(), "policy-violation")


class ClosingHandshakeTests(InboundTestCase):
    """
    RFC 6120 section 4.4: after our closing tag, what the peer still sends
    is handled until it closes its side or the grace period ends.
    """

    def closing(self):
        self.connect()
        self.negotiate_tls()
        self.authenticate()
        self.feed(b"<enable xmlns='urn:xmpp:sm:3'/>")
        self.stream.close(linger=True)
        self.assertTrue(self.transport.value().endswith(b"</stream:stream>"))
        self.assertFalse(self.transport.disconnecting)

    def test_stanzas_crossing_our_close_are_routed(self):
        """
        Stanzas the peer sent before it read our closing tag are routed; its
        own closing tag then ends the stream, and nothing is written after
        ours.
        """
        self.closing()
        written = len(self.transport.value())
        self.feed(b"<message from='a@remote.example' to='b@local.example' id='late'/>")
        self.feed(b"<r xmlns='urn:xmpp:sm:3'/>")
        self.assertEqual([s["id"] for s, _, _ in self.federation.router.routed], ["late"])
        self.assertFalse(self.transport.disconnecting)
        self.feed(b"</stream:stream>")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(len(self.transport.value()), written)

    def test_grace_period(self):
        """
        A peer that never closes its side is let go after the grace period.
        """
        self.closing()
        self.federation.clock.advance(self.stream.CLOSE_GRACE)
        self.assertTrue(self.transport.disconnecting)
        self.feed(b"<message from='a@remote.example' to='b@local.example'/>")
        self.assertEqual(self.federation.router.routed, [])

    def test_stream_error_while_closing(self):
        """
        A peer's stream error while we wait ends the stream at once; a bad
        element ends it without writing a stream error after our closing tag.
        """
        self.closing()
        self.feed(b"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>")
        self.assertTrue(self.transport.disconnecting)
        self.closing()
        written = len(self.transport.value())
        self.feed(b"<message from='a@remote.example' to='b@elsewhere.example'/>")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(len(self.transport.value()), written)
