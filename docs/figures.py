"""Draw the figures of the docs from real runs (``python docs/figures.py``).

``python docs/figures.py domain_shift`` draws only ``img/domain_shift.png``
(the domain-shift guide's figure). ``python docs/figures.py tables`` only
writes the demo table of ``README.md`` and ``docs/index.md`` (between
``<!-- demo -->`` markers) from
``benchmarks/results/demo_cpu.json`` (``make demo-full`` writes it).

``img/learning_curves.png``: EfficientNet-Lite0 (packaged weights) fine-tuned on
scikit-image's ``lfw_subset`` with a 20 % stratified validation split, F1-macro
recorded each epoch and early stopping, drawn by ``LearningCurvesDisplay``:
top, the default LP-FT start (``head_init="probe"``, epoch 0 is the probe);
bottom, a random head (``head_init="random"``), same seed and split.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from sktransfer import FineTunedClassifier
from sktransfer._demo import load_lfw, markdown_table
from sktransfer.plotting import LearningCurvesDisplay

HERE = Path(__file__).resolve().parent
START, END = "<!-- demo -->\n", "<!-- /demo -->"


def write_demo_tables() -> None:
    """The demo table, from the full demo's JSON, into the README and the index."""
    data = json.loads((HERE.parent / "benchmarks/results/demo_cpu.json").read_text())
    table = markdown_table(data["rows"])
    for page in (HERE.parent / "README.md", HERE / "index.md"):
        text = page.read_text()
        head, rest = text.split(START, 1)
        page.write_text(head + START + table + "\n" + END + rest.split(END, 1)[1])
        print(f"wrote the demo table of {page}")


def domain_shift_figure() -> None:
    """``img/domain_shift.png``: the digits pair's diagnosis (EfficientNet-Lite0
    features) and every method's target accuracy on both benchmark pairs,
    from ``benchmarks/results/domain_shift.json``."""
    import matplotlib.pyplot as plt
    import numpy as np

    from sktransfer import PretrainedFeatureExtractor, domain_shift
    from sktransfer.adapt import datasets

    Xs, ys = datasets.handwritten_digits()
    Xt, _ = datasets.font_digits()
    ext = PretrainedFeatureExtractor("efficientnet_lite0").fit(Xs[:2])
    report = domain_shift(ext.transform(Xs), ext.transform(Xt), y_source=ys)
    data = json.loads(
        (HERE.parent / "benchmarks/results/domain_shift.json").read_text()
    )
    fig = plt.figure(figsize=(13, 3.8), layout="constrained")
    axes = fig.subplots(1, 3, width_ratios=[1, 1, 1.5])
    report.plot(ax=axes[:2])
    names = list(next(iter(data["pairs"].values()))["frozen"])
    width = 0.8 / len(data["pairs"])
    for i, (pair, r) in enumerate(data["pairs"].items()):
        means = [r["frozen"][n]["mean"] for n in names]
        stds = [r["frozen"][n]["std"] for n in names]
        axes[2].barh(np.arange(len(names)) + i * width, means, width, xerr=stds,
                     label=pair)  # fmt: skip
    axes[2].set_yticks(np.arange(len(names)) + width / 2, names, fontsize=8)
    axes[2].invert_yaxis()
    axes[2].set(xlabel="target accuracy (5 folds)", title="frozen features + LR")
    axes[2].legend(fontsize=8)
    fig.suptitle("handwritten -> font digits: " + report.verdict, fontsize=11)
    out = HERE / "img" / "domain_shift.png"
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


def main():
    import matplotlib.pyplot as plt

    if sys.argv[1:] == ["domain_shift"]:
        domain_shift_figure()
        return
    write_demo_tables()
    if sys.argv[1:] == ["tables"]:
        return

    X, y = load_lfw()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for row, head_init in zip(axes, ("probe", "random"), strict=True):
        clf = FineTunedClassifier(
            "efficientnet_lite0",
            strategy="last_n",
            max_epochs=8,
            valid_size=0.2,
            scoring="f1_macro",
            patience=3,
            head_init=head_init,
            random_state=0,
        )
        start = time.perf_counter()
        clf.fit(X, y)
        secs = time.perf_counter() - start
        LearningCurvesDisplay.from_estimator(clf, ax=row)
        row[0].set_title(
            f'head_init="{head_init}": {len(clf.history)} epochs, {secs:.0f} s, '
            f"kept epoch {clf.best_epoch_}",
            fontsize=10,
        )
        print(head_init, "start:", clf.start_scores_, "kept:", clf.best_epoch_)
        for r in clf.history:
            print(
                {
                    k: r[k]
                    for k in ("epoch", "train_loss", "valid_loss", "valid_f1_macro")
                }
            )
    fig.suptitle("EfficientNet-Lite0 fine-tuned on lfw_subset (this 2-core CPU)")
    fig.tight_layout()
    out = HERE / "img" / "learning_curves.png"
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
