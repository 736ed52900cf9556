"""LP-FT: the head starts as the linear probe; the best epoch (0 included) is kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV
from skorch.dataset import ValidSplit
from torch import nn

from sktransfer import FineTunedClassifier, FineTunedRegressor
from sktransfer.finetune import TransferModule
from sktransfer.finetune._data import head_extractor
from sktransfer.finetune._probe_start import CS, default_probe


@pytest.fixture
def faces(rng):
    """Two separable classes of small images (brightness differs)."""
    X = rng.integers(0, 255, (48, 32, 32, 3), np.uint8)
    y = np.array(["a", "b", "c"] * 16)
    X[y == "b"] //= 3
    X[y == "c"] = 255 - X[y == "c"] // 4
    return X, y


def _features(net, X):
    return head_extractor(net).transform(X)


# a learning rate so small that one epoch leaves the head as it started
FROZEN_START = dict(
    strategy="head",
    max_epochs=1,
    lr=1e-12,
    valid_size=None,
    random_state=0,
    head_init="probe",
)


@pytest.mark.parametrize("classes", [2, 3])
def test_head_starts_as_the_probe(faces, classes):
    X, y = faces
    keep = np.isin(y, ["a", "b", "c"][:classes])
    X, y = X[keep], y[keep]
    clf = FineTunedClassifier("test-cnn", weight_decay=0.0, **FROZEN_START).fit(X, y)
    probe = default_probe(True, y).fit(_features(clf, X), y)
    np.testing.assert_allclose(
        clf.predict_proba(X), probe.predict_proba(_features(clf, X)), atol=1e-4
    )
    assert clf.start_scores_ is None and clf.best_epoch_ is None  # no validation


def test_random_head_is_not_the_probe(faces):
    X, y = faces
    clf = FineTunedClassifier("test-cnn", **{**FROZEN_START, "head_init": "random"})
    clf.fit(X, y)
    probe = default_probe(True, y).fit(_features(clf, X), y)
    gap = np.abs(clf.predict_proba(X) - probe.predict_proba(_features(clf, X)))
    assert gap.max() > 0.1


def test_auto_trains_from_random_with_the_probe_as_epoch_0(faces):
    X, y = faces
    kw = {**FROZEN_START, "valid_size": 0.25, "weight_decay": 0.0}
    fits = {
        init: FineTunedClassifier("test-cnn", **{**kw, "head_init": init}).fit(X, y)
        for init in ["auto", "probe", "random"]
    }
    auto = fits["auto"]
    # epoch 0 is the probe's start...
    assert auto.start_scores_ == pytest.approx(fits["probe"].start_scores_)
    # ...but training ran from the random head: its epochs are the random run's
    np.testing.assert_allclose(
        auto.history[:, "valid_loss"], fits["random"].history[:, "valid_loss"]
    )
    # an untrained random head loses to the probe, so the probe is kept
    assert auto.best_epoch_ == 0 and fits["random"].best_epoch_ == 1
    np.testing.assert_allclose(
        auto.predict_proba(X), fits["probe"].predict_proba(X), atol=1e-5
    )


def test_auto_without_validation_fits_no_probe(faces):
    X, y = faces
    kw = {**FROZEN_START, "lr": 1e-2}
    auto = FineTunedClassifier("test-cnn", **{**kw, "head_init": "auto"}).fit(X, y)
    rand = FineTunedClassifier("test-cnn", **{**kw, "head_init": "random"}).fit(X, y)
    np.testing.assert_array_equal(auto.predict_proba(X), rand.predict_proba(X))
    assert auto.start_scores_ is None and auto.best_epoch_ is None


def test_regressor_head_starts_as_ridge(faces):
    X, _ = faces
    y = X.reshape(len(X), -1).mean(1) / 255
    reg = FineTunedRegressor("test-cnn", weight_decay=0.0, **FROZEN_START).fit(X, y)
    ridge = default_probe(False, y).fit(_features(reg, X), y)
    np.testing.assert_allclose(
        reg.predict(X), ridge.predict(_features(reg, X)), atol=1e-4
    )


def test_default_probe_choices(faces):
    y = np.array([0, 1] * 10)
    assert list(default_probe(True, y).param_grid["C"]) == list(CS)  # C by CV
    small = default_probe(True, np.array([0, 1, 1]))  # too few for 3 folds
    assert isinstance(small, LogisticRegression) and small.C == 1.0
    assert hasattr(default_probe(False, y), "alphas")


def test_users_linear_estimator_is_the_probe(faces):
    X, y = faces
    kwargs = dict(weight_decay=0.0, **FROZEN_START)
    kwargs["head_init"] = LogisticRegression(C=1e-4, max_iter=1000)
    weak = FineTunedClassifier("test-cnn", **kwargs).fit(X, y)
    kwargs["head_init"] = "probe"
    strong = FineTunedClassifier("test-cnn", **kwargs).fit(X, y)
    norm = [float(m.module_[-1].weight.detach().norm()) for m in (weak, strong)]
    assert norm[0] < norm[1] / 10


def test_best_epoch_zero_is_kept_when_training_hurts(faces):
    X, y = faces
    # a learning rate that wrecks the backbone: every epoch is worse than the start
    bad = dict(
        strategy="full",
        lr=5.0,
        backbone_lr=5.0,
        weight_decay=0.0,
        valid_size=0.25,
        augment=False,
        random_state=0,
    )
    clf = FineTunedClassifier("test-cnn", max_epochs=3, **bad).fit(X, y)
    losses = clf.history[:, "valid_loss"]
    assert min(losses) > clf.start_scores_["valid_loss"]  # it did get worse
    assert clf.best_epoch_ == 0
    # the returned model is the start: its validation loss and score are epoch 0's
    codes = clf.label_encoder_.transform(y)
    split = ValidSplit(0.25, stratified=True, random_state=0)
    _, valid = split(clf.get_dataset(X, codes), codes)
    idx = np.asarray(valid.indices)
    proba = clf.predict_proba(X[idx])
    assert log_loss(y[idx], proba, labels=clf.classes_) == pytest.approx(
        clf.start_scores_["valid_loss"], rel=1e-5
    )
    assert (clf.predict(X[idx]) == y[idx]).mean() == clf.start_scores_["valid_acc"]


def test_best_later_epoch_is_kept(faces):
    X, y = faces
    clf = FineTunedClassifier(
        "test-cnn",
        strategy="full",
        max_epochs=4,
        head_init="random",
        valid_size=0.25,
        lr=3e-2,
        random_state=0,
    ).fit(X, y)
    rows = [clf.start_scores_, *clf.history]
    keys = [r["valid_acc"] for r in rows]
    # the first epoch with the highest score (a tie keeps the earlier epoch)
    assert clf.best_epoch_ == int(np.argmax(keys))
    assert clf.best_epoch_ > 0  # a random head's start is beaten


def test_warm_start_continues_without_a_new_probe(faces):
    X, y = faces
    clf = FineTunedClassifier(
        "test-cnn",
        strategy="full",
        max_epochs=2,
        lr=3e-2,
        valid_size=None,
        random_state=0,
    ).fit(X, y)
    head = clf.module_.head.weight.detach().clone()
    clf.set_params(warm_start=True, lr=1e-12, backbone_lr=1e-12, max_epochs=1)
    clf.fit(X, y)
    assert torch.allclose(clf.module_.head.weight, head, atol=1e-6)


class MLPHead(TransferModule):
    def __init__(self, features, n_features, n_outputs, dropout=0.0, augment=None):
        super().__init__(features, n_features, n_outputs, dropout, augment)
        self.head = nn.Sequential(nn.Linear(n_features, 8), nn.Linear(8, n_outputs))


def test_a_head_that_is_not_linear_warns(faces):
    X, y = faces
    clf = FineTunedClassifier(
        "test-cnn",
        module=MLPHead,
        max_epochs=1,
        valid_size=None,
        random_state=0,
        head_init="probe",
    )
    with pytest.warns(UserWarning, match="head_init='random' to silence"):
        clf.fit(X, y)
    import warnings

    for quiet in ["random", "auto"]:  # "auto" only tries the probe as a candidate
        clf.set_params(head_init=quiet, valid_size=0.25)
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            clf.fit(X, y)
        assert clf.best_epoch_ != 0  # a random epoch 0 is never kept


def test_head_init_is_a_checked_grid_parameter(faces):
    X, y = faces
    search = GridSearchCV(
        FineTunedClassifier(
            "test-cnn", strategy="head", max_epochs=1, valid_size=None, random_state=0
        ),
        {"head_init": ["probe", "random"]},
        cv=2,
    ).fit(X, y)
    probe, random_ = search.cv_results_["mean_test_score"]
    assert probe >= random_
    with pytest.raises(ValueError, match="'head_init' parameter"):
        FineTunedClassifier("test-cnn", head_init="zeros").fit(X, y)


def test_same_seed_same_model(faces):
    X, y = faces
    kw = dict(strategy="last_n", max_epochs=2, valid_size=0.25, random_state=3)
    a = FineTunedClassifier("test-cnn", **kw).fit(X, y)
    b = FineTunedClassifier("test-cnn", **kw).fit(X, y)
    assert a.best_epoch_ == b.best_epoch_
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_text_probe_start(texts):
    X, y = texts
    clf = FineTunedClassifier(
        "test-text", strategy="full", max_epochs=1, valid_size=2, random_state=0
    ).fit(X, y)
    assert set(clf.start_scores_) == {"valid_loss", "valid_acc"}
    assert clf.best_epoch_ in (0, 1)


def test_refit_trains_every_row_for_the_chosen_epochs(faces):
    X, y = faces
    kw = dict(strategy="full", max_epochs=3, valid_size=0.25, lr=3e-2,
              head_init="random", random_state=0)  # fmt: skip
    chosen = FineTunedClassifier("test-cnn", **kw).fit(X, y)
    refit = FineTunedClassifier("test-cnn", refit=True, **kw).fit(X, y)
    k = chosen.best_epoch_
    assert k > 0 and refit.best_epoch_ == k
    assert len(refit.history_) == k and "valid_loss" not in refit.history_[-1]
    assert len(refit.validation_history_) == 3  # the run that chose k
    assert refit.start_scores_ == pytest.approx(chosen.start_scores_)
    # the same as training on every row for k epochs without validation
    plain = dict(kw, valid_size=None, max_epochs=k)
    alone = FineTunedClassifier("test-cnn", **plain).fit(X, y)
    np.testing.assert_allclose(refit.predict_proba(X), alone.predict_proba(X))
    assert chosen.validation_history_ is None


def test_refit_of_epoch_0_is_the_probe_on_every_row(faces):
    X, y = faces
    bad = dict(strategy="full", lr=5.0, backbone_lr=5.0, weight_decay=0.0,
               valid_size=0.25, augment=False, random_state=0, max_epochs=2)  # fmt: skip
    clf = FineTunedClassifier("test-cnn", refit=True, **bad).fit(X, y)
    assert clf.best_epoch_ == 0
    probe = default_probe(True, y).fit(_features(clf, X), y)
    np.testing.assert_allclose(
        clf.predict_proba(X), probe.predict_proba(_features(clf, X)), atol=1e-4
    )
