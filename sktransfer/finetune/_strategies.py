"""Fine-tuning strategies as freezing: which backbone parameters train, and when.

- ``"head"``: the backbone never trains (the estimator embeds once instead).
- ``"last_n"``: the last ``n_blocks`` blocks, and what follows them, train.
- ``"full"``: everything trains.
- ``"gradual"``: everything starts frozen; skorch ``Unfreezer`` callbacks
  unfreeze one more block at the start of each epoch, last block first. They only
  ever unfreeze their own block, so a user's ``Freezer`` is never undone (and as
  user callbacks run after these, a ``Freezer`` at the same epoch wins).
"""

from __future__ import annotations

from skorch.callbacks import Unfreezer
from torch import nn

from sktransfer.backbones._features import block_names

__all__ = [
    "STRATEGIES",
    "apply_strategy",
    "gradual_unfreezers",
    "trainable_prefixes",
]

STRATEGIES = ("head", "last_n", "full", "gradual")
# where the backbone's own parameters live inside TransferModule
INNER = "backbone.sktransfer_inner"


def trainable_prefixes(model: nn.Module, n_blocks: int) -> list[str]:
    """Module names to unfreeze for the last ``n_blocks`` blocks.

    Everything after the last block (a final conv, norm or pooler) is included, as
    it only makes sense to train it with the block it follows.

    Examples
    --------
    >>> import torchvision
    >>> trainable_prefixes(torchvision.models.resnet18(), 1)
    ['layer4', 'avgpool', 'fc']
    """
    blocks = block_names(model)
    if n_blocks <= 0:
        return []
    chosen = blocks[-n_blocks:]
    last = blocks[-1]
    parent = last.rsplit(".", 1)[0] if "." in last else ""
    after = []
    seen_parent = False
    for name, _ in model.named_children():
        if parent and (parent == name or parent.startswith(name + ".")):
            seen_parent = True
            continue
        if not parent and name in blocks:
            seen_parent = True
            continue
        if seen_parent:
            after.append(name)
    return chosen + after


def _set_trainable(inner: nn.Module, prefixes: list[str] | None) -> None:
    for name, p in inner.named_parameters():
        p.requires_grad = prefixes is None or any(
            name == pre or name.startswith(pre + ".") for pre in prefixes
        )


def apply_strategy(module: nn.Module, strategy: str, n_blocks: int) -> None:
    """Freeze ``module``'s backbone as ``strategy`` starts (at initialisation)."""
    inner = module.backbone.sktransfer_inner
    if strategy == "full":
        _set_trainable(inner, None)
    elif strategy == "last_n":
        _set_trainable(inner, trainable_prefixes(inner, n_blocks))
    else:  # gradual: the callbacks unfreeze block by block
        _set_trainable(inner, [])
    module.train(module.training)  # frozen BatchNorms go to eval mode


def gradual_unfreezers(model: nn.Module) -> list[tuple[str, Unfreezer]]:
    """One skorch ``Unfreezer`` per block: epoch k unfreezes the k-th last block.

    Parameters
    ----------
    model : nn.Module
        The backbone network (not the feature module).

    Returns
    -------
    list of (name, Unfreezer)
    """
    out, before = [], set()
    for k in range(1, len(block_names(model)) + 1):
        prefixes = [p for p in trainable_prefixes(model, k) if p not in before]
        before.update(prefixes)
        patterns = [f"{INNER}.{p}.*" for p in prefixes]
        out.append((f"unfreeze_epoch_{k}", Unfreezer(patterns, at=k)))
    return out
