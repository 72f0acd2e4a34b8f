"""Trainer checkpoints that hold data only: tensors in safetensors, everything else in JSON.

Why not `torch.save`: a pickle runs code when it is loaded, and checkpoints are files anyone with
write access to the workspace (or a Ray node's unpacked zip) can replace. Here a checkpoint is a
folder `state-<generation>/` holding `tensors.safetensors` and `state.json`; loading either can
only produce tensors, numbers, strings, lists and dicts. No `.pt`/pickle file is ever read.

Why several generations: a crash (or a full disk) while writing, or a damaged file, must not
block resume. Each save goes to a temp folder that is renamed into place, the newest `KEEP` are
kept, and `load_newest` returns the newest one that loads, reporting why any newer one was skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

STATE_JSON = "state.json"
TENSORS = "tensors.safetensors"
KEEP = 2
FORMAT = 1
_GEN_RE = re.compile(r"^state-(\d{6,})$")
_TENSOR = "__tensor__"
_ITEMS = "__items__"
_TUPLE = "__tuple__"


class CheckpointError(ValueError):
    """No usable checkpoint (every generation failed to load); the message lists why each failed."""


def _encode(value: Any, tensors: dict[str, Any], path: str) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {_TENSOR: key}
    if isinstance(value, dict):
        if all(isinstance(k, str) and k not in (_TENSOR, _ITEMS, _TUPLE) for k in value):
            return {k: _encode(v, tensors, f"{path}.{k}") for k, v in value.items()}
        return {_ITEMS: [[_encode(k, tensors, path), _encode(v, tensors, f"{path}[{k!r}]")]
                         for k, v in value.items()]}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, tensors, f"{path}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{path}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"checkpoint field {path} holds a {type(value).__name__}, which is not data")


def _decode(value: Any, tensors: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        if _TENSOR in value:
            return tensors[value[_TENSOR]]
        if _ITEMS in value:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in value[_ITEMS]}
        if _TUPLE in value:
            return tuple(_decode(v, tensors) for v in value[_TUPLE])
        return {k: _decode(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    return value


def generations(ckpt_dir: Path) -> list[Path]:
    """Checkpoint folders, newest first."""
    try:
        names = os.listdir(ckpt_dir)
    except OSError:
        return []
    found = [(int(m.group(1)), n) for n in names if (m := _GEN_RE.match(n))]
    return [Path(ckpt_dir) / n for _, n in sorted(found, reverse=True)]


def has_checkpoint(ckpt_dir: Path) -> bool:
    return any((g / STATE_JSON).is_file() for g in generations(ckpt_dir))


def newest_mtime(ckpt_dir: Path) -> float | None:
    """When the newest generation was written (resume picks the latest run folder by it)."""
    for g in generations(ckpt_dir):
        with contextlib.suppress(OSError):
            return (g / STATE_JSON).stat().st_mtime
    return None


def save_state(ckpt_dir: Path, state: dict[str, Any]) -> Path:
    """Write a new generation atomically (temp folder, fsync, rename) and prune old ones."""
    from safetensors.torch import save_file

    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    gens = generations(ckpt_dir)
    gen = int(_GEN_RE.match(gens[0].name).group(1)) + 1 if gens else 1  # type: ignore[union-attr]
    final = ckpt_dir / f"state-{gen:06d}"
    tmp = ckpt_dir / f".state-{gen:06d}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        tensors: dict[str, Any] = {}
        doc = {"format": FORMAT, "state": _encode(state, tensors, "state")}
        save_file(tensors, str(tmp / TENSORS))
        raw = json.dumps(doc).encode("utf-8")
        with open(tmp / STATE_JSON, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        with open(tmp / TENSORS, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in generations(ckpt_dir)[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in ckpt_dir.glob(".state-*.tmp"):
        if stale != tmp:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def load_state(gen_dir: Path) -> dict[str, Any]:
    """One generation's state; CheckpointError when either file is not what `save_state` writes."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    gen_dir = Path(gen_dir)
    try:
        doc = json.loads((gen_dir / STATE_JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{gen_dir / STATE_JSON}: not a checkpoint state file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("state"), dict):
        raise CheckpointError(f"{gen_dir / STATE_JSON}: not a format-{FORMAT} checkpoint state")
    try:
        tensors = load_file(str(gen_dir / TENSORS))
    except (OSError, SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{gen_dir / TENSORS}: not a safetensors file ({exc})") from None
    try:
        return _decode(doc["state"], tensors)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{gen_dir}: state names tensors the file does not hold ({exc})") from None


def load_newest(ckpt_dir: Path, accept: Any = None) -> tuple[dict[str, Any], Path, list[str]]:
    """(state, folder, skipped) of the newest generation that loads and that `accept(state)` takes
    (it raises ValueError to refuse one); `skipped` says why newer ones were passed over."""
    skipped: list[str] = []
    for g in generations(ckpt_dir):
        try:
            st = load_state(g)
            if accept is not None:
                accept(st)
        except (CheckpointError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            skipped.append(f"{g.name}: {exc}")
            continue
        return st, g, skipped
    legacy = [p.name for p in Path(ckpt_dir).glob("*.pt")] if Path(ckpt_dir).is_dir() else []
    why = "; ".join(skipped) or "no checkpoint generations"
    if legacy:
        why += f"; {', '.join(legacy)} ignored: pickle files are never loaded"
    raise CheckpointError(f"cannot resume from {ckpt_dir}: no checkpoint loads ({why})")
