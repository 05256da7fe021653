"""When a stream consumer started from Python stops by itself.

The CLI consumes until a signal; a notebook or a test wants "these many events"
or "until caught up": every assigned partition read to its end offset and no
event for ``QUIET_SECONDS`` (some brokers answer end offsets short, so the end
offsets alone could stop early). Either way the consumer then stops as on a
signal: it lands the current batch, commits and leaves the group.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from featurestore.errors import EntityInputError

QUIET_SECONDS = 1.0


@dataclass
class Until:
    max_events: int | None = None  # events consumed: accepted plus dead-lettered
    caught_up: bool = False
    seconds: float | None = None
    _started: float = field(default_factory=time.monotonic)
    _seen: int = -1  # events consumed at the previous check
    _quiet_since: float = field(default_factory=time.monotonic)  # when _seen last changed

    def __post_init__(self) -> None:
        if self.max_events is not None and (
            not isinstance(self.max_events, int) or self.max_events < 1
        ):
            raise EntityInputError(
                f"max_events must be a positive integer (got {self.max_events!r})."
            )
        if self.seconds is not None and not self.seconds > 0:
            raise EntityInputError(f"seconds must be positive (got {self.seconds!r}).")

    @property
    def forever(self) -> bool:
        return self.max_events is None and not self.caught_up and self.seconds is None

    def fresh(self) -> Until:
        """The same condition for another consumer, its clock starting now."""
        return Until(self.max_events, self.caught_up, self.seconds)

    def reached(self, consumer: Any) -> bool:
        """Checked by the consumer's loop before each poll; caps the next poll so that
        ``max_events`` is never passed."""
        consumed = consumer.stats.accepted + consumer.stats.dead_letters
        if self.max_events is not None:
            remaining = self.max_events - consumed
            if remaining <= 0:
                return True
            consumer.max_records = min(consumer.max_records, remaining)
        now = time.monotonic()
        if self.seconds is not None and now - self._started >= self.seconds:
            return True
        if self.caught_up:
            if consumed != self._seen:
                self._seen, self._quiet_since = consumed, now
                return False
            if now - self._quiet_since >= QUIET_SECONDS and consumer.caught_up():
                return True
            if now - self._quiet_since >= QUIET_SECONDS:
                self._quiet_since = now  # ask the broker again after another quiet spell
        return False
