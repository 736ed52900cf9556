"""Draw the figures of the docs from real runs (``python docs/figures.py``).

``img/learning_curves.png``: EfficientNet-Lite0 (packaged weights) fine-tuned on
scikit-image's ``lfw_subset`` with a 20 % stratified validation split, F1-macro
recorded each epoch and early stopping, drawn by ``LearningCurvesDisplay``.
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from sktransfer import FineTunedClassifier
from sktransfer._demo import load_lfw
from sktransfer.plotting import LearningCurvesDisplay

HERE = Path(__file__).resolve().parent


def main():
    X, y = load_lfw()
    clf = FineTunedClassifier(
        "efficientnet_lite0",
        strategy="last_n",
        max_epochs=8,
        valid_size=0.2,
        scoring="f1_macro",
        patience=3,
        random_state=0,
    )
    start = time.perf_counter()
    clf.fit(X, y)
    secs = time.perf_counter() - start
    display = LearningCurvesDisplay.from_estimator(
        clf,
        title=f"EfficientNet-Lite0 fine-tuned on lfw_subset "
        f"({len(clf.history)} epochs, {secs:.0f} s on this CPU)",
    )
    out = HERE / "img" / "learning_curves.png"
    display.figure_.savefig(out, dpi=110, bbox_inches="tight")
    for row in clf.history:
        print(
            {k: row[k] for k in ("epoch", "train_loss", "valid_loss", "valid_f1_macro")}
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
