"""Bar charts drawn as SVG by the server: no JavaScript library, no build step."""

from collections.abc import Sequence
from dataclasses import dataclass

from .snapshot import Minute

WIDTH = 600
HEIGHT = 120
GAP = 1


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    # "succeeded" or "failed": the CSS class that colours it.
    kind: str
    label: str


@dataclass(frozen=True, slots=True)
class BarChart:
    bars: list[Bar]
    # The value a full-height bar stands for.
    top: int
    width: int = WIDTH
    height: int = HEIGHT


def finished_per_minute(minutes: Sequence[Minute]) -> BarChart:
    """One bar per minute: failed jobs stacked on successful ones."""
    top = max((minute.finished for minute in minutes), default=0) or 1
    step = WIDTH / max(len(minutes), 1)
    bars = []
    for index, minute in enumerate(minutes):
        x = index * step
        base = HEIGHT
        for kind, count in (("succeeded", minute.succeeded), ("failed", minute.failed)):
            if not count:
                continue
            height = HEIGHT * count / top
            base -= height
            bars.append(
                Bar(
                    x=round(x, 2),
                    y=round(base, 2),
                    width=round(step - GAP, 2),
                    height=round(height, 2),
                    kind=kind,
                    label=f"{minute.start:%H:%M}: {count} {kind}",
                )
            )
    return BarChart(bars=bars, top=top)
