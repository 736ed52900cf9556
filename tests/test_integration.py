"""The extractor inside scikit-learn's composition and model-selection tools."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import FeatureUnion, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from sktransfer import PretrainedFeatureExtractor


@pytest.mark.parametrize("head", [LogisticRegression(max_iter=500), SVC()])
def test_pipeline_with_classical_heads(head, image_files):
    X, y = image_files
    pipe = make_pipeline(PretrainedFeatureExtractor("test-cnn"), StandardScaler(), head)
    pipe.fit(X, y)
    assert pipe.score(X, y) >= 0.9  # red vs dark images are easily separable
    assert set(pipe.predict(X)) <= {0, 1}


def test_gridsearch_over_head_and_backbone(image_files):
    X, y = image_files
    pipe = make_pipeline(
        PretrainedFeatureExtractor("test-cnn"), LogisticRegression(max_iter=500)
    )
    grid = GridSearchCV(
        pipe,
        {
            "pretrainedfeatureextractor__layer": [None, "blocks.1"],
            "logisticregression__C": [0.1, 10.0],
        },
        cv=StratifiedKFold(3),
    )
    grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_score_ > 0.5


@pytest.mark.slow
def test_gridsearch_over_backbone_name(image_files):
    X, y = image_files
    pipe = make_pipeline(PretrainedFeatureExtractor(), LogisticRegression(max_iter=500))
    grid = GridSearchCV(
        pipe,
        {"pretrainedfeatureextractor__backbone": ["test-cnn", "efficientnet_lite0"]},
        cv=StratifiedKFold(2),
    ).fit(X, y)
    widths = {
        name: grid.best_estimator_[0]._n_features_out
        for name in [grid.best_params_["pretrainedfeatureextractor__backbone"]]
    }
    assert next(iter(widths.values())) in (32, 1280)
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()


def test_column_transformer_image_text_numeric(image_files, texts):
    paths, y = image_files
    words = (texts[0] * 2)[: len(paths)]
    df = pd.DataFrame(
        {
            "photo": paths,
            "review": words,
            "price": np.arange(len(paths), dtype=float),
            "stars": np.linspace(1, 5, len(paths)),
        }
    )
    ct = ColumnTransformer(
        [
            ("img", PretrainedFeatureExtractor("test-cnn"), "photo"),
            ("txt", PretrainedFeatureExtractor("test-text"), "review"),
            ("num", StandardScaler(), ["price", "stars"]),
        ]
    )
    model = make_pipeline(ct, LogisticRegression(max_iter=1000)).fit(df, y)
    assert model[0].transform(df).shape == (len(df), 32 + 32 + 2)
    names = model[0].get_feature_names_out()
    assert names[0] == "img__test-cnn_0" and names[32] == "txt__test-text_0"
    assert names[-1] == "num__stars"
    assert model.score(df, y) > 0.5
    # a list-of-one-column selection passes a DataFrame: also fine
    ct2 = ColumnTransformer(
        [("img", PretrainedFeatureExtractor("test-cnn"), ["photo"])]
    )
    np.testing.assert_allclose(ct2.fit_transform(df), model[0].transform(df)[:, :32])


def test_feature_union(texts):
    union = FeatureUnion(
        [
            ("mean", PretrainedFeatureExtractor("test-text", pooling="mean")),
            ("cls", PretrainedFeatureExtractor("test-text", pooling="cls")),
        ]
    )
    assert union.fit_transform(texts[0]).shape == (6, 64)


def test_cross_validate_in_parallel(image_files):
    X, y = image_files
    pipe = make_pipeline(
        PretrainedFeatureExtractor("test-cnn"), LogisticRegression(max_iter=500)
    )
    res = cross_validate(pipe, X, y, cv=StratifiedKFold(3), n_jobs=2)
    assert res["test_score"].shape == (3,) and res["test_score"].mean() >= 0.8


def test_self_training_classifier(texts):
    from sklearn.semi_supervised import SelfTrainingClassifier

    X, y = texts
    y = y.copy()
    y[-2:] = -1  # unlabeled
    clf = make_pipeline(
        PretrainedFeatureExtractor("test-text"),
        SelfTrainingClassifier(LogisticRegression(max_iter=500)),
    ).fit(X, y)
    assert clf.predict(X).shape == (6,)
