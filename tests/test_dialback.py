"""
Server Dialback keys (XEP-0185): the published test vector, and what
L{gateway.s2s.dialback.check_dialback_key} accepts and refuses.
"""

import string

from twisted.trial import unittest

from gateway.s2s.dialback import check_dialback_key, dialback_key, generate_secret

# XEP-0185 section 4 (example).
SECRET = "s3cr3tf0rd14lb4ck"
RECEIVING = "xmpp.example.com"
ORIGINATING = "example.org"
STREAM_ID = "D60000229F"
KEY = "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"


class DialbackKeyTests(unittest.TestCase):
    def test_xep_0185_vector(self):
        """
        The key for the XEP-0185 example is the one the XEP publishes, in
        lower-case hexadecimal.
        """
        self.assertEqual(dialback_key(SECRET, RECEIVING, ORIGINATING, STREAM_ID), KEY)

    def test_key_depends_on_every_input(self):
        """
        Changing any one of the four inputs changes the key.
        """
        variants = [
            ("other secret", ("s3cr3tf0rd14lb4cK", RECEIVING, ORIGINATING, STREAM_ID)),
            ("other receiving", (SECRET, "xmpp.example.net", ORIGINATING, STREAM_ID)),
            ("other originating", (SECRET, RECEIVING, "example.net", STREAM_ID)),
            ("other stream id", (SECRET, RECEIVING, ORIGINATING, "D60000229E")),
            ("swapped domains", (SECRET, ORIGINATING, RECEIVING, STREAM_ID)),
        ]
        same = [name for name, args in variants if dialback_key(*args) == KEY]
        self.assertEqual(same, [])


class CheckDialbackKeyTests(unittest.TestCase):
    def test_accepts(self):
        """
        The right key is accepted as sent, with surrounding whitespace, and
        in upper-case hexadecimal.
        """
        for key in (KEY, f"  {KEY}\n", f"\t{KEY} ", KEY.upper(), f" {KEY.upper()}\r\n"):
            self.assertIs(
                check_dialback_key(SECRET, RECEIVING, ORIGINATING, STREAM_ID, key), True, repr(key)
            )

    def test_refuses(self):
        """
        A key made for another stream id, for the domains the other way
        round, or with another secret is refused, and so are an empty, a
        missing, a truncated and an extended key.
        """
        cases = [
            ("another stream id", (SECRET, RECEIVING, ORIGINATING, "D60000229F0"), KEY),
            ("swapped domains", (SECRET, ORIGINATING, RECEIVING, STREAM_ID), KEY),
            ("another secret", ("another secret", RECEIVING, ORIGINATING, STREAM_ID), KEY),
            ("empty", (SECRET, RECEIVING, ORIGINATING, STREAM_ID), ""),
            ("whitespace only", (SECRET, RECEIVING, ORIGINATING, STREAM_ID), "  \n"),
            ("None", (SECRET, RECEIVING, ORIGINATING, STREAM_ID), None),
            ("truncated", (SECRET, RECEIVING, ORIGINATING, STREAM_ID), KEY[:-1]),
            ("extended", (SECRET, RECEIVING, ORIGINATING, STREAM_ID), KEY + "0"),
            ("inner space", (SECRET, RECEIVING, ORIGINATING, STREAM_ID), KEY[:32] + " " + KEY[32:]),
        ]
        accepted = [
            name for name, args, key in cases if check_dialback_key(*args, key) is not False
        ]
        self.assertEqual(accepted, [])

    def test_non_ascii_key_refused(self):
        """
        A key with non-ASCII characters (which a peer may send in
        C{<db:verify/>}) is refused with C{False}; it does not raise.
        """
        for key in ("é", KEY[:-1] + "é", "\u0130" + KEY[1:], "\N{PILE OF POO}"):
            self.assertIs(
                check_dialback_key(SECRET, RECEIVING, ORIGINATING, STREAM_ID, key), False, repr(key)
            )


class GenerateSecretTests(unittest.TestCase):
    def test_format(self):
        """
        A secret is 64 lower-case hexadecimal characters (256 bits).
        """
        secret = generate_secret()
        self.assertIsInstance(secret, str)
        self.assertEqual(len(secret), 64)
        self.assertEqual(set(secret) - set(string.hexdigits.lower()), set())

    def test_random(self):
        """
        Secrets differ from one call to the next.
        """
        secrets = {generate_secret() for _ in range(20)}
        self.assertEqual(len(secrets), 20)

    def test_usable(self):
        """
        A generated secret makes keys that check.
        """
        secret = generate_secret()
        key = dialback_key(secret, RECEIVING, ORIGINATING, STREAM_ID)
        self.assertTrue(check_dialback_key(secret, RECEIVING, ORIGINATING, STREAM_ID, key))
        self.assertFalse(check_dialback_key(generate_secret(), RECEIVING, ORIGINATING, STREAM_ID, key))
