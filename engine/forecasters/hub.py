"""Finding pretrained weights: a local directory, the Hugging Face cache, or (when reachable) the hub.

Why this module exists: with no network, every `from_pretrained` call in the model packages spends
23–46 s in retries before failing with an error that does not say what to do. We decide up front
whether the hub is reachable (HF_HUB_OFFLINE, or a 0.3 s TCP probe), force huggingface_hub into
offline mode when it is not, and resolve each id against the local cache ourselves, so a missing
model fails in well under a second with `ModelLoadError` naming the id and the download command.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

_HUB_REACHABLE: bool | None = None  # cached result of the probe (one probe per process)


class ModelLoadError(RuntimeError):
    """Weights cannot be loaded; the message names the model id and how to fetch it."""


#: What a model package raises when a folder holds no loadable weights of that model (a wrong
#: config, missing or mis-shaped tensors, an assert in its loader).
LOAD_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, RuntimeError, KeyError, TypeError, AssertionError)


@contextmanager
def loading_weights(model: str, where: object) -> Iterator[None]:
    """Turns a model package's load failure into a `ModelLoadError` naming the model and the folder."""
    try:
        yield
    except LOAD_ERRORS as exc:
        raise ModelLoadError(f"{model}: cannot load weights from {where}: {exc}") from exc


def download_command(repo_id: str) -> str:
    """The command a user runs to put `repo_id` into the local cache."""
    return f"hf download {repo_id}"


def _env_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_reachable(timeout: float = 0.3) -> bool:
    """False when HF_HUB_OFFLINE is set or a TCP connect to the hub endpoint fails quickly."""
    global _HUB_REACHABLE
    if _env_offline():
        return False
    if _HUB_REACHABLE is None:
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        parsed = urlparse(endpoint)
        host = parsed.hostname or "huggingface.co"
        port = parsed.port or (443 if parsed.scheme != "http" else 80)
        try:
            with socket.create_connection((host, port), timeout=timeout):
                _HUB_REACHABLE = True
        except OSError:
            _HUB_REACHABLE = False
    return _HUB_REACHABLE


def force_offline_if_unreachable() -> bool:
    """Set huggingface_hub's offline flag when the hub cannot be reached; returns True if offline.

    huggingface_hub reads HF_HUB_OFFLINE at import, so setting the environment variable afterwards
    is not enough; the module constant is what its download functions consult.
    """
    offline = not hub_reachable()
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True
    return offline


#: Weight formats that are pickles (loading one can run code); only safetensors weights are used.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def _refuse_pickle_only(model: str, path: Path) -> Path:
    """A weights folder must carry safetensors: a pickle-only one is refused before any loader sees it."""
    names = [f.name for f in path.iterdir() if f.is_file()] if path.is_dir() else []
    pickled = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
    if pickled and not any(n.endswith(".safetensors") for n in names):
        raise ModelLoadError(f"{model}: {path} holds only pickle-format weights ({', '.join(pickled[:3])}); "
                             "pickles can run code when loaded and are refused; use the safetensors weights")
    return path


def source_label(raw: str | os.PathLike[str], path: Path | None = None) -> str:
    """A weights source as jobs and adapters record it: a hub id as given, a directory as its absolute
    path (a relative one would point elsewhere from a worker, a console or the trading code)."""
    text = str(raw)
    local = Path(text).expanduser()
    return str(path or local.resolve()) if local.is_dir() else text


def resolve_weights(model: str, repo_or_dir: str | os.PathLike[str], *, required: tuple[str, ...] = ()) -> Path:
    """A local directory holding the weights for `repo_or_dir` (a hub id or a directory).

    Directories are used as they are; hub ids come from the cache, or are downloaded when the hub is
    reachable. Anything else raises `ModelLoadError` quickly with the download command.
    """
    raw = str(repo_or_dir)
    p = Path(raw).expanduser()
    if p.is_dir():
        missing = [f for f in required if not (p / f).exists()]
        if missing:
            raise ModelLoadError(f"{model}: directory {p} has no {', '.join(missing)}; it is not a {model} checkpoint")
        return _refuse_pickle_only(model, p.resolve())
    if raw.startswith(("/", ".", "~")) or raw.count("/") != 1:
        raise ModelLoadError(f"{model}: weights directory {raw!r} does not exist (and it is not a hub id like 'org/name')")
    offline = force_offline_if_unreachable()
    from huggingface_hub import snapshot_download

    try:
        found = Path(snapshot_download(raw, local_files_only=True))
    except Exception as cached_exc:  # LocalEntryNotFoundError and friends
        if offline:
            raise ModelLoadError(
                f"{model}: pretrained weights {raw!r} are not in the local Hugging Face cache and the hub "
                f"is not reachable (offline). Download them on a connected machine with: "
                f"{download_command(raw)}  (or pass a local directory that holds them)"
            ) from cached_exc
    else:
        return _refuse_pickle_only(model, found)
    try:
        downloaded = Path(snapshot_download(raw))
    except Exception as exc:
        raise ModelLoadError(
            f"{model}: could not download {raw!r} ({type(exc).__name__}: {exc}). Try: {download_command(raw)}"
        ) from exc
    return _refuse_pickle_only(model, downloaded)
