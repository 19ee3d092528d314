"""
The bounded cache with expiry that DNS answers, POSH documents and PKIX
verdicts share.
"""

from twisted.trial import unittest

from gateway.cache import ExpiringCache


class ExpiringCacheTests(unittest.SynchronousTestCase):
    def test_window(self):
        cache = ExpiringCache(10)
        cache.put("a", 1, until=20)
        cache.put("b", 2, until=20, since=10)
        cache.put("c", 3, until=20, since=10)
        self.assertEqual([cache.get("a", 5), cache.get("b", 10), cache.get("a", 19.5)], [1, 2, 1])
        self.assertEqual((cache.hits, cache.misses), (3, 0))
        # Outside its window a value is dropped: before it, or at its end.
        self.assertIsNone(cache.get("c", 5))
        self.assertIsNone(cache.get("a", 20))
        self.assertEqual((len(cache), cache.misses), (1, 2))
        self.assertIsNone(cache.get("c", 15))

    def test_least_recently_used_forgotten(self):
        cache = ExpiringCache(2)
        cache.put("a", 1, until=100)
        cache.put("b", 2, until=100)
        cache.get("a", 0)
        cache.put("c", 3, until=100)
        self.assertEqual([cache.get(k, 0) for k in "abc"], [1, None, 3])
        # Putting a key again makes it the most recent.
        cache.put("a", 4, until=100)
        cache.put("d", 5, until=100)
        self.assertEqual([cache.get(k, 0) for k in "acd"], [4, None, 5])

    def test_size_zero_keeps_nothing(self):
        cache = ExpiringCache(0)
        cache.put("a", 1, until=100)
        self.assertEqual((cache.get("a", 0), len(cache)), (None, 0))

    def test_clear(self):
        cache = ExpiringCache(5)
        cache.put("a", 1, until=100)
        cache.clear()
        self.assertIsNone(cache.get("a", 0))
