"""FineTunedRegressor: fine-tune a backbone with a new regression head."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from skorch import NeuralNetRegressor
from torch import nn

from sktransfer._compat import _check_y
from sktransfer._inputs import check_y_missing
from sktransfer.finetune._adaptation import parse_adaptation
from sktransfer.finetune._mixin import FineTuneMixin
from sktransfer.finetune._module import TransferModule

__all__ = ["FineTunedRegressor", "target_scaling"]


def target_scaling(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread of each column of a finite float64 ``y``, computed on
    ``y / max|y|`` so that squares never overflow (``y`` of 1e300 included); a
    constant column gets spread 1.

    Examples
    --------
    >>> mean, scale = target_scaling(np.array([[1e300], [3e300]]))
    >>> (mean / 1e300).round(6).tolist(), (scale / 1e300).round(6).tolist()
    ([2.0], [1.0])
    """
    peak = np.abs(y).max(axis=0)
    peak = np.where(peak > 0, peak, 1.0)
    unit = y / peak
    mean = unit.mean(axis=0) * peak
    scale = unit.std(axis=0) * peak
    scale = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)
    return mean, scale


class FineTunedRegressor(FineTuneMixin, NeuralNetRegressor):
    """Fine-tune a pretrained backbone with a new regression head.

    Same parameters as :class:`FineTunedClassifier`, without the classification
    ones (``label_smoothing``, ``class_weight``); ``scoring`` defaults to ``"r2"``
    and the default ``criterion`` is ``torch.nn.MSELoss``. ``y`` may be 1-D or 2-D.

    The targets are standardised in float64 before training (per target: mean
    and spread, computed without overflow for any finite ``y``, 1e39 or 1e300
    included) and predictions are returned in ``y``'s units, so the float32
    network never sees a value it cannot hold. ``valid_loss`` is in standardised
    units; validation scores (``r2``...) in the original ones. The scaling is
    kept as buffers of the module, so ``save_params`` / ``load_params`` carry it.

    ``adaptation=`` takes ``"dann"``, ``"coral"`` or ``"dann+coral"`` (entropy
    minimisation needs classes). Unlabelled target rows come in the same
    ``fit`` with every target ``NaN`` (skada's convention for regression: a
    regression target has no spare value like the classifiers' ``-1``); a
    ``NaN`` is an error otherwise. The scaling, the probe start, the
    validation loss and scores read the labelled rows only; each epoch
    draws ``adaptation_ratio`` target rows per source row, as the
    classifier's.

    Attributes
    ----------
    target_mean_, target_scale_ : ndarray of shape (n_targets,)
        The standardisation of ``y`` learnt by the first ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer import FineTunedRegressor
    >>> X = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), np.uint8)
    >>> reg = FineTunedRegressor("test-cnn", strategy="full", max_epochs=1,
    ...                          valid_size=None, random_state=0).fit(X, np.arange(8.0))
    >>> reg.predict(X).shape
    (8,)
    """

    _stratified = False

    def __init__(
        self,
        backbone="efficientnet_lite0",
        strategy="last_n",
        *,
        n_blocks=2,
        weights=None,
        pooling="auto",
        lr=1e-3,
        backbone_lr=None,
        max_epochs=10,
        batch_size=32,
        weight_decay=0.01,
        head_init="auto",
        l2sp=0.0,
        dropout=0.1,
        augment="auto",
        valid_size=0.1,
        refit=False,
        scoring="r2",
        patience=None,
        checkpoint_dir=None,
        device="auto",
        precision="auto",
        max_length=None,
        random_state=None,
        callbacks=None,
        verbose=0,
        optimizer=torch.optim.AdamW,
        criterion=nn.MSELoss,
        trust_remote_code=False,
        adaptation=None,
        adaptation_weight=1.0,
        adaptation_ratio=0.25,
        **kwargs,
    ):
        super().__init__(
            module=kwargs.pop("module", TransferModule),
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=kwargs.pop("train_split", None),
            callbacks=callbacks,
            verbose=verbose,
            device=device,
            **kwargs,
        )
        self.backbone = backbone
        self.strategy = strategy
        self.n_blocks = n_blocks
        self.weights = weights
        self.pooling = pooling
        self.backbone_lr = backbone_lr
        self.weight_decay = weight_decay
        self.head_init = head_init
        self.l2sp = l2sp
        self.dropout = dropout
        self.augment = augment
        self.valid_size = valid_size
        self.refit = refit
        self.scoring = scoring
        self.patience = patience
        self.checkpoint_dir = checkpoint_dir
        self.precision = precision
        self.max_length = max_length
        self.random_state = random_state
        self.trust_remote_code = trust_remote_code
        self.adaptation = adaptation
        self.adaptation_weight = adaptation_weight
        self.adaptation_ratio = adaptation_ratio

    def _n_outputs(self):
        return self.n_targets_

    def _targets_before_fit(self):
        """``initialize()`` without ``fit`` (to ``load_params`` into it): one
        target, unless ``module__n_outputs=`` says how many."""
        if hasattr(self, "n_targets_"):
            return
        self.n_targets_ = int(self.get_params_for("module").get("n_outputs", 1))
        self._squeeze_y_ = self.n_targets_ == 1
        # load_params replaces these with the saved model's scaling
        self.target_mean_ = np.zeros(self.n_targets_)
        self.target_scale_ = np.ones(self.n_targets_)

    def _criterion_defaults(self) -> dict:
        return {}

    def _labeled_rows(self, y_true):
        if not parse_adaptation(self.adaptation):
            return None
        return ~torch.isnan(y_true.reshape(len(y_true), -1)).any(dim=1)

    def _split_unlabeled(self, y):
        """``(y, target)``: with ``adaptation=``, rows whose targets are all NaN
        are unlabelled target rows (skada's convention for regression); other
        missing values stay an error."""
        if not parse_adaptation(self.adaptation):
            return check_y_missing(y), None
        y = np.asarray(y)
        if y.dtype.kind not in "iuf":
            return check_y_missing(y), None
        target = np.isnan(y.reshape(len(y), -1).astype(np.float64)).all(axis=1)
        check_y_missing(y[~target])
        return y, target

    def _prepare_y(self, y, classes, keep: bool):  # classes: classifiers only
        y, target = self._split_unlabeled(y)
        if target is not None and not target.any():
            warnings.warn(
                f"adaptation={self.adaptation!r} but y has no unlabelled target "
                "row (NaN): there is nothing to adapt to, so this fit is "
                "source-only.",
                UserWarning,
                stacklevel=3,
            )
        labeled = slice(None) if target is None else ~target
        y = np.asarray(y, dtype=np.float64)
        _check_y(y[labeled], multi_output=True, y_numeric=True)
        y2 = y.reshape(len(y), -1)
        if keep and y2.shape[1] != self.n_targets_:
            raise ValueError(
                f"y has {y2.shape[1]} targets, but this regressor was fitted on "
                f"{self.n_targets_}."
            )
        if not keep or not hasattr(self, "target_scale_"):
            self._squeeze_y_ = y.ndim == 1
            self.target_mean_, self.target_scale_ = target_scaling(y2[labeled])
        self.n_targets_ = y2.shape[1]
        return ((y2 - self.target_mean_) / self.target_scale_).astype(np.float32)

    def _encode_y(self, y) -> np.ndarray:
        """Targets as the network sees them (a validation set's, say)."""
        y, target = self._split_unlabeled(y)
        labeled = slice(None) if target is None else ~target
        _check_y(np.asarray(y)[labeled], multi_output=True, y_numeric=True)
        y2 = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        return ((y2 - self.target_mean_) / self.target_scale_).astype(np.float32)

    def _original_y(self, y) -> np.ndarray:
        """Standardised targets (as the network sees them) in ``y``'s units."""
        mean, scale = self._module_scaling()
        out = np.asarray(y, dtype=np.float64).reshape(len(y), -1) * scale + mean
        return out.ravel() if getattr(self, "_squeeze_y_", False) else out

    def _module_scaling(self) -> tuple[np.ndarray, np.ndarray]:
        """The scaling the module was built with (or loaded with)."""
        module = self._plain_module()
        return (
            module.target_mean.detach().cpu().double().numpy(),
            module.target_scale.detach().cpu().double().numpy(),
        )

    def _attach_target_scaling(self, module: nn.Module) -> None:
        mean = torch.as_tensor(self.target_mean_, dtype=torch.float64)
        scale = torch.as_tensor(self.target_scale_, dtype=torch.float64)
        module.register_buffer("target_mean", mean)
        module.register_buffer("target_scale", scale)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y may be (n_samples, n_targets)
        return tags

    @property
    def predict_proba(self):  # a regressor has no probabilities
        raise AttributeError("FineTunedRegressor has no predict_proba; use predict.")

    def predict(self, X):
        """Predicted targets: shape (n_samples,) or (n_samples, n_targets)."""
        self._check_fitted()
        with torch.random.fork_rng(devices=[]):
            parts = [
                yp.detach().float().cpu().numpy()
                for yp in self.forward_iter(X, training=False)
            ]
        out = np.concatenate(parts, 0).astype(np.float64)  # sklearn's convention
        return self._original_y(out)
