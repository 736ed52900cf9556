"""Frozen-feature adaptation: per-domain standardisation and CORAL.

Both are scikit-learn transformers fitted on source rows (labelled) and
unlabelled target rows (label ``-1``) together, so they sit between a
:class:`~sktransfer.PretrainedFeatureExtractor` and a head in a ``Pipeline``.
``fit_transform`` maps each training row by its own domain; ``transform``
(prediction) treats its rows as target rows, the transductive setting: the
model is used on the domain it was adapted to. ``transform_domain="source"``
maps new rows as source rows instead (the label-free scorers use it to score
held-out source rows).
"""

from __future__ import annotations

import warnings
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from sktransfer._compat import Interval, StrOptions, _fit_context
from sktransfer.adapt._domains import split_domains

__all__ = ["CORAL", "DomainAdapter", "DomainStandardScaler"]


class DomainAdapter(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """What the frozen-feature adapters share: the ``-1`` convention, the
    domain of new rows, and per-domain ``fit_transform``."""

    _parameter_constraints: dict = {
        "transform_domain": [StrOptions({"target", "source"})],
    }

    def __init__(self, *, transform_domain="target"):
        self.transform_domain = transform_domain

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the map from the source rows (labelled) and the target rows
        (``y == -1``); ``y=None`` means every row is a source row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features (e.g. embeddings) of both domains.
        y : array-like of shape (n_samples,), default=None
            Labels, ``-1`` for unlabelled target rows.

        Returns
        -------
        self
        """
        X = validate_data(self, X, dtype=np.float64, reset=True)
        source, target = split_domains(y, len(X))
        if not target.any():
            warnings.warn(
                f"{type(self).__name__}.fit got no unlabelled target rows (label "
                "-1): there is nothing to adapt to, so it maps every row as a "
                "source row (the identity for the head).",
                UserWarning,
                stacklevel=2,
            )
            target = source
        if not source.any():
            source = target
        self._fit_domains(X[source], X[target])
        return self

    def fit_transform(self, X, y=None):
        """Fit, then map each row by its own domain (source or target)."""
        self.fit(X, y)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        source, _ = split_domains(y, len(X))
        out = self._map(X, "target")
        if source.any():
            out[source] = self._map(X[source], "source")
        return out.astype(np.float32)

    def transform(self, X):
        """Map new rows as ``transform_domain`` rows (target by default).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_features), float32
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._map(X, self.transform_domain).astype(np.float32)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class DomainStandardScaler(DomainAdapter):
    """Standardise each domain with its own mean and standard deviation.

    The simplest adaptation there is, and often most of what there is to gain:
    a shift of style moves and rescales embeddings as a whole, and centring
    each domain on its own statistics undoes that part. Any heavier method
    should beat it to be worth its cost.

    Parameters
    ----------
    with_std : bool, default=True
        Also divide by each domain's standard deviation (else only centre).
    transform_domain : {"target", "source"}, default="target"
        How ``transform`` treats new rows.

    Attributes
    ----------
    source_mean_, source_scale_, target_mean_, target_scale_ : ndarray
        Each domain's statistics (``scale`` is 1 without ``with_std``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Xs, Xt = rng.normal(0, 1, (50, 3)), rng.normal(5, 2, (40, 3))
    >>> y = np.r_[rng.integers(0, 2, 50), -np.ones(40, dtype=int)]
    >>> Z = DomainStandardScaler().fit_transform(np.r_[Xs, Xt], y)
    >>> bool(np.allclose(Z[50:].mean(0), 0, atol=1e-6))
    True
    """

    _parameter_constraints: dict = {
        **DomainAdapter._parameter_constraints,
        "with_std": ["boolean"],
    }

    def __init__(self, *, with_std=True, transform_domain="target"):
        super().__init__(transform_domain=transform_domain)
        self.with_std = with_std

    def _fit_domains(self, Xs, Xt):
        for name, Xd in (("source", Xs), ("target", Xt)):
            scale = Xd.std(axis=0) if self.with_std else np.ones(Xd.shape[1])
            scale[scale < 1e-12] = 1.0  # constant features stay as they are
            setattr(self, f"{name}_mean_", Xd.mean(axis=0))
            setattr(self, f"{name}_scale_", scale)

    def _map(self, X, domain):
        mean = getattr(self, f"{domain}_mean_")
        return (X - mean) / getattr(self, f"{domain}_scale_")


def _sym_power(C: np.ndarray, power: float) -> np.ndarray:
    values, vectors = np.linalg.eigh(C)
    values = np.clip(values, 1e-12, None)
    return (vectors * values**power) @ vectors.T


class CORAL(DomainAdapter):
    """CORrelation ALignment (Sun, Feng and Saenko, 2016) of frozen features.

    Source rows are whitened by the source covariance and re-coloured by the
    target covariance (and moved to the target mean), so that a head trained
    on them sees the target's second-order statistics; target rows are left
    as they are. Both covariances are regularised by ``reg`` times their
    mean variance on the diagonal, which also keeps them invertible when
    there are fewer rows than features.

    Parameters
    ----------
    reg : float, default=1.0
        Ridge added to each covariance, relative to its mean variance (the
        paper adds the identity to covariances of raw features).
    transform_domain : {"target", "source"}, default="target"
        How ``transform`` treats new rows (target rows are unchanged).

    Attributes
    ----------
    source_mean_, target_mean_ : ndarray of shape (n_features,)
    coloring_ : ndarray of shape (n_features, n_features)
        ``Cs^{-1/2} Ct^{1/2}``, applied to centred source rows.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Xs = rng.normal(0, 1, (200, 2))
    >>> Xt = rng.normal(0, 1, (200, 2)) @ np.array([[3.0, 0.0], [1.0, 0.5]])
    >>> y = np.r_[np.zeros(200, dtype=int), -np.ones(200, dtype=int)]
    >>> Z = CORAL(reg=1e-3).fit_transform(np.r_[Xs, Xt], y)
    >>> bool(np.allclose(np.cov(Z[:200].T), np.cov(Xt.T), atol=0.05))
    True
    """

    _parameter_constraints: dict = {
        **DomainAdapter._parameter_constraints,
        "reg": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, *, reg=1.0, transform_domain="target"):
        super().__init__(transform_domain=transform_domain)
        self.reg = reg

    def _cov(self, Xd):
        C = np.cov(Xd, rowvar=False) if len(Xd) > 1 else np.zeros((Xd.shape[1],) * 2)
        C = np.atleast_2d(C)
        ridge = self.reg * max(float(np.trace(C)) / len(C), 1e-12)
        return C + ridge * np.eye(len(C))

    def _fit_domains(self, Xs, Xt):
        self.source_mean_, self.target_mean_ = Xs.mean(axis=0), Xt.mean(axis=0)
        self.coloring_ = _sym_power(self._cov(Xs), -0.5) @ _sym_power(
            self._cov(Xt), 0.5
        )

    def _map(self, X, domain):
        if domain == "target":
            return X.copy()
        return (X - self.source_mean_) @ self.coloring_ + self.target_mean_
