"""The fine-tuners' adaptation= (issue 19): DANN, Deep CORAL, entropy, on
unlabelled target rows labelled -1 in the same fit."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sktransfer import FineTunedClassifier
from sktransfer.finetune._adaptation import coral_loss, grad_reverse, parse_adaptation


@pytest.fixture
def shifted_images(images):
    X, y = images
    target = X[:16].copy()
    target[..., 2] = np.clip(target[..., 2].astype(int) + 90, 0, 255)  # bluer
    labels = np.r_[y.astype(object), np.full(16, -1, dtype=object)]
    return np.concatenate([X, target]), labels


def _fit(X, y, **kwargs):
    params = {"strategy": "full", "max_epochs": 2, "random_state": 0, **kwargs}
    return FineTunedClassifier("test-cnn", **params).fit(X, y)


@pytest.mark.parametrize("adaptation", ["dann", "coral", "entropy", "dann+coral"])
def test_each_adaptation_fits_with_string_labels_and_minus_one(
    shifted_images, adaptation
):
    X, y = shifted_images
    # a count: 10 % of 24 labelled rows would be too few to choose an epoch on
    clf = _fit(X, y, adaptation=adaptation, valid_size=8)
    assert clf.classes_.tolist() == ["cat", "dog"]  # -1 is never a class
    assert set(clf.predict(X)) <= {"cat", "dog"}
    # LP-FT's start and the best-epoch rule still work, on source rows only
    assert clf.start_scores_ is not None and "valid_acc" in clf.start_scores_
    assert clf.best_epoch_ in (0, 1, 2)
    assert np.isfinite(clf.history[:, "train_loss"]).all()
    pickle.loads(pickle.dumps(clf))  # no training tensor left on the module


def test_adaptation_changes_training_and_dann_trains_its_domain_head(shifted_images):
    X, y = shifted_images
    plain = _fit(X[:24], y[:24].astype(str), valid_size=None, head_init="random")
    dann = _fit(X, y, adaptation="dann", valid_size=None, head_init="random")
    assert hasattr(dann.module_, "domain") and not hasattr(plain.module_, "domain")
    start = FineTunedClassifier(
        "test-cnn", strategy="full", adaptation="dann", random_state=0,
        max_epochs=1, valid_size=None, head_init="random", classes=["cat", "dog"],
    ).initialize()  # fmt: skip
    before = start.module_.domain.net[0].weight.detach().clone()
    start.partial_fit(X, y)
    assert not torch.equal(before, start.module_.domain.net[0].weight)
    p_plain, p_dann = plain.predict_proba(X), dann.predict_proba(X)
    assert not np.allclose(p_plain, p_dann)


def test_target_rows_do_not_enter_the_classification_loss(shifted_images):
    """The loss is cross-entropy on the source rows plus the weighted terms."""
    X, y = shifted_images
    clf = _fit(X, y, adaptation="entropy", max_epochs=1)
    logits = torch.randn(6, 2)
    y_true = torch.tensor([0, 1, -100, -100, 1, -100])
    source = y_true >= 0
    ce = torch.nn.functional.cross_entropy(logits[source], y_true[source])
    clf.set_params(adaptation_weight=0.0)
    assert float(clf.get_loss(logits, y_true, training=True)) == pytest.approx(
        float(ce)
    )
    clf.set_params(adaptation_weight=2.0)
    p = torch.softmax(logits[~source], 1)
    entropy = -(p * p.log()).sum(1).mean()
    both = clf.get_loss(logits, y_true, training=True)
    assert float(both) == pytest.approx(float(ce + 2.0 * entropy), rel=1e-5)
    only_target = clf.get_loss(logits[~source], y_true[~source], training=True)
    assert np.isfinite(float(only_target))  # a batch with no source row


def test_texts_adapt_with_batches_that_mix_domains():
    texts = ["good", "great", "bad", "awful"] * 4 + ["fine film!", "a dud..."] * 4
    y = np.array(["pos", "pos", "neg", "neg"] * 4 + [-1, -1] * 4, dtype=object)
    clf = FineTunedClassifier(
        "test-text", strategy="full", max_epochs=1, adaptation="coral",
        random_state=0, valid_size=None,
    ).fit(texts, y)  # fmt: skip
    it = clf.get_iterator(clf.get_dataset(texts, clf._prepare_y(y, None, True)), True)
    # every batch mixes the domains; texts are grouped by length within each
    assert it.batch_sampler.lengths is not None
    codes = clf._prepare_y(y, None, True)
    for batch in it.batch_sampler:
        labels = np.asarray([codes[i] for i in batch])
        assert (labels >= 0).any() and (labels < 0).any()
    assert clf.predict(texts[:2]).tolist()[0] in ("pos", "neg")


def test_few_labelled_rows_with_adaptation_train_without_a_choice(shifted_images):
    X, y = shifted_images
    with pytest.warns(UserWarning, match="adaptation: no cross-validated choice"):
        clf = _fit(X, y, adaptation="coral")
    assert len(clf.history) == clf.max_epochs and clf.start_scores_ is None


def test_adaptation_errors_and_warnings(shifted_images):
    X, y = shifted_images
    with pytest.raises(ValueError, match="one or more of"):
        _fit(X, y, adaptation="mmd-ish")
    with pytest.raises(ValueError, match="strategy='head' keeps them frozen"):
        _fit(X, y, adaptation="dann", strategy="head")
    with pytest.raises(ValueError, match="'adaptation_weight' parameter"):
        _fit(X, y, adaptation="dann", adaptation_weight=-1.0)
    with pytest.warns(UserWarning, match="no unlabelled target row"):
        _fit(X[:24], y[:24].astype(str), adaptation="dann", max_epochs=1)


def test_without_adaptation_minus_one_is_an_ordinary_label(images):
    X, _ = images
    y = np.array([-1, 1] * 12)
    clf = _fit(X, y, max_epochs=1)
    assert clf.classes_.tolist() == [-1, 1]


def test_gradient_reversal_and_coral_loss():
    x = torch.ones(3, requires_grad=True)
    grad_reverse(x, 0.5).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), -0.5)
    a = torch.randn(50, 4)
    assert float(coral_loss(a, a)) == pytest.approx(0.0, abs=1e-7)
    assert float(coral_loss(a, 3 * a)) > 0
    assert parse_adaptation("dann+entropy") == ("dann", "entropy")
    with pytest.raises(ValueError):
        parse_adaptation("dann+dann")


# ----------------------------------------------------------- the regressor
@pytest.fixture
def shifted_regression(images):
    X, _ = images
    target = X[:16].copy()
    target[..., 2] = np.clip(target[..., 2].astype(int) + 90, 0, 255)
    y = X.mean(axis=(1, 2, 3)).astype(np.float64)
    return np.concatenate([X, target]), np.r_[y, np.full(16, np.nan)], y


def _fit_regressor(X, y, **kwargs):
    from sktransfer import FineTunedRegressor

    params = {"strategy": "full", "max_epochs": 2, "random_state": 0, **kwargs}
    return FineTunedRegressor("test-cnn", **params).fit(X, y)


@pytest.mark.parametrize("adaptation", ["dann", "coral", "dann+coral"])
def test_the_regressor_adapts_to_rows_whose_targets_are_nan(
    shifted_regression, adaptation
):
    X, y, y_source = shifted_regression
    reg = _fit_regressor(X, y, adaptation=adaptation, valid_size=8)
    # the scaling, the probe start and the validation read labelled rows only
    np.testing.assert_allclose(reg.target_mean_, [y_source.mean()])
    assert reg.start_scores_ is not None
    assert np.isfinite(reg.history[:, "valid_loss"]).all()
    assert np.isfinite(reg.history[:, "train_loss"]).all()
    assert np.isfinite(reg.predict(X)).all()
    assert hasattr(reg.module_, "domain") == ("dann" in adaptation)
    plain = _fit_regressor(X[:24], y_source, valid_size=8)
    assert not np.allclose(plain.predict(X), reg.predict(X))


def test_regressor_target_rows_do_not_enter_the_loss(shifted_regression):
    X, y, _ = shifted_regression
    reg = _fit_regressor(X, y, adaptation="coral", max_epochs=1, valid_size=None)
    y_pred = torch.randn(6, 1)
    y_true = torch.tensor([[0.5], [1.0], [np.nan], [np.nan], [-1.0], [np.nan]])
    source = ~torch.isnan(y_true[:, 0])
    mse = torch.nn.functional.mse_loss(y_pred[source], y_true[source])
    loss = reg.get_loss(y_pred, y_true, training=False)
    assert float(loss) == pytest.approx(float(mse))


def test_regressor_adaptation_errors(shifted_regression):
    X, y, y_source = shifted_regression
    with pytest.raises(ValueError, match="a regressor has none"):
        _fit_regressor(X, y, adaptation="entropy")
    with pytest.raises(ValueError, match="missing values"):
        _fit_regressor(X, y)  # NaN without adaptation= is still an error
    partly = np.c_[np.r_[y_source, np.zeros(16)], y]  # one target of two missing
    with pytest.raises(ValueError, match="missing values"):
        _fit_regressor(X, partly, adaptation="coral")
    with pytest.warns(UserWarning, match="no unlabelled target row"):
        _fit_regressor(X[:24], y_source, adaptation="dann", max_epochs=1)


# ------------------------------------------------- the label-free best epoch
@pytest.mark.parametrize(
    "scorer", ["ImportanceWeightedScorer", "DeepEmbeddedValidationScorer",
               "PredictionEntropyScorer"],
)  # fmt: skip
def test_a_label_free_scorer_chooses_the_best_epoch(shifted_images, scorer):
    from sktransfer import adapt

    X, y = shifted_images
    X, y = np.concatenate([X, X]), np.r_[y, y]  # enough rows to hold 8 out
    clf = _fit(X, y, adaptation="dann", valid_size=12, max_epochs=3,
               scoring=getattr(adapt, scorer)())  # fmt: skip
    scores = [clf.start_scores_["valid_score"], *clf.history[:, "valid_score"]]
    assert np.isfinite(scores).all()
    assert clf.best_epoch_ == int(np.argmax(scores))  # epoch 0: the probe
    if scorer == "PredictionEntropyScorer":
        # by hand: the kept (best) epoch's entropy on the held-out target rows
        _, valid = clf.get_split_datasets(X, clf._prepare_y(y, None, True))
        held = np.asarray(valid.indices)
        target = held[np.asarray([v == -1 for v in y[held]])]
        assert len(target) > 0
        p = np.clip(clf.predict_proba(X[target]), 1e-12, 1)
        by_hand = -np.mean(-(p * np.log(p)).sum(1))
        assert max(scores) == pytest.approx(by_hand, abs=1e-4)


def test_label_free_epoch_scoring_refuses_what_it_cannot_do(shifted_images):
    from sktransfer.adapt import CircularValidationScorer, PredictionEntropyScorer

    X, y = shifted_images
    with pytest.raises(ValueError, match="cannot score one epoch"):
        _fit(X, y, adaptation="dann", scoring=CircularValidationScorer())
    Xr, yr = X[:24], np.arange(24.0)
    with pytest.raises(ValueError, match="regression scorer"):
        _fit_regressor(Xr, yr, scoring=PredictionEntropyScorer())


# ------------------------------------------- target rows per epoch (ratio)
class _RowCounter:
    """Rows of each training epoch, by the labels skorch hands the batches."""

    def __init__(self):
        from skorch.callbacks import Callback

        counter = self

        class Count(Callback):
            def on_epoch_begin(self, net, **kwargs):
                counter.epochs.append([])

            def on_batch_begin(self, net, batch=None, training=False, **kwargs):
                if training:
                    counter.epochs[-1].extend(np.asarray(batch[1]).tolist())

        self.epochs = []
        self.callback = Count()


@pytest.mark.parametrize("ratio, n_target", [(0.25, 6), (0.5, 12), (None, 16)])
def test_each_epoch_draws_the_adaptation_ratio_of_target_rows(
    shifted_images, ratio, n_target
):
    X, y = shifted_images  # 24 labelled rows, 16 target rows
    counter = _RowCounter()
    _fit(
        X, y, adaptation="dann", adaptation_ratio=ratio, valid_size=None,
        max_epochs=3, callbacks=[("count", counter.callback)],
    )  # fmt: skip
    assert len(counter.epochs) == 3
    for labels in counter.epochs:
        labels = np.asarray(labels)
        assert (labels >= 0).sum() == 24  # every source row, every epoch
        assert (labels < 0).sum() == n_target


def test_target_rows_are_drawn_afresh_each_epoch():
    from sktransfer.finetune._data import TargetShareBatchSampler

    labeled = np.r_[np.ones(20, bool), np.zeros(40, bool)]
    sampler = TargetShareBatchSampler(
        labeled, 0.25, 8, generator=torch.Generator().manual_seed(0)
    )
    draws = [sorted(r for b in sampler for r in b if r >= 20) for _ in range(6)]
    assert all(len(d) == 5 for d in draws)
    assert len({tuple(d) for d in draws}) > 1  # not the same rows every epoch
    assert len(set().union(*draws)) > 5


@settings(max_examples=80, deadline=None)
@given(
    n_source=st.integers(0, 40),
    n_target=st.integers(0, 40),
    ratio=st.one_of(st.none(), st.floats(0.01, 3.0)),
    batch_size=st.integers(1, 12),
    grouped=st.booleans(),
    seed=st.integers(0, 10),
)
def test_target_share_batch_sampler_properties(
    n_source, n_target, ratio, batch_size, grouped, seed
):
    from sktransfer.finetune._data import TargetShareBatchSampler

    labeled = np.r_[np.ones(n_source, bool), np.zeros(n_target, bool)]
    rng = np.random.default_rng(seed)
    labeled = labeled[rng.permutation(len(labeled))]
    lengths = rng.integers(1, 50, len(labeled)) if grouped else None
    sampler = TargetShareBatchSampler(
        labeled, ratio, batch_size, lengths, torch.Generator().manual_seed(seed)
    )
    batches = list(sampler)
    rows = [r for b in batches for r in b]
    assert len(batches) == len(sampler)
    assert all(0 < len(b) <= batch_size for b in batches)
    assert len(rows) == len(set(rows))  # no row twice
    assert sorted(r for r in rows if labeled[r]) == np.flatnonzero(labeled).tolist()
    expected = (
        n_target if ratio is None else min(n_target, int(np.ceil(ratio * n_source)))
    )
    assert sum(not labeled[r] for r in rows) == expected
    # every batch holds each domain's share, to one row
    per_batch = [sum(labeled[r] for r in b) for b in batches]
    if batches:
        assert max(per_batch) - min(per_batch) <= 1


def test_text_batches_group_lengths_within_each_domain():
    from sktransfer.finetune._data import TargetShareBatchSampler

    # target texts are all longer than source texts (a shift in length)
    rng = np.random.default_rng(0)
    lengths = np.r_[rng.integers(5, 60, 400), rng.integers(40, 120, 100)]
    labeled = np.r_[np.ones(400, bool), np.zeros(100, bool)]
    gen = torch.Generator().manual_seed(0)
    grouped = TargetShareBatchSampler(labeled, 0.25, 20, lengths, gen)
    mixed = TargetShareBatchSampler(labeled, 0.25, 20, None, gen)

    def padding(batches):  # padded tokens / real tokens
        pad = sum(len(b) * lengths[b].max() for b in batches)
        return pad / sum(lengths[b].sum() for b in batches)

    batches = list(grouped)
    assert all(0 < sum(~labeled[b]) < len(b) for b in batches)  # both domains
    # each domain's rows in a batch are of similar length
    src = [np.ptp(lengths[[r for r in b if labeled[r]]]) for b in batches]
    assert np.median(src) < 10
    assert padding(batches) < padding(list(mixed)) - 0.2


def test_the_dann_loss_weighs_both_domains_alike(shifted_images):
    from sktransfer.finetune._adaptation import adaptation_loss

    X, y = shifted_images
    clf = _fit(X, y, adaptation="dann", max_epochs=1, valid_size=None)
    module = clf.module_
    feats = torch.randn(10, module.domain.net[0].in_features)
    labeled = torch.tensor([True] * 8 + [False] * 2)  # a batch of 8 + 2
    module.last_features = feats
    got = adaptation_loss(clf, torch.zeros(10, 2), labeled).detach()
    with torch.no_grad():
        logits = module.domain(feats, 1.0)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, (~labeled).float(), reduction="none"
    )
    expected = 0.5 * bce[labeled].mean() + 0.5 * bce[~labeled].mean()
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    assert float(got) != pytest.approx(float(bce.mean()), rel=1e-3)
