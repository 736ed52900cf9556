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
    "TargetShareBatchSampler",
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


class TargetShareBatchSampler:
    """Batches of every labelled row and a fresh share of the target rows,
    each batch mixing both domains, texts grouped by length.

    Adapting while fine-tuning (``adaptation=``) trains on the unlabelled
    target rows besides the source rows; forwarding all of them every epoch
    makes an epoch cost as much more as there are target rows. Each epoch this
    batch sampler keeps every labelled row and draws ``ceil(ratio *
    n_labelled)`` target rows afresh (all of them when there are fewer), so
    the target rows are all seen over a few epochs. Every batch holds the same
    share of each domain (DANN and CORAL compare the domains within a batch),
    and no batch is larger than ``batch_size``.

    With ``lengths`` (texts), each domain's rows are shuffled and, in blocks
    of ``POOL`` batches, sorted by length, so the ``i``-th batch of a block
    takes the ``i``-th length quantile of *both* domains: batches pad to a
    length close to their texts' own, as :class:`LengthGroupedBatchSampler`'s
    do, even when one domain's texts are longer than the other's (grouping the
    mixed rows by length instead would make batches of one domain). The batch
    order is shuffled.

    Parameters
    ----------
    labeled : array of bool
        Which rows are labelled (source) rows.
    ratio : float or None
        Target rows per labelled row in an epoch; ``None`` takes every target
        row every epoch.
    batch_size : int
    lengths : array of int, optional
        Token count of each row (texts), to group batches by length.
    generator : torch.Generator, optional
        For reproducible epochs.

    Examples
    --------
    >>> sampler = TargetShareBatchSampler([True] * 8 + [False] * 8, 0.5, 4)
    >>> batches = list(sampler)
    >>> len(batches), sorted(sum(r < 8 for r in b) for b in batches)
    (3, [2, 3, 3])
    """

    POOL = LengthGroupedBatchSampler.POOL

    def __init__(
        self, labeled, ratio: float | None, batch_size: int, lengths=None,
        generator=None,
    ):  # fmt: skip
        self.labeled = np.asarray(labeled, dtype=bool)
        self.ratio = ratio
        self.batch_size = int(batch_size)
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.generator = generator

    def _n_target(self) -> int:
        n_target = int((~self.labeled).sum())
        if self.ratio is None:
            return n_target
        return min(n_target, int(np.ceil(self.ratio * self.labeled.sum())))

    def __len__(self) -> int:
        return -(-(int(self.labeled.sum()) + self._n_target()) // self.batch_size)

    def __iter__(self):
        source = np.flatnonzero(self.labeled)
        target = np.flatnonzero(~self.labeled)
        pick = torch.randperm(len(target), generator=self.generator).numpy()
        target = target[pick[: self._n_target()]]
        source = source[torch.randperm(len(source), generator=self.generator).numpy()]
        n_batches = len(self)
        if n_batches == 0:
            return iter([])
        # batch sizes <= batch_size; each batch's source count as even as can be
        sizes = _even_counts(len(source) + len(target), n_batches)
        from_source = _even_counts(len(source), n_batches)
        parts = zip(
            self._cut(source, from_source),
            self._cut(target, sizes - from_source),
            strict=True,
        )
        batches = [np.r_[s, t].tolist() for s, t in parts]
        order = torch.randperm(n_batches, generator=self.generator).tolist()
        return iter([batches[i] for i in order])

    def _cut(self, rows: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
        """``rows`` cut into batches of ``counts``, sorted by length within
        each block of ``POOL`` batches."""
        bounds = np.r_[0, np.cumsum(counts)]
        if self.lengths is not None:
            rows = rows.copy()
            for lo in range(0, len(counts), self.POOL):
                a, b = bounds[lo], bounds[min(lo + self.POOL, len(counts))]
                block = rows[a:b]
                rows[a:b] = block[np.argsort(-self.lengths[block], kind="stable")]
        return [rows[bounds[i] : bounds[i + 1]] for i in range(len(counts))]


def _even_counts(n: int, k: int) -> np.ndarray:
    """``n`` split into ``k`` counts differing by at most one, larger first."""
    return np.full(k, n // k) + (np.arange(k) < n % k)
