"""
The one seam through which stream bytes become XML: an incremental parser
for one XML stream (RFC 6120 section 4), with limits.

Protocols feed it bytes and get three callbacks: the stream header, each
complete first-level element, and the end of the stream.  Anything wrong
comes out as L{XMLStreamError} carrying the RFC 6120 stream error
condition to answer with.  RFC 6120 section 11.1 restricted XML (comments,
processing instructions, DTDs, entity declarations) is refused here, and
so is anything but UTF-8 (section 11.6) and XML 1.0 (section 11.8).
"""

from __future__ import annotations

import codecs
import pyexpat
import re
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any

from twisted.words.xish import domish

from gateway.xmpp.errors import XMLStreamError

NS_XML = "http://www.w3.org/XML/1998/namespace"

#: The most elements one first-level element may hold, itself included:
#: domish's own limit, so that a stanza the gateway forwards is one every
#: Twisted or wokkel component can read (above it, a component drops its
#: whole stream).  The same on the fast path and the slow path.
MAX_ELEMENTS = 100_000
TOO_MANY_ELEMENTS = f"stanza with more than the limit of {MAX_ELEMENTS} elements"


class ShallowStanza(domish.Element):
    """
    A first-level element delivered without its content: its start tag's
    name and attributes, and its exact bytes.

    @ivar raw: the element's bytes as received (UTF-8, well-formed, within
        the limits).
    @ivar contained: whether C{raw} means the same on another stream whose
        default namespace replaces this stream's (see L{_LimitedElementStream}).
    @ivar context: the stream header's start tag, to parse C{raw} in.
    """

    raw = b""
    contained = False
    context: bytes | None = None
    #: How many child elements it has (its content is not built).
    child_count = 0

    def expand(self) -> domish.Element:
        """
        The whole element, parsed from C{raw} in the stream header's
        namespace context.
        """
        assert self.context is not None, "a shallow stanza without its stream header"
        elements: list[domish.Element] = []
        stream = domish.ExpatElementStream()
        stream.DocumentStartEvent = lambda root: None
        stream.ElementEvent = elements.append
        stream.DocumentEndEvent = lambda: None
        stream.parse(self.context + self.raw)
        (element,) = elements
        return element


_TAG_NAME = re.compile(rb"<[^\s/>]+")


def language_attribute(language: str) -> bytes:
    """
    The bytes of an C{xml:lang} attribute for C{language}, ready to splice
    into a start tag (see L{with_language}).
    """
    return f" xml:lang='{domish.escapeToXml(language, isattrib=1)}'".encode("utf-8")


def with_language(
    stanza: domish.Element, language: str, attribute: bytes | None = None
) -> None:
    """
    Give C{stanza} the C{xml:lang} C{language} (RFC 6120 section 4.7.4: the
    stream's, for a stanza that says none), in its attributes and, for a
    shallow stanza, in its bytes too, after the element's name as written
    (it may carry a prefix the header declared).

    @param attribute: L{language_attribute} of C{language}, if the caller
        keeps it.
    """
    stanza.attributes[(NS_XML, "lang")] = language
    # Not getattr(stanza, "raw"): on a built element, that is its first
    # child named "raw", if any.
    if isinstance(stanza, ShallowStanza) and stanza.raw:
        raw = stanza.raw
        name = _TAG_NAME.match(raw)
        assert name is not None, "raw starts with a start tag"
        name_end = name.end()
        stanza.raw = raw[:name_end] + (attribute or language_attribute(language)) + raw[name_end:]


def element_from_bytes(data: bytes, context: bytes) -> domish.Element:
    """
    The first-level element serialised as C{data}, parsed in the namespace
    context of the stream header C{context} (bytes).
    """
    stanza = ShallowStanza(("", ""))
    stanza.raw = data
    stanza.context = context
    return stanza.expand()


def expand(stanza: domish.Element) -> domish.Element:
    """
    C{stanza} whole: a L{ShallowStanza} expanded, any other element as it is.
    """
    if isinstance(stanza, ShallowStanza):
        return stanza.expand()
    return stanza


def _refuse_comment(*args: object) -> None:
    raise XMLStreamError("restricted-xml", "comments are not allowed in XMPP")


def _refuse_processing_instruction(*args: object) -> None:
    raise XMLStreamError("restricted-xml", "processing instructions are not allowed in XMPP")


def _refuse_doctype(*args: object) -> None:
    raise XMLStreamError("restricted-xml", "document type declarations are not allowed in XMPP")


