"""Does starting from the class names help? The zero-shot priors, measured.

Two options start a few-shot model from what the class names say, before any
label is read: ``FewShotClassifier(class_texts=...)`` adds each class's name
(through the template) to the training set as one labelled example, and
``FineTunedClassifier(head_init="class_names")`` starts the head as the
zero-shot classifier instead of the default ``"auto"`` (a random head, with
the linear probe as epoch 0's candidate). Each is run beside the same
estimator with its defaults, on the text tasks and splits of
``bench_fewshot.py`` (8 labelled samples per class, 5 seeds, the same 1,000
held-out samples), with labels that *are* the class names ("negative",
"positive"; "animal", "artifact", ...), as a user who wants the prior would
give them (the default cells see the same labels). Nothing is chosen on the
test samples; seconds are training only. Each finished row is written at once.

``python benchmarks/bench_class_names.py [--seeds K] [task ...]``.
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
from _common import QUICK, machine, write_result
from bench_fewshot import Split, summary

from sktransfer import FewShotClassifier, FineTunedClassifier

SEEDS = int(sys.argv[sys.argv.index("--seeds") + 1]) if "--seeds" in sys.argv else 5
SEEDS = 1 if QUICK else SEEDS
N = 8
TEXT_TASKS = ("rotten_tomatoes", "wordnet_topics")
CELLS = {
    "fewshot": lambda b, seed: FewShotClassifier(b, random_state=seed),
    "fewshot_class_texts": lambda b, seed: FewShotClassifier(
        b, class_texts=True, random_state=seed
    ),
    "finetuned": lambda b, seed: FineTunedClassifier(b, random_state=seed),
    "finetuned_class_names": lambda b, seed: FineTunedClassifier(
        b, head_init="class_names", random_state=seed
    ),
}


def main():
    warnings.filterwarnings("ignore")
    chosen = [a for a in sys.argv[1:] if a in TEXT_TASKS] or list(TEXT_TASKS)
    tasks = {}
    for name in chosen:
        split = Split(name)
        named = np.asarray([split.names[c] for c in split.labels], dtype=object)
        X_test, y_test = split.take(split.test), named[split.test]
        accs, secs = {k: [] for k in CELLS}, {k: [] for k in CELLS}
        tasks[name] = {"n_test": split.n_test, "n_per_class": N}
        for seed in range(SEEDS):
            X, y = split.draw(N, seed)
            y = np.asarray([split.names[c] for c in y], dtype=object)
            for key, make in CELLS.items():
                start = time.perf_counter()
                model = make(split.backbone, seed).fit(X, y)
                took = time.perf_counter() - start
                acc = float(np.mean(model.predict(X_test) == y_test))
                accs[key].append(acc)
                secs[key].append(took)
                print(name, seed, key, round(acc, 3), round(took, 1), flush=True)
            tasks[name]["cells"] = {
                k: {**summary(accs[k], secs[k]), "train_seconds": secs[k],
                    "seeds": seed + 1}
                for k in CELLS
            }  # fmt: skip
            # each finished seed is on disk before the next one starts
            write_result("class_names", {"machine": machine(), "tasks": tasks})


if __name__ == "__main__":
    main()
