"""Domain shift on two packaged pairs: diagnosis, then every adaptation method.

Pairs (``sktransfer.adapt.datasets``): handwritten 8x8 digits -> font-rendered digits
(EfficientNet-Lite0 features), WordNet verb definitions -> usage examples
(all-MiniLM-L6-v2 features). Protocol, per pair: 5 folds over the target;
each fold's other target rows are the unlabelled target of ``fit`` (label
-1), the fold itself is the test set; target labels are read only to score
the test fold and for the in-domain reference row (a head trained on the
other folds' target labels). The rows "chosen by ..." are one
``GridSearchCV`` over the frozen candidates (``CANDIDATES``), scored by each
label-free scorer (importance-weighted accuracy, deep embedded validation,
circular validation; no target label) with ``source_only_unless_better``
choosing per scorer. skada (the ``bench`` extra) runs its
CORAL, subspace alignment and entropic OT mapping on the same rows and folds.
WordNet is a random 3,000 definitions / 2,000 examples. Fine-tuning rows
(WordNet only, 1,500 source / 750 unlabelled target / 750 scored, 2 epochs;
full fine-tuning of EfficientNet-Lite0 at 224 px is out of reach on this CPU)
compare source-only with each ``adaptation=`` (the default
``adaptation_ratio=0.25``: 375 of the 750 target rows drawn each epoch; two
rows with every target row each epoch) and their seconds per epoch (``--finetune-only`` re-measures only those,
``--diagnosis-only`` only the diagnosis, ``--frozen-only`` only the frozen
rows).
``python benchmarks/bench_domain_shift.py``;
``BENCH_QUICK=1`` for a smoke run.
"""

from __future__ import annotations

import sys
import time
import warnings
from math import ceil

import numpy as np
from _common import QUICK, machine, write_result
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.semi_supervised import LabelSpreading, SelfTrainingClassifier

from sktransfer import FineTunedClassifier, PretrainedFeatureExtractor, domain_shift
from sktransfer.adapt import (
    CORAL,
    CircularValidationScorer,
    DeepEmbeddedValidationScorer,
    DomainStandardScaler,
    EncodedLabels,
    ImportanceWeightedScorer,
    LabeledOnly,
    source_only_unless_better,
)
from sktransfer.adapt import (
    datasets as shifted,
)

FOLDS = 2 if QUICK else 5
N_WORDNET = (3000, 2000)  # source definitions, target examples (a random subset)


def head():
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))


def self_training():
    return SelfTrainingClassifier(head(), threshold=0.9, max_iter=5)


def self_training_k_best():
    """Self-training that labels the 200 most confident target rows a round
    (scikit-learn's ``criterion="k_best"``), up to 10 rounds."""
    return SelfTrainingClassifier(head(), criterion="k_best", k_best=200, max_iter=10)


def label_spreading():
    """scikit-learn's ``LabelSpreading`` on a 20-nearest-neighbour graph of
    both domains; ``EncodedLabels`` lets it take string labels with ``-1``."""
    return EncodedLabels(
        LabelSpreading(kernel="knn", n_neighbors=20, alpha=0.2, max_iter=200)
    )


def skada_row(adapter):
    """A skada pipeline on the same rows: skada's ``sample_domain`` (positive
    source, negative target) instead of our ``-1`` labels; constant features
    dropped first (skada's adapters divide by their spread)."""
    from skada import make_da_pipeline
    from sklearn.feature_selection import VarianceThreshold

    class SkadaRow:
        def fit(self, X, y):
            target = np.asarray([v == -1 and not isinstance(v, str) for v in y])
            self.encoder = {
                c: i for i, c in enumerate(sorted(set(y[~target].tolist())))
            }
            self.classes = np.array(sorted(self.encoder), dtype=object)
            labels = np.array(
                [-1 if t else self.encoder[v] for v, t in zip(y, target, strict=True)]
            )
            domain = np.where(target, -2, 1)
            self.model = make_da_pipeline(
                VarianceThreshold(1e-8), StandardScaler(), adapter(),
                LogisticRegression(C=1.0, max_iter=2000),
            )  # fmt: skip
            self.model.fit(X, labels, sample_domain=domain)
            return self

        def predict(self, X):
            domain = np.full(len(X), -2)
            return self.classes[self.model.predict(X, sample_domain=domain)]

    return SkadaRow()


