"""
Inbound server-to-server streams: the gateway as receiving server (and as
authoritative server answering C{db:verify}).

Negotiation (RFC 6120 sections 4 and 5, XEP-0220), as a state machine:

  - C{HEADER}: the peer's stream header is checked (namespace, version,
    local C{to}); we answer with ours and our features.
  - C{FEATURES_SENT}: before TLS only C{<starttls/>} is accepted, unless
    policy lets the peer's domain federate in plaintext.
  - C{TLS}: after C{<proceed/>}, the old parser is gone; the next thing
    accepted is the new stream header, over TLS.
  - C{CHECKING}: over TLS, the verifier chain decides whether the
    certificate speaks for the domain the header names (and so whether to
    offer SASL EXTERNAL) before the features are sent.
  - C{OPEN}: C{db:result} and C{db:verify} are answered; stanzas are
    accepted only from a C{(from, to)} domain pair verified on this stream.
  - C{SASL_RESTART}, C{SASL_OPEN}: after SASL EXTERNAL succeeded, the
    restarted stream's header, then the stream open as C{OPEN} is, except
    that SASL is done: another C{<auth/>} is refused.
"""

from __future__ import annotations

import base64
import enum
import functools
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, cast

from twisted.internet import defer, protocol
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.python.failure import Failure
from twisted.words.xish import domish

from gateway.log import Logger
from gateway.s2s.dialback import check_dialback_key
from gateway.s2s.flow import send_at_once
from gateway.s2s.interfaces import IInboundStreamOwner
from gateway.s2s.stream import (
    Input,
    S2SStream,
    StreamError,
    check_version,
    random_stream_id,
    serialise,
    step,
    xmpp_version,
)
from gateway.xmpp.jid import AddressError, bare_domain, jid_domain, parse_jid
from gateway.xmpp.parser import NS_XML, expand, language_attribute, with_language
from gateway.xmpp.stanzas import (
    COMPONENT_LANGUAGE,
    NS_DIALBACK,
    NS_DIALBACK_FEATURE,
    NS_SASL,
    NS_SERVER,
    NS_SM,
    NS_STREAMS,
    NS_TLS,
    NS_XMPP_STANZAS,
    STANZA_NAMES,
    iq_problem,
)

if TYPE_CHECKING:
    from gateway.s2s.federation import Federation
    from gateway.verifiers.chain import ChainResult

log = Logger()


class InboundState(enum.Enum):
    HEADER = "awaiting stream header"
    FEATURES_SENT = "negotiating"
    TLS = "TLS negotiated, awaiting stream restart"
    CHECKING = "checking the certificate before offering features"
    OPEN = "open"
    SASL_RESTART = "SASL done, awaiting stream restart"
    SASL_OPEN = "open, authenticated by SASL"


def check_stream_header(
    root: domish.Element, local_domains: Collection[str]
) -> tuple[str, str | None]:
    """
    Check an inbound stream header (RFC 6120 section 4.7).

    @return: the local domain the header is addressed to, and the peer
        domain it names (or L{None}), both canonical.
    @raise StreamError: C{invalid-namespace}, C{unsupported-version},
        C{host-unknown} or C{invalid-from}.
    """
    if (root.uri, root.name) != (NS_STREAMS, "stream"):
        raise StreamError("invalid-namespace", "the stream element must be stream:stream")
    if root.defaultUri != NS_SERVER:
        raise StreamError("invalid-namespace", f"the default namespace must be {NS_SERVER}")
    check_version(root)
    to = root.getAttribute("to")
    try:
        to = bare_domain(to)
    except AddressError:
        raise StreamError("host-unknown", "the stream header names no domain we serve") from None
    if to not in local_domains:
        raise StreamError("host-unknown", f"{to} is not served here")
    sender = root.getAttribute("from")
    if sender is not None:
        try:
            sender = bare_domain(sender)
        except AddressError as e:
            raise StreamError("invalid-from", str(e)) from None
    return to, sender


# The features are the same for every stream in the same situation: each
# variant is serialised once.


