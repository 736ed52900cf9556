"""LP-FT: start fine-tuning where the linear probe ends, never end worse than it.

Kumar et al. (ICLR 2022, "Fine-Tuning can Distort Pretrained Features and
Underperform Out-of-Distribution") show that a randomly initialised head sends
large, noisy gradients into the backbone in the first steps and distorts the
features the probe relies on; fitting the head as a linear probe on the frozen
features first (LP), then fine-tuning (FT), avoids it. Here:

1. before the first epoch of a fresh ``fit``, a linear model (logistic
   regression for classes, ridge for targets, regularisation chosen by
   cross-validation; or the user's) is fitted on the frozen, cached features of
   the *training* part of the split, and its weights become the head's
   (binary logistic regression: rows ``-w/2`` and ``+w/2``, whose softmax is
   the probe's sigmoid);
2. with a validation split, that start is scored as epoch 0
   (``start_scores_``), and the weights of the best epoch, epoch 0 included, are
   restored at the end (``best_epoch_``): the estimator never returns a model
   worse on validation than its own probe.

With ``head_init="auto"`` (the default) the probe is only epoch 0's
*candidate*: it is fitted and scored as above, then the head's random
initialisation is put back and training starts from it; the best epoch,
epoch 0 (the probe) included, is still kept. On a 26-way WordNet task the
probe's start cost 3.8 points against a random one, cross-validated on
training data only (``benchmarks/bench_finetune_defaults.py --cv``).

Epoch 0 is kept out of skorch's ``history_`` on purpose: skorch and its callbacks
(``Freezer``/``Unfreezer``, ``LRScheduler``, early stopping) number epochs by
the history's length, and a row for it would shift every one of them.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import GridSearchCV
from skorch.callbacks import Callback
from torch import nn
from torch.utils.data import Subset

from sktransfer.finetune._data import SampleDataset, _training_precision, head_extractor

__all__ = [
    "ProbeStart",
    "class_name_weights",
    "default_probe",
    "head_layer",
    "probe_weights",
]


def head_layer(module: nn.Module) -> nn.Module:
    """The head of a fine-tuner's module: ``module.head``, or the last layer of
    the ``strategy="head"`` ``Sequential``."""
    head = getattr(module, "head", None)
    if head is None and isinstance(module, nn.Sequential):
        head = module[-1]
    return head


def _split_parts(dataset):
    if isinstance(dataset, Subset):
        return dataset.dataset, np.asarray(dataset.indices)
    return dataset, np.arange(len(dataset))


def frozen_features(net, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Frozen-backbone features and targets of ``dataset`` (a split of ``fit``).

    Samples of the fine-tuner's own dataset go through the cached extractor (so
    every fold of a grid search embeds each sample once); ``strategy="head"``
    datasets already hold the features; any other dataset is run through the
    module's (still pretrained) backbone.
    """
    base, idx = _split_parts(dataset)
    y = getattr(base, "y", None)
    if isinstance(base, SampleDataset) and y is not None:
        values = base.samples.values
        X = values[idx] if isinstance(values, np.ndarray) else [values[i] for i in idx]
        # built per fit (not kept): the backbone may have changed since the last
        return head_extractor(net).transform(X), np.asarray(y)[idx]
    if net.strategy == "head" and isinstance(getattr(base, "X", None), np.ndarray):
        return base.X[idx], np.asarray(y)[idx]
    feats, ys = [], []
    device = net._resolved_device()
    backbone = net._plain_module().backbone
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad(), net._autocast():
        for Xi, yi in net.get_iterator(dataset, training=False):
            if isinstance(Xi, dict):
                out = backbone(**{k: v.to(device) for k, v in Xi.items()})
            else:
                out = backbone(Xi.to(device))
            feats.append(out.float().cpu().numpy())
            ys.append(np.asarray(yi))
    backbone.train(was_training)
    return np.concatenate(feats), np.concatenate(ys)


CS = np.logspace(-3, 2, 6)  # the probe's inverse regularisation, chosen by CV
ALPHAS = np.logspace(-3, 3, 7)  # the ridge probe's, chosen by leave-one-out


