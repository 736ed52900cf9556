"""rank_backbones: one embedding pass per candidate, honest verdicts."""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import make_pipeline

from sktransfer import PretrainedFeatureExtractor, rank_backbones
from sktransfer.exceptions import NegativeTransferWarning
from sktransfer.selection import SmallPixels, _verdict

matplotlib.use("Agg")


@pytest.fixture
def data(rng):
    X = rng.integers(0, 255, (40, 32, 32, 3), np.uint8)
    y = np.arange(40) % 2
    X[y == 1, :, :, 0] = 255
    return X, y


def _dummy_baseline():
    return make_pipeline(SmallPixels(size=4), DummyClassifier())


def test_table_has_a_row_per_candidate_and_the_baseline(data, count_embeds):
    X, y = data
    candidates = [
        "test-cnn",
        ("test-cnn", 0),
        PretrainedFeatureExtractor("test-cnn", pooling="max"),
    ]
    result = rank_backbones(
        X, y, candidates, cv=4, baseline=_dummy_baseline(), verbose=False
    )
    table = result.table
    assert list(table.columns) == [
        "candidate",
        "logme",
        "hscore",
        "probe_score",
        "probe_std",
        "seconds",
        "verdict",
    ]
    assert set(table.candidate) == {
        "test-cnn",
        "test-cnn [layer 0]",
        "test-cnn (pooling='max')",
        "baseline",
    }
    assert table.probe_score.is_monotonic_decreasing
    assert count_embeds["n"] == 3 * len(X)  # one pass per candidate, none for the probe
    assert result.best_ == table[table.verdict != "baseline"].candidate.iloc[0]
    assert set(result.fold_scores_) == set(table.candidate)
    assert all(len(v) == 4 for v in result.fold_scores_.values())
    # a chance-level baseline: each separating candidate helps
    assert (table[table.verdict != "baseline"].verdict == "helps").all()


def test_no_candidate_beating_the_baseline_warns(data):
    X, y = data
    with pytest.warns(NegativeTransferWarning, match="No candidate beats the baseline"):
        result = rank_backbones(X, y, ["test-cnn"], cv=4, verbose=False)
    # raw pixels separate this data perfectly: nothing can be better
    verdicts = dict(zip(result.table.candidate, result.table.verdict, strict=True))
    assert verdicts["baseline"] == "baseline"
    assert verdicts["test-cnn"] in ("does not help", "uncertain")


def test_texts_get_a_tfidf_baseline_and_regression_a_ridge_probe(texts):
    X, _ = texts
    X = X * 4
    y = np.random.default_rng(0).normal(size=len(X))  # continuous: regression
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NegativeTransferWarning)
        result = rank_backbones(X, y, ["test-text"], cv=3, verbose=False)
    assert result.scoring == "r2"
    assert "hscore" not in result.table.columns
    assert np.isfinite(
        result.table.logme.iloc[result.table.candidate.tolist().index("test-text")]
    )


def test_verdict_from_paired_fold_scores():
    base = np.array([0.70, 0.72, 0.71, 0.69, 0.70])
    assert _verdict(base + 0.10, base, 80, 20) == "helps"
    assert _verdict(base - 0.01, base, 80, 20) == "does not help"
    noisy = base + np.array([0.04, -0.03, 0.02, -0.02, 0.01])
    assert _verdict(noisy, base, 80, 20) == "uncertain"


def test_plot_and_rank_agreement(data, rng):
    X, y = data
    y = np.where(rng.random(len(y)) < 0.3, 1 - y, y)  # noisy: scores differ
    warnings.simplefilter("ignore", NegativeTransferWarning)  # (pytest restores it)
    result = rank_backbones(
        X,
        y,
        ["test-cnn", ("test-cnn", 0), ("test-cnn", 1)],
        cv=4,
        baseline=_dummy_baseline(),
        verbose=False,
    )
    display = result.plot()
    labels = [t.get_text() for t in display.ax_.get_yticklabels()]
    assert labels == result.table[result.table.verdict != "baseline"].candidate.tolist()
    assert display.baseline == pytest.approx(result.fold_scores_["baseline"].mean())
    from scipy.stats import kendalltau

    rows = result.table[result.table.verdict != "baseline"]
    tau = result.rank_agreement()
    assert tau["logme"] == pytest.approx(kendalltau(rows.logme, rows.probe_score)[0])
    assert tau["hscore"] == pytest.approx(kendalltau(rows.hscore, rows.probe_score)[0])


def test_the_pixel_baseline_decodes_each_image_once_and_scores_as_its_pipeline(
    data, monkeypatch
):
    """The auto baseline's pixels depend on no fold: computed once, they give
    exactly the fold scores of the SmallPixels pipeline cross-validated whole."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    import sktransfer.selection as selection

    X, y = data
    calls = []
    real = selection.prepare_image
    monkeypatch.setattr(
        selection, "prepare_image", lambda *a: calls.append(1) or real(*a)
    )
    result = rank_backbones(X, y, ["test-cnn"], cv=4, verbose=False)
    assert len(calls) == len(X)  # once per image, not once per fold
    folds = StratifiedKFold(4, shuffle=True, random_state=0)
    whole = cross_val_score(selection._baseline("image", False), X, y, cv=folds)
    np.testing.assert_array_equal(result.fold_scores_["baseline"], whole)
