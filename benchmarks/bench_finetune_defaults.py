"""Which part of the fine-tuning defaults costs accuracy (issue 21 item 2).

Task: 26-way WordNet noun classification, a definition to its lexicographer
file (``noun.animal``, ``noun.artifact``...; Debian's ``wordnet-base``), 3,000
definitions to train on and 1,000 held out, drawn at random (seed 0); MiniLM
(``all-MiniLM-L6-v2``, packaged), ``strategy="full"``, 3 epochs, seed 0, one
run per cell on this machine. Cells:

- ``defaults``: ``FineTunedClassifier`` as shipped (``head_init="auto"``: a
  random head, the linear probe as epoch 0's candidate, 10 % held out, the
  best epoch of the validation score kept, epoch 0 included);
- ``lp_ft``: ``head_init="probe"``, the defaults before this benchmark (LP-FT:
  training starts from the probe; 10 % held out, best epoch);
- ``old_defaults``: ``head_init="random", valid_size=None`` (before LP-FT and
  the validation split became the default);
- ``probe_no_valid``: LP-FT start, no validation split (every sample trained
  on, the last epoch kept);
- ``random_valid``: a random head, 10 % held out and the best epoch, epoch 0
  (the random head) never kept;
- ``refit``: the defaults with ``refit=True``: then a refit on every
  training row for the epochs their validation split chose (0: the probe
  alone). Its rows on disk were measured by an emulation of it (a second
  fit without validation for the chosen epochs), written before the option
  existed; ``test_refit_trains_every_row_for_the_chosen_epochs`` asserts the
  two are the same;
- ``old_defaults_on_90``: the old defaults trained on the 90 % of the rows
  the defaults train on (the validation split they draw with the same seed,
  dropped): the cost of the held-out rows alone, without the best-epoch rule;
- ``plain_loop``: a hand-written PyTorch loop on the same network (mean-pooled
  MiniLM, a linear head), AdamW at the same learning rates as the defaults
  (1e-4 for the encoder, 1e-3 for the head, weight decay 0.01), batch 32,
  shuffled, 3 epochs, the last epoch kept.

Each cell runs with the estimator seeds ``SEEDS`` (the split is fixed), or
``--seeds N`` (0..N-1); ``--cells`` picks the cells to run, the others are
kept from the JSON on disk, and every row names its seeds, date and machine.
Only the training split chooses anything (the validation split is a part of
it); the 1,000 test definitions only score. ``python
benchmarks/bench_finetune_defaults.py`` (about 17 minutes on 2 CPU cores);
``--cv`` instead cross-validates the cells on the 3,000 training definitions
(3 folds, each seed on each fold; about a minute a fit), the evidence a
default may be chosen on.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from _common import QUICK, machine, wordnet_noun_definitions, write_result

N_TRAIN, N_TEST = (600, 200) if QUICK else (3000, 1000)
EPOCHS = 1 if QUICK else 3
BACKBONE = "all-MiniLM-L6-v2"


def wordnet_nouns(seed: int = 0):
    rows = wordnet_noun_definitions()
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(rows))[: N_TRAIN + N_TEST]
    X = [rows[i][0] for i in pick]
    y = np.asarray([rows[i][1] for i in pick], dtype=object)
    return (X[:N_TRAIN], y[:N_TRAIN]), (X[N_TRAIN:], y[N_TRAIN:])


def plain_loop(X, y, X_test, seed=0) -> tuple[np.ndarray, float]:
    import copy

    import torch
    from torch import nn

    from sktransfer._text import pad_tokens, token_ids
    from sktransfer.backbones import load_backbone
    from sktransfer.backbones._features import build_feature_model

    torch.manual_seed(seed)
    loaded = load_backbone(BACKBONE)
    body = build_feature_model(loaded.spec, copy.deepcopy(loaded.model), pooling="mean")
    for p in body.parameters():
        p.requires_grad_(True)
    classes = np.unique(y)
    target = torch.as_tensor(np.searchsorted(classes, y))
    head = nn.Linear(384, len(classes))
    optimizer = torch.optim.AdamW(
        [
            {"params": body.parameters(), "lr": 1e-4},
            {"params": head.parameters(), "lr": 1e-3},
        ],
        weight_decay=0.01,
    )
    tok = loaded.tokenizer
    ids = token_ids(tok, X, 256)
    start = time.perf_counter()
    body.train()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(EPOCHS):
        order = torch.randperm(len(X), generator=generator).tolist()
        for lo in range(0, len(order), 32):
            rows = order[lo : lo + 32]
            batch = pad_tokens([ids[i] for i in rows], tok.pad_token_id)
            loss = nn.functional.cross_entropy(head(body(**batch)), target[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    body.eval()
    test_ids = token_ids(tok, X_test, 256)
    preds = []
    with torch.inference_mode():
        for lo in range(0, len(test_ids), 64):
            batch = pad_tokens(test_ids[lo : lo + 64], tok.pad_token_id)
            preds.append(head(body(**batch)).argmax(1).numpy())
    return classes[np.concatenate(preds)], seconds


CELLS = {
    "defaults": {},
    "lp_ft": {"head_init": "probe"},
    "old_defaults": {"head_init": "random", "valid_size": None},
    "probe_no_valid": {"head_init": "probe", "valid_size": None},
    "random_valid": {"head_init": "random"},
    "refit": {"refit": True},
    # the old defaults trained on the rows the defaults train on (their 10 %
    # validation split dropped): separates the held-out rows' cost from the
    # best-epoch rule's
    "old_defaults_on_90": {"head_init": "random", "valid_size": None, "_drop": 0.1},
}
SEEDS = (0,) if QUICK else (0, 1)  # the estimator's random_state; the split is fixed


def fit_cell(params, X, y, X_test, y_test, seed):
    from sklearn.model_selection import StratifiedShuffleSplit

    from sktransfer import FineTunedClassifier
    from sktransfer.finetune._params import n_valid
    from sktransfer.finetune._small_data import RareClassesTrained

    params = dict(params)
    drop = params.pop("_drop", None)
    if drop:  # the split the estimator's valid_size=drop draws (_mixin.py)
        y = np.asarray(y)
        n_drop = n_valid(drop, len(y))
        if np.unique(y, return_counts=True)[1].min() < 2:  # a class of one row
            split = RareClassesTrained(y, n_drop, seed)
        else:
            split = StratifiedShuffleSplit(test_size=drop, random_state=seed)
        keep, _ = next(split.split(np.zeros(len(y)), y))
        X, y = [X[i] for i in keep], y[keep]
    clf = FineTunedClassifier(
        BACKBONE, strategy="full", max_epochs=EPOCHS, random_state=seed, **params
    )
    start = time.perf_counter()
    clf.fit(X, y)
    seconds = time.perf_counter() - start
    # best_epoch_ is None without a validation split: the last epoch is kept
    return float((clf.predict(X_test) == y_test).mean()), clf.best_epoch_, seconds


def test_rows(X, y, X_test, y_test, names, seeds=SEEDS, done=None) -> dict:
    """Each cell's test accuracy; ``done(name, row)``, if given, is called as
    each row finishes (the script writes it to disk then)."""
    rows = {}
    done = done or (lambda name, row: None)
    stamp = {
        "seeds": list(seeds),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
    }
    for name in names:
        if name == "plain_loop":
            continue
        params = CELLS[name]
        runs = [fit_cell(params, X, y, X_test, y_test, s) for s in seeds]
        rows[name] = {
            **stamp,
            "params": {k: str(v) for k, v in params.items()},
            "accuracy": float(np.mean([r[0] for r in runs])),
            "accuracies": [r[0] for r in runs],
            "best_epochs": [r[1] for r in runs],
            "fit_seconds": float(np.mean([r[2] for r in runs])),
        }
        print(name, rows[name], flush=True)
        done(name, rows[name])
    if "plain_loop" not in names:
        return rows
    runs = [plain_loop(X, y, X_test, s) for s in seeds]
    accs = [float((pred == y_test).mean()) for pred, _ in runs]
    rows["plain_loop"] = {
        **stamp,
        "accuracy": float(np.mean(accs)),
        "accuracies": accs,
        "fit_seconds": float(np.mean([sec for _, sec in runs])),
    }
    print("plain_loop", rows["plain_loop"], flush=True)
    done("plain_loop", rows["plain_loop"])
    return rows


def cv_rows(X, y, names=tuple(CELLS), seeds=(0,)) -> dict:
    """Each cell's 3-fold cross-validated accuracy on the *training* split
    (2,000 fitted / 1,000 scored per fold; estimator seeds ``seeds``): the
    evidence a default may be chosen on, since the test split must not
    choose."""
    from sklearn.model_selection import StratifiedKFold

    X = np.asarray(X, dtype=object)
    folds = list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))
    scores = {name: [] for name in names}
    for seed in seeds:
        for train, valid in folds:
            for name in names:
                acc, _, _ = fit_cell(
                    CELLS[name], list(X[train]), y[train], list(X[valid]), y[valid],
                    seed,
                )  # fmt: skip
                scores[name].append(acc)
                print("cv", name, seed, acc, flush=True)
    stamp = {
        "seeds": list(seeds),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
    }
    return {
        name: {**stamp, "mean": float(np.mean(v)), "std": float(np.std(v)), "folds": v}
        for name, v in scores.items()
    }


def main():
    import argparse
    import json

    from _common import RESULTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cv",
        action="store_true",
        help="cross-validate the cells on the training split instead (about a "
        "minute a fit); the test rows on disk are kept",
    )
    parser.add_argument(
        "--cells",
        nargs="+",
        choices=[*CELLS, "plain_loop"],
        default=[*CELLS, "plain_loop"],
        help="rows to run, test or --cv (the others are kept from the JSON on disk)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=len(SEEDS),
        help="estimator seeds 0..N-1 for the rows run (default: 2; --cv: each "
        "seed on each of the 3 folds)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    (X, y), (X_test, y_test) = wordnet_nouns()
    path = RESULTS / "finetune_defaults.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    stamp = {"date": time.strftime("%Y-%m-%d"), "machine": machine()}
    if args.cv:
        result = {k: v for k, v in old.items() if k not in {"benchmark", "date"}}
        cells = [c for c in args.cells if c in CELLS]
        kept = old.get("cv", {}).get("rows", {})
        for row in kept.values():  # rows kept name their own run
            row.setdefault("seeds", [0])
            row.setdefault("date", old.get("cv", {}).get("date"))
            row.setdefault("machine", old.get("cv", {}).get("machine"))
        rows = cv_rows(X, y, cells, range(args.seeds))
        result["cv"] = {**stamp, "rows": {**kept, **rows}}
        write_result("finetune_defaults", result)
    else:
        for row in old.get("rows", {}).values():  # rows kept name their own run
            row.setdefault("machine", old.get("machine"))
            row.setdefault("date", old.get("date"))
            row.setdefault("seeds", old.get("seeds"))
        result = {
            "machine": stamp["machine"],
            "task": f"WordNet nouns, definition -> lexicographer file (26 classes), "
            f"{N_TRAIN} train / {N_TEST} test, seed 0",
            "backbone": BACKBONE,
            "strategy": "full",
            "max_epochs": EPOCHS,
            "seeds": list(SEEDS),  # unless a row names its own
            "rows": dict(old.get("rows", {})),
        }
        if "cv" in old:  # kept from its own run (it names its date and machine)
            result["cv"] = old["cv"]

        def done(name, row):  # each finished row is on disk at once
            result["rows"][name] = row
            write_result("finetune_defaults", result)

        test_rows(X, y, X_test, y_test, args.cells, range(args.seeds), done)


if __name__ == "__main__":
    main()
