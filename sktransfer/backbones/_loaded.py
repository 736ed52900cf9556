"""The result of loading a backbone: a module plus everything needed to feed it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from sktransfer.backbones._spec import BackboneSpec

__all__ = [
    "RANDOM_ID",
    "LoadedBackbone",
    "file_identity",
    "is_random",
    "seeded_init",
    "weights_path",
]


@dataclass
class LoadedBackbone:
    """A loaded backbone, shared (read-only) by every estimator in the process.

    Attributes
    ----------
    spec : BackboneSpec
        The spec, with the preprocessing that the weights actually use.
    model : nn.Module
        The network in eval mode with gradients off. Never modify it in place:
        fine-tuning works on a deep copy.
    tokenizer : object or None
        A Hugging Face tokenizer, for text backbones.
    weights_id : str
        Identity of the weights that were loaded (file path, size and mtime; a
        package and version; or ``"random"``). Part of the embedding cache key.
    """

    spec: BackboneSpec
    model: nn.Module
    tokenizer: Any = None
    weights_id: str = "random"


RANDOM_ID = "random:seed=0"


def seeded_init():
    """Build a model's random initialisation from seed 0, leaving the global RNG.

    ``weights="random"`` is then the same network in every process, so its
    embeddings can share a cache key (:data:`RANDOM_ID`).
    """
    import contextlib

    import torch

    @contextlib.contextmanager
    def ctx():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            yield

    return ctx()


def is_random(weights: Any) -> bool:
    """True when the user asked for randomly initialised weights."""
    return isinstance(weights, str) and weights.lower() in ("random", "none")


def weights_path(weights: Any) -> str | None:
    """The explicit weights path the user passed, if ``weights`` is one."""
    import os

    if isinstance(weights, os.PathLike):
        return os.fspath(weights)
    if isinstance(weights, str) and (os.path.sep in weights or os.path.exists(weights)):
        return weights
    return None


def file_identity(path: str) -> str:
    """``path:size:mtime``: changes whenever the file does."""
    import os

    st = os.stat(path)
    return f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}"
