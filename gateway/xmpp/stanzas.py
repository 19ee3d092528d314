"""
XMPP names and small pure helpers over stanzas: namespaces, error
responses (RFC 6120 section 8.3) and namespace rewriting between
component and server streams.
"""

from collections.abc import Iterable

from twisted.words.protocols.jabber import error as jabber_error
from twisted.words.xish import domish

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_XMPP_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_XMPP_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_SERVER = "jabber:server"
NS_COMPONENT = "jabber:component:accept"
NS_DIALBACK = "jabber:server:dialback"
NS_DIALBACK_FEATURE = "urn:xmpp:features:dialback"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_SM = "urn:xmpp:sm:3"

STANZA_NAMES = frozenset(("message", "presence", "iq"))


def is_bounceable(stanza: domish.Element) -> bool:
    """
    Whether an undeliverable C{stanza} may be answered with an error.

    Errors are never answered (RFC 6120 section 8.3.1), and neither are IQ
    results (section 8.2.3), so that two servers can't loop.
    """
    kind = stanza.getAttribute("type")
    if kind == "error":
        return False
    if stanza.name == "iq" and kind == "result":
        return False
    return True


#: The default language of the streams to components (their header's
#: xml:lang): stanzas from peers are in it unless they say otherwise.
COMPONENT_LANGUAGE = "en"

IQ_TYPES = frozenset(("get", "set", "result", "error"))


def child_count(stanza: domish.Element) -> int:
    """
    How many child elements C{stanza} has (a shallow one counts them as
    they were parsed).
    """
    counted = getattr(stanza, "child_count", None)
    if counted is not None:
        return counted
    return sum(1 for _ in stanza.elements())


def iq_problem(stanza: domish.Element) -> str | None:
    """
    What RFC 6120 section 8.2.3 finds wrong with the IQ C{stanza}, as text
    for a C{bad-request} answer, or L{None}.  Only what can be answered is
    judged: a type that is none of the four, and requests (C{get}, C{set})
    without an id or with other than exactly one child.  A result or an
    error is never answered with an error (section 8.3.1), so one that
    breaks the rules goes on for its recipient to ignore.
    """
    kind = stanza.getAttribute("type")
    if kind not in IQ_TYPES:
        return f"an IQ's type must be get, set, result or error, not {kind!r}" if kind else (
            "an IQ without a type"
        )
    if kind in ("get", "set"):
        if not stanza.getAttribute("id"):
            return "an IQ request without an id"
        children = child_count(stanza)
        if children != 1:
            return f"an IQ request must hold exactly one child element, not {children}"
    return None


#: The error type RFC 6120 section 8.3.3 gives each defined condition.
STANZA_ERROR_TYPES = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "gone": "cancel",
    "internal-server-error": "cancel",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "redirect": "modify",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "subscription-required": "auth",
    "undefined-condition": "cancel",
    "unexpected-request": "wait",
}


#: The most bytes (roughly: characters of text and names) of the original
#: payload an error reply echoes.  RFC 6120 section 8.3.1 lets an error
#: include the payload; a 400 KB one is left out, so that answering a stanza
#: never costs more than the stanza did.
MAX_ECHOED_PAYLOAD = 4096


def _payload_within(children: Iterable[str | domish.Element], budget: int) -> bool:
    """
    Whether C{children} (text and elements) come to at most C{budget}
    characters of text, names and attribute values; stops counting as soon
    as they don't.
    """
    stack = list(children)
    while stack:
        child = stack.pop()
        if isinstance(child, str):
            budget -= len(child)
        else:
            budget -= len(child.name) + 5 + sum(
                len(str(k)) + len(v) + 4 for k, v in child.attributes.items()
            )
            stack.extend(child.children)
        if budget < 0:
            return False
    return True


def error_response(
    stanza: domish.Element, condition: str, text: str | None = None
) -> domish.Element:
    """
    Build the error stanza (RFC 6120 section 8.3) that answers C{stanza}.

    The addresses are swapped and the original payload kept, unless it is
    larger than L{MAX_ECHOED_PAYLOAD}; the error type is the one RFC 6120
    gives for C{condition}.
    """
    if condition not in STANZA_ERROR_TYPES:
        condition = "undefined-condition"
    error = jabber_error.StanzaError(
        condition, type=STANZA_ERROR_TYPES[condition], text=text
    )
    error.code = None  # no legacy codes: RFC 6120 has none
    response = error.toResponse(stanza)
    if not _payload_within(stanza.children, MAX_ECHOED_PAYLOAD):
        # toResponse copied the payload, then added the error after it.
        response.children = response.children[-1:]
    return response


def rewrite_namespace(element: domish.Element, old: str, new: str) -> domish.Element:
    """
    Move C{element} and every descendant in namespace C{old} to C{new}, in
    place.  Stanzas cross from C{jabber:component:accept} streams to
    C{jabber:server} streams and back this way.
    """
    if element.uri == old:
        element.uri = new
    if element.defaultUri == old:
        element.defaultUri = new
    # The children list holds elements and text; domish's elements() would
    # ask zope.interface about each, which costs more than the rewrite.
    for child in element.children:
        if isinstance(child, domish.Element):
            rewrite_namespace(child, old, new)
    return element


def error_condition(stanza: domish.Element) -> str | None:
    """
    The defined condition (RFC 6120 section 8.3.3) of the C{<error/>} child
    of C{stanza}, or L{None} when it has none.
    """
    for error in stanza.elements():
        if error.name != "error":
            continue
        for child in error.elements():
            if child.uri == NS_XMPP_STANZAS and child.name != "text":
                return child.name
    return None
