"""
The authentication record: what the gateway knew and decided about one
server-to-server stream's peer.
"""

import copy
import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

#: JSON-shaped data: dicts with string keys, lists, strings, numbers,
#: booleans and None, as L{json} reads and writes it (and types it: C{Any}).
JSON: TypeAlias = Any

DIRECTIONS = ("inbound", "outbound")

#: The keys L{AuthenticationRecord.from_dict} requires; the others default.
REQUIRED_KEYS = (
    "peer_domain",
    "local_domain",
    "direction",
    "time",
    "method",
    "authenticated",
)


#: What one record may hold: a list or dict keeps at most L{MAX_ITEMS}
#: entries and a string at most L{MAX_CHARS} characters (the rest is
#: replaced by a note saying how much was left out), and the record's
#: evidence, certificate and verdicts together take at most L{MAX_BYTES}
#: bytes of JSON.  A peer decides much of what a record holds (the names in
#: its certificate, the reasons a verifier quotes): a certificate stuffed
#: with thousands of names makes a record of a few KiB, not of megabytes.
MAX_ITEMS = 32
MAX_CHARS = 1024
MAX_BYTES = 16 * 1024


def within(value: JSON, max_items: int = MAX_ITEMS, max_chars: int = MAX_CHARS) -> bool:
    """
    Whether C{value} (JSON-shaped data) is within the limits of L{bounded}:
    no list or dict of more than C{max_items} entries, no string of more
    than C{max_chars} characters.  A check that builds nothing.
    """
    if isinstance(value, str):
        return len(value) <= max_chars
    if isinstance(value, (list, tuple)):
        if len(value) > max_items:
            return False
        for item in value:
            if not within(item, max_items, max_chars):
                return False
        return True
    if isinstance(value, dict):
        if len(value) > max_items:
            return False
        for key, item in value.items():
            if not (within(key, max_items, max_chars) and within(item, max_items, max_chars)):
                return False
        return True
    return True


def bounded(value: JSON, max_items: int = MAX_ITEMS, max_chars: int = MAX_CHARS) -> JSON:
    """
    C{value} (JSON-shaped data) cut to at most C{max_items} entries per
    list or dict and C{max_chars} characters per string, the last entry or
    the string's end saying how much was left out.  C{value} itself when
    nothing had to be cut (it is never changed; the usual case, checked
    without building anything); cutting a cut value changes nothing.
    """
    if within(value, max_items, max_chars):
        return value
    if isinstance(value, str):
        note = f"... ({len(value) - max_chars} more characters)"
        return value[: max_chars - len(note)] + note
    if isinstance(value, (list, tuple)):
        items = [bounded(item, max_items, max_chars) for item in value]
        if len(items) > max_items:
            items = items[: max_items - 1] + [f"({len(value) - max_items + 1} more left out)"]
        return type(value)(items) if isinstance(value, tuple) else items
    entries = list(cast(dict[JSON, JSON], value).items())
    cut: dict[JSON, JSON] = {}
    for key, item in entries[: max_items - 1] if len(entries) > max_items else entries:
        cut[bounded(key, max_items, max_chars)] = bounded(item, max_items, max_chars)
    if len(entries) > max_items:
        cut["left_out"] = f"{len(entries) - max_items + 1} more entries left out"
    return cut


