"""
One hierarchy for XMPP error conditions: every error the gateway raises
to say "answer with this condition" is an L{XMPPError}.

  - L{StreamError}: a stream error to send before closing (RFC 6120
    section 4.9), and L{XMLStreamError} for what the parser refuses;
  - L{DialbackError}: a dialback verification that could not be completed,
    answered with a C{db:result} error (XEP-0220 section 2.4);
  - L{gateway.s2s.outbound.NegotiationFailure}: an outbound stream that
    could not be set up, whose condition the waiting stanzas bounce with.
"""

from twisted.words.xish import domish


class XMPPError(Exception):
    """
    An XMPP error condition, with a description.

    @ivar condition: the condition's element name (RFC 6120 sections 4.9.3
        and 8.3.3).
    @ivar text: a description for the peer and the log, or L{None}.
    """

    def __init__(self, condition: str, text: str | None = None) -> None:
        super().__init__(condition, text)
        self.condition = condition
        self.text = text

    def __str__(self) -> str:
        return f"{self.condition}: {self.text}" if self.text else self.condition


class StreamError(XMPPError):
    """
    An RFC 6120 section 4.9 stream error to send before closing.

    @ivar detail: an application-specific condition element (RFC 6120
        section 4.9.4), or L{None}.
    """

    def __init__(
        self, condition: str, text: str | None = None, detail: domish.Element | None = None
    ) -> None:
        super().__init__(condition, text)
        self.detail = detail


class XMLStreamError(StreamError):
    """
    The bytes fed do not make an acceptable XML stream.
    """


class DialbackError(XMPPError):
    """
    A dialback verification could not be completed; C{condition} is the
    stanza error condition for the C{db:result} error reply (XEP-0220
    section 2.4).
    """
