"""console.ratelimit.RateLimit on a fake clock and fake timers: no sleeps, no event loop."""

from __future__ import annotations

from collections.abc import Callable

from console.ratelimit import RateLimit


class FakeTimer:
    def __init__(self, due: float, callback: Callable[[], None]) -> None:
        self.due, self.callback, self.stopped = due, callback, False

    def stop(self) -> None:
        self.stopped = True


class FakeLoop:
    """A clock that moves only when told; timers fire as it passes them; deferred calls run on `frame`."""

    def __init__(self) -> None:
        self.t = 100.0
        self.timers: list[FakeTimer] = []
        self.deferred: list[Callable[[], None]] = []

    def clock(self) -> float:
        return self.t

    def set_timer(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.t + delay, callback)
        self.timers.append(timer)
        return timer

    def defer(self, callback: Callable[[], None]) -> bool:
        self.deferred.append(callback)
        return True

    def advance(self, seconds: float) -> None:
        end = self.t + seconds
        while due := sorted((tm for tm in self.timers if not tm.stopped and tm.due <= end), key=lambda tm: tm.due):
            timer = due[0]
            self.t = timer.due
            timer.stopped = True  # one-shot
            timer.callback()
        self.t = end

    def frame(self) -> None:
        calls, self.deferred = self.deferred, []
        for call in calls:
            call()

    @property
    def live_timers(self) -> list[FakeTimer]:
        return [tm for tm in self.timers if not tm.stopped]


def make(interval: float = 1.0, *, deferred: bool = False) -> tuple[FakeLoop, RateLimit, list[float]]:
    loop, acted = FakeLoop(), []
    limit = RateLimit(interval, lambda: acted.append(loop.t), clock=loop.clock, set_timer=loop.set_timer,
                      defer=loop.defer if deferred else None)
    return loop, limit, acted


def test_first_change_acts_at_once_then_at_most_every_interval() -> None:
    loop, limit, acted = make(1.0)
    limit.request()
    assert acted == [100.0]  # nothing before it: at once, no timer
    assert not loop.live_timers and not limit.pending
    for _ in range(5):  # a burst within the interval: one action when it has passed
        loop.advance(0.125)
        limit.request()
    assert acted == [100.0] and limit.pending and len(loop.live_timers) == 1
    loop.advance(0.25)
    assert acted == [100.0]
    loop.advance(0.125)
    assert acted == [100.0, 101.0] and not limit.pending
    loop.advance(5.0)  # a quiet interval: the next change acts at once again
    assert acted == [100.0, 101.0]
    limit.request()
    assert acted == [100.0, 101.0, 106.0]


def test_steady_stream_acts_once_per_interval() -> None:
    loop, limit, acted = make(2.0)
    for _ in range(80):  # 16 changes a second for 5 s (binary fractions: exact times)
        limit.request()
        loop.advance(0.0625)
    assert acted == [100.0, 102.0, 104.0]
    loop.advance(2.0)
    assert acted == [100.0, 102.0, 104.0, 106.0]  # the last changes are shown too, not dropped


def test_request_in_ignores_the_rate_and_a_newer_one_replaces_it() -> None:
    loop, limit, acted = make(2.0)
    limit.request()
    limit.request()  # held by the rate until 102.0
    limit.request_in(0.125)  # a key: soon, whatever the rate
    loop.advance(0.0625)
    limit.request_in(0.125)  # a held key: only the last one acts
    loop.advance(0.0625)
    assert acted == [100.0]
    loop.advance(0.0625)
    assert acted == [100.0, 100.1875]
    loop.advance(1.0)  # the rate's own wait (to 102.0) was replaced: nothing more to show
    assert acted == [100.0, 100.1875]
    limit.request()  # within the interval of the key's action: waits for 102.1875
    loop.advance(0.9375)
    assert acted == [100.0, 100.1875]
    loop.advance(0.0625)
    assert acted == [100.0, 100.1875, 102.1875]


def test_cancel_drops_what_is_pending_and_keeps_the_rate() -> None:
    loop, limit, acted = make(1.0)
    limit.request()
    limit.request()
    limit.cancel()
    assert not limit.pending and not loop.live_timers
    loop.advance(0.5)
    limit.request()  # still within the interval of the last action
    assert acted == [100.0]
    loop.advance(0.5)
    assert acted == [100.0, 101.0]


def test_now_acts_at_once_and_restarts_the_interval() -> None:
    loop, limit, acted = make(1.0)
    limit.request()
    limit.request()
    loop.advance(0.25)
    limit.now()
    assert acted == [100.0, 100.25] and not loop.live_timers
    limit.request()
    loop.advance(0.875)
    assert acted == [100.0, 100.25]
    loop.advance(0.125)
    assert acted == [100.0, 100.25, 101.25]


def test_deferred_at_once_runs_after_the_frame_and_gathers_changes_meanwhile() -> None:
    loop, limit, acted = make(2.0, deferred=True)
    limit.request()
    limit.request()
    assert acted == [] and len(loop.deferred) == 1  # one deferred call, not one per change
    loop.frame()
    assert acted == [100.0] and not limit.pending
    limit.request()  # within the interval: a timer, not a deferred call
    assert not loop.deferred and len(loop.live_timers) == 1
    loop.advance(2.0)
    assert acted == [100.0, 102.0]


def test_a_key_after_a_deferred_action_is_not_drawn_twice() -> None:
    loop, limit, acted = make(2.0, deferred=True)
    limit.request()
    limit.request_in(0.1)
    loop.frame()  # the deferred action shows the key's change too and stops its timer
    assert acted == [100.0] and not loop.live_timers
    loop.advance(1.0)
    assert acted == [100.0]


def test_a_deferred_call_that_never_comes_does_not_hold_back_later_changes() -> None:
    loop, limit, acted = make(2.0, deferred=True)
    limit.request()
    loop.deferred.clear()  # its widget went away before the frame: the call is lost
    limit.request_in(0.125)  # a key still acts ...
    loop.advance(0.125)
    assert acted == [100.125]
    loop.advance(2.0)
    limit.request()  # ... and streaming changes are shown again after it
    loop.frame()
    assert acted == [100.125, 102.125]
