"""The training callbacks the fine-tuners add to skorch's defaults.

Validation scoring on the original labels, early stopping, checkpoints (with
resume), fp16 loss scaling and LP-FT's probe start / best epoch
(:class:`~sktransfer.finetune._probe_start.ProbeStart`). All of them are plain
skorch callbacks, so they compose with the user's ``callbacks=`` (which run
after these).
"""

from __future__ import annotations

import os
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.metrics import get_scorer
from skorch.callbacks import (
    Callback,
    Checkpoint,
    EarlyStopping,
    EpochScoring,
)

from sktransfer.finetune._probe_start import ProbeStart
from sktransfer.finetune._resume import LoadResume, SaveResume

__all__ = [
    "FiniteLoss",
    "GradScaling",
    "OriginalLabelScorer",
    "has_validation",
    "monitor_name",
    "training_callbacks",
]


class OriginalLabelScorer:
    """A scikit-learn scorer fed the original labels (skorch passes encoded ones).

    Parameters
    ----------
    scoring : str or callable
        A scorer name (``"f1_macro"``) or a ``scorer(estimator, X, y)``.
    """

    def __init__(self, scoring):
        self.scoring = scoring

    def __call__(self, net, X, y):
        y = np.asarray(y)
        if getattr(self.scoring, "label_free", False):
            return self._label_free(net, X, y)
        classifier = hasattr(net, "label_encoder_")
        unlabeled = y < 0 if classifier else np.isnan(y.reshape(len(y), -1)).any(axis=1)
        if unlabeled.any():
            # unlabelled target rows (adaptation=): scored on the source rows
            net, y = _SourceRows(net, ~unlabeled), y[~unlabeled]
        if classifier:
            y = net.classes_[y.astype(int)]
        elif hasattr(net, "_original_y"):  # the regressor's standardised targets
            y = net._original_y(y)
        scorer = get_scorer(self.scoring) if isinstance(self.scoring, str) else None
        return (scorer or self.scoring)(net, X, y)

    def _label_free(self, net, X, y):
        """A label-free scorer (``sktransfer.adapt``) on one epoch's validation
        predictions: the target rows (``-1``) are given as such, and the
        rows' frozen-backbone features place them for the domain classifier."""
        from sktransfer.finetune._probe_start import frozen_features

        if not hasattr(net, "label_encoder_"):
            raise ValueError(
                f"scoring={self.scoring!r} scores class predictions; a "
                "FineTunedRegressor's best epoch needs a regression scorer."
            )
        proba = net.predict_proba(X)  # all rows, in order (skorch's cache)
        classes = net.classes_
        labels = np.empty(len(y), dtype=object)
        target = y < 0
        labels[~target] = classes[y[~target].astype(int)]
        labels[target] = -1
        Z, _ = frozen_features(net, X)
        return self.scoring.score_predictions(proba, classes, labels, Z)


class _SourceRows:
    """The net seen through its predictions on the labelled rows only.

    skorch's ``EpochScoring`` replays the validation predictions it cached,
    all rows in order, whatever ``X`` it is given: so the rows are dropped
    from the predictions, not from ``X``.
    """

    def __init__(self, net, keep: np.ndarray):
        self.net, self.keep = net, keep
        if hasattr(net, "classes_"):
            self.classes_ = net.classes_

    def _original_y(self, y):
        return self.net._original_y(y)

    def __sklearn_tags__(self):
        return self.net.__sklearn_tags__()

    def predict(self, X):
        return self.net.predict(X)[self.keep]

    def predict_proba(self, X):
        return self.net.predict_proba(X)[self.keep]


