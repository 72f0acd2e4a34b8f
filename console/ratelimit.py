"""At most every N seconds, and at once when the first change comes after a quiet interval.

Why: the console's streamed views (Live's header and log lines, the loss chart) hear of changes
from the app's update pump many times a second, and each repaint costs a frame (a plotext chart
build most of all); repainting on every change was most of the Live screen's CPU with 24 jobs
streaming (bench/bench_console.py). A fixed tick would instead make the first change after a quiet
while wait for no reason. `RateLimit` does neither: a change that comes when the last action is at
least `interval_s` old acts at once; changes within the interval are gathered into one action when
it has passed. A key's effect (another job, a chart option) is not held by the rate: `request_in`
acts after a short fixed delay instead.

The clock and the timer are passed in (the app's monotonic clock, a widget's `set_timer`), so the
rule is tested with a fake clock and no sleeps (tests/test_console_ratelimit.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Stoppable(Protocol):
    """What `set_timer` returns (a Textual `Timer`)."""

    def stop(self) -> None: ...


class RateLimit:
    """Run `action` at most every `interval_s` seconds, at once when it is due.

    `set_timer(delay, callback)` calls `callback` once after `delay` seconds (a widget's
    `set_timer`). `defer`, when given, is how "at once" runs (a widget's `call_after_refresh`:
    after the frame the pump's batch paints, so that frame does not wait for the action).
    """

    def __init__(
        self,
        interval_s: float,
        action: Callable[[], None],
        *,
        clock: Callable[[], float],
        set_timer: Callable[[float, Callable[[], None]], Stoppable],
        defer: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        self.interval_s = interval_s
        self._action = action
        self._clock = clock
        self._set_timer = set_timer
        self._defer = defer
        self._last = float("-inf")
        self._timer: Stoppable | None = None
        #: A deferred `_fire` is on its way (it cannot be called back); any action clears it, so a
        #: deferred call that never comes (its widget went away) cannot hold back later requests.
        self._deferred = False
        #: Something changed that the action has not shown yet.
        self.pending = False

    def request(self) -> None:
        """Something changed: act now if the last action is `interval_s` old, else once it is."""
        self.pending = True
        if self._timer is not None or self._deferred:
            return  # an action is on its way and will show this change too
        wait = self._last + self.interval_s - self._clock()
        if wait > 0:
            self._timer = self._set_timer(wait, self._on_timer)
        elif self._defer is not None:
            self._deferred = True
            self._defer(self._on_deferred)
        else:
            self._fire()

    def request_in(self, delay: float) -> None:
        """Act `delay` seconds from now whatever the rate (a key's effect); a newer call replaces it,
        so a held key acts once, on the state it stops on."""
        self.pending = True
        self._stop_timer()
        self._timer = self._set_timer(delay, self._on_timer)

    def now(self) -> None:
        """Act at once (a caller that cannot wait, e.g. a widget not mounted yet)."""
        self.pending = True
        self._fire()

    def cancel(self) -> None:
        """Drop what is pending (the view moved on); the rate still counts from the last action."""
        self.pending = False
        self._stop_timer()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None  # fired: nothing to stop
        self._fire()

    def _on_deferred(self) -> None:
        self._deferred = False
        self._fire()

    def _fire(self) -> None:
        self._stop_timer()  # an earlier action makes a later one due unneeded
        if not self.pending:
            return  # shown already (a key's action overtook this one, or the view moved on)
        self.pending = False
        self._deferred = False
        self._last = self._clock()
        self._action()
