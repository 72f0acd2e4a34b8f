"""GPU screen: the telemetry panel full-size plus which of our jobs run where (one key away: 7/g).

Why a screen too: the Live screen shows the panel beside one job; this one answers "what is using
the GPUs right now" across all jobs.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.widgets import Static

from console.screens.base import ModeScreen
from console.widgets.gpu_panel import GpuPanel
from console.widgets.table import KeyedTable, num, txt
from engine.names import short_job_id
from engine.state import Status

#: VRAM: the job's estimate, the measured peak of earlier jobs like it, and what admission reserved
#: (the measurement + margin when there is one, else the estimate; engine.vram).
COLUMNS = (("job", "Job"), ("kind", "Kind"), ("symbols", "Symbol"), ("device", "Device"), ("pid", "PID"),
           ("vram", "VRAM est"), ("measured", "measured"), ("reserved", "reserved"))


EMPTY = "No job running. Running jobs appear here with their device, pid and VRAM: estimate, measured, reserved."


class GpuScreen(ModeScreen):
    MODE: ClassVar[str] = "gpu"
    _empty_text: str | None = None

    def compose_body(self) -> ComposeResult:
        yield GpuPanel(id="gpu-panel")
        yield KeyedTable(COLUMNS, id="gpu-jobs", stream_interval_s=1.0)
        yield Static("", id="gpu-empty", classes="detail")

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        rows = {}
        for js in self.services.jobs():
            if js.state != Status.RUNNING:
                continue
            vram = getattr(js, "vram_gb", None)
            rows[js.id] = {
                "job": txt(short_job_id(js.id)), "kind": txt(js.kind), "symbols": txt(", ".join(js.symbols)),
                "device": txt(js.device or "—"), "pid": num(js.pid, "{:d}"), "vram": num(vram, "{:.1f}"),
                "measured": num(getattr(js, "vram_measured_gb", None), "{:.1f}"),
                "reserved": num(getattr(js, "vram_reserved_gb", None), "{:.1f}"),
            }
        self.query_one(KeyedTable).sync(rows)
        empty = "" if rows else EMPTY
        if empty != self._empty_text:  # an update re-lays out the screen: only when the text changes
            self._empty_text = empty
            self.query_one("#gpu-empty", Static).update(empty)

    def apply_job_updates(self, job_ids: set[str], losses: dict[str, list[dict[str, Any]]],
                          logs: dict[str, list[str]]) -> None:
        self.reload()