def _check_declaration(version: str | None, encoding: str | None, standalone: int) -> None:
    # RFC 6120 section 11.6: UTF-8 only; section 11.8: XML 1.0, whose
    # VersionNum is '1.' followed by digits.
    if encoding is not None and encoding.upper() != "UTF-8":
        raise XMLStreamError(
            "unsupported-encoding", f"the stream declares encoding {encoding!r}; XMPP is UTF-8 only"
        )
    if version is not None and not re.fullmatch(r"1\.[0-9]+", version):
        raise XMLStreamError("not-well-formed", f"XML version {version!r} is not XML 1.0")


def _check_first_bytes(head: bytes) -> None:
    """
    Refuse the first bytes of a stream (up to four) that start it in
    another encoding than UTF-8, or with a byte order mark.
    """
    if head.startswith((b"\xfe\xff", b"\xff\xfe")) or b"\x00" in head[:2]:
        raise XMLStreamError("unsupported-encoding", "the stream is not UTF-8 (UTF-16 or UTF-32)")
    if head.startswith(b"\xef\xbb\xbf"):
        # RFC 6120 section 11.6: U+FEFF is a zero width no-break space, never
        # a byte order mark; as text before the stream header it is not
        # well-formed.
        raise XMLStreamError(
            "not-well-formed", "a byte order mark (U+FEFF) before the stream header"
        )


def invalid_utf8_at(data: bytes, position: int) -> bool:
    """
    Whether C{data} (bytes starting at a character boundary) breaks UTF-8's
    rules at or before C{position}, where the parser found an error: then
    the error is the encoding's, not the XML's.
    """
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data[: position + 4], final=False)
    except UnicodeDecodeError as e:
        return e.start <= position
    return False


def _refuse_entity_declaration(*args: object) -> None:
    raise XMLStreamError("restricted-xml", "entity declarations are not allowed in XMPP")


_ElementCallback = Callable[[domish.Element], object]
_EndCallback = Callable[[], object]
#: A parked stream (L{_LimitedElementStream.freeze}): the limits, the
#: shallow names, the bytes fed, the header's start tag and the default
#: namespaces in force.
_Frozen = tuple[
    int, int, AbstractSet[tuple[str, str]], int, bytes, tuple[str | None, ...]
]


def _ignore_element(element: domish.Element) -> None:
    pass


def _ignore_end() -> None:
    pass


