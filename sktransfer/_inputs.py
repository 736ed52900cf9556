"""Validate ``X`` once, in one place, and turn it into a flat sequence of samples.

Every error names the row (its position, and its index label when ``X`` carried an
index) and the offending value, and says how to fix it.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from sktransfer.exceptions import InputError

__all__ = ["Samples", "as_samples", "check_texts", "check_y_missing", "is_missing"]

_COLUMN_TRANSFORMER_HINT = (
    "PretrainedFeatureExtractor embeds a single column of images or texts. Route "
    "each column with a ColumnTransformer, e.g. ColumnTransformer([('img', "
    "PretrainedFeatureExtractor(backbone='efficientnet_lite0'), 'image'), ('txt', "
    "PretrainedFeatureExtractor(backbone='all-MiniLM-L6-v2'), 'text')])."
)


@dataclass
class Samples:
    """A validated, flat view of ``X``.

    Attributes
    ----------
    values : list or ndarray
        One entry per sample. For a numpy image batch, the batch itself.
    labels : sequence or None
        The pandas index, to name rows in errors.
    feature_names : ndarray of str or None
        The column name when ``X`` was a one-column DataFrame.
    offset : int
        Position of ``values[0]`` in the whole input (a chunk of it names its
        rows by their position in the whole).
    """

    values: Any
    labels: Any = None
    feature_names: np.ndarray | None = None
    offset: int = 0

    def __len__(self) -> int:
        return len(self.values)

    def row(self, i: int) -> str:
        """How to name sample ``i`` in a message."""
        n = i + self.offset
        if self.labels is not None:
            label = self.labels[i]
            if not (isinstance(label, numbers.Integral) and label == n):
                return f"row {n} (index {label!r})"
        return f"row {n}"

    def chunk(self, lo: int, hi: int) -> Samples:
        """Samples ``lo`` to ``hi`` (exclusive), still named by their position
        in the whole input."""
        return Samples(
            self.values[lo:hi],
            None if self.labels is None else self.labels[lo:hi],
            self.feature_names,
            self.offset + lo,
        )


def is_missing(value: Any) -> bool:
    """True for None, NaN, ``pd.NA``, ``pd.NaT`` and numpy's NaT.

    Examples
    --------
    >>> [is_missing(v) for v in (None, float("nan"), "", 0)]
    [True, True, False, False]
    """
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    if isinstance(value, np.datetime64 | np.timedelta64):
        return bool(np.isnat(value))
    return type(value).__name__ in ("NAType", "NaTType")


def _is_scalar_sample(X: Any) -> bool:
    if isinstance(X, str | bytes | os.PathLike):
        return True
    try:
        from PIL import Image

        return isinstance(X, Image.Image)
    except ImportError:  # pragma: no cover
        return False


def as_samples(X: Any, modality: str) -> Samples:
    """Validate ``X`` for a backbone of ``modality`` and return its samples.

    Parameters
    ----------
    X : list, tuple, ndarray, pandas Series or one-column DataFrame
    modality : {"image", "text"}

    Returns
    -------
    Samples
    """
    if _is_scalar_sample(X):
        raise InputError(
            f"X must be a sequence of samples, got a single {type(X).__name__}. "
            "Wrap it in a list: transform([x])."
        )
    labels = None
    feature_names = None
    if hasattr(X, "iloc") and hasattr(X, "columns"):  # DataFrame
        if X.shape[1] != 1:
            raise InputError(
                f"X is a DataFrame with {X.shape[1]} columns {list(X.columns)[:10]}. "
                + _COLUMN_TRANSFORMER_HINT
            )
        feature_names = np.asarray([str(X.columns[0])], dtype=object)
        X = X.iloc[:, 0]
    if hasattr(X, "iloc"):  # Series
        labels = X.index
        values: Any = X.tolist()
    elif isinstance(X, np.ndarray):
        values = _from_ndarray(X, modality)
    elif isinstance(X, list | tuple):
        values = list(X)
    elif hasattr(X, "__array__") and hasattr(X, "shape"):  # torch tensors, ...
        values = _from_ndarray(np.asarray(X), modality)
    elif hasattr(X, "__iter__") and not isinstance(X, dict):
        values = list(X)
    else:
        raise InputError(
            f"X must be a list, array, pandas Series or one-column DataFrame of "
            f"{modality}s; got {type(X).__name__}."
        )
    if len(values) == 0:
        raise InputError(
            "X has 0 samples; at least one is required (was the input filtered to "
            "nothing?)."
        )
    return Samples(values, labels, feature_names)


def _from_ndarray(X: np.ndarray, modality: str) -> Any:
    numeric = X.dtype.kind in "biuf"
    if modality == "image" and numeric:
        if X.ndim == 3 and X.shape[-1] in (3, 4):
            raise InputError(
                f"X is one array of shape {X.shape}: a single {X.shape[-1]}-channel "
                f"image, or {X.shape[0]} grayscale images {X.shape[1]} pixels wide? "
                "For one image, wrap it in a list: transform([image]). For a "
                "grayscale batch, add a channel axis: X[..., None] (N, H, W, 1)."
            )
        if X.ndim in (3, 4):
            return X  # a batch (N, H, W) or (N, H, W, C)
        raise InputError(
            f"a numeric array of shape {X.shape} is not an image batch: pass "
            "(N, H, W) or (N, H, W, C), or a list of images. To embed tabular "
            "features, use the 'test-mlp' style tabular backbones or a scaler."
        )
    if X.ndim == 2 and X.shape[1] == 1:
        X = X[:, 0]  # a ColumnTransformer column selected with a list
    if X.ndim != 1:
        raise InputError(
            f"X has shape {X.shape}; expected one sample per row (1-D). "
            + _COLUMN_TRANSFORMER_HINT
        )
    return X.tolist() if X.dtype.kind in "OUS" else list(X)


def _surrogate(text: str) -> int | None:
    """Index of the first lone surrogate in ``text`` (not encodable as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def check_texts(samples: Samples) -> dict[int, str]:
    """Return ``{position: message}`` for every sample that is not a valid text.

    Empty strings are valid (they embed to a finite vector); missing values,
    non-strings and strings with lone surrogates (not valid Unicode text) are not.
    """
    errors = {}
    for i, value in enumerate(samples.values):
        if isinstance(value, str):
            at = _surrogate(value)
            if at is not None:
                errors[i] = (
                    f"{samples.row(i)}: the text {value!r:.60} has a lone surrogate "
                    f"{value[at]!r} at position {at}, which is not valid Unicode "
                    "(often a file decoded with the wrong codec). Decode it again, "
                    "or clean it: text.encode('utf-8', 'replace').decode('utf-8')."
                )
            continue
        if is_missing(value):
            msg = (
                f"{samples.row(i)}: the text is missing ({value!r}). Fill or drop "
                "missing texts first, e.g. X.fillna('')."
            )
        else:
            msg = (
                f"{samples.row(i)}: expected a str, got {type(value).__name__} "
                f"{value!r:.60}. Convert the column with .astype(str) if intended, "
                "or use an image backbone for images."
            )
        errors[i] = msg
    return errors


def check_y_missing(y) -> np.ndarray:
    """``y`` as an array; missing labels (None, NaN, NA, NaT) are an error that
    names their rows."""
    y = np.asarray(y)
    if y.dtype.kind in "fcOmM":
        flat = y.reshape(len(y), -1) if y.ndim > 1 else y[:, None]
        rows = [i for i in range(len(y)) if any(is_missing(v) for v in flat[i])]
        if rows:
            raise ValueError(
                f"y has missing values (None/NaN) at rows {rows[:10]}"
                f"{' ...' if len(rows) > 10 else ''}; drop those samples (from X "
                "too) or fill their targets first."
            )
    return y
