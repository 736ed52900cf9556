"""Pairs drawn from labels, with a bounded budget (SetFit's sampling)."""

from __future__ import annotations

import numpy as np

__all__ = ["draw_pairs", "pair_budget"]

PAIRS_PER_SAMPLE = 40  # SetFit's default: 20 iterations x (1 positive + 1 negative)


def pair_budget(n_pairs, y) -> int:
    """``"auto"``: 40 pairs per sample (SetFit's 20 iterations of one positive
    and one negative pair each), at most the number of distinct pairs; an int
    is taken as given (pairs repeat once the distinct ones run out)."""
    if n_pairs != "auto":
        return int(max(1, n_pairs))
    n = len(y)
    return int(max(1, min(PAIRS_PER_SAMPLE * n, n * (n - 1) // 2)))


def draw_pairs(y, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """``n_pairs`` rows ``(i, j, same)``: half positive (same label), half
    negative, each drawn uniformly among its kind, without repeats while the
    kind has distinct pairs left (then with repeats); memory is
    ``O(n_pairs)``, never ``O(n²)``.

    Examples
    --------
    >>> pairs = draw_pairs([0, 0, 1, 1, 1], 6, np.random.default_rng(0))
    >>> pairs.shape, int(pairs[:, 2].sum())
    ((6, 3), 3)
    """
    y = np.asarray(y)
    classes, inverse = np.unique(y, return_inverse=True)
    members = [np.flatnonzero(inverse == c) for c in range(len(classes))]
    sizes = np.array([len(m) for m in members])
    positive_classes = np.flatnonzero(sizes >= 2)
    n_pos = n_pairs // 2 if len(positive_classes) else 0
    n_neg = n_pairs - n_pos if len(classes) > 1 else 0
    if n_neg == 0 and len(positive_classes):
        n_pos = n_pairs
    rows, seen = [], set()
    # positives: a class in proportion to its number of pairs, two of its members
    weights = sizes[positive_classes] * (sizes[positive_classes] - 1)
    tries = 0
    while len(rows) < n_pos and tries < 50 * n_pairs:
        tries += 1
        c = positive_classes[
            rng.choice(len(positive_classes), p=weights / weights.sum())
        ]
        i, j = rng.choice(members[c], 2, replace=False)
        key = (min(i, j), max(i, j))
        if key in seen and tries < 10 * n_pairs:
            continue
        seen.add(key)
        rows.append((i, j, 1))
    n = len(y)
    tries = 0
    while len(rows) < n_pos + n_neg and tries < 50 * n_pairs:
        tries += 1
        i, j = rng.integers(0, n, 2)
        if inverse[i] == inverse[j]:
            continue
        key = (min(i, j), max(i, j))
        if key in seen and tries < 10 * n_pairs:
            continue
        seen.add(key)
        rows.append((i, j, 0))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)
