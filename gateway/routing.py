"""
Routing between local components and the federation.

Stanzas for a local domain go to the component attached for it; stanzas
for any other domain go to the federation.  Whatever can't be delivered is
bounced to its sender with a stanza error (RFC 6120 section 8.3), except
errors and IQ results, which are logged and not answered.
"""

from twisted.logger import Logger

from gateway.xmlparser import ShallowStanza, expand

from gateway.xmpp import (
    NS_COMPONENT,
    NS_SERVER,
    AddressError,
    error_response,
    is_bounceable,
    parse_jid,
    rewrite_namespace,
)

log = Logger()


class Router:
    """
    @ivar components: local domain → the component's XML stream.
    @ivar federation: the L{gateway.s2s.federation.Federation}, set once
        both exist.
    """

    def __init__(self, local_domains):
        self.local_domains = frozenset(local_domains)
        self.components = {}
        self.federation = None
        self.metrics = None
        self.routed = 0
        self.bounced = 0

    def attach_component(self, domain, stream):
        self.components[domain] = stream

    def detach_component(self, domain, stream):
        if self.components.get(domain) is stream:
            del self.components[domain]

    def route_from_component(self, stanza, component_domain):
        """
        Route a stanza a component sent.  Its C{from} must be in the
        component's domain; its C{to} may be local or remote.
        """
        rewrite_namespace(stanza, NS_COMPONENT, NS_SERVER)
        try:
            sender = parse_jid(stanza.getAttribute("from"))
        except AddressError as e:
            self._refuse_from_component(stanza, component_domain, "bad-request", f"from: {e}")
            return
        if sender.host != component_domain:
            self._refuse_from_component(
                stanza,
                component_domain,
                "forbidden",
                f"this component may only send from {component_domain}",
            )
            return
        try:
            recipient = parse_jid(stanza.getAttribute("to"))
        except AddressError as e:
            self._refuse_from_component(stanza, component_domain, "jid-malformed", f"to: {e}")
            return
        self.deliver(stanza, sender.host, recipient.host)

    def _refuse_from_component(self, stanza, component_domain, condition, text):
        if not is_bounceable(stanza):
            log.warn(
                "component {domain} sent an undeliverable {kind} error/result: {text}",
                domain=component_domain,
                kind=stanza.name,
                text=text,
            )
            return
        reply = error_response(stanza, condition, text)
        try:
            sender = parse_jid(stanza.getAttribute("from"))
        except AddressError:
            sender = None
        # The error goes back on the component's own stream, addressed to the
        # sender only when that is an address of the component's.
        reply["to"] = sender.full() if sender and sender.host == component_domain else component_domain
        try:
            parse_jid(reply.getAttribute("from"))
        except AddressError:
            # Answer from the gateway itself rather than echo a bad address.
            reply.attributes.pop("from", None)
        self._deliver_local(reply, component_domain)

    def route_from_s2s(self, stanza, sender_domain, recipient_domain):
        """
        Route a stanza an authenticated s2s peer sent to a local domain.
        """
        self.deliver(stanza, sender_domain, recipient_domain)

    def deliver(self, stanza, sender_domain, recipient_domain):
        self.routed += 1
        if self.metrics is not None:
            self.metrics.stanzas_routed.inc()
        if recipient_domain in self.local_domains:
            self._deliver_local(stanza, recipient_domain)
        else:
            self.federation.send(expand(stanza), sender_domain, recipient_domain)

    def _deliver_local(self, stanza, domain):
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

    def bounce(self, stanza, condition, text=None):
        """
        Answer undeliverable C{stanza} with error C{condition}, routed back to
        its sender.
        """
        stanza = expand(stanza)
        if not is_bounceable(stanza):
            log.warn(
                "not bouncing undeliverable {kind} of type {type} from {sender} to "
                "{recipient} ({condition}): errors and results are not answered",
                kind=stanza.name,
                type=stanza.getAttribute("type"),
                sender=stanza.getAttribute("from"),
                recipient=stanza.getAttribute("to"),
                condition=condition,
            )
            return
        self.bounced += 1
        if self.metrics is not None:
            self.metrics.stanzas_bounced.labels(condition).inc()
        reply = error_response(stanza, condition, text)
        try:
            sender = parse_jid(reply.getAttribute("from")).host
            recipient = parse_jid(reply.getAttribute("to")).host
        except AddressError:
            log.warn("cannot bounce a stanza with a malformed address ({condition})", condition=condition)
            return
        self.deliver(reply, sender, recipient)
