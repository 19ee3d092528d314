"""
Certificate continuity (RFC 7590 section 3.6, "be warned when a peer's
certificate changes"): the certificate last accepted for each peer domain,
and what changed when a peer comes back with another.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.records.record import AuthenticationRecord
    from gateway.tls.certificates import CertificateSummary


@dataclass(frozen=True)
class CertificateChange:
    """
    A peer presented another certificate than last time.
    """

    previous_sha256: str
    previous_spki_sha256: str
    sha256: str
    spki_sha256: str

    @property
    def key_changed(self) -> bool:
        return self.previous_spki_sha256 != self.spki_sha256

    def as_dict(self) -> dict[str, str | bool]:
        return {
            "previous_sha256": self.previous_sha256,
            "previous_spki_sha256": self.previous_spki_sha256,
            "key_changed": self.key_changed,
        }


class Continuity:
    """
    The certificate last accepted for each peer domain.
    """

    def __init__(self) -> None:
        # peer domain -> (certificate SHA-256, SPKI SHA-256)
        self.last: dict[str, tuple[str, str]] = {}

    def load(self, records: Iterable[AuthenticationRecord]) -> None:
        """
        Learn the last certificate of each peer from C{records} (newest
        first, as the record store returns them).
        """
        for record in records:
            if record.authenticated and record.certificate and record.peer_domain not in self.last:
                self.last[record.peer_domain] = (
                    record.certificate["sha256"],
                    record.certificate["spki_sha256"],
                )

    def check(self, peer_domain: str, summary: CertificateSummary) -> CertificateChange | None:
        """
        Compare C{summary} (a L{CertificateSummary}) with the last
        certificate accepted for C{peer_domain}.

        @return: a L{CertificateChange}, or L{None} when it is the same or
            the first seen.
        """
        previous = self.last.get(peer_domain)
        if previous is None or previous[0] == summary.sha256:
            return None
        return CertificateChange(previous[0], previous[1], summary.sha256, summary.spki_sha256)

    def accept(self, peer_domain: str, summary: CertificateSummary) -> None:
        self.last[peer_domain] = (summary.sha256, summary.spki_sha256)
