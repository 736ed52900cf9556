"""sktransfer.adapt: the -1 convention, diagnosis, frozen-feature adapters,
label-free scorers and the refit rule (issue 19)."""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.semi_supervised import LabelSpreading, SelfTrainingClassifier

from sktransfer import PretrainedFeatureExtractor, domain_shift
from sktransfer.adapt import (
    CORAL,
    CircularValidationScorer,
    DeepEmbeddedValidationScorer,
    DomainStandardScaler,
    EncodedLabels,
    ImportanceWeightedScorer,
    LabeledOnly,
    PredictionEntropyScorer,
    is_unlabeled,
    source_only_unless_better,
)
from sktransfer.adapt import datasets as shifted

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def digit_pair():
    """Handwritten vs. font-rendered digits, as raw 64-pixel features."""
    Hs, hy = shifted.handwritten_digits()
    Fd, fy = shifted.font_digits(n_per_font=2)
    return (
        Hs.reshape(len(Hs), -1).astype(float),
        hy,
        Fd.reshape(len(Fd), -1).astype(float),
        fy,
    )


def _mixed(ys, n_target):
    return np.r_[ys, -np.ones(n_target, dtype=int)]


# ------------------------------------------------------------- the -1 convention
def test_unlabeled_rows_in_every_label_form():
    assert is_unlabeled([0, -1, 2]).tolist() == [False, True, False]
    assert is_unlabeled(np.array(["a", -1, "b"], dtype=object)).tolist() == [
        False,
        True,
        False,
    ]
    assert is_unlabeled(np.array(["a", "-1"])).tolist() == [False, True]
    assert is_unlabeled(pd.Series(["x", -1], dtype=object)).tolist() == [False, True]
    # True == -1 is False, and a bool is never "unlabelled"
    assert is_unlabeled(np.array([True, -1], dtype=object)).tolist() == [False, True]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(["cat", "dog", "-2"]), st.just(-1))))
def test_unlabeled_mask_marks_exactly_the_minus_ones(labels):
    y = np.array(labels, dtype=object)
    assert is_unlabeled(y).tolist() == [
        v == -1 and not isinstance(v, str) for v in labels
    ]


# ------------------------------------------------------------- diagnosis
def test_random_halves_show_no_shift_and_a_real_pair_does(digit_pair):
    Xs, ys, Xt, _ = digit_pair
    idx = np.random.default_rng(0).permutation(len(Xs))
    same = domain_shift(Xs[idx[::2]], Xs[idx[1::2]], y_source=ys[idx[::2]])
    assert same.auc <= 0.6
    assert same.verdict == "no detectable shift"
    assert same.mmd_pvalue > 0.01
    shifted = domain_shift(Xs, Xt, y_source=ys)
    assert shifted.auc >= 0.85
    assert shifted.auc_interval[0] <= shifted.auc <= shifted.auc_interval[1]
    assert shifted.verdict.startswith("shift")
    assert shifted.mmd_pvalue < 0.05
    assert shifted.far_fraction > same.far_fraction
    text = str(shifted)
    assert "ROC AUC" in text and "MMD" in text and "target samples lie far" in text


def test_diagnosis_embeds_inputs_through_the_extractor_cache(images, count_embeds):
    X, _ = images
    ext = PretrainedFeatureExtractor("test-cnn")
    report = domain_shift(X[:12], X[12:], backbone=ext)
    assert count_embeds["n"] == 24 and report.n_target == 12
    domain_shift(X[:12], X[12:], backbone=ext)
    assert count_embeds["n"] == 24  # the second diagnosis: all from the cache


def test_diagnosis_display_draws_both_panels(digit_pair):
    Xs, ys, Xt, _ = digit_pair
    display = domain_shift(Xs[:300], Xt[:200], y_source=ys[:300]).plot()
    assert len(display.axes_) == 2
    assert "ROC AUC" in display.axes_[0].get_title()


def test_diagnosis_rejects_bad_arguments():
    X = np.zeros((10, 2))
    with pytest.raises(ValueError, match="at least 2 source"):
        domain_shift(X[:1], X)
    with pytest.raises(ValueError, match="cv must be"):
        domain_shift(X, X, cv=1)
    with pytest.raises(ValueError, match="y_source has 3 labels"):
        domain_shift(X, X, y_source=[0, 1, 0])