def _skada_methods():
    try:
        import skada
    except ImportError:  # the bench extra installs it
        return {}
    return {
        "skada_coral": lambda: skada_row(skada.CORALAdapter),
        "skada_subspace_alignment": lambda: skada_row(
            lambda: skada.SubspaceAlignmentAdapter(n_components=64, random_state=0)
        ),
        "skada_entropic_ot": lambda: skada_row(
            lambda: skada.EntropicOTMappingAdapter(norm="median")
        ),
    }


METHODS = {
    "source_only": lambda: LabeledOnly(head()),
    "standardise": lambda: make_pipeline(DomainStandardScaler(), LabeledOnly(head())),
    "coral": lambda: make_pipeline(CORAL(), LabeledOnly(head())),
    "standardise+coral": lambda: make_pipeline(
        DomainStandardScaler(), CORAL(), LabeledOnly(head())
    ),
    "self_training": self_training,
    "standardise+self_training": lambda: make_pipeline(
        DomainStandardScaler(), self_training()
    ),
    "standardise+self_training_k_best": lambda: make_pipeline(
        DomainStandardScaler(), self_training_k_best()
    ),
    "standardise+label_spreading": lambda: make_pipeline(
        DomainStandardScaler(), label_spreading()
    ),
}
# the candidates of the label-free choice: (adapter, classifier) per method
CANDIDATES = {
    "source_only": ("passthrough", "plain"),
    "standardise": ("standardise", "plain"),
    "coral": ("coral", "plain"),
    "standardise+self_training": ("standardise", "self_training"),
    "standardise+self_training_k_best": ("standardise", "self_training_k_best"),
    "standardise+label_spreading": ("standardise", "label_spreading"),
}
SCORERS = {
    "importance_weighted": ImportanceWeightedScorer,
    "deep_embedded_validation": DeepEmbeddedValidationScorer,
    "circular": CircularValidationScorer,
}


METHODS.update(_skada_methods())


def label_free_grid():
    """Every candidate in one grid, scored by every label-free scorer; no
    refit: each scorer's choice (by ``source_only_unless_better``) is read off
    ``cv_results_`` and its test accuracy is that method's row in the fold."""
    plain = LabeledOnly(head())
    adapters = {
        "passthrough": "passthrough",
        "standardise": DomainStandardScaler(),
        "coral": CORAL(),
    }
    heads = {
        "plain": plain,
        "self_training": self_training(),
        "self_training_k_best": self_training_k_best(),
        "label_spreading": label_spreading(),
    }
    grid = [{"adapt": [adapters[a]], "clf": [heads[c]]} for a, c in CANDIDATES.values()]
    search = GridSearchCV(
        Pipeline([("adapt", "passthrough"), ("clf", plain)]),
        grid,
        # a splitter that does not sort y: object labels mix strings and -1
        cv=KFold(3, shuffle=True, random_state=0),
        scoring={name: make() for name, make in SCORERS.items()},
        refit=False,
    )
    source_only = {"adapt": "passthrough", "clf": plain}
    return search, source_only


