"""
What inbound and outbound server-to-server streams share: framing, the
stream header, stream errors and the state-machine dispatch.

Each concrete stream declares its negotiation as a table, C{TRANSITIONS},
mapping a state to the inputs it accepts, each with the L{Step}: the method
that handles it and the states it may leave the stream in.  An input that
is not in the table for the current state is refused with that state's
stream error: this is how, for instance, a stanza sent before TLS or before
authentication is ruled out by construction.  Moves made later, when an
answer comes back (the verifier chain's), are declared in C{LATER}.  The
dispatcher holds every handler to its step, and L{describe} writes the
machine out for the docs, which a test compares with the table.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar, cast

from twisted.internet import protocol
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IReactorTime,
    ISystemHandle,
    ITLSTransport,
)
from twisted.python.failure import Failure
from twisted.words.xish import domish
from zope.interface import implementer

from gateway.log import Logger
from gateway.tls.profile import tls_facts
from gateway.xmpp.errors import StreamError, XMLStreamError
from gateway.xmpp.parser import NS_XML, ShallowStanza, StreamParser, expand
from gateway.xmpp.stanzas import (
    NS_COMPONENT,
    NS_DIALBACK,
    NS_SASL,
    NS_SERVER,
    NS_SM,
    NS_STREAMS,
    NS_TLS,
    NS_XMPP_STREAMS,
    STANZA_NAMES,
    rewrite_namespace,
)

if TYPE_CHECKING:
    from gateway.names.srv import Target
    from gateway.records.record import AuthenticationRecord
    from gateway.s2s.continuity import CertificateChange
    from gateway.s2s.flow import ReadRate, Transport
    from gateway.tls.profile import TLSFacts

log = Logger()


class Input(enum.Enum):
    """
    What can arrive on a stream, as the state machines see it.
    """

    HEADER = "stream header"
    FEATURES = "stream features"
    STARTTLS = "starttls"
    PROCEED = "proceed"
    TLS_FAILURE = "starttls failure"
    DB_RESULT = "db:result"
    DB_VERIFY = "db:verify"
    SASL_AUTH = "SASL auth"
    SASL_SUCCESS = "SASL success"
    SASL_FAILURE = "SASL failure"
    SM_ENABLE = "stream management enable"
    SM_ENABLED = "stream management enabled"
    SM_FAILED = "stream management failed"
    SM_REQUEST = "stream management ack request"
    SM_ACK = "stream management ack"
    STANZA = "stanza"
    OTHER = "unsupported element"


_CLASSIFICATION = {
    (NS_STREAMS, "features"): Input.FEATURES,
    (NS_TLS, "starttls"): Input.STARTTLS,
    (NS_TLS, "proceed"): Input.PROCEED,
    (NS_TLS, "failure"): Input.TLS_FAILURE,
    (NS_DIALBACK, "result"): Input.DB_RESULT,
    (NS_DIALBACK, "verify"): Input.DB_VERIFY,
    (NS_SASL, "auth"): Input.SASL_AUTH,
    (NS_SASL, "success"): Input.SASL_SUCCESS,
    (NS_SASL, "failure"): Input.SASL_FAILURE,
    (NS_SM, "enable"): Input.SM_ENABLE,
    (NS_SM, "enabled"): Input.SM_ENABLED,
    (NS_SM, "failed"): Input.SM_FAILED,
    (NS_SM, "r"): Input.SM_REQUEST,
    (NS_SM, "a"): Input.SM_ACK,
}
for _name in STANZA_NAMES:
    _CLASSIFICATION[(NS_SERVER, _name)] = Input.STANZA


class Step(NamedTuple):
    """
    One row of a stream's C{TRANSITIONS}: the handler of an input, and the
    states it may leave the stream in (the stream may also be closed).
    """

    handler: Callable[[Any, domish.Element], None]
    targets: frozenset[enum.Enum]


def step(handler: Callable[[Any, Any], None], *targets: enum.Enum) -> Step:
    return Step(handler, frozenset(targets))


def describe(stream_class: type[S2SStream[Any]]) -> str:
    """
    The state machine of C{stream_class}, one line per move, as
    docs/architecture.md shows it: C{STATE --input--> NEXT | NEXT (handler)},
    then the moves made when an answer comes back.
    """
    lines = []
    for state, steps in stream_class.TRANSITIONS.items():
        if not steps:
            lines.append(f"{state.name} (waits for an answer)")
        for kind, (handler, targets) in steps.items():
            names = " | ".join(sorted(t.name for t in targets))
            lines.append(f"{state.name} --{kind.name}--> {names} ({handler.__name__})")
    for state, targets in stream_class.LATER.items():
        names = " | ".join(sorted(t.name for t in targets))
        lines.append(f"{state.name} --answer--> {names}")
    return "\n".join(lines)


def random_stream_id() -> str:
    """
    A fresh, unguessable stream id (RFC 6120 section 4.7.3).
    """
    return secrets.token_urlsafe(18)


def xmpp_version(text: str | None) -> tuple[int, int] | None:
    """
    The XMPP version C{text} names as C{(major, minor)}, two integers read
    separately with leading zeros ignored (RFC 6120 section 4.7.5), or
    L{None} for anything else (missing, C{abc}, C{-1.0}, C{1_0.0}).
    """
    parts = (text or "").split(".")
    if len(parts) != 2 or not all(part.isascii() and part.isdigit() for part in parts):
        return None
    return int(parts[0]), int(parts[1])


def check_version(root: domish.Element) -> None:
    """
    @raise StreamError: C{unsupported-version} unless the header C{root}
        says XMPP 1.0 or later.
    """
    version = xmpp_version(root.getAttribute("version"))
    if version is None or version < (1, 0):
        raise StreamError("unsupported-version", "XMPP version 1.0 is required")


#: Content namespaces of other kinds of streams (RFC 6120 section 4.8.2).
CLIENT_NAMESPACES = frozenset({"jabber:client", "jabber:component:accept"})
STANZA_NAMES = frozenset({"message", "presence", "iq"})


def classify(element: domish.Element) -> Input:
    """
    Return the L{Input} that C{element}, a first-level element of a
    C{jabber:server} stream, is.
    """
    return _CLASSIFICATION.get((element.uri, element.name), Input.OTHER)


def stream_error_element(
    condition: str, text: str | None = None, detail: domish.Element | None = None
) -> domish.Element:
    error = domish.Element((NS_STREAMS, "error"))
    error.addElement((NS_XMPP_STREAMS, condition))
    if text:
        # RFC 6120 section 4.9.2: the text SHOULD say its language.
        error.addElement((NS_XMPP_STREAMS, "text"), content=text)[(NS_XML, "lang")] = "en"
    if detail is not None:
        error.addChild(detail)
    return error


def header_bytes(attributes: Mapping[str, str | None], version: str | None = "1.0") -> bytes:
    """
    Serialise an opening stream header (RFC 6120 section 4.7) for a
    C{jabber:server} stream that also declares the dialback namespace.

    @param version: the C{version} attribute, or L{None} for none.
    """
    parts = [
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
        "xmlns:stream='http://etherx.jabber.org/streams' "
        "xmlns:db='jabber:server:dialback'"
        + (f" version='{version}'" if version is not None else "")
        + " xml:lang='en'"
    ]
    for name, value in attributes.items():
        if value is not None:
            parts.append(f" {name}='{domish.escapeToXml(value, isattrib=1)}'")
    parts.append(">")
    return "".join(parts).encode("utf-8")


def serialise(element: domish.Element) -> bytes:
    """
    Serialise a first-level element of a C{jabber:server} stream, with the
    stream's default namespace and the C{db:} prefix in scope.
    """
    return element.toXml(
        prefixes={NS_DIALBACK: "db", NS_STREAMS: "stream"},
        prefixesInScope=["db", "stream"],
        defaultUri=NS_SERVER,
    ).encode("utf-8")


def stanza_bytes(stanza: domish.Element) -> bytes:
    """
    The bytes of C{stanza} (from a C{jabber:server} or a
    C{jabber:component:accept} stream) on an outbound C{jabber:server}
    stream.  A shallow stanza whose bytes use no namespace declared outside
    them (C{contained}) and were not changed since they were read is sent as
    those bytes: whatever was in the component's default namespace is in the
    peer's, as L{rewrite_namespace} would make it.  Any other is built,
    moved to C{jabber:server} and serialised.
    """
    if isinstance(stanza, ShallowStanza) and stanza.contained:
        return stanza.raw
    return serialise(rewrite_namespace(expand(stanza), NS_COMPONENT, NS_SERVER))


#: The states of one kind of stream.
StateT = TypeVar("StateT", bound=enum.Enum)


@implementer(IHandshakeListener)
class S2SStream(protocol.Protocol, Generic[StateT]):
    """
    Base of L{InboundStream} and L{OutboundStream}.

    Subclasses define C{TRANSITIONS} (state → {L{Input}: L{Step}}),
    C{LATER} (state → the states an answer that comes back may move it to),
    C{REFUSAL} (state → stream error condition for inputs not in the table)
    and the initial C{state}.

    @ivar tls: the L{gateway.tls.profile.TLSFacts} once TLS is up, else L{None}.
    @ivar stream_id: the id of this stream as the receiving side named it.
    """

    direction: str
    #: Whether the connection is TLS from its first byte (XEP-0368).
    direct_tls = False
    #: Our domain on this stream: known from the start outbound, from the
    #: peer's header inbound.
    local_domain: str | None = None
    state: StateT
    #: The state from C{<proceed/>} to the restarted stream's header: the
    #: TLS handshake starts in it.
    TLS_STATE: StateT
    TRANSITIONS: Mapping[StateT, Mapping[Input, Step]] = {}
    LATER: Mapping[StateT, frozenset[StateT]] = {}
    REFUSAL: Mapping[StateT, str] = {}
    #: First-level elements delivered as L{gateway.xmpp.parser.ShallowStanza}s.
    SHALLOW: frozenset[tuple[str, str]] = frozenset()
    max_depth = 64
    #: Seconds to wait for the peer's part of closing before aborting.
    CLOSE_GRACE = 5.0
    #: A L{gateway.s2s.flow.ReadRate} limiting how fast this stream is read,
    #: or L{None}.
    read_rate: ReadRate | None = None

    # Slots for what every stream sets here: with its subclass's and
    # Twisted's attributes, a stream has more than the 30 an instance
    # dictionary can share keys for, and an unshared one costs over 1 KiB
    # per stream.
    __slots__ = (
        "max_stanza_size", "clock", "tls", "stream_id", "closed", "closing", "_parser",
        "stanzas_in", "stanzas_out", "last_activity", "_abort", "serial", "source", "since",
        "authentications", "certificate_change", "certificate_timer", "stalled_since",
        "stalled_from", "target",
    )

    def __init__(self, max_stanza_size: int, clock: IReactorTime) -> None:
        self.max_stanza_size = max_stanza_size
        self.clock = clock
        self.tls: TLSFacts | None = None
        self.stream_id: str | None = None
        self.closed = False
        # Our closing tag is sent; the peer's part is still awaited and what
        # it sends meanwhile still handled (RFC 6120 section 4.4).
        self.closing = False
        self._parser: StreamParser | None = None
        self.stanzas_in = 0
        self.stanzas_out = 0
        self.last_activity = clock.seconds()
        self._abort: IDelayedCall | None = None
        # What the owner's registry gives the stream when it is connected
        # (registered), and what verification leaves on it.
        self.serial: str | None = None
        self.source: str | None = None
        self.since: float | None = None
        self.authentications: list[AuthenticationRecord] = []
        self.certificate_change: CertificateChange | None = None
        self.certificate_timer: IDelayedCall | None = None
        #: Since when the peer has not read what we sent (outbound), or None.
        self.stalled_since: float | None = None
        self.stalled_from = 0
        #: The SRV target an outbound stream reached, or None.
        self.target: Target | None = None

    @property
    def connection(self) -> ITLSTransport:
        """
        The transport, as what it is once the stream is connected: a TCP
        connection that can start TLS (Twisted's L{ITransport} has neither).
        """
        return cast(ITLSTransport, self.transport)

    def _read_rate_transport(self) -> Transport:
        # Twisted's TCP and TLS transports are also the push producers and
        # consumers flow control pauses; no single interface says all that.
        return cast("Transport", self.transport)

    def registered(
        self, serial: str, source: str | None, since: float, read_rate: ReadRate | None
    ) -> None:
        """
        The owner counts this stream now.

        @param serial: the stream's name on the status page (C{s1}, ...).
        @param source: whom the connection counts against (an address, or
            an IPv6 /64), if known.
        @param since: when it was connected.
        @param read_rate: the L{gateway.s2s.flow.ReadRate} to read at, or
            L{None}.
        """
        self.serial = serial
        self.source = source
        self.since = since
        self.read_rate = read_rate

    # Framing -------------------------------------------------------------

    def reset_parser(self) -> None:
        """
        Start parsing a new stream (at the start, and after TLS).  The old
        parser, if any, delivers nothing more.
        """
        if self._parser is not None:
            self._parser.close()
        self._parser = StreamParser(
            self._on_header,
            self._on_element,
            self._on_stream_end,
            self.max_stanza_size,
            self.max_depth,
            self.SHALLOW,
        )

    def dataReceived(self, data: bytes) -> None:
        if self.closed or self._parser is None:
            # Closed, and only waiting for the peer's side (RFC 6120 section
            # 4.4): what still comes is read, at the stream's rate, and
            # dropped.
            if self.read_rate is not None and self.transport is not None:
                self.read_rate.spent(self._read_rate_transport(), len(data))
            return
        self.last_activity = self.clock.seconds()
        try:
            self._parser.feed(data)
        except XMLStreamError as e:
            self.fail(e.condition, e.text)
        except Exception:
            # A fault of ours: the peer still gets a stream error (RFC 6120
            # section 4.9.3.11), and the log the traceback.
            log.failure(
                "s2s {direction} {peer}: internal error handling what the peer sent",
                direction=self.direction,
                peer=self.peer_name(),
            )
            self.fail("internal-server-error")
        if self.read_rate is not None and not self.closed:
            self.read_rate.spent(self._read_rate_transport(), len(data))

    def park_parser(self) -> bool:
        """
        Put the parser away while the stream is quiet between stanzas (see
        L{StreamParser.park}).

        @return: whether it is put away.
        """
        if self.closed or self._parser is None:
            return False
        return self._parser.park()

    def send_header(self, version: str | None = "1.0", **attributes: str | None) -> None:
        self.connection.write(header_bytes(attributes, version))

    def send(self, element: domish.Element) -> None:
        if not (self.closed or self.closing):
            self.last_activity = self.clock.seconds()
            self.connection.write(serialise(element))

    def send_bytes(self, data: bytes) -> None:
        """
        Send a first-level element serialised already (by L{serialise}).
        """
        if not (self.closed or self.closing):
            self.last_activity = self.clock.seconds()
            self.connection.write(data)

    # Dispatch ------------------------------------------------------------

    def _on_header(self, root: domish.Element) -> None:
        self._dispatch(Input.HEADER, root)

    def _on_element(self, element: domish.Element) -> None:
        if (element.uri, element.name) == (NS_STREAMS, "error"):
            self.stream_error_received(element)
            return
        self._dispatch(classify(element), element)

    def _dispatch(self, kind: Input, element: domish.Element) -> None:
        if self.closed:
            return
        entry = self.TRANSITIONS.get(self.state, {}).get(kind)
        try:
            if entry is None:
                raise self.refusal(kind, element)
            before = self.state
            entry.handler(self, element)
        except StreamError as e:
            self.fail(e.condition, e.text, e.detail)
            return
        if not self.closed and self.state not in entry.targets:
            # A move the table doesn't declare: a fault of ours.
            log.error(
                "s2s {direction} {peer}: {handler} moved the stream from {before} to {after}, "
                "which its table does not allow",
                direction=self.direction,
                peer=self.peer_name(),
                handler=entry.handler.__name__,
                before=before.name,
                after=self.state.name,
            )
            self.fail("internal-server-error")

    def refusal(self, kind: Input, element: domish.Element) -> StreamError:
        """
        The L{StreamError} for a first-level element of C{kind} that the
        current state does not take.
        """
        if kind is Input.OTHER:
            if element.uri in CLIENT_NAMESPACES and element.name in STANZA_NAMES:
                # RFC 6120 section 4.8.2: a content namespace this stream
                # does not carry.
                return StreamError(
                    "invalid-namespace", f"{element.uri} stanzas on a jabber:server stream"
                )
            return StreamError("unsupported-stanza-type", f"{kind.value} is not allowed now")
        return StreamError(
            self.REFUSAL.get(self.state, "policy-violation"), f"{kind.value} is not allowed now"
        )

    def _on_stream_end(self) -> None:
        if self.closing:
            # The peer's part of the close we started: the stream is done.
            self._let_go()
            return
        self.close()

    def stream_error_received(self, element: domish.Element) -> None:
        condition = next(
            (c.name for c in element.elements() if c.uri == NS_XMPP_STREAMS and c.name != "text"),
            "undefined-condition",
        )
        log.info(
            "s2s {direction} {peer}: peer sent stream error {condition}",
            direction=self.direction,
            peer=self.peer_name(),
            condition=condition,
        )
        self.stream_failed(condition, "peer sent a stream error")
        # RFC 6120 section 4.9.1.1: the receiving side closes the stream too.
        self.close()

    # TLS -----------------------------------------------------------------

    def start_tls(
        self, creator: IOpenSSLServerConnectionCreator | IOpenSSLClientConnectionCreator
    ) -> None:
        """
        Switch the transport to TLS.  Nothing parsed from before the switch
        is acted on afterwards: the parser is replaced first.
        """
        self.reset_parser()
        self.connection.startTLS(creator)

    @property
    def over_tls(self) -> bool:
        """
        Whether the connection has switched to TLS, or is switching: TLS
        from the first byte, a handshake completed, or one under way since
        C{<proceed/>} (the stream leaves L{TLS_STATE} only with the header
        that the finished handshake lets through).
        """
        return self.direct_tls or self.tls is not None or self.state is self.TLS_STATE

    @property
    def tls_negotiating(self) -> bool:
        """
        Whether a TLS handshake has begun and not finished: nothing written
        now would reach the peer before it completes.
        """
        return self.over_tls and self.tls is None

    def handshakeCompleted(self) -> None:
        if self.closed:
            # Failed while the handshake went on: nothing more is sent.
            return
        self.tls = tls_facts(cast(ISystemHandle, self.transport))
        self.tls_established()

    def tls_established(self) -> None:
        """
        Hook for subclasses: the TLS handshake completed.
        """

    # Closing -------------------------------------------------------------

    def fail(
        self, condition: str, text: str | None = None, detail: domish.Element | None = None
    ) -> None:
        """
        Send stream error C{condition} (with the application-specific
        C{detail} element, if any) and close the stream.
        """
        if self.closed:
            return
        log.info(
            "s2s {direction} {peer}: closing with stream error {condition}: {text}",
            direction=self.direction,
            peer=self.peer_name(),
            condition=condition,
            text=text or "",
        )
        if self.closing or self.tls_negotiating:
            # Our closing tag is out: nothing may follow it.  Or TLS is being
            # negotiated: RFC 6120 section 5.4.3.2 closes the connection
            # without XML (what was written now would only be sent after a
            # handshake, on a stream that has no header yet).
            self.stream_failed(condition, text)
            self._let_go()
            return
        if self.state_needs_header():
            # RFC 6120 sections 4.7 and 4.9.1.3: a response header has an id,
            # and a from, which is empty when the peer's to is not known.
            self.send_header(**{"from": "", "id": random_stream_id()})
        self.connection.write(serialise(stream_error_element(condition, text, detail)))
        self.stream_failed(condition, text)
        self.close()

    def state_needs_header(self) -> bool:
        """
        Whether no stream header has been sent yet on the current stream, so
        that a header must precede a stream error (RFC 6120 section 4.9.1.2).
        """
        return False

    def close(self, send_footer: bool = True, linger: bool = False) -> None:
        """
        Close the stream and, shortly after, the connection.

        @param linger: close as RFC 6120 section 4.4 describes: send our
            closing tag, then go on reading (and handling what the peer
            still sends, such as stanzas that crossed our closing tag) until
            the peer closes its side or L{CLOSE_GRACE} seconds pass.
            Otherwise (after a stream error, or answering the peer's own
            closing tag) nothing more is read.
        """
        if self.closed:
            return
        if self.closing:
            # Closing already: a second close (the peer's stream error, our
            # own failure) ends the wait.
            self._let_go()
            return
        if linger and send_footer:
            self.closing = True
            self.connection.write(b"</stream:stream>")
            self.closing_started()
            self._abort = self.clock.callLater(self.CLOSE_GRACE, self._grace_ended)
            return
        if send_footer:
            self.connection.write(b"</stream:stream>")
        self._let_go()

    def closing_started(self) -> None:
        """
        Hook for subclasses: our closing tag is sent; nothing more will be.
        """

    def _grace_ended(self) -> None:
        self._abort = None
        log.info(
            "s2s {direction} {peer}: the peer did not close its side in time",
            direction=self.direction,
            peer=self.peer_name(),
        )
        self._let_go()

    def _let_go(self) -> None:
        """
        Read nothing more; close the connection, and abort it if the peer
        has not closed within L{CLOSE_GRACE} seconds.
        """
        if self.closed:
            return
        self.closed = True
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        if self._parser is not None:
            self._parser.close()
        half_close = getattr(self.transport, "loseWriteConnection", None)
        if half_close is not None and not self.over_tls:
            # Plain TCP: end our direction only (FIN after what is buffered)
            # and read on until the peer closes its own.  Closing a socket
            # with unread bytes would answer with a reset, and a reset can
            # overtake a stream error still on its way to the peer.
            half_close()
        else:
            self.connection.loseConnection()
        # RFC 6120 section 4.4: wait a reasonable time for the peer's side of
        # the close (its closing tag and end of the connection; over TLS, its
        # close_notify; before a TLS handshake, nothing can be flushed at
        # all), then let go of the connection.
        self._abort = self.clock.callLater(self.CLOSE_GRACE, self._abort_connection)

    def _abort_connection(self) -> None:
        self._abort = None
        log.info(
            "s2s {direction} {peer}: connection not closed by the peer in time; aborting",
            direction=self.direction,
            peer=self.peer_name(),
        )
        self.connection.abortConnection()

    def stream_failed(self, condition: str, text: str | None) -> None:
        """
        Hook for subclasses: the stream is ending with C{condition}.
        """

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.closed = True
        if self.read_rate is not None:
            self.read_rate.stop()
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        self._abort = None
        if self._parser is not None:
            self._parser.close()
        self.stream_closed(reason)

    def stream_closed(self, reason: Failure) -> None:
        """
        Hook for subclasses: the connection is gone.
        """

    @property
    def authenticated(self) -> bool:
        """
        Whether the stream carries stanzas for at least one domain pair.
        """
        raise NotImplementedError()

    def peer_name(self) -> str:
        raise NotImplementedError()

    def peer_address(self) -> str:
        """
        The peer's address on this stream's connection, as C{host:port}.
        """
        peer = self.connection.getPeer()
        return f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
