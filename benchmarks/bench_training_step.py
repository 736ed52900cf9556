"""One training step of a text encoder: length groups and the fused optimizer.

Two speed-ups of the few-shot fine-tuner's step, each measured against what it
replaced, interleaved step by step in one run (the order alternates, so drift
of a noisy machine falls on both sides):

- ``group_by_length``: a forward and backward pass of the packaged MiniLM
  (``all-MiniLM-L6-v2``, train mode) over batches of Rotten Tomatoes snippets
  drawn at random (28 rows: the distinct texts of 16 pairs; 64 rows), with
  ``TextFeatureModel(group_by_length=True)`` against ``False``. Features are
  the same up to float rounding (``tests/test_length_groups.py``).
- ``fused_adamw``: one ``AdamW`` step over MiniLM's parameters (random
  gradients), ``fused=True`` against the default (``foreach``).

Ratios are medians of the per-step ratios with a bootstrap 95 % interval.

``python benchmarks/bench_training_step.py`` (about two minutes on 2 cores).
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from _common import QUICK, machine, write_result

from sktransfer._demo import load_rotten_tomatoes
from sktransfer._text import pad_tokens
from sktransfer.backbones import build_feature_model, load_backbone

STEPS = 4 if QUICK else 30


def _interval(ratios, seed=0):
    rng = np.random.default_rng(seed)
    boots = [np.median(rng.choice(ratios, len(ratios))) for _ in range(2000)]
    return [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))]


def _summary(before, after, what_before, what_after):
    ratios = np.asarray(before) / np.asarray(after)
    return {
        f"{what_before}_ms_median": 1000 * float(np.median(before)),
        f"{what_after}_ms_median": 1000 * float(np.median(after)),
        "speedup_median": float(np.median(ratios)),
        "speedup_ci95": _interval(ratios),
        "steps": len(ratios),
    }


def group_by_length(loaded, rows: int) -> dict:
    encoder = build_feature_model(loaded.spec, copy.deepcopy(loaded.model))
    encoder.train().requires_grad_(True)
    texts = list(load_rotten_tomatoes()[0])[:3000]
    ids = loaded.tokenizer(texts, truncation=True, max_length=256)["input_ids"]
    rng = np.random.default_rng(0)
    times = {True: [], False: []}
    padding = []
    for step in range(STEPS + 1):
        picked = [ids[i] for i in rng.choice(len(ids), rows, replace=False)]
        lengths = np.array([len(x) for x in picked])
        padding.append(float(lengths.max() * rows / lengths.sum()))
        batch = pad_tokens(picked, loaded.tokenizer.pad_token_id)
        for flag in (True, False) if step % 2 else (False, True):
            encoder.group_by_length = flag
            start = time.perf_counter()
            encoder(**batch).pow(2).sum().backward()
            if step:  # the first step warms up
                times[flag].append(time.perf_counter() - start)
            encoder.zero_grad()
    out = _summary(times[False], times[True], "whole_batch", "grouped")
    out["padded_over_real_tokens_mean"] = float(np.mean(padding[1:]))
    return out


def fused_adamw(loaded) -> dict:
    params = [p.requires_grad_(True) for p in copy.deepcopy(loaded.model).parameters()]
    gen = torch.Generator().manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 1e-3
    optimizers = {
        "foreach": torch.optim.AdamW(params, lr=2e-5),
        "fused": torch.optim.AdamW(params, lr=2e-5, fused=True),
    }
    times = {k: [] for k in optimizers}
    for step in range(STEPS + 1):
        for name in ("foreach", "fused") if step % 2 else ("fused", "foreach"):
            start = time.perf_counter()
            optimizers[name].step()
            if step:
                times[name].append(time.perf_counter() - start)
    out = _summary(times["foreach"], times["fused"], "foreach", "fused")
    out["parameters"] = int(sum(p.numel() for p in params))
    return out


def main():
    loaded = load_backbone("all-MiniLM-L6-v2")
    result = {
        "machine": machine(),
        "group_by_length": {
            f"rows{n}": group_by_length(loaded, n)
            for n in ((8,) if QUICK else (28, 64))
        },
        "fused_adamw": fused_adamw(loaded),
    }
    write_result("training_step", result)


if __name__ == "__main__":
    main()
