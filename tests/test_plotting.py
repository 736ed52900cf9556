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


def _inside_canvas(fig) -> list[str]:
    """The texts (tick labels, axis labels, titles, legends) that leave the
    figure, once drawn."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    outside = []
    for ax in fig.axes:
        ticks = [
            tick.label1
            for axis in (ax.xaxis, ax.yaxis)
            for tick in axis.get_major_ticks()
            # matplotlib keeps labels for ticks beyond the view; they are not drawn
            if min(axis.get_view_interval())
            <= tick.get_loc()
            <= max(axis.get_view_interval())
        ]
        artists = [
            *ticks,
            ax.xaxis.label,
            ax.yaxis.label,
            ax.title,
        ]
        if ax.get_legend() is not None:
            artists.append(ax.get_legend())
        for artist in artists:
            if hasattr(artist, "get_text") and not artist.get_text():
                continue
            box = artist.get_window_extent(renderer)
            if (
                box.x0 < -0.5
                or box.y0 < -0.5
                or box.x1 > width + 0.5
                or box.y1 > height + 0.5
            ):
                outside.append(getattr(artist, "get_text", lambda: "legend")())
    return outside


def test_ranking_display_keeps_long_names_labels_and_legend_on_the_canvas():
    import matplotlib.pyplot as plt

    from sktransfer.plotting import RankingDisplay

    names = [
        "efficientnet_lite0",
        "('efficientnet_lite0', 'blocks.5')",
        "timm:convnext_tiny.fb_in22k_ft_in1k",
    ]
    disp = RankingDisplay(
        names,
        np.array([0.99, 0.95, 0.90]),
        np.array([0.01, 0.02, 0.04]),
        ["helps", "uncertain", "does not help"],
        0.96,
        "accuracy",
    ).plot()
    assert _inside_canvas(disp.figure_) == []
    ax = disp.ax_
    assert ax.get_ylabel() == "candidate" and "accuracy" in ax.get_xlabel()
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["helps", "uncertain", "does not help", "baseline 0.960"]
    # the legend covers no bar
    renderer = disp.figure_.canvas.get_renderer()
    box = legend.get_window_extent(renderer)
    for bar in ax.patches:
        assert not box.overlaps(bar.get_window_extent(renderer))
    plt.close(disp.figure_)


def test_learning_curves_keep_their_labels_on_the_canvas_one_accuracy_line(rng):
    import matplotlib.pyplot as plt

    X = rng.integers(0, 255, (24, 32, 32, 3), np.uint8)
    clf = FineTunedClassifier(
        "test-cnn", strategy="head", max_epochs=3, valid_size=0.25, random_state=0
    ).fit(X, [0, 1] * 12)
    # scoring="accuracy" is skorch's valid_acc: one column, one line
    assert [k for k in clf.history[-1] if "acc" in k] == ["valid_acc", "valid_acc_best"]
    d = LearningCurvesDisplay.from_estimator(clf, title="a long title " * 4)
    assert list(d.scores) == ["valid_acc"]
    labels = [line.get_label() for line in d.axes_[1].get_lines()]
    assert [x for x in labels if not x.startswith("_")] == ["valid_acc"]
    assert _inside_canvas(d.figure_) == []
    for ax in d.axes_:  # whole epochs only, no 0.5
        ticks = [
            t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]
        ]
        assert all(float(t).is_integer() for t in ticks)
    plt.close(d.figure_)


def test_after_a_refit_the_curves_are_the_run_that_chose(rng):
    import matplotlib.pyplot as plt

    X = rng.integers(0, 255, (24, 32, 32, 3), np.uint8)
    clf = FineTunedClassifier(
        "test-cnn",
        strategy="head",
        max_epochs=3,
        valid_size=0.25,
        lr=0.05,
        refit=True,
        random_state=0,
    ).fit(X, [0, 1] * 12)
    # the refit's own history has no validation column to draw
    assert "valid_loss" not in clf.history_[-1]
    d = LearningCurvesDisplay.from_estimator(clf)
    assert len(d.epochs) == len(clf.validation_history_) + 1
    np.testing.assert_allclose(
        d.losses["valid_loss"][1:], clf.validation_history_[:, "valid_loss"]
    )
    assert list(d.scores) == ["valid_acc"] and len(d.axes_) == 2
    plt.close(d.figure_)
