"""Text batches run in groups of similar length: the same features, less padding."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sktransfer._text import length_groups, pad_tokens
from sktransfer.backbones import TextFeatureModel, load_backbone


def _cost(lengths, groups, overhead):
    return sum(len(g) * lengths[g].max() + overhead for g in groups)


def _best_cost(lengths, overhead):
    """Brute force: every split of the sorted lengths into consecutive groups."""
    srt = np.sort(lengths)
    n, best = len(srt), np.inf
    for k in range(n):
        for cuts in itertools.combinations(range(1, n), k):
            bounds = (0, *cuts, n)
            cost = sum(
                (hi - lo) * srt[hi - 1] + overhead
                for lo, hi in itertools.pairwise(bounds)
            )
            best = min(best, cost)
    return best


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 300), min_size=1, max_size=8),
    st.integers(0, 500),
)
def test_groups_are_a_partition_at_the_least_cost(lengths, overhead):
    lengths = np.asarray(lengths)
    groups = length_groups(lengths, overhead)
    rows = np.concatenate(groups)
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    for a, b in itertools.pairwise(groups):  # shortest rows first
        assert lengths[a].max() <= lengths[b].min()
    assert _cost(lengths, groups, overhead) == _best_cost(lengths, overhead)
    assert _cost(lengths, groups, overhead) <= len(lengths) * lengths.max() + overhead


def test_uniform_lengths_stay_one_group():
    assert len(length_groups([12] * 50)) == 1
    assert length_groups([]) == []


@pytest.fixture(scope="module")
def tiny_text():
    loaded = load_backbone("test-text")
    model = copy.deepcopy(loaded.model).eval().requires_grad_(True)
    rng = np.random.default_rng(0)
    vocab = model.config.vocab_size
    ids = [rng.integers(5, vocab, size=n).tolist() for n in (3, 4, 60, 62, 5, 61)]
    return model, pad_tokens(ids, loaded.tokenizer.pad_token_id)


@pytest.mark.parametrize(
    ("pooling", "layer"), [("mean", None), ("cls", 1), ("max", None)]
)
def test_grouped_batch_has_the_same_features_and_gradients(tiny_text, pooling, layer):
    model, batch = tiny_text
    grouped = TextFeatureModel(model, pooling, layer)
    whole = TextFeatureModel(model, pooling, layer, group_by_length=False)
    assert len(grouped._length_groups(**batch, kwargs={})) == 2  # short, long
    out = {}
    for name, module in (("grouped", grouped), ("whole", whole)):
        model.zero_grad()
        feats = module(**batch)
        (feats * torch.arange(feats.shape[1])).sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        out[name] = feats.detach(), grads
    torch.testing.assert_close(out["grouped"][0], out["whole"][0], atol=1e-5, rtol=1e-4)
    for a, b in zip(out["grouped"][1], out["whole"][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_extra_token_inputs_are_cut_with_the_rows(tiny_text):
    model, batch = tiny_text
    types = torch.zeros_like(batch["input_ids"])
    grouped = TextFeatureModel(model)(**batch, token_type_ids=types)
    whole = TextFeatureModel(model, group_by_length=False)(
        **batch, token_type_ids=types
    )
    torch.testing.assert_close(grouped, whole, atol=1e-5, rtol=1e-4)


def test_left_padded_batch_is_not_split(tiny_text):
    model, batch = tiny_text
    flipped = {k: v.flip(1) for k, v in batch.items()}  # padding on the left
    assert TextFeatureModel(model)._length_groups(**flipped, kwargs={}) is None


def test_module_pickled_before_the_option_still_runs(tiny_text):
    model, batch = tiny_text
    module = TextFeatureModel(model)
    del module.group_by_length  # as unpickled from an older release
    torch.testing.assert_close(
        module(**batch),
        TextFeatureModel(model, group_by_length=False)(**batch),
        atol=1e-5,
        rtol=1e-4,
    )
