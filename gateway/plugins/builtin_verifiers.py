"""
The gateway's own verifiers, registered as plugins like anyone else's.
"""

from twisted.plugin import IPlugin
from zope.interface import alsoProvides

from gateway.verifiers.dane import DANEVerifierFactory
from gateway.verifiers.dialback import DialbackVerifierFactory
from gateway.verifiers.pinned import PinnedVerifierFactory
from gateway.verifiers.pkix import PKIXVerifierFactory

dane = DANEVerifierFactory()
dialback = DialbackVerifierFactory()
pinned = PinnedVerifierFactory()
pkix = PKIXVerifierFactory()

for _factory in (dane, dialback, pinned, pkix):
    alsoProvides(_factory, IPlugin)
