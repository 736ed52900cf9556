"""Adapting while fine-tuning: DANN, Deep CORAL and entropy minimisation.

Unlabelled target rows come in the same ``fit`` with the label ``-1``
(scikit-learn's semi-supervised convention; encoded ``-100``, the index
``CrossEntropyLoss`` ignores). Each training epoch takes every source row and
``adaptation_ratio`` target rows per source row, drawn afresh
(:class:`~sktransfer.finetune._data.TargetShareBatchSampler`): every batch
holds the same share of each domain, and text batches are grouped by length
within each domain; besides the classification loss on the source
rows, ``adaptation=`` adds, times ``adaptation_weight``:

* ``"dann"`` -- a domain classifier on the features behind a gradient
  reversal layer (Ganin et al., 2016): the backbone learns features the
  domain classifier cannot tell apart. Its loss weighs the two domains
  equally (each half), whatever their share of the batch. Its strength ramps
  up as in the paper, ``2 / (1 + exp(-10 p)) - 1`` over training progress
  ``p``.
* ``"coral"`` -- Deep CORAL (Sun and Saenko, 2016): the distance between
  the source and target feature covariances of the batch.
* ``"entropy"`` -- the mean prediction entropy of the target rows (Grandvalet
  and Bengio, 2005): decision boundaries move away from target clusters.

Several combine with ``+`` (``"dann+entropy"``). Everything goes through
skorch's ``get_loss``; the domain classifier is a submodule of the
``TransferModule`` (so skorch's optimizer, ``save_params`` and
``optimizer__*`` see it).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "METHODS",
    "UNLABELED_INDEX",
    "DomainClassifier",
    "adaptation_loss",
    "coral_loss",
    "grad_reverse",
    "parse_adaptation",
]

METHODS = ("dann", "coral", "entropy")
UNLABELED_INDEX = -100  # CrossEntropyLoss's ignore_index


def parse_adaptation(value) -> tuple[str, ...]:
    """``"dann+entropy"`` -> ``("dann", "entropy")``; ``None`` -> ``()``."""
    if value is None:
        return ()
    if not isinstance(value, str):
        raise TypeError(f"adaptation must be None or a str; got {value!r}.")
    names = tuple(part.strip() for part in value.split("+"))
    bad = [n for n in names if n not in METHODS]
    if bad or len(set(names)) != len(names):
        raise ValueError(
            f"The 'adaptation' parameter must be None or one or more of "
            f"{list(METHODS)} joined by '+' (e.g. 'dann+entropy'). Got {value!r} "
            "instead."
        )
    return names


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward, gradient times ``-scale`` backward."""
    return _GradReverse.apply(x, scale)


class DomainClassifier(nn.Module):
    """DANN's domain head: features -> 1 logit ("target"), one hidden layer."""

    def __init__(self, n_features: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def forward(self, features, scale: float = 1.0):
        return self.net(grad_reverse(features, scale)).squeeze(-1)


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL: ``||C_s - C_t||_F^2 / (4 d^2)``."""
    d = source.shape[1]

    def cov(x):
        x = x - x.mean(0, keepdim=True)
        return x.T @ x / max(len(x) - 1, 1)

    return ((cov(source) - cov(target)) ** 2).sum() / (4 * d * d)


def dann_scale(net) -> float:
    """Ganin et al.'s ramp over training progress (epochs of ``max_epochs``)."""
    progress = min(max((len(net.history) - 0.5) / max(net.max_epochs, 1), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-10 * progress)) - 1.0


def adaptation_loss(net, y_pred: torch.Tensor, labeled: torch.Tensor) -> torch.Tensor:
    """The adaptation terms for one training batch (0 without target rows)."""
    names = parse_adaptation(net.adaptation)
    target = ~labeled
    zero = y_pred.sum() * 0.0
    if not names or not target.any():
        return zero
    module = net._plain_module()
    feats = getattr(module, "last_features", None)
    total = zero
    if "entropy" in names:
        p = torch.softmax(y_pred[target].float(), dim=1)
        total = total + -(p * torch.log(p.clamp_min(1e-12))).sum(1).mean()
    if feats is not None and labeled.any():
        if "dann" in names:
            logits = module.domain(feats, dann_scale(net))
            # both domains weigh alike, whatever their share of the batch
            # (adaptation_ratio draws fewer target rows than source rows)
            weight = torch.where(target, 0.5 / target.sum(), 0.5 / labeled.sum()).to(
                logits.dtype
            )
            total = total + nn.functional.binary_cross_entropy_with_logits(
                logits, target.to(logits.dtype), weight=weight, reduction="sum"
            )
        if "coral" in names and labeled.sum() > 1 and target.sum() > 1:
            total = total + coral_loss(feats[labeled], feats[target])
    return net.adaptation_weight * total
