"""
The routing fast path: stanzas from s2s peers are parsed whole but built
only as far as their start tag, and forwarded to components as the bytes
received when that means the same as building, rewriting and serialising
them.  Every case here is checked against the slow path: what the
component reads must be the same element either way.
"""

from twisted.trial import unittest

from gateway.components.routing import Router
from gateway.s2s.inbound import InboundStream
from gateway.xmpp.parser import ShallowStanza, StreamParser, expand
from gateway.xmpp.stanzas import NS_COMPONENT, NS_SERVER, rewrite_namespace
from tests.test_routing import FakeComponentStream, FakeFederation, parse

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
    b"xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
    b"from='remote.example' to='local.example' version='1.0'>"
)
A = "from='a@remote.example/r' to='b@local.example'"

# (name, stanza, whether its bytes can be forwarded as they are)
CASES = [
    ("plain message", f"<message {A} type='chat' id='1'><body>hi</body></message>", True),
    ("empty presence", f"<presence {A}/>", True),
    ("iq with a payload", f"<iq {A} type='get' id='q'><query xmlns='jabber:iq:version'/></iq>", True),
    ("default namespace declared inside", f"<message {A}><x xmlns='jabber:x:oob'><url>u</url></x></message>", True),
    ("prefix declared inside", f"<message {A}><p:x xmlns:p='urn:p' p:a='1'><p:y/></p:x></message>", True),
    ("xml:lang", f"<message {A} xml:lang='de'><body xml:lang='fr'>salut</body></message>", True),
    ("no namespace inside", f"<message {A}><x xmlns=''><y/></x></message>", True),
    ("entities and references", f"<message {A} id='&lt;&amp;&apos;'><body>&lt;&#233;&#x41;&gt;&quot;</body></message>", True),
    ("CDATA section", f"<message {A}><body><![CDATA[<not> & markup]]></body></message>", True),
    ("unicode", f"<message {A}><body>h\u00e9llo \U0001f600 \u65e5\u672c</body></message>", True),
    ("deep", f"<message {A}>" + "<a>" * 20 + "x" + "</a>" * 20 + "</message>", True),
    ("double quotes and spaces", '<message  from="a@remote.example" to="b@local.example" ><body >x</body ></message >', True),
    ("prefix from the stream header", f"<message {A}><db:x/></message>", False),
    ("attribute with a header prefix inside", f"<message {A}><x db:a='1'/></message>", False),
    ("attribute with a header prefix on the stanza", f"<message {A} db:a='1'><body>x</body></message>", False),
    ("stream default redeclared inside", f"<message {A}><x xmlns='jabber:server'><body>x</body></x></message>", False),
    ("stream default bound to a prefix inside", f"<message {A}><s:body xmlns:s='jabber:server'>x</s:body></message>", False),
    ("stanza declares its namespace", f"<message xmlns='jabber:server' {A}><body>x</body></message>", None),
    ("stanza declares a prefix", f"<message xmlns:p='urn:p' {A}><p:x/></message>", None),
]


def canonical(element):
    """
    An element as comparable data: namespace, name, attributes, and the
    children in order (text as strings).
    """
    children = []
    for child in element.children:
        if isinstance(child, str):
            if children and isinstance(children[-1], str):
                children[-1] += child
            else:
                children.append(child)
        else:
            children.append(canonical(child))
    return (element.uri, element.name, sorted(element.attributes.items(), key=repr), children)


def first_level(data, shallow, header=HEADER):
    elements = []
    parser = StreamParser(lambda root: None, elements.append, lambda: None, 1 << 16, 64, shallow)
    parser.feed(header + data)
    (element,) = elements
    return element


