"""FineTunedClassifier / FineTunedRegressor on the tiny test backbones."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate

from sktransfer import FineTunedClassifier, FineTunedRegressor


def make(**kw):
    params = dict(max_epochs=2, batch_size=8, valid_size=None, random_state=0)
    params.update(kw)
    return FineTunedClassifier("test-cnn", **params)


def test_string_labels_classes_and_proba(images):
    X, y = images
    clf = make(strategy="full", max_epochs=8, lr=1e-2).fit(X, y)
    assert clf.classes_.tolist() == ["cat", "dog"]
    proba = clf.predict_proba(X)
    assert proba.shape == (24, 2) and np.allclose(proba.sum(1), 1, atol=1e-5)
    pred = clf.predict(X)
    assert set(pred) <= {"cat", "dog"}
    assert (pred == y).mean() >= 0.9
    np.testing.assert_array_equal(pred, clf.classes_[proba.argmax(1)])


def test_gapped_integer_labels(images):
    X, _ = images
    y = np.array([3, 10, 42] * 8)
    clf = make(strategy="head").fit(X, y)
    assert clf.classes_.tolist() == [3, 10, 42]
    assert set(clf.predict(X)) <= {3, 10, 42}


def test_single_class_is_an_error(images):
    X, _ = images
    with pytest.raises(ValueError, match="one class"):
        make().fit(X, ["a"] * len(X))


def test_bad_strategy(images):
    with pytest.raises(
        ValueError,
        match="The 'strategy' parameter of FineTunedClassifier must be a str among",
    ):
        make(strategy="some").fit(*images)


def _trainable(clf):
    inner = clf.module_.backbone.sktransfer_inner
    return {
        n.split(".")[0] + "." + n.split(".")[1]
        for n, p in inner.named_parameters()
        if p.requires_grad
    }


def test_strategies_freeze_the_right_blocks(images):
    X, y = images
    assert _trainable(make(strategy="last_n", n_blocks=1, max_epochs=1).fit(X, y)) == {
        "blocks.2"
    }
    assert _trainable(make(strategy="last_n", n_blocks=2, max_epochs=1).fit(X, y)) == {
        "blocks.1",
        "blocks.2",
    }
    assert _trainable(make(strategy="full", max_epochs=1).fit(X, y)) == {
        "blocks.0",
        "blocks.1",
        "blocks.2",
    }
    assert _trainable(make(strategy="gradual", max_epochs=2).fit(X, y)) == {
        "blocks.1",
        "blocks.2",
    }


def test_frozen_blocks_do_not_change_and_frozen_bn_stays_eval(images):
    X, y = images
    clf = make(strategy="last_n", n_blocks=1, max_epochs=2, lr=1e-2).fit(X, y)
    inner = clf.module_.backbone.sktransfer_inner
    from sktransfer.backbones import load_backbone

    shared = load_backbone("test-cnn").model
    torch.testing.assert_close(
        inner.blocks[0][1].running_mean, shared.blocks[0][1].running_mean
    )
    torch.testing.assert_close(inner.blocks[0][0].weight, shared.blocks[0][0].weight)
    assert not torch.allclose(inner.blocks[2][0].weight, shared.blocks[2][0].weight)
    clf.module_.train()
    assert not inner.blocks[0][1].training and inner.blocks[2][1].training


def test_discriminative_learning_rates(images):
    clf = make(strategy="full", lr=1e-2, backbone_lr=1e-4, max_epochs=1).fit(*images)
    lrs = sorted(g["lr"] for g in clf.optimizer_.param_groups)
    assert lrs == [1e-4, 1e-2]


def test_same_seed_same_model_and_global_rng_untouched(images):
    X, y = images
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = make(strategy="full", dropout=0.5).fit(X, y)
    assert torch.equal(torch.get_rng_state(), before)
    b = make(strategy="full", dropout=0.5).fit(X, y)
    for (n, p), (_, q) in zip(
        a.module_.named_parameters(), b.module_.named_parameters(), strict=True
    ):
        assert torch.equal(p, q), n
    c = make(strategy="full", dropout=0.5, random_state=1).fit(X, y)
    assert not torch.equal(a.module_.head.weight, c.module_.head.weight)


def test_head_strategy_embeds_each_sample_once(images, count_embeds):
    X, y = images
    make(strategy="head", max_epochs=5).fit(X, y)
    assert count_embeds["n"] <= len(X) + 1  # one pass (+ a one-sample probe)


def test_validation_scoring_and_early_stopping(images):
    X, y = images
    clf = make(
        strategy="full",
        valid_size=0.25,
        scoring="f1_macro",
        patience=2,
        max_epochs=30,
        lr=1e-5,
    )
    clf.fit(X, y)
    hist = clf.history
    assert "valid_f1_macro" in hist[-1]
    assert len(hist) < 30  # stopped early on a flat score


def test_checkpoint_dirs_are_unique_per_clone(images):
    a, b = (
        make(checkpoint_dir="auto", valid_size=0.25),
        make(checkpoint_dir="auto", valid_size=0.25),
    )
    a.fit(*images)
    b.fit(*images)
    assert a.checkpoint_path() != b.checkpoint_path()
    import os

    assert any(f.endswith(".pt") for f in os.listdir(a.checkpoint_path()))


def test_class_weight_and_label_smoothing(images):
    X, y = images
    y = np.array(["cat"] * 20 + ["dog"] * 4)
    clf = make(class_weight="balanced", label_smoothing=0.1).fit(X, y)
    w = clf.criterion_.weight.tolist()
    assert w[1] > w[0] and clf.criterion_.label_smoothing == 0.1


def test_clone_pickle_and_save_params(images, tmp_path):
    X, y = images
    clf = make(strategy="last_n").fit(X, y)
    assert clone(clf).get_params()["strategy"] == "last_n"
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X), atol=1e-6)
    clf.save_params(f_params=tmp_path / "p.pt")
    fresh = make(strategy="last_n", classes=clf.classes_.tolist()).initialize()
    fresh.load_params(f_params=tmp_path / "p.pt")
    np.testing.assert_allclose(fresh.predict_proba(X), clf.predict_proba(X), atol=1e-6)
    assert fresh.predict(X).tolist() == clf.predict(X).tolist()


def test_initialize_without_classes_says_what_to_pass():
    with pytest.raises(AttributeError, match=r"pass classes=\[\.\.\.\]"):
        make().initialize()
    with pytest.raises(AttributeError, match="needs the labels"):
        make(classes=["only"]).initialize()


SAVE_PARAMS_CHILD = """
import sys, numpy as np
from sktransfer import FineTunedClassifier, FineTunedRegressor
X = np.load(sys.argv[1])
clf = FineTunedClassifier("test-cnn", strategy="full", classes=["cat", "dog"],
                          valid_size=None).initialize()
