"""
Outbound server-to-server streams: the gateway as initiating server.

Two kinds, by C{purpose}:

  - L{Purpose.DIALBACK}: a stream that carries stanzas from one local domain
    to one peer domain, authenticated by dialback (XEP-0220) with an
    XEP-0185 key;
  - L{Purpose.VERIFY}: a short-lived stream to a peer's authoritative
    server to ask, with C{db:verify}, whether a key it sent us is genuine.

Negotiation, as a state machine:

  - C{HEADER}: awaiting the peer's stream header (before TLS, or after it
    for the restarted stream);
  - C{FEATURES}: awaiting stream features.  C{<starttls/>} is sent even
    when not advertised (RFC 7590 section 3.1); only a policy that allows
    plaintext for the peer lets the stream go on without TLS;
  - C{PROCEED}: awaiting C{<proceed/>};
  - C{TLS}: handshaking; nothing is accepted until the new header;
  - C{VERIFYING}: the verifier chain decides who the peer is;
  - C{SASL}: awaiting the answer to SASL EXTERNAL;
  - C{SASL_RESTART}, C{SASL_FEATURES}: after SASL success, awaiting the
    restarted stream's header, then its features, on which the stream is
    authenticated;
  - C{DIALBACK}: awaiting the C{db:result} or C{db:verify} answer;
  - C{AUTHENTICATED}: stanzas may be sent.
"""

from __future__ import annotations

import base64
import enum
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.python.failure import Failure
from twisted.words.xish import domish

from gateway.log import Logger
from gateway.s2s.dialback import dialback_key
from gateway.s2s.flow import send_at_once
from gateway.s2s.interfaces import IOutboundStreamOwner
from gateway.s2s.stream import Input, S2SStream, StreamError, check_version, stanza_bytes, step
from gateway.xmpp.errors import XMPPError
from gateway.xmpp.jid import AddressError, bare_domain, parse_jid
from gateway.xmpp.stanzas import (
    NS_DIALBACK,
    NS_SASL,
    NS_SERVER,
    NS_SM,
    NS_STREAMS,
    error_condition,
)

if TYPE_CHECKING:
    from gateway.names.srv import Target
    from gateway.s2s.connector import VerifyRequest
    from gateway.verifiers.chain import ChainResult

log = Logger()

#: A stanza as sent, and whether it was being sent for the second time.
Sent = tuple[bytes, bool]


class Purpose(enum.Enum):
    DIALBACK = "dialback"
    VERIFY = "verify"


class OutboundState(enum.Enum):
    HEADER = "awaiting stream header"
    FEATURES = "awaiting stream features"
    PROCEED = "awaiting proceed"
    TLS = "TLS negotiating"
    VERIFYING = "verifying the peer"
    SASL = "awaiting the SASL answer"
    SASL_RESTART = "SASL done, awaiting stream header"
    SASL_FEATURES = "SASL done, awaiting stream features"
    DIALBACK = "awaiting dialback answer"
    AUTHENTICATED = "authenticated"


class Stage(enum.IntEnum):
    """
    How far an attempt to reach a peer got before it failed: the further,
    the more telling its failure is of the peer (rather than of one of its
    addresses).
    """

    DNS = 0
    CONNECT = 1
    STREAM = 2
    VERIFY = 3
    ANSWER = 4


class NegotiationFailure(XMPPError):
    """
    An outbound stream could not be set up.

    @ivar condition: the stanza error condition for bouncing what waited
        for it (RFC 6120 section 8.3.3).
    @ivar tls_refused: the peer refused or ignored STARTTLS, so a retry in
        plaintext could succeed where policy allows it.
    @ivar stage: the L{Stage} the attempt reached.
    @ivar final: the peer's domain answered for itself (a dialback
        verdict): trying its other addresses would get the same answer.
    """

    def __init__(
        self,
        condition: str,
        text: str,
        tls_refused: bool = False,
        stage: Stage = Stage.STREAM,
        final: bool = False,
    ) -> None:
        super().__init__(condition, text)
        self.tls_refused = tls_refused
        self.stage = stage
        self.final = final


