"""
The incremental XML stream parser: what it delivers, in what pieces, and
which RFC 6120 stream error it answers bad input with (section 11.1
restricted XML, well-formedness, the per-element size limit).
"""

import time

from twisted.trial import unittest
from twisted.words.xish import domish

from gateway.xmpp.parser import ShallowStanza, StreamParser, XMLStreamError, with_language
from gateway.xmpp.stanzas import NS_DIALBACK, NS_SERVER, NS_STREAMS

NS_XML = "http://www.w3.org/XML/1998/namespace"

DECLARATION = b"<?xml version='1.0'?>"
ROOT = (
    b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
    b"xmlns:db='jabber:server:dialback' from='remote.example' to='local.example' "
    b"version='1.0' xml:lang='en'>"
)
HEADER = DECLARATION + ROOT
FOOTER = b"</stream:stream>"

LIMIT = 1024


def sized(size, name=b"message"):
    """
    A first-level element of exactly C{size} bytes.
    """
    start, end = b"<" + name + b">", b"</" + name + b">"
    element = start + b"x" * (size - len(start) - len(end)) + end
    assert len(element) == size
    return element


def sized_empty(size):
    """
    An empty first-level element (C{<presence id='xx...'/>}) of exactly
    C{size} bytes.
    """
    start, end = b"<presence id='", b"'/>"
    element = start + b"x" * (size - len(start) - len(end)) + end
    assert len(element) == size
    return element


class Recorder:
    """
    A L{StreamParser} and everything it reported.
    """

    def __init__(self, max_stanza_size=LIMIT):
        self.events = []
        self.parser = StreamParser(
            self.on_header, self.on_element, self.on_end, max_stanza_size
        )
        self.close_on = None

    def on_header(self, root):
        self.events.append(("header", root))
        if self.close_on == "header":
            self.parser.close()

    def on_element(self, element):
        self.events.append(("element", element))
        if self.close_on == element.name:
            self.parser.close()

    def on_end(self):
        self.events.append(("end", None))
        if self.close_on == "end":
            self.parser.close()

    def feed(self, *chunks):
        for chunk in chunks:
            self.parser.feed(chunk)

    def feed_error(self, *chunks):
        """
        Feed C{chunks}; return the L{XMLStreamError} raised, or L{None}.
        """
        try:
            self.feed(*chunks)
        except XMLStreamError as e:
            return e
        return None

    @property
    def elements(self):
        return [element for kind, element in self.events if kind == "element"]

    @property
    def kinds(self):
        return [kind if kind != "element" else element.name for kind, element in self.events]


def bytewise(data):
    return [data[i : i + 1] for i in range(len(data))]


def chunks(data, size):
    return [data[i : i + size] for i in range(0, len(data), size)]


class HeaderTests(unittest.TestCase):
    def test_header(self):
        """
        The header callback gets the root element with its name, namespace,
        default namespace, prefixes and attributes (namespaced ones keyed by
        C{(namespace, name)}).
        """
        recorder = Recorder()
        recorder.feed(HEADER)
        ((kind, root),) = recorder.events
        self.assertEqual(kind, "header")
        self.assertEqual((root.uri, root.name), (NS_STREAMS, "stream"))
        self.assertEqual(root.defaultUri, NS_SERVER)
        self.assertEqual(root.localPrefixes, {"stream": NS_STREAMS, "db": NS_DIALBACK})
        self.assertEqual(
            root.attributes,
            {
                "from": "remote.example",
                "to": "local.example",
                "version": "1.0",
                (NS_XML, "lang"): "en",
            },
        )

    def test_header_only_when_complete(self):
        """
        The header callback is called once the root start tag is complete,
        not before, and only once.
        """
        recorder = Recorder()
        recorder.feed(HEADER[:-1])
        self.assertEqual(recorder.events, [])
        recorder.feed(HEADER[-1:])
        self.assertEqual(recorder.kinds, ["header"])
        recorder.feed(b" ")
        self.assertEqual(recorder.kinds, ["header"])

    def test_oversized_header(self):
        """
        A stream header bigger than the limit is refused with
        C{policy-violation} and not delivered, whether it arrives in one
        feed or in pieces.
        """
        big = (
            DECLARATION
            + b"<stream:stream xmlns='jabber:server' "
            + b"xmlns:stream='http://etherx.jabber.org/streams' to='"
            + b"x" * (2 * LIMIT)
            + b"'>"
        )
        wrong = []
        for name, feeds in [("one feed", [big]), ("pieces", chunks(big, 100)), ("byte-wise", bytewise(big))]:
            recorder = Recorder()
            error = recorder.feed_error(*feeds)
            condition = error and error.condition
            if (condition, recorder.kinds) != ("policy-violation", []):
                wrong.append((name, condition, recorder.kinds))
        self.assertEqual(wrong, [])

    def test_without_declaration(self):
        """
        The XML declaration is optional.
        """
        recorder = Recorder()
        recorder.feed(ROOT + b"<a/>")
        self.assertEqual(recorder.kinds, ["header", "a"])


