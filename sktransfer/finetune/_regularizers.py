"""L2-SP: a penalty toward the pretrained weights instead of toward zero.

Li, Grandvalet, Davoine, "Explicit Inductive Bias for Transfer Learning with
Convolutional Networks", ICML 2018. The fine-tuners add
``l2sp * sum ||w - w0||^2`` over the backbone's trainable parameters to the
training loss, where ``w0`` are the pretrained weights (the loaded backbone,
shared and never modified, is the anchor: nothing is copied). The head keeps its
ordinary weight decay.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["l2sp_penalty"]


def l2sp_penalty(backbone: nn.Module, pretrained: nn.Module) -> torch.Tensor:
    """``sum ||w - w0||^2`` over ``backbone``'s trainable parameters.

    Parameters
    ----------
    backbone : nn.Module
        The network being fine-tuned (a copy of ``pretrained``).
    pretrained : nn.Module
        The pretrained network, on the same device; its parameter names match.

    Returns
    -------
    Tensor (scalar)

    Examples
    --------
    >>> import copy, torch
    >>> net = torch.nn.Linear(2, 1)
    >>> tuned = copy.deepcopy(net)
    >>> float(l2sp_penalty(tuned, net))
    0.0
    >>> with torch.no_grad():
    ...     _ = tuned.bias.add_(2.0)
    >>> round(float(l2sp_penalty(tuned, net)), 4)  # (b + 2) - b rounds in float32
    4.0
    """
    anchors = dict(pretrained.named_parameters())
    terms = [
        (p - anchors[name].detach()).pow(2).sum()
        for name, p in backbone.named_parameters()
        if p.requires_grad
    ]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()
