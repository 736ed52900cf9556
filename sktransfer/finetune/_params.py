"""The fine-tuners' parameters: their constraints, checked once per ``fit``.

Messages use scikit-learn's wording ("The 'max_epochs' parameter of
FineTunedClassifier must be an int in the range [1, inf). Got 0 instead."); the
checks that need the data (a stratified split with too few samples per class)
name the parameter and the fix.
"""

from __future__ import annotations

import inspect
import os
from numbers import Integral, Real

import numpy as np
import torch
from skorch.callbacks import Callback
from torch import nn

from sktransfer._compat import (
    HasMethods,
    Interval,
    RealNotInt,
    StrOptions,
    validate_parameter_constraints,
)
from sktransfer.backbones._spec import BackboneSpec
from sktransfer.finetune._adaptation import parse_adaptation
from sktransfer.finetune._module import TransferModule
from sktransfer.finetune._strategies import STRATEGIES

__all__ = ["callbacks_ok", "check_params", "constraints", "n_valid"]


_COMMON = {
    "backbone": [str, os.PathLike, nn.Module, BackboneSpec],
    "strategy": [StrOptions(set(STRATEGIES))],
    "n_blocks": [Interval(Integral, 1, None, closed="left")],
    "weights": [None, str, os.PathLike],
    "pooling": [StrOptions({"auto", "avg", "max", "cls", "mean"})],
    "lr": [Interval(Real, 0, None, closed="neither")],
    "backbone_lr": [None, Interval(Real, 0, None, closed="left")],
    "max_epochs": [Interval(Integral, 1, None, closed="left")],
    "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"-1"})],
    "weight_decay": [Interval(Real, 0, None, closed="left")],
    "head_init": [
        StrOptions({"auto", "probe", "random", "class_names"}),
        HasMethods(["fit"]),
    ],
    "l2sp": [Interval(Real, 0, None, closed="left")],
    "dropout": [Interval(Real, 0, 1, closed="left")],
    "augment": ["boolean", StrOptions({"auto"}), nn.Module],
    "valid_size": [
        None,
        Interval(RealNotInt, 0, 1, closed="neither"),
        Interval(Integral, 1, None, closed="left"),
    ],
    "scoring": [str, callable],
    "refit": ["boolean"],
    "patience": [None, Interval(Integral, 1, None, closed="left")],
    "checkpoint_dir": [None, str, os.PathLike],
    "device": [None, str, torch.device],
    "precision": [StrOptions({"auto", "fp32", "bf16", "fp16"})],
    "max_length": [None, Interval(Integral, 1, None, closed="left")],
    "random_state": [None, Interval(Integral, 0, None, closed="left")],
    "callbacks": [None, list],
    "trust_remote_code": ["boolean"],
    "optimizer": [callable],
    "criterion": [callable, nn.Module],
    "adaptation": [None, str],
    "adaptation_weight": [Interval(Real, 0, None, closed="left")],
    "adaptation_ratio": [None, Interval(Real, 0, None, closed="neither")],
}
_CLASSIFIER = {
    "label_smoothing": [Interval(Real, 0, 1, closed="left")],
    "class_weight": [None, dict, StrOptions({"balanced"})],
}


def constraints(classifier: bool) -> dict:
    """The parameter constraints of a classifier or a regressor."""
    return {**_COMMON, **(_CLASSIFIER if classifier else {})}


def _callback_ok(cb) -> bool:
    if isinstance(cb, tuple) and len(cb) == 2 and isinstance(cb[0], str):
        cb = cb[1]
    return isinstance(cb, Callback) or (
        isinstance(cb, type) and issubclass(cb, Callback)
    )


def callbacks_ok(callbacks) -> bool:
    """None, or a list of skorch callbacks (or (name, callback) pairs)."""
    return callbacks is None or (
        isinstance(callbacks, list) and all(map(_callback_ok, callbacks))
    )


def check_params(net, classifier: bool) -> None:
    """Check every parameter of ``net``; raise on the first bad one."""
    name = type(net).__name__
    params = net.get_params(deep=False)
    if params.get("batch_size") == -1:  # skorch: the whole data set in one batch
        params["batch_size"] = "-1"
    validate_parameter_constraints(constraints(classifier), params, name)
    if not callbacks_ok(net.callbacks):
        raise TypeError(
            f"The 'callbacks' parameter of {name} must be None or a list of skorch "
            f"callbacks (or (name, callback) pairs). Got {net.callbacks!r} instead."
        )
    if isinstance(net.head_init, str) and net.head_init == "class_names":
        from sktransfer.backbones._dual import is_dual

        spec = net._backbone_spec()
        if not classifier or not (spec.modality == "text" or is_dual(spec)):
            kind = "a CLIP / SigLIP image tower" if is_dual(spec) else spec.modality
            raise ValueError(
                f"{name}: head_init='class_names' starts the head from the embeddings "
                "of the class names, which needs a classifier on a text backbone "
                "or on a dual encoder's image tower (CLIP, SigLIP); this is a "
                f"{'classifier' if classifier else 'regressor'} on a {kind} "
                "backbone. Use head_init='probe'."
            )
    if getattr(net.scoring, "label_free", False):
        if not classifier:
            raise ValueError(
                f"{name}: scoring={net.scoring!r} scores class predictions; a "
                "regressor's best epoch needs a regression scorer (e.g. 'r2')."
            )
        refusal = net.scoring.epoch_refusal()
        if refusal:
            raise ValueError(f"{name}: {refusal}")
    if not classifier and "entropy" in parse_adaptation(net.adaptation):
        raise ValueError(
            f"{name}: adaptation={net.adaptation!r}: entropy minimisation makes "
            "class predictions confident, a regressor has none. Use 'dann' or "
            "'coral' (or both, 'dann+coral')."
        )
    if parse_adaptation(net.adaptation) and net.strategy == "head":
        raise ValueError(
            f"{name}: adaptation={net.adaptation!r} trains the backbone's features, "
            "but strategy='head' keeps them frozen. Use strategy='last_n' or "
            "'full', or adapt frozen features with sktransfer.adapt (e.g. "
            "make_pipeline(extractor, CORAL(), LabeledOnly(LogisticRegression())))."
        )
    module = params.get("module", TransferModule)
    if not (isinstance(module, type) and issubclass(module, TransferModule)):
        raise TypeError(
            f"{name} builds its module from backbone=; module= must be "
            f"TransferModule or a subclass of it (to change the head). Got "
            f"{module!r} instead."
        )
    if net.valid_size is not None and params.get("train_split") is not None:
        raise ValueError(
            f"{name} got both valid_size={net.valid_size} and train_split=; pass "
            "one of them (valid_size=None to use your train_split)."
        )
    takes_decay = "weight_decay" in inspect.signature(net.optimizer).parameters
    if net.weight_decay and not takes_decay:
        raise ValueError(
            f"weight_decay={net.weight_decay}, but {net.optimizer!r} takes no "
            "weight_decay; pass weight_decay=0."
        )


def n_valid(valid_size, n_samples: int) -> int:
    """How many of ``n_samples`` a ``valid_size`` holds out: an int is a count
    (as in ``train_test_split``), a fraction is rounded up (as scikit-learn's
    shuffle splits round it)."""
    if isinstance(valid_size, Integral):
        return int(valid_size)
    return int(np.ceil(valid_size * n_samples))