class ElementTests(unittest.TestCase):
    STANZAS = (
        "<message to='a@local.example' from='b@remote.example' id='m1'>"
        "<body>h\u00e9llo \U0001f600 \u65e5\u672c</body>"
        "<x xmlns='jabber:x:data' type='form'><field var='v'><value>1</value></field></x>"
        "</message>"
        "<iq type='get' id='i1' to='local.example' from='remote.example'>"
        "<ping xmlns='urn:xmpp:ping'/></iq>"
    ).encode("utf-8")

    def test_bytewise(self):
        """
        Fed one byte at a time (splitting multi-byte UTF-8 characters),
        each first-level element is delivered whole, exactly when its last
        byte arrives.
        """
        recorder = Recorder()
        recorder.feed(HEADER)
        first_end = self.STANZAS.index(b"</message>") + len(b"</message>")
        delivered_at = []
        for index, byte in enumerate(bytewise(self.STANZAS)):
            before = len(recorder.elements)
            recorder.feed(byte)
            if len(recorder.elements) != before:
                delivered_at.append(index + 1)
        self.assertEqual(delivered_at, [first_end, len(self.STANZAS)])

        message, iq = recorder.elements
        self.assertEqual((message.uri, message.name), (NS_SERVER, "message"))
        self.assertEqual(message["id"], "m1")
        self.assertEqual(str(message.body), "h\u00e9llo \U0001f600 \u65e5\u672c")
        form = message.x
        self.assertEqual((form.uri, form["type"]), ("jabber:x:data", "form"))
        self.assertEqual(str(form.field.value), "1")
        self.assertEqual(form.field.value.uri, "jabber:x:data")
        self.assertEqual((iq.name, iq["type"], iq.ping.uri), ("iq", "get", "urn:xmpp:ping"))

    def test_same_as_one_feed(self):
        """
        Byte-wise feeding delivers the same elements as one feed.
        """
        whole = Recorder()
        whole.feed(HEADER + self.STANZAS)
        pieces = Recorder()
        pieces.feed(*bytewise(HEADER + self.STANZAS))
        self.assertEqual(
            [e.toXml() for e in pieces.elements], [e.toXml() for e in whole.elements]
        )
        self.assertEqual(len(whole.elements), 2)

    def test_predefined_entities(self):
        """
        The five predefined entities and decimal and hexadecimal character
        references are decoded, in text and in attribute values.
        """
        recorder = Recorder()
        recorder.feed(
            HEADER
            + b"<message id='&amp;&lt;&gt;&quot;&apos;&#65;&#x42;'>"
            + b"<body>&amp;&lt;&gt;&quot;&apos;&#65;&#x42;&#233;</body></message>"
        )
        (message,) = recorder.elements
        self.assertEqual(message["id"], "&<>\"'AB")
        self.assertEqual(str(message.body), "&<>\"'AB\u00e9")

    def test_stream_end(self):
        """
        The end callback is called once on C{</stream:stream>}, after the
        elements before it.
        """
        recorder = Recorder()
        recorder.feed(HEADER + b"<a/><b/>")
        self.assertEqual(recorder.kinds, ["header", "a", "b"])
        recorder.feed(FOOTER)
        self.assertEqual(recorder.kinds, ["header", "a", "b", "end"])

    def test_stream_end_same_feed(self):
        """
        The end callback also comes when the footer arrives in the same
        feed as the header and elements.
        """
        recorder = Recorder()
        recorder.feed(HEADER + b"<a/>" + FOOTER)
        self.assertEqual(recorder.kinds, ["header", "a", "end"])


