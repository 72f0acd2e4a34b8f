"""The confirm-then-write flows of promoting and rolling back a decision.

Why apart from the app: both flows show a ConfirmScreen, then ask the engine service (the only
store writer) to change `hyperparams/`, and tell the user what happened; they need only the app's
public API (push_screen_wait, notify) and its ConsoleServices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from console.screens.compare import promotion_body, warnings_for
from console.screens.confirm import ConfirmScreen

if TYPE_CHECKING:
    from console.app import ForecastConsoleApp


async def confirm_promote(app: ForecastConsoleApp, model: str, symbol: str, source: str, horizon: int | None,
                          preset: str | None) -> bool:
    """Show what would change, then promote exactly the decision named (nothing written on "no").
    True when it promoted."""
    current, new, why = await app.services.promotion_preview(model, symbol, source, horizon, preset)
    body = promotion_body(model, symbol, current, new, why)
    at = f" · h={horizon}" if horizon else ""
    ok = await app.push_screen_wait(ConfirmScreen(f"Promote {model} · {symbol}{at}", body, "Promote",
                                                  warnings=warnings_for(new) if new else ()))
    if not ok or new is None:
        return False
    try:
        path = await app.services.promote(model, symbol, source, horizon, preset)
    except Exception as exc:  # noqa: BLE001 - StoreError etc.: shown, nothing changed
        app.notify(str(exc), title="promotion failed", severity="error", timeout=8)
        return False
    app.notify(f"promoted → {path}", title="promoted")
    return True


async def confirm_rollback(app: ForecastConsoleApp, model: str, symbol: str) -> bool:
    """Confirm, then restore the previously promoted config of (model, symbol). True when it rolled back."""
    ok = await app.push_screen_wait(ConfirmScreen(
        f"Roll back {model} · {symbol}",
        f"Restore the config of {model} for {symbol} promoted before the current one in "
        f"hyperparams/{model}/{symbol}.json; if there was none, the file is removed.", "Roll back"))
    if not ok:
        return False
    try:
        path = await app.services.rollback(model, symbol)
    except Exception as exc:  # noqa: BLE001
        app.notify(str(exc), title="rollback failed", severity="error", timeout=8)
        return False
    app.notify(f"rolled back → {path or 'no promoted file now'}", title="rolled back")
    return True
