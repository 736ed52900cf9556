"""The content-addressed embedding cache: one forward pass per unique sample."""

from __future__ import annotations

import time

import numpy as np
from PIL import Image
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline

from sktransfer import PretrainedFeatureExtractor
from sktransfer._cache import DiskCache, MemoryCache, get_cache


def test_memory_cache_serves_repeats_and_survives_clone(count_embeds, texts):
    X = texts[0]
    ext = PretrainedFeatureExtractor("test-text").fit(X)
    base = count_embeds["n"]  # fit's probe
    a = ext.transform(X)
    assert count_embeds["n"] - base == len(X)
    b = clone(ext).fit(X).transform(X)
    np.testing.assert_array_equal(a, b)
    assert count_embeds["n"] - base == len(X)  # the clone's fit knows the width


def test_gridsearch_embeds_each_sample_about_once(count_embeds, image_files):
    X, y = image_files
    pipe = make_pipeline(
        PretrainedFeatureExtractor("test-cnn"), LogisticRegression(max_iter=300)
    )
    GridSearchCV(
        pipe, {"logisticregression__C": [0.01, 0.1, 1, 10]}, cv=StratifiedKFold(3)
    ).fit(X, y)
    # the width is learnt by a probe outside the embedding loop, once per process
    assert count_embeds["n"] == len(X)


def test_settings_are_part_of_the_key(count_embeds, texts):
    X = texts[0]
    ext = PretrainedFeatureExtractor("test-text").fit(X)
    mean = ext.transform(X)
    cls = ext.set_params(pooling="cls").fit(X).transform(X)
    assert not np.allclose(mean, cls)


def test_cache_none_disables(count_embeds, texts):
    X = texts[0]
    ext = PretrainedFeatureExtractor("test-text", cache=None).fit(X)
    start = count_embeds["n"]
    ext.transform(X)
    ext.transform(X)
    assert count_embeds["n"] - start == 2 * len(X)


def test_changed_file_is_never_served_stale(count_embeds, tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (40, 40), (250, 0, 0)).save(path)
    ext = PretrainedFeatureExtractor("test-cnn").fit([str(path)])
    red = ext.transform([str(path)])
    time.sleep(0.01)
    Image.new("RGB", (40, 40), (0, 0, 250)).save(path)
    blue = ext.transform([str(path)])
    assert not np.allclose(red, blue)
    fresh = PretrainedFeatureExtractor("test-cnn", cache=None).fit([str(path)])
    np.testing.assert_allclose(blue, fresh.transform([str(path)]), atol=1e-6)


def test_disk_cache_shared_by_processes(tmp_path, image_files):
    X, y = image_files
    cache_dir = tmp_path / "emb"
    pipe = make_pipeline(
        PretrainedFeatureExtractor("test-cnn", cache=str(cache_dir)),
        LogisticRegression(max_iter=300),
    )
    cross_validate(pipe, X, y, cv=StratifiedKFold(3), n_jobs=2)
    store = DiskCache(cache_dir)
    assert len(store) == len(X)  # every sample stored, by whichever worker
    ext = PretrainedFeatureExtractor("test-cnn", cache=str(cache_dir)).fit(X)
    ref = PretrainedFeatureExtractor("test-cnn", cache=None).fit(X).transform(X)
    np.testing.assert_allclose(ext.transform(X), ref, atol=1e-6)


def test_disk_cache_size_limit_and_partial_files(tmp_path):
    probe = DiskCache(tmp_path / "probe")
    probe.put_many(["aa" + "k" * 30], np.ones((1, 16), np.float32))
    per_file = probe.nbytes  # disk space of one row file (a block, usually)
    store = DiskCache(tmp_path / "store", max_bytes=3 * per_file)
    for i in range(10):  # ten batches of one row: ten segments
        store.put_many([f"{i:02d}" + "k" * 30], np.ones((1, 16), np.float32))
    assert store.nbytes <= store.max_bytes and 0 < len(store.files()) <= 3
    kept = store.get_many([f"{i:02d}" + "k" * 30 for i in range(10)])
    assert [r is not None for r in kept][-1]  # the newest survive pruning


def test_memory_cache_is_bounded():
    store = MemoryCache(max_bytes=5 * 16 * 4)
    store.put_many([str(i) for i in range(10)], np.ones((10, 16), np.float32))
    assert len(store) == 5 and store.nbytes <= store.max_bytes
    assert store.get_many(["0", "9"])[0] is None


def test_get_cache_values(tmp_path):
    assert get_cache(None) is None
    assert get_cache("memory") is get_cache("memory")
    assert isinstance(get_cache(tmp_path), DiskCache)
