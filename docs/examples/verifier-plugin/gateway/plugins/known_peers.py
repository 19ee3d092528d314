"""
An example third-party verifier, shipped as a Twisted plugin.

It verifies a peer whose public key is listed for its domain in
C{known-peers.txt} in the gateway's state folder, one C{domain
spki-sha256-hex} pair a line (C{#} starts a comment).  Install it by
putting this file in a C{gateway/plugins/} folder on the gateway's Python
path (without an C{__init__.py}: C{gateway.plugins} is a namespace the
gateway scans), then name it in a policy:

    [policy.domains."partner.example"]
    verifiers = ["known-peers", "pkix"]
"""

import os

from twisted.internet import defer
from twisted.plugin import IPlugin
from zope.interface import implementer

from gateway.verifiers.interfaces import (
    IDomainVerifier,
    IDomainVerifierFactory,
    Verdict,
    VerificationRequest,
    VerifierEnvironment,
)
from gateway.verifiers.pinned import fingerprints


def read_known_peers(path: str) -> dict[str, set[str]]:
    known: dict[str, set[str]] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) == 2:
                    known.setdefault(fields[0].lower(), set()).add(fields[1].lower())
    except FileNotFoundError:
        pass
    return known


@implementer(IDomainVerifier)
class KnownPeersVerifier:
    name = "known-peers"

    def __init__(self, path: str) -> None:
        self.path = path

    def verify(self, request: VerificationRequest) -> defer.Deferred[Verdict]:
        keys = read_known_peers(self.path).get(request.peer_domain)
        if not keys:
            return defer.succeed(
                Verdict.not_applicable(self.name, f"{request.peer_domain} is not in {self.path}")
            )
        if not request.peer_chain:
            return defer.succeed(Verdict.failed(self.name, "no certificate presented"))
        key = fingerprints(request.peer_chain[0])["spki-sha256"]
        if key in keys:
            return defer.succeed(
                Verdict.verified(self.name, f"public key listed in {self.path}", spki_sha256=key)
            )
        return defer.succeed(
            Verdict.failed(self.name, f"public key {key} is not the one listed in {self.path}")
        )


@implementer(IPlugin, IDomainVerifierFactory)
class KnownPeersVerifierFactory:
    name = "known-peers"

    def build(self, environment: VerifierEnvironment) -> KnownPeersVerifier:
        return KnownPeersVerifier(os.path.join(environment.config.state_dir, "known-peers.txt"))


knownPeers = KnownPeersVerifierFactory()
