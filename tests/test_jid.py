"""
Addresses (L{gateway.xmpp.jid}): RFC 7622 JIDs as the live network writes them,
and the one canonical form of every domain.
"""

from twisted.trial import unittest

from gateway.xmpp.jid import (
    JID,
    AddressError,
    bare_domain,
    canonical_domain,
    jid_domain,
    parse_jid,
    split_jid,
)

FOX = "\U0001F98A"
#: U+1FACE MOOSE, assigned in Unicode 15.0: newer than this Python's
#: Unicode tables (14.0 in Python 3.11), where it is still unassigned.
MOOSE = "\U0001FACE"
LONG_LABEL = "a" * 64
LONG_NAME = ".".join(["a" * 63] * 4)  # 255 characters

#: (address, canonical form) for addresses the gateway takes.
VALID = [
    # Plain, and the spellings of one plain domain.
    ("example.org", "example.org"),
    ("Example.ORG", "example.org"),
    ("example.org.", "example.org"),
    ("user@EXAMPLE.org./Res", "user@example.org/Res"),
    ("localhost", "localhost"),
    ("192.0.2.1", "192.0.2.1"),
    ("[2001:DB8:0:0::1]", "[2001:db8::1]"),
    ("user@[::1]/r", "user@[::1]/r"),
    # Label separators that UTS #46 maps to a full stop.
    ("example\u3002org", "example.org"),  # ideographic full stop
    ("example\uff0eorg", "example.org"),  # fullwidth full stop
    ("example\uff61org", "example.org"),  # halfwidth ideographic full stop
    ("example.org\u3002", "example.org"),  # ... as the final dot too
    ("\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.org", "example.org"),  # fullwidth letters
    # U-labels and A-labels of one domain: one canonical form.
    ("B\u00fccher.Example", "xn--bcher-kva.example"),
    ("b\u00fccher.example", "xn--bcher-kva.example"),
    ("bu\u0308cher.example", "xn--bcher-kva.example"),  # decomposed: NFC first
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("XN--BCHER-KVA.Example.", "xn--bcher-kva.example"),
    # IDNA2008 keeps sharp s and final sigma (IDNA2003 mapped them away).
    ("stra\u00dfe.de", "xn--strae-oqa.de"),
    ("strasse.de", "strasse.de"),
    ("STRASSE.de", "strasse.de"),
    ("\u03c2\u03bf\u03c6\u03bf\u03c2.gr", "xn--0xaahcs.gr"),  # ςοφος: final sigma kept
    ("\u03c3\u03bf\u03c6\u03bf\u03c3.gr", "xn--0xaakcn.gr"),  # σοφοσ: another domain
    ("\u03a3\u039f\u03a6\u039f\u03a3.gr", "xn--0xaakcn.gr"),  # upper case maps to σ
    # Right to left.
    ("\u0645\u062b\u0627\u0644.example", "xn--mgbh0fb.example"),
    # Localparts and resourceparts pass through as written.
    (f"room@conference.example/{FOX} fox", f"room@conference.example/{FOX} fox"),
    ("room@conference.example/Ali \u0639\u0644\u064a", "room@conference.example/Ali \u0639\u0644\u064a"),
    ("room@conference.example/\u05e9\u05dc\u05d5\u05dd", "room@conference.example/\u05e9\u05dc\u05d5\u05dd"),
    ("room@conference.example/e\u0301\u0327\u20dd", "room@conference.example/e\u0301\u0327\u20dd"),
    (f"room@conference.example/{MOOSE}", f"room@conference.example/{MOOSE}"),
    (
        "room@conference.example/\U0001F468\u200d\U0001F469\u200d\U0001F467",
        "room@conference.example/\U0001F468\u200d\U0001F469\u200d\U0001F467",
    ),
    ("room@conference.example/a/b@c", "room@conference.example/a/b@c"),
    ("room@conference.example/ spaced ", "room@conference.example/ spaced "),
    ("J\u00fcrgen@example.org", "J\u00fcrgen@example.org"),
    ("\u0639\u0644\u064a@example.org", "\u0639\u0644\u064a@example.org"),
    (f"{FOX}@example.org", f"{FOX}@example.org"),
    ("\uff21lice@example.org", "\uff21lice@example.org"),  # not mapped: not ours to enforce
    ("Stra\u00dfe@Stra\u00dfe.de/\u03a3", "Stra\u00dfe@xn--strae-oqa.de/\u03a3"),
    ("x" * 1023 + "@example.org", "x" * 1023 + "@example.org"),
    ("example.org/" + "\u00e9" * 511, "example.org/" + "\u00e9" * 511),
]

