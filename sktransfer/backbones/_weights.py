"""Safe weight loading and the record of where weights were looked for.

Resolution order for every backbone: an explicit ``weights=`` path, then weights
shipped by an installed package, then the framework's local cache, then a
download. Each loader reports its attempts to a :class:`Attempts` so that, when all
fail, one :class:`~sktransfer.exceptions.WeightsNotFoundError` lists them all.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch

from sktransfer.exceptions import WeightsNotFoundError

__all__ = [
    "RANDOM_ID",
    "Attempts",
    "downloads_allowed",
    "file_identity",
    "is_random",
    "load_state_dict",
    "seeded_init",
    "weights_path",
]

RANDOM_ID = "random:seed=0"

_OFFLINE_VARS = ("SKTRANSFER_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def downloads_allowed() -> bool:
    """False when ``SKTRANSFER_OFFLINE`` (or ``HF_HUB_OFFLINE``) is set to 1."""
    return not any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes")
        for v in _OFFLINE_VARS
    )


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a checkpoint file safely (no arbitrary code is ever unpickled).

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(..., weights_only=True)``. A checkpoint that wraps its weights
    (``{"state_dict": ...}`` or ``{"model": ...}``) is unwrapped.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    dict of str to Tensor
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file {str(path)!r} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ...
        raise WeightsNotFoundError(
            f"could not read {str(path)!r} as a weights-only checkpoint ({exc}). "
            "sktransfer never unpickles arbitrary code; save the weights with "
            "torch.save(model.state_dict(), path) or safetensors."
        ) from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


class Attempts:
    """What a loader tried, to build one helpful error when nothing worked."""

    def __init__(self, name: str):
        self.name = name
        self.lines: list[str] = []

    def add(self, where: str, outcome: str) -> None:
        self.lines.append(f"  {len(self.lines) + 1}. {where}: {outcome}")

    def fail(self, hint: str) -> WeightsNotFoundError:
        tried = "\n".join(self.lines) or "  (nothing)"
        return WeightsNotFoundError(
            f"No weights found for backbone {self.name!r}. Tried, in order:\n"
            f"{tried}\n{hint}"
        )

    def download_or_fail(self, download, hint: str):
        """Run ``download()`` if downloads are allowed, else raise the summary."""
        if not downloads_allowed():
            self.add("download", "skipped (SKTRANSFER_OFFLINE/HF_HUB_OFFLINE is set)")
            raise self.fail(hint)
        try:
            return download()
        except Exception as exc:  # network errors come in many types
            self.add("download", f"failed ({type(exc).__name__}: {exc})")
            raise self.fail(hint) from exc


@contextlib.contextmanager
def seeded_init():
    """Build a model's random initialisation from seed 0, leaving the global RNG.

    ``weights="random"`` is then the same network in every process, so its
    embeddings can share a cache key (:data:`RANDOM_ID`).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def is_random(weights: Any) -> bool:
    """True when the user asked for randomly initialised weights."""
    return isinstance(weights, str) and weights.lower() in ("random", "none")


def weights_path(weights: Any) -> str | None:
    """The explicit weights path the user passed, if ``weights`` is one."""
    if isinstance(weights, os.PathLike):
        return os.fspath(weights)
    if isinstance(weights, str) and (os.path.sep in weights or os.path.exists(weights)):
        return weights
    return None


def file_identity(path: str) -> str:
    """``path:size:mtime``: changes whenever the file does."""
    st = os.stat(path)
    return f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}"
