"""
XMPP addresses (RFC 7622) as the gateway reads them: split, checked, and
with one canonical form for every domain.

Domainparts are what the gateway routes, verifies and keeps policy for, so
each has exactly one spelling here, its I{canonical domain}: IDNA2008
(RFC 5891) after the UTS #46 mapping (case, width, the ideographic and
fullwidth dots), as lower-case A-labels, without a trailing dot, within the
DNS length limits.  C{Bücher.Example}, C{bücher.example.} and
C{XN--BCHER-KVA.example} are all C{xn--bcher-kva.example}; C{straße.de} is
C{xn--strae-oqa.de}, a different domain from C{strasse.de}, as in DNS.
A-labels are the one form that every implementation, IDNA2003 (RFC 3490,
which maps C{ß} to C{ss}) or IDNA2008, reads as the same domain, and the form
DNS and certificates (RFC 6125) use; so they are also what the gateway
writes on the wire.

Localparts and resourceparts are not the gateway's to enforce: RFC 7622
sections 3.3.2 and 3.4.2 leave enforcement to the entity responsible for
the address, and the PRECIS profiles (RFC 8264, RFC 8265) depend on the
Unicode version (a code point unassigned in this Python's tables, such as a
new emoji, would be refused).  They are passed through exactly as written,
after the checks no version of those profiles would contradict: length
(1 to 1023 bytes of UTF-8), no control characters, and in a localpart no
white space and none of C{" & ' / : < > @} (RFC 7622 section 3.3.1).
See C{docs/operating.md}, "Addresses".
"""

import functools
import ipaddress
import unicodedata
from dataclasses import dataclass

import idna

#: RFC 7622 section 3.3.1: code points a localpart never holds.
LOCALPART_FORBIDDEN = frozenset("\"&'/:<>@")

#: RFC 7622 sections 3.2 to 3.4: each part is at most this many bytes.
MAX_PART_BYTES = 1023


class AddressError(ValueError):
    """
    A JID or a domain does not follow RFC 7622.

    @ivar part: which part is wrong: C{"address"} (missing, or not a
        string), C{"localpart"}, C{"domainpart"} or C{"resourcepart"}.
    """

    def __init__(self, message: str, part: str = "address") -> None:
        super().__init__(message)
        self.part = part


@dataclass(frozen=True, slots=True)
class JID:
    """
    An address whose domain is canonical (see the module docstring) and
    whose localpart and resourcepart are as they were written.

    @ivar canonical: whether the address was written exactly as L{full}
        gives it, so that its original bytes may be passed on as they are.
    """

    local: str | None
    domain: str
    resource: str | None
    canonical: bool = True

    def full(self) -> str:
        """
        The address as text, with the canonical domain.
        """
        text = self.domain
        if self.local is not None:
            text = f"{self.local}@{text}"
        if self.resource is not None:
            text = f"{text}/{self.resource}"
        return text

    def bare(self) -> str:
        """
        The address without its resourcepart.
        """
        return self.domain if self.local is None else f"{self.local}@{self.domain}"


def split_jid(value: str | None) -> tuple[str | None, str, str | None]:
    """
    Split C{value} into its localpart, domainpart and resourcepart as RFC
    7622 section 3.1 does: the resourcepart follows the first C{/}, the
    localpart precedes the first C{@} before that.  No part is checked.

    @return: C{(localpart or None, domainpart, resourcepart or None)}; an
        empty part that was marked (C{@domain}, C{domain/}) is C{""}.
    @raise AddressError: when C{value} is not a non-empty string.
    """
    if not value or not isinstance(value, str):
        raise AddressError("missing address")
    bare, slash, resource = value.partition("/")
    local: str | None
    local, at, domain = bare.partition("@")
    if not at:
        local, domain = None, bare
    return local, domain, resource if slash else None


