"""
What operators can see (RFC 7590 section 3.6): live streams with their
encryption and authentication, peers' certificate history, warnings, and
metrics.  The admin interface (L{gateway.ops.admin}) and the command line
(L{gateway.ops.ctl}) show what this module gathers.

L{StatusSource} turns the live streams, the records, the warnings
(L{gateway.s2s.warnings}) and the metrics (L{gateway.s2s.metrics}) into
the JSON the interface serves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.log import Logger
from gateway.tls.certificates import certificate_dict
from gateway.xmpp.jid import AddressError, bare_domain

if TYPE_CHECKING:
    from gateway.records.interfaces import IRecordStore
    from gateway.records.record import AuthenticationRecord
    from gateway.s2s.federation import Federation
    from gateway.s2s.metrics import GatewayMetrics
    from gateway.s2s.stream import S2SStream
    from gateway.s2s.warnings import Warnings

log = Logger()


def _chain_pem(chain: Iterable[bytes]) -> str:
    return "".join(
        x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode("ascii")
        for der in chain
    )


class StatusSource:
    """
    The data behind the admin interface.

    @param federation: the L{gateway.s2s.federation.Federation}.
    @param records: the L{gateway.records.interfaces.IRecordStore}.
    """

    def __init__(
        self,
        federation: Federation,
        records: IRecordStore,
        warnings: Warnings,
        metrics: GatewayMetrics,
    ) -> None:
        self.federation = federation
        self.records = records
        self.warnings_store = warnings
        self.metrics = metrics

    def _summary(self, stream: S2SStream) -> dict[str, Any] | None:
        if stream.tls is None or not stream.tls.peer_chain:
            return None
        try:
            return certificate_dict(stream.tls.peer_chain[0])
        except ValueError:
            return None

    def stream_info(self, stream: S2SStream) -> dict[str, Any]:
        """
        One live stream as JSON-ready data.
        """
        from gateway.records.record import time_iso

        tls = stream.tls
        authentications = [
            {
                "peer_domain": record.peer_domain,
                "local_domain": record.local_domain,
                "method": record.method,
                "authenticated_by": record.evidence.get("authenticated_by"),
                "evidence": dict(record.evidence),
            }
            for record in stream.authentications
        ]
        first = stream.authentications[0] if stream.authentications else None
        change = stream.certificate_change
        return {
            "id": stream.serial,
            "direction": stream.direction,
            "local_domain": stream.local_domain,
            "peer_domain": first.peer_domain if first else stream.peer_name(),
            "state": stream.state.value,
            "encrypted": tls is not None,
            "tls_version": tls.version if tls else None,
            "cipher": tls.cipher if tls else None,
            "authenticated": bool(stream.authentications),
            "method": first.method if first else None,
            "authenticated_by": first.evidence.get("authenticated_by") if first else None,
            "evidence": dict(first.evidence) if first else {},
            "authentications": authentications,
            "certificate": self._summary(stream),
            "since": time_iso(stream.since) if stream.since is not None else None,
            "stanzas_in": stream.stanzas_in,
            "stanzas_out": stream.stanzas_out,
            "certificate_changed": change is not None,
            "previous_certificate": change.as_dict() if change else None,
        }

    def records_state(self) -> dict[str, Any]:
        return self.federation.records_state()

    def streams(self) -> list[dict[str, Any]]:
        return sorted(
            (self.stream_info(s) for s in self.federation.streams),
            key=lambda info: info["since"],
        )

    def stream(self, stream_id: str) -> S2SStream | None:
        for stream in self.federation.streams:
            if stream.serial == stream_id:
                return stream
        return None

    def stream_certificate_pem(self, stream_id: str) -> str | None:
        stream = self.stream(stream_id)
        if stream is None or stream.tls is None or not stream.tls.peer_chain:
            return None
        return _chain_pem(stream.tls.peer_chain)

    #: The most peers one listing holds, and records one peer's history.
    PAGE = 1000

    async def peers(self, limit: int = PAGE, after: str | None = None) -> list[dict[str, Any]]:
        """
        The peer domains in the records, by name, a page at a time (those
        after C{after}, at most C{limit}): when last seen, how, and how many
        certificates.  Summed up by the store, not read record by record.
        """
        from gateway.records.record import time_iso

        return [
            {
                "peer_domain": summary.peer_domain,
                "last_seen": time_iso(summary.last_time),
                "last_method": summary.last_method,
                "last_authenticated": summary.last_authenticated,
                "certificates": summary.certificates,
            }
            for summary in await self.records.peer_summaries(limit=limit, after=after)
        ]

    async def peer(self, domain: str) -> dict[str, Any] | None:
        """
        The history of peer C{domain}, in any spelling of it (records are
        kept under its canonical form), or L{None} when it has none.
        """
        try:
            domain = bare_domain(domain)
        except AddressError:
            return None
        records = await self.records.for_peer(domain, limit=self.PAGE)
        if not records:
            return None
        return self._peer(domain, records, detail=True)

    def _peer(
        self, domain: str, records: Sequence[AuthenticationRecord], detail: bool = False
    ) -> dict[str, Any]:
        from gateway.records.record import time_iso

        certificates: dict[str | None, dict[str, Any]] = {}
        for record in reversed(records):  # oldest first
            certificate = record.certificate
            key = certificate["sha256"] if certificate else None
            entry = certificates.get(key)
            if entry is None:
                entry = certificates[key] = {
                    "certificate": certificate,
                    "first_seen": time_iso(record.time),
                    "last_seen": time_iso(record.time),
                    "verifications": [],
                }
            entry["last_seen"] = time_iso(record.time)
            entry["verifications"].append({
                "time": time_iso(record.time),
                "direction": record.direction,
                "local_domain": record.local_domain,
                "authenticated": record.authenticated,
                "method": record.method,
                "authenticated_by": record.evidence.get("authenticated_by"),
                "reason": record.reason,
                "tls_version": record.tls_version,
                "cipher": record.cipher,
            })
        latest = records[0]
        data: dict[str, Any] = {
            "peer_domain": domain,
            "last_seen": time_iso(latest.time),
            "last_method": latest.method,
            "last_authenticated": latest.authenticated,
            "certificates": len([k for k in certificates if k is not None]),
        }
        if detail:
            data["history"] = list(reversed(list(certificates.values())))
        return data

    def warnings(self) -> list[dict[str, Any]]:
        return [w.as_dict() for w in self.warnings_store.list()]

    def acknowledge(self, warning_id: int) -> bool:
        return self.warnings_store.acknowledge(warning_id)

    def metrics_text(self) -> bytes:
        return self.metrics.text()

