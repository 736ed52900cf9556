"""Transferability scores: how well frozen features suit a task, before training.

Plain functions of a feature matrix and the labels, like ``sklearn.metrics``:

- :func:`logme_score` -- LogME (You et al., ICML 2021; the evidence-maximisation
  fixed point of the JMLR 2022 version): the log marginal likelihood, per
  sample, of a Bayesian linear model from the features to the target,
  maximised over its prior and noise precisions. One-vs-rest columns for
  classes; each target column for regression; averaged.
- :func:`hscore` -- the shrinkage H-score (Ibrahim et al., ICLR 2022): how much
  of the features' variance the class means explain, ``tr(Cov(f)^-1 Cov(E[f|y]))``,
  with the Ledoit-Wolf shrunk covariance so that it is stable when samples are
  few and features many.

Both are relative: compare backbones (or layers) on the same data, never a score
with a threshold. See the "Choosing a backbone" guide for their failure modes.
"""

from __future__ import annotations

import numpy as np
from sklearn.covariance import ledoit_wolf_shrinkage
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.validation import check_array, check_consistent_length

__all__ = ["hscore", "logme_score"]

_EPS = 1e-10


def _evidence(s: np.ndarray, U: np.ndarray, y: np.ndarray, d: int, n_iter: int):
    """LogME evidence of one target column, from the thin SVD of the features.

    ``s`` holds the ``k = min(n, d)`` singular values; the ``d - k`` that are zero
    (when n < d) still enter the evidence through ``log(alpha)`` terms.
    """
    n = len(y)
    sigma = s**2
    z = U.T @ y  # y in the left singular basis
    y2 = float(y @ y)
    perp = max(y2 - float(z @ z), 0.0)  # the part of y outside the span of F
    alpha, beta = 1.0, 1.0
    for _ in range(n_iter):
        denom = alpha + beta * sigma
        gamma = float(np.sum(beta * sigma / denom))
        m2 = float(np.sum(beta**2 * sigma * z**2 / denom**2))  # |m|^2
        res2 = perp + float(np.sum((alpha / denom) ** 2 * z**2))  # |F m - y|^2
        new_alpha = gamma / (m2 + _EPS)
        new_beta = (n - gamma) / (res2 + _EPS)
        done = (
            abs(new_alpha - alpha) <= 1e-5 * alpha
            and abs(new_beta - beta) <= 1e-5 * beta
        )
        alpha, beta = max(new_alpha, _EPS), max(new_beta, _EPS)
        if done:
            break
    denom = alpha + beta * sigma
    m2 = float(np.sum(beta**2 * sigma * z**2 / denom**2))
    res2 = perp + float(np.sum((alpha / denom) ** 2 * z**2))
    log_det = float(np.sum(np.log(denom))) + (d - len(sigma)) * np.log(alpha)
    evidence = (
        n / 2 * np.log(beta)
        + d / 2 * np.log(alpha)
        - n / 2 * np.log(2 * np.pi)
        - beta / 2 * res2
        - alpha / 2 * m2
        - log_det / 2
    )
    return evidence / n, alpha, beta