class _LimitedElementStream:
    """
    One XML stream read with expat, its elements built as domish elements
    through domish's public API: restricted XML is refused, and each
    first-level element is measured by expat's byte positions.

    An element's size is counted from the first byte of its start tag to the
    last byte of its end tag (or of its start tag, when it is empty).  The
    limit is enforced when the element ends, and while it is still open,
    after every read: no element can make the gateway buffer more than the
    limit plus one read.

    Between stanzas (L{parkable}), a quiet stream can be put away as a
    small tuple (L{freeze}) and made again (L{thaw}) with a new expat parser
    given the stream header's exact start tag first.  Byte positions stay
    those of the whole stream: C{shift} maps the new parser's onto them.
    """

    def __init__(
        self,
        on_header: _ElementCallback,
        on_element: _ElementCallback,
        on_end: _EndCallback,
        max_stanza_size: int,
        max_depth: int = 64,
        shallow: AbstractSet[tuple[str, str]] = frozenset(),
    ) -> None:
        self.on_header = on_header
        self.on_element = on_element
        self.on_end = on_end
        self.max_stanza_size = max_stanza_size
        self.max_depth = max_depth
        self.shallow = shallow
        # The namespace separator makes expat report "uri name".
        self.parser = pyexpat.ParserCreate("UTF-8", " ")
        # The innermost open element being built, inside a first-level one.
        self.current: domish.Element | None = None
        # The default namespace in force, innermost last (None after xmlns='').
        self.namespaces: list[str | None] = [""]
        # The prefixes the next start tag declares.
        self.prefixes: dict[str, str | None] = {}
        # The elements of the first-level element so far, itself included.
        self.element_count = 0
        # The stanza being read shallow: its content is not built.
        self.stanza: ShallowStanza | None = None
        # The namespaces declared inside it, and whether it is contained.
        self.declared: set[str | None] = set()
        self.contained = True
        # Namespace declarations seen since the last first-level element.
        self.declaring = False
        self.depth = 0
        self.element_start: int | None = None
        self.without_content = False
        self.bytes_fed = 0
        self.buffer = b""
        self.buffer_offset = 0
        self.boundary = 0
        self.shift = 0
        # While the header is replayed: 1, then 2 once its start tag is seen.
        self.replaying = 0
        # The header's position and the bytes from there, until the exact
        # extent of its start tag is known.
        self.header_pending: tuple[int, bytes] | None = None
        self.header_tag: bytes | None = None
        self._install(self.parser)

    def _install(self, parser: pyexpat.XMLParserType) -> None:
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text
        parser.StartNamespaceDeclHandler = self._start_namespace
        parser.EndNamespaceDeclHandler = self._end_namespace
        parser.CommentHandler = _refuse_comment
        parser.ProcessingInstructionHandler = _refuse_processing_instruction
        parser.StartDoctypeDeclHandler = _refuse_doctype
        parser.EntityDeclHandler = _refuse_entity_declaration
        parser.XmlDeclHandler = _check_declaration
        parser.DefaultHandler = self._default
        # Never fetch or expand external entities.
        parser.SetParamEntityParsing(0)

    _HANDLERS = (
        "StartElementHandler",
        "EndElementHandler",
        "CharacterDataHandler",
        "StartNamespaceDeclHandler",
        "EndNamespaceDeclHandler",
        "CommentHandler",
        "ProcessingInstructionHandler",
        "StartDoctypeDeclHandler",
        "EntityDeclHandler",
        "XmlDeclHandler",
        "DefaultHandler",
    )

    def _uninstall(self) -> None:
        for name in self._HANDLERS:
            setattr(self.parser, name, None)

    def release(self) -> None:
        """
        Deliver nothing more and let go of the expat parser now: its
        handlers are bound methods of this object, a reference cycle that
        would otherwise keep a finished stream's parser (several KiB) alive
        until a full garbage collection.  Safe to call from inside a
        handler: expat goes on through the rest of the read without one.
        """
        self._uninstall()
        self.on_header = self.on_element = _ignore_element
        self.on_end = _ignore_end
        self.buffer = b""

    # Parking -------------------------------------------------------------

    def parkable(self) -> bool:
        """
        Whether the stream is between stanzas with every byte fed accounted
        for (nothing half-parsed inside expat) and its header known exactly,
        so that L{freeze} says all there is to say.
        """
        if (
            self.header_pending is not None
            and self.depth == 1
            and self.boundary == self.bytes_fed
        ):
            # Nothing came after the header: it ends where the bytes fed do
            # (its first ">" is the last byte fed, and expat has read it all).
            start, data = self.header_pending
            self.header_tag = data[: self.bytes_fed - start]
            self.header_pending = None
        return (
            self.depth == 1
            and self.current is None
            and self.stanza is None
            and self.header_tag is not None
            and self.boundary == self.bytes_fed
        )

    def freeze(self) -> _Frozen:
        """
        What a parked stream needs to go on, compactly: everything else is
        the same for every stream between stanzas.  Only when L{parkable}.
        """
        assert self.header_tag is not None, "not parkable"
        return (
            self.max_stanza_size,
            self.max_depth,
            self.shallow,
            self.bytes_fed,
            self.header_tag,
            tuple(self.namespaces),
        )

    @classmethod
    def thaw(
        cls,
        frozen: _Frozen,
        on_header: _ElementCallback,
        on_element: _ElementCallback,
        on_end: _EndCallback,
    ) -> "_LimitedElementStream":
        """
        A parked stream again, from L{freeze}'s state, with a new expat
        parser given the stream header's start tag (without events) so that
        it parses what follows in the same namespace context.

        @raise XMLStreamError: C{internal-server-error} if the header does
            not parse again (it parsed before: it can't happen).
        """
        max_stanza_size, max_depth, shallow, bytes_fed, header_tag, namespaces = frozen
        stream = cls(on_header, on_element, on_end, max_stanza_size, max_depth, shallow)
        stream.namespaces = list(namespaces)
        stream.depth = 1
        stream.bytes_fed = stream.boundary = stream.buffer_offset = bytes_fed
        stream.header_tag = header_tag
        stream._replay_header(header_tag)
        return stream

    def _replay_header(self, header_tag: bytes) -> None:
        parser = self.parser
        # The header's namespace declarations are in force already (this
        # stream keeps them); the replayed header must not declare them again.
        parser.StartNamespaceDeclHandler = None
        parser.EndNamespaceDeclHandler = None
        self.replaying = 1
        try:
            parser.Parse(header_tag)
            replayed = self.replaying == 2
        except pyexpat.error:
            replayed = False
        finally:
            self.replaying = 0
        if not replayed:
            raise XMLStreamError("internal-server-error", "could not resume parsing the stream")
        parser.StartNamespaceDeclHandler = self._start_namespace
        parser.EndNamespaceDeclHandler = self._end_namespace
        self.shift = self.bytes_fed - len(header_tag)

    # Events --------------------------------------------------------------

    def _position(self) -> int:
        position: int = self.parser.CurrentByteIndex + self.shift
        if self.header_pending is not None and self.depth >= 1:
            # The first event after the header's start tag begins where the
            # tag ends: now the tag is known exactly (its bytes were kept
            # when it was parsed).
            start, data = self.header_pending
            self.header_tag = data[: position - start]
            self.header_pending = None
        return position

    def _default(self, data: str) -> None:
        # Expat hands undeclared entity references (and nothing else we let
        # through) to the default handler.
        if data.startswith("&"):
            raise XMLStreamError("restricted-xml", "entity references are not allowed in XMPP")

    def _start(self, name: str, attributes: dict[Any, str]) -> None:
        if self.replaying:
            # Only the header's start tag is replayed: one event.
            self.replaying += 1
            return
        depth = self.depth = self.depth + 1
        if depth > self.max_depth + 1:
            raise XMLStreamError(
                "policy-violation", f"elements nested deeper than the limit of {self.max_depth}"
            )
        # Whether the element so far has no content (it may be <empty/>).
        self.without_content = True
        stanza = self.stanza
        if stanza is not None:
            # Inside a shallow stanza: counted and checked, not built; where
            # it starts does not matter.
            if depth == 3:
                stanza.child_count += 1
            # The elements of a shallow stanza are counted as those built
            # are, against the same limit.
            self.element_count += 1
            if self.element_count > MAX_ELEMENTS:
                raise XMLStreamError("policy-violation", TOO_MANY_ELEMENTS)
            self._check_contained(name, attributes)
            return
        position = self._position()
        if self.depth == 1:
            # The header starts the document: where it ends is its size.
            self.check_size(self._tag_end(position), "stream header")
            self.header_pending = (position, self.buffer[position - self.buffer_offset:])
        elif self.depth == 2:
            self.element_start = position
        if self.depth == 2:
            declaring, self.declaring = self.declaring, False
            if not declaring and self._start_shallow(name, attributes):
                return
        self._build(name, attributes)
        if self.depth == 1:
            self.boundary = self._tag_end(position)

    def _build(self, name: str, attributes: dict[Any, str]) -> None:
        """
        Build the element whose start tag expat just read: the stream
        header, or an element at or inside the first level.
        """
        uri, _, local = name.rpartition(" ")
        # Namespaced attributes are keyed (uri, name), as domish keys them,
        # after the others.
        for key in [key for key in attributes if " " in key]:
            attribute_uri, _, attribute = key.rpartition(" ")
            attributes[(attribute_uri, attribute)] = attributes.pop(key)
        prefixes = self.prefixes
        if prefixes:
            self.prefixes = {}
        element = domish.Element((uri, local), self.namespaces[-1], attributes, prefixes)
        if self.depth == 1:
            self.on_header(element)
            return
        # domish's own limit for the elements it builds (see MAX_ELEMENTS).
        self.element_count += 1
        if self.element_count > MAX_ELEMENTS:
            raise XMLStreamError("policy-violation", TOO_MANY_ELEMENTS)
        current = self.current
        if current is not None:
            current.addChild(element)
        self.current = element

    # Shallow stanzas ------------------------------------------------------
    #
    # A stanza named in C{shallow} whose start tag declares no namespace is
    # delivered as a L{ShallowStanza}: its start tag as an element, and its
    # exact bytes.  Its content is parsed (well-formedness, restricted XML,
    # size and depth limits hold as for any element) but not built.  Whether
    # those bytes mean the same on any stream whose default namespace takes
    # the place of this one's is recorded as C{contained}: every namespace
    # its content uses must be declared inside it, and it must not declare
    # the stream's default namespace itself.

    def _start_shallow(self, name: str, attributes: dict[str, str]) -> bool:
        uri, _, local = name.rpartition(" ")
        if (uri, local) not in self.shallow:
            return False
        self.declared.clear()
        self.contained = True
        plain: dict[Any, str] = {}
        for key, value in attributes.items():
            if " " in key:
                attribute_uri, _, attribute = key.rpartition(" ")
                if attribute_uri != NS_XML:
                    # A prefix the stream header declared.
                    self.contained = False
                plain[(attribute_uri, attribute)] = value
            else:
                plain[key] = value
        self.element_count = 1
        stanza = ShallowStanza((uri, local), self.namespaces[-1], plain)
        stanza.context = self.header_tag
        self.stanza = stanza
        return True

    def _check_contained(self, name: str, attributes: dict[str, str]) -> None:
        if not self.contained:
            return
        uri = name.rpartition(" ")[0]
        if uri and uri != self.namespaces[-1] and uri not in self.declared:
            self.contained = False
            return
        for key in attributes:
            if " " in key:
                attribute_uri = key.rpartition(" ")[0]
                if attribute_uri != NS_XML and attribute_uri not in self.declared:
                    self.contained = False
                    return

    def _start_namespace(self, prefix: str | None, uri: str | None) -> None:
        if self.stanza is not None:
            self.declared.add(uri)
            if uri == self.namespaces[-1]:
                self.contained = False
            return
        if self.depth == 1:
            self.declaring = True
        if prefix is None:
            self.namespaces.append(uri)
        else:
            self.prefixes[prefix] = uri

    def _end_namespace(self, prefix: str | None) -> None:
        if prefix is None and self.stanza is None:
            self.namespaces.pop()

    def _end(self, name: str) -> None:
        stanza = None
        if self.depth > 2 and self.stanza is not None:
            # Inside a shallow stanza: nothing is built, nothing measured.
            self.without_content = False
            self.depth -= 1
            return
        position = self._position()
        if self.depth == 2:
            start = self.element_start
            assert start is not None, "a first-level element ends that did not start"
            if self.without_content and self._preceded_by(position, b"/>"):
                # Expat reports an empty element's end just past its "/>".
                end = position
            else:
                end = self._tag_end(position)
            self.check_size(end - start)
            stanza = self.stanza
            if stanza is not None:
                self.stanza = None
                stanza.raw = self.buffer[start - self.buffer_offset : end - self.buffer_offset]
                stanza.contained = self.contained
            self.element_start = None
            self.boundary = end
        self.without_content = False
        self.depth -= 1
        if stanza is not None:
            self.on_element(stanza)
            self.element_count = 0
        elif self.stanza is not None:
            # Inside a shallow stanza: nothing is built.
            return
        else:
            current = self.current
            if current is None:
                self.on_end()
            elif current.parent is None:
                self.on_element(current)
                self.current = None
                self.element_count = 0
            else:
                self.current = current.parent

    def _text(self, data: str) -> None:
        self.without_content = False
        if self.depth == 1:
            # Whitespace between stanzas (keepalives) is not part of any.
            self.boundary = self._position() + len(data.encode("utf-8"))
        current = self.current
        if current is not None:
            current.addContent(data)

    def _preceded_by(self, position: int, marker: bytes) -> bool:
        at = position - self.buffer_offset
        return at >= len(marker) and self.buffer[at - len(marker):at] == marker

    def _tag_end(self, position: int) -> int:
        """
        The offset just past the tag that starts at C{position}: its C{>}.
        """
        if position < self.buffer_offset:
            return position
        at = self.buffer.find(b">", position - self.buffer_offset)
        if at < 0:
            return position
        return self.buffer_offset + at + 1

    def encoding_error(self) -> bool:
        """
        Whether the error expat just reported is a byte sequence that is not
        UTF-8.
        """
        position = self.parser.ErrorByteIndex + self.shift - self.buffer_offset
        return 0 <= position < len(self.buffer) and invalid_utf8_at(self.buffer, position)

    def check_size(self, size: int, what: str = "stanza") -> None:
        if size > self.max_stanza_size:
            raise XMLStreamError(
                "policy-violation",
                f"{what} larger than the limit of {self.max_stanza_size} bytes",
            )

    def parse(self, data: bytes) -> None:
        """
        Parse C{data}, the next bytes of the stream.

        @raise XMLStreamError: for restricted or oversized input.
        @raise pyexpat.error: for input that is not well-formed.
        """
        # Keep the bytes of what is not finished yet, to find where a tag
        # that expat reports ends; they are bounded by the checks below.
        start = self.boundary if self.element_start is None else self.element_start
        keep = max(0, start - self.buffer_offset)
        self.buffer = self.buffer[keep:] + data
        self.buffer_offset += keep
        if self.bytes_fed < 4 and self.buffer_offset == 0:
            _check_first_bytes(self.buffer[:4])
        self.bytes_fed += len(data)
        self.parser.Parse(data)
        if self.element_start is not None:
            self.check_size(self.bytes_fed - self.element_start)
        else:
            # An unfinished header or start tag, or text outside any stanza.
            self.check_size(
                self.bytes_fed - self.boundary,
                "stream header" if self.depth == 0 else "stanza",
            )


