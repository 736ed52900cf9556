"""Which rows are source and which are target: scikit-learn's ``-1`` convention.

Unlabelled target rows enter ``fit`` the way scikit-learn's semi-supervised
estimators (``SelfTrainingClassifier``, ``LabelPropagation``) take unlabelled
rows: with the label ``-1``. A labelled row is a source row. Everything in
:mod:`sktransfer.adapt` and the fine-tuners' ``adaptation=`` reads ``y`` with
:func:`split_domains`, so one convention holds everywhere.
"""

from __future__ import annotations

import numpy as np

__all__ = ["UNLABELED", "is_unlabeled", "split_domains"]

UNLABELED = -1
"""The label of an unlabelled (target) row, as in scikit-learn."""


def is_unlabeled(y) -> np.ndarray:
    """Boolean mask of the rows labelled ``-1`` (unlabelled target rows).

    String labels work as scikit-learn's semi-supervised estimators take them:
    an ``object`` array (or pandas Series) of strings with the integer ``-1``
    for unlabelled rows. A NumPy string array cannot hold an integer, so there
    the string ``"-1"`` marks them.

    Examples
    --------
    >>> import numpy as np
    >>> is_unlabeled(np.array(["cat", -1, "dog"], dtype=object)).tolist()
    [False, True, False]
    >>> is_unlabeled([0, 1, -1]).tolist()
    [False, False, True]
    """
    y = np.asarray(y) if not hasattr(y, "to_numpy") else y.to_numpy()
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D to mark unlabelled rows; got shape {y.shape}.")
    if y.dtype.kind in "US":
        return y == "-1"
    if y.dtype == object:
        return np.fromiter(
            (
                not isinstance(v, (str, bytes, bool, np.bool_))
                and isinstance(v, (int, float, np.integer, np.floating))
                and v == UNLABELED
                for v in y
            ),
            dtype=bool,
            count=len(y),
        )
    if y.dtype.kind in "iuf":
        return y == UNLABELED
    return np.zeros(len(y), dtype=bool)


def split_domains(y, n_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(source, target)`` boolean masks from ``y`` (``None``: all source).

    Examples
    --------
    >>> source, target = split_domains([3, -1, 5, -1])
    >>> source.tolist(), target.tolist()
    ([True, False, True, False], [False, True, False, True])
    """
    if y is None:
        if n_samples is None:
            raise ValueError("split_domains needs y or n_samples.")
        source = np.ones(n_samples, dtype=bool)
        return source, ~source
    target = is_unlabeled(y)
    if n_samples is not None and len(target) != n_samples:
        raise ValueError(
            f"X has {n_samples} samples but y has {len(target)}; they must match."
        )
    return ~target, target
