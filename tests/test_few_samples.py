"""Fine-tuners' defaults on 1-8 samples per class (issue 20, item 1): no
default raises; the epoch count is chosen by cross-validation, or the probe
is kept, and a warning says which."""

from __future__ import annotations

import numpy as np
import pytest

from sktransfer import FineTunedClassifier, FineTunedRegressor


@pytest.mark.parametrize("per_class", [1, 2, 4, 8])
def test_classifier_defaults_fit_on_few_samples_per_class(per_class):
    rng = np.random.default_rng(per_class)
    classes = ["ant", "bee", "cat", "dog", "eel"]
    y = np.repeat(classes, per_class)
    X = rng.integers(0, 255, (len(y), 32, 32, 3), np.uint8)
    for i, c in enumerate(classes):
        X[y == c, :, :, i % 3] = 40 * i  # learnable colour per class
    clf = FineTunedClassifier("test-cnn", max_epochs=3, random_state=0)
    with pytest.warns(UserWarning, match="trains on every sample for"):
        clf.fit(X, y)
    assert clf.classes_.tolist() == classes
    assert clf.best_epoch_ is not None and 0 <= clf.best_epoch_ <= 3
    if per_class == 1:
        assert clf.best_epoch_ == 0 and clf.cv_epoch_losses_ is None
    else:
        assert len(clf.cv_epoch_losses_) == 4  # epoch 0 (the probe) and 1..3
        assert clf.best_epoch_ == int(np.argmin(clf.cv_epoch_losses_))
    assert clf.valid_size == 0.1  # the parameter is left as the user set it


def test_probe_kept_means_the_backbone_is_untouched():
    y = np.array(["a", "b", "c"])
    X = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), np.uint8)
    clf = FineTunedClassifier("test-cnn", strategy="full", max_epochs=2, random_state=0)
    with pytest.warns(UserWarning, match="linear probe alone"):
        clf.fit(X, y)
    plain = FineTunedClassifier(
        "test-cnn",
        strategy="full",
        max_epochs=1,
        random_state=0,
        classes=["a", "b", "c"],
    ).initialize()
    for (name, p), (_, q) in zip(
        clf.module_.backbone.named_parameters(),
        plain.module_.backbone.named_parameters(),
        strict=True,
    ):
        assert np.allclose(p.detach().numpy(), q.detach().numpy()), name


def test_text_classifier_with_eight_per_class_uses_the_chosen_epochs():
    texts = [f"{w} {i}" for w in ("good", "bad", "odd", "new") for i in range(8)]
    y = np.repeat(["good", "bad", "odd", "new"], 8)
    clf = FineTunedClassifier(
        "test-text", strategy="full", max_epochs=2, random_state=0
    )
    with pytest.warns(UserWarning, match=r"holds out 4 for 4 classes.*cross-valid"):
        clf.fit(texts, y)
    assert len(clf.history) == max(clf.best_epoch_, 1)


@pytest.mark.parametrize("n", [1, 4, 8])
def test_regressor_defaults_fit_on_few_samples(n):
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    y = X[:, 0] * 2.0
    reg = FineTunedRegressor("test-mlp", max_epochs=2, random_state=0)
    with pytest.warns(UserWarning, match="trains on every sample"):
        reg.fit(X, y)
    assert reg.predict(X).shape == (n,)


def test_enough_samples_keep_the_validation_split():
    y = np.repeat(["a", "b"], 20)
    X = np.random.default_rng(0).integers(0, 255, (40, 32, 32, 3), np.uint8)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        clf = FineTunedClassifier("test-cnn", max_epochs=1, random_state=0).fit(X, y)
    assert clf.cv_epoch_losses_ is None and clf.start_scores_ is not None


def test_class_names_head_starts_as_the_zero_shot_classifier():
    from sktransfer import ZeroShotClassifier

    texts = ["a cat sat", "the dog ran", "cats purr", "dogs bark", "a kitten", "puppy"]
    y = np.array(["cat", "dog", "cat", "dog", "cat", "dog"])
    clf = FineTunedClassifier(
        "test-text", strategy="full", max_epochs=1, head_init="class_names",
        valid_size=None, lr=1e-12, backbone_lr=0.0, dropout=0.0, random_state=0,
    ).fit(texts, y)  # fmt: skip
    zero = ZeroShotClassifier("test-text").fit(None, ["cat", "dog"])
    assert clf.predict(texts).tolist() == zero.predict(texts).tolist()
    with pytest.raises(ValueError, match="needs a classifier on a text backbone"):
        FineTunedClassifier("test-cnn", head_init="class_names").fit(
            np.zeros((4, 8, 8, 3), np.uint8), [0, 1, 0, 1]
        )
    with pytest.raises(ValueError, match="this is a regressor"):
        FineTunedRegressor("test-text", head_init="class_names").fit(
            texts, np.arange(6.0)
        )


def test_one_single_sample_class_does_not_stop_the_validation_split():
    """Issue 21 item 2: one class of one sample among 200 samples used to turn
    the whole fit into "the probe alone" (and a random head into no model)."""
    import warnings

    rng = np.random.default_rng(0)
    y = np.r_[np.repeat(["a", "b", "c"], [100, 99, 0]), ["z"]]
    X = rng.integers(0, 255, (len(y), 32, 32, 3), np.uint8)
    X[y == "a", :, :, 0] = 250
    for head_init in ("probe", "random"):
        clf = FineTunedClassifier(
            "test-cnn", max_epochs=2, head_init=head_init, random_state=0
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # no few-sample fallback
            clf.fit(X, y)
        assert clf.cv_epoch_losses_ is None and len(clf.history) == 2
        assert clf.classes_.tolist() == ["a", "b", "z"]
        if head_init == "probe":
            assert (clf.predict(X[:199]) == y[:199]).mean() > 0.9
        else:  # a random head's epoch 0 is scored, never kept
            assert clf.best_epoch_ >= 1 and clf.start_scores_ is not None


def test_rare_classes_are_trained_on_never_held_out():
    from sktransfer.finetune._small_data import RareClassesTrained

    y = np.r_[np.zeros(50, int), np.ones(30, int), [2, 3]]
    train, valid = next(RareClassesTrained(y, 8, random_state=0).split())
    assert {80, 81} <= set(train.tolist()) and len(valid) == 8
    assert sorted(np.r_[train, valid].tolist()) == list(range(82))
    assert set(np.bincount(y[valid]).tolist()[:2]) <= {3, 4, 5}  # stratified


def test_a_random_head_with_nothing_to_hold_out_trains_max_epochs():
    y = np.array(["a", "b", "c"])
    X = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), np.uint8)
    clf = FineTunedClassifier(
        "test-cnn", max_epochs=2, head_init="random", random_state=0
    )
    with pytest.warns(UserWarning, match="random head has no probe"):
        clf.fit(X, y)
    assert len(clf.history) == 2