def time_iso(time: float) -> str:
    """
    Spell C{time} (seconds since the epoch) as an ISO 8601 UTC timestamp
    with microseconds, for example C{2024-05-01T12:00:00.250000Z}.
    """
    moment = datetime.datetime.fromtimestamp(time, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class AuthenticationRecord:
    """
    One stream's peer authentication, successful or refused.

    @ivar peer_domain: the domain the peer claimed (inbound) or that we
        connected to (outbound).
    @ivar local_domain: our domain on the stream.
    @ivar direction: C{"inbound"} or C{"outbound"}.
    @ivar stream_id: the stream's id, or L{None}.
    @ivar time: when the decision was made, in seconds since the epoch
        (UTC).
    @ivar method: how the peer was authenticated: C{pkix}, C{dane},
        C{posh}, C{dialback}, C{pinned}, C{none}, or a plugin verifier's
        name.
    @ivar evidence: the facts the decision rests on, JSON-serialisable.
    @ivar tls_version: the TLS version (C{"TLSv1.3"}), or L{None} when the
        stream is not encrypted.
    @ivar cipher: the TLS cipher suite, or L{None}.
    @ivar certificate: a summary of the peer's certificate (keys
        C{sha256}, C{spki_sha256}, C{subject}, C{issuer}, C{not_before},
        C{not_after}, C{sans}) as a JSON-serialisable dict, or L{None}.
        The store treats it as opaque.
    @ivar verdicts: every verifier's verdict, in the order they ran, each
        as L{Verdict.as_dict<gateway.verifiers.interfaces.Verdict.as_dict>}
        makes it.  L{Verdict} objects given here are turned into those
        dicts, and a list into a tuple.
    @ivar authenticated: C{True} if the peer was accepted, C{False} if the
        stream was refused after verification.
    @ivar reason: why the stream was refused, or C{""}.
    """

    peer_domain: str
    local_domain: str
    direction: str
    stream_id: str | None
    time: float
    method: str
    evidence: dict[str, JSON]
    tls_version: str | None
    cipher: str | None
    certificate: dict[str, JSON] | None
    verdicts: tuple[dict[str, JSON], ...]
    authenticated: bool
    reason: str = ""

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"direction must be 'inbound' or 'outbound', not {self.direction!r}"
            )
        # Normalise so that equal records compare equal whichever way
        # they were made (a Verdict or its dict, a list or a tuple, an int
        # or a float time): from_dict(as_dict()) must give an equal record.
        object.__setattr__(self, "time", float(self.time))
        object.__setattr__(self, "authenticated", bool(self.authenticated))
        object.__setattr__(
            self,
            "verdicts",
            tuple(
                verdict.as_dict() if hasattr(verdict, "as_dict") else verdict
                for verdict in self.verdicts
            ),
        )
        self._bound()

    def _bound(self) -> None:
        """
        Cut what the peer decides (evidence, certificate, verdicts, reason)
        to the limits of L{bounded}, and, should that still take more than
        L{MAX_BYTES} of JSON, to a tighter cut; then, as a last resort,
        keep only a note of the size.
        """
        parts = (self.evidence, self.certificate, self.verdicts, self.reason)
        for items, chars in ((MAX_ITEMS, MAX_CHARS), (8, 256)):
            evidence, certificate, verdicts, reason = (
                bounded(part, items, chars) for part in parts
            )
            size = len(json.dumps([evidence, certificate, verdicts, reason], default=str))
            if size <= MAX_BYTES:
                break
        else:
            evidence = {"left_out": f"evidence of {size} bytes, over the record limit"}
            certificate = None if certificate is None else {
                key: certificate.get(key) for key in ("sha256", "spki_sha256", "not_before", "not_after")
            }
            verdicts = tuple(
                {key: v.get(key) for key in ("verifier", "outcome", "decisive")} if isinstance(v, dict) else str(v)[:64]
                for v in verdicts
            )
        object.__setattr__(self, "evidence", evidence)
        object.__setattr__(self, "certificate", certificate)
        object.__setattr__(self, "verdicts", tuple(verdicts))
        object.__setattr__(self, "reason", reason)

    @property
    def time_iso(self) -> str:
        """
        C{time} as an ISO 8601 UTC timestamp.
        """
        return time_iso(self.time)

    def as_dict(self) -> dict[str, JSON]:
        """
        The record as a JSON-serialisable dict (nested values are copies),
        with C{time} also spelled as an ISO 8601 UTC timestamp under
        C{time_iso}.
        """
        return {
            "peer_domain": self.peer_domain,
            "local_domain": self.local_domain,
            "direction": self.direction,
            "stream_id": self.stream_id,
            "time": self.time,
            "time_iso": self.time_iso,
            "method": self.method,
            "evidence": copy.deepcopy(self.evidence),
            "tls_version": self.tls_version,
            "cipher": self.cipher,
            "certificate": copy.deepcopy(self.certificate),
            "verdicts": [copy.deepcopy(verdict) for verdict in self.verdicts],
            "authenticated": self.authenticated,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, JSON]) -> "AuthenticationRecord":
        """
        The record C{d} describes, as L{as_dict} (or its JSON) spells it:
        C{from_dict(record.as_dict()) == record}.  C{time_iso} and unknown
        keys are ignored; C{stream_id}, C{evidence}, C{tls_version},
        C{cipher}, C{certificate}, C{verdicts} and C{reason} may be left
        out.

        @raise ValueError: a required key is missing, or C{direction} is
            neither C{inbound} nor C{outbound}.
        """
        missing = [key for key in REQUIRED_KEYS if key not in d]
        if missing:
            raise ValueError(
                "authentication record lacks " + ", ".join(repr(key) for key in missing)
            )
        return cls(
            peer_domain=d["peer_domain"],
            local_domain=d["local_domain"],
            direction=d["direction"],
            stream_id=d.get("stream_id"),
            time=d["time"],
            method=d["method"],
            evidence=copy.deepcopy(d.get("evidence") or {}),
            tls_version=d.get("tls_version"),
            cipher=d.get("cipher"),
            certificate=copy.deepcopy(d.get("certificate")),
            verdicts=tuple(copy.deepcopy(list(d.get("verdicts") or ()))),
            authenticated=d["authenticated"],
            reason=d.get("reason") or "",
        )
