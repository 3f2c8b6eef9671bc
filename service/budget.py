"""The time budget of one search (``TIME_BUDGET_MS``): checked between stages and between the queries of a batch.

A stage that is running is never interrupted; the check after it stops the
search with :class:`~service.errors.TimeBudgetExceeded` (a 503 with
``Retry-After``), so a slow search, or a long batch, ends early instead of
holding a worker. gunicorn's worker ``--timeout`` is the backstop for a stage
that never returns.
"""

from __future__ import annotations

import time


class Budget:
    """``ms`` milliseconds from ``start`` (``time.perf_counter()``; now if not given); ``ms=0``: no budget."""

    def __init__(self, ms: float, start: float | None = None) -> None:
        self.ms = ms
        self.start = time.perf_counter() if start is None else start

    @property
    def elapsed_ms(self) -> float:
        """Milliseconds since the start."""
        return 1000 * (time.perf_counter() - self.start)

    def check(self, stage: str) -> None:
        """Raise :class:`~service.errors.TimeBudgetExceeded` if the budget is spent; ``stage`` just ended."""
        if self.ms and (elapsed := self.elapsed_ms) > self.ms:
            from service.errors import TimeBudgetExceeded

            raise TimeBudgetExceeded(self.ms, elapsed, stage)
