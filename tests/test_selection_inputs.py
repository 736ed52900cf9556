"""rank_backbones' inputs: each mistake is a clear error naming the fix
(issue 18, item 12)."""

from __future__ import annotations

import numpy as np
import pytest

from sktransfer import rank_backbones


@pytest.fixture
def images(rng):
    return rng.integers(0, 255, (20, 16, 16, 3), np.uint8), np.arange(20) % 2


def rank(X, y, candidates=("test-cnn",), **kw):
    return rank_backbones(
        X,
        y,
        candidates if not isinstance(candidates, tuple) else list(candidates),
        verbose=False,
        **kw,
    )


@pytest.mark.parametrize(
    ("case", "error", "match"),
    [
        ("empty", ValueError, r"candidates is empty: pass at least one backbone"),
        ("string", TypeError, r"Wrap one in a list: candidates=\['test-cnn'\]"),
        ("regression accuracy", ValueError, r"scoring='accuracy' scores classes.*'r2'"),
        (
            "cv too large",
            ValueError,
            r"cv=5 stratified folds .* class 1 has 3\. Pass cv=3",
        ),
        ("one class", ValueError, r"y has one class \(0\)"),
        ("nan", ValueError, r"missing values \(None/NaN\) at rows \[0\]"),
        (
            "text backbone, images",
            ValueError,
            r"'test-text' is a text backbone, but X holds images",
        ),
        (
            "image backbone, texts",
            ValueError,
            r"'test-cnn' is an image backbone, but X holds texts",
        ),
    ],
)
def test_bad_inputs_are_clear_errors(images, rng, case, error, match):
    X, y = images
    texts = [f"text {i}" for i in range(20)]
    call = {
        "empty": lambda: rank(X, y, []),
        "string": lambda: rank(X, y, "test-cnn"),
        "regression accuracy": lambda: rank(X, rng.normal(size=20), scoring="accuracy"),
        "cv too large": lambda: rank(X, np.r_[np.zeros(17), np.ones(3)].astype(int)),
        "one class": lambda: rank(X, np.zeros(20, int)),
        "nan": lambda: rank(X, np.r_[np.nan, np.arange(19) % 2]),
        "text backbone, images": lambda: rank(X, y, ["test-text"]),
        "image backbone, texts": lambda: rank(texts, y, ["test-cnn"]),
    }[case]
    with pytest.raises(error, match=match):
        call()


def test_the_proposed_cv_works(images):
    X, _ = images
    y = np.r_[np.zeros(17), np.ones(3)].astype(int)
    result = rank(X, y, cv=3, baseline=None)
    assert len(result.table) == 1