class FastPathTests(unittest.TestCase):
    def test_cases(self):
        wrong = []
        for name, stanza, forwardable in CASES:
            data = stanza.encode("utf-8")
            full = first_level(data, frozenset())
            shallow = first_level(data, InboundStream.SHALLOW)
            # What the component reads by the slow path.
            rewrite_namespace(full, NS_SERVER, NS_COMPONENT)
            expected = canonical(parse(full.toXml(), NS_COMPONENT))

            if forwardable is None:
                # A stanza that declares namespaces itself is built whole.
                if isinstance(shallow, ShallowStanza):
                    wrong.append((name, "delivered shallow"))
                continue
            if not isinstance(shallow, ShallowStanza):
                wrong.append((name, "not delivered shallow"))
                continue
            if shallow.raw != data or shallow.contained != forwardable:
                wrong.append((name, "raw/contained", shallow.raw, shallow.contained))
                continue
            # The start tag is what the router checks.
            if (shallow.uri, shallow.name, shallow.getAttribute("to")) != (
                NS_SERVER, data[1:].split(b" ")[0].decode(), "b@local.example"
            ):
                wrong.append((name, "start tag", shallow.uri, shallow.name))
            # Expanded, it is the element the slow path built.
            whole = expand(shallow)
            rewrite_namespace(whole, NS_SERVER, NS_COMPONENT)
            if canonical(parse(whole.toXml(), NS_COMPONENT)) != expected:
                wrong.append((name, "expanded differs"))
            # Forwarded as bytes, the component reads the same element.
            if forwardable and canonical(parse(data.decode("utf-8"), NS_COMPONENT)) != expected:
                wrong.append((name, "forwarded bytes differ"))
        self.assertEqual(wrong, [])

    def test_limits_hold(self):
        """
        The content of a shallow stanza is parsed whole: restricted XML,
        bad XML, nesting depth and size are refused as for any element.
        """
        from gateway.xmpp.parser import XMLStreamError

        cases = [
            (f"<message {A}><body><!-- c --></body></message>", "restricted-xml"),
            (f"<message {A}><body>&foo;</body></message>", "restricted-xml"),
            (f"<message {A}><body><?pi x?></body></message>", "restricted-xml"),
            (f"<message {A}><body></message>", "not-well-formed"),
            (f"<message {A}><x:body/></message>", "not-well-formed"),
            (f"<message {A}>" + "<a>" * 70 + "</a>" * 70 + "</message>", "policy-violation"),
            (f"<message {A}><body>{'x' * 70000}</body></message>", "policy-violation"),
        ]
        for stanza, condition in cases:
            elements = []
            parser = StreamParser(
                lambda root: None, elements.append, lambda: None, 1 << 16, 64, InboundStream.SHALLOW
            )
            with self.assertRaises(XMLStreamError) as caught:
                parser.feed(HEADER + stanza.encode("utf-8"))
            self.assertEqual((caught.exception.condition, elements), (condition, []), stanza[:60])

    def test_bytewise(self):
        """
        Fed a byte at a time, with parking between reads, the bytes and the
        verdict are the same.
        """
        for name, stanza, forwardable in CASES:
            if forwardable is None:
                continue
            data = stanza.encode("utf-8")
            elements = []
            parser = StreamParser(
                lambda root: None, elements.append, lambda: None, 1 << 16, 64, InboundStream.SHALLOW
            )
            parser.feed(HEADER)
            for i in range(len(data)):
                parser.feed(data[i : i + 1])
                parser.park()
            (shallow,) = elements
            self.assertEqual((shallow.raw, shallow.contained), (data, forwardable), name)


class RouterFastPathTests(unittest.TestCase):
    def setUp(self):
        self.router = Router(["local.example"])
        self.component = FakeComponentStream()
        self.router.attach_component("local.example", self.component)
        self.router.federation = FakeFederation()

    def test_forwarded_as_received(self):
        data = f"<message {A}><body>hi</body></message>".encode()
        self.router.route_from_s2s(first_level(data, InboundStream.SHALLOW), "remote.example", "local.example")
        ((sent, xml),) = self.component.sent
        self.assertIs(type(sent), bytes)
        self.assertEqual(sent, data)
        (received,) = self.component.received
        self.assertEqual((received.uri, received.body.uri, str(received.body)), (NS_COMPONENT, NS_COMPONENT, "hi"))

    def test_not_contained_is_built(self):
        data = f"<message {A}><db:x/></message>".encode()
        self.router.route_from_s2s(first_level(data, InboundStream.SHALLOW), "remote.example", "local.example")
        ((sent, xml),) = self.component.sent
        self.assertNotIsInstance(sent, bytes)
        (received,) = self.component.received
        self.assertEqual(received.uri, NS_COMPONENT)
        self.assertEqual(received.firstChildElement().uri, "jabber:server:dialback")

    def test_bounce_keeps_the_payload(self):
        """
        A stanza that can't be delivered is bounced whole: the error carries
        its payload, built from the bytes.
        """
        self.router.detach_component("local.example", self.component)
        data = f"<message {A} id='m1'><body>hi</body><x xmlns='jabber:x:oob'><url>u</url></x></message>"
        self.router.route_from_s2s(first_level(data.encode(), InboundStream.SHALLOW), "remote.example", "local.example")
        ((bounce, local, peer),) = self.router.federation.sent
        self.assertEqual((local, peer, bounce["type"], bounce["id"]), ("local.example", "remote.example", "error", "m1"))
        self.assertNotIsInstance(bounce, ShallowStanza)
        self.assertEqual(str(bounce.body), "hi")
        self.assertEqual([c.uri for c in bounce.elements() if c.name == "x"], ["jabber:x:oob"])

    def test_large_bounce_not_built(self):
        """
        A stanza too large to echo is answered from its start tag alone: it
        is never built (a 400 KB stanza of small children would cost many
        times its size as a tree), and the error carries no payload.
        """
        self.router.detach_component("local.example", self.component)
        data = f"<iq {A} id='q1' type='set'>".encode() + b"<a/>" * 10_000 + b"</iq>"
        shallow = first_level(data, InboundStream.SHALLOW)

        def refuse_to_build():
            raise AssertionError("built")

        shallow.expand = refuse_to_build
        self.router.route_from_s2s(shallow, "remote.example", "local.example")
        ((bounce, local, peer),) = self.router.federation.sent
        self.assertEqual(
            (bounce.name, bounce["type"], bounce["id"], bounce["to"], bounce["from"]),
            ("iq", "error", "q1", "a@remote.example/r", "b@local.example"),
        )
        self.assertEqual([c.name for c in bounce.elements()], ["error"])


