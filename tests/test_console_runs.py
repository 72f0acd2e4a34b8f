"""Pilot tests of the Runs screen on a real store: rows with kind/state and window counts, filter,
sort over all runs (not only the rows shown), the detail pane (curve, artifacts, pick/promotion
lineage) and CSV/markdown export."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path
from typing import Any

import pytest

from console import run_browser as rb
from console.screens import runs as runs_screen
from console.screens.runs import RunsScreen
from console.widgets.loss_chart import LossChart
from tests.runs_fixture import offline_app, seed_runs, until


@pytest.fixture()
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    ws, hp = tmp_path / "ws", tmp_path / "hp"
    monkeypatch.setenv("FORECAST_WORKSPACE", str(ws))
    monkeypatch.setenv("FORECAST_HYPERPARAMS", str(hp))
    ids = seed_runs(ws, hp, extra_runs=4)
    return {"ws": ws, "hp": hp, **ids}


def make_app(p: dict[str, Any]) -> Any:
    return offline_app(p["ws"], p["hp"])


def detail_text(scr: RunsScreen) -> str:
    return str(scr.query_one("#runs-detail-text").render())


async def test_runs_screen_rows_filter_sort_detail_export(ws: dict[str, Any],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs_screen, "SHOW_MAX", 3)  # fewer rows shown than matched
    app = make_app(ws)
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 10)
        await pilot.press("8")
        scr = app.screen
        assert isinstance(scr, RunsScreen)
        # every run read (the newest are shown first, then the whole list is read: see RunsScreen._load)
        await until(pilot, lambda: scr.table.row_count == 3 and scr.complete, "the first rows, all runs read")
        assert len(scr.data.rows) == 6
        status = str(scr.query_one("#runs-status").render())
        assert "6 of 6 runs · 3 shown · sorted by when ↓" in status
        assert all(scr.by_id[r].model == "kronos" for r in scr.table.row_ids)  # the newest three

        # sort by Val MAE% ascending over ALL runs: the best two are the toto runs although they are oldest
        scr._sort("val", False)
        await pilot.pause()
        assert scr.table.row_ids[:2] == [ws["validate"], ws["train"]]
        # the validate run's metrics name their windows, the job's kind/state are shown
        v = scr.table.row_cells(ws["validate"])
        assert v["val"].text == "3.910 12w" and v["test"].text == "4.050 12w"
        assert (v["kind"].text, v["state"].text) == ("validate", "succeeded")
        assert v["dur"].value == pytest.approx(30.0)  # no training time: the job's wall time
        assert v["used"].text == "made pick"  # at the run's own H

        # the filter narrows to the train run; its detail shows curve, artifacts and lineage
        await pilot.press("slash", *"toto train", "enter")
        await until(pilot, lambda: scr.table.row_ids == [ws["train"]], "the filtered row")
        t = scr.table.row_cells(ws["train"])
        assert t["used"].text == "pick, promoted" and t["dur"].value == pytest.approx(98.5)
        await until(pilot, lambda: detail_text(scr).startswith(ws["train"]) and "used by:" in detail_text(scr),
                    "the train run's detail (not the one shown before the filter)")
        text = detail_text(scr)
        assert "current pick toto/SPY h=16 (tiny) uses its adapter" in text and "promoted toto/SPY h=16" in text
        assert "adapter/adapter_model.safetensors (4 KiB)" in text and "val (val 12w)" in text
        await until(pilot, lambda: scr.query_one(LossChart).n_points == 44, "the curve (40 train + 4 val)")

        # export the filtered table
        await pilot.press("e")
        reports = ws["ws"] / "reports"
        await until(pilot, lambda: list(reports.glob("runs-*.csv")), "the CSV")
        rows = list(csv.DictReader(next(reports.glob("runs-*.csv")).open()))
        assert [r["run_id"] for r in rows] == [ws["train"]]
        assert rows[0]["val_windows"] == "val 12w" and rows[0]["used"] == "pick, promoted"
        await pilot.press("m")
        await until(pilot, lambda: list(reports.glob("runs-*.md")), "the markdown")
        md = next(reports.glob("runs-*.md")).read_text()
        assert md.startswith("| run_id | model |") and ws["train"] in md


def test_export_text_refuses_unknown_format() -> None:
    with pytest.raises(ValueError, match="choose csv or md"):
        rb.export_text([], "xlsx")


def test_windows_label_without_spec() -> None:
    from store.records import WindowSpec
    from store.run_listing import label_windows

    spec = {"span": "val", "count": 3, "stride": 1, "rows_covered": 5}
    assert rb.windows_label(None, "test") == "test ?w"
    assert rb.windows_label(spec, "val") == "val 3w"
    assert rb.windows_label(WindowSpec.model_validate(spec), "val") == "val 3w"  # Compare's records
    assert [label_windows(x) for x in ("val 3w", "test 1247w", "val ?w")] == [3, 1247, None]
    cell = runs_screen.run_cells(rb.RunRow(
        run_id="r", model="toto", symbol="SPY", horizon=16, preset=None, kind="train", state="succeeded",
        job_id=None, created_at=0.0, duration_s=None, val_mae_pct=3.91, val_windows="val 12w",
        test_mae_pct=None, test_windows="test ?w", val_loss=None, used=""))
    assert (cell["val"].text, cell["test"].text) == ("3.910 12w", "—")  # one counted_cell for every screen


def test_job_summaries_reads_kind_state_times_and_skips_unknown_ids(ws: dict[str, Any]) -> None:
    from store import Store
    from tests.runs_fixture import T0, VALIDATE_JOB

    st = Store.open(ws["ws"], readonly=True, hyperparams_dir=ws["hp"])
    try:
        got = st.job_summaries([VALIDATE_JOB, "20250101-000000-000-train-00000000"])
    finally:
        st.close()
    assert got == {VALIDATE_JOB: {"kind": "validate", "state": "succeeded", "started_at": T0 + 10,
                                  "finished_at": T0 + 40}}


def test_a_train_runs_epochs_read_from_one_as_live_counts_them() -> None:
    from console.screens.runs import train_words

    assert train_words({"train_loss": 0.82, "best_epoch": 0.0, "epochs_done": 3.0, "stopped_early": 0.0}) == [
        "best epoch 1 of 3", "no early stop", "train_loss=0.82"]
    assert train_words({"best_epoch": 4.0, "stopped_early": 1.0}) == ["best epoch 5", "stopped early"]
    assert train_words({"train_loss": 0.5}) == ["train_loss=0.5"]


def test_used_by_is_short_names_another_horizon_and_is_cut_with_an_ellipsis() -> None:
    """The Runs table fits in 120 columns: "pick" at the run's own H, "pick h=32" at another; what is
    longer than its column ends in "…" (the detail lists every use); models carry their preset."""
    from types import SimpleNamespace

    from console.screens.runs import USED_WIDTH
    from console.words import clipped, clock_text, model_label

    run = SimpleNamespace(run_id="r1", job_id="j1", model="toto", symbol="SPY", horizon=16)
    p16, p32 = SimpleNamespace(horizon=16), SimpleNamespace(horizon=32)
    used = rb._used(run, {"r1": [p16, p32]}, {}, {"r1"})  # type: ignore[arg-type]
    assert used == "pick, pick h=32, promoted"
    assert clipped(used, USED_WIDTH) == "pick, pick h=32…" and clipped("made pick", USED_WIDTH) == "made pick"
    assert rb._used(run, {}, {("j1", "toto", "SPY"): [p16]}, set()) == "made pick"  # type: ignore[arg-type]
    assert (model_label("toto", "tiny"), model_label("toto", None), model_label("chronos2", "base")) == \
        ("toto", "toto", "chronos2·base")
    assert (clock_text(6.4), clock_text(98.5), clock_text(3725)) == ("0m06s", "1m38s", "1h02m")