def frozen_rows(Zs, ys, Zt, yt):
    rows = {name: [] for name in [*METHODS, "in_domain"]}
    seconds = {name: 0.0 for name in rows}
    chosen = {name: [] for name in SCORERS}
    picks = {name: [] for name in SCORERS}
    grid_seconds = 0.0
    names = list(CANDIDATES)
    for train, test in KFold(FOLDS, shuffle=True, random_state=0).split(Zt):
        X = np.r_[Zs, Zt[train]]
        y = _with_unlabeled(ys, len(train))
        fold = {}
        for name, make in METHODS.items():
            start = time.perf_counter()
            model = make().fit(X, y)
            seconds[name] += time.perf_counter() - start
            fold[name] = float(np.mean(model.predict(Zt[test]) == yt[test]))
            rows[name].append(fold[name])
        start = time.perf_counter()
        search, source_only = label_free_grid()
        search.fit(X, y)
        grid_seconds += time.perf_counter() - start
        for scorer in SCORERS:
            rule = source_only_unless_better(source_only, score=scorer)
            pick = names[rule(search.cv_results_)]
            picks[scorer].append(pick)
            chosen[scorer].append(fold[pick])
        start = time.perf_counter()
        ref = head().fit(Zt[train], yt[train])
        seconds["in_domain"] += time.perf_counter() - start
        rows["in_domain"].append(float(np.mean(ref.predict(Zt[test]) == yt[test])))
    out = {
        name: {
            "mean": float(np.mean(v)),
            "std": float(np.std(v)),
            "folds": v,
            "seconds": seconds[name] / FOLDS,
        }
        for name, v in rows.items()
    }
    for scorer, v in chosen.items():
        out[f"chosen_by_{scorer}"] = {
            "mean": float(np.mean(v)),
            "std": float(np.std(v)),
            "folds": v,
            # one grid gives every scorer's choice: its seconds are shared
            "seconds": grid_seconds / FOLDS,
            "picks": picks[scorer],
        }
    return out


def _with_unlabeled(ys, n: int) -> np.ndarray:
    """Source labels then ``n`` times -1: integers stay integers (scikit-learn
    reads an object array of numbers as an unknown target type)."""
    kind = ys.dtype.kind in "iu"
    dtype = np.int64 if kind else object
    return np.r_[ys.astype(dtype), np.full(n, -1, dtype=dtype)]


def recovery(rows) -> dict:
    base, ref = rows["source_only"]["mean"], rows["in_domain"]["mean"]
    return {
        name: (r["mean"] - base) / (ref - base) if ref != base else None
        for name, r in rows.items()
        if name not in ("source_only", "in_domain")
    }


def finetune_rows(Xs, ys, Xt, yt, n_source, n_target):
    rng = np.random.default_rng(0)
    s = rng.permutation(len(Xs))[:n_source]
    t = rng.permutation(len(Xt))[:n_target]
    half = len(t) // 2
    pool, test = t[:half], t[half:]
    X = [Xs[i] for i in s] + [Xt[i] for i in pool]
    y = _with_unlabeled(ys[s], len(pool))
    X_test, y_test = [Xt[i] for i in test], yt[test]
    out = {}
    runs = [
        (None, None, None), ("dann", None, None), ("coral", None, None),
        ("entropy", None, None),
        # the best epoch chosen by a label-free scorer that sees the target rows
        ("dann", "deep_embedded_validation", None),
        ("entropy", "deep_embedded_validation", None),
        # every target row in every epoch (adaptation_ratio=None, the cost
        # before the default 0.25): what the smaller share costs in accuracy
        ("dann", None, "all"), ("coral", None, "all"),
    ]  # fmt: skip
    for adaptation, epoch_scorer, share in runs:
        extra = {}
        if epoch_scorer is not None:
            extra["scoring"] = SCORERS[epoch_scorer]()
        if share == "all":
            extra["adaptation_ratio"] = None
        clf = FineTunedClassifier(
            "all-MiniLM-L6-v2",
            strategy="full",
            max_epochs=1 if QUICK else 2,
            adaptation=adaptation,
            random_state=0,
            **extra,
        )
        start = time.perf_counter()
        if adaptation is None:  # source-only: the labelled rows alone
            clf.fit([X[i] for i in range(len(s))], y[: len(s)].astype(str))
        else:
            clf.fit(X, y)
        elapsed = time.perf_counter() - start
        name = adaptation or "source_only"
        if epoch_scorer is not None:
            name += f", best epoch by {epoch_scorer.replace('_', ' ')}"
        if share == "all":
            name += ", every target row each epoch"
        ratio = clf.adaptation_ratio
        n_target = len(pool) if ratio is None else min(len(pool), ceil(ratio * len(s)))
        out[name] = {
            "accuracy": float(np.mean(clf.predict(X_test) == y_test)),
            "seconds": elapsed,
            # skorch's own epoch timer: training and validation passes only
            # (not the backbone's loading nor the probe's frozen features)
            "seconds_per_epoch": float(np.mean(clf.history[:, "dur"])),
            "rows_per_epoch": len(s) + (0 if adaptation is None else n_target),
            "adaptation_ratio": None if adaptation is None else ratio,
            "best_epoch": clf.best_epoch_,
        }
    base = out["source_only"]
    for r in out.values():
        r["epoch_cost_vs_source_only"] = (
            r["seconds_per_epoch"] / base["seconds_per_epoch"]
        )
        r["row_cost_vs_source_only"] = (
            r["seconds_per_epoch"] / r["rows_per_epoch"]
        ) / (base["seconds_per_epoch"] / base["rows_per_epoch"])
    out["setup"] = {
        "n_source": len(s), "n_target_pool": len(pool), "n_test": len(test),
        # --finetune-only re-measures these rows alone: they say where and when
        "machine": machine(), "date": time.strftime("%Y-%m-%d"),
    }  # fmt: skip
    return out