def _tree(names=("a", "b", "x")):
    """
    Hypothesis: XML content of a stanza, as a string, with nested elements.
    """
    from hypothesis import strategies as st

    leaf = st.sampled_from(["", "t", "<a/>", "<b x='1'/>"])
    return st.recursive(
        leaf,
        lambda inner: st.builds(
            lambda name, parts: f"<{name}>{''.join(parts)}</{name}>",
            st.sampled_from(names),
            st.lists(inner, max_size=6),
        ),
        max_leaves=60,
    )


class ElementLimitTests(unittest.TestCase):
    """
    One limit on the number of elements in a stanza, the same whether the
    stanza is built (slow path) or forwarded as bytes (fast path), and the
    same as domish's, so that every Twisted or wokkel component can read
    what the gateway forwards.
    """

    def outcome(self, data, shallow):
        from gateway.xmpp.parser import XMLStreamError

        elements = []
        parser = StreamParser(lambda root: None, elements.append, lambda: None, 1 << 22, 64, shallow)
        try:
            parser.feed(HEADER + data)
        except XMLStreamError as e:
            return (len(elements), e.condition, e.text)
        return (len(elements), None, None)

    def test_at_the_limit(self):
        """
        A message of exactly MAX_ELEMENTS elements (itself included) passes
        both paths, and a component's domish reads it; one more is refused on
        both with the same stream error.
        """
        from twisted.words.xish import domish

        from gateway.xmpp.parser import MAX_ELEMENTS

        def message(children):
            return f"<message {A}>".encode() + b"<a/>" * children + b"</message>"

        at_limit = message(MAX_ELEMENTS - 1)
        for shallow in (frozenset(), InboundStream.SHALLOW):
            self.assertEqual(self.outcome(at_limit * 2, shallow), (2, None, None))
            (count, condition, text) = self.outcome(message(MAX_ELEMENTS), shallow)
            self.assertEqual(
                (count, condition, text),
                (0, "policy-violation", f"stanza with more than the limit of {MAX_ELEMENTS} elements"),
            )
        # What the component's own parser makes of the forwarded bytes.
        self.assertEqual(domish.ExpatElementStream.maxElementCount, MAX_ELEMENTS)
        read = []
        stream = domish.ExpatElementStream()
        stream.DocumentStartEvent = lambda root: None
        stream.ElementEvent = read.append
        stream.DocumentEndEvent = lambda: None
        stream.parse(b"<stream:stream xmlns='jabber:component:accept' "
                     b"xmlns:stream='http://etherx.jabber.org/streams'>" + at_limit)
        self.assertEqual(len(read), 1)

    def test_both_paths_agree(self):
        """
        Property: with the limit made small, any sequence of stanzas gets the
        same outcome on both paths: how many are delivered, and the stream
        error that stops the rest.
        """
        from hypothesis import given, settings
        from hypothesis import strategies as st

        from gateway.xmpp import parser as xmlparser

        limit = 40
        self.patch(xmlparser, "MAX_ELEMENTS", limit)

        @settings(max_examples=300, deadline=None)
        @given(st.lists(_tree(), min_size=1, max_size=3))
        def check(contents):
            data = b"".join(
                f"<message {A}>{content}</message>".encode() for content in contents
            )
            full = self.outcome(data, frozenset())
            fast = self.outcome(data, InboundStream.SHALLOW)
            self.assertEqual(full[:2], fast[:2], data)

        check()
        # The patched limit is the one in force: one element over it is
        # refused on both paths.
        over = f"<message {A}>".encode() + b"<a/>" * limit + b"</message>"
        self.assertEqual(self.outcome(over, frozenset())[:2], (0, "policy-violation"))
        self.assertEqual(self.outcome(over, InboundStream.SHALLOW)[:2], (0, "policy-violation"))


