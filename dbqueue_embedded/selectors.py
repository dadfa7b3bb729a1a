"""Which queues a worker takes jobs from.

A selector is an exact queue name (``"emails"``), a prefix ending in ``*``
(``"emails-*"``), or ``"*"`` for every queue. A worker tries its selectors in
the order given: earlier selectors are preferred.
"""

from collections.abc import Iterable
from dataclasses import dataclass

ALL_QUEUES = "*"


@dataclass(frozen=True, slots=True)
class QueueSelector:
    pattern: str

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, str) or not self.pattern:
            raise ValueError("A queue selector must be a non-empty string.")
        if "*" in self.pattern[:-1]:
            raise ValueError(
                f"Queue selector {self.pattern!r} is not valid: '*' may only "
                "end a selector ('emails-*') or stand alone ('*')."
            )

    @property
    def matches_all(self) -> bool:
        return self.pattern == ALL_QUEUES

    @property
    def prefix(self) -> str | None:
        """The queue-name prefix of a wildcard selector, else None."""
        if self.pattern.endswith("*") and not self.matches_all:
            return self.pattern[:-1]
        return None

    @property
    def exact_name(self) -> str | None:
        return None if self.pattern.endswith("*") else self.pattern

    def matches(self, queue_name: str) -> bool:
        if self.matches_all:
            return True
        if self.prefix is not None:
            return queue_name.startswith(self.prefix)
        return queue_name == self.pattern

    def __str__(self) -> str:
        return self.pattern


def parse_selectors(patterns: Iterable[str]) -> tuple[QueueSelector, ...]:
    """Parse selectors, splitting comma-separated entries, keeping order."""
    if isinstance(patterns, str):
        patterns = [patterns]
    selectors = []
    for entry in patterns:
        if not isinstance(entry, str):
            raise ValueError(f"Queue selectors must be strings, not {entry!r}.")
        for pattern in entry.split(","):
            selector = QueueSelector(pattern.strip())
            if selector not in selectors:
                selectors.append(selector)
    if not selectors:
        raise ValueError("At least one queue selector is required.")
    return tuple(selectors)
