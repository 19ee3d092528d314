"""
Routing between local components and the federation
(L{gateway.components.routing.Router}), and the stanza helpers of L{gateway.xmpp.stanzas} it
is built on: error responses, bounce rules and namespace rewriting.
Addresses themselves are in C{tests/test_jid.py}.
"""

from twisted.trial import unittest

from gateway.components.routing import Router
from gateway.xmpp.parser import StreamParser
from gateway.xmpp.stanzas import (
    NS_COMPONENT,
    NS_SERVER,
    NS_STREAMS,
    NS_XMPP_STANZAS,
    error_condition,
    error_response,
    is_bounceable,
    rewrite_namespace,
)

COMPONENT = "comp.example.org"
OTHER = "other.example.org"
IDLE = "idle.example.org"
REMOTE = "remote.example"

NS_OOB = "jabber:x:oob"
ERROR_TYPES = {"auth", "cancel", "continue", "modify", "wait"}


def parse(xml, namespace):
    """
    Parse C{xml} as a first-level element of a stream whose default
    namespace is C{namespace}, as a stream would deliver it.
    """
    elements = []
    parser = StreamParser(lambda root: None, elements.append, lambda: None, 1 << 20)
    parser.feed(
        f"<stream:stream xmlns='{namespace}' xmlns:stream='{NS_STREAMS}'>".encode()
        + xml.encode("utf-8")
    )
    (element,) = elements
    return element


def on_the_wire(element, namespace):
    """
    What a peer reading a stream whose default namespace is C{namespace}
    receives when C{element} is written on it the way
    L{twisted.words.xish.xmlstream.XmlStream.send} does.
    """
    return parse(element.toXml(), namespace)


def message(sender, recipient, namespace=NS_COMPONENT, kind=None, id="m1"):
    """
    A message with a body and an out-of-band data child, as a stream in
    C{namespace} delivers it.
    """
    attributes = f" id='{id}'" if id else ""
    if sender is not None:
        attributes += f" from='{sender}'"
    if recipient is not None:
        attributes += f" to='{recipient}'"
    if kind is not None:
        attributes += f" type='{kind}'"
    return parse(
        f"<message{attributes}><body>hello</body>"
        f"<x xmlns='{NS_OOB}'><url>http://example.org/</url></x></message>",
        namespace,
    )


def namespaces(element):
    """
    The namespace of C{element} and of each descendant, depth first.
    """
    found = [(element.name, element.uri)]
    for child in element.elements():
        found.extend(namespaces(child))
    return found


def error_child(stanza):
    (error,) = [child for child in stanza.elements() if child.name == "error"]
    return error


class FakeComponentStream:
    """
    What the router needs of a component's XML stream: C{send}.  Each sent
    element is kept along with its serialisation at the time of sending.
    """

    def __init__(self):
        self.sent = []

    def send(self, element):
        # Bytes are a stanza forwarded as received (the fast path).
        xml = element.decode("utf-8") if isinstance(element, bytes) else element.toXml()
        self.sent.append((element, xml))

    @property
    def received(self):
        """
        The elements as the component reads them off its stream.
        """
        return [parse(xml, NS_COMPONENT) for _, xml in self.sent]


class FakeFederation:
    """
    What the router needs of the federation: C{send(stanza, local, remote)}.
    """

    def __init__(self):
        self.sent = []

    def send(self, stanza, local_domain, peer_domain):
        self.sent.append((stanza, local_domain, peer_domain))


class RouterTestsMixin:
    def setUp(self):
        self.router = Router([COMPONENT, OTHER, IDLE])
        self.component = FakeComponentStream()
        self.other = FakeComponentStream()
        self.router.attach_component(COMPONENT, self.component)
        self.router.attach_component(OTHER, self.other)
        self.federation = FakeFederation()
        self.router.federation = self.federation

    def assertNothingSent(self, *where):
        for stream in where:
            self.assertEqual(stream.sent, [])


