"""
Finding verifiers: every L{IDomainVerifierFactory} plugin in
C{gateway.plugins}, built once per gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from twisted.plugin import getPlugins

from gateway import plugins
from gateway.verifiers.interfaces import IDomainVerifier, IDomainVerifierFactory, VerifierEnvironment

if TYPE_CHECKING:
    from gateway.app.config import DomainPolicy


def available_verifiers() -> dict[str, IDomainVerifierFactory]:
    """
    The installed verifier factories, by name.

    @rtype: L{dict} of L{str} to L{IDomainVerifierFactory}
    """
    factories: dict[str, IDomainVerifierFactory] = {}
    for factory in getPlugins(IDomainVerifierFactory, plugins):
        factories.setdefault(factory.name, factory)
    return factories


class VerifierRegistry:
    """
    The verifiers of one gateway, built on first use from the plugins.

    @param environment: the L{VerifierEnvironment} handed to factories.
    @param factories: name → factory (default: L{available_verifiers}).
    """

    def __init__(
        self,
        environment: VerifierEnvironment,
        factories: Mapping[str, IDomainVerifierFactory] | None = None,
    ) -> None:
        self.environment = environment
        self.factories = available_verifiers() if factories is None else dict(factories)
        self._verifiers: dict[str, IDomainVerifier] = {}

    def get(self, name: str) -> IDomainVerifier:
        verifier = self._verifiers.get(name)
        if verifier is None:
            verifier = self._verifiers[name] = self.factories[name].build(self.environment)
        return verifier

    def chain_for(self, policy: DomainPolicy) -> list[IDomainVerifier]:
        """
        The verifiers C{policy} names, in order; a pin check comes first
        when the policy pins certificates.
        """
        names = (("pinned",) if policy.pins else ()) + tuple(policy.verifiers)
        return [self.get(name) for name in names]
