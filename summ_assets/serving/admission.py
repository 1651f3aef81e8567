"""Admission control for the HTTP API: refuse work up front instead of queueing it into timeouts.

A request reserves its sections before any of them is queued for the model, and releases them when it
ends (answered, timed out, failed). It is refused (the server answers ``503`` with ``Retry-After``) when
other work is queued and either bound would be crossed:

- `max_sections`: sections queued at once (the bound counts sections, not requests: one 20-section
  document weighs as much as twenty 1-section ones);
- `max_wait_s`: the estimated time to finish the queued sections plus this request's, at the measured
  rate of the model (seconds per section over everything generated so far). The server sets it to half
  the request timeout, so an admitted request is expected to finish well before its ``504``.

A request arriving at an empty queue is always admitted, however large: refusing it could never turn
into a success later. ``Retry-After`` is the estimated time for the queued work to drain (at least 1 s).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused and when to retry (whole seconds, >= 1)."""

    retry_after_s: int
    reason: str


class Admission:
    """Sections reserved by requests in flight, against `max_sections` and `max_wait_s` (module doc).

    `seconds_per_section()` gives the model's measured rate (None before the first batch)."""

    def __init__(
        self,
        max_sections: int,
        max_wait_s: float | None,
        seconds_per_section: Callable[[], float | None],
    ) -> None:
        if max_sections < 1:
            raise ValueError(f"max_sections: must be >= 1, got {max_sections}")
        self.max_sections = max_sections
        self.max_wait_s = max_wait_s
        self._rate = seconds_per_section
        self._lock = threading.Lock()
        self.queued = 0
        self.admitted = 0
        self.refused = 0

    def _drain_s(self, sections: int) -> float | None:
        rate = self._rate()
        return None if rate is None else sections * rate

    def try_admit(self, sections: int) -> Refusal | None:
        """Reserve `sections` (None: admitted; call `release` when done) or say why not."""
        sections = max(0, int(sections))
        with self._lock:
            if self.queued > 0:
                reason = None
                if self.queued + sections > self.max_sections:
                    reason = (
                        f"queue full: {self.queued} sections queued, this request adds {sections}, the bound is "
                        f"{self.max_sections} (--max-queue-sections)"
                    )
                else:
                    wait = self._drain_s(self.queued + sections)
                    if wait is not None and self.max_wait_s is not None and wait > self.max_wait_s:
                        reason = (
                            f"busy: about {wait:.0f}s of queued work with this request, more than "
                            f"{self.max_wait_s:.0f}s (half the request timeout)"
                        )
                if reason is not None:
                    self.refused += 1
                    drain = self._drain_s(self.queued)
                    retry = max(1, math.ceil(drain)) if drain is not None else 1
                    return Refusal(retry, reason)
            self.queued += sections
            self.admitted += 1
            return None

    def release(self, sections: int) -> None:
        with self._lock:
            self.queued = max(0, self.queued - max(0, int(sections)))

    def snapshot(self) -> dict[str, int | float | None]:
        with self._lock:
            return {
                "queued_sections": self.queued,
                "max_queue_sections": self.max_sections,
                "admitted": self.admitted,
                "refused": self.refused,
            }