class RouteFromComponentTests(RouterTestsMixin, unittest.TestCase):
    def test_to_remote(self):
        """
        A stanza from a component for a remote domain goes to the
        federation with (local domain, remote domain), moved into
        C{jabber:server} with its children; children in other namespaces
        keep theirs.
        """
        stanza = message(f"user@{COMPONENT}/res", f"peer@{REMOTE}/phone")
        self.router.route_from_component(stanza, COMPONENT)
        self.assertEqual(self.federation.sent, [(stanza, COMPONENT, REMOTE)])
        self.assertEqual(
            namespaces(stanza),
            [("message", NS_SERVER), ("body", NS_SERVER), ("x", NS_OOB), ("url", NS_OOB)],
        )
        self.assertEqual(stanza.defaultUri, NS_SERVER)
        self.assertEqual(str(stanza.body), "hello")
        self.assertEqual(
            (stanza["from"], stanza["to"], stanza["id"]),
            (f"user@{COMPONENT}/res", f"peer@{REMOTE}/phone", "m1"),
        )
        self.assertNothingSent(self.component, self.other)
        self.assertEqual((self.router.routed, self.router.bounced), (1, 0))

    def test_sender_addresses_accepted(self):
        """
        Any address in the component's domain may send: the bare domain,
        a full JID, and the domain in other letter case (addresses are
        compared in canonical form).
        """
        senders = [
            (COMPONENT, COMPONENT),
            (f"user@{COMPONENT}", f"user@{COMPONENT}"),
            (f"user@{COMPONENT}/r", f"user@{COMPONENT}/r"),
            (f"User@{COMPONENT.upper()}./R", f"User@{COMPONENT}/R"),
        ]
        for sender, _ in senders:
            self.router.route_from_component(message(sender, f"peer@{REMOTE}"), COMPONENT)
        self.assertEqual(
            [(s["from"], local, remote) for s, local, remote in self.federation.sent],
            [(canonical, COMPONENT, REMOTE) for _, canonical in senders],
        )
        self.assertNothingSent(self.component, self.other)

    def test_to_other_local_component(self):
        """
        A stanza from one component for another local domain is delivered
        to that domain's component, in C{jabber:component:accept}, and not
        to the federation.
        """
        stanza = message(f"user@{COMPONENT}", f"room@{OTHER}")
        self.router.route_from_component(stanza, COMPONENT)
        self.assertEqual([element for element, _ in self.other.sent], [stanza])
        self.assertEqual(
            namespaces(stanza),
            [("message", NS_COMPONENT), ("body", NS_COMPONENT), ("x", NS_OOB), ("url", NS_OOB)],
        )
        (received,) = self.other.received
        self.assertEqual((received.uri, received["to"]), (NS_COMPONENT, f"room@{OTHER}"))
        self.assertNothingSent(self.component, self.federation)
        self.assertEqual((self.router.routed, self.router.bounced), (1, 0))

    def test_to_own_domain(self):
        """
        A component may address itself; the stanza comes back to it.
        """
        stanza = message(f"a@{COMPONENT}", f"b@{COMPONENT}")
        self.router.route_from_component(stanza, COMPONENT)
        self.assertEqual([element for element, _ in self.component.sent], [stanza])
        self.assertEqual(stanza.uri, NS_COMPONENT)
        self.assertNothingSent(self.other, self.federation)

    def test_forbidden_sender(self):
        """
        A stanza whose C{from} is outside the component's domain is not
        routed anywhere; the C{forbidden} error (type C{auth}), with the
        original id and payload, goes back on that component's own stream
        (never towards the owner of the forged address).
        """
        senders = [
            f"user@{OTHER}",
            f"user@{REMOTE}",
            OTHER,
            f"user@sub.{COMPONENT}",
            f"{COMPONENT}.evil.example",
        ]
        for sender in senders:
            self.component.sent.clear()
            self.router.route_from_component(message(sender, f"peer@{REMOTE}", id="f1"), COMPONENT)
            (reply,) = self.component.received
            self.assertEqual(reply.name, "message")
            self.assertEqual(reply.uri, NS_COMPONENT)
            self.assertEqual((reply["type"], reply["id"]), ("error", "f1"), sender)
            self.assertEqual(error_condition(reply), "forbidden")
            self.assertEqual(error_child(reply)["type"], "auth")
            self.assertEqual(str(reply.body), "hello")
        self.assertNothingSent(self.other, self.federation)
        self.assertEqual(self.router.routed, 0)

    def test_bad_sender(self):
        """
        A stanza with a missing C{from} gets C{bad-request} back to the
        component's domain, one with a malformed C{from} C{jid-malformed},
        and nothing is routed.
        """
        for sender, condition in (
            (None, "bad-request"),
            ("", "bad-request"),
            ("user@", "jid-malformed"),
            ("a@b@c", "jid-malformed"),
            (f"@{COMPONENT}", "jid-malformed"),
            (f"a b@{COMPONENT}", "jid-malformed"),
            (f"user@{COMPONENT}/", "jid-malformed"),
        ):
            self.component.sent.clear()
            self.router.route_from_component(message(sender, f"peer@{REMOTE}"), COMPONENT)
            (reply,) = self.component.received
            self.assertEqual((reply["type"], reply["to"]), ("error", COMPONENT), repr(sender))
            self.assertEqual(error_condition(reply), condition, repr(sender))
        self.assertNothingSent(self.other, self.federation)
        self.assertEqual(self.router.routed, 0)

    def test_refused_error_not_answered(self):
        """
        An error stanza (or IQ result) from a forbidden sender is dropped:
        not routed and not answered.
        """
        self.router.route_from_component(message(f"u@{REMOTE}", f"p@{REMOTE}", kind="error"), COMPONENT)
        iq = parse(f"<iq type='result' id='i' from='u@{REMOTE}' to='p@{REMOTE}'/>", NS_COMPONENT)
        self.router.route_from_component(iq, COMPONENT)
        self.assertNothingSent(self.component, self.other, self.federation)

    def test_malformed_recipient(self):
        """
        A stanza with a missing or malformed C{to} is not routed; its
        sender gets a C{jid-malformed} error (type C{modify}) on the
        component stream, in C{jabber:component:accept}.
        """
        wrong = []
        for recipient in (None, "", "user@", "a@b@c", "x@exa mple.org", "x@a..b"):
            self.component.sent.clear()
            try:
                self.router.route_from_component(
                    message(f"user@{COMPONENT}/r", recipient, id="j1"), COMPONENT
                )
            except Exception as e:
                wrong.append((recipient, f"raised {e!r}"))
                continue
            replies = self.component.received
            if len(replies) != 1:
                wrong.append((recipient, f"{len(replies)} replies"))
                continue
            (reply,) = replies
            got = (
                reply.uri,
                reply.getAttribute("type"),
                reply.getAttribute("to"),
                reply.getAttribute("id"),
                error_condition(reply),
                error_child(reply).getAttribute("type"),
            )
            expected = (NS_COMPONENT, "error", f"user@{COMPONENT}/r", "j1", "jid-malformed", "modify")
            if got != expected:
                wrong.append((recipient, got))
        self.assertEqual(wrong, [])
        self.assertNothingSent(self.other, self.federation)

    def test_local_domain_without_component(self):
        """
        A stanza from a component for a local domain with no component
        attached is bounced back to it with C{service-unavailable}.
        """
        self.router.route_from_component(message(f"user@{COMPONENT}", f"x@{IDLE}", id="s1"), COMPONENT)
        (reply,) = self.component.received
        self.assertEqual(
            (reply["type"], reply["from"], reply["to"], reply["id"]),
            ("error", f"x@{IDLE}", f"user@{COMPONENT}", "s1"),
        )
        self.assertEqual(error_condition(reply), "service-unavailable")
        self.assertEqual(error_child(reply)["type"], "cancel")
        self.assertNothingSent(self.other, self.federation)


    def test_international_addresses(self):
        """
        Emoji, right-to-left and combining-mark nicknames go out as written;
        domains go out canonical (A-labels, lower case, no final dot), with
        the federation told the canonical peer domain.
        """
        fox = "\U0001F98A"
        cases = [
            (f"room@{COMPONENT}/{fox} fox", f"a@{REMOTE}", f"room@{COMPONENT}/{fox} fox",
             f"a@{REMOTE}", REMOTE),
            (f"room@{COMPONENT}/Ali \u0639\u0644\u064a", f"\u0639@{REMOTE}/\u05e9",
             f"room@{COMPONENT}/Ali \u0639\u0644\u064a", f"\u0639@{REMOTE}/\u05e9", REMOTE),
            (f"room@{COMPONENT}/e\u0301\u0327", "peer@B\u00fccher.Example./r",
             f"room@{COMPONENT}/e\u0301\u0327", "peer@xn--bcher-kva.example/r",
             "xn--bcher-kva.example"),
            (f"u@{COMPONENT}", "u@stra\u00dfe.de", f"u@{COMPONENT}", "u@xn--strae-oqa.de",
             "xn--strae-oqa.de"),
        ]
        for sender, recipient, *_ in cases:
            self.router.route_from_component(message(sender, recipient), COMPONENT)
        self.assertEqual(
            [(s["from"], s["to"], remote) for s, local, remote in self.federation.sent],
            [(sender, recipient, remote) for _, _, sender, recipient, remote in cases],
        )
        self.assertEqual(self.router.bounced, 0)


