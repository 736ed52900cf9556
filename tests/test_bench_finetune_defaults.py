"""benchmarks/bench_finetune_defaults.py: its ``old_defaults_on_90`` cell trains
on exactly the rows the defaults train on (their validation split dropped)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import sktransfer
from sktransfer import FineTunedClassifier

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # its `_common`
    spec = importlib.util.spec_from_file_location(
        "bench_finetune_defaults", ROOT / "benchmarks" / "bench_finetune_defaults.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("_common", None)


@pytest.mark.parametrize("one_row_class", [False, True])
def test_the_90_percent_cell_trains_on_the_defaults_training_rows(
    bench, monkeypatch, one_row_class
):
    rng = np.random.default_rng(0)
    y = np.array([f"noun.{c}" for c in rng.choice(list("abcdefgh"), 240)])
    if one_row_class:  # the estimator then keeps that row out of the split
        y[5] = "noun.zzz"
    X = [f"text {i}" for i in range(len(y))]
    seen = {}

    class SplitSeen(FineTunedClassifier):
        def get_split_datasets(self, X, y=None, **fit_params):
            train, valid = super().get_split_datasets(X, y, **fit_params)
            seen["defaults"] = sorted(int(i) for i in train.indices)
            return train, valid

    SplitSeen("test-text", max_epochs=1, random_state=3).fit(X, y)

    class FitSeen(FineTunedClassifier):
        def fit(self, X, y=None, **fit_params):
            seen["cell"] = sorted(int(text.split()[1]) for text in X)
            assert self.valid_size is None and self.head_init == "random"
            self.best_epoch_ = None
            return self

        def predict(self, X):
            return np.zeros(len(X))

    monkeypatch.setattr(sktransfer, "FineTunedClassifier", FitSeen)
    monkeypatch.setattr(bench, "BACKBONE", "test-text")
    bench.fit_cell(bench.CELLS["old_defaults_on_90"], X, y, X[:2], y[:2], 3)
    assert seen["cell"] == seen["defaults"]
    assert len(seen["cell"]) == len(y) - int(np.ceil(0.1 * len(y)))
