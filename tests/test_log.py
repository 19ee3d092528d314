"""
The gateway's log level: messages below it are dropped before an event is
made; those at or above it reach the observers as Twisted's would.
"""

from twisted.logger import LogLevel, LogPublisher
from twisted.trial import unittest

from gateway import log
from gateway.log import LEVELS, Logger


class LevelTests(unittest.TestCase):
    def setUp(self):
        self.addCleanup(log.set_level, log.level())
        self.events = []
        publisher = LogPublisher(self.events.append)
        self.log = Logger(namespace="gateway.test", observer=publisher)

    def emit_all(self):
        self.log.debug("d {x}", x=1)
        self.log.info("i {x}", x=2)
        self.log.warn("w {x}", x=3)
        self.log.error("e {x}", x=4)
        self.log.critical("c {x}", x=5)
        return [event["log_level"] for event in self.events]

    def test_default_info(self):
        """
        Without a level set, info and above are logged, debug is not.
        """
        log.set_level("info")
        self.assertEqual(log.level(), "info")
        self.assertEqual(
            self.emit_all(), [LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical]
        )

    def test_each_level(self):
        """
        Each named level keeps itself and what is above it.
        """
        expected = {
            "debug": [LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical],
            "info": [LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical],
            "warn": [LogLevel.warn, LogLevel.error, LogLevel.critical],
            "error": [LogLevel.error, LogLevel.critical],
        }
        self.assertEqual(set(expected), set(LEVELS))
        for name, levels in expected.items():
            del self.events[:]
            log.set_level(name)
            self.assertEqual(log.level(), name)
            self.assertEqual(self.emit_all(), levels, name)

    def test_enabled(self):
        log.set_level("warn")
        self.assertFalse(log.enabled(LogLevel.info))
        self.assertTrue(log.enabled(LogLevel.warn))
        self.assertTrue(log.enabled(LogLevel.critical))

    def test_event_unchanged(self):
        """
        A logged event carries its format, fields and namespace as
        Twisted's logger makes them.
        """
        log.set_level("warn")
        self.log.warn("peer {peer} refused", peer="p.example")
        [event] = self.events
        self.assertEqual(event["log_format"], "peer {peer} refused")
        self.assertEqual(event["peer"], "p.example")
        self.assertEqual(event["log_namespace"], "gateway.test")

    def test_failure_below_threshold_never(self):
        """
        Failures are logged at critical, whatever the level.
        """
        log.set_level("error")
        try:
            1 / 0
        except ZeroDivisionError:
            self.log.failure("it broke")
        [event] = self.events
        self.assertEqual(event["log_level"], LogLevel.critical)
        self.assertIn("log_failure", event)

    def test_unknown_level(self):
        self.assertRaises(KeyError, log.set_level, "warning")
        self.assertRaises(KeyError, log.set_level, "critical")

    def test_package_loggers(self):
        """
        Every logger of the package is the gateway's, so that the level
        applies to all of them.
        """
        import importlib
        import pkgutil

        import gateway

        found = 0
        for module in pkgutil.walk_packages(gateway.__path__, "gateway."):
            loaded = importlib.import_module(module.name)
            for value in vars(loaded).values():
                if isinstance(value, Logger.__mro__[1]):
                    found += 1
                    self.assertIsInstance(value, Logger, module.name)
        self.assertGreater(found, 5)  # the walk did find them