# ------------------------------------------------------------- adapters
def test_domain_standardisation_maps_each_domain_by_its_own_statistics():
    rng = np.random.default_rng(0)
    Xs, Xt = rng.normal(0, 1, (80, 3)), rng.normal(4, 3, (60, 3))
    y = _mixed(rng.integers(0, 2, 80), 60)
    dss = DomainStandardScaler()
    Z = dss.fit_transform(np.r_[Xs, Xt], y)
    np.testing.assert_allclose(Z[:80].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(Z[80:].std(0), 1, atol=1e-5)
    # new rows are target rows unless told otherwise
    np.testing.assert_allclose(dss.transform(Xt), Z[80:], atol=1e-5)
    source = clone(dss).set_params(transform_domain="source").fit(np.r_[Xs, Xt], y)
    np.testing.assert_allclose(source.transform(Xs), Z[:80], atol=1e-5)
    assert dss.get_feature_names_out().tolist() == ["x0", "x1", "x2"]


def test_adapters_warn_without_target_rows():
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.warns(UserWarning, match="no unlabelled target rows"):
        Z = CORAL().fit(X, np.arange(20) % 2).transform(X)
    assert Z.shape == X.shape


def test_coral_matches_target_covariance_and_leaves_target_rows_alone():
    rng = np.random.default_rng(1)
    Xs = rng.normal(0, 1, (300, 3))
    Xt = (
        rng.normal(0, 1, (300, 3))
        @ np.array([[2.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 0.3, 3.0]])
        + 5
    )
    y = _mixed(rng.integers(0, 3, 300), 300)
    coral = CORAL(reg=1e-4)
    Z = coral.fit_transform(np.r_[Xs, Xt], y)
    np.testing.assert_allclose(np.cov(Z[:300].T), np.cov(Xt.T), rtol=0.02, atol=0.02)
    np.testing.assert_allclose(Z[:300].mean(0), Xt.mean(0), atol=1e-4)
    np.testing.assert_allclose(coral.transform(Xt), Xt, atol=1e-4)


def test_coral_rejects_a_negative_ridge():
    with pytest.raises(ValueError, match="'reg' parameter of CORAL"):
        CORAL(reg=-1).fit(np.zeros((4, 2)), [0, 1, -1, -1])


def test_labeled_only_never_learns_minus_one_and_keeps_string_labels():
    X = np.array([[0.0], [1.0], [0.2], [0.8], [5.0]])
    y = np.array(["no", "yes", -1, -1, -1], dtype=object)
    clf = LabeledOnly(LogisticRegression()).fit(X, y)
    assert clf.classes_.tolist() == ["no", "yes"]
    assert set(clf.predict(X)) <= {"no", "yes"}
    assert clf.predict_proba(X).shape == (5, 2)
    with pytest.raises(ValueError, match="no labelled row"):
        LabeledOnly(LogisticRegression()).fit(X[:2], [-1, -1])


def test_adaptation_pipeline_in_cross_validate_and_grid_search(digit_pair):
    Xs, ys, Xt, _ = digit_pair
    X, y = np.r_[Xs, Xt] / 16, _mixed(ys, len(Xt))
    head = LabeledOnly(LogisticRegression(max_iter=3000))
    pipe = Pipeline([("adapt", DomainStandardScaler()), ("clf", head)])
    out = cross_validate(pipe, X, y, cv=KFold(3, shuffle=True, random_state=0),
                         scoring=ImportanceWeightedScorer())  # fmt: skip
    assert np.all((out["test_score"] > 0) & (out["test_score"] <= 1))
    grid = GridSearchCV(
        pipe,
        {"adapt": ["passthrough", DomainStandardScaler(), CORAL()]},
        cv=KFold(3, shuffle=True, random_state=0),
        scoring=PredictionEntropyScorer(),
        refit=source_only_unless_better("adapt"),
    ).fit(X, y)
    assert grid.best_index_ in (0, 1, 2)
    assert set(grid.predict(Xt)) <= set(range(10))


def test_self_training_on_embeddings_with_unlabelled_rows():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0] * 8, [3.0] * 8])
    labels = rng.integers(0, 2, 60)
    X = centers[labels] + rng.normal(0, 0.7, (60, 8))
    y = labels.copy()
    y[20:] = -1  # 40 of 60 rows unlabelled
    model = make_pipeline(
        PretrainedFeatureExtractor("test-mlp"),
        SelfTrainingClassifier(LogisticRegression(), threshold=0.8),
    ).fit(X, y)
    steps = model[-1]
    assert (steps.transduction_[20:] != -1).any()  # it labelled target rows
    assert model.predict(X).shape == (60,)


