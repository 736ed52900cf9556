"""Domain shift on two packaged pairs: diagnosis, then every adaptation method.

Pairs (``sktransfer.adapt.datasets``): handwritten 8x8 digits -> font-rendered digits
(EfficientNet-Lite0 features), WordNet verb definitions -> usage examples
(all-MiniLM-L6-v2 features). Protocol, per pair: 5 folds over the target;
each fold's other target rows are the unlabelled target of ``fit`` (label
-1), the fold itself is the test set; target labels are read only to score
the test fold and for the in-domain reference row (a head trained on the
other folds' target labels). The row "chosen" is a ``GridSearchCV`` over
every frozen method, scored by ``ImportanceWeightedScorer`` (no target
label) and refit by ``source_only_unless_better``. skada (the ``bench`` extra) runs its
CORAL, subspace alignment and entropic OT mapping on the same rows and folds.
WordNet is a random 3,000 definitions / 2,000 examples. Fine-tuning rows
(WordNet only, 1,500 source / 750 unlabelled target / 750 scored, 2 epochs; full fine-tuning of
EfficientNet-Lite0 at 224 px
is out of reach on this CPU) compare source-only with each ``adaptation=``
and their seconds per epoch (``--finetune-only`` re-measures only those,
``--diagnosis-only`` only the diagnosis).
``python benchmarks/bench_domain_shift.py``;
``BENCH_QUICK=1`` for a smoke run.
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
from _common import QUICK, machine, write_result
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.semi_supervised import SelfTrainingClassifier

from sktransfer import FineTunedClassifier, PretrainedFeatureExtractor, domain_shift
from sktransfer.adapt import (
    CORAL,
    DomainStandardScaler,
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
}


METHODS.update(_skada_methods())


def chosen():
    """Every frozen method in one grid, chosen without target labels."""
    plain = LabeledOnly(head())
    grid = [
        {"adapt": ["passthrough", DomainStandardScaler(), CORAL()], "clf": [plain]},
        {"adapt": ["passthrough", DomainStandardScaler()], "clf": [self_training()]},
    ]
    pipe = Pipeline([("adapt", "passthrough"), ("clf", plain)])
    return GridSearchCV(
        pipe,
        grid,
        # a splitter that does not sort y: object labels mix strings and -1
        cv=KFold(3, shuffle=True, random_state=0),
        scoring=ImportanceWeightedScorer(),
        refit=source_only_unless_better({"adapt": "passthrough", "clf": plain}),
    )


def frozen_rows(Zs, ys, Zt, yt):
    rows = {name: [] for name in [*METHODS, "chosen", "in_domain"]}
    seconds = {name: 0.0 for name in rows}
    picks = []
    for train, test in KFold(FOLDS, shuffle=True, random_state=0).split(Zt):
        X = np.r_[Zs, Zt[train]]
        y = _with_unlabeled(ys, len(train))
        for name, make in [*METHODS.items(), ("chosen", chosen)]:
            start = time.perf_counter()
            model = make().fit(X, y)
            seconds[name] += time.perf_counter() - start
            rows[name].append(float(np.mean(model.predict(Zt[test]) == yt[test])))
            if name == "chosen":
                p = model.best_params_
                picks.append(f"{_name(p['adapt'])} / {_name(p['clf'])}")
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
    out["chosen"]["picks"] = picks
    return out


def _with_unlabeled(ys, n: int) -> np.ndarray:
    """Source labels then ``n`` times -1: integers stay integers (scikit-learn
    reads an object array of numbers as an unknown target type)."""
    kind = ys.dtype.kind in "iu"
    dtype = np.int64 if kind else object
    return np.r_[ys.astype(dtype), np.full(n, -1, dtype=dtype)]


def _name(step) -> str:
    if isinstance(step, str):
        return step
    if isinstance(step, SelfTrainingClassifier):
        return "self_training"
    return type(step).__name__


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
    for adaptation in [None, "dann", "coral", "entropy"]:
        clf = FineTunedClassifier(
            "all-MiniLM-L6-v2",
            strategy="full",
            max_epochs=1 if QUICK else 2,
            adaptation=adaptation,
            random_state=0,
        )
        start = time.perf_counter()
        if adaptation is None:  # source-only: the labelled rows alone
            clf.fit([X[i] for i in range(len(s))], y[: len(s)].astype(str))
        else:
            clf.fit(X, y)
        elapsed = time.perf_counter() - start
        out[adaptation or "source_only"] = {
            "accuracy": float(np.mean(clf.predict(X_test) == y_test)),
            "seconds": elapsed,
            "seconds_per_epoch": elapsed / clf.max_epochs,
            "rows_per_epoch": len(s) if adaptation is None else len(X),
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
    out["setup"] = {"n_source": len(s), "n_target_pool": len(pool), "n_test": len(test)}
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


def main():
    warnings.filterwarnings("ignore", category=UserWarning)
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