class RestrictedXMLTests(unittest.TestCase):
    CASES = [
        ("comment between stanzas", HEADER + b"<!-- hello --><a/>"),
        ("comment inside a stanza", HEADER + b"<message><!-- hello --></message>"),
        ("comment before the root", DECLARATION + b"<!-- hello -->" + ROOT),
        ("processing instruction between stanzas", HEADER + b"<?php echo 1; ?><a/>"),
        ("processing instruction inside a stanza", HEADER + b"<message><?pi data?></message>"),
        ("processing instruction before the root", DECLARATION + b"<?pi data?>" + ROOT),
        (
            "DOCTYPE with an internal entity",
            DECLARATION + b"<!DOCTYPE stream:stream [<!ENTITY e 'x'>]>" + ROOT + b"<a>&e;</a>",
        ),
        (
            "DOCTYPE with an external entity",
            DECLARATION
            + b"<!DOCTYPE stream:stream [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>"
            + ROOT
            + b"<a>&e;</a>",
        ),
        (
            "DOCTYPE with an external subset",
            DECLARATION + b"<!DOCTYPE stream:stream SYSTEM 'http://example.invalid/x.dtd'>" + ROOT,
        ),
        ("undeclared entity in text", HEADER + b"<message><body>&foo;</body></message>"),
        ("undeclared entity in an attribute", HEADER + b"<message id='&foo;'/>"),
    ]

    def test_restricted(self):
        """
        Comments, processing instructions, document type declarations and
        entity references other than the predefined ones are refused with
        C{restricted-xml} (RFC 6120 section 11.1), and nothing in or after
        them is delivered.
        """
        wrong = []
        for name, data in self.CASES:
            recorder = Recorder()
            error = recorder.feed_error(data)
            condition = error and error.condition
            if condition != "restricted-xml" or [k for k in recorder.kinds if k != "header"]:
                wrong.append((name, condition, recorder.kinds))
        self.assertEqual(wrong, [])

    def test_restricted_bytewise(self):
        """
        A comment is refused even when it arrives one byte at a time.
        """
        recorder = Recorder()
        error = recorder.feed_error(*bytewise(HEADER + b"<a/><!-- hello --><b/>"))
        self.assertIsNotNone(error)
        self.assertEqual(error.condition, "restricted-xml")
        self.assertEqual(recorder.kinds, ["header", "a"])

    def test_billion_laughs(self):
        """
        The "billion laughs" entity expansion (an internal DTD subset with
        nested entity declarations, then a reference) is refused with
        C{restricted-xml} at the DOCTYPE, before anything is expanded or
        delivered, and quickly.
        """
        entities = [b"<!ENTITY lol0 'lol'>"]
        for level in range(1, 10):
            reference = b"&lol%d;" % (level - 1)
            entities.append(b"<!ENTITY lol%d '%s'>" % (level, reference * 10))
        data = (
            DECLARATION
            + b"<!DOCTYPE stream:stream [" + b"".join(entities) + b"]>"
            + ROOT
            + b"<message><body>&lol9;</body></message>"
        )
        recorder = Recorder(max_stanza_size=10 * 1024 * 1024)
        started = time.process_time()
        error = recorder.feed_error(data)
        elapsed = time.process_time() - started
        self.assertIsNotNone(error)
        self.assertEqual(error.condition, "restricted-xml")
        self.assertIn("document type declarations", error.text)
        self.assertEqual(recorder.events, [])
        self.assertLess(elapsed, 1.0)


