"""
The C{xmpp-gateway} twistd plugin: C{twistd -n xmpp-gateway [--config FILE]}.
"""

from twisted.application.service import ServiceMaker

xmppGateway = ServiceMaker(
    "XMPP federation gateway",
    "gateway.app.tap",
    "An XMPP server-to-server gateway: encrypted, verified federation for local components.",
    "xmpp-gateway",
)