clf.load_params(f_params=sys.argv[2], f_history=sys.argv[3])
reg = FineTunedRegressor("test-cnn", strategy="full", valid_size=None).initialize()
reg.load_params(f_params=sys.argv[4])
np.save(sys.argv[5], clf.predict_proba(X))
np.save(sys.argv[6], reg.predict(X))
print(len(clf.history), clf.predict(X[:2]).tolist())
"""


def test_save_params_then_initialize_and_load_params_in_a_new_process(images, tmp_path):
    """skorch's way of saving: a new estimator, initialize() with classes=,
    load_params; the same predictions in a process that never saw the fit."""
    import subprocess
    import sys

    X, y = images
    clf = make(strategy="full").fit(X, y)
    reg = FineTunedRegressor(
        "test-cnn", strategy="full", max_epochs=2, valid_size=None, random_state=0
    ).fit(X, np.linspace(0, 1, len(X)))
    clf.save_params(f_params=tmp_path / "c.pt", f_history=tmp_path / "h.json")
    reg.save_params(f_params=tmp_path / "r.pt")
    np.save(tmp_path / "X.npy", X)
    out = subprocess.run(
        [sys.executable, "-c", SAVE_PARAMS_CHILD, str(tmp_path / "X.npy")]
        + [str(tmp_path / f) for f in ("c.pt", "h.json", "r.pt", "p.npy", "q.npy")],
        capture_output=True,
        text=True,
        check=True,
    )
    # float32 in another process (its own torch thread count): ulps, not more
    np.testing.assert_allclose(
        np.load(tmp_path / "p.npy"), clf.predict_proba(X), atol=1e-6
    )
    np.testing.assert_allclose(np.load(tmp_path / "q.npy"), reg.predict(X), atol=1e-6)
    assert out.stdout.split()[0] == "2"  # the history came back too


def test_augmentation_only_in_training(images):
    X, y = images
    clf = make(strategy="full").fit(X, y)
    assert clf.module_.augment is not None
    p1, p2 = clf.predict_proba(X), clf.predict_proba(X)
    np.testing.assert_array_equal(p1, p2)  # eval: no randomness
    assert make(strategy="full", augment=False).fit(X, y).module_.augment is None


def test_text_fine_tuning(texts):
    X, y = texts
    clf = FineTunedClassifier(
        "test-text",
        strategy="last_n",
        n_blocks=1,
        max_epochs=3,
        valid_size=None,
        random_state=0,
        lr=1e-2,
    )
    clf.fit(X, y)
    assert clf.predict(X).shape == (6,)


def test_gridsearch_over_lr_and_strategy(images):
    X, y = images
    grid = GridSearchCV(
        make(max_epochs=1),
        {"lr": [1e-3, 1e-2], "strategy": ["head", "last_n"]},
        cv=StratifiedKFold(2),
    ).fit(X, y)
    assert len(grid.cv_results_["params"]) == 4


def test_cross_validate_in_parallel(images):
    res = cross_validate(
        make(strategy="full"), *images, cv=StratifiedKFold(2), n_jobs=2
    )
    assert res["test_score"].shape == (2,)


def test_regressor(images):
    X, _ = images
    target = X[:, :, :, 0].mean(axis=(1, 2)) / 255.0
    reg = FineTunedRegressor(
        "test-cnn",
        strategy="full",
        max_epochs=10,
        lr=1e-2,
        valid_size=None,
        random_state=0,
    )
    reg.fit(X, target)
    pred = reg.predict(X)
    assert pred.shape == (24,) and np.corrcoef(pred, target)[0, 1] > 0.5


def test_cuda_trained_model_unpickles_on_cpu(images, monkeypatch):
    """Simulated: the pickle says device='cuda'; this machine has no CUDA."""
    from sktransfer.finetune._mixin import FineTuneMixin

    X, y = images
    clf = make(strategy="full", device="cpu").fit(X, y)
    ref = clf.predict_proba(X)
    original = FineTuneMixin.__getstate__

    def as_if_cuda(self):
        state = original(self)
        state["device"] = "cuda"
        state["sktransfer_device"] = "cuda"
        return state

    monkeypatch.setattr(FineTuneMixin, "__getstate__", as_if_cuda)
    blob = pickle.dumps(clf)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(Warning, match="cuda"):
        loaded = pickle.loads(blob)
    assert loaded.device == "cpu" and loaded.get_params()["device"] == "cpu"
    np.testing.assert_allclose(loaded.predict_proba(X), ref, atol=1e-6)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training(images, precision):
    X, y = images
    clf = make(strategy="full", precision=precision)
    seen = []
    clf.fit(X, y)
    handle = clf.module_.head.register_forward_hook(
        lambda m, i, o: seen.append(o.dtype)
    )
    clf.partial_fit(X, y)
    handle.remove()
    expected = torch.bfloat16 if precision == "bf16" else torch.float16
    assert seen and set(seen) == {expected}  # autocast was on in training
    assert all(p.dtype == torch.float32 for p in clf.module_.parameters())
    assert (clf.grad_scaler_ is not None) == (precision == "fp16")
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float32 and np.isfinite(proba).all()
    ref = make(strategy="full").fit(X, y).predict_proba(X)
    assert not np.array_equal(proba, ref)  # really computed in lower precision
    assert np.allclose(proba, ref, atol=0.2)


def test_checkpoint_resume(images, tmp_path):
    X, y = images
    first = make(checkpoint_dir=tmp_path, max_epochs=2).fit(X, y)
    assert len(first.history) == 2
    resumed = make(checkpoint_dir=tmp_path, max_epochs=4)
    resumed.fit(X, y)  # continues from epoch 2 to max_epochs
    assert len(resumed.history) == 4 and resumed.history[-1, "epoch"] == 4
    done = make(checkpoint_dir=tmp_path, max_epochs=4).fit(X, y)  # nothing left
    assert len(done.history) == 4
    np.testing.assert_allclose(
        done.predict_proba(X), resumed.predict_proba(X), atol=1e-6
    )


RESUME_CHILD = """
import os, signal, sys
import numpy as np
from skorch.callbacks import Callback
from sktransfer import FineTunedClassifier

