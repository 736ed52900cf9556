"""Process-wide state has one owner and one way to clear it; caches are handles."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline

import sktransfer
from sktransfer import DiskCache, MemoryCache, PretrainedFeatureExtractor
from sktransfer.backbones import load_backbone, loaded_backbones
from sktransfer.backbones._factory import MAX_LOADED
from sktransfer.backbones._loaded import MAX_COMPILED


@pytest.fixture(autouse=True)
def fresh_state():
    sktransfer.clear_caches()
    yield
    sktransfer.clear_caches()


def _use(loaded, n_in=None):
    """Create every kind of derived state on ``loaded``."""
    loaded.on_device(torch.device("meta"))  # a device copy (no GPU needed)
    loaded.feature_model(torch.device("cpu"), compile_options={"backend": "eager"})
    loaded.width(n_features_in=n_in)


def test_derived_state_is_bounded_and_freed_with_its_backbone():
    seen = []
    for n_in in range(2, 2 + MAX_LOADED + 3):  # more backbones than the LRU holds
        loaded = load_backbone("test-mlp", n_features_in=n_in)
        _use(loaded, n_in)
        seen.append(loaded)
    live = loaded_backbones()
    assert len(live) == MAX_LOADED
    totals = {k: 0 for k in ("device_copies", "compiled", "widths")}
    for b in live:
        for k, v in b.derived_state().items():
            totals[k] += v
    assert totals == {"device_copies": MAX_LOADED, "compiled": MAX_LOADED, "widths": 4}
    evicted = [b for b in seen if all(b is not x for x in live)]
    assert len(evicted) == 3
    for b in evicted:  # evicting a backbone freed everything derived from it
        assert b.derived_state() == {"device_copies": 0, "compiled": 0, "widths": 0}


def test_compiled_forms_per_backbone_are_bounded():
    loaded = load_backbone("test-cnn")
    for layer in range(3):
        for pooling in ("avg", "max"):
            loaded.feature_model(
                torch.device("cpu"), layer, pooling, {"backend": "eager"}
            )
    assert loaded.derived_state()["compiled"] == MAX_COMPILED


def test_clear_caches_empties_everything(texts, tmp_path):
    X = texts[0]
    PretrainedFeatureExtractor("test-text").fit(X).transform(X)
    PretrainedFeatureExtractor("test-text", cache=str(tmp_path)).fit(X).transform(X)
    loaded = loaded_backbones()[0]
    _use(loaded)
    assert len(sktransfer.memory_cache()) > 0 and loaded_backbones()
    sktransfer.clear_caches()
    assert len(sktransfer.memory_cache()) == 0
    assert loaded_backbones() == []
    assert loaded.derived_state() == {"device_copies": 0, "compiled": 0, "widths": 0}
    assert len(DiskCache(tmp_path)) == len(set(X))  # files on disk are the user's


def test_a_user_module_is_never_remembered():
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(1))
    ext = PretrainedFeatureExtractor(module, cache=None)
    X = np.zeros((2, 20, 20, 3), np.uint8)
    a = ext.fit(X).transform(X)
    with torch.no_grad():
        module[0].bias += 1.0  # the user changes the module in place
    b = clone(ext).fit(X).transform(X)
    assert not np.allclose(a, b)
    users = [b for b in loaded_backbones() if b.is_user_module]
    assert users  # (clone deep-copies the module: each copy is its own backbone)
    for loaded in users:
        assert loaded.derived_state() == {
            "device_copies": 0,
            "compiled": 0,
            "widths": 0,
        }


# ------------------------------------------------------------ cache handles
@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_cache_objects_are_shared_by_clones_and_pickle_without_locks(kind, tmp_path):
    store = MemoryCache() if kind == "memory" else DiskCache(tmp_path)
    ext = PretrainedFeatureExtractor("test-text", cache=store)
    assert clone(ext).cache is store and copy.deepcopy(store) is store
    X = ["a cat", "a dog"]
    clone(ext).fit(X).transform(X)
    hits = store.hits
    clone(ext).fit(X).transform(X)  # the clone's lookups move the caller's counters
    assert store.hits == hits + 2
    blob = pickle.dumps(ext)
    assert b"_thread" not in blob and b"RLock" not in blob
    assert pickle.loads(blob).cache is store  # same process: the same handle


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_cache_objects_in_gridsearch_and_parallel_cv(kind, tmp_path, image_files):
    X, y = image_files
    store = MemoryCache() if kind == "memory" else DiskCache(tmp_path)
    pipe = make_pipeline(
        PretrainedFeatureExtractor("test-cnn", cache=store),
        LogisticRegression(max_iter=300),
    )
    search = GridSearchCV(pipe, {"logisticregression__C": [0.1, 1]}, cv=3).fit(X, y)
    assert search.best_score_ > 0.5 and store.hits > 0
    scores = cross_validate(pipe, X, y, cv=StratifiedKFold(2), n_jobs=2)
    assert len(scores["test_score"]) == 2
    if kind == "disk":  # the worker processes wrote to the same directory
        assert len(store) == len(X)


def test_default_memory_cache_unpickles_as_the_processs_default():
    ext = PretrainedFeatureExtractor("test-text")
    assert pickle.loads(pickle.dumps(sktransfer.memory_cache())) is (
        sktransfer.memory_cache()
    )
    assert pickle.loads(pickle.dumps(ext)).cache == "memory"


# ------------------------------------------------------------ refit rule
@pytest.mark.parametrize(
    "change",
    [
        {"layer": 0},
        {"backbone": "test-text"},
        {"pooling": "max"},
        {"weights": "random"},
    ],
)
def test_changing_the_network_after_fit_names_fit(change, image_files):
    X, _ = image_files
    ext = PretrainedFeatureExtractor("test-cnn").fit(X)
    ext.set_params(**change)
    name = next(iter(change))
    with pytest.raises(NotFittedError, match=rf"{name}=.*set after fit\. Call fit"):
        ext.transform(X)
    with pytest.raises(NotFittedError, match="Call fit again"):
        ext.get_feature_names_out()
    out = ext.fit(X[:2] if name != "backbone" else ["a", "b"]).get_feature_names_out()
    assert len(out) == ext._n_features_out


def test_runtime_settings_may_change_after_fit(image_files):
    X, _ = image_files
    ext = PretrainedFeatureExtractor("test-cnn", cache=None).fit(X)
    ref = ext.transform(X)
    ext.set_params(batch_size=3, num_workers=0, device="cpu")
    np.testing.assert_allclose(ext.transform(X), ref, atol=1e-5)
