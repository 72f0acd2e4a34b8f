"""What a sweep tries: each mode's points and search space, adapted to what the model can train.

  priority  a handful of research-backed per-difficulty configs, enqueued (easy series: huber, lower
            rank, higher lr; hard: heteroscedastic, higher rank, lower lr, more epochs)
  quick     a small grid (lr × LoRA rank)
  full      the whole grid (lr × rank × loss × epochs)
  auto      TPE over the same names (engine.tasks.sweep_study picks the sampler)
Every mode suggests the same names, so trials of different modes are comparable; a model whose
adapter trains with its native loss only (Kronos) gets no loss dimension.
"""

from __future__ import annotations

import itertools
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.task_params import SweepParams

if TYPE_CHECKING:
    import optuna

MODES: tuple[str, ...] = typing.get_args(SweepParams.model_fields["mode"].annotation)

PRIORITY_CONFIGS: tuple[dict[str, Any], ...] = (
    {"lr": 3e-4, "lora_rank": 8, "loss": "huber", "epoch_scale": 1.0},
    {"lr": 2e-4, "lora_rank": 12, "loss": "native", "epoch_scale": 1.0},
    {"lr": 1e-4, "lora_rank": 16, "loss": "heteroscedastic", "epoch_scale": 1.5},
    {"lr": 5e-4, "lora_rank": 8, "loss": "native", "epoch_scale": 1.0},
    {"lr": 1e-4, "lora_rank": 8, "loss": "huber", "epoch_scale": 1.5},
)
QUICK_GRID: dict[str, list[Any]] = {"lr": [1e-4, 3e-4], "lora_rank": [8, 16]}
FULL_GRID: dict[str, list[Any]] = {
    "lr": [5e-5, 1e-4, 3e-4, 1e-3], "lora_rank": [4, 8, 16], "loss": ["native", "huber", "heteroscedastic"],
    "epoch_scale": [1.0, 1.5],
}


def losses_for(model: str | None) -> list[str]:
    """The losses a sweep may try for `model` (Kronos: native only)."""
    return [x for x in ("native", "huber", "heteroscedastic") if x in _supported(model)]


def _supported(model: str | None) -> tuple[str, ...]:
    """The losses `model`'s adapter can train with (all of them when no model is named)."""
    if model is None:
        return ("native", "huber", "heteroscedastic")
    from engine.forecasters.registry import adapter_class

    return adapter_class(model).supported_losses


def grid_points(mode: str, model: str | None = None) -> list[dict[str, Any]]:
    """The enqueued points of the priority/quick/full modes, adapted to what `model` supports."""
    if mode == "priority":
        pts = [dict(c) for c in PRIORITY_CONFIGS]
    elif mode in ("quick", "full"):
        grid = QUICK_GRID if mode == "quick" else {**FULL_GRID, "loss": losses_for(model)}
        pts = [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    else:
        return []
    if _supported(model) == ("native",):
        out: list[dict[str, Any]] = []
        for pt in pts:
            if "loss" in pt:
                pt["loss"] = "native"
            if pt not in out:
                out.append(pt)
        pts = out
    return pts


def suggest(trial: optuna.Trial, mode: str, model: str | None = None) -> dict[str, Any]:
    """The trial's training settings (the same names for every mode, so trials are comparable)."""
    losses = losses_for(model)
    if mode == "quick":
        return {"lr": trial.suggest_categorical("lr", QUICK_GRID["lr"]),
                "lora_rank": trial.suggest_categorical("lora_rank", QUICK_GRID["lora_rank"])}
    if mode == "full":
        return {k: trial.suggest_categorical(k, losses if k == "loss" else v) for k, v in FULL_GRID.items()}
    if mode == "priority":
        return {"lr": trial.suggest_float("lr", 1e-5, 3e-3, log=True),
                "lora_rank": trial.suggest_categorical("lora_rank", [4, 8, 12, 16]),
                "loss": trial.suggest_categorical("loss", losses),
                "epoch_scale": trial.suggest_categorical("epoch_scale", [1.0, 1.5])}
    return {"lr": trial.suggest_float("lr", 1e-5, 3e-3, log=True),
            "lora_rank": trial.suggest_categorical("lora_rank", [4, 8, 12, 16]),
            "loss": trial.suggest_categorical("loss", [x for x in losses if x != "heteroscedastic"]),
            "epoch_scale": trial.suggest_categorical("epoch_scale", [1.0, 1.5])}


def trial_budget(mode: str, max_runs: int | None, model: str | None = None) -> int:
    natural = len(grid_points(mode, model)) if mode != "auto" else 20
    return min(natural, max_runs) if max_runs else natural


def train_params(base: Mapping[str, Any], hp: Mapping[str, Any], base_epochs: int) -> dict[str, Any]:
    p = {k: v for k, v in base.items() if v is not None}
    p.update({k: v for k, v in hp.items() if k != "epoch_scale"})
    p["epochs"] = max(1, int(round(base_epochs * float(hp.get("epoch_scale", 1.0)))))
    return p
