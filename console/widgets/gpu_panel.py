"""GPU panel: per-GPU memory bar, utilisation, temperature, power, and which of our jobs hold memory.

Why a passive widget: the app's single telemetry poller (a thread worker) pushes snapshots in;
the panel never polls or touches NVML itself, so any number of panels costs nothing.
Without a GPU it says so plainly and shows CPU and RAM instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from engine.names import short_job_id


def _fmt(v: Any, fmt: str, unit: str = "") -> str:
    return "n/a" if v is None else fmt.format(v) + unit


def bar(used: float | None, total: float | None, width: int = 20) -> Text:
    """A text meter; colour turns yellow above 75 % and red above 90 %."""
    if used is None or not total:
        return Text("·" * width, style="dim")
    frac = max(0.0, min(1.0, used / total))
    n = round(frac * width)
    style = "red" if frac > 0.9 else "yellow" if frac > 0.75 else "green"
    return Text("█" * n, style=style) + Text("░" * (width - n), style="dim")


def render_telemetry(tel: Any, job_pids: Mapping[int, str] | None = None, width: int = 20) -> Group | Text:
    """Rich renderable for one telemetry snapshot (pure: snapshot tests feed fixed data)."""
    if tel is None:
        return Text("telemetry: waiting for first sample…", style="dim")
    job_pids = job_pids or {}
    parts: list[Any] = []
    gpus = list(getattr(tel, "gpus", None) or [])
    if not gpus or not getattr(tel, "available", bool(gpus)):
        msg = getattr(tel, "message", "") or "none found"
        parts.append(Text("No GPU — jobs run on the CPU; CPU and RAM shown below.", style="bold yellow"))
        parts.append(Text(f"({msg})", style="dim"))
    for g in gpus:
        table = Table.grid(padding=(0, 1))
        table.add_column()
        table.add_column()
        table.add_column()
        head = Text(f"GPU{g.index} {g.name or ''}".strip(), style="bold")
        table.add_row(head, bar(g.mem_used_gb, g.mem_total_gb, width),
                      f"{_fmt(g.mem_used_gb, '{:.1f}')}/{_fmt(g.mem_total_gb, '{:.1f}')} GB")
        table.add_row(
            "",
            f"util {_fmt(g.util_pct, '{:.0f}', '%')}  temp {_fmt(g.temp_c, '{:.0f}', '°C')}  "
            f"power {_fmt(g.power_w, '{:.0f}', ' W')}",
            "",
        )
        for pid, mem in getattr(g, "processes", None) or []:
            who = job_pids.get(int(pid)) if pid is not None else None
            # The short id (time + random part): a full id did not fit a narrow panel and was cut.
            label = f"job {short_job_id(who)}" if who else f"pid {pid} (not ours)"
            table.add_row("", Text(f"  {label}", style="cyan" if who else "dim"), f"{_fmt(mem, '{:.1f}')} GB")
        parts.append(table)
    cpu = getattr(tel, "cpu_percent", None)
    used = getattr(tel, "ram_used_gb", None)
    total = getattr(tel, "ram_total_gb", None)
    line = Text(f"CPU {_fmt(cpu, '{:.0f}', '%')}  RAM ")
    line.append_text(bar(used, total, max(8, width // 2)))
    line.append(f" {_fmt(used, '{:.1f}')}/{_fmt(total, '{:.1f}')} GB")
    parts.append(line)
    return Group(*parts)


class GpuPanel(Static):
    """Shows the latest telemetry snapshot; `update_telemetry` is called by the app's poller."""

    DEFAULT_CSS = """
    GpuPanel {
        height: auto;
        min-height: 3;
        border: round $primary-background-lighten-2;
        border-title-color: $text-accent;
        padding: 0 1;
    }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.border_title = "GPU / CPU"
        self._last: tuple[Any, dict[int, str]] | None = None

    def on_mount(self) -> None:
        tel = getattr(self.app, "telemetry", None)
        self.update_telemetry(tel, getattr(self.app, "job_pids", lambda: {})())

    def update_telemetry(self, tel: Any, job_pids: Mapping[int, str] | None = None) -> None:
        key = (repr(tel), dict(job_pids or {}))
        if key == self._last:  # unchanged: no repaint
            return
        self._last = key
        self.update(render_telemetry(tel, job_pids))
