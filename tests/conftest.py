"""Shared fixtures. Every test runs offline: no test may download anything."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from PIL import Image

from sktransfer import clear_caches
from sktransfer._embedder import Embedder

# Set before anything imports huggingface_hub / transformers.
os.environ["SKTRANSFER_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Under pytest-xdist every worker gets a share of the cores: more torch threads
# than cores makes the many tiny ops of these tests spin and run 10x slower.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))


@pytest.fixture(autouse=True)
def seed():
    """Seed every RNG so that tests are reproducible (skorch's conftest style)."""
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - seeds code that uses the global RNG
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is present here")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def image_files(tmp_path, rng):
    """Twelve small JPEG/PNG files of two visibly different kinds, and labels."""
    paths, labels = [], []
    for i in range(12):
        label = i % 2
        arr = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
        if label:
            arr[:, :, 0] += 180  # reddish
        path = tmp_path / f"img_{i}.{'png' if i % 3 else 'jpg'}"
        Image.fromarray(arr).save(path)
        paths.append(str(path))
        labels.append(label)
    return paths, np.array(labels)


@pytest.fixture
def images(rng):
    """24 small images of two classes ("dog" ones reddish), for fine-tuning."""
    X = rng.integers(0, 60, (24, 40, 40, 3), np.uint8)
    y = np.array(["cat", "dog"] * 12)
    X[y == "dog", :, :, 0] += 180
    return X, y


@pytest.fixture
def texts():
    return (
        [
            "a wonderful, moving film",
            "dull and far too long",
            "great acting and a clever plot",
            "boring, I fell asleep",
            "an instant classic",
            "a waste of two hours",
        ],
        np.array([1, 0, 1, 0, 1, 0]),
    )


@pytest.fixture
def count_embeds(monkeypatch):
    """Count the samples that actually go through the network."""
    counter = {"n": 0}
    original = Embedder.embed

    def counting(self, samples, positions, *args, **kwargs):
        counter["n"] += len(positions)
        return original(self, samples, positions, *args, **kwargs)

    monkeypatch.setattr(Embedder, "embed", counting)
    clear_caches()
    yield counter
    clear_caches()
