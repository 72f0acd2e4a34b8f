"""Keys from the terminal go to the console one at a time: each after the last one has had its effect.

Why: Textual forwards every key to the focused widget as soon as it arrives and runs the app's and
screen's (non-priority) bindings only when the key has bubbled back up to the app, against the focus
of that moment. A key that changes the screen (a nav digit, `r`, `f` or Enter on a row, Enter on a
queued job, `?`) therefore took effect after the keys typed behind it had gone to the screen being
left: `8/toto⏎` typed fast filtered Stocks instead of Runs, and what was typed right after `r` never
reached the run form. Holding back only the keys after "screen keys" cannot work, because whether a
key changes the screen is known only once the keys before it have been handled (after `/`, `8` is
filter text). So the app hands every terminal key to `KeyHandover.take`, which sends it on as Textual
would and holds the keys behind it until it has settled:

1. The key has passed up its chain (the widget it went to, its ancestors, the screen, the app): a
   callback queued behind it on each node in turn runs once that node has handled it.
2. What its action set off has happened. Actions post messages (`r` → StartRunRequested → the app
   pushes the form; Enter on a row → RowSelected → ForecastRequested → the view: two hops), so while
   a node of the chain still has messages queued, another round of callbacks follows (at most
   `FOLLOW_ROUNDS`). A screen shown for the first time (or with nothing focused) gets a round along
   its own focus chain: it has been mounted, has resumed and holds its focus (which `Widget.focus`
   sets through the app's queue) before the next key goes to it. A screen shown before keeps its
   focus, and the next key queues behind its resume.

A key that arrives while nothing is held is sent at once, so a lone key is as quick as before; a
burst is handled in the order typed, each key exactly once, against the screen its predecessors left
(each screen of a burst of nav keys is drawn in turn, which costs a frame per screen).
A node that does not get to its callback within `STALL_S` (a handler stuck on something) stops
holding the keys, so that ctrl+q always gets through.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from textual import events
from textual.app import App
from textual.dom import DOMNode
from textual.screen import Screen

#: Rounds along a chain that still had messages queued (a key's action posts, the message it posted
#: posts again: two hops).
FOLLOW_ROUNDS = 2
#: At most this many rounds after a key's own route, however often the screen keeps changing.
MAX_ROUNDS = 6
#: A callback not run within this many seconds of a free event loop releases the keys held behind it.
STALL_S = 2.0
#: The watchdog counts ticks of this length: a loop blocked by work in a handler (the first import of
#: a screen's module, say) delivers one late tick, not many, so only a node stuck on something while
#: the loop runs freely counts up to STALL_S.
TICK_S = 0.1


class KeyHandover:
    """Sends the app's terminal keys through `deliver` (Textual's own `App.on_event`), one at a time."""

    def __init__(self, app: App[Any], deliver: Callable[[events.Event], Awaitable[None]]) -> None:
        self._app = app
        self._deliver = deliver
        self._held: deque[events.Key] = deque()
        self._busy = False
        self._route: deque[DOMNode] = deque()  # nodes the current round still has to pass
        self._chain: list[DOMNode] = []  # the nodes of the current round
        self._rounds = self._follow_rounds = 0
        self._round_screen: Screen[Any] | None = None  # the screen when the current round began
        self._token = 0  # the callback now awaited; a stale one (after a stall) is ignored
        self._watchdog: asyncio.TimerHandle | None = None

    @property
    def holding(self) -> int:
        """How many keys wait for the one before them to settle."""
        return len(self._held)

    async def take(self, event: events.Event) -> bool:
        """Called by the app for each event; True when it was a terminal key (sent now or held)."""
        if not isinstance(event, events.Key) or event.is_forwarded:
            return False  # not from the terminal: a key bubbling back up, or another event
        if self._busy:
            self._held.append(event)
        else:
            await self._send(event)
        return True

    async def _send(self, event: events.Key) -> None:
        self._busy = True
        target = self._focus_node()
        try:
            await self._deliver(event)
        finally:
            self._start(target)

    def _focus_node(self) -> DOMNode | None:
        """Where Textual sends a key now: the focused widget, else the screen (None: no screen yet)."""
        app = self._app
        try:
            return app.focused or app.screen
        except Exception:  # noqa: BLE001 - no screen (starting, closing): nothing to follow
            return None

    def _current_screen(self) -> Screen[Any] | None:
        try:
            return self._app.screen
        except Exception:  # noqa: BLE001
            return None

    def _start(self, target: DOMNode | None) -> None:
        """Follow the key just sent up from `target`, then the rounds after it."""
        self._rounds = self._follow_rounds = 0
        self._round_screen = self._current_screen()
        self._round(self._chain_from(target))

    def _round(self, chain: list[DOMNode]) -> None:
        self._chain = chain
        self._route = deque(chain)
        self._step(self._token)

    def _step(self, token: int) -> None:
        """The awaited callback ran: queue the next one behind whatever its node has queued."""
        if token != self._token:
            return  # released by the watchdog meanwhile
        self._disarm()
        while self._route:
            node = self._route.popleft()
            self._token += 1
            if node.call_later(self._step, self._token):
                self._arm(self._token, 0)
                return
            # a node closing down runs nothing more: on to its parent
        self._round_over()

    def _round_over(self) -> None:
        """A round (the first: the key's own route) has passed: another one, or the key has settled."""
        screen = self._current_screen()
        if screen is None or self._rounds >= MAX_ROUNDS:
            self._release()
            return
        self._rounds += 1
        if screen is not self._round_screen:
            self._round_screen = screen
            if not screen.is_mounted or screen.focused is None:
                self._round(self._focus_chain())  # a new screen: mounted, resumed, focused first
                return
            # a screen shown before keeps its focus: the next key queues behind its resume
        if self._follow_rounds < FOLLOW_ROUNDS and any(node.message_queue_size > 0 for node in self._chain):
            self._follow_rounds += 1
            self._round(self._chain)  # what the key's action posted there is handled first
            return
        self._release()

    def _focus_chain(self) -> list[DOMNode]:
        return self._chain_from(self._focus_node())

    def _chain_from(self, node: DOMNode | None) -> list[DOMNode]:
        """`node` and its ancestors up to the app (the app alone without a node)."""
        return node.ancestors_with_self if node is not None else [self._app]

    def _arm(self, token: int, ticks: int) -> None:
        self._watchdog = asyncio.get_running_loop().call_later(TICK_S, self._tick, token, ticks + 1)

    def _tick(self, token: int, ticks: int) -> None:
        if token != self._token:
            return
        if ticks * TICK_S < STALL_S:
            self._arm(token, ticks)
            return
        self._app.log.warning(f"key handover: a node did not run its callback in {STALL_S} s; keys go on")
        self._token += 1
        self._route.clear()
        self._release()

    def _disarm(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _release(self) -> None:
        """The key has settled: send the next one held, from the app's own queue."""
        self._disarm()
        if not self._held:
            self._busy = False
        elif not self._app.call_later(self._send_next):
            self._held.clear()  # the app is closing: nothing will handle them
            self._busy = False

    async def _send_next(self) -> None:
        if self._held:
            await self._send(self._held.popleft())
        else:
            self._busy = False
