"""
The gateway's log level (C{[log] level}): one threshold for every logger
of the package, applied where a message is made, so that a message below
it costs a comparison and nothing else (no event, no formatting, no
write).

Every module of the package logs through L{Logger}, Twisted's with that
check in front.  What Twisted and other libraries log themselves (a
listener starting, an unhandled error) goes to the log unfiltered: a few
lines at start and stop, and failures.
"""

from typing import Any

from twisted.logger import Logger as _TwistedLogger
from twisted.logger import LogLevel

#: The levels an operator may set, by name, lowest first.
LEVELS: dict[str, LogLevel] = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}

_PRIORITY: dict[LogLevel, int] = {
    LogLevel.debug: 0,
    LogLevel.info: 1,
    LogLevel.warn: 2,
    LogLevel.error: 3,
    LogLevel.critical: 4,
}

_threshold = _PRIORITY[LogLevel.info]


def set_level(name: str) -> None:
    """
    Log the package's messages at level C{name} (a key of L{LEVELS}) and
    above from now on.

    @raise KeyError: for a name not in L{LEVELS}.
    """
    global _threshold
    _threshold = _PRIORITY[LEVELS[name]]


def level() -> str:
    """
    The name of the level set now.
    """
    for name, value in LEVELS.items():
        if _PRIORITY[value] == _threshold:
            return name
    raise AssertionError(_threshold)  # pragma: no cover: set_level sets a named one


def enabled(level: LogLevel) -> bool:
    """
    Whether a message at C{level} would be logged: for a message whose
    fields cost something to gather.
    """
    return _PRIORITY[level] >= _threshold


class Logger(_TwistedLogger):
    """
    Twisted's L{twisted.logger.Logger}, dropping what is below the level
    set by L{set_level} before the event is made.
    """

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: Any) -> None:
        if _PRIORITY[level] < _threshold:
            return
        super().emit(level, format, **kwargs)
