"""Transferability scores: hand-checked values and properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

from sktransfer.metrics import _evidence, hscore, logme_score


def direct_evidence(F, y, alpha, beta):
    """log N(y | 0, I/beta + F F^T/alpha) / n: the evidence, computed directly."""
    n = len(y)
    cov = np.eye(n) / beta + F @ F.T / alpha
    return multivariate_normal(np.zeros(n), cov).logpdf(y) / n


@pytest.mark.parametrize("n, d", [(40, 5), (12, 30), (3, 3)])
def test_evidence_equals_the_direct_gaussian_formula_at_its_maximum(n, d, rng):
    F = rng.normal(size=(n, d))
    y = F @ rng.normal(size=d) + 0.5 * rng.normal(size=n)
    U, s, _ = np.linalg.svd(F, full_matrices=False)
    ev, alpha, beta = _evidence(s, U, y, d, n_iter=500)
    assert ev == pytest.approx(direct_evidence(F, y, alpha, beta), rel=1e-6)
    if n > d:  # (with n <= d, y lies in F's span: the noise is not identifiable)
        for da, db in [(1.1, 1), (0.9, 1), (1, 1.1), (1, 0.9)]:  # a maximum
            assert direct_evidence(F, y, alpha * da, beta * db) < ev + 1e-9


def test_n_smaller_than_d_counts_the_zero_singular_values(rng):
    F = rng.normal(size=(6, 50))
    y = rng.normal(size=6)
    U, s, _ = np.linalg.svd(F, full_matrices=False)
    ev, alpha, beta = _evidence(s, U, y, 50, n_iter=500)
    assert np.isfinite(ev)
    assert ev == pytest.approx(direct_evidence(F, y, alpha, beta), rel=1e-6)


def test_one_vs_rest_is_the_mean_over_class_columns(rng):
    F = rng.normal(size=(30, 4))
    y = np.repeat(["a", "b", "c"], 10)
    columns = [logme_score(F, (y == c).astype(float), regression=True) for c in "abc"]
    assert logme_score(F, y) == pytest.approx(np.mean(columns))


def _separable(rng, n=60, d=6, classes=3):
    y = np.arange(n) % classes
    return rng.normal(size=(n, d)) + 4 * np.eye(classes, d)[y], y


@pytest.mark.parametrize("score", [logme_score, hscore])
def test_separable_beats_shuffled_labels(score, rng):
    F, y = _separable(rng)
    assert score(F, y) > score(F, rng.permutation(y)) + 0.1


@pytest.mark.parametrize("score", [logme_score, hscore])
def test_invariant_to_relabelling(score, rng):
    F, y = _separable(rng)
    names = np.array(["cat", "dog", "emu"])
    assert score(F, names[y]) == pytest.approx(score(F, names[(y + 1) % 3]))
    assert score(F, y) == pytest.approx(score(F, 10 * y + 7))


@pytest.mark.parametrize("score", [logme_score, hscore])
@pytest.mark.parametrize(
    "case",
    ["n_lt_d", "constant_features", "zero_features", "one_sample_class"],
)
def test_finite_on_degenerate_inputs(score, case, rng):
    F, y = _separable(rng, n=30)
    if case == "n_lt_d":
        F = rng.normal(size=(8, 200))
        y = np.arange(8) % 2
    elif case == "constant_features":
        F = F.copy()
        F[:, :3] = 5.0
    elif case == "zero_features":
        F = np.zeros_like(F)
    else:
        y = y.copy()
        y[0] = 99  # a class with a single sample
    assert np.isfinite(score(F, y))


def test_regression_scores_each_target_column(rng):
    F = rng.normal(size=(50, 5))
    good = F @ rng.normal(size=5)
    noise = rng.normal(size=50)
    two = np.column_stack([good, noise])
    assert logme_score(F, good, regression=True) > logme_score(
        F, noise, regression=True
    )
    assert logme_score(F, two, regression=True) == pytest.approx(
        np.mean([logme_score(F, c, regression=True) for c in two.T])
    )


def test_hscore_of_perfectly_separated_means(rng):
    # features = one-hot class indicators: E[f|y] = f, so H is near its maximum
    y = np.arange(40) % 4
    F = np.eye(4)[y]
    assert 2.5 < hscore(F, y) <= 3.0 + 1e-9  # at most classes - 1


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 30),
    st.integers(1, 40),
    st.integers(2, 4),
    st.integers(0, 2**32 - 1),
)
def test_scores_are_finite_for_any_shape(n, d, classes, seed):
    rng = np.random.default_rng(seed)
    F = rng.normal(size=(n, d)) * rng.choice([1e-3, 1, 1e3])
    y = np.arange(n) % classes
    assert np.isfinite(logme_score(F, y))
    assert np.isfinite(hscore(F, y))


@pytest.mark.parametrize("n, d, k", [(40, 300, 3), (200, 1280, 2), (15, 20, 15)])
def test_hscore_through_woodbury_equals_the_direct_inverse(n, d, k):
    """Fewer samples than features: the n x n path gives the d x d formula."""
    from sklearn.covariance import ledoit_wolf

    rng = np.random.default_rng(n)
    y = rng.integers(0, k, n)
    F = rng.normal(size=(n, d)) + 0.5 * y[:, None]
    Fc = F - F.mean(axis=0)
    shrunk, a = ledoit_wolf(Fc, assume_centered=True)
    means = np.stack([Fc[y == c].mean(axis=0) for c in np.unique(y)])
    means = means[np.searchsorted(np.unique(y), y)]
    direct = np.trace(
        np.linalg.pinv(shrunk, hermitian=True) @ ((1 - a) * means.T @ means / n)
    )
    assert hscore(F, y) == pytest.approx(direct, rel=1e-9)