class RefuseFromS2STests(RouterTestsMixin, unittest.TestCase):
    def test_malformed_sender(self):
        """
        A stanza from an authenticated peer with a malformed localpart or
        resourcepart is answered with C{jid-malformed} (type C{modify}) from
        the local recipient to the peer's domain, through the federation,
        and nothing reaches the component.
        """
        stanza = message(f"a b@{REMOTE}/r", f"user@{COMPONENT}/x", NS_SERVER, id="m9")
        self.router.refuse_from_s2s(stanza, REMOTE, COMPONENT, "jid-malformed", "bad localpart")
        ((reply, local, remote),) = self.federation.sent
        self.assertEqual((local, remote), (COMPONENT, REMOTE))
        self.assertEqual(
            (reply["type"], reply["from"], reply["to"], reply["id"]),
            ("error", f"user@{COMPONENT}/x", REMOTE, "m9"),
        )
        self.assertEqual(error_condition(reply), "jid-malformed")
        self.assertEqual(error_child(reply)["type"], "modify")
        self.assertNothingSent(self.component, self.other)
        self.assertEqual(self.router.bounced, 1)

    def test_malformed_recipient(self):
        """
        A malformed local recipient: the answer comes from the local domain,
        to the sender's full address.
        """
        stanza = message(f"a@{REMOTE}/r", f"us:er@{COMPONENT}", NS_SERVER)
        self.router.refuse_from_s2s(stanza, REMOTE, COMPONENT, "jid-malformed", "bad localpart")
        ((reply, _, _),) = self.federation.sent
        self.assertEqual((reply["from"], reply["to"]), (COMPONENT, f"a@{REMOTE}/r"))

    def test_errors_not_answered(self):
        """
        An error stanza with a malformed address is dropped, not answered.
        """
        stanza = message(f"a b@{REMOTE}", f"user@{COMPONENT}", NS_SERVER, kind="error")
        self.router.refuse_from_s2s(stanza, REMOTE, COMPONENT, "jid-malformed", "bad localpart")
        self.assertNothingSent(self.component, self.other, self.federation)
        self.assertEqual(self.router.bounced, 0)


