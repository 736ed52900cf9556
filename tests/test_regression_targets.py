"""Regression targets across the float range, and fits whose loss becomes
non-finite (issue 18, item 4)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sktransfer import FineTunedClassifier, FineTunedRegressor


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, (24, 16, 16, 3), np.uint8)
    y = X.reshape(24, -1).mean(1) / 255 + rng.normal(0, 0.05, 24)
    return X, y


def _fit(X, y, **kw):
    params = dict(max_epochs=2, valid_size=None, random_state=0, strategy="full")
    params.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # sklearn's r2 at 1e300
        return FineTunedRegressor("test-cnn", **params).fit(X, y)


@settings(max_examples=12, deadline=None)
@given(
    exponent=st.integers(-30, 300),
    shift=st.floats(-5, 5),
    head_init=st.sampled_from(["probe", "random"]),
)
def test_any_finite_scale_of_y_fits_the_same_model(data, exponent, shift, head_init):
    """Standardised targets: fitting y * s + c gives the fit of y, rescaled,
    for any finite scale (1e39 overflowed float32; 1e30 gave NaN)."""
    X, y = data
    s = 10.0**exponent
    base = _fit(X, y, head_init=head_init).predict(X)
    scaled = _fit(X, y * s + shift * s, head_init=head_init).predict(X)
    assert np.isfinite(scaled).all()
    np.testing.assert_allclose(scaled / s, base + shift, rtol=1e-4, atol=1e-4)


def test_the_scaling_travels_with_save_params(data, tmp_path):
    X, y = data
    reg = _fit(X, y * 1e20)
    reg.save_params(f_params=tmp_path / "p.pt")
    fresh = FineTunedRegressor(
        "test-cnn", strategy="full", valid_size=None
    ).initialize()
    fresh.load_params(f_params=tmp_path / "p.pt")
    np.testing.assert_allclose(fresh.predict(X), reg.predict(X), rtol=1e-6)
    assert reg.target_scale_[0] > 1e18


def test_validation_scores_are_in_the_original_units(data):
    """valid_r2 of the kept epoch equals score() on the validation rows, in
    y's units (the network trains on standardised targets)."""
    X, y = data
    target = y * 1e6 + 3e6
    reg = _fit(X, target, valid_size=0.25, max_epochs=3)
    split = reg.get_split_datasets(X, reg._prepare_y(target, None, True))[1]
    kept = reg.best_epoch_
    recorded = (
        reg.start_scores_["valid_r2"]
        if kept == 0
        else reg.history[kept - 1, "valid_r2"]
    )
    rows = split.indices
    assert reg.score(X[rows], target[rows]) == pytest.approx(recorded, abs=1e-5)


@pytest.mark.parametrize("net", [FineTunedClassifier, FineTunedRegressor])
def test_a_loss_that_becomes_non_finite_stops_the_fit_and_says_what_to_try(data, net):
    X, y = data
    target = (y > np.median(y)).astype(int) if net is FineTunedClassifier else y
    model = net(
        "test-cnn",
        strategy="full",
        lr=1e12,
        max_epochs=8,
        valid_size=None,
        head_init="random",
        random_state=0,
    )
    with pytest.raises(
        FloatingPointError, match=r"training loss became (nan|inf).*smaller lr"
    ):
        model.fit(X, target)