@functools.lru_cache(maxsize=None)
def _features_before_tls(required: bool) -> bytes:
    features = domish.Element((NS_STREAMS, "features"))
    starttls = features.addElement((NS_TLS, "starttls"))
    if required:
        starttls.addElement("required")
    features.addElement((NS_DIALBACK_FEATURE, "dialback")).addElement("errors")
    return serialise(features)


@functools.lru_cache(maxsize=None)
def _features_with_tls(offer_external: bool, dialback: bool) -> bytes:
    features = domish.Element((NS_STREAMS, "features"))
    if offer_external:
        mechanisms = features.addElement((NS_SASL, "mechanisms"))
        mechanisms.addElement("mechanism", content="EXTERNAL")
    if dialback:
        features.addElement((NS_DIALBACK_FEATURE, "dialback")).addElement("errors")
    # XEP-0198: the initiating side may ask for acknowledgements once
    # authenticated, so that it knows what reached us.
    features.addElement((NS_SM, "sm"))
    return serialise(features)


def _dialback_element(
    name: str,
    sender: str,
    recipient: str,
    kind: str | None = None,
    stream_id: str | None = None,
) -> domish.Element:
    element = domish.Element((NS_DIALBACK, name))
    element["from"] = sender
    element["to"] = recipient
    if stream_id is not None:
        element["id"] = stream_id
    if kind is not None:
        element["type"] = kind
    return element


def _dialback_error(
    name: str, sender: str, recipient: str, condition: str, stream_id: str | None = None
) -> domish.Element:
    element = _dialback_element(name, sender, recipient, "error", stream_id)
    error = element.addElement("error")
    error["type"] = "cancel" if condition != "remote-server-timeout" else "wait"
    error.addElement((NS_XMPP_STANZAS, condition))
    return element


def _log_unless_cancelled(failure: Failure, what: str, **fields: Any) -> None:
    # A verification is cancelled when its stream closes; that is no error.
    if not failure.check(defer.CancelledError):
        log.failure(what, failure, **fields)


def _unreachable_condition(result: ChainResult) -> str | None:
    """
    When a refusal came from dialback not reaching the authoritative
    server (rather than from a verdict against the peer), the XEP-0220
    error condition to answer with; else L{None}.
    """
    for verdict in result.verdicts:
        condition = verdict.evidence.get("condition")
        if verdict.verifier == "dialback" and condition and not verdict.decisive:
            if result.verdict is None or result.verdict is verdict:
                return condition
    return None


def _host(address: IAddress) -> str:
    # The s2s listeners are TCP: their peers are IP addresses.
    return str(cast("IPv4Address | IPv6Address", address).host)


