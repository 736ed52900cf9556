"""The torch side of fine-tuning: backbone + new head, and augmentation."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BatchAugment", "TransferModule"]


class BatchAugment(nn.Module):
    """Per-sample random resized crop and horizontal flip, in train mode only.

    It runs on the uint8 batch on the device, before normalisation, and is the
    identity in eval mode (validation and prediction are never augmented).

    Parameters
    ----------
    scale : (float, float)
        Range of the crop's area fraction.
    flip : bool
        Random horizontal flips.
    """

    def __init__(self, scale=(0.6, 1.0), flip: bool = True):
        super().__init__()
        self.scale = tuple(scale)
        self.flip = flip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        from torchvision.transforms.v2 import functional as F

        n, _, h, w = x.shape
        out = []
        for i in range(n):
            area = torch.empty(1).uniform_(*self.scale).item()
            side_h = max(1, round(h * area**0.5))
            side_w = max(1, round(w * area**0.5))
            top = int(torch.randint(0, h - side_h + 1, (1,)))
            left = int(torch.randint(0, w - side_w + 1, (1,)))
            img = F.resized_crop(
                x[i], top, left, side_h, side_w, [h, w], antialias=True
            )
            if self.flip and torch.rand(1).item() < 0.5:
                img = img.flip(-1)
            out.append(img)
        return torch.stack(out)


def _contiguous_state(module, state_dict, prefix, local_metadata) -> None:
    """A convnet's channels_last weights are not ``is_contiguous()`` tensors,
    and safetensors (skorch's ``save_params(use_safetensors=True)``) refuses
    those: the state dict holds contiguous copies of them (only of them)."""
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor) and not value.is_contiguous():
            state_dict[key] = value.contiguous()


class TransferModule(nn.Module):
    """``features -> dropout -> linear head``, with an optional input augmentation.

    Parameters
    ----------
    features : nn.Module
        A feature module (``ImageFeatureModel`` / ``TextFeatureModel``) wrapping a
        private copy of the backbone.
    n_features : int
        Width of ``features``' output.
    n_outputs : int
        Classes (logits) or regression targets.
    dropout : float
        Dropout before the head.
    augment : nn.Module or None
        Applied to image batches in train mode.
    domain_head : bool
        Add DANN's domain classifier (``adaptation="dann"``) as ``domain``.

    Attributes
    ----------
    last_features : Tensor or None
        The features of the last training batch (read by the adaptation
        losses; ``None`` in eval mode).
    """

    def __init__(
        self,
        features,
        n_features,
        n_outputs,
        dropout=0.0,
        augment=None,
        domain_head=False,
    ):
        super().__init__()
        self.augment = augment
        self.backbone = features
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(n_features, n_outputs)
        if domain_head:
            from sktransfer.finetune._adaptation import DomainClassifier

            self.domain = DomainClassifier(n_features)
        self.last_features = None
        self.register_state_dict_post_hook(_contiguous_state)

    def forward(self, X=None, **kwargs):
        if X is None:  # text: input_ids, attention_mask
            feats = self.backbone(**kwargs)
        else:
            if self.augment is not None:
                X = self.augment(X)
            feats = self.backbone(X)
        feats = feats.float()
        self.last_features = feats if self.training else None
        return self.head(self.dropout(feats))

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:  # frozen normalisation layers keep their running statistics
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(
                    p.requires_grad for p in m.parameters(recurse=False)
                ):
                    m.eval()
        return self
