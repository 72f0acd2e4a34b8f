"""The one training loop every foundation model uses (LoRA or full fine-tuning).

Why it is shared: optimiser, schedule, clipping, early stopping, checkpoints and resume are where
the old scripts diverged and broke; here they exist once. What is model-specific (how a window
becomes a loss) is `FoundationForecaster.batch_loss`.

Determinism and resume: the batch order of epoch `e` is a permutation drawn from
`numpy.random.default_rng([seed, e])`, so a resumed run regenerates it and skips the batches it has
already done. A checkpoint (engine.forecasters.checkpoints: tensors + JSON, never a pickle; written
at the end of every epoch, and at the next safe point when the job is cancelled) holds the adapter
tensors, the optimiser, the scheduler, torch's RNG state, the position (epoch, batch), the best
validation loss so far and the best adapter tensors, so a resumed run ends at the same weights as an
uninterrupted one with the same seed. Resume takes the newest checkpoint generation that loads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.curve_file import append_point
from engine.data.windows import Windows
from engine.forecasters.checkpoints import has_checkpoint, load_newest, save_state

# ---------------------------------------------------------------------------------------------
# Windows built from arrays (synthetic series, tests, benches) with the engine.data.Windows fields
# ---------------------------------------------------------------------------------------------
#: The engine's own `Windows` (one type, so subsetting and the fields cannot drift apart); the name stays
#: for callers (docs/CONTRACTS.md).
ArrayWindows = Windows


def windows_from_close(close: np.ndarray, lo: int, hi: int, context_len: int, horizon: int, *,
                       stride: int = 1, symbol: str = "SYN", span: str = "train",
                       start: str = "2020-01-01", train_end: int | None = None) -> Windows:
    """Windows whose targets lie in rows [lo, hi) of `close`; contexts may reach back before `lo`."""
    close = np.asarray(close, dtype=np.float64)
    first = max(lo, context_len)
    origins = np.arange(first, hi - horizon + 1, stride, dtype=np.int64)
    if origins.size == 0:
        raise ValueError(f"no usable windows: need {context_len + horizon} rows, have {hi - max(0, lo - context_len)}")
    times = np.datetime64(start, "ns") + np.arange(close.shape[0]) * np.timedelta64(1, "D")
    vals = np.stack([close, close, close, close, np.full_like(close, np.nan)], axis=1)
    cidx = origins[:, None] + np.arange(-context_len, 0)[None, :]
    tidx = origins[:, None] + np.arange(horizon)[None, :]
    te = train_end if train_end is not None else lo
    d = np.abs(np.diff(close))
    scale = np.array([d[: max(1, min(o, te) - 1)].mean() if min(o, te) > 1 else 1.0 for o in origins])
    return Windows(symbol, span, context_len, horizon, origins, vals[cidx], times[cidx], times[tidx],
                   close[tidx], scale)


def mae_pct(y: np.ndarray, yhat: np.ndarray) -> float:
    """MAE / mean|y| × 100 over the scored targets (engine.metrics.mae_pct, as a float)."""
    from engine.metrics import mae_pct as _m

    return float(_m(y, yhat))


# ---------------------------------------------------------------------------------------------
# Configuration and results
# ---------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    epochs: int = 3
    lr: float = 3e-4
    batch_size: int = 16
    loss: str = "native"
    huber_delta: float = 1.0
    weight_decay: float = 0.01
    warmup_frac: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    patience: int = 3  # epochs without validation improvement before stopping
    max_steps_per_epoch: int | None = None
    val_batches: int | None = None  # cap on validation batches per epoch (None = all)
    mae_windows: int = 64  # validation windows forecast for val MAE% at the end
    mae_samples: int = 8

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(f"max_steps_per_epoch must be >= 1, got {self.max_steps_per_epoch}")


@dataclass
class TrainResult:
    steps: int
    epochs_done: int
    train_losses: list[float] = field(default_factory=list)  # mean train loss per epoch
    val_losses: list[float] = field(default_factory=list)
    best_val: float = float("inf")
    best_epoch: int = -1
    stopped_early: bool = False
    cancelled: bool = False
    seconds: float = 0.0
    steps_per_s: float = 0.0


class Events:
    """What the loop reports through; `TaskContext.events` (an EventWriter) fits, as does None."""

    def __init__(self, writer: Any | None, curve_path: Path | None, min_interval: float = 0.2) -> None:
        self.writer = writer
        self.curve_path = curve_path
        self.min_interval = min_interval
        self._last = 0.0

    def _curve(self, rec: dict[str, Any]) -> None:
        if self.curve_path is not None:
            append_point(self.curve_path, rec)

    def step(self, step: int, epoch: int, train: float, done: int, total: int, eta: float | None) -> None:
        now = time.monotonic()
        if now - self._last < self.min_interval:  # throttle: at most ~5 events/s
            return
        self._last = now
        self._curve({"step": step, "epoch": epoch, "train": train, "t": time.time()})
        if self.writer is not None:
            self.writer.loss(step=step, epoch=epoch, train=train)
            self.writer.progress(done=done, total=total, eta_s=eta, stage="train")

    def epoch(self, step: int, epoch: int, train: float, val: float) -> None:
        self._curve({"step": step, "epoch": epoch, "train": train, "val": val, "t": time.time()})
        if self.writer is not None:
            self.writer.loss(step=step, epoch=epoch, train=train, val=val)

    def log(self, msg: str) -> None:
        if self.writer is not None:
            self.writer.log(msg)

    def checkpoint(self, path: Path) -> None:
        """A resumable state is on disk: the engine then marks a killed job interrupted, not failed."""
        if self.writer is not None:
            self.writer.artifact("checkpoint", path)


def _lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        prog = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, prog)))

    return f


def _mean_loss(fc: Any, windows: Any, cfg: TrainConfig, cancelled: Callable[[], bool] | None = None) -> float | None:
    """Mean validation loss; None when `cancelled()` turned true between batches (the caller checkpoints)."""
    import torch

    fc.set_train_mode(False)
    total, n = 0.0, 0
    order = np.arange(windows.n)
    batches = [order[i : i + cfg.batch_size] for i in range(0, windows.n, cfg.batch_size)]
    if cfg.val_batches is not None:
        batches = batches[: cfg.val_batches]
    with torch.no_grad():
        for idx in batches:
            if cancelled is not None and cancelled():
                return None
            total += float(fc.batch_loss(windows.subset(idx), cfg.loss, delta=cfg.huber_delta)) * len(idx)
            n += len(idx)
    return total / max(1, n)


def train(fc: Any, train_w: Any, val_w: Any, cfg: TrainConfig, *, ckpt_dir: Path | None = None,
          events: Events | None = None, cancelled: Callable[[], bool] | None = None,
          resume: bool = False) -> TrainResult:
    """Fine-tune `fc` (already `prepare_finetune`d) in place; returns the history.

    At the end the model holds the adapter of the best validation epoch.
    """
    import torch

    ev = events or Events(None, None)
    is_cancelled = cancelled or (lambda: False)
    if train_w.n < 1 or val_w.n < 1:
        raise ValueError(f"need training and validation windows, got {train_w.n} and {val_w.n}")
    params = fc.trainable_parameters()
    if not params:
        raise ValueError(f"{fc.name}: nothing to train (call prepare_finetune first)")
    n_batches = math.ceil(train_w.n / cfg.batch_size)
    steps_per_epoch = min(n_batches, cfg.max_steps_per_epoch or n_batches)
    total_steps = steps_per_epoch * cfg.epochs
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total_steps, int(cfg.warmup_frac * total_steps)))
    use_amp = str(fc.device).startswith("cuda")

    res = TrainResult(steps=0, epochs_done=0)
    start_epoch, start_batch = 0, 0
    best_state: dict[str, Any] | None = None
    bad_epochs = 0
    epoch_loss_sum, epoch_loss_n = 0.0, 0
    if resume and ckpt_dir is not None and has_checkpoint(ckpt_dir):
        def apply(st: dict[str, Any]) -> None:
            nonlocal best_state, bad_epochs, epoch_loss_sum, epoch_loss_n, start_epoch, start_batch, res
            if st.get("config") != asdict(cfg):
                raise ValueError("it was written with a different training config")
            fc.load_trainable_state(st["adapter"])
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
            torch.set_rng_state(st["torch_rng"])
            start_epoch, start_batch = int(st["epoch"]), int(st["batch"])
            best_state, bad_epochs = st["best_state"], int(st["bad_epochs"])
            epoch_loss_sum, epoch_loss_n = float(st["epoch_loss_sum"]), int(st["epoch_loss_n"])
            res = TrainResult(**st["result"])

        _, gen, skipped = load_newest(ckpt_dir, apply)
        for why in skipped:
            ev.log(f"checkpoint skipped: {why}")
        ev.log(f"resumed from {gen} at epoch {start_epoch}, batch {start_batch}")

    def save_ckpt(epoch: int, batch: int) -> None:
        if ckpt_dir is None:
            return
        st = {"config": asdict(cfg), "adapter": fc.trainable_state(), "optimizer": opt.state_dict(),
              "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(), "epoch": epoch,
              "batch": batch, "best_state": best_state, "bad_epochs": bad_epochs,
              "epoch_loss_sum": epoch_loss_sum, "epoch_loss_n": epoch_loss_n, "result": asdict(res)}
        ev.checkpoint(save_state(ckpt_dir, st))
        if fc.finetune is not None:
            fc.save_adapter(ckpt_dir / "adapter")

    t0 = time.monotonic()
    steps_this_session = 0
    # Cancellation: checked before every optimizer step and every validation batch (the slowest
    # thing between two checks is one batch), so a cancelled job checkpoints and returns well
    # inside the worker's grace period instead of being killed.
    for epoch in range(start_epoch, cfg.epochs):
        if res.stopped_early:
            break
        perm = np.random.default_rng([cfg.seed, epoch]).permutation(train_w.n)
        batches = [perm[i : i + cfg.batch_size] for i in range(0, train_w.n, cfg.batch_size)][:steps_per_epoch]
        fc.set_train_mode(True)
        b0 = start_batch if epoch == start_epoch else 0
        if b0 == 0:
            epoch_loss_sum, epoch_loss_n = 0.0, 0
        for bi in range(b0, len(batches)):
            if is_cancelled():
                save_ckpt(epoch, bi)
                res.cancelled = True
                res.seconds += time.monotonic() - t0
                return res
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                loss = fc.batch_loss(train_w.subset(batches[bi]), cfg.loss, delta=cfg.huber_delta)
            # the step's one device→host sync: the logged value doubles as the finiteness check
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise FloatingPointError(f"{fc.name}: training loss became {lv} at step {res.steps}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            res.steps += 1
            steps_this_session += 1
            epoch_loss_sum += lv
            epoch_loss_n += 1
            elapsed = time.monotonic() - t0
            done = epoch * steps_per_epoch + bi + 1
            eta = elapsed / steps_this_session * (total_steps - done)
            ev.step(res.steps, epoch, lv, done, total_steps, eta)
        val = _mean_loss(fc, val_w, cfg, is_cancelled)
        if val is None:
            # Cancelled during the epoch's validation: the epoch's steps are done, so the checkpoint
            # points past its last batch; a resumed run goes straight to this validation.
            save_ckpt(epoch, len(batches))
            res.cancelled = True
            res.seconds += time.monotonic() - t0
            return res
        tr = epoch_loss_sum / max(1, epoch_loss_n)
        res.train_losses.append(tr)
        res.val_losses.append(val)
        res.epochs_done = epoch + 1
        ev.epoch(res.steps, epoch, tr, val)
        if val < res.best_val:
            res.best_val, res.best_epoch, bad_epochs = val, epoch, 0
            best_state = fc.trainable_state()
        else:
            bad_epochs += 1
            if bad_epochs >= cfg.patience:
                res.stopped_early = True
                ev.log(f"early stop after epoch {epoch + 1}: no validation improvement for {bad_epochs} epochs")
        save_ckpt(epoch + 1, 0)
    if best_state is not None:
        fc.load_trainable_state(best_state)
    fc.set_train_mode(False)
    res.seconds += time.monotonic() - t0
    res.steps_per_s = steps_this_session / max(1e-9, time.monotonic() - t0)
    return res


def mae_window_index(n: int, cap: int) -> np.ndarray:
    """Which of `n` stride-1 validation windows the val MAE% is computed on: at most `cap`, spaced by
    `spread_stride` back from the last one, i.e. exactly the windows a validate job scores by default
    (engine.data.windows.make_windows with the same cap), so train and validate `val_*` numbers are
    computed on the same windows and can be ranked together."""
    from engine.data.windows import spread_stride

    stride = spread_stride(n, 1, cap)
    return np.arange(n - 1, -1, -stride, dtype=np.int64)[::-1]


def validation_mae_pct(fc: Any, val_w: Any, cfg: TrainConfig) -> dict[str, float]:
    """Val MAE% of the median forecast (and of naive persistence) on up to `mae_windows` windows
    (`mae_window_index`)."""
    w = val_w.subset(mae_window_index(val_w.n, cfg.mae_windows))
    f = fc.forecast(w, num_samples=cfg.mae_samples, seed=cfg.seed)
    point = np.median(f.samples, axis=1)
    naive = np.repeat(w.last_close[:, None], w.horizon, axis=1)
    return {"val_mae_pct": mae_pct(w.targets, point), "val_naive_mae_pct": mae_pct(w.targets, naive),
            "val_mae": float(np.mean(np.abs(w.targets - point))), "val_windows": float(w.n)}
