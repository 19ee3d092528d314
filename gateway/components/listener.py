"""
The XEP-0114 component listener: local services attach here, one
component per local domain, each with its own secret.

The handshake itself is wokkel's; this module checks the domain, uses the
domain's secret (compared in constant time), refuses a second component
for a domain already attached (C{conflict}), and joins the component to the
L{gateway.components.routing.Router}.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from typing import cast

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import error, jid, xmlstream
from twisted.words.xish import domish
from wokkel.component import ListenComponentAuthenticator

from gateway.components.routing import Router
from gateway.log import Logger
from gateway.s2s.flow import Backpressure, send_at_once, transport_of
from gateway.xmpp.errors import XMLStreamError
from gateway.xmpp.jid import AddressError, bare_domain
from gateway.xmpp.parser import NS_XML, StreamParser
from gateway.xmpp.stanzas import COMPONENT_LANGUAGE, NS_COMPONENT

log = Logger()


def send_header(stream: xmlstream.XmlStream) -> None:
    """
    Twisted's response header, with C{xml:lang} (RFC 6120 section 4.7.4):
    a stanza that says no language is in L{COMPONENT_LANGUAGE}.
    """
    root = domish.Element(
        (xmlstream.NS_STREAMS, "stream"),
        stream.namespace,
        localPrefixes={p: uri for uri, p in stream.prefixes.items() if uri != xmlstream.NS_STREAMS},
    )
    root["from"] = this_entity(stream).userhost()
    root["id"] = stream.sid
    root[(NS_XML, "lang")] = COMPONENT_LANGUAGE
    stream.send(root.toXml(prefixes=stream.prefixes, closeElement=0))
    stream._headerSent = True


def this_entity(stream: xmlstream.XmlStream) -> jid.JID:
    """
    The local domain C{stream} serves, as L{ComponentAuthenticator} set it.
    """
    # Twisted declares thisEntity = None on the class (its docstring says
    # JID), so mypy reads it as always None.
    return cast(jid.JID, stream.thisEntity)


class ComponentAuthenticator(ListenComponentAuthenticator):
    """
    Accepts a component for a configured local domain with that domain's
    secret.

    @param secrets: local domain → component secret.
    @param router: refuses a domain that already has a component.
    """

    def __init__(self, secrets: Mapping[str, str], router: Router) -> None:
        ListenComponentAuthenticator.__init__(self, None)
        self.secrets = secrets
        self.router = router

    def streamStarted(self, rootElement: domish.Element) -> None:
        # The domain is read here, in canonical form (gateway.xmpp.jid), not by
        # Twisted's JID, whose IDNA2003 nameprep reads some domains as others
        # (straße.de as strasse.de).
        to = rootElement.attributes.pop("to", None)
        xmlstream.ListenAuthenticator.streamStarted(self, rootElement)
        if rootElement.defaultUri != self.namespace:
            self.xmlstream.sendStreamError(error.StreamError("invalid-namespace"))
            return
        if not to:
            self.xmlstream.sendStreamError(error.StreamError("improper-addressing"))
            return
        rootElement["to"] = to
        try:
            domain = bare_domain(to)
        except AddressError as e:
            self.xmlstream.sendStreamError(error.StreamError("host-unknown", text=str(e)))
            return
        if domain not in self.secrets:
            self.xmlstream.sendStreamError(
                error.StreamError("host-unknown", text=f"{domain} is not a local domain")
            )
            return
        self.xmlstream.thisEntity = jid.JID(tuple=(None, domain, None))
        send_header(self.xmlstream)
        self.xmlstream.addOnetimeObserver("/*", self.onElement)

    def onHandshake(self, handshake: str) -> None:
        domain = self.xmlstream.thisEntity.host
        expected = xmlstream.hashPassword(self.xmlstream.sid, self.secrets[domain])
        if not hmac.compare_digest(expected.encode(), handshake.strip().lower().encode()):
            log.warn("component for {domain} refused: wrong secret", domain=domain)
            self.xmlstream.sendStreamError(error.StreamError("not-authorized", text="Invalid handshake"))
            return
        if domain in self.router.components:
            log.warn("component for {domain} refused: one is already attached", domain=domain)
            self.xmlstream.sendStreamError(
                error.StreamError("conflict", text=f"a component for {domain} is already attached")
            )
            return
        self.xmlstream.send("<handshake/>")
        self.xmlstream.dispatch(self.xmlstream, xmlstream.STREAM_AUTHD_EVENT)


STANZA_NAMES = frozenset(("message", "presence", "iq"))

#: The stanzas of a component's stream read shallow (see
#: L{gateway.xmpp.parser.ShallowStanza}): those that go on to peers as the
#: bytes the component wrote, when that provably means the same.
SHALLOW = frozenset((NS_COMPONENT, name) for name in STANZA_NAMES)


class ComponentStream(xmlstream.XmlStream):
    """
    A component's XML stream, read by the gateway's parser (L{StreamParser}:
    the limits and restricted-XML checks of s2s streams, stanzas delivered
    shallow) instead of Twisted's; what is wrong with the input is answered
    with its stream error.  Everything else is Twisted's L{XmlStream}.
    """

    factory: ComponentFactory

    #: Once the component is attached: called with each stanza
    #: (C{message}, C{presence}, C{iq}) instead of dispatching it to
    #: observers, which would match each against every XPath observer.
    stanza_received: Callable[[domish.Element], None] | None = None

    def onElement(self, element: domish.Element) -> None:
        receive = self.stanza_received
        if receive is not None and element.name in STANZA_NAMES:
            receive(element)
            return
        xmlstream.XmlStream.onElement(self, element)

    def connectionMade(self) -> None:
        factory = self.factory
        self.parser: StreamParser | None = StreamParser(
            self.onDocumentStart,
            self.onElement,
            self.onDocumentEnd,
            factory.max_stanza_size,
            factory.max_depth,
            SHALLOW,
        )
        xmlstream.XmlStream.connectionMade(self)

    def dataReceived(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            return
        try:
            parser.feed(data)
        except XMLStreamError as e:
            parser.close()
            self.sendStreamError(error.StreamError(e.condition, text=e.text))

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if self.parser is not None:
            self.parser.close()
            self.parser = None
        xmlstream.XmlStream.connectionLost(self, reason)

    def send(self, obj: domish.Element | str | bytes) -> None:
        """
        Send an element, or text, or bytes ready to go (a stanza's own):
        those straight to the transport.
        """
        if isinstance(obj, bytes) and self.rawDataOutFn is None:
            self.transport.write(obj)  # type: ignore[union-attr]
            return
        xmlstream.XmlStream.send(self, obj)


class ComponentFactory(xmlstream.XmlStreamServerFactory):
    """
    Accepts XEP-0114 components and attaches each to the router.

    @param max_stanza_size: the most bytes of one stanza of a component's.
    @param max_depth: how deeply its elements may nest.
    """

    noisy = False
    protocol = ComponentStream

    def __init__(
        self,
        router: Router,
        secrets: Mapping[str, str],
        backpressure: Backpressure,
        max_stanza_size: int = 524288,
        max_depth: int = 64,
    ) -> None:
        self.router = router
        self.backpressure = backpressure
        self.max_stanza_size = max_stanza_size
        self.max_depth = max_depth
        xmlstream.XmlStreamServerFactory.__init__(
            self, lambda: ComponentAuthenticator(secrets, router)
        )
        self.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, self._connected)
        self.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, self._authenticated)
        self.streams: set[xmlstream.XmlStream] = set()
        self._drained: list[defer.Deferred[None]] = []

    def _connected(self, stream: xmlstream.XmlStream) -> None:
        send_at_once(stream)
        self.streams.add(stream)

        def lost(reason: Failure) -> None:
            self.streams.discard(stream)
            if not self.streams:
                drained, self._drained = self._drained, []
                for d in drained:
                    d.callback(None)

        stream.addObserver(xmlstream.STREAM_END_EVENT, lost)

    def close_all(self) -> defer.Deferred[None]:
        """
        Close every component stream.

        @return: a Deferred that fires once they are all closed.
        """
        if not self.streams:
            return defer.succeed(None)
        drained: defer.Deferred[None] = defer.Deferred()
        self._drained.append(drained)
        for stream in list(self.streams):
            stream.sendStreamError(error.StreamError("system-shutdown"))
        return drained

    def _authenticated(self, stream: xmlstream.XmlStream) -> None:
        domain = this_entity(stream).host
        self.router.attach_component(domain, stream)
        # A component that doesn't read pauses the peers that feed it; full
        # outbound streams pause the components.
        self.backpressure.to_components.attach_sink(transport_of(stream), stream)
        self.backpressure.to_peers.add_source(transport_of(stream))
        log.info("component attached for {domain}", domain=domain)
        # Stanzas straight to the router; anything else to the observer,
        # which refuses it.
        def received(stanza: domish.Element) -> None:
            self._received(stanza, domain, stream)

        cast(ComponentStream, stream).stanza_received = received
        stream.addObserver("/*", received)
        stream.addObserver(xmlstream.STREAM_END_EVENT, lambda reason: self._detached(domain, stream))

    def _received(
        self, stanza: domish.Element, domain: str, stream: xmlstream.XmlStream
    ) -> None:
        if stanza.name not in STANZA_NAMES:
            stream.sendStreamError(
                error.StreamError("unsupported-stanza-type", text=f"<{stanza.name}/> is not a stanza")
            )
            return
        self.router.route_from_component(stanza, domain)

    def _detached(self, domain: str, stream: xmlstream.XmlStream) -> None:
        self.router.detach_component(domain, stream)
        self.backpressure.to_components.detach_sink(stream)
        self.backpressure.to_peers.remove_source(transport_of(stream))
        log.info("component detached for {domain}", domain=domain)