# ------------------------------------------------------------- scorers
def _two_cluster_case():
    """Source: a cluster near the target (labels learnable) and one far from
    it; the classifier is right near the target, wrong far from it."""
    rng = np.random.default_rng(0)
    near = rng.normal(0, 0.5, (100, 2))
    far = rng.normal(6, 0.5, (100, 2))
    target = rng.normal(0, 0.5, (100, 2))
    X = np.r_[near, far, target]
    y = np.r_[(near[:, 0] > 0).astype(int), (far[:, 0] > 6).astype(int),
              -np.ones(100, dtype=int)]  # fmt: skip
    rule = (X[:, 0] > 0).astype(int)  # right near 0, wrong on the far cluster's half

    class Fixed:
        classes_ = np.array([0, 1])

        def predict(self, Z):
            return (Z[:, 0] > 0).astype(int)

        def predict_proba(self, Z):
            p = 1 / (1 + np.exp(-4 * Z[:, 0]))
            return np.c_[1 - p, p]

    return X, y, rule, Fixed()


def test_importance_weighting_scores_the_target_like_source_rows():
    X, y, rule, clf = _two_cluster_case()
    plain = np.mean(rule[:200] == y[:200])
    weighted = ImportanceWeightedScorer()(clf, X, y)
    assert weighted > plain + 0.2  # the far, wrong cluster counts for little
    dev = DeepEmbeddedValidationScorer()(clf, X, y)
    assert np.isfinite(dev) and dev < 0


def test_importance_weights_are_flat_without_shift():
    """Target rows drawn like the source: the weighted score is the plain one."""
    rng = np.random.default_rng(0)
    Xs = rng.normal(0, 1, (300, 2))
    Xt = rng.normal(0, 1, (300, 2))
    ys = (Xs[:, 0] + rng.normal(0, 0.8, 300) > 0).astype(int)
    clf = LogisticRegression().fit(Xs, ys)
    plain = np.mean(clf.predict(Xs) == ys)
    weighted = ImportanceWeightedScorer()(clf, np.r_[Xs, Xt], _mixed(ys, 300))
    assert abs(weighted - plain) < 0.03


def test_scorers_score_source_rows_as_source_rows():
    """Held-out source rows go through the adapter's source map, not the target's."""
    rng = np.random.default_rng(0)
    Xs = rng.normal(0, 1, (200, 2))
    Xt = Xs[:150] * 3 + 10
    ys = (Xs[:, 0] > 0).astype(int)
    X, y = np.r_[Xs, Xt], _mixed(ys, 150)
    pipe = make_pipeline(DomainStandardScaler(), LabeledOnly(LogisticRegression()))
    pipe.fit(X, y)
    assert ImportanceWeightedScorer()(pipe, X, y) > 0.9
    assert pipe[0].transform_domain == "target"  # restored after scoring


def _moved_clusters(labels=(0, 1)):
    """Two source clusters at x = -2 and 2 labelled by the sign of x; the
    target's clusters moved to x = 1 and 5: a source-only boundary at 0
    calls every target row the second class."""
    rng = np.random.default_rng(0)
    side = rng.integers(0, 2, 200)
    Xs = np.c_[np.where(side, 2.0, -2.0), np.zeros(200)] + rng.normal(0, 0.4, (200, 2))
    t_side = rng.integers(0, 2, 120)
    Xt = np.c_[np.where(t_side, 5.0, 1.0), np.zeros(120)] + rng.normal(0, 0.4, (120, 2))
    names = np.asarray(labels, dtype=object)
    y = np.r_[names[side], np.full(120, -1, dtype=object)]
    if all(isinstance(v, int) for v in labels):
        y = y.astype(np.int64)
    return np.r_[Xs, Xt], y, names[t_side]


