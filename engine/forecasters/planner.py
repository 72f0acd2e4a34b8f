"""Per-stock training plans: the prior-art table, made safe for each model and each data size.

Why: the old scripts picked context/horizon by row count, but lengths that were not multiples of
the model's patch size made runs fail, and short series gave a train span with no windows. Here
lengths are aligned to the patch (context down, horizon up) and shrunk until the train span still
yields windows; every field can be overridden.

Table (rows → context/horizon): <500 → 256/16; <1000 → 512/32; <1500 → 768/48; else 1024/64.
Difficulty (engine.difficulty tiers of naive MAE% at h=64: easy < 8 ≤ medium < 15 ≤ hard < 30 ≤
extreme; the thresholds live only there) → loss (easy: huber, else heteroscedastic; Kronos, a
token model, always uses its native cross-entropy), LoRA rank 8/12/16/16, lr 3e-4/2e-4/1e-4/1e-4,
epochs 15/20/30/45 (hard is the "extended" plan, 20 × 1.5; extreme, a different regime than hard,
extends hard by ×1.5 again). "unknown" (no finite MAE%) is planned as medium.

The `tiny` preset (real architecture, random weights) gets its own defaults, because the table
was written for LoRA on pretrained weights. Measured with chronos2 on GOOG (seasonal), h=16,
validation span, naive persistence 8.73 val MAE%:
  * `finetune="full"`: LoRA adapters on a frozen *random* network barely move it (8.80 with LoRA
    vs 4.15 full, same settings);
  * lr × 10 (3e-3/2e-3/1e-3/1e-3): training from scratch, not nudging (at 2e-4: 12.3 after 15 epochs);
  * `loss="native"` (the model's own objective, which trains its whole output distribution):
    the heteroscedastic NLL of a random model blew up (first-epoch loss ~1e3) and sat on a plateau
    for 5 epochs, long enough for early stopping (patience 3) to end the run at 12.3;
  * context at most 128: a 2-layer random model used 256 steps worse than 128 (8.4 vs 4.6 after
    10 epochs) and CPU time grows with it.
Any of them can be overridden.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from engine.difficulty import TIERS, UNKNOWN, tier

#: The engine.difficulty tiers the table covers, in increasing difficulty.
DIFFICULTIES: tuple[str, ...] = TIERS
#: Tiers without a row of their own: a symbol whose MAE% is unknown trains like medium.
ALIASES: dict[str, str] = {UNKNOWN: "medium"}
#: Per difficulty (DIFFICULTIES order): LoRA rank, lr, epochs.
RANKS: tuple[int, ...] = (8, 12, 16, 16)
LRS: tuple[float, ...] = (3e-4, 2e-4, 1e-4, 1e-4)
EPOCHS: tuple[int, ...] = (15, 20, 30, 45)
#: `tiny` preset defaults (see the module docstring): lr multiplier, fine-tuning mode, context cap, loss.
TINY_LR_SCALE = 10.0
TINY_FINETUNE = "full"
TINY_MAX_CONTEXT = 128
TINY_LOSS = "native"


class PlanError(ValueError):
    """Input the planner cannot turn into a runnable plan."""


@dataclass(frozen=True)
class TrainPlan:
    model: str
    rows: int
    difficulty: str
    context: int
    horizon: int
    loss: str
    lora_rank: int
    lr: float
    epochs: int
    batch_size: int = 16
    patch_size: int = 1
    finetune: str = "lora"
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d

    def settings(self) -> str:
        """`context 128 horizon 64 loss native lr 0.003 epochs 3 batch 16 lora rank 8`: the words the
        CLI's preflight and the train job's log both print, so a plan reads the same in either."""
        tune = "full" if self.finetune == "full" else f"{self.finetune} rank {self.lora_rank}"
        return (f"context {self.context} horizon {self.horizon} loss {self.loss} lr {self.lr:g} "
                f"epochs {self.epochs} batch {self.batch_size} {tune}")

    def override(self, **changes: Any) -> TrainPlan:
        """A copy with fields replaced (None values are ignored); unknown fields are an error."""
        names = {f.name for f in fields(self)}
        bad = [k for k in changes if k not in names]
        if bad:
            raise PlanError(f"unknown plan field(s): {', '.join(bad)}")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def difficulty_from_mae_pct(naive_mae_pct_h64: float | None) -> str:
    """The tier of a naive persistence MAE% at horizon 64 (`engine.difficulty.tier`, one source of
    thresholds); "unknown" for a missing or non-finite value."""
    return tier(naive_mae_pct_h64)


def _align_down(n: int, p: int) -> int:
    return (n // p) * p


def _align_up(n: int, p: int) -> int:
    return -(-n // p) * p


def plan_training(rows: int, difficulty: str, model: str, *, preset: str = "tiny", train_frac: float = 0.7,
                  min_train_windows: int = 32, **overrides: Any) -> TrainPlan:
    """A TrainPlan for `rows` rows of data; `overrides` replace fields after alignment checks."""
    if not isinstance(rows, int) or rows < 1:
        raise PlanError(f"rows must be a positive integer, got {rows!r}")
    notes: list[str] = []
    if difficulty in ALIASES:
        notes.append(f"difficulty {difficulty!r} planned as {ALIASES[difficulty]!r}")
        difficulty = ALIASES[difficulty]
    if difficulty not in DIFFICULTIES:
        raise PlanError(f"difficulty must be one of {', '.join(DIFFICULTIES + tuple(ALIASES))}, got {difficulty!r}")
    # what the model knows about itself: patch length, window limit, losses (its adapter class)
    from engine.forecasters.hub import ModelLoadError
    from engine.forecasters.registry import adapter_class

    try:
        card = adapter_class(model)
    except ModelLoadError as exc:
        raise PlanError(str(exc)) from None
    if not card.trainable or preset not in card.patch_sizes:
        raise PlanError(f"no plan for model {model!r} preset {preset!r}")
    p = card.patch_sizes[preset]
    native_only = card.supported_losses == ("native",)
    if rows < 500:
        ctx, hor = 256, 16
    elif rows < 1000:
        ctx, hor = 512, 32
    elif rows < 1500:
        ctx, hor = 768, 48
    else:
        ctx, hor = 1024, 64
    i = DIFFICULTIES.index(difficulty)
    loss = "native" if native_only else ("huber" if difficulty == "easy" else "heteroscedastic")
    rank, lr, epochs, finetune = RANKS[i], LRS[i], EPOCHS[i], "lora"
    if preset == "tiny":
        lr, finetune, loss = round(lr * TINY_LR_SCALE, 12), TINY_FINETUNE, TINY_LOSS
        if ctx > TINY_MAX_CONTEXT and not overrides.get("context"):
            notes.append(f"context {ctx} → {TINY_MAX_CONTEXT} (tiny preset)")
            ctx = TINY_MAX_CONTEXT
    hor_a = max(p, _align_up(hor, p))
    if hor_a != hor:
        notes.append(f"horizon {hor} aligned up to {hor_a} (patch {p})")
    ctx_a = max(p, _align_down(overrides.get("context") or ctx, p))
    hor_a = max(p, _align_up(overrides.get("horizon") or hor_a, p)) if overrides.get("horizon") else hor_a
    if card.max_window is not None and ctx_a + hor_a > card.max_window:
        notes.append(f"context {ctx_a} → {card.max_window - hor_a} ({model} sees at most {card.max_window} steps)")
        ctx_a = _align_down(card.max_window - hor_a, p)
    train_rows = int(rows * train_frac)
    # the train span must hold context + horizon + (min_train_windows - 1) rows
    while ctx_a > p and ctx_a + hor_a + min_train_windows - 1 > train_rows:
        ctx_a -= p
    if ctx_a + hor_a + min_train_windows - 1 > train_rows:
        raise PlanError(f"{rows} rows are too few to train {model}: the train span (~{train_rows} rows) cannot "
                        f"hold {min_train_windows} windows of horizon {hor_a}")
    if ctx_a != (overrides.get("context") or ctx) and not any("sees at most" in n for n in notes):
        notes.append(f"context {overrides.get('context') or ctx} → {ctx_a} (patch {p}, train span ~{train_rows} rows)")
    plan = TrainPlan(model=model, rows=rows, difficulty=difficulty, context=ctx_a, horizon=hor_a, loss=loss,
                     lora_rank=rank, lr=lr, epochs=epochs, patch_size=p, finetune=finetune, notes=tuple(notes))
    rest = {k: v for k, v in overrides.items() if k not in ("context", "horizon")}
    return plan.override(**rest)
