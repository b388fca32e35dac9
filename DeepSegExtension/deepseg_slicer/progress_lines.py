"""Parse the ``PROGRESS <stage> <done>/<total>`` lines the ``deepseg`` CLI prints on stderr
(``deepseg.progress.progress_line``) into what a panel shows: stage text and a percentage."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

_LINE = re.compile(r"^PROGRESS\s+(?P<stage>.+?)\s+(?P<done>\d+)/(?P<total>\d+)\s*$")


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report; ``total == 0`` means the stage has just started."""

    stage: str
    done: int
    total: int

    @property
    def fraction(self) -> Optional[float]:
        """Completed fraction of the stage, or None while the stage has no known length."""
        return min(1.0, self.done / self.total) if self.total > 0 else None

    @property
    def text(self) -> str:
        return f"{self.stage} ({self.done}/{self.total})" if self.total > 0 else f"{self.stage}..."


def parse_progress_line(line: str) -> Optional[ProgressEvent]:
    """The event a line reports, or None for any other output (log lines, warnings)."""
    m = _LINE.match(line.strip())
    if not m:
        return None
    return ProgressEvent(m["stage"], int(m["done"]), int(m["total"]))


class ProgressTracker:
    """Keeps the latest stage and its percentage across lines, plus the stages seen in order."""

    def __init__(self) -> None:
        self.current: Optional[ProgressEvent] = None
        self.stages: list[str] = []

    def feed(self, line: str) -> Optional[ProgressEvent]:
        event = parse_progress_line(line)
        if event is not None:
            if not self.stages or self.stages[-1] != event.stage:
                self.stages.append(event.stage)
            self.current = event
        return event

    @property
    def percent(self) -> int:
        """0-100 within the current stage; 0 while it has no known length."""
        frac = self.current.fraction if self.current else None
        return int(round(100 * frac)) if frac is not None else 0

    @property
    def text(self) -> str:
        return self.current.text if self.current else ""
