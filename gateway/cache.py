"""
One bounded cache with expiry, for the answers the gateway keeps: DNS
answers (for their TTL), POSH documents (for their C{expires}) and PKIX
verdicts (while the certificates they vouch for are valid).
"""

import collections
from collections.abc import Hashable
from typing import Any, Generic, Protocol, TypeVar


class _Comparable(Protocol):
    """
    What a time must allow: POSIX seconds and datetimes both do.
    """

    def __lt__(self, other: Any, /) -> bool: ...

    def __le__(self, other: Any, /) -> bool: ...


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T", bound=_Comparable)


class ExpiringCache(Generic[K, V, T]):
    """
    At most C{size} values, each usable within its own window; the least
    recently used is forgotten first.  Times are whatever the caller
    compares (POSIX seconds, datetimes), given explicitly; the type is
    C{ExpiringCache[key, value, time]}.

    @ivar hits: how many L{get}s found a usable value.
    @ivar misses: how many did not.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: collections.OrderedDict[K, tuple[V, T | None, T]] = (
            collections.OrderedDict()
        )
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, now: T) -> V | None:
        """
        The value kept for C{key} if C{now} is within its window, else
        L{None} (a value outside its window is dropped).
        """
        entry = self._entries.get(key)
        if entry is not None:
            value, since, until = entry
            if (since is None or since <= now) and now < until:
                self._entries.move_to_end(key)
                self.hits += 1
                return value
            del self._entries[key]
        self.misses += 1
        return None

    def put(self, key: K, value: V, until: T, since: T | None = None) -> None:
        """
        Keep C{value} for C{key}, usable from C{since} (L{None}: at once)
        until just before C{until}.
        """
        if self.size <= 0:
            return
        self._entries[key] = (value, since, until)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