class EncodingTests(unittest.TestCase):
    """
    RFC 6120 section 11.6: XMPP is UTF-8, and anything else is refused
    with unsupported-encoding; section 11.8: XML 1.0.
    """

    UNSUPPORTED = [
        ("invalid byte", HEADER + b"<message>\xff\xfe</message>"),
        ("overlong", HEADER + b"<message><body>\xc0\xaf</body></message>"),
        ("surrogate", HEADER + b"<message><body>\xed\xa0\x80</body></message>"),
        ("truncated", HEADER + b"<message><body>\xe2\x82</body></message>"),
        ("in an attribute", HEADER + b"<message id='\xff'/>"),
        ("in the header", HEADER.replace(b"version='1.0' ", b"version='1.0' id='\xff' ")),
        ("declared UTF-16", b"<?xml version='1.0' encoding='UTF-16'?>" + ROOT),
        ("declared ISO-8859-1", b"<?xml version='1.0' encoding='ISO-8859-1'?>" + ROOT),
        ("UTF-16 with a byte order mark", HEADER.decode().encode("utf-16")),
        ("UTF-16BE without one", HEADER.decode().encode("utf-16-be")),
        ("UTF-16LE without one", HEADER.decode().encode("utf-16-le")),
        ("UTF-32", HEADER.decode().encode("utf-32")),
    ]

    def test_not_utf8(self):
        wrong = []
        for name, data in self.UNSUPPORTED:
            error = Recorder().feed_error(data)
            if (error and error.condition) != "unsupported-encoding":
                wrong.append((name, error and error.condition))
        self.assertEqual(wrong, [])

    def test_a_byte_at_a_time(self):
        """
        The first bytes are judged however they arrive.
        """
        for data in (HEADER.decode().encode("utf-16-le"), b"\xfe\xff" + HEADER):
            recorder = Recorder()
            with self.assertRaises(XMLStreamError) as caught:
                for n in range(len(data)):
                    recorder.parser.feed(data[n:n + 1])
            self.assertEqual(caught.exception.condition, "unsupported-encoding")

    def test_utf8(self):
        """
        UTF-8, declared in any case or not at all, in every plane, whole or
        a byte at a time, is taken.
        """
        stanza = "<message><body>é ß 漢字 🫎</body></message>".encode()
        for declaration in (b"", b"<?xml version='1.0' encoding='UTF-8'?>",
                            b"<?xml version='1.0' encoding='utf-8'?>",
                            b"<?xml version='1.1'?>"):
            data = declaration + ROOT + stanza
            for step in (len(data), 1):
                recorder = Recorder()
                for n in range(0, len(data), step):
                    recorder.parser.feed(data[n:n + step])
                self.assertEqual([e[0] for e in recorder.events], ["header", "element"])

    def test_byte_order_mark(self):
        """
        A UTF-8 byte order mark is U+FEFF, a character, and not one allowed
        before the stream header.
        """
        error = Recorder().feed_error(b"\xef\xbb\xbf" + ROOT)
        self.assertEqual(error.condition, "not-well-formed")

    def test_xml_version(self):
        error = Recorder().feed_error(b"<?xml version='2.0'?>" + ROOT)
        self.assertEqual((error.condition, error.text),
                         ("not-well-formed", "XML version '2.0' is not XML 1.0"))


