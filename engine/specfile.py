"""Reading a job spec from a file someone else wrote (the spool): parsed and validated like
`JobSpec.create`, with size limits, and nothing but a `JobSpecError` comes out.

Why a module of its own: a spool file is input from any process that can write the workspace.
`JobSpec.from_dict` trusts its input (it reads the engine's own records); this does not. The spec
is size-checked before it is parsed, every field is type-checked, unknown fields are refused, and
then `JobSpec.create` itself checks kind, symbols, model and params, so a hand-written spec can
never be looser than one made in-process.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from engine.jobs import MAX_SPEC_BYTES, JobSpec, JobSpecError
from engine.names import PathNameError, validate_name

_FIELDS = frozenset(f.name for f in fields(JobSpec))
_RESOURCE_FIELDS = frozenset({"gpus", "vram_gb", "cpus"})


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise JobSpecError(f"{what} must be a finite number, got {v!r:.60}")
    return v


def _integer(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise JobSpecError(f"{what} must be a finite integer, got {v!r:.60}")
    return v


def _name(v: Any, what: str) -> str:
    try:
        return validate_name(what, v)
    except PathNameError as exc:
        raise JobSpecError(str(exc)) from None


def spec_from_untrusted(d: Any, expected_id: str | None = None) -> JobSpec:
    """A JobSpec from a parsed spool document, or JobSpecError saying what is wrong."""
    if not isinstance(d, dict):
        raise JobSpecError(f"a job spec must be a JSON object, got {type(d).__name__}")
    unknown = sorted(str(k)[:40] for k in d if k not in _FIELDS)
    if unknown:
        raise JobSpecError(f"unknown job spec field(s): {', '.join(unknown)}")
    missing = [k for k in ("id", "kind", "symbols") if k not in d]
    if missing:
        raise JobSpecError(f"job spec lacks {', '.join(missing)}")
    jid = _name(d["id"], "job id")
    if expected_id is not None and jid != expected_id:
        raise JobSpecError(f"spec id {jid} does not match inbox marker {expected_id}")
    if not isinstance(d["kind"], str):
        raise JobSpecError(f"kind must be a string, got {d['kind']!r:.60}")
    syms = d["symbols"]
    if not isinstance(syms, list) or not all(isinstance(s, str) for s in syms):
        raise JobSpecError("symbols must be a list of names")
    model = d.get("model")
    if model is not None and not isinstance(model, str):
        raise JobSpecError(f"model must be a name or null, got {model!r:.60}")
    params = d.get("params") or {}
    if not isinstance(params, dict):
        raise JobSpecError("params must be an object")
    priority = _integer(d.get("priority", 0), "priority")
    res = d.get("resources") or {}
    if not isinstance(res, dict) or set(res) - _RESOURCE_FIELDS:
        raise JobSpecError(f"resources must be an object with {', '.join(sorted(_RESOURCE_FIELDS))}")
    res = {k: _integer(v, f"resources.{k}") if k == "cpus" else _number(v, f"resources.{k}") for k, v in res.items()}
    created_at = _number(d.get("created_at", 0.0), "created_at")
    attempt = _integer(d.get("attempt", 1), "attempt")
    if attempt < 1:
        raise JobSpecError(f"attempt must be >= 1, got {attempt}")
    parent = d.get("parent")
    if parent is not None:
        _name(parent, "parent job id")
    checked = JobSpec.create(d["kind"], syms, model, params, priority=priority, resources=res, parent=parent)
    return replace(checked, id=jid, created_at=float(created_at), attempt=attempt)


def read_spool_spec(path: Path, expected_id: str) -> JobSpec:
    """Read `spec.json` of a spooled job: at most MAX_SPEC_BYTES, parsed, validated."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise JobSpecError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise JobSpecError(f"{path.name} is larger than {MAX_SPEC_BYTES // 1024} KB")
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise JobSpecError(f"{path.name} nests too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise JobSpecError(f"{path.name} is not valid JSON: {str(exc)[:120]}") from None
    return spec_from_untrusted(doc, expected_id)


__all__ = ["read_spool_spec", "spec_from_untrusted"]
