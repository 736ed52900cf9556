"""ZeroShotClassifier: class names instead of labelled examples (issue 20, item 2)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from sktransfer import PretrainedFeatureExtractor, ZeroShotClassifier

TEXTS = ["a match", "a recipe", "the final score", "bake the bread"] * 3
LABELS = ["sport", "cooking"] * 6


def test_fit_with_labels_only_sets_the_classes_and_scores_by_cosine():
    clf = ZeroShotClassifier("test-text").fit(None, ["sport", "cooking", "sport"])
    assert clf.classes_.tolist() == ["cooking", "sport"]
    ext = PretrainedFeatureExtractor("test-text", normalize=True).fit(["a"])
    expected = ext.transform(TEXTS[:4]) @ clf.class_embeddings_.T
    np.testing.assert_allclose(clf.decision_function(TEXTS[:4]), expected, atol=1e-6)
    proba = clf.predict_proba(TEXTS[:4])
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-6)
    assert clf.predict(TEXTS[:4]).tolist() == clf.classes_[proba.argmax(1)].tolist()
    assert clf.temperature_ == 0.05  # no labelled texts: the default


def test_templates_are_averaged_and_descriptions_replace_names():
    templates = ("This text is about {}.", "A story on {}.")
    clf = ZeroShotClassifier(
        "test-text", labels={0: "ball games", 1: "the kitchen"}, templates=templates
    ).fit()
    ext = PretrainedFeatureExtractor("test-text", normalize=True).fit(["a"])
    for i, text in enumerate(["ball games", "the kitchen"]):
        mean = ext.transform([t.format(text) for t in templates]).mean(0)
        np.testing.assert_allclose(
            clf.class_embeddings_[i], mean / np.linalg.norm(mean), atol=1e-6
        )
    assert clf.classes_.tolist() == [0, 1]


def test_temperature_auto_is_calibrated_on_labelled_texts():
    from sklearn.metrics import log_loss

    fixed = ZeroShotClassifier("test-text", temperature=0.05).fit(TEXTS, LABELS)
    tuned = ZeroShotClassifier("test-text").fit(TEXTS, LABELS)
    assert tuned.temperature_ != 0.05
    assert log_loss(LABELS, tuned.predict_proba(TEXTS), labels=tuned.classes_) <= (
        log_loss(LABELS, fixed.predict_proba(TEXTS), labels=fixed.classes_) + 1e-9
    )


@pytest.mark.parametrize(
    ("kwargs", "y", "match"),
    [
        ({"labels": ["sport", ""]}, None, "empty name or description"),
        ({"labels": ["sport", "sport"]}, None, "given twice"),
        ({"labels": {"a": "same", "b": "same"}}, None, "share a description"),
        ({"labels": ["sport"]}, None, "at least two classes"),
        ({"labels": ["a", "b"], "templates": ("no slot",)}, None, "exactly one"),
        ({}, None, "needs its classes"),
        ({"backbone": "test-cnn", "labels": ["a", "b"]}, None, "needs a text backbone"),
        ({"labels": ["a", "b"]}, ["a", "c"], r"labels \['c'\] not in labels="),
    ],
)
def test_bad_classes_are_clear_errors(kwargs, y, match):
    X = None if y is None else ["x", "y"]
    with pytest.raises(ValueError, match=match):
        ZeroShotClassifier(**{"backbone": "test-text", **kwargs}).fit(X, y)


def test_non_ascii_class_names_work():
    names = ["café crème", "日本の料理", "Ελλάδα", "naïve 🙂"]
    clf = ZeroShotClassifier("test-text", labels=names).fit()
    assert set(clf.predict(["un café", "寿司"])) <= set(names)


def test_in_a_pipeline_and_a_grid_search_over_templates_and_temperature():
    grid = GridSearchCV(
        ZeroShotClassifier("test-text"),
        {
            "templates": [("This text is about {}.",), ("{}",)],
            "temperature": [0.05, "auto"],
        },
        cv=2,
    ).fit(TEXTS, LABELS)
    assert set(grid.cv_results_["params"][0]) == {"templates", "temperature"}
    pipe = make_pipeline(ZeroShotClassifier("test-text")).fit(TEXTS, LABELS)
    assert pipe.score(TEXTS, LABELS) >= 0


@pytest.mark.slow
def test_the_packaged_sentence_encoder_classifies_by_class_name():
    texts = [
        "The striker scored twice and the team won the league.",
        "Whisk the eggs with sugar, then bake for twenty minutes.",
        "The central bank raised interest rates to fight inflation.",
        "The goalkeeper saved a penalty in the last minute.",
        "Simmer the tomato sauce with garlic and fresh basil.",
        "Shares fell sharply after the quarterly earnings report.",
    ]
    truth = ["sport", "cooking", "finance"] * 2
    clf = ZeroShotClassifier("all-MiniLM-L6-v2").fit(
        None, ["sport", "cooking", "finance"]
    )
    assert (clf.predict(texts) == np.array(truth)).mean() >= 5 / 6