class RouteFromS2STests(RouterTestsMixin, unittest.TestCase):
    def test_to_local_component(self):
        """
        A stanza from a peer for a local domain is delivered to that
        domain's component in C{jabber:component:accept}, children too.
        """
        stanza = message(f"peer@{REMOTE}", f"user@{COMPONENT}", namespace=NS_SERVER)
        self.router.route_from_s2s(stanza, REMOTE, COMPONENT)
        self.assertEqual([element for element, _ in self.component.sent], [stanza])
        self.assertEqual(
            namespaces(stanza),
            [("message", NS_COMPONENT), ("body", NS_COMPONENT), ("x", NS_OOB), ("url", NS_OOB)],
        )
        self.assertEqual(stanza.defaultUri, NS_COMPONENT)
        (received,) = self.component.received
        self.assertEqual((received.uri, received.body.uri), (NS_COMPONENT, NS_COMPONENT))
        self.assertNothingSent(self.other, self.federation)
        self.assertEqual((self.router.routed, self.router.bounced), (1, 0))

    def test_no_component(self):
        """
        A stanza from a peer for a local domain with no component attached
        is bounced to the peer with C{service-unavailable} (type
        C{cancel}), through the federation from that local domain; the
        counters count the stanza and its bounce as routed, and one
        bounce.
        """
        stanza = message(f"peer@{REMOTE}/r", f"user@{IDLE}", namespace=NS_SERVER, id="n1")
        self.router.route_from_s2s(stanza, REMOTE, IDLE)
        ((reply, local, remote),) = self.federation.sent
        self.assertEqual((local, remote), (IDLE, REMOTE))
        self.assertEqual(
            (reply["type"], reply["from"], reply["to"], reply["id"]),
            ("error", f"user@{IDLE}", f"peer@{REMOTE}/r", "n1"),
        )
        self.assertEqual(error_condition(reply), "service-unavailable")
        self.assertEqual(error_child(reply)["type"], "cancel")
        self.assertEqual(on_the_wire(reply, NS_SERVER).uri, NS_SERVER)
        self.assertNothingSent(self.component, self.other)
        self.assertEqual((self.router.routed, self.router.bounced), (2, 1))

    def test_detached(self):
        """
        Once its component is detached, a domain's stanzas are bounced;
        detaching a stream that is not the attached one changes nothing.
        """
        self.router.detach_component(COMPONENT, FakeComponentStream())
        self.router.route_from_s2s(message(f"p@{REMOTE}", f"u@{COMPONENT}", NS_SERVER), REMOTE, COMPONENT)
        self.assertEqual(len(self.component.sent), 1)
        self.assertEqual(self.federation.sent, [])

        self.router.detach_component(COMPONENT, self.component)
        self.assertNotIn(COMPONENT, self.router.components)
        self.router.route_from_s2s(message(f"p@{REMOTE}", f"u@{COMPONENT}", NS_SERVER), REMOTE, COMPONENT)
        self.assertEqual(len(self.component.sent), 1)
        ((reply, _, _),) = self.federation.sent
        self.assertEqual(error_condition(reply), "service-unavailable")

    def test_error_for_missing_component_not_bounced(self):
        """
        An error stanza for a local domain with no component is dropped,
        not answered.
        """
        stanza = message(f"peer@{REMOTE}", f"user@{IDLE}", namespace=NS_SERVER, kind="error")
        self.router.route_from_s2s(stanza, REMOTE, IDLE)
        self.assertNothingSent(self.component, self.other, self.federation)
        self.assertEqual((self.router.routed, self.router.bounced), (1, 0))


