"""Key pools: several upstream keys for one provider, used in turn.

A key that got a 429 rests until its `retry-after` (or `DEFAULT_REST`) has passed; a key
that got a 401/403 is bad for the life of the process and logged once, by its hash (never
in clear). `pick` returns None when every key rests or is bad: the exchange then falls back
to the route's next target, or answers the 429 with the time until the first key is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from claude_code_proxy.gateway.pool import key_id

logger = logging.getLogger(__name__)

DEFAULT_REST = 5.0
MAX_REST = 3600.0


class KeyPool:
    """Round-robin over the usable keys. Not thread-safe: one event loop owns it."""

    def __init__(
        self,
        keys: Sequence[str],
        *,
        provider: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not keys:
            raise ValueError("a key pool needs at least one key")
        self.keys = tuple(dict.fromkeys(keys))  # duplicates would only skew the rotation
        self.provider = provider
        self._clock = clock
        self._next = 0
        self._resting_until: dict[str, float] = {}
        self._bad: set[str] = set()

    def __len__(self) -> int:
        return len(self.keys)

    def pick(self) -> str | None:
        """The next key that is neither resting nor bad, in turn; None when there is none."""
        now = self._clock()
        for offset in range(len(self.keys)):
            index = (self._next + offset) % len(self.keys)
            key = self.keys[index]
            if key in self._bad or self._resting_until.get(key, 0.0) > now:
                continue
            self._next = index + 1
            return key
        return None

    def rest(self, key: str, seconds: float | None = None) -> None:
        """A 429: keep this key out of the rotation for `seconds` (retry-after) or the default."""
        wait = DEFAULT_REST if seconds is None else min(max(seconds, 0.0), MAX_REST)
        self._resting_until[key] = self._clock() + wait
        logger.info(
            "provider %s: key %s rate-limited, resting %.1fs", self.provider, key_id(key), wait
        )

    def mark_bad(self, key: str) -> None:
        """A 401/403: the key is not used again; the first time is logged, by hash."""
        if key in self._bad or key not in self.keys:
            return
        self._bad.add(key)
        logger.warning(
            "provider %s: key %s was rejected by the upstream (401/403) and is no longer used "
            "(%d of %d keys left)",
            self.provider,
            key_id(key),
            len(self.keys) - len(self._bad),
            len(self.keys),
        )

    def is_bad(self, key: str) -> bool:
        return key in self._bad

    @property
    def usable(self) -> int:
        """Keys not marked bad (resting ones included)."""
        return len(self.keys) - len(self._bad)

    def ready_in(self) -> float | None:
        """Seconds until a resting key is back; 0 if one is ready; None if every key is bad."""
        now = self._clock()
        waits = [
            max(0.0, self._resting_until.get(key, 0.0) - now)
            for key in self.keys
            if key not in self._bad
        ]
        return min(waits) if waits else None