class MalformedTests(unittest.TestCase):
    CASES = [
        ("mismatched tag", HEADER + b"<message><body></message>"),
        ("duplicate attribute", HEADER + b"<message id='1' id='2'/>"),
        ("unbound prefix", HEADER + b"<foo:bar/>"),
        ("bare less-than in text", HEADER + b"<message>a < b</message>"),
        ("bare ampersand", HEADER + b"<message>a & b</message>"),
        ("NUL character", HEADER + b"<message>\x00</message>"),
        ("control character", HEADER + b"<message>\x16\x03\x01</message>"),
        ("unquoted attribute", HEADER + b"<message id=1/>"),
        ("element after the root closed", HEADER + FOOTER + b"<message/>"),
        ("not XML at all", b"GET / HTTP/1.1\r\n"),
        ("TLS ClientHello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
    ]

    def test_malformed(self):
        """
        Input that is not well-formed XML is refused with
        C{not-well-formed}.
        """
        wrong = []
        for name, data in self.CASES:
            error = Recorder().feed_error(data)
            condition = error and error.condition
            if condition != "not-well-formed":
                wrong.append((name, condition))
        self.assertEqual(wrong, [])

    def test_error_is_exception(self):
        """
        L{XMLStreamError} carries the condition and text as attributes and
        as its arguments.
        """
        error = XMLStreamError("not-well-formed", "mismatched tag")
        self.assertEqual((error.condition, error.text), ("not-well-formed", "mismatched tag"))
        self.assertEqual(error.args, ("not-well-formed", "mismatched tag"))
        self.assertIsInstance(error, Exception)


class SizeLimitTests(unittest.TestCase):
    def assertPolicyViolation(self, recorder, *feeds):
        error = recorder.feed_error(*feeds)
        self.assertIsNotNone(error, "no error raised")
        self.assertEqual(error.condition, "policy-violation")
        self.assertIn(str(LIMIT), error.text)
        return error

    def test_oversized_in_pieces(self):
        """
        An element bigger than the limit, arriving in pieces, is refused
        with C{policy-violation} naming the limit, and is not delivered.
        """
        recorder = Recorder()
        recorder.feed(HEADER + b"<a/>")
        self.assertPolicyViolation(recorder, *chunks(sized(3 * LIMIT), 100))
        self.assertEqual(recorder.kinds, ["header", "a"])

    def test_oversized_in_one_feed(self):
        """
        An element bigger than the limit is refused even when it arrives
        whole in a single feed.
        """
        recorder = Recorder()
        recorder.feed(HEADER + b"<a/>")
        self.assertPolicyViolation(recorder, sized(3 * LIMIT))
        self.assertEqual(recorder.kinds, ["header", "a"])

    def test_oversized_after_small_in_one_feed(self):
        """
        An element bigger than the limit is refused when it arrives in the
        same feed as a small element before it.
        """
        recorder = Recorder()
        recorder.feed(HEADER + b"<a/>")
        self.assertPolicyViolation(recorder, b"<b/>" + sized(3 * LIMIT)[:-1], b">")
        self.assertEqual(recorder.kinds, ["header", "a", "b"])

    def test_many_small_elements(self):
        """
        The limit is per element: many small elements adding up to far
        more than the limit are all delivered, whether in one feed or in
        pieces that straddle element boundaries.
        """
        element = sized(100)
        data = element * (20 * LIMIT // len(element))
        for feeds in ([data], chunks(data, 7), chunks(data, 1000)):
            recorder = Recorder()
            recorder.feed(HEADER, *feeds)
            self.assertEqual(len(recorder.elements), len(data) // len(element))

    def test_boundary(self):
        """
        An element of exactly the limit is accepted however it arrives, and
        one of a byte more is refused and not delivered; neither the header,
        nor whitespace between elements, nor what follows an empty element
        counts towards an element.
        """
        at_limit, over = sized(LIMIT), sized(LIMIT + 1)
        empty_at_limit, empty_over = sized_empty(LIMIT), sized_empty(LIMIT + 1)
        primed = HEADER + b"<a/>"
        ok = ["header", "a", "message"]
        refused = ["header", "a"]
        cases = [
            ("at the limit, one feed", [primed, at_limit], ok),
            ("at the limit, byte-wise", [primed] + bytewise(at_limit), ok),
            ("at the limit, header in the same feed", [HEADER + at_limit], ["header", "message"]),
            ("at the limit, after the header in pieces", [HEADER, at_limit[:-1], at_limit[-1:]], ["header", "message"]),
            ("at the limit, after keepalives", [primed] + [b" "] * (2 * LIMIT) + [at_limit], ok),
            ("at the limit, twice in pieces", [primed] + chunks(at_limit * 2, 300), ok + ["message"]),
            ("empty at the limit", [primed, empty_at_limit], ["header", "a", "presence"]),
            ("empty at the limit, more in the same feed", [primed, empty_at_limit + b" <b/>"], ["header", "a", "presence", "b"]),
            ("empty at the limit, then a stanza", [primed, empty_at_limit + b"<message to='x@example.org'>"], ["header", "a", "presence"]),
            ("one over, one feed", [primed, over], refused),
            ("one over, byte-wise", [primed] + bytewise(over), refused),
            ("one over, two pieces", [primed, over[:LIMIT], over[LIMIT:]], refused),
            ("empty one over", [primed, empty_over], refused),
            ("empty one over, more in the same feed", [primed, empty_over + b"<b/>"], refused),
        ]
        wrong = []
        for name, feeds, kinds in cases:
            recorder = Recorder()
            error = recorder.feed_error(*feeds)
            condition = error and error.condition
            expected = None if kinds is not refused else "policy-violation"
            if (condition, recorder.kinds) != (expected, kinds):
                wrong.append((name, condition, recorder.kinds))
        self.assertEqual(wrong, [])


class CloseTests(unittest.TestCase):
    def test_close_during_feed(self):
        """
        When the callback for one element calls C{close()}, nothing after
        it in the same feed is delivered: not the next element, not the
        stream end.
        """
        recorder = Recorder()
        recorder.close_on = "a"
        recorder.feed(HEADER + b"<a/><b/>" + FOOTER)
        self.assertEqual(recorder.kinds, ["header", "a"])
        self.assertTrue(recorder.parser.closed)

    def test_close_in_header(self):
        """
        C{close()} from the header callback stops the elements in the same
        feed.
        """
        recorder = Recorder()
        recorder.close_on = "header"
        recorder.feed(HEADER + b"<a/><b/>")
        self.assertEqual(recorder.kinds, ["header"])

    def test_feed_after_close(self):
        """
        After C{close()}, feeding delivers nothing and raises nothing, even
        for input that would otherwise be an error.
        """
        recorder = Recorder()
        recorder.feed(HEADER + b"<a/>")
        recorder.parser.close()
        recorder.feed(b"<b/>" + FOOTER)
        recorder.feed(b"<!-- restricted --><<<not well formed")
        self.assertEqual(recorder.kinds, ["header", "a"])

    def test_close_then_bad_bytes_same_feed(self):
        """
        Bytes after the element whose callback called C{close()}, in the
        same feed, are not acted on at all: TLS bytes, a comment or
        oversized data there raise no error.
        """
        tails = [
            ("TLS ClientHello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            ("comment", b"<!-- injected -->"),
            ("oversized", sized(3 * LIMIT)[:-10]),
        ]
        wrong = []
        for name, tail in tails:
            recorder = Recorder()
            recorder.close_on = "proceed"
            error = recorder.feed_error(HEADER + b"<proceed/>" + tail)
            if error is not None or recorder.kinds != ["header", "proceed"]:
                wrong.append((name, error and error.condition, recorder.kinds))
        self.assertEqual(wrong, [])


class ParkingRecorder(Recorder):
    """
    A L{Recorder} that puts the parser away after every feed it can.
    """

    def __init__(self, max_stanza_size=LIMIT):
        super().__init__(max_stanza_size)
        self.parked = 0

    def feed(self, *chunks):
        for chunk in chunks:
            self.parser.feed(chunk)
            if self.parser.park():
                self.parked += 1
                self.assertParked()

    def assertParked(self):
        assert self.parser.parked, "park() said yes but the parser is still there"


class ParkTests(unittest.TestCase):
    """
    A quiet stream's expat parser can be put away between stanzas and
    brought back by the next read, with nothing changed: the same elements,
    namespaces, limits and errors as without parking.
    """

    def test_same_elements(self):
        """
        Parking after every byte that allows it delivers what one feed does.
        """
        data = HEADER + ElementTests.STANZAS + b" <db:result from='remote.example' "
        data += b"to='local.example'>key</db:result>  " + ElementTests.STANZAS + FOOTER
        whole = Recorder()
        whole.feed(data)
        parked = ParkingRecorder()
        parked.feed(*bytewise(data))
        self.assertEqual(parked.kinds, whole.kinds)
        self.assertEqual(
            [(e.uri, e.toXml()) for e in parked.elements],
            [(e.uri, e.toXml()) for e in whole.elements],
        )
        self.assertEqual(parked.elements[2].uri, NS_DIALBACK)
        self.assertEqual(parked.elements[0].body.uri, NS_SERVER)
        # Between stanzas and after whitespace, not inside anything.
        self.assertGreaterEqual(parked.parked, 4)
        self.assertEqual(parked.kinds[-1], "end")

    def test_boundary_cases_with_parking(self):
        """
        The size-limit cases come out the same with parking after each feed.
        """
        at_limit, over = sized(LIMIT), sized(LIMIT + 1)
        primed = HEADER + b"<a/>"
        cases = [
            [primed, at_limit],
            [primed] + chunks(at_limit * 2, 300),
            [primed] + [b" "] * 10 + [at_limit],
            [primed, over],
            [primed] + bytewise(over),
            [primed, sized_empty(LIMIT) + b" <b/>"],
            [primed, sized_empty(LIMIT + 1)],
        ]
        for feeds in cases:
            plain, parked = Recorder(), ParkingRecorder()
            plain_error, parked_error = plain.feed_error(*feeds), parked.feed_error(*feeds)
            self.assertEqual(
                (parked_error and parked_error.condition, parked.kinds),
                (plain_error and plain_error.condition, plain.kinds),
            )
            self.assertGreaterEqual(parked.parked, 1)

    def test_not_mid_stanza(self):
        recorder = Recorder()
        self.assertFalse(recorder.parser.park(), "before any header")
        recorder.feed(HEADER + b"<message><bo")
        self.assertFalse(recorder.parser.park(), "inside a stanza")
        recorder.feed(b"dy>x</body></message><pres")
        self.assertFalse(recorder.parser.park(), "inside a start tag")
        recorder.feed(b"ence/>")
        self.assertTrue(recorder.parser.park())
        self.assertTrue(recorder.parser.parked)
        self.assertTrue(recorder.parser.park(), "already parked")
        recorder.feed(b"<iq type='get' id='1'/>")
        self.assertFalse(recorder.parser.parked)
        self.assertEqual(recorder.kinds, ["header", "message", "presence", "iq"])

    def test_nothing_after_the_header(self):
        """
        A stream quiet right after its header (as after a SASL restart) can
        be parked too, in any feeding.
        """
        for feeds in ([HEADER], bytewise(HEADER), [DECLARATION, ROOT[:40], ROOT[40:]]):
            recorder = Recorder()
            recorder.feed(*feeds)
            self.assertTrue(recorder.parser.park())
            recorder.feed(b"<db:result from='remote.example' to='local.example'>k</db:result>")
            recorder.feed(b"<message><body>x</body></message>" + FOOTER)
            self.assertEqual(recorder.kinds, ["header", "result", "message", "end"])
            self.assertEqual(recorder.elements[0].uri, NS_DIALBACK)
            self.assertEqual(recorder.elements[1].body.uri, NS_SERVER)

    def test_restricted_after_parking(self):
        recorder = Recorder()
        recorder.feed(HEADER + b"<a/>")
        self.assertTrue(recorder.parser.park())
        error = recorder.feed_error(b"<!-- c --><b/>")
        self.assertEqual(error.condition, "restricted-xml")
        self.assertEqual(recorder.kinds, ["header", "a"])

    def test_malformed_after_parking(self):
        recorder = Recorder()
        recorder.feed(HEADER + b"<a/>")
        self.assertTrue(recorder.parser.park())
        error = recorder.feed_error(b"<b></c>")
        self.assertEqual(error.condition, "not-well-formed")

    def test_unbound_prefix_after_parking(self):
        """
        Only the header's namespace declarations carry over: a prefix the
        header didn't declare is still unbound.
        """
        recorder = Recorder()
        recorder.feed(HEADER + b"<a/>")
        self.assertTrue(recorder.parser.park())
        error = recorder.feed_error(b"<x:b/>")
        self.assertEqual(error.condition, "not-well-formed")

    def test_header_with_markup_characters(self):
        """
        The header is replayed exactly, even with C{>} and entities inside
        attribute values and declarations on another default namespace.
        """
        header = (
            b"<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:server' "
            b"xmlns:o='urn:other>x' from='remote.example' to='local.example' "
            b"version='1.0' id='a&gt;b>c'>"
        )
        recorder = Recorder()
        recorder.feed(header, b" ")
        self.assertTrue(recorder.parser.park())
        recorder.feed(b"<message><o:x/></message></s:stream>")
        self.assertEqual(recorder.kinds, ["header", "message", "end"])
        (message,) = recorder.elements
        self.assertEqual(message.uri, NS_SERVER)
        self.assertEqual(message.firstChildElement().uri, "urn:other>x")

    def test_parked_state_is_compact(self):
        """
        Parked, the parser keeps a small tuple instead of its element
        stream, and picks up exactly where it was.
        """
        recorder = Recorder()
        recorder.feed(HEADER + b"<a/>")
        self.assertTrue(recorder.parser.park())
        self.assertIsNone(recorder.parser._stream)
        self.assertEqual(recorder.parser.buffered, 0)
        recorder.feed(b"<b/><c>" + b"x" * 10)
        # What this read brought (the buffer is trimmed before each read).
        self.assertEqual(recorder.parser.buffered, len(b"<b/><c>") + 10)
        recorder.feed(b"</c>" + sized(LIMIT))
        self.assertEqual(recorder.kinds, ["header", "a", "b", "c", "message"])
        self.assertTrue(recorder.parser.park())
        error = recorder.feed_error(sized(LIMIT + 1))
        self.assertEqual(error.condition, "policy-violation")

    def test_close_while_parked(self):
        recorder = Recorder()
        recorder.feed(HEADER + b"<a/>")
        self.assertTrue(recorder.parser.park())
        recorder.parser.close()
        recorder.feed(b"<b/>")
        self.assertFalse(recorder.parser.park())
        self.assertEqual(recorder.kinds, ["header", "a"])


class LanguageTests(unittest.TestCase):
    """
    L{with_language}: the stream's language given to a stanza that says
    none (RFC 6120 section 4.7.4).
    """

    def test_shallow(self):
        stanza = ShallowStanza((NS_SERVER, "message"))
        stanza.raw = b"<message to='a@b'><body>x</body></message>"
        with_language(stanza, "de")
        self.assertEqual(stanza[(NS_XML, "lang")], "de")
        self.assertEqual(stanza.raw, b"<message xml:lang='de' to='a@b'><body>x</body></message>")

    def test_built(self):
        """
        A built element is given the attribute alone, even with a child
        named like a shallow stanza's bytes.
        """
        stanza = domish.Element((NS_SERVER, "message"))
        stanza.addElement("raw")
        with_language(stanza, "de")
        self.assertEqual(stanza[(NS_XML, "lang")], "de")
        self.assertEqual(
            stanza.toXml(), "<message xmlns='jabber:server' xml:lang='de'><raw/></message>"
        )