class GradScaling(Callback):
    """fp16 loss scaling with ``torch.amp.GradScaler``, through skorch's hooks.

    The net scales the loss before ``backward`` (``train_step_single``); this
    callback unscales the gradients as soon as they are computed (so gradient
    clipping and other ``on_grad_computed`` callbacks see true values), drops them
    when they overflowed (the optimizer then skips those parameters, as
    ``GradScaler.step`` would), and updates the scale after every batch.
    """

    def on_grad_computed(self, net, named_parameters, **kwargs):
        scaler = net.grad_scaler_
        if scaler is None:
            return
        scaler.unscale_(net.optimizer_)
        params = [p for _, p in named_parameters]
        finite = all(
            bool(torch.isfinite(p.grad).all()) for p in params if p.grad is not None
        )
        if not finite:
            for p in params:
                p.grad = None

    def on_batch_end(self, net, training=False, **kwargs):
        if training and net.grad_scaler_ is not None:
            net.grad_scaler_.update()


class FiniteLoss(Callback):
    """Stop a fit whose training loss became NaN or inf, saying what to try.

    skorch would go on training a network whose weights are then NaN, and
    every prediction after it. The loss is read where skorch already reads it
    (it logs every batch's loss), so the check adds no device sync.
    """

    def on_batch_end(self, net, batch=None, training=False, loss=None, **kwargs):
        if not training or loss is None:
            return
        value = float(loss.item()) if hasattr(loss, "item") else float(loss)
        if np.isfinite(value):
            return
        epoch = len(net.history)
        lr = getattr(net, "lr", None)
        raise FloatingPointError(
            f"{type(net).__name__}: the training loss became {value} in epoch "
            f"{epoch}. Try a smaller lr (now {lr}), precision='fp32', gradient "
            "clipping (callbacks=[GradientNormClipping(1.0)] from "
            "skorch.callbacks), and check X and y for extreme values."
        )


def monitor_name(net) -> str:
    """The history key of the validation score: ``valid_<scoring>``, except
    accuracy, which keeps skorch's own name ``valid_acc`` (one column, and a
    skorch user's ``EarlyStopping(monitor="valid_acc")`` keeps working)."""
    if net.scoring == "accuracy":
        return "valid_acc"
    return f"valid_{net.scoring if isinstance(net.scoring, str) else 'score'}"


def has_validation(net) -> bool:
    """Whether ``valid_size`` holds out a validation split."""
    return isinstance(net.valid_size, Real) and net.valid_size > 0


def training_callbacks(net) -> list[tuple[str, Callback]]:
    """Validation scoring, early stopping and checkpointing for ``net``.

    Built by ``set_params`` too, before ``fit`` checks the parameters, so a bad
    value here leaves its callback out instead of raising.
    """
    monitor = monitor_name(net)
    extra: list[tuple[str, Callback]] = [
        ("grad_scaling", GradScaling()),
        ("finite_loss", FiniteLoss()),
    ]
    valid = has_validation(net)
    if valid:
        extra.append(
            (
                monitor,
                EpochScoring(
                    OriginalLabelScorer(net.scoring),
                    lower_is_better=False,  # scikit-learn scorers: greater is better
                    name=monitor,
                ),
            )
        )
        if isinstance(net.patience, Integral) and net.patience > 0:
            extra.append(
                (
                    "early_stopping",
                    EarlyStopping(
                        monitor=monitor,
                        patience=net.patience,
                        lower_is_better=False,
                        # the best epoch (0 included) is restored by ProbeStart
                        load_best=False,
                    ),
                )
            )
    if isinstance(net.checkpoint_dir, str | os.PathLike):
        # best epoch on validation loss, or every epoch without validation
        checkpoint = Checkpoint(
            dirname=net.checkpoint_path(),
            monitor="valid_loss_best" if valid else None,
        )
        extra.append(("checkpoint", checkpoint))
        if net.checkpoint_dir != "auto":  # a directory of the user's: resume
            extra.append(("resume", LoadResume()))
    # after a resumed run is loaded, and after early stopping
    extra.append(("probe_start", ProbeStart(monitor)))
    if isinstance(net.checkpoint_dir, str | os.PathLike):
        extra.append(("resume_save", SaveResume()))  # after the best epoch is known
    return extra
