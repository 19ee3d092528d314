"""
An XMPP server-to-server federation gateway.

The gateway carries a deployment's XMPP domains onto the federation: local
services attach as XEP-0114 components, and the gateway owns every
server-to-server stream, encrypted per RFC 7590 and authenticated per peer.
"""

__version__ = "0.1.0.dev0"