@functools.lru_cache(maxsize=4096)
def canonical_domain(value: str | None) -> str:
    """
    The canonical form of the domainpart C{value} (see the module
    docstring): lower-case A-labels, no trailing dot; an IP address literal
    (RFC 7622 section 3.2) in its standard form.

    @raise AddressError: when C{value} is not a domain name IDNA2008 allows
        (an empty label, a label or name too long, a code point IDNA2008
        disallows, a broken A-label, ...).
    """
    if not value or not isinstance(value, str):
        raise AddressError("empty domainpart", "domainpart")
    if value.startswith("[") and value.endswith("]"):
        try:
            return f"[{ipaddress.IPv6Address(value[1:-1]).compressed}]"
        except ValueError:
            raise AddressError(f"{value!r} is not an IPv6 address", "domainpart") from None
    try:
        encoded = idna.encode(value, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError) as e:
        raise AddressError(f"{value!r} is not a valid domain: {e}", "domainpart") from None
    # RFC 7622 section 3.2: a final dot (after mapping, so that a final
    # ideographic full stop is one too) is not part of the domain.
    if encoded.endswith("."):
        encoded = encoded[:-1]
    if not encoded:
        raise AddressError(f"{value!r} is not a valid domain", "domainpart")
    return encoded


def _check_localpart(value: str, local: str) -> None:
    if not local:
        raise AddressError(f"{value!r} has an empty localpart", "localpart")
    if len(local.encode("utf-8")) > MAX_PART_BYTES:
        raise AddressError(f"{value!r} has a localpart over {MAX_PART_BYTES} bytes", "localpart")
    for character in local:
        if character in LOCALPART_FORBIDDEN:
            raise AddressError(f"{value!r}: {character!r} is not allowed in a localpart", "localpart")
        if character.isspace() or unicodedata.category(character) in ("Cc", "Zs", "Zl", "Zp"):
            raise AddressError(
                f"{value!r}: U+{ord(character):04X} is not allowed in a localpart", "localpart"
            )


def _check_resourcepart(value: str, resource: str) -> None:
    if not resource:
        raise AddressError(f"{value!r} has an empty resourcepart", "resourcepart")
    if len(resource.encode("utf-8")) > MAX_PART_BYTES:
        raise AddressError(
            f"{value!r} has a resourcepart over {MAX_PART_BYTES} bytes", "resourcepart"
        )
    for character in resource:
        if unicodedata.category(character) == "Cc":
            raise AddressError(
                f"{value!r}: U+{ord(character):04X} is not allowed in a resourcepart",
                "resourcepart",
            )


@functools.lru_cache(maxsize=8192)
def _parse_jid(value: str) -> JID:
    local, domain, resource = split_jid(value)
    try:
        domain = canonical_domain(domain)
    except AddressError as e:
        raise AddressError(f"{value!r}: {e}", "domainpart") from None
    if local is not None:
        _check_localpart(value, local)
    if resource is not None:
        _check_resourcepart(value, resource)
    address = JID(local, domain, resource)
    if address.full() != value:
        address = JID(local, domain, resource, canonical=False)
    return address


def parse_jid(value: str | None) -> JID:
    """
    Parse C{value} as a JID (RFC 7622; see the module docstring).  The
    results are cached: the same few addresses recur, and the domain's
    IDNA2008 check is the dearest part of routing a stanza.

    @rtype: L{JID}
    @raise AddressError: when it is missing or malformed; its C{part} says
        where.
    """
    if not value or not isinstance(value, str):
        raise AddressError("missing address")
    return _parse_jid(value)


def jid_domain(value: str | None) -> str:
    """
    The canonical domain of the address C{value}, without checking its
    localpart or resourcepart: which domain an address belongs to decides
    which stream or component answers for it, even when the rest of it is
    malformed.

    @raise AddressError: when C{value} is missing or its domainpart is
        malformed.
    """
    return canonical_domain(split_jid(value)[1])


def bare_domain(value: str | None) -> str:
    """
    The canonical form of C{value}, which must be a domain alone (no
    localpart, no resourcepart): a stream header's C{to} or C{from}, a
    dialback C{from} or C{to}, a configured domain.

    @raise AddressError: when it is anything else.
    """
    if not value or not isinstance(value, str):
        raise AddressError("empty domain", "domainpart")
    local, domain, resource = split_jid(value)
    if local is not None or resource is not None:
        raise AddressError(f"{value!r} is not a bare domain", "domainpart")
    return canonical_domain(domain)