@pytest.mark.parametrize("labels", [(0, 1), ("left", "right")])
def test_circular_validation_sees_what_adaptation_does_on_the_target(labels):
    X, y, truth = _moved_clusters(labels)
    source_only = LabeledOnly(LogisticRegression()).fit(X, y)
    adapted = make_pipeline(DomainStandardScaler(), LabeledOnly(LogisticRegression()))
    adapted.fit(X, y)
    assert np.mean(source_only.predict(X[200:]) == truth) < 0.7
    assert np.mean(adapted.predict(X[200:]) == truth) > 0.95
    scorer = CircularValidationScorer()
    with pytest.warns(UserWarning, match="every target row was predicted"):
        plain_score = scorer(source_only, X, y)  # all one class: a constant back
    assert plain_score == pytest.approx(0.5)
    before = adapted.predict(X[200:])
    assert scorer(adapted, X, y) > 0.95
    np.testing.assert_array_equal(adapted.predict(X[200:]), before)  # a clone refit
    assert scorer.__class__(metric="accuracy")(adapted, X, y) > 0.95
    # importance weighting reads source rows only: it cannot tell these apart
    iw = ImportanceWeightedScorer()
    assert abs(iw(source_only, X, y) - iw(adapted, X, y)) < 0.05


def test_circular_validation_chooses_in_a_grid_search_and_checks_its_input():
    X, y, truth = _moved_clusters(("left", "right"))
    pipe = Pipeline(
        [("adapt", "passthrough"), ("clf", LabeledOnly(LogisticRegression()))]
    )
    search = GridSearchCV(
        pipe,
        {"adapt": ["passthrough", DomainStandardScaler()]},
        cv=KFold(3, shuffle=True, random_state=0),
        scoring=CircularValidationScorer(),
        refit=source_only_unless_better("adapt"),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the constant source-only folds
        search.fit(X, y)
    assert isinstance(search.best_params_["adapt"], DomainStandardScaler)
    assert np.mean(search.predict(X[200:]) == truth) > 0.95
    with pytest.raises(ValueError, match="needs source rows"):
        CircularValidationScorer()(search.best_estimator_, X[:200], y[:200])
    with pytest.raises(ValueError, match="metric must be one of"):
        CircularValidationScorer(metric="f1")(search.best_estimator_, X, y)


def test_encoded_labels_lets_label_spreading_take_string_labels():
    X, y, truth = _moved_clusters(("left", "right"))
    with pytest.raises((TypeError, ValueError)):
        LabelSpreading(kernel="knn", n_neighbors=5).fit(X, y)  # why it exists
    model = make_pipeline(
        DomainStandardScaler(),
        EncodedLabels(LabelSpreading(kernel="knn", n_neighbors=5)),
    ).fit(X, y)
    assert model[-1].classes_.tolist() == ["left", "right"]
    assert np.mean(model.predict(X[200:]) == truth) > 0.95
    assert set(model[-1].transduction_) == {"left", "right"}
    assert model.predict_proba(X[:3]).shape == (3, 2)
    with pytest.raises(ValueError, match="no labelled row"):
        EncodedLabels(LabelSpreading()).fit(X[200:], y[200:])


def test_refit_rule_prefers_source_only_within_the_noise():
    rule = source_only_unless_better("adapt")
    results = {
        "params": [{"adapt": "passthrough"}, {"adapt": "x"}, {"adapt": "y"}],
        "mean_test_score": [0.80, 0.82, 0.95],
        "std_test_score": [0.05, 0.05, 0.01],
        "split0_test_score": [0] * 3,
        "split1_test_score": [0] * 3,
        "split2_test_score": [0] * 3,
    }
    assert rule(results) == 2  # +0.15 is far beyond the noise
    results["mean_test_score"] = [0.80, 0.82, 0.81]
    assert rule(results) == 0
    marker = object()
    rule = source_only_unless_better({"clf": marker})
    results["params"] = [{"clf": marker}, {"clf": "a"}, {"clf": "b"}]
    assert rule(results) == 0


def test_no_warning_escapes_a_plain_adaptation_fit(digit_pair):
    Xs, ys, Xt, _ = digit_pair
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_pipeline(CORAL(), LabeledOnly(LogisticRegression(max_iter=3000))).fit(
            np.r_[Xs, Xt] / 16, _mixed(ys, len(Xt))
        )
