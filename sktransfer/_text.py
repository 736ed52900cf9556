"""Texts to token batches: one tokeniser call, padding per batch.

The extractor and the fine-tuners collate text the same way: every text is
tokenised once (truncated to ``max_length``), and a batch is padded only to its
own longest sequence. A batch whose lengths differ a lot is then run through the
network in groups of similar length (:func:`length_groups`), each cut to its own
longest sequence: the extractor sorts its texts by length, but training batches
are drawn at random, and half of their tokens were padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["GROUP_OVERHEAD_TOKENS", "length_groups", "pad_tokens", "token_ids"]

# one more forward pass costs about as much as this many more (padded) tokens:
# measured on MiniLM on 2 CPU cores (forward and backward, batches of 28 and 64
# Rotten Tomatoes snippets: 32, 64, 128 and 256 tried, 64 fastest)
GROUP_OVERHEAD_TOKENS = 64


def token_ids(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text, truncated to ``max_length``."""
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def pad_tokens(ids: Sequence[Sequence[int]], pad_id: int | None) -> dict:
    """Pad a batch of token id lists to its longest one.

    Parameters
    ----------
    ids : sequence of sequences of int
    pad_id : int or None
        The tokenizer's ``pad_token_id`` (None: 0).

    Returns
    -------
    dict with ``input_ids`` and ``attention_mask``, int64 tensors (N, T).

    Examples
    --------
    >>> batch = pad_tokens([[5, 6, 7], [8]], pad_id=0)
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist()
    ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]])
    """
    width = max(len(x) for x in ids)
    input_ids = np.full((len(ids), width), pad_id or 0, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for r, row in enumerate(ids):
        input_ids[r, : len(row)] = row
        mask[r, : len(row)] = 1
    return {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(mask),
    }


def length_groups(lengths, overhead: int = GROUP_OVERHEAD_TOKENS) -> list[np.ndarray]:
    """Split a batch into groups of similar length that are cheapest to run.

    Running a group costs its rows times its longest length (the padded
    tokens) plus ``overhead`` (one more forward pass); the split minimising
    the total is found exactly, by dynamic programming over the distinct
    lengths in ascending order (a group never needs to skip a length).

    Parameters
    ----------
    lengths : array-like of int, shape (n,)
        Tokens of each row.
    overhead : int
        The cost of one more group, in padded tokens.

    Returns
    -------
    list of int ndarrays
        Row indices of each group, shortest rows first; together a
        permutation of ``range(n)``.

    Examples
    --------
    >>> [g.tolist() for g in length_groups([40, 5, 6, 41, 5], overhead=16)]
    [[1, 4, 2], [0, 3]]
    >>> [g.tolist() for g in length_groups([40, 5, 6, 41, 5], overhead=1000)]
    [[1, 4, 2, 0, 3]]
    """
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    order = np.argsort(lengths, kind="stable")
    if len(order) == 0:
        return []
    values, counts = np.unique(lengths[order], return_counts=True)
    rows = np.concatenate([[0], np.cumsum(counts)])  # rows before each value
    best = np.zeros(len(values) + 1)
    cut = np.zeros(len(values) + 1, dtype=np.int64)
    for j in range(1, len(values) + 1):  # groups ending at values[j - 1]
        cost = best[:j] + (rows[j] - rows[:j]) * values[j - 1] + overhead
        cut[j] = int(np.argmin(cost))
        best[j] = cost[cut[j]]
    bounds, j = [], len(values)
    while j > 0:
        bounds.append((rows[cut[j]], rows[j]))
        j = cut[j]
    return [order[lo:hi] for lo, hi in reversed(bounds)]