def pair(name, backbone, Xs, ys, Xt, yt, fine_tune=False):
    ext = PretrainedFeatureExtractor(backbone, cache=None).fit(Xs[:2])
    start = time.perf_counter()
    Zs, Zt = ext.transform(Xs), ext.transform(Xt)
    embed_s = time.perf_counter() - start
    report = domain_shift(Zs, Zt, y_source=ys)
    half = np.random.default_rng(0).permutation(len(Zs))
    control = domain_shift(Zs[half[::2]], Zs[half[1::2]], y_source=None)
    result = {
        "backbone": backbone,
        "n_source": len(Zs),
        "n_target": len(Zt),
        "embed_seconds": embed_s,
        "diagnosis": _report(report),
        "control_random_halves_of_source": _report(control),
        "frozen": frozen_rows(Zs, ys, Zt, yt),
    }
    result["recovery"] = recovery(result["frozen"])
    if fine_tune:
        n = (200, 200) if QUICK else (1500, 1500)
        result["finetune"] = finetune_rows(Xs, ys, Xt, yt, *n)
    print(name, {k: round(v["mean"], 3) for k, v in result["frozen"].items()})
    return result


def _report(r) -> dict:
    return {
        "verdict": r.verdict,
        "auc": r.auc,
        "auc_interval": list(r.auc_interval),
        "mmd2": r.mmd2,
        "mmd_pvalue": r.mmd_pvalue,
        "far_fraction": r.far_fraction,
    }


def wordnet_subset():
    """The benchmark's WordNet pair: a seeded random ``N_WORDNET`` subset of
    the definitions (source) and the examples (target), with their labels."""
    (Ds, dy), (Es, ey) = shifted.wordnet_verbs()
    rng = np.random.default_rng(0)
    s = rng.permutation(len(Ds))[: N_WORDNET[0]]
    t = rng.permutation(len(Es))[: N_WORDNET[1]]
    return [Ds[i] for i in s], dy[s], [Es[i] for i in t], ey[t]


def finetune_only():
    """Re-measure only the fine-tuning rows into the existing JSON (the other
    rows are unchanged): their seconds must not share the CPU with anything."""
    import json

    from _common import RESULTS

    path = RESULTS / "domain_shift.json"
    data = json.loads(path.read_text())
    Ds, dy, Es, ey = wordnet_subset()
    n = (200, 200) if QUICK else (1500, 1500)
    data["pairs"]["wordnet"]["finetune"] = finetune_rows(Ds, dy, Es, ey, *n)
    write_result("domain_shift", {k: v for k, v in data.items()
                                  if k not in ("benchmark", "date")})  # fmt: skip