class BounceTests(RouterTestsMixin, unittest.TestCase):
    CONDITIONS = [
        ("remote-server-not-found", "cancel"),
        ("remote-server-timeout", "wait"),
        ("resource-constraint", "wait"),
        ("service-unavailable", "cancel"),
    ]

    def test_bounce(self):
        """
        C{bounce()} answers a stanza with an error: addresses swapped, id
        and payload kept, C{type='error'}, the condition with its RFC 6120
        error type and the text, delivered to the original sender.
        """
        for condition, error_type in self.CONDITIONS:
            self.component.sent.clear()
            stanza = message(f"user@{COMPONENT}/r", f"peer@{REMOTE}/p", namespace=NS_SERVER, id="b1")
            self.router.bounce(stanza, condition, f"because {condition}")
            (reply,) = self.component.received
            self.assertEqual(
                (reply.name, reply["type"], reply["from"], reply["to"], reply["id"]),
                ("message", "error", f"peer@{REMOTE}/p", f"user@{COMPONENT}/r", "b1"),
            )
            self.assertEqual(str(reply.body), "hello")
            self.assertEqual(str(reply.x.url), "http://example.org/")
            self.assertEqual(reply.x.uri, NS_OOB)
            error = error_child(reply)
            self.assertEqual((error_condition(reply), error["type"]), (condition, error_type))
            (text,) = [c for c in error.elements() if c.name == "text"]
            self.assertEqual((text.uri, str(text)), (NS_XMPP_STANZAS, f"because {condition}"))
        self.assertNothingSent(self.other, self.federation)
        self.assertEqual(self.router.bounced, len(self.CONDITIONS))

    def test_bounce_undefined_condition(self):
        """
        A condition RFC 6120 does not define (a peer can hand one over in a
        dialback error, which the federation then bounces queued stanzas
        with) still answers the sender with one error stanza of a valid
        error type; it does not raise.
        """
        wrong = []
        for condition in ("remote-connection-failed", "made-up-condition"):
            self.component.sent.clear()
            stanza = message(f"user@{COMPONENT}", f"peer@{REMOTE}", namespace=NS_SERVER)
            try:
                self.router.bounce(stanza, condition, "the peer said so")
            except Exception as e:
                wrong.append((condition, repr(e)))
                continue
            replies = self.component.received
            if len(replies) != 1:
                wrong.append((condition, f"{len(replies)} replies"))
                continue
            (reply,) = replies
            error_type = error_child(reply).getAttribute("type")
            if reply.getAttribute("type") != "error" or error_type not in ERROR_TYPES:
                wrong.append((condition, reply.getAttribute("type"), error_type))
        self.assertEqual(wrong, [])

    def test_bounce_to_remote(self):
        """
        A bounce for a remote sender goes through the federation from the
        local domain the stanza was addressed to.
        """
        stanza = message(f"peer@{REMOTE}", f"user@{OTHER}", namespace=NS_SERVER)
        self.router.bounce(stanza, "remote-server-timeout")
        ((reply, local, remote),) = self.federation.sent
        self.assertEqual((local, remote), (OTHER, REMOTE))
        self.assertEqual((reply["to"], error_condition(reply)), (f"peer@{REMOTE}", "remote-server-timeout"))
        self.assertNothingSent(self.component, self.other)

    STANZA_TYPES = [
        ("message", None),
        ("message", "normal"),
        ("message", "chat"),
        ("message", "groupchat"),
        ("message", "headline"),
        ("message", "error"),
        ("presence", None),
        ("presence", "unavailable"),
        ("presence", "subscribe"),
        ("presence", "subscribed"),
        ("presence", "unsubscribe"),
        ("presence", "unsubscribed"),
        ("presence", "probe"),
        ("presence", "error"),
        ("iq", "get"),
        ("iq", "set"),
        ("iq", "result"),
        ("iq", "error"),
    ]

    @staticmethod
    def bounceable(name, kind):
        return kind != "error" and (name, kind) != ("iq", "result")

    def stanza(self, name, kind):
        type_attribute = f" type='{kind}'" if kind else ""
        return parse(
            f"<{name} from='u@{COMPONENT}' to='p@{REMOTE}' id='t'{type_attribute}/>", NS_SERVER
        )

    def test_is_bounceable(self):
        """
        Every stanza may be answered with an error except errors and IQ
        results.
        """
        self.assertEqual(
            [(n, k, is_bounceable(self.stanza(n, k))) for n, k in self.STANZA_TYPES],
            [(n, k, self.bounceable(n, k)) for n, k in self.STANZA_TYPES],
        )

    def test_never_bounced(self):
        """
        C{bounce()} sends an error for exactly the bounceable stanzas, and
        counts only those.
        """
        answered = []
        for name, kind in self.STANZA_TYPES:
            before = len(self.component.sent)
            self.router.bounce(self.stanza(name, kind), "remote-server-not-found")
            if len(self.component.sent) != before:
                answered.append((name, kind))
        expected = [(n, k) for n, k in self.STANZA_TYPES if self.bounceable(n, k)]
        self.assertEqual(answered, expected)
        self.assertEqual(self.router.bounced, len(expected))
        self.assertNothingSent(self.other, self.federation)
        self.assertEqual(
            [reply.getAttribute("type") for reply in self.component.received], ["error"] * len(expected)
        )