class OutboundStream(S2SStream[OutboundState]):
    """
    One outbound s2s stream.

    @ivar ready: fires, for L{Purpose.DIALBACK}, with this stream once it
        is authenticated; for L{Purpose.VERIFY}, with whether the key is
        valid.  Fails with L{NegotiationFailure}.
    """

    direction = "outbound"
    state = OutboundState.HEADER

    REFUSAL: dict[OutboundState, str] = {}
    TLS_STATE = OutboundState.TLS

    def __init__(
        self,
        federation: IOutboundStreamOwner,
        local_domain: str,
        peer_domain: str,
        purpose: Purpose = Purpose.DIALBACK,
        attempt_tls: bool = True,
        direct_tls: bool = False,
        verify_request: VerifyRequest | None = None,
        target: Target | None = None,
    ) -> None:
        self.max_depth = federation.max_depth
        super().__init__(federation.max_stanza_size, federation.clock)
        self.federation = federation
        self.local_domain: str = local_domain
        self.peer_domain = peer_domain
        self.purpose = purpose
        self.attempt_tls = attempt_tls
        self.direct_tls = direct_tls
        self.verify_request = verify_request
        self.ready: defer.Deferred[OutboundStream | bool] | None = defer.Deferred(self._cancel)
        self.authentication = None
        self._offers_external = False
        self._peer_result: ChainResult | None = None
        self._checking: defer.Deferred[ChainResult] | None = None
        self._offers_sm = False
        self.unacked: list[Sent] | None = None
        self.acked = 0
        self.sm_enabled = False
        self._ack_timer: IDelayedCall | None = None
        self._ack_deadline: IDelayedCall | None = None
        self._silence: IDelayedCall | None = None
        self.unacked_bytes = 0
        self.bytes_out = 0
        self.target = target

    def sink_full(self) -> None:
        """
        The peer stopped reading: our send buffer is full.
        """
        if self.stalled_since is None:
            self.stalled_since = self.clock.seconds()
            self.stalled_from = self.bytes_out

    def sink_drained(self) -> None:
        self.stalled_since = None

    def _cancel(self, ready: defer.Deferred[OutboundStream | bool]) -> None:
        self.ready = None
        self.close()

    @property
    def authenticated(self) -> bool:
        return self.state is OutboundState.AUTHENTICATED

    def peer_name(self) -> str:
        return self.peer_domain

    def connectionMade(self) -> None:
        send_at_once(self)
        self.reset_parser()
        self.federation.stream_opened(self)
        self._watch_silence()
        if not self.direct_tls:
            self._send_stream_header()

    # A peer that accepts the connection and then says nothing (overloaded,
    # a broken proxy in front of it) would hold the whole route until its
    # deadline; an attempt that hears nothing for the connect timeout while
    # the peer owes an answer (its header, features, proceed, the TLS
    # handshake) fails, and the next address or target is tried.  While
    # the verifier chain runs, or the peer checks our dialback key (calling
    # us back), only the route's own deadline applies.

    PROMPT_STATES = frozenset({
        OutboundState.HEADER, OutboundState.FEATURES, OutboundState.PROCEED, OutboundState.TLS,
        OutboundState.SASL_RESTART, OutboundState.SASL_FEATURES,
    })

    def _watch_silence(self) -> None:
        self._silence = self.clock.callLater(
            self.federation.connect_timeout, self._silent_too_long
        )

    def _silent_too_long(self) -> None:
        self._silence = None
        if self.closed or self.authenticated:
            return
        if self.state not in self.PROMPT_STATES:
            self._watch_silence()
            return
        self.fail(
            "connection-timeout",
            f"nothing from the peer for {self.federation.connect_timeout:g}s while "
            f"{self.state.value}",
        )

    def _stop_watching(self) -> None:
        if self._silence is not None and self._silence.active():
            self._silence.cancel()
        self._silence = None

    def dataReceived(self, data: bytes) -> None:
        if self._silence is not None and self._silence.active():
            self._silence.reset(self.federation.connect_timeout)
        super().dataReceived(data)

    def tls_established(self) -> None:
        self._send_stream_header()

    def _send_stream_header(self) -> None:
        self.send_header(**{"from": self.local_domain, "to": self.peer_domain})

    # Negotiation ---------------------------------------------------------

    def receive_header(self, root: domish.Element) -> None:
        self._check_header(root)
        self.state = OutboundState.FEATURES

    def receive_header_after_sasl(self, root: domish.Element) -> None:
        self._check_header(root)
        self.state = OutboundState.SASL_FEATURES

    def _check_header(self, root: domish.Element) -> None:
        if (root.uri, root.name) != (NS_STREAMS, "stream") or root.defaultUri != NS_SERVER:
            raise StreamError("invalid-namespace", "not a jabber:server stream")
        check_version(root)
        # A header without an id is wrong (RFC 6120 section 4.7.3), but a
        # server refusing us sends one before its stream error: hear that
        # error out, and refuse only a stream that goes on without an id.
        self.stream_id = root.getAttribute("id")

    def _check_stream_id(self) -> None:
        if not self.stream_id:
            raise StreamError("invalid-xml", "the stream header has no id")

    def receive_features(self, features: domish.Element) -> None:
        self._check_stream_id()
        if self.tls is None and self.attempt_tls:
            # RFC 7590 section 3.1: attempt TLS whether or not it is offered.
            self.connection.write(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            self.state = OutboundState.PROCEED
            return
        if self.purpose is Purpose.VERIFY:
            request = self.verify_request
            assert request is not None  # a verify stream is made with one
            verify = domish.Element((NS_DIALBACK, "verify"))
            verify["from"] = self.local_domain
            verify["to"] = self.peer_domain
            verify["id"] = request.stream_id
            verify.addContent(request.key)
            self.state = OutboundState.DIALBACK
            self.send(verify)
            return
        self._offers_sm = any(True for _ in features.elements(NS_SM, "sm"))
        self._offers_external = any(
            str(mechanism).strip() == "EXTERNAL"
            for mechanisms in features.elements(NS_SASL, "mechanisms")
            for mechanism in mechanisms.elements(NS_SASL, "mechanism")
        )
        # Who is the peer?  The verifier chain decides before we say who we are.
        self.state = OutboundState.VERIFYING
        d = self.federation.verify_peer("outbound", self.local_domain, self.peer_domain, self)
        self._checking = d
        d.addCallback(self._peer_checked)
        d.addErrback(
            lambda f: None if f.check(defer.CancelledError)
            else log.failure("verifying {peer}", f, peer=self.peer_domain)
        )

    def _peer_checked(self, result: ChainResult) -> None:
        self._checking = None
        if self.closed:
            return
        if not result.authenticated:
            self.federation.authentication_refused(
                self, "outbound", self.local_domain, self.peer_domain, result
            )
            self._give_up(NegotiationFailure(
                "remote-server-not-found",
                f"{self.peer_domain} could not be verified: {result.reason}",
                stage=Stage.VERIFY,
            ))
            self.fail("policy-violation", f"{self.peer_domain} could not be verified")
            return
        self._peer_result = result
        if self._offers_external:
            # XEP-0178 section 3: our certificate speaks for us, and the
            # authzid (RFC 6120 section 6.4.2) says for which of our domains.
            self.state = OutboundState.SASL
            authzid = base64.b64encode(self.local_domain.encode("utf-8")).decode("ascii")
            self.connection.write(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
                f"{authzid}</auth>".encode("ascii")
            )
        else:
            self._send_dialback_key()

    def _send_dialback_key(self) -> None:
        # Proving our own identity by dialback is always possible: the trust
        # policy governs how we verify the peer, which happened already.
        self.state = OutboundState.DIALBACK
        assert self.stream_id is not None  # receive_features refuses a stream without
        result = domish.Element((NS_DIALBACK, "result"))
        result["from"] = self.local_domain
        result["to"] = self.peer_domain
        result.addContent(
            dialback_key(
                self.federation.dialback_secret,
                self.peer_domain,
                self.local_domain,
                self.stream_id,
            )
        )
        self.send(result)

    def receive_sasl_success(self, element: domish.Element) -> None:
        # RFC 6120 section 6.4.6: restart the stream.
        self.state = OutboundState.SASL_RESTART
        self.reset_parser()
        self._send_stream_header()

    def receive_features_after_sasl(self, features: domish.Element) -> None:
        self._check_stream_id()
        self._offers_sm = any(True for _ in features.elements(NS_SM, "sm"))
        self._authenticated("SASL EXTERNAL")

    def receive_sasl_failure(self, element: domish.Element) -> None:
        condition = next((c.name for c in element.elements()), "not-authorized")
        log.info(
            "s2s outbound {peer}: SASL EXTERNAL refused ({condition}); trying dialback",
            peer=self.peer_domain,
            condition=condition,
        )
        self._send_dialback_key()

    def _authenticated(self, via: str) -> None:
        self._stop_watching()
        self.state = OutboundState.AUTHENTICATED
        # The chain accepted the peer before we said who we are.
        assert self._peer_result is not None
        self.federation.stream_authenticated(
            self, self.peer_domain, self.local_domain, self._peer_result, via
        )
        if self._offers_sm:
            # XEP-0198: ask for acknowledgements, so that what the peer never
            # handled can be sent again if the connection drops.  Counting
            # starts now: the peer counts from our <enable/>.
            self.send(domish.Element((NS_SM, "enable")))
            self.unacked = []
            self.acked = 0
        ready, self.ready = self.ready, None
        if ready is not None:
            ready.callback(self)

    # Stream management (XEP-0198), as the sending side ----------------------

    #: Ask for an acknowledgement after this many unacknowledged stanzas,
    #: and at the latest this many seconds after the last one.
    SM_REQUEST_EVERY = 100
    SM_REQUEST_AFTER = 0

    def receive_sm_enabled(self, element: domish.Element) -> None:
        self.sm_enabled = True

    def receive_sm_failed(self, element: domish.Element) -> None:
        # Nothing is counted after all; what was sent can't be accounted for.
        log.info("s2s outbound {peer}: stream management refused", peer=self.peer_domain)
        self.unacked = None
        self.unacked_bytes = 0
        if self._ack_deadline is not None and self._ack_deadline.active():
            self._ack_deadline.cancel()
        self._ack_deadline = None

    def receive_sm_ack(self, element: domish.Element) -> None:
        if self.unacked is None:
            raise StreamError("unsupported-stanza-type", "stream management is not enabled")
        try:
            handled = int(element.getAttribute("h", ""))
        except ValueError:
            raise StreamError("invalid-xml", "an acknowledgement needs a numeric h") from None
        newly = (handled - self.acked) % 2**32
        if newly > len(self.unacked):
            # XEP-0198 section 4: undefined-condition, said precisely.
            detail = domish.Element((NS_SM, "handled-count-too-high"))
            detail["h"] = str(handled)
            detail["send-count"] = str((self.acked + len(self.unacked)) % 2**32)
            raise StreamError(
                "undefined-condition", "acknowledged stanzas that were never sent", detail
            )
        self.unacked_bytes -= sum(len(data) for data, _ in self.unacked[:newly])
        del self.unacked[:newly]
        self.acked = handled
        if self._ack_deadline is not None and self._ack_deadline.active():
            if self.unacked:
                # Progress: the peer reads; it has the stall timeout again.
                self._ack_deadline.reset(self.federation.stalled_timeout)
            else:
                self._ack_deadline.cancel()
                self._ack_deadline = None

    def _request_ack(self) -> None:
        self._ack_timer = None
        if not self.closed and not self.closing and self.unacked:
            self.connection.write(b"<r xmlns='urn:xmpp:sm:3'/>")
            if self._ack_deadline is None or not self._ack_deadline.active():
                self._ack_deadline = self.clock.callLater(
                    self.federation.stalled_timeout, self._ack_overdue
                )

    def _ack_overdue(self) -> None:
        """
        The peer acknowledged nothing for the stall timeout although asked:
        it is not handling what we send.  Close the stream; what it never
        acknowledged is sent once more on a new one (L{stream_closed}).
        """
        self._ack_deadline = None
        if self.unacked and not self.closed:
            self.fail(
                "connection-timeout",
                f"{len(self.unacked)} stanzas ({self.unacked_bytes} bytes) not acknowledged "
                f"for {self.federation.stalled_timeout:g}s",
            )

    def receive_proceed(self, element: domish.Element) -> None:
        self.state = OutboundState.TLS
        self.start_tls(
            self.federation.tls_profile.client_creator(self.local_domain, self.peer_domain)
        )

    def receive_tls_failure(self, element: domish.Element) -> None:
        self._give_up(NegotiationFailure(
            "remote-server-not-found", "the peer refused STARTTLS", tls_refused=True
        ))
        self.close()

    def _dialback_answer(self, element: domish.Element) -> bool | None:
        kind = element.getAttribute("type")
        try:
            pair = (bare_domain(element.getAttribute("from")), bare_domain(element.getAttribute("to")))
        except AddressError:
            pair = None
        if pair != (self.peer_domain, self.local_domain):
            raise StreamError("invalid-from", "the dialback answer is for another domain pair")
        if kind == "error":
            # XEP-0220 section 2.1.1: an error is about the request, not the
            # key; what waited is returned with remote-server-timeout.
            condition = error_condition(element) or "undefined-condition"
            self._give_up(NegotiationFailure(
                "remote-server-timeout",
                f"the peer answered dialback with the error {condition}",
                stage=Stage.ANSWER,
                final=True,
            ))
            self.close()
            return None
        if kind not in ("valid", "invalid"):
            raise StreamError("invalid-xml", "a dialback answer needs a type")
        return kind == "valid"

    def receive_db_result(self, element: domish.Element) -> None:
        if self.purpose is not Purpose.DIALBACK:
            raise StreamError("unsupported-stanza-type", "no db:result was sent on this stream")
        valid = self._dialback_answer(element)
        if valid is None:
            return
        if not valid:
            # XEP-0220 section 2.1.1: our identity was deemed bogus; what
            # waited is returned with internal-server-error.
            self._give_up(NegotiationFailure(
                "internal-server-error",
                "the peer did not accept our dialback key",
                stage=Stage.ANSWER,
                final=True,
            ))
            self.close()
            return
        self._authenticated("dialback")

    def receive_db_verify(self, element: domish.Element) -> None:
        if self.purpose is not Purpose.VERIFY:
            raise StreamError("unsupported-stanza-type", "no db:verify was sent on this stream")
        assert self.verify_request is not None  # a verify stream is made with one
        if element.getAttribute("id") != self.verify_request.stream_id:
            # invalid-id was RFC 3920's; RFC 6120 has invalid-xml for it.
            raise StreamError("invalid-xml", "the db:verify answer names another stream")
        valid = self._dialback_answer(element)
        if valid is None:
            return
        ready, self.ready = self.ready, None
        if ready is not None:
            ready.callback(valid)
        self.close()

    # Stanzas -------------------------------------------------------------

    def receive_error_reply(self, stanza: domish.Element) -> None:
        """
        An error stanza the peer sent back on the stream we opened.

        Streams between servers carry stanzas one way (RFC 6120 section
        4.4), but some servers (ejabberd among them) answer a stanza they
        can't take, say one whose address their stringprep refuses, on the
        stream it came in on.  The answer is routed like one on the peer's
        own stream: it is from the domain this stream verified, to ours, and
        an error is never answered, so nothing can loop.  Anything else is
        still refused.
        """
        if stanza.getAttribute("type") != "error":
            raise StreamError(
                "policy-violation", "only error replies are accepted on a stream we opened"
            )
        try:
            sender, recipient = parse_jid(stanza.getAttribute("from")), parse_jid(stanza.getAttribute("to"))
        except AddressError as e:
            raise StreamError("improper-addressing", f"{stanza.name}: {e}") from None
        if (sender.domain, recipient.domain) != (self.peer_domain, self.local_domain):
            raise StreamError(
                "invalid-from", f"this stream is from {self.peer_domain} to {self.local_domain}"
            )
        self.stanzas_in += 1
        if not (sender.canonical and recipient.canonical):
            stanza["from"], stanza["to"] = sender.full(), recipient.full()
        self.federation.router.route_from_s2s(stanza, sender.domain, recipient.domain)

    def send_stanza(self, stanza: domish.Element) -> None:
        """
        Send C{stanza} (in C{jabber:server} or C{jabber:component:accept})
        on this authenticated stream.  What the peer has yet to acknowledge
        (XEP-0198) is kept as the bytes sent, not as the tree, with whether
        it is being sent for the second time (C{stanza.resent}).
        """
        self.send_serialised(stanza_bytes(stanza), getattr(stanza, "resent", False))

    def send_serialised(self, data: bytes, resent: bool = False) -> None:
        """
        Send a stanza serialised already (by L{serialise}, in
        C{jabber:server}); C{resent}: whether it is sent for the second time.
        """
        self.stanzas_out += 1
        self.bytes_out += len(data)
        self.send_bytes(data)
        if self.unacked is not None:
            self.unacked.append((data, resent))
            self.unacked_bytes += len(data)
            if len(self.unacked) % self.SM_REQUEST_EVERY == 0:
                self._request_ack()
            elif self._ack_timer is None:
                self._ack_timer = self.clock.callLater(self.SM_REQUEST_AFTER, self._request_ack)

    # Closing ---------------------------------------------------------------

    def _give_up(self, failure: NegotiationFailure) -> None:
        if self.ready is not None:
            ready, self.ready = self.ready, None
            ready.errback(failure)

    def _ended_condition(self) -> tuple[str, Stage]:
        # XEP-0220 section 2.1.1: a stream that ends while our key waits for
        # its answer counts as a dialback error.
        if self.state is OutboundState.DIALBACK:
            return "remote-server-timeout", Stage.ANSWER
        return "remote-server-not-found", Stage.STREAM

    def stream_failed(self, condition: str, text: str | None) -> None:
        bounce, stage = self._ended_condition()
        self._give_up(
            NegotiationFailure(
                bounce,
                f"stream error {condition}" + (f": {text}" if text else ""),
                tls_refused=self.state is OutboundState.PROCEED,
                stage=stage,
            )
        )

    def closing_started(self) -> None:
        self.federation.stream_closing(self)

    def stream_closed(self, reason: Failure) -> None:
        self._stop_watching()
        if self._checking is not None:
            self._checking.cancel()
        for timer in (self._ack_timer, self._ack_deadline):
            if timer is not None and timer.active():
                timer.cancel()
        if self.unacked:
            # Never acknowledged: the peer may not have them; send them again.
            self.federation.resend(self.unacked, self.local_domain, self.peer_domain)
            self.unacked = []
            self.unacked_bytes = 0
        bounce, stage = self._ended_condition()
        self._give_up(
            NegotiationFailure(
                bounce,
                f"connection closed while {self.state.value}",
                tls_refused=self.state is OutboundState.PROCEED,
                stage=stage,
            )
        )
        self.federation.stream_closed(self)

    # The machine (see L{gateway.s2s.stream.describe}, docs/architecture.md).
    TRANSITIONS = {
        OutboundState.HEADER: {Input.HEADER: step(receive_header, OutboundState.FEATURES)},
        OutboundState.FEATURES: {
            # The chain may answer at once (a verdict it has cached): then
            # the stream is already past VERIFYING.
            Input.FEATURES: step(
                receive_features, OutboundState.PROCEED, OutboundState.VERIFYING,
                OutboundState.SASL, OutboundState.DIALBACK,
            ),
        },
        OutboundState.PROCEED: {
            Input.PROCEED: step(receive_proceed, OutboundState.TLS),
            Input.TLS_FAILURE: step(receive_tls_failure, OutboundState.PROCEED),
        },
        OutboundState.TLS: {Input.HEADER: step(receive_header, OutboundState.FEATURES)},
        OutboundState.VERIFYING: {},
        OutboundState.SASL: {
            Input.SASL_SUCCESS: step(receive_sasl_success, OutboundState.SASL_RESTART),
            Input.SASL_FAILURE: step(receive_sasl_failure, OutboundState.DIALBACK),
        },
        OutboundState.SASL_RESTART: {
            Input.HEADER: step(receive_header_after_sasl, OutboundState.SASL_FEATURES),
        },
        OutboundState.SASL_FEATURES: {
            Input.FEATURES: step(receive_features_after_sasl, OutboundState.AUTHENTICATED),
        },
        OutboundState.DIALBACK: {
            Input.DB_RESULT: step(receive_db_result, OutboundState.DIALBACK,
                                  OutboundState.AUTHENTICATED),
            Input.DB_VERIFY: step(receive_db_verify, OutboundState.DIALBACK),
        },
        OutboundState.AUTHENTICATED: {
            Input.SM_ENABLED: step(receive_sm_enabled, OutboundState.AUTHENTICATED),
            Input.SM_FAILED: step(receive_sm_failed, OutboundState.AUTHENTICATED),
            Input.SM_ACK: step(receive_sm_ack, OutboundState.AUTHENTICATED),
            Input.STANZA: step(receive_error_reply, OutboundState.AUTHENTICATED),
        },
    }
    #: When the verifier chain has answered who the peer is.
    LATER = {OutboundState.VERIFYING: frozenset({OutboundState.SASL, OutboundState.DIALBACK})}


class OutboundFactory(protocol.Factory):
    """
    Makes one L{OutboundStream} per connection attempt.
    """

    noisy = False

    def __init__(self, federation: IOutboundStreamOwner, **stream_arguments: Any) -> None:
        self.federation = federation
        self.stream_arguments = stream_arguments

    def buildProtocol(self, addr: IAddress | None) -> OutboundStream:
        return OutboundStream(self.federation, **self.stream_arguments)
