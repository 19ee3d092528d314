"""
Routing between local components and the federation.

Stanzas for a local domain go to the component attached for it; stanzas
for any other domain go to the federation.  Whatever can't be delivered is
bounced to its sender with a stanza error (RFC 6120 section 8.3), except
errors and IQ results, which are logged and not answered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from twisted.words.protocols.jabber.xmlstream import XmlStream
from twisted.words.xish import domish

from gateway.log import Logger
from gateway.xmpp.jid import JID, AddressError, parse_jid
from gateway.xmpp.parser import ShallowStanza, expand
from gateway.xmpp.stanzas import (
    MAX_ECHOED_PAYLOAD,
    NS_COMPONENT,
    NS_SERVER,
    error_response,
    iq_problem,
    is_bounceable,
    rewrite_namespace,
)

if TYPE_CHECKING:
    from gateway.s2s.federation import Federation
    from gateway.s2s.metrics import GatewayMetrics

log = Logger()


class Router:
    """
    @ivar components: local domain → the component's XML stream.
    @ivar federation: the route to every domain not served here (the
        L{gateway.s2s.federation.Federation}, which attaches itself when it
        is made).
    """

    def __init__(
        self, local_domains: Iterable[str], metrics: GatewayMetrics | None = None
    ) -> None:
        self.local_domains = frozenset(local_domains)
        self.components: dict[str, XmlStream] = {}
        self.federation: Federation | None = None
        self.metrics = metrics
        self.routed = 0
        if metrics is not None:
            metrics.count_routed(lambda: self.routed)
        self.bounced = 0

    def attach_federation(self, federation: Federation) -> None:
        """
        Route stanzas for domains not served here to C{federation} (its
        C{send}), and only there.
        """
        if self.federation is not None and self.federation is not federation:
            raise ValueError("the router already has a federation")
        self.federation = federation

    def attach_component(self, domain: str, stream: XmlStream) -> None:
        self.components[domain] = stream

    def detach_component(self, domain: str, stream: XmlStream) -> None:
        if self.components.get(domain) is stream:
            del self.components[domain]

    def route_from_component(self, stanza: domish.Element, component_domain: str) -> None:
        """
        Route a stanza a component sent.  Its C{from} must be in the
        component's domain; its C{to} may be local or remote.  Both go on
        with their domains in canonical form (L{gateway.xmpp.jid}).
        """
        rewrite_namespace(stanza, NS_COMPONENT, NS_SERVER)
        if not stanza.getAttribute("from"):
            self._refuse_from_component(stanza, component_domain, "bad-request", "no from address")
            return
        try:
            sender = parse_jid(stanza.getAttribute("from"))
        except AddressError as e:
            self._refuse_from_component(stanza, component_domain, "jid-malformed", f"from: {e}")
            return
        if sender.domain != component_domain:
            self._refuse_from_component(
                stanza,
                component_domain,
                "forbidden",
                f"this component may only send from {component_domain}",
            )
            return
        if stanza.name == "iq":
            problem = iq_problem(stanza)
            if problem is not None:
                self._refuse_from_component(stanza, component_domain, "bad-request", problem)
                return
        try:
            recipient = parse_jid(stanza.getAttribute("to"))
        except AddressError as e:
            self._refuse_from_component(stanza, component_domain, "jid-malformed", f"to: {e}")
            return
        if not (sender.canonical and recipient.canonical):
            # Its own bytes would say the addresses as written: build it.
            stanza = rewrite_namespace(expand(stanza), NS_COMPONENT, NS_SERVER)
            stanza["from"] = sender.full()
            stanza["to"] = recipient.full()
        self.deliver(stanza, sender.domain, recipient.domain)

    def _refuse_from_component(
        self, stanza: domish.Element, component_domain: str, condition: str, text: str
    ) -> None:
        # The error goes back on the component's own stream, addressed to the
        # sender only when that is a well-formed address of the component's,
        # and from the address it was sent to only when that is well-formed
        # (else from the gateway itself, rather than echo a bad address).
        sender = _well_formed(stanza.getAttribute("from"))
        recipient = _well_formed(stanza.getAttribute("to"))
        self._answer(
            stanza,
            condition,
            text,
            reply_from=recipient.full() if recipient else None,
            reply_to=sender.full() if sender and sender.domain == component_domain
            else component_domain,
            deliver=lambda reply: self._deliver_local(reply, component_domain),
        )

    def refuse_from_s2s(
        self,
        stanza: domish.Element,
        sender_domain: str,
        recipient_domain: str,
        condition: str,
        text: str | None,
    ) -> None:
        """
        Answer a stanza that an s2s peer authenticated for C{(sender_domain,
        recipient_domain)} sent, but that can't be routed (say a malformed
        localpart), with error C{condition}.  The answer goes from
        C{recipient_domain} to the sender, or to the sender's domain when its
        address is malformed.
        """
        sender = _well_formed(stanza.getAttribute("from"))
        recipient = _well_formed(stanza.getAttribute("to"))
        self._answer(
            stanza,
            condition,
            text,
            reply_from=recipient.full() if recipient else recipient_domain,
            reply_to=sender.full() if sender else sender_domain,
            deliver=lambda reply: self.deliver(reply, recipient_domain, sender_domain),
        )

    def route_from_s2s(
        self, stanza: domish.Element, sender_domain: str, recipient_domain: str
    ) -> None:
        """
        Route a stanza an authenticated s2s peer sent to a local domain.
        """
        self.deliver(stanza, sender_domain, recipient_domain)

    def deliver(self, stanza: domish.Element, sender_domain: str, recipient_domain: str) -> None:
        self.routed += 1
        if recipient_domain in self.local_domains:
            self._deliver_local(stanza, recipient_domain)
        else:
            assert self.federation is not None, "no federation attached"
            # Shallow or not: the outbound side sends a shallow stanza's own
            # bytes when they mean the same there (stanza_bytes).
            self.federation.send(stanza, sender_domain, recipient_domain)

    def _deliver_local(self, stanza: domish.Element, domain: str) -> None:
        component = self.components.get(domain)
        if component is None:
            self.bounce(stanza, "service-unavailable", f"the service for {domain} is not connected")
            return
        if isinstance(stanza, ShallowStanza) and stanza.contained:
            # The fast path: the stanza's own bytes.  They use no namespace
            # declared outside them, so on the component's stream what was
            # in jabber:server is in jabber:component:accept, exactly as the
            # rewrite below would make it.
            component.send(stanza.raw)
            return
        stanza = expand(stanza)
        rewrite_namespace(stanza, NS_SERVER, NS_COMPONENT)
        component.send(stanza)

    def bounce(self, stanza: domish.Element, condition: str, text: str | None = None) -> None:
        """
        Answer undeliverable C{stanza} with error C{condition}, routed back to
        its sender.
        """
        stanza = _for_answer(stanza)
        sender = _well_formed(stanza.getAttribute("from"))
        recipient = _well_formed(stanza.getAttribute("to"))
        if not is_bounceable(stanza):
            self._not_answered(stanza, condition)
            return
        if sender is None or recipient is None:
            log.warn(
                "cannot bounce a {kind} with a malformed address ({condition})",
                kind=stanza.name,
                condition=condition,
            )
            return
        back_from, back_to = recipient.domain, sender.domain
        self._answer(
            stanza,
            condition,
            text,
            reply_from=recipient.full(),
            reply_to=sender.full(),
            deliver=lambda reply: self.deliver(reply, back_from, back_to),
        )

    def _answer(
        self,
        stanza: domish.Element,
        condition: str,
        text: str | None,
        reply_from: str | None,
        reply_to: str,
        deliver: Callable[[domish.Element], None],
    ) -> None:
        """
        Send the error C{condition} answering C{stanza} (RFC 6120 section
        8.3) with the given addresses (well-formed and canonical; no C{from}
        when C{reply_from} is L{None}), unless C{stanza} is one that is never
        answered.
        """
        stanza = _for_answer(stanza)
        if not is_bounceable(stanza):
            self._not_answered(stanza, condition)
            return
        self.bounced += 1
        if self.metrics is not None:
            self.metrics.stanzas_bounced.labels(condition).inc()
        reply = error_response(stanza, condition, text)
        if reply_from is None:
            reply.attributes.pop("from", None)
        else:
            reply["from"] = reply_from
        reply["to"] = reply_to
        deliver(reply)

    @staticmethod
    def _not_answered(stanza: domish.Element, condition: str) -> None:
        log.warn(
            "not answering undeliverable {kind} of type {type} from {sender} to "
            "{recipient} ({condition}): errors and results are not answered",
            kind=stanza.name,
            type=stanza.getAttribute("type"),
            sender=stanza.getAttribute("from"),
            recipient=stanza.getAttribute("to"),
            condition=condition,
        )


def _for_answer(stanza: domish.Element) -> domish.Element:
    """
    C{stanza} as an error reply needs it: a shallow stanza too large for its
    payload to be echoed (L{MAX_ECHOED_PAYLOAD}) is answered from its start
    tag alone, without building the rest (a 400 KB stanza of 100,000
    elements is never built only to be left out).
    """
    if isinstance(stanza, ShallowStanza) and len(stanza.raw) > MAX_ECHOED_PAYLOAD:
        return stanza
    return expand(stanza)


def _well_formed(value: str | None) -> JID | None:
    """
    The address C{value} parsed, or L{None} when it is missing or malformed.
    """
    try:
        return parse_jid(value)
    except AddressError:
        return None
