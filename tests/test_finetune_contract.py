"""The fine-tuners keep skorch's contract, and every bad parameter says so."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from skorch.callbacks import Freezer, LRScheduler
from torch.utils.data import DataLoader

from sktransfer import FineTunedClassifier, FineTunedRegressor
from sktransfer.finetune._callbacks import GradScaling


def make(**kw):
    params = dict(max_epochs=1, batch_size=8, valid_size=None, random_state=0)
    params.update(kw)
    return FineTunedClassifier("test-cnn", **params)


def test_optimizer_class_and_routed_parameters(images):
    X, y = images
    net = make(optimizer=torch.optim.SGD, optimizer__momentum=0.9, lr=0.05).fit(X, y)
    assert isinstance(net.optimizer_, torch.optim.SGD)
    groups = net.optimizer_.param_groups
    assert [g["momentum"] for g in groups] == [0.9, 0.9]
    assert [g["lr"] for g in groups] == pytest.approx([0.005, 0.05])  # backbone_lr
    assert [g["weight_decay"] for g in groups] == [0.01, 0.01]
    adam = make(optimizer__betas=(0.5, 0.6), optimizer__weight_decay=0.0).fit(X, y)
    assert all(g["betas"] == (0.5, 0.6) for g in adam.optimizer_.param_groups)
    assert all(g["weight_decay"] == 0.0 for g in adam.optimizer_.param_groups)
    assert clone(adam).get_params()["optimizer__betas"] == (0.5, 0.6)


def test_adam_runs_fused_unless_the_user_chose_a_kernel(images):
    X, y = images
    assert all(g["fused"] for g in make().fit(X, y).optimizer_.param_groups)
    plain = make(optimizer__foreach=True).fit(X, y).optimizer_.param_groups
    assert all(not g["fused"] and g["foreach"] for g in plain)
    off = make(optimizer=torch.optim.Adam, optimizer__fused=False).fit(X, y)
    assert isinstance(off.optimizer_, torch.optim.Adam)
    assert all(not g["fused"] for g in off.optimizer_.param_groups)
    sgd = make(optimizer=torch.optim.SGD, lr=0.05).fit(X, y)  # has no fused=
    assert all(not g.get("fused") for g in sgd.optimizer_.param_groups)


def test_user_param_groups_replace_the_backbone_group(images):
    X, y = images
    net = make(
        optimizer__param_groups=[("head.*", {"lr": 0.123})], backbone_lr=0.5
    ).fit(X, y)
    lrs = sorted(g["lr"] for g in net.optimizer_.param_groups)
    assert lrs == pytest.approx([0.001, 0.123])


def test_criterion_and_routed_parameters(images):
    X, y = images
    net = make(criterion__label_smoothing=0.2).fit(X, y)
    assert net.criterion_.label_smoothing == 0.2
    weighted = make(class_weight={"cat": 3.0}).fit(X, y)
    assert weighted.criterion_.weight.tolist() == [3.0, 1.0]
    override = make(class_weight="balanced", criterion__weight=torch.tensor([1.0, 5.0]))
    assert override.fit(X, y).criterion_.weight.tolist() == [1.0, 5.0]
    nll = make(
        criterion=torch.nn.MultiMarginLoss, criterion__margin=2.0, max_epochs=1
    ).fit(X, y)
    assert isinstance(nll.criterion_, torch.nn.MultiMarginLoss)
    assert nll.criterion_.margin == 2.0


def test_iterator_parameters_are_routed(images):
    X, y = images
    seen = []

    class Recording(DataLoader):
        def __init__(self, dataset, **kwargs):
            seen.append(kwargs)
            super().__init__(dataset, **kwargs)

    make(iterator_train=Recording, iterator_train__drop_last=True, batch_size=5).fit(
        X, y
    )
    assert seen and seen[0]["drop_last"] is True and seen[0]["batch_size"] == 5


def test_lr_scheduler_callback(images):
    X, y = images
    net = make(
        max_epochs=3,
        callbacks=[LRScheduler("StepLR", step_size=1, gamma=0.5)],
    ).fit(X, y)
    head = net.optimizer_.param_groups[-1]["lr"]
    assert head == pytest.approx(1e-3 * 0.5**3)


def test_gradual_never_undoes_a_users_freezer(images):
    X, y = images
    pattern = "backbone.sktransfer_inner.blocks.2.*"
    net = make(strategy="gradual", max_epochs=3, callbacks=[Freezer(pattern)])
    net.fit(X, y)
    inner = net.module_.backbone.sktransfer_inner
    assert not any(p.requires_grad for p in inner.blocks[2].parameters())
    # the strategy still unfroze the blocks it schedules (block 1 at epoch 2)
    assert all(p.requires_grad for p in inner.blocks[1].parameters())
    before = {n: p.detach().clone() for n, p in inner.blocks[2].named_parameters()}
    net.partial_fit(X, y)  # epoch 4: the frozen block stays as it was
    for n, p in inner.blocks[2].named_parameters():
        torch.testing.assert_close(p, before[n])


def test_fp16_overflow_skips_the_step_and_lowers_the_scale(images):
    X, y = images
    net = make(precision="fp16", strategy="full").fit(X, y)
    net.grad_scaler_ = torch.amp.GradScaler("cpu", init_scale=2.0**100)
    before = [p.detach().clone() for p in net.module_.parameters()]
    net.partial_fit(X[:8], y[:8])  # every batch overflows at this scale
    assert net.grad_scaler_.get_scale() < 2.0**100
    for p, q in zip(net.module_.parameters(), before, strict=True):
        torch.testing.assert_close(p, q)
    assert any(isinstance(cb, GradScaling) for _, cb in net.callbacks_)


def test_get_params_lists_parameters_only(images):
    X, y = images
    net = make(checkpoint_dir="auto").fit(X, y)
    params = net.get_params(deep=False)
    assert not [k for k in params if k.startswith("_") or k.endswith("_")]
    assert params["device"] == "auto" and params["optimizer"] is torch.optim.AdamW
    assert "checkpoint_path" not in params
    assert clone(net).checkpoint_path() != net.checkpoint_path()


@pytest.mark.parametrize(
    "params, error, match",
    [
        (
            {"class_weight": "bogus"},
            ValueError,
            "The 'class_weight' parameter of FineTunedClassifier must be None, an instance of 'dict' or a str among {'balanced'}. Got 'bogus' instead.",
        ),
        (
            {"max_epochs": 0},
            ValueError,
            r"The 'max_epochs' parameter of FineTunedClassifier must be an int in the range \[1, inf\). Got 0 instead.",
        ),
        ({"max_epochs": -1}, ValueError, "'max_epochs' parameter .* Got -1 instead"),
        (
            {"valid_size": 1.5},
            ValueError,
            r"The 'valid_size' parameter of FineTunedClassifier must be None, a float in the range \(0.0, 1.0\) or an int in the range \[1, inf\). Got 1.5 instead.",
        ),
        (
            {"valid_size": 100},
            ValueError,
            r"valid_size=100 holds out 100 samples, but there are 24, .* Pass valid_size=2 \(one sample per class\)",
        ),
        ({"lr": 0}, ValueError, "'lr' parameter"),
        ({"dropout": 1.5}, ValueError, "'dropout' parameter"),
        ({"strategy": "some"}, ValueError, "'strategy' parameter"),
        ({"module": torch.nn.Linear}, TypeError, "module= must be TransferModule"),
        (
            {"valid_size": 0.2, "train_split": lambda ds, y: (ds, None)},
            ValueError,
            "both valid_size=0.2 and train_split",
        ),
        (
            {"optimizer": torch.optim.LBFGS},
            ValueError,
            "takes no weight_decay; pass weight_decay=0",
        ),
    ],
)
def test_bad_parameters_name_the_parameter(images, params, error, match):
    X, y = images
    with pytest.raises(error, match=match):
        make(**params).fit(X, y)


def test_stratified_split_with_too_few_samples_per_class(images):
    X, y = images
    y = y.astype(object)
    y[0] = "bird"  # one sample of a class: trained on, never held out
    with pytest.warns(UserWarning, match=r"holds out 3 for 2 classes.*cross-valid"):
        net = make(valid_size=0.1).fit(X, y)  # 3 held out: too few for 2 classes
    assert net.cv_epoch_losses_ is not None and "bird" in net.classes_
    y[1:12] = "bird"  # ... and with enough of the others, a plain split
    y[0] = "fish"
    net = make(valid_size=0.25).fit(X, y)
    assert net.cv_epoch_losses_ is None and "fish" in net.classes_
    make(valid_size=None).fit(X, y)  # the alternative the message names works
    three = np.array(["a", "b", "c"] * 8)
    with pytest.warns(UserWarning, match=r"holds out 2 for 3 classes"):
        make(valid_size=0.05).fit(X, three)


@pytest.mark.parametrize("missing", [None, np.nan])
def test_missing_labels_name_their_rows(images, missing):
    X, y = images
    y = y.astype(object)
    y[3] = missing
    with pytest.raises(
        ValueError, match=r"y has missing values \(None/NaN\) at rows \[3\]"
    ):
        make().fit(X, y)
    target = np.arange(24.0)
    target[5] = np.nan
    with pytest.raises(ValueError, match=r"at rows \[5\]"):
        FineTunedRegressor("test-cnn", valid_size=None, max_epochs=1).fit(X, target)


@pytest.mark.parametrize("change", [{"backbone": "test-text"}, {"pooling": "max"}])
def test_changing_the_network_after_fit_names_fit(images, change):
    X, y = images
    net = make().fit(X, y)
    net.set_params(**change)
    with pytest.raises(NotFittedError, match=r"set after fit\. Call fit again"):
        net.predict(X)


def test_trust_remote_code_reaches_the_loader(images, monkeypatch):
    import sktransfer._base as base

    seen = []
    real = base.load_backbone

    def spy(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return real(*args, **kwargs)

    monkeypatch.setattr(base, "load_backbone", spy)
    X, y = images
    make(trust_remote_code=True).fit(X, y)
    assert seen and all(seen)


# ------------------------------------------------------------ L2-SP
def _distance_to_pretrained(net):
    from sktransfer.backbones import load_backbone

    pretrained = dict(load_backbone("test-cnn").model.named_parameters())
    inner = net.module_.backbone.sktransfer_inner
    return sum(
        float((p.detach() - pretrained[n]).pow(2).sum())
        for n, p in inner.named_parameters()
    )


def test_l2sp_pulls_the_backbone_toward_the_pretrained_weights(images):
    X, y = images
    params = dict(strategy="full", max_epochs=4, lr=0.05, backbone_lr=0.05)
    free = make(**params).fit(X, y)
    held = make(l2sp=10.0, **params).fit(X, y)
    assert 0 < _distance_to_pretrained(held) < 0.5 * _distance_to_pretrained(free)
    # L2-SP replaces weight decay on the backbone group; the head keeps it
    groups = held.optimizer_.param_groups
    assert [g["weight_decay"] for g in groups] == [0.0, 0.01]


def test_l2sp_adds_nothing_at_the_pretrained_point_and_is_a_parameter(images):
    X, y = images
    net = make(strategy="last_n", max_epochs=1, l2sp=5.0).fit(X[:8], y[:8])
    plain = clone(net).set_params(l2sp=0.0).fit(X[:8], y[:8])
    assert clone(net).get_params()["l2sp"] == 5.0
    # before any step the penalty is zero: the first batch's losses agree
    assert net.history[0, "batches", 0, "train_loss"] == pytest.approx(
        plain.history[0, "batches", 0, "train_loss"], rel=1e-6
    )
    with pytest.raises(
        ValueError,
        match=r"The 'l2sp' parameter of FineTunedClassifier must be a float in the range \[0.0, inf\)",
    ):
        make(l2sp=-1.0).fit(X, y)


def test_warm_start_on_fewer_classes_and_partial_fit_classes_say_what_is_wrong(images):
    X, _ = images
    y4 = np.array([0, 1, 2, 3] * 6)
    clf = make(strategy="head", max_epochs=1, warm_start=True, valid_size=4).fit(X, y4)
    with pytest.raises(
        ValueError, match=r"2: 0, 3: 0\); a warm start or partial_fit keeps"
    ):
        clf.fit(X[:12], y4[:12] % 2)
    with pytest.raises(
        ValueError, match=r"labels \[7\] not among the classes of the first"
    ):
        clf.set_params(valid_size=None).fit(X, np.where(y4 == 3, 7, y4))
    fresh = make(strategy="head", max_epochs=1)
    with pytest.raises(
        ValueError, match=r"labels \[3\] not in classes= .*classes: \[0, 1, 2\]"
    ):
        fresh.partial_fit(X, y4, classes=[0, 1, 2])


def test_changing_strategy_after_fit_needs_a_new_fit(images):
    from sklearn.exceptions import NotFittedError

    X, y = images
    clf = make(strategy="head", max_epochs=1).fit(X, y)
    clf.set_params(strategy="full")
    with pytest.raises(
        NotFittedError, match="strategy='full' \\(fitted with 'head'\\)"
    ):
        clf.predict(X)
    assert clf.fit(X, y).predict(X).shape == (len(X),)


@pytest.mark.parametrize("strategy", ["last_n", "head"])
@pytest.mark.parametrize("modality", ["image", "text", "regression"])
def test_predefined_split_takes_raw_inputs_and_original_labels(strategy, modality, rng):
    """skorch's documented way to pass a validation set works for every input."""
    from skorch.dataset import Dataset
    from skorch.helper import predefined_split

    from sktransfer import FineTunedRegressor

    if modality == "text":
        X = [f"text {i}" for i in range(16)]
        # skorch's Dataset reads a list as several inputs: texts as an array
        Xv = np.array([f"other {i}" for i in range(6)], dtype=object)
        backbone = "test-text"
    else:
        X = rng.integers(0, 255, (16, 20, 20, 3), np.uint8)
        Xv = rng.integers(0, 255, (6, 20, 20, 3), np.uint8)
        backbone = "test-cnn"
    if modality == "regression":
        y, yv = np.linspace(0, 100, 16), np.linspace(0, 100, 6)
        net = FineTunedRegressor
    else:
        y, yv = np.array(["a", "b"] * 8), np.array(["a", "b"] * 3)
        net = FineTunedClassifier
    model = net(
        backbone,
        strategy=strategy,
        max_epochs=2,
        valid_size=None,
        random_state=0,
        train_split=predefined_split(Dataset(Xv, yv)),
    ).fit(X, y)
    key = "valid_loss" if modality == "regression" else "valid_acc"
    assert np.isfinite(model.history[:, key]).all()
    kept = model.best_epoch_
    if modality != "regression":
        recorded = (
            model.start_scores_[key] if kept == 0 else model.history[kept - 1, key]
        )
        assert (model.predict(Xv) == yv).mean() == pytest.approx(recorded)
