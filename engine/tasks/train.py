"""train: fine-tune one foundation model per symbol (LoRA or full) and hand the runs to the engine.

Per symbol: load the CSV → persistence MAE% at h=64 on the train span gives the difficulty (when
not given) → `plan_training` (prior-art table, patch-aligned, fits the data) with the spec's
overrides → spans from `engine.data.split_spans` → training windows whose targets lie in the train
span, validation windows whose targets lie in the validation span (the test span is never read) →
`engine.forecasters.training.train` → val MAE% of the fine-tuned model and of naive persistence on
the same validation windows.

Artifacts under `<workspace>/runs/<run_id>/`: `checkpoint/` (every epoch; `resume: true` continues
from it), `adapter/` (final = best validation epoch; `load_forecaster(model, preset, adapter=...)`),
`config.json`, `metrics.json`, `curve.jsonl`. The run ids of resumable runs share a prefix derived
from the configuration, so a retried job with `resume` finds its predecessor's checkpoint.

Defaults for the `tiny` preset differ from the prior-art table (see engine.forecasters.planner):
full fine-tuning, native loss, lr × 10, context ≤ 128 — a random-weight model must be trained,
not adapted.

Params: engine.task_params.TrainParams (names, types, bounds, defaults and help text).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.curve_file import curve_path
from engine.forecasters.checkpoints import has_checkpoint, newest_mtime
from engine.task_params import TrainParams

if TYPE_CHECKING:
    from engine.data.windows import Spans
    from engine.forecasters.planner import TrainPlan
    from engine.jobs import JobSpec
    from engine.tasks.context import TaskContext

def _difficulty(series: Any, data: Any) -> tuple[str, float | None]:
    """Persistence MAE% at h=64 on train-span windows (no validation/test rows are read)."""
    from engine.difficulty import tier
    from engine.forecasters.training import mae_pct

    try:
        spans = data.split_spans(series.n_rows, 64)
        w = data.make_windows(series, spans, "train", 1, 64)
    except ValueError:
        return "unknown", None
    naive = np.repeat(w.last_close[:, None], w.horizon, axis=1)
    v = mae_pct(w.targets, naive)
    return tier(v), v


def _run_dir(ctx: TaskContext, prefix: str, resume: bool) -> Path:
    runs = ctx.runs_dir
    if resume and runs.is_dir():
        found = [(t, d) for d in runs.glob(prefix + "-*") if (t := newest_mtime(d / "checkpoint")) is not None]
        if found:
            return max(found)[1]
    return runs / f"{prefix}-{ctx.job_id[-8:]}"


def plan_symbol(series: Any, model: str, p: TrainParams) -> tuple[str, float | None, TrainPlan, Spans]:
    """Difficulty (given, else measured on the train span), the plan with the spec's overrides, and the
    spans: what a train job of `model` on `series` will use. PlanError/ValueError when impossible.

    The console's `train` preflight calls this too, so what it prints is what the job does.
    """
    import engine.data as data
    from engine.forecasters.planner import plan_training

    difficulty, naive64 = (p.difficulty, None) if p.difficulty else _difficulty(series, data)
    plan = plan_training(series.n_rows, difficulty, model, preset=p.preset, context=p.context, horizon=p.horizon,
                         loss=p.loss, lora_rank=p.lora_rank, lr=p.lr, epochs=p.epochs, batch_size=p.batch_size,
                         finetune=p.finetune)
    spans = data.split_spans(series.n_rows, plan.horizon, val_rows=p.val_rows, test_rows=p.test_rows)
    return difficulty, naive64, plan, spans


class SymbolEvents:
    """The event writer the training loop sees while one symbol of a job trains.

    Its loss events name the symbol and run (a console draws one curve per run); its progress is the
    job's, in symbols (`index + fraction of this symbol's steps` of `total`), with where the job is and
    an ETA for the whole job (this symbol's remaining steps plus, for each symbol still to come, as
    long as this one takes in all). Everything else goes to the job's writer unchanged.
    """

    def __init__(self, writer: Any, symbol: str, run: str, index: int, total: int, epochs: int) -> None:
        self.writer, self.symbol, self.run = writer, symbol, run
        self.index, self.total, self.epochs = index, total, epochs
        self._epoch = 0
        self._t0 = time.monotonic()

    def where(self, stage: str, fraction: float = 0.0, eta_s: float | None = None, epoch_i: int | None = None) -> None:
        """One progress event; `epoch_i` 0 (before the first epoch) replaces the previous symbol's count."""
        self.writer.progress(self.index + fraction, self.total, eta_s=eta_s, stage=stage, symbol=self.symbol,
                             symbol_i=self.index + 1, symbol_n=self.total, epoch_i=epoch_i or 0, epoch_n=self.epochs)

    def loss(self, step: int, epoch: int, train: float | None, val: float | None = None) -> None:
        self._epoch = epoch
        self.writer.loss(step, epoch, train, val, symbol=self.symbol, run=self.run)

    def progress(self, done: float, total: float, eta_s: float | None = None, stage: str | None = None) -> None:
        frac = min(1.0, done / total) if total else 0.0
        eta = None
        if eta_s is not None:
            whole = time.monotonic() - self._t0 + eta_s  # this symbol, start to end
            eta = eta_s + (self.total - self.index - 1) * whole
        self.where("training", frac, eta, self._epoch + 1)

    def __getattr__(self, name: str) -> Any:  # log, artifact, metric: the job's writer
        return getattr(self.writer, name)


def train_symbol(model: str, symbol: str, p: TrainParams, ctx: TaskContext, index: int = 0,
                 total: int = 1) -> dict[str, Any] | None:
    """Train one symbol; the run record for the result payload, or None when cancelled."""
    import engine.data as data
    from engine.evaluation import DEFAULT_MAX_WINDOWS, window_spec
    from engine.forecasters.registry import load_forecaster
    from engine.forecasters.training import Events, TrainConfig, mae_window_index, train, validation_mae_pct

    ev = ctx.events
    ctx.events.progress(index, total, stage="planning", symbol=symbol, symbol_i=index + 1, symbol_n=total,
                        epoch_i=0)
    series = data.load_symbol(symbol, ctx.data_dirs or None)
    difficulty, naive64, plan, spans = plan_symbol(series, model, p)
    preset = p.preset
    stride = p.stride
    train_w = data.make_windows(series, spans, "train", plan.context, plan.horizon, stride=stride)
    val_w = data.make_windows(series, spans, "val", plan.context, plan.horizon, stride=1)
    seed = p.seed
    cfg = TrainConfig(epochs=plan.epochs, lr=float(plan.lr), batch_size=plan.batch_size, loss=plan.loss, seed=seed,
                      patience=p.patience, max_steps_per_epoch=p.max_steps_per_epoch,
                      mae_samples=p.mae_samples, val_batches=8,
                      mae_windows=DEFAULT_MAX_WINDOWS)
    ident = {"model": model, "preset": preset, "source": p.source, "symbol": symbol, "plan": plan.to_dict(),
             "train": cfg.__dict__, "spans": spans.to_dict(), "stride": stride}
    prefix = f"{model}-{preset}-{symbol}-" + hashlib.sha1(json.dumps(ident, sort_keys=True, default=str)
                                                          .encode()).hexdigest()[:8]
    run_dir = _run_dir(ctx, prefix, p.resume)
    ckpt = run_dir / "checkpoint"
    resuming = p.resume and has_checkpoint(ckpt)
    if not resuming and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({**ident, "difficulty": difficulty,
                                                     "naive_mae_pct_h64_train": naive64}, indent=2, default=str))
    ev.log(f"{symbol}: {model}/{preset} {plan.rows} rows, {plan.difficulty}; {plan.settings()}; "
           f"{train_w.n} train / {val_w.n} val windows" + (f" ({'; '.join(plan.notes)})" if plan.notes else "")
           + f"; run {run_dir.name}{' (resuming)' if resuming else ''}")

    kw = {k: v for k, v in (("source", p.source), ("tokenizer", p.tokenizer)) if v}
    sev = SymbolEvents(ev, symbol, run_dir.name, index, total, plan.epochs)
    sev.where("loading model")
    t0 = time.time()
    fc: Any = load_forecaster(model, preset, device=ctx.device, **kw)
    fc.prepare_finetune(plan.finetune, rank=plan.lora_rank, seed=seed)
    with ctx.cooperative_cancel():  # the loop checkpoints and returns when cancelled
        res = train(fc, train_w, val_w, cfg, ckpt_dir=ckpt, events=Events(sev, curve_path(run_dir)),
                    cancelled=ctx.cancelled, resume=resuming)
    if res.cancelled:
        ev.log(f"{symbol}: cancelled at step {res.steps}; checkpoint kept in {ckpt} (resume: true continues)")
        return None
    adapter_dir = run_dir / "adapter"
    fc.save_adapter(adapter_dir)
    ev.artifact("adapter", adapter_dir)
    sev.where("scoring validation", 1.0, epoch_i=res.epochs_done)
    mae = validation_mae_pct(fc, val_w, cfg)
    metrics = {"val_loss": res.best_val, "train_loss": res.train_losses[-1] if res.train_losses else None,
               "best_epoch": res.best_epoch, "epochs_done": res.epochs_done, "steps": res.steps,
               "steps_per_s": res.steps_per_s, "stopped_early": float(res.stopped_early), **mae}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    # best_epoch and stopped_early place the curve's markers in a console (`<symbol>.<name>`)
    for k in ("val_loss", "val_mae_pct", "best_epoch", "stopped_early"):
        v = metrics[k]
        if v is not None:
            ev.metric(f"{symbol}.{k}", float(v))
    hyper = {**plan.to_dict(), "preset": preset, "seed": seed, "difficulty": difficulty,
             "max_steps_per_epoch": cfg.max_steps_per_epoch}
    hyper.pop("notes", None)
    return {"model": model, "symbol": symbol, "hyperparams": hyper, "metrics": metrics,
            "checkpoint": str(adapter_dir), "training_time": time.time() - t0, "seed": seed,
            "notes": "; ".join(plan.notes),
            "extra": {"run_id": run_dir.name, "run_dir": str(run_dir), "spans": spans.to_dict(),
                      "train_windows": train_w.n, "preset": preset, "context": plan.context, "horizon": plan.horizon,
                      # the windows val_mae_pct is on: the same spec as a validate run's (refuse to mix others)
                      "val_windows": window_spec(val_w.subset(mae_window_index(val_w.n, cfg.mae_windows)), spans),
                      "source": fc.source}}


def run(spec: JobSpec, ctx: TaskContext) -> dict[str, Any]:
    """Train `spec.model` on each of `spec.symbols` in turn; returns `{runs, summary}`."""
    from engine.forecasters.registry import adapter_class
    from engine.models import FOUNDATION_MODELS

    if spec.model is None or spec.model not in FOUNDATION_MODELS or not adapter_class(spec.model).trainable:
        raise ValueError(f"train: model must be one of {', '.join(FOUNDATION_MODELS)}, got {spec.model!r}")
    p = TrainParams.of(spec.params)
    runs: list[dict[str, Any]] = []
    cancelled = False
    for i, sym in enumerate(spec.symbols):
        if ctx.cancelled():
            cancelled = True
            break
        rec = train_symbol(spec.model, sym, p, ctx, i, len(spec.symbols))
        if rec is None:
            cancelled = True
            break
        runs.append(rec)
    summary = {"model": spec.model, "trained": [r["symbol"] for r in runs], "cancelled": cancelled,
               "val_mae_pct": {r["symbol"]: r["metrics"]["val_mae_pct"] for r in runs},
               "val_naive_mae_pct": {r["symbol"]: r["metrics"]["val_naive_mae_pct"] for r in runs}}
    return {"runs": runs, "summary": summary}