class KillInEpoch(Callback):
    def __init__(self, epoch):
        self.epoch = epoch
    def on_batch_end(self, net, training=False, **kwargs):
        if training and len(net.history) == self.epoch and len(net.history[-1]["batches"]) == 2:
            os.kill(os.getpid(), signal.SIGKILL)

X = np.load(sys.argv[1])
y = np.array(["cat", "dog"] * (len(X) // 2))
kill = int(sys.argv[3])
clf = FineTunedClassifier(
    "test-cnn", strategy=sys.argv[5], max_epochs=6, batch_size=4, valid_size=0.25,
    random_state=0, checkpoint_dir=sys.argv[2] if sys.argv[2] != "-" else None,
    callbacks=[KillInEpoch(kill)] if kill else None,
).fit(X, y)
np.save(sys.argv[4], clf.predict_proba(X))
print(len(clf.history), clf.best_epoch_)
"""


@pytest.mark.parametrize("strategy", ["last_n", "gradual"])
def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(
    images, tmp_path, strategy
):
    """SIGKILL in epoch 4 of 6, then fit again with the same folder: epochs 4-6
    are trained (not max_epochs more), from epoch 3's state and random streams,
    and the model ends where the uninterrupted run ends."""
    import subprocess
    import sys

    X, _ = images
    np.save(tmp_path / "X.npy", X)
    folder = tmp_path / "ckpt"

    def child(checkpoint, kill, out):
        args = [str(tmp_path / "X.npy"), checkpoint, str(kill), str(out), strategy]
        return subprocess.run(
            [sys.executable, "-c", RESUME_CHILD, *args],
            capture_output=True,
            text=True,
            timeout=300,
        )

    killed = child(str(folder), 4, tmp_path / "never.npy")
    assert killed.returncode == -9, killed.stderr
    assert sorted(p.name for p in folder.glob("resume-epoch*.pt")) == [
        "resume-epoch3.pt"
    ]
    resumed = child(str(folder), 0, tmp_path / "resumed.npy")
    straight = child("-", 0, tmp_path / "straight.npy")
    assert resumed.returncode == 0 and straight.returncode == 0, resumed.stderr
    assert resumed.stdout.split() == straight.stdout.split()  # 6 epochs, same best
    np.testing.assert_allclose(
        np.load(tmp_path / "resumed.npy"), np.load(tmp_path / "straight.npy"), atol=1e-5
    )


def test_bad_fit_arguments_have_clear_errors(images):
    X, y = images
    with pytest.raises(TypeError, match="sample_weight"):
        make().fit(X, y, sample_weight=np.ones(len(y)))
    with pytest.raises(
        TypeError,
        match="The 'callbacks' parameter of FineTunedClassifier must be None or a list",
    ):
        make(callbacks=[1]).fit(X, y)
    with pytest.raises(
        ValueError,
        match="The 'checkpoint_dir' parameter of FineTunedClassifier must be None",
    ):
        make(checkpoint_dir=3).fit(X, y)
    with pytest.raises(ValueError, match="X has 24 samples but y has 3"):
        make().fit(X, y[:3])
    with pytest.raises(ValueError, match="requires y"):
        make().fit(X)


def test_tabular_fine_tuning_and_regressor_has_no_proba(rng):
    X = rng.normal(size=(40, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    clf = FineTunedClassifier(
        "test-mlp",
        strategy="full",
        max_epochs=30,
        lr=0.05,
        valid_size=None,
        random_state=0,
    ).fit(X, y)
    assert clf.n_features_in_ == 5 and (clf.predict(X) == y).mean() > 0.8
    with pytest.raises(ValueError, match="5 features"):
        clf.predict(X[:, :3])
    reg = FineTunedRegressor("test-mlp", strategy="full", max_epochs=1, valid_size=None)
    reg.fit(X, X[:, 0])
    assert not hasattr(reg, "predict_proba")
    assert reg.predict(X).dtype == np.float64


def test_text_batches_are_grouped_by_length(texts):
    from sktransfer.finetune._data import LengthGroupedBatchSampler

    X, y = texts
    clf = FineTunedClassifier(
        "test-text",
        strategy="full",
        max_epochs=1,
        batch_size=4,
        valid_size=None,
        random_state=0,
    ).fit(X, y)
    dataset = clf.get_dataset(X, y)
    it = clf.get_iterator(dataset, training=True)
    assert isinstance(it.batch_sampler, LengthGroupedBatchSampler)
    batches = list(it.batch_sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(X)))  # each once
    lengths = dataset.lengths
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    rand = np.random.default_rng(0).permutation(len(X))
    spread_random = np.mean(
        [np.ptp(lengths[rand[i : i + 4]]) for i in range(0, len(X), 4)]
    )
    assert spread <= spread_random
    valid = clf.get_iterator(dataset, training=False)  # prediction keeps the order
    assert not isinstance(valid.batch_sampler, LengthGroupedBatchSampler)


@pytest.mark.parametrize("strategy", ["full", "head"])
def test_predictions_invariant_to_row_order_and_subsets(rng, strategy):
    """scikit-learn's order / subset checks compare at rtol=1e-7, below float32's
    batch rounding (test_finetune_checks.py says why); the property itself holds
    at 1e-5 for the classifier and the regressor."""
    X = rng.normal(size=(50, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    common = dict(strategy=strategy, max_epochs=5, batch_size=16, valid_size=None)
    clf = FineTunedClassifier("test-mlp", random_state=0, **common).fit(X, y)
    reg = FineTunedRegressor("test-mlp", random_state=0, **common).fit(X, X[:, 0])
    order = rng.permutation(len(X))
    for predict in (clf.predict_proba, reg.predict):
        full = predict(X)
        np.testing.assert_allclose(predict(X[order]), full[order], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(predict(X[7:19]), full[7:19], rtol=1e-5, atol=1e-6)


def test_valid_size_as_a_count_and_an_error_that_proposes_a_value_that_works(images):
    X, y = images  # 24 samples, 2 classes
    clf = make(valid_size=4, max_epochs=1).fit(X, y)
    n_valid = clf.history[-1, "valid_batch_count"]
    assert n_valid == 1  # 4 samples, batch_size 8
    _, valid = clf.get_split_datasets(X, clf.label_encoder_.transform(y))
    assert len(valid) == 4 and sorted(np.bincount(valid.dataset.y[valid.indices])) == [
        2,
        2,
    ]

    texts = [f"text {i}" for i in range(16)]
    labels = np.repeat(np.arange(8), 2)  # 8 classes, 2 samples each
    small = FineTunedClassifier(
        "test-text", strategy="full", max_epochs=1, random_state=0
    )
    with pytest.warns(UserWarning, match=r"holds out 2 for 8 classes.*cross-valid"):
        small.fit(texts, labels)  # too few to hold out: epochs chosen by CV
    assert small.best_epoch_ in (0, 1) and len(small.cv_epoch_losses_) == 2
    small.set_params(valid_size=8).fit(texts, labels)  # a count is honoured
    assert small.best_epoch_ in (0, 1) and small.cv_epoch_losses_ is None
    with pytest.warns(UserWarning, match=r"holds out 4 for 6 classes"):
        small.set_params(valid_size=0.3).fit(texts[:12], labels[:12] % 6)
    small.set_params(valid_size=6).fit(texts[:12], labels[:12] % 6)


MALICIOUS = """
import os, pickle, sys

class Payload:
    def __reduce__(self):
        return (os.system, ("touch " + sys.argv[2],))

with open(sys.argv[1], "wb") as f:
    pickle.dump({"head.weight": Payload()}, f)
"""


def test_load_params_runs_no_code_from_a_crafted_file(images, tmp_path):
    """The docs' safe way to share a fine-tuner (save_params / load_params reads
    with weights_only=True): a file that would write a marker if unpickled
    executes nothing."""
    import subprocess
    import sys

    marker = tmp_path / "owned"
    bad = tmp_path / "params.pt"
    subprocess.run([sys.executable, "-c", MALICIOUS, str(bad), str(marker)], check=True)
    clf = make(strategy="head", classes=["cat", "dog"]).initialize()
    with pytest.raises(pickle.UnpicklingError):
        clf.load_params(f_params=bad)
    assert not marker.exists()
    from sktransfer.backbones import load_state_dict
    from sktransfer.exceptions import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match="never unpickles arbitrary code"):
        load_state_dict(bad)  # and our own weights loader (weights=)
    assert not marker.exists()


def test_save_params_with_safetensors_works_for_a_convnet(images, tmp_path):
    """skorch's use_safetensors=True refused channels_last conv weights
    ("non contiguous tensor")."""
    X, y = images
    clf = make(strategy="full").fit(X, y)
    path = tmp_path / "p.safetensors"
    clf.save_params(f_params=path, use_safetensors=True)
    fresh = make(strategy="full", classes=clf.classes_.tolist()).initialize()
    fresh.load_params(f_params=path, use_safetensors=True)
    np.testing.assert_allclose(fresh.predict_proba(X), clf.predict_proba(X), atol=1e-6)
