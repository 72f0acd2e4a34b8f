"""plan_training: the prior-art table, difficulty tiers from engine.difficulty, tiny-preset defaults,
patch alignment, data limits, overrides."""

from __future__ import annotations

import math

import pytest

from engine import difficulty
from engine.forecasters.planner import DIFFICULTIES, PlanError, difficulty_from_mae_pct, plan_training


@pytest.mark.parametrize("rows,ctx,hor", [(1750, 1024, 64), (1200, 752, 48), (2479, 1024, 64)])
def test_table_and_alignment_chronos2(rows: int, ctx: int, hor: int) -> None:
    p = plan_training(rows, "medium", "chronos2", preset="pretrained")
    assert (p.context, p.horizon) == (ctx, hor)
    assert p.context % 16 == 0 and p.horizon % 16 == 0


def test_difficulty_drives_loss_rank_lr_epochs() -> None:
    def plan(d: str, model: str = "toto") -> object:
        return plan_training(1750, d, model, preset="pretrained")

    easy, medium, hard, extreme = (plan(d) for d in ("easy", "medium", "hard", "extreme"))
    assert (easy.loss, easy.lora_rank, easy.lr, easy.finetune) == ("huber", 8, 3e-4, "lora")
    assert (hard.loss, hard.lora_rank, hard.lr) == ("heteroscedastic", 16, 1e-4)
    assert hard.epochs == int(medium.epochs * 1.5)
    # extreme: hard's settings, extended once more
    assert (extreme.difficulty, extreme.loss, extreme.lora_rank, extreme.lr) == ("extreme", "heteroscedastic", 16, 1e-4)
    assert extreme.epochs == int(hard.epochs * 1.5) and not extreme.notes
    assert plan("hard", "kronos").loss == "native"
    unknown = plan("unknown")
    assert unknown.difficulty == "medium" and unknown.epochs == medium.epochs and "unknown" in unknown.notes[0]


def test_difficulty_thresholds_come_from_engine_difficulty() -> None:
    assert DIFFICULTIES == difficulty.TIERS
    for v in (0.0, 7.99, 8.0, 14.99, 15.0, 29.99, 30.0, 70.0):
        assert difficulty_from_mae_pct(v) == difficulty.tier(v)
    assert difficulty_from_mae_pct(15.0) == "hard"  # the old copy said medium (<= 15)
    assert difficulty_from_mae_pct(30.0) == "extreme"
    assert difficulty_from_mae_pct(math.nan) == "unknown"
    plan_training(1750, difficulty_from_mae_pct(math.nan), "toto")  # every tier name is plannable


def test_tiny_preset_defaults_train_all_weights_faster_on_a_short_context() -> None:
    tiny, pre = plan_training(1750, "medium", "chronos2"), plan_training(1750, "medium", "chronos2", preset="pretrained")
    assert (tiny.finetune, pre.finetune) == ("full", "lora")
    assert tiny.lr == pytest.approx(pre.lr * 10) and tiny.epochs == pre.epochs
    assert (tiny.context, tiny.horizon, tiny.loss) == (128, 64, "native") and any("tiny" in n for n in tiny.notes)
    assert plan_training(1750, "medium", "chronos2", context=512).context == 512  # an explicit context wins
    lo = plan_training(1750, "medium", "chronos2", finetune="lora", lr=1e-4)
    assert (lo.finetune, lo.lr) == ("lora", 1e-4)


def test_short_data_shrinks_context_so_train_span_has_windows() -> None:
    p = plan_training(300, "easy", "toto")
    assert p.horizon == 16 and p.context % 16 == 0
    assert p.context + p.horizon + 31 <= int(300 * 0.7) and p.notes
    with pytest.raises(PlanError, match="too few"):
        plan_training(40, "easy", "toto")


def test_patch_alignment_and_kronos_window_cap() -> None:
    assert plan_training(1750, "easy", "toto", preset="pretrained").horizon == 64  # Toto-Open-Base patch 64
    assert plan_training(1750, "easy", "chronos2", context=1000, horizon=20).to_dict()["context"] == 992
    assert plan_training(1750, "easy", "chronos2", horizon=20).horizon == 32
    k = plan_training(1750, "easy", "kronos", preset="pretrained")
    assert k.context + k.horizon <= 512 and any("sees at most" in n for n in k.notes)


def test_overrides_field_by_field_and_errors() -> None:
    p = plan_training(1750, "easy", "toto", epochs=3, lr=1e-3, loss=None)
    assert (p.epochs, p.lr, p.loss) == (3, 1e-3, "native")  # loss=None keeps the (tiny) default
    with pytest.raises(PlanError, match="unknown plan field"):
        plan_training(1750, "easy", "toto", colour="red")
    with pytest.raises(PlanError, match="difficulty must be one of easy, medium, hard, extreme"):
        plan_training(1750, "trivial", "toto")
    assert set(p.to_dict()) >= {"context", "horizon", "loss", "lora_rank", "lr", "epochs", "notes"}