class InboundStream(S2SStream[InboundState]):
    """
    One inbound s2s stream.  The L{gateway.s2s.federation.Federation} it
    belongs to supplies the gateway's parts.

    @ivar verified: the C{(peer domain, local domain)} pairs authenticated on
        this stream.
    """

    direction = "inbound"
    state = InboundState.HEADER
    # Stanzas are routed by their start tag; the router forwards the bytes
    # of those it can, and builds the rest (gateway.components.routing).
    SHALLOW = frozenset((NS_SERVER, name) for name in STANZA_NAMES)

    REFUSAL = {
        InboundState.FEATURES_SENT: "policy-violation",
        InboundState.OPEN: "policy-violation",
        InboundState.SASL_OPEN: "policy-violation",
    }
    TLS_STATE = InboundState.TLS

    # What every inbound stream sets, in slots (see S2SStream.__slots__).
    __slots__ = (
        "max_depth", "federation", "peer_domain_claimed", "language", "verified", "_pending",
        "_header_sent", "_timeout", "_external", "_sasl_failures", "sm_handled",
        "_language_attribute",
    )

    def refusal(self, kind: Input, element: domish.Element) -> StreamError:
        if kind is Input.STANZA and not self.verified:
            # RFC 6120 section 4.9.3.12, whatever the negotiation's state.
            return StreamError("not-authorized", "stanzas before authentication")
        if kind is Input.SASL_AUTH and self.state is InboundState.SASL_OPEN:
            return StreamError("policy-violation", "SASL is already done on this stream")
        return super().refusal(kind, element)

    def __init__(self, federation: IInboundStreamOwner, direct_tls: bool = False) -> None:
        self.max_depth = federation.max_depth
        super().__init__(federation.max_stanza_size, federation.clock)
        self.federation = federation
        self.direct_tls = direct_tls
        self.local_domain: str | None = None
        self.peer_domain_claimed: str | None = None
        self.language: str | None = None
        self.verified: set[tuple[str, str]] = set()
        # Verifications under way, by pair (or ("external", peer) for the
        # check before offering SASL EXTERNAL).
        self._pending: dict[tuple[str, str], defer.Deferred[Any]] = {}
        self._header_sent = False
        self._timeout: IDelayedCall | None = None
        self._external: tuple[str, ChainResult] | None = None
        self._sasl_failures = 0
        self.sm_handled: int | None = None

    _language_attribute: bytes | None

    @property
    def authenticated(self) -> bool:
        return bool(self.verified)

    def peer_name(self) -> str:
        if self.verified:
            return ",".join(sorted({peer for peer, _ in self.verified}))
        return self.peer_domain_claimed or _host(self.connection.getPeer())

    def connectionMade(self) -> None:
        send_at_once(self)
        self.reset_parser()
        self._timeout = self.clock.callLater(
            self.federation.authentication_timeout, self._authentication_timed_out
        )
        self.federation.stream_opened(self)

    def _authentication_timed_out(self) -> None:
        self._timeout = None
        if not self.verified and not self.closed:
            seconds = self.federation.authentication_timeout
            if any(key[0] != "external" for key in self._pending):
                # Our check of its dialback key is what did not finish: the
                # authoritative server could not be reached (RFC 6120
                # section 4.9.3.15).
                self.fail(
                    "remote-connection-failed",
                    f"could not verify the peer's domain within {seconds:g}s",
                )
            else:
                # RFC 6120 section 4.9.3.4 keeps connection-timeout for a peer
                # that stopped answering; this is a local policy's limit.
                self.fail("policy-violation", f"not authenticated within {seconds:g}s")

    # Negotiation ---------------------------------------------------------

    def state_needs_header(self) -> bool:
        return not self._header_sent

    def send_header(self, version: str | None = "1.0", **attributes: str | None) -> None:
        self._header_sent = True
        super().send_header(version, **attributes)

    def receive_header(self, root: domish.Element) -> None:
        self.stream_id = random_stream_id()
        # The answering header names the domains in canonical form, and only
        # a domain served here as ours.
        to: str | None
        sender: str | None
        try:
            to = bare_domain(root.getAttribute("to"))
        except AddressError:
            to = None
        try:
            sender = bare_domain(root.getAttribute("from"))
        except AddressError:
            sender = None
        # RFC 6120 section 4.7.5: the lower of the peer's version and ours,
        # and none when the peer gave none (either is refused just after).
        theirs = xmpp_version(root.getAttribute("version"))
        self.send_header(
            version=None if theirs is None else "1.0" if theirs >= (1, 0) else "%d.%d" % theirs,
            **{
                # RFC 6120 section 4.9.1.3: one of ours, or empty.
                "from": to if to in self.federation.local_domains else "",
                "to": sender,
                "id": self.stream_id,
            }
        )
        self.local_domain, self.peer_domain_claimed = check_stream_header(
            root, self.federation.local_domains
        )
        # RFC 6120 sections 4.7.4 and 8.1.5: the stream's default language,
        # given to the stanzas that don't say theirs.
        # Stanzas go on to components, whose streams say COMPONENT_LANGUAGE:
        # only another language needs saying on each stanza.
        language = root.attributes.get((NS_XML, "lang")) or None
        if language is not None and language.lower() == COMPONENT_LANGUAGE:
            language = None
        self.language = language
        self._language_attribute = language_attribute(language) if language else None
        if self.tls is None:
            self.state = InboundState.FEATURES_SENT
            self.send_bytes(
                _features_before_tls(required=not self.federation.policy.any_plaintext_allowed)
            )
        elif self.state is InboundState.SASL_RESTART:
            # Authenticated already: neither SASL nor dialback is offered.
            self.state = InboundState.SASL_OPEN
            self.send_bytes(_features_with_tls(offer_external=False, dialback=False))
        elif not self._external_candidate():
            self._send_secure_features(offer_external=False)
        else:
            # XEP-0178: offer EXTERNAL only when the certificate verified for
            # the domain the header names; the verifiers decide that first.
            self.state = InboundState.CHECKING
            peer = self.peer_domain_claimed
            assert peer is not None  # _external_candidate saw it
            d = self.federation.verify_peer("inbound", self.local_domain, peer, self)
            self._pending[("external", peer)] = d
            d.addCallback(self._external_checked, peer)
            d.addErrback(_log_unless_cancelled, "checking {peer} for SASL EXTERNAL", peer=peer)

    def _external_candidate(self) -> bool:
        peer = self.peer_domain_claimed
        if not peer or self.tls is None or not self.tls.peer_chain:
            return False
        return peer not in self.federation.local_domains

    def _external_checked(self, result: ChainResult, peer: str) -> None:
        del self._pending[("external", peer)]
        if self.closed:
            return
        if result.authenticated and result.method not in ("none", "dialback"):
            self._external = (peer, result)
        else:
            log.info(
                "s2s inbound {peer}: not offering SASL EXTERNAL: {reason}",
                peer=peer,
                reason=result.reason or f"verified only by {result.method}",
            )
        self._send_secure_features(offer_external=self._external is not None)

    def _send_secure_features(self, offer_external: bool) -> None:
        self.state = InboundState.OPEN
        self.send_bytes(_features_with_tls(offer_external, dialback=True))

    # SASL EXTERNAL (XEP-0178) ----------------------------------------------

    #: RFC 6120 section 6.4.5: failed SASL attempts allowed before the
    #: stream is closed ("at least 2 and no more than 5" retries).
    MAX_SASL_RETRIES = 2

    def receive_sasl_auth(self, element: domish.Element) -> None:
        mechanism = element.getAttribute("mechanism")
        if self._external is None or mechanism != "EXTERNAL":
            self._sasl_failure("invalid-mechanism")
            return
        peer, result = self._external
        response = str(element).strip()
        authzid: str | None
        if response in ("", "="):
            authzid = peer
        else:
            try:
                authzid = base64.b64decode(response, validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                self._sasl_failure("incorrect-encoding")
                return
            try:
                authzid = bare_domain(authzid)
            except AddressError:
                authzid = None
        if authzid != peer:
            # XEP-0178 section 3: the certificate does not speak for that
            # identity: not-authorized, and the stream is closed.
            log.info(
                "s2s inbound {peer}: SASL EXTERNAL refused: the authzid names another domain",
                peer=peer,
            )
            self._sasl_failure("not-authorized", retry=False)
            self.close()
            return
        self.connection.write(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
        local = self.local_domain
        assert local is not None  # the header named it
        self._authenticated((peer, local), result, via="SASL EXTERNAL")
        # RFC 6120 section 6.4.6: the stream restarts after success.
        self.state = InboundState.SASL_RESTART
        self._header_sent = False
        self.reset_parser()

    def _sasl_failure(self, condition: str, retry: bool = True) -> None:
        failure = domish.Element((NS_SASL, "failure"))
        failure.addElement(condition)
        self.send(failure)
        if not retry:
            return
        self._sasl_failures += 1
        if self._sasl_failures > self.MAX_SASL_RETRIES:
            raise StreamError(
                "policy-violation", f"{self._sasl_failures} failed SASL attempts on this stream"
            )

    def receive_starttls(self, element: domish.Element) -> None:
        if self.tls is not None or self.direct_tls:
            raise StreamError("policy-violation", "TLS is already in place")
        self.connection.write(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.state = InboundState.TLS
        self._header_sent = False
        self._forget_plaintext()
        self.start_tls(self.federation.tls_profile.server_creator(self.local_domain))

    def _forget_plaintext(self) -> None:
        """
        RFC 6120 section 5.4.3.3: what was learnt before TLS (pairs verified
        by dialback in plaintext, verifications under way) is discarded once
        TLS starts; the peer authenticates again over TLS, in time.
        """
        for key, d in list(self._pending.items()):
            d.cancel()
        self._pending.clear()
        if self.verified:
            self.verified.clear()
            if self._timeout is None or not self._timeout.active():
                self._timeout = self.clock.callLater(
                    self.federation.authentication_timeout, self._authentication_timed_out
                )

    def _require_tls_for(self, peer_domain: str) -> None:
        if self.tls is None and self.federation.policy.for_domain(peer_domain).require_tls:
            raise StreamError(
                "policy-violation", f"TLS is required for {peer_domain} before authentication"
            )

    # Dialback, as receiving server ----------------------------------------

    def receive_db_result(self, element: domish.Element) -> None:
        if element.getAttribute("type") is not None:
            raise StreamError("unsupported-stanza-type", "a typed db:result is not a request")
        try:
            originating = bare_domain(element.getAttribute("from"))
            receiving = bare_domain(element.getAttribute("to"))
        except AddressError as e:
            raise StreamError("improper-addressing", f"db:result: {e}") from None
        if receiving not in self.federation.local_domains:
            self.send(_dialback_error("result", receiving, originating, "item-not-found"))
            return
        if originating in self.federation.local_domains:
            raise StreamError("invalid-from", f"{originating} is served here, not by the peer")
        self._require_tls_for(originating)
        pair = (originating, receiving)
        if pair in self.verified:
            self.send(_dialback_element("result", receiving, originating, "valid"))
            return
        if pair in self._pending:
            return
        pending = [p for p in self._pending if p[0] != "external"]
        if (
            len(pending) >= self.federation.max_verifications_per_stream
            or self.federation.verifications_in_progress >= self.federation.max_verifications
        ):
            # XEP-0220: a verification we can't take on now, the peer may retry.
            self.send(_dialback_error("result", receiving, originating, "resource-constraint"))
            return
        key = str(element).strip()
        self.federation.verifications_in_progress += 1
        d = self.federation.verify_peer(
            "inbound", receiving, originating, self, dialback_key=key
        )
        self._pending[pair] = d
        d.addCallback(self._dialback_decided, pair)
        d.addErrback(self._verification_abandoned, pair)

    def _dialback_decided(self, result: ChainResult, pair: tuple[str, str]) -> None:
        del self._pending[pair]
        self.federation.verifications_in_progress -= 1
        if self.closed:
            return
        originating, receiving = pair
        if result.authenticated:
            self._authenticated(pair, result, via="dialback")
            self.send(_dialback_element("result", receiving, originating, "valid"))
            return
        log.info(
            "s2s inbound {peer}: refused for {local}: {reason}",
            peer=originating,
            local=receiving,
            reason=result.reason,
        )
        self.federation.authentication_refused(self, "inbound", receiving, originating, result)
        condition = _unreachable_condition(result)
        if condition is not None:
            self.send(_dialback_error("result", receiving, originating, condition))
            return
        if self.verified:
            # XEP-0220 section 2.1.2: other pairs stay verified on this
            # stream, so the refusal is a <forbidden/> dialback error rather
            # than "invalid", after which the stream would have to close.
            self.send(_dialback_error("result", receiving, originating, "forbidden"))
            return
        # XEP-0220 section 2.2.1: "invalid", and the stream closes.
        self.send(_dialback_element("result", receiving, originating, "invalid"))
        self.fail("not-authorized", f"{originating} could not be verified")

    def _verification_abandoned(self, failure: Failure, pair: tuple[str, str]) -> None:
        # The stream closed (or something broke) before the chain decided.
        if self._pending.pop(pair, None) is not None:
            self.federation.verifications_in_progress -= 1
        _log_unless_cancelled(failure, "verifying {pair}", pair=pair)

    def _authenticated(self, pair: tuple[str, str], result: ChainResult, via: str) -> None:
        self.verified.add(pair)
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
            self._timeout = None
        originating, receiving = pair
        self.federation.stream_authenticated(self, originating, receiving, result, via)

    # Dialback, as authoritative server ------------------------------------

    def receive_db_verify(self, element: domish.Element) -> None:
        try:
            asking = bare_domain(element.getAttribute("from"))
            authoritative = bare_domain(element.getAttribute("to"))
        except AddressError as e:
            raise StreamError("improper-addressing", f"db:verify: {e}") from None
        stream_id = element.getAttribute("id")
        if not stream_id:
            raise StreamError("invalid-xml", "db:verify without an id")
        if authoritative not in self.federation.local_domains:
            self.send(_dialback_error("verify", authoritative, asking, "item-not-found", stream_id))
            return
        self._require_tls_for(asking)
        valid = check_dialback_key(
            self.federation.dialback_secret, asking, authoritative, stream_id, str(element)
        )
        log.debug(
            "s2s inbound: answered db:verify from {asking} for {local}: {valid}",
            asking=asking,
            local=authoritative,
            valid=valid,
        )
        self.send(
            _dialback_element(
                "verify", authoritative, asking, "valid" if valid else "invalid", stream_id
            )
        )

    # Stanzas --------------------------------------------------------------

    def receive_stanza(self, stanza: domish.Element) -> None:
        """
        Route a stanza from an authenticated domain pair (RFC 6120 section
        8.1.1.2; XEP-0220 section 2.1.3).

        What decides the stream is the pair of domains: a C{from} or C{to}
        missing or without a domainpart (C{improper-addressing}), a C{to}
        not served here (C{host-unknown}), a pair not authenticated on this
        stream (C{invalid-from}) end it, as RFC 6120 section 4.9.3 says.
        A malformed localpart or resourcepart costs only that stanza: it is
        answered with C{jid-malformed} and the stream goes on.  Addresses
        not written in canonical form are rewritten before the stanza goes
        on, so that nothing downstream reads another domain in them.
        """
        raw_from = stanza.getAttribute("from")
        raw_to = stanza.getAttribute("to")
        malformed = None
        try:
            sender = parse_jid(raw_from)
            recipient = parse_jid(raw_to)
        except AddressError as e:
            # Whose stanza is it?  Only a malformed domainpart leaves no answer.
            malformed = e
            try:
                sender_domain = jid_domain(raw_from)
                recipient_domain = jid_domain(raw_to)
            except AddressError as e:
                raise StreamError("improper-addressing", f"{stanza.name}: {e}") from None
        else:
            sender_domain, recipient_domain = sender.domain, recipient.domain
        if not self.verified:
            raise StreamError("not-authorized", "stanzas before authentication")
        self._require_tls_for(sender_domain)
        if recipient_domain not in self.federation.local_domains:
            raise StreamError("host-unknown", f"{recipient_domain} is not served here")
        if (sender_domain, recipient_domain) not in self.verified:
            if all(receiving != recipient_domain for _, receiving in self.verified):
                # RFC 6120 section 8.1.1.2: the to must be a domain validated
                # on this stream.
                raise StreamError(
                    "host-unknown", f"{recipient_domain} was not validated on this stream"
                )
            raise StreamError(
                "invalid-from",
                f"{sender_domain} is not authenticated for {recipient_domain} on this stream",
            )
        self.stanzas_in += 1
        if self.sm_handled is not None:
            self.sm_handled += 1
        router = self.federation.router
        if malformed is not None:
            router.refuse_from_s2s(
                stanza, sender_domain, recipient_domain, "jid-malformed", str(malformed)
            )
            return
        if stanza.name == "iq":
            problem = iq_problem(stanza)
            if problem is not None:
                router.refuse_from_s2s(stanza, sender_domain, recipient_domain, "bad-request", problem)
                return
        if not (sender.canonical and recipient.canonical):
            stanza = expand(stanza)
            stanza["from"] = sender.full()
            stanza["to"] = recipient.full()
        if self.language is not None and (NS_XML, "lang") not in stanza.attributes:
            with_language(stanza, self.language, self._language_attribute)
        router.route_from_s2s(stanza, sender_domain, recipient_domain)

    # Stream management (XEP-0198), as the receiving side --------------------

    def receive_sm_enable(self, element: domish.Element) -> None:
        if not self.verified or self.sm_handled is not None:
            failed = domish.Element((NS_SM, "failed"))
            failed.addElement((NS_XMPP_STANZAS, "unexpected-request"))
            self.send(failed)
            return
        # No resumption: acknowledgements only (a new stream starts afresh).
        self.sm_handled = 0
        self.send(domish.Element((NS_SM, "enabled")))

    def receive_sm_request(self, element: domish.Element) -> None:
        if self.sm_handled is None:
            raise StreamError("unsupported-stanza-type", "stream management is not enabled")
        answer = domish.Element((NS_SM, "a"))
        answer["h"] = str(self.sm_handled % 2**32)
        self.send(answer)

    # Closing ---------------------------------------------------------------

    def stream_closed(self, reason: Failure) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        for d in list(self._pending.values()):
            d.cancel()
        self.federation.stream_closed(self)

    # The machine (see L{gateway.s2s.stream.describe}, docs/architecture.md).
    TRANSITIONS = {
        InboundState.HEADER: {
            Input.HEADER: step(receive_header, InboundState.FEATURES_SENT, InboundState.CHECKING,
                               InboundState.OPEN),
        },
        InboundState.FEATURES_SENT: {
            Input.STARTTLS: step(receive_starttls, InboundState.TLS),
            Input.DB_RESULT: step(receive_db_result, InboundState.FEATURES_SENT),
            Input.DB_VERIFY: step(receive_db_verify, InboundState.FEATURES_SENT),
            Input.STANZA: step(receive_stanza, InboundState.FEATURES_SENT),
        },
        InboundState.TLS: {
            Input.HEADER: step(receive_header, InboundState.CHECKING, InboundState.OPEN),
        },
        InboundState.CHECKING: {},
        InboundState.OPEN: {
            Input.SASL_AUTH: step(receive_sasl_auth, InboundState.OPEN, InboundState.SASL_RESTART),
            Input.DB_RESULT: step(receive_db_result, InboundState.OPEN),
            Input.DB_VERIFY: step(receive_db_verify, InboundState.OPEN),
            Input.STANZA: step(receive_stanza, InboundState.OPEN),
            Input.SM_ENABLE: step(receive_sm_enable, InboundState.OPEN),
            Input.SM_REQUEST: step(receive_sm_request, InboundState.OPEN),
        },
        InboundState.SASL_RESTART: {
            Input.HEADER: step(receive_header, InboundState.SASL_OPEN),
        },
        InboundState.SASL_OPEN: {
            Input.DB_RESULT: step(receive_db_result, InboundState.SASL_OPEN),
            Input.DB_VERIFY: step(receive_db_verify, InboundState.SASL_OPEN),
            Input.STANZA: step(receive_stanza, InboundState.SASL_OPEN),
            Input.SM_ENABLE: step(receive_sm_enable, InboundState.SASL_OPEN),
            Input.SM_REQUEST: step(receive_sm_request, InboundState.SASL_OPEN),
        },
    }
    #: When the verifier chain has answered whether to offer SASL EXTERNAL.
    LATER = {InboundState.CHECKING: frozenset({InboundState.OPEN})}


class RefusedStream(protocol.Protocol):
    """
    Answers a connection the gateway can't take with a stream error
    (RFC 6120 section 4.9.1.2: a header first) and closes it.
    """

    def __init__(self, condition: str, text: str) -> None:
        self.condition = condition
        self.text = text

    def connectionMade(self) -> None:
        from gateway.s2s.stream import header_bytes, serialise, stream_error_element

        transport = self.transport
        assert transport is not None  # connected
        transport.write(header_bytes({"from": "", "id": random_stream_id()}))
        transport.write(serialise(stream_error_element(self.condition, self.text)))
        transport.write(b"</stream:stream>")
        transport.loseConnection()


class InboundFactory(protocol.Factory):
    """
    Makes L{InboundStream}s for the s2s listeners.

    @param federation: the L{gateway.s2s.federation.Federation} the streams
        belong to.
    """

    noisy = False

    def __init__(self, federation: Federation, direct_tls: bool = False) -> None:
        self.federation = federation
        self.direct_tls = direct_tls

    def buildProtocol(self, addr: IAddress | None) -> protocol.Protocol:
        refusal = self.federation.admit(getattr(addr, "host", None))
        if refusal is not None:
            return RefusedStream(*refusal)
        return InboundStream(self.federation, direct_tls=self.direct_tls)