class StreamParser:
    """
    Parse one XML stream incrementally.

    @param on_header: called with the stream's root element (its attributes
        and namespace declarations) once the header is complete.
    @param on_element: called with each complete first-level element.
    @param on_end: called when the peer closes the stream.
    @param max_stanza_size: the most bytes one first-level element (or the
        header) may take; more is a C{policy-violation}.
    @param max_depth: how deeply elements may nest inside a first-level
        element; deeper is a C{policy-violation} (before any recursion over
        the tree can run out of stack).
    @param shallow: C{(namespace, name)} of the first-level elements to
        deliver as L{ShallowStanza}s when their start tag declares no
        namespace: parsed and checked whole, built only as far as the start
        tag.
    """

    def __init__(
        self,
        on_header: Callable[[domish.Element], object],
        on_element: Callable[[domish.Element], object],
        on_end: Callable[[], object],
        max_stanza_size: int,
        max_depth: int = 64,
        shallow: AbstractSet[tuple[str, str]] = frozenset(),
    ) -> None:
        self._stream: _LimitedElementStream | None = _LimitedElementStream(
            self._header, self._element, self._end, max_stanza_size, max_depth, shallow
        )
        self._on_header = on_header
        self._on_element = on_element
        self._on_end = on_end
        self._max = max_stanza_size
        self._frozen: _Frozen | None = None
        self.closed = False

    def close(self) -> None:
        """
        Stop delivering events, even for bytes already being parsed.  The
        STARTTLS defence relies on this: nothing after C{<starttls/>} or
        C{<proceed/>} in the same read is ever acted on.
        """
        self.closed = True
        self._frozen = None
        if self._stream is not None:
            self._stream.release()

    def park(self) -> bool:
        """
        Put the expat parser away (about 10 KiB) while the stream is quiet
        between stanzas; the next L{feed} brings a new one, in the same
        state.  Not to be called from inside one of the callbacks.

        @return: whether it was put away (not when a stanza or a tag is
            half-read, before the header, or once closed).
        """
        if self.closed:
            return False
        if self._stream is None:
            return True
        if not self._stream.parkable():
            return False
        # Keep only what resuming needs (a tuple, not the whole object).
        self._frozen = self._stream.freeze()
        self._stream.release()
        self._stream = None
        return True

    @property
    def parked(self) -> bool:
        return self._stream is None

    @property
    def buffered(self) -> int:
        """
        How many bytes of the stream are held, not yet parsed into elements.
        """
        return 0 if self._stream is None else len(self._stream.buffer)

    def _thaw(self) -> _LimitedElementStream:
        frozen = self._frozen
        assert frozen is not None, "parked without its state"
        stream = _LimitedElementStream.thaw(frozen, self._header, self._element, self._end)
        self._frozen = None
        self._stream = stream
        return stream

    def _header(self, root: domish.Element) -> None:
        if not self.closed:
            self._on_header(root)

    def _element(self, element: domish.Element) -> None:
        if not self.closed:
            self._on_element(element)

    def _end(self) -> None:
        if not self.closed:
            self._on_end()

    def feed(self, data: bytes) -> None:
        """
        Parse C{data} (bytes).

        @raise XMLStreamError: for malformed, restricted or oversized input.
        """
        if self.closed:
            return
        try:
            stream = self._stream
            if stream is None:
                stream = self._thaw()
            stream.parse(data)
        except XMLStreamError:
            if self.closed:
                return
            raise
        except pyexpat.error as e:
            if self.closed:
                # What follows <starttls/> or <proceed/> is not ours to judge.
                return
            if "undefined entity" in str(e):
                raise XMLStreamError(
                    "restricted-xml", "entity references are not allowed in XMPP"
                ) from None
            if self._stream is not None and self._stream.encoding_error():
                # RFC 6120 section 4.9.3.22: bytes that break UTF-8's rules.
                raise XMLStreamError("unsupported-encoding", "the stream is not valid UTF-8") from None
            raise XMLStreamError("not-well-formed", str(e)) from None
