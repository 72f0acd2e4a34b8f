"""What travels between the Ray driver and a node: the job's bundle, the artifacts zip, the env.

A node that does not see the driver's workspace (shipped mode, see engine.backends.ray_backend) gets
one zip with everything the job reads and sends one zip back with everything it wrote; both sides
unpack with `unpack`, which refuses members that would escape the destination.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import zipfile
from pathlib import Path

from engine.jobs import JobSpec
from store.ledger_file import LEDGER_FILE, snapshot

#: Environment variables that travel to the node (the rest of the driver's environment, PATH,
#: VIRTUAL_ENV, CUDA_VISIBLE_DEVICES..., describes the driver machine and must not).
ENV_PREFIXES: tuple[str, ...] = ("FORECAST_", "HF_", "TRANSFORMERS_", "OMP_", "MKL_", "TOKENIZERS_")


def filter_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(ENV_PREFIXES)}


def zip_dir(zf: zipfile.ZipFile, root: Path, sub: str, limit_bytes: int) -> None:
    base = root / sub
    if not base.is_dir():
        return
    for path in sorted(base.rglob("*")):
        if path.is_file() and path.stat().st_size <= limit_bytes:
            zf.write(path, path.relative_to(root).as_posix())


def make_bundle(spec: JobSpec, workspace: Path, hyperparams: Path | None = None,
                max_file_mb: float = 64.0) -> bytes:
    """What a node without the shared workspace needs to run the job: a zip, paths relative to it.

    Contains jobs/<id>/spec.json, data/<SYMBOL>.csv for the job's symbols (a workspace CSV wins
    over a shipped one on the node, so the node uses exactly the driver's data), store.json and a
    consistent copy of ledger.db (the tasks only read them), and hyperparams/ (promoted configs, for regression checks).
    """
    from engine import paths

    buf = io.BytesIO()
    limit = int(max_file_mb * 1024 * 1024)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"jobs/{spec.id}/spec.json", spec.to_json())
        dirs = paths.data_dirs(workspace)
        for sym in spec.symbols:
            found = [d / f"{sym}.csv" for d in dirs if (d / f"{sym}.csv").is_file()]
            if found and found[-1].stat().st_size <= limit:  # later dirs override earlier ones
                zf.write(found[-1], f"data/{sym}.csv")
        store = workspace / "store.json"
        if store.is_file() and store.stat().st_size <= limit:
            zf.write(store, "store.json")
        ledger = workspace / LEDGER_FILE
        if ledger.is_file():
            with tempfile.TemporaryDirectory(prefix="ledger-") as tmp:
                copy = snapshot(ledger, Path(tmp) / LEDGER_FILE)
                if copy.stat().st_size <= limit:
                    zf.write(copy, LEDGER_FILE)
        hp = hyperparams if hyperparams is not None else paths.hyperparams_dir()
        if hp.is_dir():
            for path in sorted(hp.rglob("*.json")):
                zf.write(path, "hyperparams/" + path.relative_to(hp).as_posix())
    return buf.getvalue()


def unpack(data: bytes, dest: Path) -> list[str]:
    """Unpack a zip from a node into the workspace; refuses members that would escape it."""
    written: list[str] = []
    dest = dest.resolve()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for member in zf.infolist():
            target = (dest / member.filename).resolve()
            if dest not in target.parents or member.is_dir():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            written.append(member.filename)
    return written
