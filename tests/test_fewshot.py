"""FewShotClassifier (issue 20, item 4): SetFit's recipe on our backbones."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from sktransfer import FewShotClassifier, FineTunedRegressor
from sktransfer.fewshot._pairs import draw_pairs, pair_budget

TEXTS = ["good", "great", "fine", "nice", "bad", "awful", "poor", "vile"]
LABELS = np.array(["pos"] * 4 + ["neg"] * 4)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 3), min_size=2, max_size=30),
    st.integers(1, 200),
)
def test_pairs_are_labelled_by_whether_the_classes_agree(labels, n_pairs):
    y = np.asarray(labels)
    pairs = draw_pairs(y, n_pairs, np.random.default_rng(0))
    assert len(pairs) <= n_pairs
    if len(pairs):
        assert (pairs[:, 0] != pairs[:, 1]).all()
        same = (y[pairs[:, 0]] == y[pairs[:, 1]]).astype(int)
        assert (same == pairs[:, 2]).all()
    if len(set(labels)) > 1:
        assert len(pairs) == n_pairs  # a negative pair always exists


def test_pair_budget_is_bounded():
    assert pair_budget("auto", np.zeros(16)) == 120  # all distinct pairs of 16
    assert pair_budget("auto", np.zeros(200)) == 8000  # 40 per sample
    assert pair_budget(7, np.zeros(3)) == 7


def test_fit_tunes_the_encoder_and_fits_a_head():
    clf = FewShotClassifier("test-text", random_state=0, lr=1e-3).fit(TEXTS, LABELS)
    assert clf.classes_.tolist() == ["neg", "pos"]
    assert clf.n_pairs_ == 28 and clf.fit_seconds_ > 0
    tuned = dict(clf.encoder_.named_parameters())
    frozen = FewShotClassifier("test-text", lr=1e-3, epochs=1, n_pairs=1)
    base = frozen._load_backbone().model
    changed = [
        n
        for n, p in base.named_parameters()
        if f"sktransfer_inner.{n}" in tuned
        and not torch.equal(p, tuned[f"sktransfer_inner.{n}"].cpu())
    ]
    assert changed  # the copy trained; the registry's model did not move
    proba = clf.predict_proba(TEXTS)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-6)
    assert set(clf.predict(TEXTS)) <= {"neg", "pos"}
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(again.predict_proba(TEXTS), proba, rtol=1e-5)


def test_same_seed_same_model():
    a = FewShotClassifier("test-text", random_state=3).fit(TEXTS, LABELS)
    b = FewShotClassifier("test-text", random_state=3).fit(TEXTS, LABELS)
    np.testing.assert_array_equal(a.predict_proba(TEXTS), b.predict_proba(TEXTS))


def test_images_and_one_sample_per_class():
    X = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), np.uint8)
    clf = FewShotClassifier("test-cnn", random_state=0).fit(X, ["a", "b", "c"])
    assert clf.predict(X).shape == (3,)
    assert clf.n_pairs_ == 3  # only negatives exist


def test_class_texts_join_the_training_set():
    clf = FewShotClassifier("test-text", class_texts=True, random_state=0)
    clf.fit(TEXTS[:2] + TEXTS[4:6], LABELS[[0, 1, 4, 5]])
    assert clf.n_pairs_ == 15  # 4 samples + 2 class names: 6 * 5 / 2 pairs
    described = FewShotClassifier(
        "test-text", class_texts={"pos": "praise", "neg": "blame"}, random_state=0
    ).fit(TEXTS, LABELS)
    assert described.predict(["praise"]).tolist()[0] in ("pos", "neg")
    with pytest.raises(ValueError, match="no description for"):
        FewShotClassifier("test-text", class_texts={"pos": "x"}).fit(TEXTS, LABELS)
    with pytest.raises(ValueError, match="not a text backbone"):
        FewShotClassifier("test-cnn", class_texts=True).fit(
            np.zeros((2, 8, 8, 3), np.uint8), [0, 1]
        )


def test_pipeline_and_grid_search_over_its_parameters():
    search = GridSearchCV(
        make_pipeline(FewShotClassifier("test-text", random_state=0)),
        {"fewshotclassifier__epochs": [1, 2]},
        cv=2,
    ).fit(TEXTS, LABELS)
    assert search.best_params_["fewshotclassifier__epochs"] in (1, 2)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="one class"):
        FewShotClassifier("test-text").fit(TEXTS, ["a"] * 8)
    with pytest.raises(ValueError, match="'n_pairs' parameter"):
        FewShotClassifier("test-text", n_pairs=0).fit(TEXTS, LABELS)
    with pytest.raises(ValueError, match="8 samples but y has 2"):
        FewShotClassifier("test-text").fit(TEXTS, LABELS[:2])


def test_regression_is_not_broken_by_the_few_shot_module():
    X = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    reg = FineTunedRegressor("test-mlp", max_epochs=2, valid_size=None, random_state=0)
    assert reg.fit(X, X[:, 0]).predict(X).shape == (30,)


def _running_stats(module):
    return {
        n: b.detach().cpu().clone()
        for n, b in module.named_buffers()
        if n.endswith(("running_mean", "running_var"))
    }


@pytest.mark.parametrize("freeze", [True, False])
def test_batchnorm_statistics_stay_pretrained_unless_asked(freeze):
    """test-cnn has BatchNorm layers: by default tuning keeps their running
    statistics (few-shot batches make poor ones); freeze_batchnorm=False lets
    them move, as in plain training mode."""
    X = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), np.uint8)
    y = ["a", "b"] * 4
    clf = FewShotClassifier(
        "test-cnn", random_state=0, lr=1e-3, freeze_batchnorm=freeze
    ).fit(X, y)
    before = _running_stats(clf._load_backbone().model)
    after = {
        n.removeprefix("sktransfer_inner."): b
        for n, b in _running_stats(clf.encoder_).items()
    }
    assert before and set(before) <= set(after)
    same = all(torch.equal(before[n], after[n].cpu()) for n in before)
    assert same == freeze


def _spy_on_steps(monkeypatch):
    """Record each optimizer step's learning rate and gradient norm (the
    norm as the step sees it: after any clipping)."""
    from sktransfer.fewshot import _classifier

    seen, real = [], _classifier._adamw

    def spy(params, lr):
        optimizer = real(params, lr)

        def hook(opt, args, kwargs):
            grads = [p.grad for g in opt.param_groups for p in g["params"]]
            norm = torch.linalg.vector_norm(
                torch.stack(
                    [torch.linalg.vector_norm(g) for g in grads if g is not None]
                )
            )
            seen.append((opt.param_groups[0]["lr"], float(norm), opt))

        optimizer.register_step_pre_hook(hook)
        return optimizer

    monkeypatch.setattr(_classifier, "_adamw", spy)
    return seen


def test_setfit_schedule_warms_up_decays_and_clips(monkeypatch):
    from sktransfer.fewshot._classifier import lr_factor

    seen = _spy_on_steps(monkeypatch)
    kw = dict(n_pairs=160, batch_size=16, lr=1e-3, random_state=0)
    FewShotClassifier("test-text", max_grad_norm=0.05, **kw).fit(TEXTS, LABELS)
    lrs, norms = [s[0] for s in seen], [s[1] for s in seen]
    assert len(lrs) == 10  # 160 pairs, 16 a step
    expected = [1e-3 * lr_factor(10, 0.1, "linear")(i) for i in range(10)]
    np.testing.assert_allclose(lrs, expected)
    assert lrs[1] == pytest.approx(1e-3) and lrs[0] < lrs[1] and lrs[-1] < lrs[1] / 5
    assert max(norms) <= 0.05 * (1 + 1e-4)
    groups = seen[0][2].param_groups  # biases and norms are not decayed
    assert {g["weight_decay"] for g in groups} == {0.0, 0.01}
    assert all(
        p.ndim < 2 for g in groups if g["weight_decay"] == 0 for p in g["params"]
    )
    seen.clear()
    FewShotClassifier(
        "test-text", max_grad_norm=None, schedule="constant", warmup=0.0, **kw
    ).fit(TEXTS, LABELS)
    assert [s[0] for s in seen] == [1e-3] * 10
    assert max(s[1] for s in seen) > 0.05  # so the clip above did clip


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 500), st.floats(0, 0.99), st.sampled_from(["linear", "constant"]))
def test_lr_factor_rises_then_holds_or_falls_and_never_stalls(steps, warmup, schedule):
    from sktransfer.fewshot._classifier import lr_factor

    f = lr_factor(steps, warmup, schedule)
    factors = np.array([f(i) for i in range(steps)])
    assert (factors > 0).all() and (factors <= 1).all()
    peak = int(np.argmax(factors))
    assert (np.diff(factors[: peak + 1]) > 0).all()
    tail = np.diff(factors[peak:])
    assert (tail <= 1e-12).all() if schedule == "linear" else (tail == 0).all()
