"""sktransfer.dask.embed and model selection on a local Dask cluster (2 processes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed")

import dask.array as da
import dask.bag as db
import dask.dataframe as dd
from distributed import Client, LocalCluster
from joblib import parallel_config
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import make_pipeline

from sktransfer import (
    DiskCache,
    FineTunedClassifier,
    PretrainedFeatureExtractor,
)
from sktransfer.dask import embed
from sktransfer.exceptions import InputError


def _install_counters():
    """On a worker: count backbone loads and samples through the network."""
    from sktransfer import clear_caches
    from sktransfer._embedder import Embedder
    from sktransfer.backbones import _factory

    clear_caches()
    counts = {"loads": 0, "embedded": 0}
    if not hasattr(_factory, "_sktransfer_test_original_load"):
        _factory._sktransfer_test_original_load = _factory._load
        Embedder._sktransfer_test_original_embed = Embedder.embed

    def load(*args, **kwargs):
        counts["loads"] += 1
        return _factory._sktransfer_test_original_load(*args, **kwargs)

    def embed(self, samples, positions, *args, **kwargs):
        counts["embedded"] += len(positions)
        return Embedder._sktransfer_test_original_embed(
            self, samples, positions, *args, **kwargs
        )

    _factory._load = load
    Embedder.embed = embed
    _factory._sktransfer_test_counts = counts


def _counts():
    from sktransfer.backbones import _factory

    return dict(_factory._sktransfer_test_counts)


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture
def counted(client):
    client.run(_install_counters)
    return lambda: list(client.run(_counts).values())


def test_series_of_paths_equals_transform_one_load_per_worker(
    client, counted, image_files
):
    paths = image_files[0]
    ext = PretrainedFeatureExtractor("test-cnn", cache=None).fit(paths[:1])
    series = dd.from_pandas(pd.Series(paths, name="path"), npartitions=6)
    known = embed(ext, series, lengths="compute")
    assert known.chunks[0] == (2, 2, 2, 2, 2, 2) and known.shape == (12, 32)
    out = embed(ext, series)  # one graph: sizes unknown until computed
    assert np.isnan(out.shape[0]) and out.shape[1] == 32
    np.testing.assert_allclose(out.compute(), ext.transform(paths), atol=1e-5)
    counts = counted()
    assert all(c["loads"] <= 1 for c in counts), counts  # once per worker
    assert sum(c["loads"] for c in counts) >= 1
    assert sum(c["embedded"] for c in counts) == 12


def test_bag_of_texts_with_empty_partitions(client, texts):
    X = texts[0] * 2
    ext = PretrainedFeatureExtractor("test-text", cache=None).fit(X)
    bag = db.from_sequence(X, npartitions=4).filter(lambda t: "o" in t)
    kept = [t for t in X if "o" in t]
    empty = db.from_sequence(X, npartitions=3).filter(lambda t: False)
    out = embed(ext, bag)
    np.testing.assert_allclose(out.compute(), ext.transform(kept), atol=1e-5)
    nothing = embed(ext, empty)
    assert nothing.compute().shape == (0, ext._n_features_out)
    df = dd.from_pandas(pd.DataFrame({"text": X}), npartitions=3)
    part = df[df.text.str.len() > 100]  # every partition empty
    assert embed(ext, part).compute().shape == (0, ext._n_features_out)


def test_array_of_images(client, rng):
    images = rng.integers(0, 255, (10, 32, 32, 3), np.uint8)
    ext = PretrainedFeatureExtractor("test-cnn", cache=None).fit(images[:1])
    arr = da.from_array(images, chunks=(4, 16, 32, 3))  # split H too: merged
    out = embed(ext, arr)
    assert out.chunks[0] == (4, 4, 2)
    np.testing.assert_allclose(out.compute(), ext.transform(images), atol=1e-5)


def test_shared_disk_cache_embeds_nothing_twice(client, counted, image_files, tmp_path):
    paths = image_files[0]
    ext = PretrainedFeatureExtractor(
        "test-cnn", cache=DiskCache(tmp_path / "cache")
    ).fit(paths[:1])
    series = dd.from_pandas(pd.Series(paths), npartitions=4)
    first = embed(ext, series).compute()
    assert sum(c["embedded"] for c in counted()) == 12
    second = embed(ext, series).compute()
    assert sum(c["embedded"] for c in counted()) == 12  # all from the shared cache
    np.testing.assert_array_equal(first, second)


def test_errors_name_the_row_in_the_whole_collection(client, image_files, tmp_path):
    paths = list(image_files[0])
    paths[7] = str(tmp_path / "missing.jpg")
    series = dd.from_pandas(pd.Series(paths), npartitions=3)
    strict = PretrainedFeatureExtractor("test-cnn", cache=None).fit(paths[:1])
    with pytest.raises(InputError, match="row 7: image file"):
        embed(strict, series).compute()
    lenient = PretrainedFeatureExtractor("test-cnn", cache=None, on_error="nan")
    out = embed(lenient.fit(paths[:1]), series).compute()
    assert np.isnan(out[7]).all() and np.isfinite(np.delete(out, 7, 0)).all()


def test_bad_collections_are_clear_errors(image_files):
    ext = PretrainedFeatureExtractor("test-cnn", cache=None).fit(image_files[0][:1])
    with pytest.raises(ValueError, match="one column"):
        embed(ext, dd.from_pandas(pd.DataFrame({"a": [1], "b": [2]}), npartitions=1))
    with pytest.raises(TypeError, match="Dask Series"):
        embed(ext, image_files[0])
    with pytest.raises(TypeError, match="fitted PretrainedFeatureExtractor"):
        embed(LogisticRegression(), db.from_sequence([1]))


def test_grid_search_on_the_cluster_equals_local(client, image_files):
    X, y = image_files
    pipe = make_pipeline(
        PretrainedFeatureExtractor("test-cnn", cache=None), LogisticRegression()
    )
    grid = {"logisticregression__C": [0.1, 1.0]}
    local = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    with parallel_config(backend="dask"):
        remote = GridSearchCV(pipe, grid, cv=3, n_jobs=-1).fit(X, y)
    np.testing.assert_allclose(
        remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"]
    )
    np.testing.assert_allclose(
        remote.cv_results_["split0_test_score"], local.cv_results_["split0_test_score"]
    )


def test_fine_tuner_cross_validation_on_the_cluster_equals_local(client, image_files):
    X, y = image_files
    net = FineTunedClassifier(
        "test-cnn", strategy="last_n", max_epochs=2, valid_size=None, random_state=0
    )
    local = cross_validate(net, X, y, cv=3)
    with parallel_config(backend="dask"):
        remote = cross_validate(net, X, y, cv=3, n_jobs=-1)
    np.testing.assert_allclose(remote["test_score"], local["test_score"])


def test_errors_name_the_index_label_as_in_memory(client, image_files, tmp_path):
    paths = list(image_files[0])
    paths[7] = str(tmp_path / "missing.jpg")
    index = [f"img-{i:02d}" for i in range(len(paths))]  # dask sorts the index
    pds = pd.Series(paths, index=index)
    strict = PretrainedFeatureExtractor("test-cnn", cache=None).fit(paths[:1])
    with pytest.raises(
        InputError, match=r"row 7 \(index 'img-07'\): image file"
    ) as mem:
        strict.transform(pds)
    series = dd.from_pandas(pds, npartitions=3)
    with pytest.raises(InputError) as dist:
        embed(strict, series).compute()
    assert str(dist.value) == str(mem.value)


def test_a_filtered_collection_is_computed_once_without_warnings(client, texts, caplog):
    """Offsets are counted in the embedding's own graph: distributed sees each
    key once (no "Detected different `run_spec`" warning)."""
    X = texts[0] * 4
    ext = PretrainedFeatureExtractor("test-text", cache=None).fit(X)
    bag = db.from_sequence(X, npartitions=4).map(str.upper).filter(lambda t: "O" in t)
    kept = [t.upper() for t in X if "O" in t.upper()]
    with caplog.at_level("WARNING", logger="distributed"):
        out = embed(ext, bag).compute()
        again = embed(ext, bag).compute()
    np.testing.assert_allclose(out, ext.transform(kept), atol=1e-5)
    np.testing.assert_array_equal(out, again)
    assert not [r for r in caplog.records if "run_spec" in r.getMessage()]
    sized = embed(ext, db.from_sequence(X, npartitions=2), lengths=[12, 12])
    assert sized.chunks[0] == (12, 12)
    with pytest.raises(ValueError, match="lengths= said 5"):
        embed(ext, db.from_sequence(X, npartitions=2), lengths=[5, 12]).compute()
    with pytest.raises(ValueError, match="'lengths' parameter"):
        embed(ext, db.from_sequence(X, npartitions=2), lengths="guess")