#: (address, the part at fault) for addresses the gateway refuses.
INVALID = [
    ("", "address"),
    (None, "address"),
    (b"example.org", "address"),
    # Domainparts.
    (".", "domainpart"),
    ("example..org", "domainpart"),
    ("example.org..", "domainpart"),
    (".example.org", "domainpart"),
    ("user@", "domainpart"),
    ("/resource", "domainpart"),
    ("a@b@c.example", "domainpart"),
    ("exa mple.org", "domainpart"),
    ("exa_mple.org", "domainpart"),
    ("exa<mple.org", "domainpart"),
    ("-example.org", "domainpart"),
    ("ab--cd.example", "domainpart"),
    ("xn--zz.example", "domainpart"),  # not Punycode
    ("\u2603.net", "domainpart"),  # IDNA2008 disallows symbols
    ("xn--n3h.net", "domainpart"),  # ... and so their A-labels
    (f"{FOX}.example", "domainpart"),
    ("\u0645\u062b\u0627\u0644a.example", "domainpart"),  # bidi rule
    ("a\u200db.example", "domainpart"),  # ZWJ out of context
    (LONG_LABEL + ".example", "domainpart"),
    (LONG_NAME, "domainpart"),
    ("[::1", "domainpart"),
    ("[example.org]", "domainpart"),
    # Localparts.
    ("@example.org", "localpart"),
    ("a b@example.org", "localpart"),
    ("a\u00a0b@example.org", "localpart"),  # no-break space
    ("a\u3000b@example.org", "localpart"),  # ideographic space
    ("a\tb@example.org", "localpart"),
    ("a\x85b@example.org", "localpart"),  # C1 control
    ('a"b@example.org', "localpart"),
    ("a&b@example.org", "localpart"),
    ("a'b@example.org", "localpart"),
    ("a:b@example.org", "localpart"),
    ("a<b@example.org", "localpart"),
    ("a>b@example.org", "localpart"),
    ("x" * 1024 + "@example.org", "localpart"),
    ("\u00e9" * 512 + "@example.org", "localpart"),
    # Resourceparts.
    ("example.org/", "resourcepart"),
    ("user@example.org/", "resourcepart"),
    ("example.org/a\x00b", "resourcepart"),
    ("example.org/a\x7fb", "resourcepart"),
    ("example.org/a\x9fb", "resourcepart"),
    ("example.org/" + "r" * 1024, "resourcepart"),
    ("example.org/" + FOX * 256, "resourcepart"),  # 1024 bytes
]


class ParseTests(unittest.TestCase):
    def test_valid(self):
        """
        Every address in the table parses, and gives its canonical form.
        """
        got = []
        for value, _ in VALID:
            try:
                got.append((value, parse_jid(value).full()))
            except AddressError as e:
                got.append((value, f"refused: {e}"))
        self.assertEqual(got, VALID)

    def test_invalid(self):
        """
        Every address in the table is refused with L{AddressError} naming the
        part at fault, and with no other exception.
        """
        got = []
        for value, part in INVALID:
            try:
                result = parse_jid(value)
            except AddressError as e:
                got.append((value, e.part))
            except Exception as e:
                got.append((value, repr(e)))
            else:
                got.append((value, f"accepted as {result.full()!r}"))
        self.assertEqual(got, INVALID)

    def test_canonical_flag(self):
        """
        C{canonical} says whether the address was written in canonical form,
        so that its bytes may be passed on unchanged.
        """
        self.assertEqual(
            [(value, parse_jid(value).canonical) for value, _ in VALID],
            [(value, value == canonical) for value, canonical in VALID],
        )

    def test_parts(self):
        """
        The parts are split at the first C{/} and then the first C{@} (RFC 7622
        section 3.1); the domain is canonical, the others as written.
        """
        self.assertEqual(
            parse_jid(f"Room@Conf.Example/{FOX}@home/x"),
            JID("Room", "conf.example", f"{FOX}@home/x", canonical=False),
        )
        self.assertEqual(parse_jid("conf.example").bare(), "conf.example")
        self.assertEqual(parse_jid("r@conf.example/n").bare(), "r@conf.example")
        self.assertEqual(split_jid("a@b/c@d"), ("a", "b", "c@d"))
        self.assertEqual(split_jid("b/c@d"), (None, "b", "c@d"))
        self.assertEqual(split_jid("@b/"), ("", "b", ""))


class DomainTests(unittest.TestCase):
    def test_canonical_domain(self):
        """
        L{canonical_domain} agrees with L{parse_jid} on every domain of the
        table, and is idempotent.
        """
        for value, canonical in VALID:
            local, domain, resource = split_jid(value)
            expected = parse_jid(value).domain
            self.assertEqual(canonical_domain(domain), expected, value)
            self.assertEqual(canonical_domain(expected), expected, value)

    def test_bare_domain(self):
        """
        L{bare_domain} takes a domain alone, in any spelling, and nothing
        with a localpart or resourcepart.
        """
        self.assertEqual(bare_domain("B\u00fccher.Example."), "xn--bcher-kva.example")
        for value in ("user@example.org", "example.org/r", "@example.org", "", None, "a..b"):
            self.assertRaises(AddressError, bare_domain, value)

    def test_jid_domain(self):
        """
        L{jid_domain} finds an address's domain even when the rest of it is
        malformed, and fails only on a malformed domainpart.
        """
        self.assertEqual(jid_domain("a b@Example.ORG/"), "example.org")
        self.assertEqual(jid_domain("@stra\u00dfe.de"), "xn--strae-oqa.de")
        for value in ("", None, "a@", "a@b..c/r", "a@b@c"):
            self.assertRaises(AddressError, jid_domain, value)

    def test_a_labels_are_ascii(self):
        """
        Every canonical domain is ASCII, lower case, without a trailing dot:
        a key that DNS, certificates and the configuration all spell alike.
        """
        for value, _ in VALID:
            domain = parse_jid(value).domain
            self.assertEqual(domain, domain.encode("ascii").decode().lower(), value)
            self.assertFalse(domain.endswith("."), value)
