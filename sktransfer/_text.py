"""Texts to token batches: one tokeniser call, padding per batch.

The extractor and the fine-tuners collate text the same way: every text is
tokenised once (truncated to ``max_length``), and a batch is padded only to its
own longest sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["pad_tokens", "token_ids"]


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