def default_probe(classifier: bool, y, class_weight=None):
    """The linear probe ``head_init="probe"`` fits on the frozen features.

    Logistic regression with ``C`` chosen by 3-fold cross-validation (log loss)
    among ``CS`` (a plain ``C=1`` when a class has fewer than 3 samples), or ridge
    with ``alpha`` chosen by leave-one-out among ``ALPHAS``. Fitted on the raw
    features: the head then has the probe's own scale (standardising first
    would divide the weights by each feature's spread and make them large,
    which makes every backbone step move the logits much more).
    """
    if not classifier:
        return RidgeCV(alphas=ALPHAS)
    counts = np.unique(y, return_counts=True)[1]
    if counts.min() < 3:
        return LogisticRegression(max_iter=1000, class_weight=class_weight)
    # a grid search rather than LogisticRegressionCV, whose parameters and
    # fitted attributes scikit-learn 1.8-1.10 are changing
    return GridSearchCV(
        LogisticRegression(max_iter=1000, class_weight=class_weight),
        {"C": CS},
        cv=3,
        scoring="neg_log_loss",
    )


def probe_weights(net, features, y) -> tuple[np.ndarray, np.ndarray] | None:
    """Fit the linear probe; return the head's ``(weight, bias)``, or None when
    the probe cannot fill the head."""
    classifier = hasattr(net, "label_encoder_")
    target = y.ravel() if not classifier and y.ndim == 2 and y.shape[1] == 1 else y
    if isinstance(net.head_init, str):  # "probe" or "auto": the default probe
        class_weight = getattr(net, "class_weight", None)
        if isinstance(class_weight, dict):  # keyed by encoded labels here
            class_weight = {
                i: class_weight.get(c, 1.0) for i, c in enumerate(net.classes_)
            }
        probe = default_probe(classifier, target, class_weight)
    else:
        probe = clone(net.head_init)
    probe.fit(features, target)
    probe = getattr(probe, "best_estimator_", probe)
    coef = np.atleast_2d(np.asarray(probe.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(probe.intercept_, dtype=np.float64))
    n_out = net._n_outputs()
    if classifier:
        seen = np.asarray(probe.classes_)
        if len(seen) != n_out:
            return None  # a class missing from the training part
        if n_out == 2 and coef.shape[0] == 1:  # binary: sigmoid as a 2-way softmax
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    if coef.shape != (n_out, features.shape[1]):
        return None
    return coef, intercept


def class_name_weights(net, features) -> tuple[np.ndarray, np.ndarray]:
    """The zero-shot head (``head_init="class_names"``): each class's
    embedding as :class:`~sktransfer.ZeroShotClassifier` makes it (its name
    through the default templates, by the text backbone or, for a CLIP /
    SigLIP image tower, by the dual encoder's text tower), normalised, is its
    class's row; the rows are scaled so that on features of the training
    split's mean norm the logits are the cosine similarities over the
    zero-shot classifier's default temperature. The bias is zero."""
    from sktransfer.zeroshot._classifier import ZeroShotClassifier

    zero = ZeroShotClassifier(
        net.backbone,
        device=str(net._resolved_device()),
        precision=_training_precision(net),
    ).fit(None, net.classes_.tolist())
    emb = zero.class_embeddings_.astype(np.float64)
    norm = float(np.mean(np.linalg.norm(np.asarray(features, np.float64), axis=1)))
    scale = 1.0 / (zero.temperature_ * max(norm, 1e-12))
    return emb * scale, np.zeros(len(emb))


def _is(head_init, name: str) -> bool:
    return isinstance(head_init, str) and head_init == name


def _head_state(net) -> dict | None:
    """A copy of the head's parameters (its random initialisation)."""
    head = head_layer(net._plain_module())
    if not isinstance(head, nn.Module):
        return None
    return {k: v.detach().clone() for k, v in head.state_dict().items()}


def _load_head_state(net, state: dict) -> None:
    """Put ``state`` back into the head in place (the optimizer keeps its
    parameters)."""
    head = head_layer(net._plain_module())
    with torch.no_grad():
        for name, value in head.state_dict().items():
            value.copy_(state[name])


def _comparable(row: dict, monitor: str):
    score = row.get(monitor)
    if score is None or not np.isfinite(score):
        return None
    return float(score)


class ProbeStart(Callback):
    """LP-FT's linear-probe start, the epoch-0 score and the best epoch kept.

    The probe and epoch 0 belong to a fresh ``fit`` only: a ``warm_start`` or
    ``partial_fit`` continuation, or a run resumed from a checkpoint, starts
    from the weights it has. With validation, every ``fit`` ends on its best
    epoch (this callback is the one owner of that: early stopping does not
    reload weights itself, so the two never disagree).

    Parameters
    ----------
    monitor : str
        The validation score to keep the best epoch on (``"valid_acc"``...).
        A later epoch replaces the best only when it scores strictly higher,
        so on a tie the earlier one, closer to the pretrained network, is kept
        (the probe's start, when fine-tuning never beats it).
    """

    def __init__(self, monitor: str):
        self.monitor = monitor

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.pending_ = len(net.history) == 0
        self.best_ = None
        self.keeping_ = False
        net.best_epoch_ = None
        if self.pending_:
            net.start_scores_ = None
        resumed = net.__dict__.pop("_resumed_probe_", None)
        if resumed is not None:  # a run resumed from its checkpoint folder
            net.start_scores_, self.best_ = resumed
            if self.best_ is not None:
                net.best_epoch_ = self.best_[1]

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        self.keeping_ = dataset_valid is not None
        if not self.pending_:
            return
        self.pending_ = False
        fixed_probe = getattr(net, "_fixed_epoch_", None) == 0  # few samples
        auto = _is(net.head_init, "auto")
        # "auto": the probe is only a candidate (epoch 0), so it is fitted only
        # when something can choose it: a validation split or the few-samples CV
        wanted = not _is(net.head_init, "random") and (
            not auto or dataset_valid is not None or fixed_probe
        )
        random_head = _head_state(net) if auto else None
        is_start = wanted and self._init_head(net, dataset_train, warn=not auto)
        if fixed_probe and (is_start or not auto):  # the probe wins
            self.best_ = (0.0, 0, copy.deepcopy(net._plain_module().state_dict()))
        if dataset_valid is not None:
            scores = self._score(net, dataset_valid)
            net.start_scores_ = scores
            key = _comparable(scores, self.monitor)
            if key is not None and is_start:
                # epoch 0 is a model to keep only when it is the probe (or the
                # class names' head); a random head is scored, never kept
                self.best_ = (key, 0, copy.deepcopy(net._plain_module().state_dict()))
                net.best_epoch_ = 0
        if random_head is not None and is_start:  # "auto": train from random
            _load_head_state(net, random_head)

    def on_epoch_end(self, net, **kwargs):
        if not self.keeping_:
            return
        row = net.history[-1]
        key = _comparable(row, self.monitor)
        if key is not None and (self.best_ is None or key > self.best_[0]):
            state = copy.deepcopy(net._plain_module().state_dict())
            self.best_ = (key, row["epoch"], state)
            net.best_epoch_ = row["epoch"]

    def on_train_end(self, net, **kwargs):
        if self.best_ is not None:
            net._plain_module().load_state_dict(self.best_[2])
            self.best_ = None  # free the copy

    def _init_head(self, net, dataset, warn: bool = True) -> bool:
        """Fill the head with the probe's (or the class names') weights;
        return whether it was filled."""
        head = head_layer(net._plain_module())
        why = None
        if not isinstance(head, nn.Linear):
            why = f"the head is a {type(head).__name__}, not an nn.Linear"
        else:
            features, y = frozen_features(net, dataset)
            labeled = net._labeled_rows(torch.as_tensor(np.asarray(y)))
            if labeled is not None:  # adaptation: the probe learns from source rows
                keep = labeled.numpy()
                features, y = features[keep], np.asarray(y)[keep]
            if _is(net.head_init, "class_names"):
                weights = class_name_weights(net, features)
            else:
                weights = probe_weights(net, features, y)
            if weights is None:
                why = "the probe's output does not match the head (a class missing?)"
        if why is not None:
            if warn:
                warnings.warn(
                    f"head_init={net.head_init!r} left the head randomly initialised: "
                    f"{why}. Pass head_init='random' to silence this.",
                    UserWarning,
                    stacklevel=2,
                )
            return False
        with torch.no_grad():
            head.weight.copy_(torch.as_tensor(weights[0], dtype=head.weight.dtype))
            head.bias.copy_(torch.as_tensor(weights[1], dtype=head.bias.dtype))
        return True

    def _score(self, net, dataset) -> dict:
        """Validation loss and score of the current weights, on the predictions
        of the whole validation set (gathered from every process under an
        accelerator, so every rank decides alike)."""
        base, idx = _split_parts(dataset)
        if getattr(base, "y", None) is None:
            return {}
        y = np.asarray(base.y)[idx]
        device = net._resolved_device()
        y_pred = net.forward(dataset, training=False, device=device)
        with torch.no_grad():
            loss = net.get_loss(y_pred, torch.as_tensor(y).to(device), training=False)
        scores = {"valid_loss": float(loss)}
        scoring = dict(net.callbacks_).get(self.monitor)
        if scoring is not None:
            scores[self.monitor] = scoring.scoring(net, dataset, y)
        return scores
