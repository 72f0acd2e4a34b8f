"""The console's one GPU telemetry poller: sample on a thread, apply on the event loop, schedule the next.

Why self-rescheduling instead of a fixed interval timer: a sample (NVML, psutil) can take longer
than the interval on a loaded machine; the next one is scheduled only once the last was applied,
so samples never pile up, and an exclusive worker group means at most one is in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.app import App


class TelemetryPoller:
    """Calls `sample()` on a thread worker of `app`, then `apply(snapshot)` on the loop, every `interval`
    seconds (once only when `interval` is None). A failing sample is notified and skipped."""

    def __init__(self, app: App[Any], sample: Callable[[], Any], apply: Callable[[Any], None],
                 interval: float | None) -> None:
        self.app, self.sample, self.apply, self.interval = app, sample, apply, interval

    def poll(self) -> None:
        self.app.run_worker(self._sample, thread=True, group="telemetry", exclusive=True,
                            exit_on_error=False, name="telemetry")

    def _sample(self) -> None:
        try:
            tel = self.sample()
        except Exception as exc:  # noqa: BLE001 - telemetry must never take the console down
            tel = None
            self.app.call_from_thread(self.app.notify, f"telemetry failed: {exc}", severity="warning")
        self.app.call_from_thread(self._apply, tel)

    def _apply(self, tel: Any) -> None:
        if tel is not None:
            self.apply(tel)
        if self.interval:
            self.app.set_timer(self.interval, self.poll)
