"""The inputs of :func:`sktransfer.rank_backbones`, checked before any embedding.

Each mistake is one error that says what to pass instead: candidates that are
not a list, an empty list, missing targets, one class, fewer samples of a class
than folds, a classification score on continuous targets, and a backbone of the
wrong modality for ``X``.
"""

from __future__ import annotations

import os

import numpy as np
from sklearn.utils.multiclass import type_of_target
from torch import nn

from sktransfer._inputs import check_y_missing, is_missing
from sktransfer.backbones._registry import get_backbone_spec
from sktransfer.backbones._spec import BackboneSpec

__all__ = [
    "CLASSIFICATION_SCORERS",
    "check_candidates",
    "check_modality",
    "check_targets",
    "x_modality",
]

# scikit-learn's scorer names that need class labels
CLASSIFICATION_SCORERS = (
    "accuracy",
    "balanced_accuracy",
    "top_k_accuracy",
    "average_precision",
    "neg_brier_score",
    "neg_log_loss",
    "matthews_corrcoef",
    "f1",
    "precision",
    "recall",
    "jaccard",
    "roc_auc",
)


def check_candidates(candidates) -> list:
    """``candidates`` as a non-empty list (one backbone alone is an error that
    shows the list to write)."""
    one = (str, os.PathLike, nn.Module, BackboneSpec)
    if isinstance(candidates, one) or not hasattr(candidates, "__iter__"):
        raise TypeError(
            f"candidates must be a list of backbones; got {candidates!r:.80}. Wrap "
            f"one in a list: candidates=[{candidates!r:.60}]."
        )
    candidates = list(candidates)
    if not candidates:
        raise ValueError(
            "candidates is empty: pass at least one backbone, e.g. "
            "['efficientnet_lite0'] (see sktransfer.list_backbones())."
        )
    return candidates


def check_targets(y, cv, scoring) -> tuple[np.ndarray, bool]:
    """``y`` as an array and whether it is a regression target; the folds and
    the scorer must suit it."""
    y = check_y_missing(y)
    regression = type_of_target(y) in ("continuous", "continuous-multioutput")
    name = scoring if isinstance(scoring, str) else ""
    if regression and name.startswith(CLASSIFICATION_SCORERS):
        raise ValueError(
            f"y is continuous (a regression target), but scoring={scoring!r} "
            "scores classes. Pass a regression scorer (scoring='r2', the "
            "default, or 'neg_mean_absolute_error'), or class labels as y."
        )
    if not isinstance(cv, int) or cv < 2:
        raise ValueError(f"cv must be an int >= 2 (folds); got {cv!r}.")
    if len(y) < cv:
        raise ValueError(f"cv={cv} folds need at least {cv} samples; y has {len(y)}.")
    if not regression:
        labels, counts = np.unique(y, return_counts=True)
        labels = labels.tolist()  # plain values in messages
        if len(labels) < 2:
            raise ValueError(
                f"y has one class ({labels[0]!r}); ranking backbones for a "
                "classifier needs at least two. Check the labels (e.g. after "
                "filtering)."
            )
        if counts.min() < cv:
            rare = labels[int(counts.argmin())]
            fix = (
                f"Pass cv={int(counts.min())} or fewer"
                if counts.min() >= 2
                else "Add samples of that class, or drop it"
            )
            raise ValueError(
                f"cv={cv} stratified folds need at least {cv} samples of every "
                f"class; class {rare!r} has {int(counts.min())}. {fix}."
            )
    return y, regression


def x_modality(X) -> str:
    """``"text"`` when ``X`` holds strings, else ``"image"`` (or tabular: not
    told apart here)."""
    values = X.tolist() if hasattr(X, "tolist") and getattr(X, "ndim", 1) == 1 else X
    if isinstance(values, np.ndarray):
        return "image"  # a numeric batch
    try:
        first = next(v for v in values if not is_missing(v))
    except (StopIteration, TypeError):
        return "image"
    return "text" if isinstance(first, str) and not _is_path(first) else "image"


def _is_path(value: str) -> bool:
    ext = os.path.splitext(value)[1].lower()
    images = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
    return ext in images or os.path.isfile(value)


def check_modality(candidate, X) -> None:
    """A text backbone given images (or the reverse) is an error naming both."""
    backbone = candidate[0] if isinstance(candidate, tuple) else candidate
    backbone = getattr(backbone, "backbone", backbone)  # a configured extractor
    try:
        modality = get_backbone_spec(backbone).modality
    except Exception:  # an unknown name: the extractor's own error says more
        return
    given = x_modality(X)
    if modality in ("image", "text") and modality != given:
        raise ValueError(
            f"candidate {backbone!r:.60} is {'an' if modality == 'image' else 'a'} "
            f"{modality} backbone, but X holds "
            f"{given}s. Rank {given} backbones on this X (e.g. "
            f"{'efficientnet_lite0' if given == 'image' else 'all-MiniLM-L6-v2'}), "
            f"or pass {modality}s."
        )