def diagnosis_only():
    """Re-measure only the diagnosis rows into the existing JSON."""
    import json

    from _common import RESULTS

    path = RESULTS / "domain_shift.json"
    data = json.loads(path.read_text())
    Hs, hy = shifted.handwritten_digits()
    Fd, _ = shifted.font_digits()
    Ds, dy, Es, _ = wordnet_subset()
    for name, backbone, Xs, ys, Xt in (
        ("digits", "efficientnet_lite0", Hs, hy, Fd),
        ("wordnet", "all-MiniLM-L6-v2", Ds, dy, Es),
    ):
        ext = PretrainedFeatureExtractor(backbone, cache=None).fit(Xs[:2])
        Zs, Zt = ext.transform(Xs), ext.transform(Xt)
        half = np.random.default_rng(0).permutation(len(Zs))
        pair = data["pairs"][name]
        pair["diagnosis"] = _report(domain_shift(Zs, Zt, y_source=ys))
        pair["control_random_halves_of_source"] = _report(
            domain_shift(Zs[half[::2]], Zs[half[1::2]], y_source=None)
        )
    write_result("domain_shift", {k: v for k, v in data.items()
                                  if k not in ("benchmark", "date")})  # fmt: skip


def frozen_only():
    """Re-measure only the frozen-feature rows into the existing JSON."""
    import json

    from _common import RESULTS

    path = RESULTS / "domain_shift.json"
    Hs, hy = shifted.handwritten_digits()
    Fd, fy = shifted.font_digits()
    Ds, dy, Es, ey = wordnet_subset()
    for name, backbone, Xs, ys, Xt, yt in (
        ("digits", "efficientnet_lite0", Hs, hy, Fd, fy),
        ("wordnet", "all-MiniLM-L6-v2", Ds, dy, Es, ey),
    ):
        if len(sys.argv) > 2 and name not in sys.argv[2:]:
            continue
        ext = PretrainedFeatureExtractor(backbone, cache=None).fit(Xs[:2])
        Zs, Zt = ext.transform(Xs), ext.transform(Xt)
        frozen = frozen_rows(Zs, ys, Zt, yt)
        print(name, {k: round(v["mean"], 3) for k, v in frozen.items()})
        # read again: one process per pair may run at the same time
        data = json.loads(path.read_text())
        data["pairs"][name]["frozen"] = frozen
        data["pairs"][name]["recovery"] = recovery(frozen)
        write_result("domain_shift", {k: v for k, v in data.items()
                                      if k not in ("benchmark", "date")})  # fmt: skip


def main():
    warnings.filterwarnings("ignore")
    if "--frozen-only" in sys.argv:
        frozen_only()
        return
    if "--diagnosis-only" in sys.argv:
        diagnosis_only()
        return
    if "--finetune-only" in sys.argv:
        finetune_only()
        return
    Hs, hy = shifted.handwritten_digits()
    Fd, fy = shifted.font_digits()
    Ds, dy, Es, ey = wordnet_subset()
    if QUICK:
        Hs, hy, Fd, fy = Hs[:300], hy[:300], Fd[::5], fy[::5]
        Ds, dy, Es, ey = Ds[:600], dy[:600], Es[:300], ey[:300]
    results = {
        "digits": pair("digits", "efficientnet_lite0", Hs, hy, Fd, fy),
        "wordnet": pair("wordnet", "all-MiniLM-L6-v2", Ds, dy, Es, ey, fine_tune=True),
    }
    write_result(
        "domain_shift",
        {"machine": machine(), "folds": FOLDS, "pairs": results},
    )


if __name__ == "__main__":
    main()
