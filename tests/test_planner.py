"""plan_training: the prior-art table, patch alignment, data limits, overrides."""

from __future__ import annotations

import pytest

from engine.forecasters.planner import PlanError, plan_training


@pytest.mark.parametrize("rows,ctx,hor", [(1750, 1024, 64), (1200, 752, 48), (2479, 1024, 64)])
def test_table_and_alignment_chronos2(rows: int, ctx: int, hor: int) -> None:
    p = plan_training(rows, "medium", "chronos2")
    assert (p.context, p.horizon) == (ctx, hor)
    assert p.context % 16 == 0 and p.horizon % 16 == 0


def test_difficulty_drives_loss_rank_lr_epochs() -> None:
    easy, hard = plan_training(1750, "easy", "toto"), plan_training(1750, "hard", "toto")
    assert (easy.loss, easy.lora_rank, easy.lr) == ("huber", 8, 3e-4)
    assert (hard.loss, hard.lora_rank, hard.lr) == ("heteroscedastic", 16, 1e-4)
    assert hard.epochs == int(plan_training(1750, "medium", "toto").epochs * 1.5)
    assert plan_training(1750, "hard", "kronos").loss == "native"
    assert plan_training(1750, "extreme", "toto").lora_rank == 16


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
    k = plan_training(1750, "easy", "kronos")
    assert k.context + k.horizon <= 512


def test_overrides_field_by_field_and_errors() -> None:
    p = plan_training(1750, "easy", "toto", epochs=3, lr=1e-3, loss=None)
    assert (p.epochs, p.lr, p.loss) == (3, 1e-3, "huber")
    with pytest.raises(PlanError, match="unknown plan field"):
        plan_training(1750, "easy", "toto", colour="red")
    with pytest.raises(PlanError, match="difficulty"):
        plan_training(1750, "trivial", "toto")
    assert set(p.to_dict()) >= {"context", "horizon", "loss", "lora_rank", "lr", "epochs", "notes"}
