"""LearningCurvesDisplay reads and draws a fine-tuner's history."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from sktransfer import FineTunedClassifier
from sktransfer.plotting import LearningCurvesDisplay

matplotlib.use("Agg")


def test_display_reads_history_and_draws(rng):
    import matplotlib.pyplot as plt

    X = rng.integers(0, 255, (24, 32, 32, 3), np.uint8)
    y = [0, 1] * 12
    clf = FineTunedClassifier(
        "test-cnn",
        strategy="full",
        max_epochs=6,
        valid_size=0.25,
        scoring="f1_macro",
        patience=2,
        lr=1e-6,
        random_state=0,
    ).fit(X, y)
    d = LearningCurvesDisplay.from_estimator(clf, title="t")
    n = len(clf.history)
    assert d.epochs.tolist() == list(range(0, n + 1))  # 0: LP-FT's start
    np.testing.assert_allclose(d.losses["train_loss"][1:], clf.history[:, "train_loss"])
    assert np.isnan(d.losses["train_loss"][0])  # the start has no training loss
    np.testing.assert_allclose(
        d.losses["valid_loss"],
        [clf.start_scores_["valid_loss"], *clf.history[:, "valid_loss"]],
    )
    assert set(d.scores) == {"valid_acc", "valid_f1_macro"}  # not valid_batch_count
    f1 = [clf.start_scores_["valid_f1_macro"], *clf.history[:, "valid_f1_macro"]]
    assert d.best_epoch == clf.best_epoch_ == int(np.argmax(f1))  # first best
    assert len(d.axes_) == 2
    lines = d.axes_[0].get_lines()
    np.testing.assert_allclose(lines[0].get_ydata(), d.losses["train_loss"])
    assert d.figure_._suptitle.get_text() == "t"
    plt.close(d.figure_)


def test_display_without_validation_has_one_panel(rng):
    import matplotlib.pyplot as plt

    X = rng.integers(0, 255, (8, 32, 32, 3), np.uint8)
    clf = FineTunedClassifier(
        "test-cnn", strategy="head", max_epochs=2, valid_size=None, random_state=0
    ).fit(X, [0, 1] * 4)
    fig, ax = plt.subplots()
    d = LearningCurvesDisplay.from_estimator(clf, ax=ax)
    assert d.scores == {} and list(d.losses) == ["train_loss"]
    assert d.axes_[0] is ax
    plt.close(fig)


def test_unfitted_estimator_is_a_clear_error():
    with pytest.raises(ValueError, match="fit it first"):
        LearningCurvesDisplay.from_estimator(FineTunedClassifier("test-cnn"))