class StanzaHelperTests(unittest.TestCase):
    # RFC 6120 section 8.3.3: the error type each condition SHOULD have.
    ERROR_TYPES = [
        ("bad-request", {"modify"}),
        ("conflict", {"cancel"}),
        ("forbidden", {"auth"}),
        ("gone", {"cancel"}),
        ("internal-server-error", {"cancel"}),
        ("item-not-found", {"cancel"}),
        ("jid-malformed", {"modify"}),
        ("not-acceptable", {"modify"}),
        ("not-allowed", {"cancel"}),
        ("not-authorized", {"auth"}),
        ("policy-violation", {"modify", "wait"}),
        ("recipient-unavailable", {"wait"}),
        ("remote-server-not-found", {"cancel"}),
        ("remote-server-timeout", {"wait"}),
        ("resource-constraint", {"wait"}),
        ("service-unavailable", {"cancel"}),
        ("undefined-condition", ERROR_TYPES),
    ]

    def test_error_response(self):
        """
        C{error_response} swaps the addresses, keeps the id and payload,
        sets C{type='error'}, and adds an C{<error/>} with the condition and
        the error type RFC 6120 gives it; the result can be serialised.
        """
        wrong = []
        for condition, types in self.ERROR_TYPES:
            stanza = message("a@one.example/r", "b@two.example", namespace=NS_SERVER, id="e1")
            try:
                reply = on_the_wire(error_response(stanza, condition, "why"), NS_SERVER)
            except Exception as e:
                wrong.append((condition, repr(e)))
                continue
            error = error_child(reply)
            got = (
                reply["type"], reply["from"], reply["to"], reply["id"], str(reply.body),
                error_condition(reply), error.getAttribute("type") in types,
            )
            expected = ("error", "b@two.example", "a@one.example/r", "e1", "hello", condition, True)
            if got != expected:
                wrong.append((condition, got, error.getAttribute("type")))
        self.assertEqual(wrong, [])

    def test_large_payload_not_echoed(self):
        """
        A payload over MAX_ECHOED_PAYLOAD is left out of the error reply (a
        400 KB stanza is answered with a small error); a small one is kept.
        """
        from gateway.xmpp.stanzas import MAX_ECHOED_PAYLOAD

        big = parse(
            f"<iq type='set' id='b' from='a@{REMOTE}' to='{COMPONENT}'>"
            + "<a/>" * (MAX_ECHOED_PAYLOAD // 4) + "</iq>",
            NS_SERVER,
        )
        reply = error_response(big, "service-unavailable")
        self.assertEqual([c.name for c in reply.elements()], ["error"])
        self.assertLess(len(reply.toXml()), 1024)
        self.assertEqual(len(list(big.elements())), MAX_ECHOED_PAYLOAD // 4)
        small = message(f"a@{REMOTE}", f"b@{COMPONENT}", namespace=NS_SERVER)
        reply = error_response(small, "service-unavailable")
        self.assertEqual([c.name for c in reply.elements()], ["body", "x", "error"])

    def test_error_response_without_text(self):
        """
        Without a text, the error has just the condition.
        """
        stanza = message("a@one.example", "b@two.example", namespace=NS_SERVER)
        error = error_child(error_response(stanza, "item-not-found"))
        self.assertEqual([(c.uri, c.name) for c in error.elements()], [(NS_XMPP_STANZAS, "item-not-found")])

    def test_error_condition(self):
        """
        C{error_condition} finds the defined condition of a stanza's
        C{<error/>}, skipping C{<text/>} and application conditions, and is
        L{None} without one.
        """
        cases = [
            (
                "<message type='error'><error type='cancel'>"
                f"<text xmlns='{NS_XMPP_STANZAS}'>t</text>"
                "<app xmlns='urn:example:app'/>"
                f"<item-not-found xmlns='{NS_XMPP_STANZAS}'/></error></message>",
                "item-not-found",
            ),
            ("<message type='error'><error type='cancel'/></message>", None),
            ("<message><body>no error</body></message>", None),
            (
                "<message type='error'><error type='cancel'><gone xmlns='urn:example:app'/></error></message>",
                None,
            ),
        ]
        self.assertEqual(
            [error_condition(parse(xml, NS_SERVER)) for xml, _ in cases],
            [condition for _, condition in cases],
        )


class RewriteNamespaceTests(unittest.TestCase):
    def test_rewrite(self):
        """
        C{rewrite_namespace} moves the element and every descendant in the
        old namespace to the new one, in place, and leaves other namespaces
        alone; it returns the element.
        """
        stanza = parse(
            "<message><body>hi</body>"
            f"<x xmlns='{NS_OOB}'><url>u</url></x>"
            "<thread>t<sub>deep</sub></thread></message>",
            NS_COMPONENT,
        )
        self.assertIs(rewrite_namespace(stanza, NS_COMPONENT, NS_SERVER), stanza)
        self.assertEqual(
            namespaces(stanza),
            [
                ("message", NS_SERVER),
                ("body", NS_SERVER),
                ("x", NS_OOB),
                ("url", NS_OOB),
                ("thread", NS_SERVER),
                ("sub", NS_SERVER),
            ],
        )
        self.assertEqual((stanza.defaultUri, stanza.x.defaultUri), (NS_SERVER, NS_OOB))
        self.assertEqual(
            stanza.toXml(),
            "<message xmlns='jabber:server'><body>hi</body>"
            f"<x xmlns='{NS_OOB}'><url>u</url></x>"
            "<thread>t<sub>deep</sub></thread></message>",
        )

    def test_round_trip(self):
        """
        Rewriting there and back restores the original serialisation.
        """
        xml = "<iq type='get' id='1'><query xmlns='jabber:iq:version'/><extra/></iq>"
        stanza = parse(xml, NS_COMPONENT)
        before = stanza.toXml()
        rewrite_namespace(stanza, NS_COMPONENT, NS_SERVER)
        self.assertNotEqual(stanza.toXml(), before)
        rewrite_namespace(stanza, NS_SERVER, NS_COMPONENT)
        self.assertEqual(stanza.toXml(), before)

    def test_other_namespace_untouched(self):
        """
        A stanza in neither namespace is not changed.
        """
        stanza = parse("<message><body>x</body></message>", "jabber:client")
        rewrite_namespace(stanza, NS_COMPONENT, NS_SERVER)
        self.assertEqual(namespaces(stanza), [("message", "jabber:client"), ("body", "jabber:client")])
