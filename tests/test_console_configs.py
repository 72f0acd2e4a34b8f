"""Configs' Best picks show the naive reference beside each model's pick (naive on that pick's own
windows), flagged live when naive is what is promoted for the symbol at that horizon."""

from __future__ import annotations

import asyncio
from pathlib import Path

from console.widgets.table import KeyedTable
from tests.runs_fixture import WINDOWS, offline_app, until


def _seed(ws: Path, hp: Path) -> None:
    from store import Store

    with Store.open(ws, hyperparams_dir=hp) as st:
        naive = {"method": "drift", "validation": {"mae_pct": 4.5}, "test": {"mae_pct": 4.7}}
        st.set_pick("toto", "SPY", {"config": {"num_samples": 64, "aggregation": "median"}, "horizon": 16,
                                     "selection_metric": "mae_pct", **WINDOWS, "context": 128, "naive": naive,
                                     "validation": {"mae_pct": 4.9}, "test": {"mae_pct": 5.1}})
        st.set_pick("toto", "SPY", {"config": {"num_samples": 32, "aggregation": "mean"}, "horizon": 64,
                                     "selection_metric": "mae_pct", **WINDOWS, "context": 128,
                                     "naive": {**naive, "method": "persistence"},
                                     "validation": {"mae_pct": 6.0}, "test": {"mae_pct": 6.2}})
        st.set_pick("naive", "SPY", {"config": {"method": "drift"}, "horizon": 16, "selection_metric": "mae_pct",
                                      **WINDOWS, "context": 128, "validation": {"mae_pct": 4.5},
                                      "test": {"mae_pct": 4.7}})
        st.promote("naive", "SPY", horizon=16, by="tester")


async def test_best_picks_show_the_naive_reference_beside_each_pick(tmp_path: Path) -> None:
    ws, hp = tmp_path / "ws", tmp_path / "hp"
    _seed(ws, hp)
    app = offline_app(ws, hp)
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 10)
        await pilot.press("6")
        table = app.screen.query_one("#picks-table", KeyedTable)
        await until(pilot, lambda: table.row_count == 5, "3 picks + 2 naive reference rows")
        ids = table.row_ids
        assert ids.index("toto|SPY|16|tiny|naive") == ids.index("toto|SPY|16|tiny") + 1  # right beside its pick
        ref = {k: c.text for k, c in table.row_cells("toto|SPY|16|tiny|naive").items()}
        assert ref["model"] == "naive·drift" and ref["horizon"] == "16" and ref["metric"] == "reference of toto"
        assert ref["score"] == "4.500 12w" and ref["test"] == "4.700 12w"  # under the Val / Test headers
        assert ref["promoted"] == "live"  # naive drift is what is promoted for SPY at h=16
        at64 = {k: c.text for k, c in table.row_cells("toto|SPY|64|tiny|naive").items()}
        assert at64["model"] == "naive·persistence" and at64["promoted"] == ""  # not live at h=64
        assert table.row_cells("naive|SPY|16|tiny")["promoted"].text == "live"
        assert "naive|SPY|16|tiny|naive" not in ids  # naive's own pick has no reference row
        # p on a reference row says how to keep naive rather than promoting something else
        table.move_cursor(row=ids.index("toto|SPY|16|tiny|naive"))
        await pilot.pause()
        await pilot.press("p")
        await until(pilot, lambda: any("naive reference of the toto pick" in str(n.message)
                                       for n in app._notifications), "the reference-row notice")
        assert type(app.screen).__name__ == "ConfigsScreen"  # no promote dialog
