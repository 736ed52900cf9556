"""Safe weight loading and the record of where weights were looked for.

Resolution order for every backbone: an explicit ``weights=`` path, then weights
shipped by an installed package, then the framework's local cache, then a
download. Each loader reports its attempts to a :class:`Attempts` so that, when all
fail, one :class:`~sktransfer.exceptions.WeightsNotFoundError` lists them all.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sktransfer.exceptions import InvalidWeightsError, WeightsNotFoundError

__all__ = [
    "RANDOM_ID",
    "Attempts",
    "check_weights",
    "downloads_allowed",
    "file_identity",
    "is_random",
    "load_state_dict",
    "load_weights",
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


# Task heads a pretrained checkpoint may carry and an encoder drops on purpose
HEAD_PREFIXES = ("pooler.", "cls.", "lm_head.", "classifier.", "qa_outputs.")


def _few(names: list[str], n: int = 8) -> str:
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def check_weights(
    expected: Mapping[str, torch.Tensor],
    state: Mapping[str, Any],
    source: str,
    allow_unexpected: Iterable[str] = (),
) -> None:
    """Check ``state`` against the tensors a network ``expected``.

    An :class:`~sktransfer.exceptions.InvalidWeightsError` lists every problem
    at once: tensors the network needs that ``state`` lacks, tensors it does
    not know (except names starting with ``allow_unexpected``: a task head an
    encoder drops), a non-floating tensor (int8, bool...) where the network
    computes in floating point (``load_state_dict`` would cast it silently), a
    wrong shape, and NaN or inf values. float64 into a float32 network is
    rounded, with a warning.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(2, 1)
    >>> check_weights(net.state_dict(), net.state_dict(), "mine.pt")
    >>> bad = {"weight": torch.full((1, 2), float("nan")), "bias": torch.zeros(1)}
    >>> try:
    ...     check_weights(net.state_dict(), bad, "bad.pt")
    ... except ValueError as exc:
    ...     print(str(exc).split(". Check")[0])
    The weights in bad.pt do not fit the network: NaN or inf in 1 tensor(s): weight
    """
    allow = tuple(allow_unexpected)
    problems = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(
        k for k in set(state) - set(expected) if not k.startswith(allow)
    )
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): {_few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s): {_few(unexpected)}")
    wrong, nonfinite, rounded = [], [], []
    for key in sorted(set(expected) & set(state)):
        value, want = state[key], expected[key]
        if not isinstance(value, torch.Tensor):
            wrong.append(f"{key} is a {type(value).__name__}, not a tensor")
        elif want.is_floating_point() and not value.is_floating_point():
            wrong.append(
                f"{key} is {value.dtype} (the network computes in {want.dtype})"
            )
        elif not want.is_floating_point() and value.is_floating_point():
            wrong.append(f"{key} is {value.dtype} (the network keeps {want.dtype})")
        elif tuple(value.shape) != tuple(want.shape):
            wrong.append(
                f"{key} has shape {tuple(value.shape)}, the network {tuple(want.shape)}"
            )
        elif value.is_floating_point():
            if not bool(torch.isfinite(value).all()):
                nonfinite.append(key)
            if value.dtype == torch.float64 and want.dtype != torch.float64:
                rounded.append(key)
    if wrong:
        problems.append(f"wrong dtype or shape: {_few(wrong, 5)}")
    if nonfinite:
        problems.append(f"NaN or inf in {len(nonfinite)} tensor(s): {_few(nonfinite)}")
    if problems:
        raise InvalidWeightsError(
            f"The weights in {source} do not fit the network: {'; '.join(problems)}. "
            "Check that the file belongs to this backbone and is not corrupted "
            "(or pass weights='random' for a random initialisation)."
        )
    if rounded:
        warnings.warn(
            f"{source}: {len(rounded)} float64 tensor(s) ({_few(rounded, 3)}) are "
            "rounded to the network's float32.",
            UserWarning,
            stacklevel=3,
        )


def load_weights(
    model: nn.Module,
    state: Mapping[str, Any],
    source: str,
    allow_unexpected: Iterable[str] = (),
) -> None:
    """:func:`check_weights`, then ``model.load_state_dict(state)`` (strict,
    but for the ``allow_unexpected`` names, which are dropped)."""
    allow = tuple(allow_unexpected)
    check_weights(model.state_dict(), state, source, allow)
    keep = model.state_dict().keys()
    model.load_state_dict({k: v for k, v in state.items() if k in keep})


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
