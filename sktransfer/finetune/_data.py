"""Data for the fine-tuners: one sample per item, and length-grouped text batches."""

from __future__ import annotations

import functools

import numpy as np
import torch
from skorch.dataset import Dataset
from skorch.utils import multi_indexing

from sktransfer._images import prepare_image
from sktransfer._inputs import Samples
from sktransfer._text import pad_tokens, token_ids

__all__ = [
    "LengthGroupedBatchSampler",
    "SampleDataset",
    "TargetShareSampler",
    "head_extractor",
]


class SampleDataset(Dataset):
    """One sample per item: a decoded image, a text index or a feature row.

    Texts are tokenised once (on first use) and padded per batch by
    :meth:`collate`, exactly as the extractor does (:mod:`sktransfer._text`).
    """

    def __init__(self, samples: Samples, y, loaded, max_length: int):
        # X is the samples themselves, so skorch's ``data_from_dataset`` (used
        # by scoring without cached predictions) gets real inputs back;
        # items are built from their position (see __getitem__)
        super().__init__(samples.values, y, length=len(samples))
        self.samples = samples
        self.modality = loaded.spec.modality
        self.pre = loaded.spec.preprocessing
        self.tokenizer = loaded.tokenizer
        self.max_length = max_length

    def __getitem__(self, i):
        yi = None if self.y is None else multi_indexing(self.y, i, self.y_indexing)
        return self.transform(i, yi)

    @functools.cached_property
    def token_ids(self) -> list[list[int]]:
        """Token ids of every text, truncated to ``max_length``."""
        return token_ids(self.tokenizer, self.samples.values, self.max_length)

    @functools.cached_property
    def lengths(self) -> np.ndarray | None:
        """Token counts of the texts (None otherwise), for length-grouped batches."""
        if self.modality != "text":
            return None
        return np.array([len(x) for x in self.token_ids])

    def transform(self, X, y):
        i = int(X)
        value = self.samples.values[i]
        if self.modality == "image":
            arr = prepare_image(value, self.samples.row(i), self.pre)
            X = torch.tensor(arr).permute(2, 0, 1).contiguous()
        elif self.modality == "tabular":
            X = torch.tensor(
                np.asarray(value, dtype=np.float32)
            )  # a copy: X may be read-only
        else:
            X = i  # collate tokenises the whole batch
        y = torch.as_tensor(0 if y is None else y)
        return X, y

    @property
    def collate(self):
        """The ``collate_fn`` for this dataset (None: torch's default)."""
        return self._collate_texts if self.modality == "text" else None

    def _collate_texts(self, batch):
        ids = [self.token_ids[int(i)] for i, _ in batch]
        X = pad_tokens(ids, self.tokenizer.pad_token_id)
        return X, torch.stack([y for _, y in batch])


class LengthGroupedBatchSampler:
    """Random batches of texts of similar length (less padding, same data).

    Each epoch the indices are shuffled, cut into pools of ``50 * batch_size``,
    each pool is sorted by length and cut into batches, and the batches are
    shuffled: every sample is seen once per epoch, as with ``shuffle=True``, but a
    batch pads to a length close to its texts' own (the idea of Hugging Face
    Trainer's ``group_by_length``).

    Parameters
    ----------
    lengths : array of int
        Token count of each sample.
    batch_size : int
    generator : torch.Generator, optional
        For reproducible epochs.

    Examples
    --------
    >>> sampler = LengthGroupedBatchSampler([5, 1, 4, 2, 3, 6], 2)
    >>> batches = list(sampler)
    >>> sorted(i for b in batches for i in b)
    [0, 1, 2, 3, 4, 5]
    >>> len(sampler)
    3
    """

    POOL = 50

    def __init__(self, lengths, batch_size: int, generator=None):
        self.lengths = np.asarray(lengths)
        self.batch_size = int(batch_size)
        self.generator = generator

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        n, bs = len(self.lengths), self.batch_size
        perm = torch.randperm(n, generator=self.generator).numpy()
        pool = self.POOL * bs
        batches = []
        for lo in range(0, n, pool):
            chunk = perm[lo : lo + pool]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + bs].tolist() for i in range(0, len(chunk), bs)]
        order = torch.randperm(len(batches), generator=self.generator).tolist()
        return iter([batches[i] for i in order])


def _training_precision(net) -> str:
    """The fine-tuner's precision, resolved as in training, so the frozen
    features match the module's own forward pass (fp32 on every CPU)."""
    import torch

    from sktransfer._runtime import resolve_precision

    device = net._resolved_device()
    dtype = resolve_precision(net.precision, device, training=True)
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def head_extractor(net):
    """The fitted frozen extractor that embeds once for ``strategy="head"``."""
    from sktransfer._extractor import PretrainedFeatureExtractor

    modality = net._backbone_spec().modality
    if modality == "tabular":
        probe = np.zeros((1, net.n_features_in_), np.float32)
    elif modality == "text":
        probe = ["probe"]
    else:
        probe = [np.zeros((8, 8, 3), np.uint8)]
    return PretrainedFeatureExtractor(
        net.backbone,
        weights=net.weights,
        pooling=net.pooling,
        device=str(net._resolved_device()),
        precision=_training_precision(net),
        max_length=net.max_length,
        normalize=False,
        trust_remote_code=net.trust_remote_code,
    ).fit(probe)


class TargetShareSampler(torch.utils.data.Sampler):
    """Every labelled row and a fresh random share of the target rows, per epoch.

    Adapting while fine-tuning (``adaptation=``) trains on the unlabelled
    target rows besides the source rows; forwarding all of them every epoch
    makes an epoch cost as much more as there are target rows. This sampler
    keeps every labelled row and draws ``ceil(ratio * n_labelled)`` target rows
    afresh each epoch (all of them when there are fewer), shuffled together,
    so the target rows are all seen over a few epochs and each batch still
    mixes both domains.

    Parameters
    ----------
    labeled : array of bool
        Which rows are labelled (source) rows.
    ratio : float or None
        Target rows per labelled row in an epoch; ``None`` takes every target
        row every epoch.
    generator : torch.Generator, optional
        For reproducible epochs.

    Examples
    --------
    >>> sampler = TargetShareSampler([True] * 4 + [False] * 8, ratio=0.5)
    >>> rows = list(sampler)
    >>> len(rows), sum(r < 4 for r in rows)
    (6, 4)
    """

    def __init__(self, labeled, ratio: float | None, generator=None):
        self.labeled = np.asarray(labeled, dtype=bool)
        self.ratio = ratio
        self.generator = generator

    def _n_target(self) -> int:
        n_target = int((~self.labeled).sum())
        if self.ratio is None:
            return n_target
        return min(n_target, int(np.ceil(self.ratio * self.labeled.sum())))

    def __len__(self) -> int:
        return int(self.labeled.sum()) + self._n_target()

    def __iter__(self):
        source = np.flatnonzero(self.labeled)
        target = np.flatnonzero(~self.labeled)
        pick = torch.randperm(len(target), generator=self.generator).numpy()
        rows = np.concatenate([source, target[pick[: self._n_target()]]])
        order = torch.randperm(len(rows), generator=self.generator).numpy()
        return iter(rows[order].tolist())