def logme_score(features, y, *, regression: bool = False, max_iter: int = 100):
    """LogME: the per-sample log evidence of a linear model on ``features``.

    Higher is better. It needs no training and no hyper-parameters: the prior
    precision ``alpha`` and the noise precision ``beta`` of the Bayesian linear
    model are set by maximising the evidence (a fixed point, usually a few tens
    of iterations on an SVD computed once).

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Frozen features, e.g. ``PretrainedFeatureExtractor().fit_transform(X)``.
    y : array-like of shape (n_samples,) or (n_samples, n_targets)
        Class labels (any type; one-vs-rest indicator columns are scored), or
        regression targets with ``regression=True`` (each column is scored).
    regression : bool, default=False
    max_iter : int, default=100
        Fixed-point iterations per target column.

    Returns
    -------
    float
        The mean, over target columns, of the log evidence divided by n.

    Notes
    -----
    The score is not invariant to the scale of the features and grows with their
    dimension; compare candidates on the same data, and read it as a ranking.
    With ``n < n_features``, the ``n_features - n`` zero singular values still
    count (through ``log(alpha)``), as the evidence requires.

    References
    ----------
    You, Liu, Wang, Long. "LogME: Practical Assessment of Pre-trained Models for
    Transfer Learning", ICML 2021; "Ranking and Tuning Pre-trained Models: A New
    Paradigm for Exploiting Model Hubs", JMLR 2022.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 50)
    >>> good = rng.normal(size=(100, 8)) + 3 * y[:, None]
    >>> bad = rng.normal(size=(100, 8))
    >>> bool(logme_score(good, y) > logme_score(bad, y))
    True
    """
    F = check_array(features, dtype=np.float64)
    check_consistent_length(F, y)
    n, d = F.shape
    if regression:
        Y = check_array(y, dtype=np.float64, ensure_2d=False)
        Y = Y.reshape(n, -1)
    else:
        labels = LabelEncoder().fit_transform(np.asarray(y).ravel())
        Y = np.eye(labels.max() + 1)[labels]
    U, s, _ = np.linalg.svd(F, full_matrices=False)
    scores = [_evidence(s, U, Y[:, j], d, max_iter)[0] for j in range(Y.shape[1])]
    return float(np.mean(scores))


def hscore(features, y):
    """The shrinkage H-score of ``features`` for class labels ``y``.

    ``tr(C^-1 (1 - a) Cov(E[f|y]))`` where ``C = (1 - a) Cov(f) + a mu I`` is the
    Ledoit-Wolf shrunk covariance of the features (``a`` its shrinkage, ``mu`` the
    mean variance) and ``E[f|y]`` replaces each sample by its class mean. Higher
    is better; at most the number of classes minus one.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        Class labels.

    Returns
    -------
    float

    References
    ----------
    Bao, Li, Huang, Zheng. "An Information-Theoretic Approach to Transferability
    in Task Transfer Learning", ICIP 2019. Ibrahim, Ponomareva, Mazumder. "Newer
    is not always better: Rethinking transferability metrics, their peculiarities,
    stability and performance", ICLR 2022 (the shrinkage estimator).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 50)
    >>> good = rng.normal(size=(100, 8)) + 3 * y[:, None]
    >>> bool(hscore(good, y) > hscore(rng.normal(size=(100, 8)), y))
    True
    """
    F = check_array(features, dtype=np.float64)
    check_consistent_length(F, y)
    labels = LabelEncoder().fit_transform(np.asarray(y).ravel())
    F = F - F.mean(axis=0)
    n, d = F.shape
    a = float(ledoit_wolf_shrinkage(F, assume_centered=True))
    classes, counts = np.unique(labels, return_counts=True)
    centres = np.stack([F[labels == c].mean(axis=0) for c in classes])  # (K, d)
    lam = a * float(np.einsum("ij,ij->", F, F)) / (n * d)  # a * mean variance
    if n < d and lam > 0:
        # Woodbury: C = lam I + (1 - a) F'F / n, inverted in the n x n space
        # (O(n^2 d) instead of O(d^3); the same value, as C is invertible)
        quad = _woodbury_quadratic(F, centres, lam, a)
        if quad is not None:
            return float((1 - a) * (counts @ quad) / n)
    shrunk = (1 - a) * (F.T @ F) / n + lam * np.eye(d)
    means = centres[np.searchsorted(classes, labels)]
    between = (1 - a) * (means.T @ means) / n
    return float(np.trace(np.linalg.pinv(shrunk, hermitian=True) @ between))


def _woodbury_quadratic(F, centres, lam: float, a: float):
    """``m' C^-1 m`` for each row ``m`` of ``centres``, ``C = lam I + (1 - a)
    F'F / n``, through the n x n system; None if that system is singular in
    floating point (the caller then inverts C itself)."""
    norms = np.einsum("kd,kd->k", centres, centres)
    if a >= 1:  # all shrinkage: C = lam I
        return norms / lam
    n = len(F)
    G = (lam * n / (1 - a)) * np.eye(n) + F @ F.T
    P = centres @ F.T  # (K, n)
    try:
        solved = np.linalg.solve(G, P.T).T
    except np.linalg.LinAlgError:
        return None
    quad = (norms - np.einsum("kn,kn->k", P, solved)) / lam
    return quad if np.isfinite(quad).all() else None
