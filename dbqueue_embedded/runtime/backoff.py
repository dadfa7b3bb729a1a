"""Growing delays between retries, so an outage is not hammered or logged to death."""

import random


class Backoff:
    def __init__(self, first: float = 0.1, maximum: float = 5.0) -> None:
        self._first = first
        self._maximum = maximum
        self._next = first

    def next_delay(self) -> float:
        """The next delay in seconds: doubling up to the maximum, with jitter."""
        delay = self._next
        self._next = min(self._next * 2, self._maximum)
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._next = self._first
