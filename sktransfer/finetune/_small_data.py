"""Few samples: when a validation split cannot choose the epoch.

With a handful of samples per class, ``valid_size=0.1`` holds out fewer
samples than there are classes (a stratified split is impossible) or so few
that one sample decides the epoch. Rather than fail or train blind (a fixed
schedule lost accuracy against the probe it starts from), the fine-tuners
then **choose the number of epochs by cross-validation** on the training
data: ``k`` clones (``k`` = 3, or fewer when a class has fewer samples) each
train on ``k - 1`` folds and score every epoch, epoch 0 (the LP-FT probe)
included, on the held-out fold; the epoch with the lowest mean validation
loss wins, and
the final fit trains on every sample for that many epochs (epoch 0: the
probe alone, the backbone untouched). With one sample of some class nothing
can be held out: the probe is kept (a random head trains ``max_epochs``
without a choice). A class with a single sample never stops a split by itself:
its rows are trained on, and the split (or the folds) stratify the other
classes (:class:`RareClassesTrained`). A ``UserWarning`` says which happened.
"""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold, StratifiedShuffleSplit
from skorch.dataset import Dataset
from skorch.helper import predefined_split

from sktransfer._compat import _safe_indexing
from sktransfer.finetune._params import n_valid

__all__ = [
    "MIN_VALID_PER_CLASS",
    "RareClassesTrained",
    "choose_epochs",
    "too_small_reason",
]

MIN_VALID_PER_CLASS = 2  # fewer held-out samples per class cannot pick an epoch
MIN_VALID_REGRESSION = 5


def too_small_reason(net, y_encoded: np.ndarray, n_classes: int | None) -> str | None:
    """Why ``net.valid_size`` cannot choose the epoch on this ``y``, or None."""
    classes = net.classes_.tolist() if n_classes is not None else None
    if not net.valid_size:
        return None
    n = len(y_encoded)
    held = n_valid(net.valid_size, n)
    if isinstance(net.valid_size, Integral) and held >= n:  # a count: the user's
        k = n_classes or 1
        raise ValueError(
            f"valid_size={net.valid_size} holds out {held} samples, but there are "
            f"{n}, so none would be left to train on. Pass valid_size={k} "
            f"({'one sample per class' if n_classes else 'one sample'}), a "
            f"fraction in [{k / n:.3g}, {max(n - k, 1) / n:.3g}], or valid_size=None "
            "to train on every sample."
        )
    if n_classes is None:  # regression
        fraction = not isinstance(net.valid_size, Integral)
        if fraction and held < MIN_VALID_REGRESSION:
            return (
                f"valid_size={net.valid_size} of {n} samples holds out {held}, "
                f"fewer than {MIN_VALID_REGRESSION}"
            )
        return None
    counts = np.bincount(y_encoded, minlength=n_classes)
    present = counts[counts > 0]
    if counts.min() < 1 or (present >= 2).sum() < 2:
        # a class of the first fit missing (warm start), or nothing left to
        # validate on
        rare = ", ".join(
            f"{c}: {k}" for c, k in zip(classes, counts, strict=True) if k < 2
        )
        return (
            f"a class has {counts.min()} sample(s), too few to hold one out "
            f"(samples per class: {rare})"
        )
    # classes with one sample are trained on, never held out
    # (RareClassesTrained); the others must support a stratified split
    n_classes = int((present >= 2).sum())
    n = int(present[present >= 2].sum())
    if held < n_classes or n - held < n_classes:
        return (
            f"valid_size={net.valid_size} of {n} samples holds out {held} for "
            f"{n_classes} classes, and a stratified split needs at least one per "
            "class on each side"
        )
    # a count is the user's explicit choice; a fraction (the default) must
    # leave enough samples per class to choose an epoch on
    if (
        not isinstance(net.valid_size, Integral)
        and held < MIN_VALID_PER_CLASS * n_classes
    ):
        return (
            f"valid_size={net.valid_size} of {n} samples holds out {held} for "
            f"{n_classes} classes, fewer than {MIN_VALID_PER_CLASS} per class"
        )
    return None


class RareClassesTrained:
    """A stratified shuffle split that keeps the rows of classes with a single
    sample in the training part (they cannot be held out, and one of them
    must not stop a validation split of thousands of samples).

    Parameters
    ----------
    y : array of shape (n_samples,)
        The (encoded) labels.
    n_valid : int
        How many rows to hold out, all from classes with two samples or more.
    random_state : int or None
    """

    def __init__(self, y, n_valid: int, random_state=None):
        self.y = np.asarray(y)
        self.n_valid = int(n_valid)
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return 1

    def split(self, X=None, y=None, groups=None):
        values, counts = np.unique(self.y, return_counts=True)
        rare = np.isin(self.y, values[counts < 2])
        common = np.flatnonzero(~rare)
        splitter = StratifiedShuffleSplit(
            1, test_size=self.n_valid, random_state=self.random_state
        )
        train, valid = next(splitter.split(common, self.y[common]))
        yield np.sort(np.r_[common[train], np.flatnonzero(rare)]), common[valid]


def choose_epochs(net, X, y, y_encoded, n_classes) -> tuple[int, list[float]]:
    """The number of epochs (0 = the probe) with the lowest cross-validated
    validation loss (smoother than accuracy on a few held-out samples).

    Returns the epoch and the mean validation loss of every epoch
    ``0..max_epochs`` (empty when nothing could be held out).
    """
    if n_classes is not None:
        counts = np.bincount(y_encoded, minlength=n_classes)
        rare = counts[y_encoded] < 2  # trained on in every fold, never held out
        common = np.flatnonzero(~rare)
        present = counts[counts >= 2]
        k = int(min(3, present.min())) if len(present) >= 2 else 0
        if k < 2:
            return 0, []
        splitter = StratifiedKFold(k, shuffle=True, random_state=net.random_state)
        folds = [
            (np.sort(np.r_[common[tr], np.flatnonzero(rare)]), common[va])
            for tr, va in splitter.split(common, y_encoded[common])
        ]
    else:
        k = int(min(3, len(y_encoded) // 2))
        if k < 2:
            return 0, []
        folds = list(
            KFold(k, shuffle=True, random_state=net.random_state).split(y_encoded)
        )
    scores = []
    for train, valid in folds:
        X_valid, y_valid = (
            _one_column(_safe_indexing(X, valid)),
            _safe_indexing(y, valid),
        )
        fold = clone(net).set_params(
            valid_size=None,
            train_split=predefined_split(Dataset(X_valid, y_valid)),
            checkpoint_dir=None,  # never resume from, or write into, a user's folder
            verbose=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            fold.fit(_safe_indexing(X, train), _safe_indexing(y, train))
        start = (fold.start_scores_ or {}).get("valid_loss", np.nan)
        scores.append([start, *fold.history[:, "valid_loss"]])
    mean = np.nanmean(np.asarray(scores, dtype=float), axis=0)
    # ties go to fewer epochs (less to lose, less to pay)
    return int(np.nanargmin(mean)), mean.tolist()


def _one_column(X):
    """A list as a 1-D object array: skorch's ``Dataset`` reads a list as
    several inputs (and a list of texts as texts of different lengths)."""
    if not isinstance(X, list):
        return X
    out = np.empty(len(X), dtype=object)
    for i, value in enumerate(X):
        out[i] = value
    return out
