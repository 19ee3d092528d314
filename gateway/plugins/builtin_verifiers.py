"""
The gateway's own verifiers, registered as plugins like anyone else's.
"""

from twisted.plugin import IPlugin
from zope.interface import alsoProvides

from gateway.verifiers.dane import DANEVerifierFactory
from gateway.verifiers.dialback import DialbackVerifierFactory
from gateway.verifiers.pinned import PinnedVerifierFactory
from gateway.verifiers.pkix import PKIXVerifierFactory
from gateway.verifiers.posh import POSHVerifierFactory

dane = DANEVerifierFactory()
dialback = DialbackVerifierFactory()
pinned = PinnedVerifierFactory()
pkix = PKIXVerifierFactory()
posh = POSHVerifierFactory()

for _factory in (dane, dialback, pinned, pkix, posh):
    alsoProvides(_factory, IPlugin)