COMPONENT_HEADER = (
    b"<stream:stream xmlns='jabber:component:accept' "
    b"xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
    b"to='local.example'>"
)
OUT = "from='a@local.example/r' to='b@remote.example'"


def _outbound_case(stanza):
    # The inbound cases, written by a component: its stream's namespace in
    # place of the s2s one, the addresses the other way.
    return stanza.replace(A, OUT).replace("'jabber:server'", "'jabber:component:accept'")


def component_first_level(data, shallow):
    return first_level(data, shallow, COMPONENT_HEADER)


class OutboundFastPathTests(unittest.TestCase):
    """
    Stanzas from components go to peers as the bytes the component wrote
    when that means the same as building, rewriting and serialising them:
    each case is checked against the slow path, as the peer would read it.
    """

    def on_the_peer(self, data):
        from gateway.s2s.queues import SERVER_CONTEXT
        from gateway.xmpp.parser import element_from_bytes

        return canonical(element_from_bytes(data, SERVER_CONTEXT))

    def test_cases(self):
        from gateway.components.listener import SHALLOW
        from gateway.s2s.stream import serialise, stanza_bytes

        wrong = []
        for name, stanza, forwardable in CASES:
            data = _outbound_case(stanza).encode("utf-8")
            full = component_first_level(data, frozenset())
            slow = serialise(rewrite_namespace(full, NS_COMPONENT, NS_SERVER))
            expected = self.on_the_peer(slow)
            shallow = component_first_level(data, SHALLOW)
            if forwardable is None:
                if isinstance(shallow, ShallowStanza):
                    wrong.append((name, "delivered shallow"))
                continue
            if not isinstance(shallow, ShallowStanza) or shallow.contained != forwardable:
                wrong.append((name, "shallow/contained", getattr(shallow, "contained", None)))
                continue
            sent = stanza_bytes(shallow)
            if forwardable and sent != data:
                wrong.append((name, "not forwarded as written"))
            if self.on_the_peer(sent) != expected:
                wrong.append((name, "the peer reads another element", sent))
        self.assertEqual(wrong, [])

    def test_built_stanza_serialised(self):
        """
        A stanza built whole (not shallow) is moved to C{jabber:server} and
        serialised, as before.
        """
        from gateway.s2s.stream import stanza_bytes

        data = f"<message {OUT}><body>hi</body></message>".encode()
        full = component_first_level(data, frozenset())
        self.assertEqual(
            self.on_the_peer(stanza_bytes(full)),
            canonical(parse(f"<message {OUT}><body>hi</body></message>", NS_SERVER)),
        )

    def test_router_passes_shallow_on(self):
        """
        The router hands a component's shallow stanza to the federation as
        it is; one whose addresses it rewrites (to canonical form) it
        builds, so that the bytes sent say the rewritten addresses.
        """
        from gateway.components.listener import SHALLOW
        from gateway.s2s.stream import stanza_bytes

        router = Router(["local.example"])
        router.federation = FakeFederation()
        data = f"<message {OUT}><body>hi</body></message>".encode()
        shallow = component_first_level(data, SHALLOW)
        router.route_from_component(shallow, "local.example")
        noncanonical = component_first_level(
            b"<message from='a@LOCAL.example/r' to='b@Remote.Example.'><body>hi</body></message>", SHALLOW
        )
        router.route_from_component(noncanonical, "local.example")
        (first, _, _), (second, local, peer) = router.federation.sent
        self.assertIs(first, shallow)
        self.assertEqual(stanza_bytes(first), data)
        self.assertNotIsInstance(second, ShallowStanza)
        self.assertEqual((local, peer), ("local.example", "remote.example"))
        sent = self.on_the_peer(stanza_bytes(second))
        self.assertEqual(
            sent, canonical(parse(f"<message {OUT}><body>hi</body></message>", NS_SERVER))
        )
