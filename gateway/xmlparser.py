"""
The one seam through which stream bytes become XML: an incremental parser
for one XML stream (RFC 6120 section 4), with limits.

Protocols feed it bytes and get three callbacks: the stream header, each
complete first-level element, and the end of the stream.  Anything wrong
comes out as L{XMLStreamError} carrying the RFC 6120 stream error
condition to answer with.  RFC 6120 section 11.1 restricted XML (comments,
processing instructions, DTDs, entity declarations) is refused here.
"""

from twisted.words.xish import domish


class XMLStreamError(Exception):
    """
    The bytes fed do not make an acceptable XML stream.

    @ivar condition: the RFC 6120 stream error condition.
    @ivar text: a description for the peer and the log.
    """

    def __init__(self, condition, text):
        super().__init__(condition, text)
        self.condition = condition
        self.text = text


class _LimitedElementStream(domish.ExpatElementStream):
    def __init__(self, max_stanza_size):
        super().__init__()
        self.maxStanzaSize = max_stanza_size
        parser = self.parser
        parser.CommentHandler = self._restricted("comments")
        parser.ProcessingInstructionHandler = self._restricted("processing instructions")
        parser.StartDoctypeDeclHandler = self._restricted("document type declarations")
        parser.EntityDeclHandler = self._restricted("entity declarations")
        parser.DefaultHandler = self._default
        # Never fetch or expand external entities.
        parser.SetParamEntityParsing(0)

    @staticmethod
    def _restricted(what):
        def refuse(*args):
            raise XMLStreamError("restricted-xml", f"{what} are not allowed in XMPP")

        return refuse

    def _default(self, data):
        # Expat hands undeclared entity references (and nothing else we let
        # through) to the default handler.
        if data.startswith("&"):
            raise XMLStreamError("restricted-xml", "entity references are not allowed in XMPP")


class StreamParser:
    """
    Parse one XML stream incrementally.

    @param on_header: called with the stream's root element (its attributes
        and namespace declarations) once the header is complete.
    @param on_element: called with each complete first-level element.
    @param on_end: called when the peer closes the stream.
    @param max_stanza_size: the most bytes one first-level element (or the
        header) may take; more is a C{policy-violation}.
    """

    def __init__(self, on_header, on_element, on_end, max_stanza_size):
        self._stream = _LimitedElementStream(max_stanza_size)
        self._stream.DocumentStartEvent = self._header
        self._stream.ElementEvent = self._element
        self._stream.DocumentEndEvent = self._end
        self._on_header = on_header
        self._on_element = on_element
        self._on_end = on_end
        self._max = max_stanza_size
        self.closed = False

    def close(self):
        """
        Stop delivering events, even for bytes already being parsed.  The
        STARTTLS defence relies on this: nothing after C{<starttls/>} or
        C{<proceed/>} in the same read is ever acted on.
        """
        self.closed = True

    def _header(self, root):
        if not self.closed:
            self._on_header(root)

    def _element(self, element):
        if not self.closed:
            self._on_element(element)

    def _end(self):
        if not self.closed:
            self._on_end()

    def feed(self, data):
        """
        Parse C{data} (bytes).

        @raise XMLStreamError: for malformed, restricted or oversized input.
        """
        if self.closed:
            return
        try:
            self._stream.parse(data)
        except domish.ParserError as e:
            if "Maximum" in str(e):
                raise XMLStreamError(
                    "policy-violation",
                    f"stanza larger than the limit of {self._max} bytes",
                ) from None
            raise XMLStreamError("not-well-formed", str(e)) from None
