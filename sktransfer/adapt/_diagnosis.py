"""``domain_shift``: how different is the target from the source, before training."""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["DomainShiftReport", "domain_shift"]

NO_SHIFT_AUC = 0.6  # a domain classifier at or below this cannot tell them apart
SHIFT_AUC = 0.75
FAR_QUANTILE = 0.95


@dataclass(frozen=True)
class DomainShiftReport:
    """What :func:`domain_shift` measured.

    Attributes
    ----------
    auc : float
        Cross-validated ROC AUC of a logistic domain classifier (source vs.
        target): 0.5 when they cannot be told apart, 1.0 when always.
    auc_interval : (float, float)
        Its 95 % bootstrap interval (over the out-of-fold scores).
    mmd2 : float
        Unbiased squared maximum mean discrepancy, Gaussian kernel at the
        median distance (on at most ``max_samples`` rows per side).
    mmd_pvalue : float
        Its permutation p-value.
    far_fraction : float
        Share of target rows farther from every source class (or, without
        source labels, from every source row) than 95 % of source rows are
        from their own.
    verdict : str
        The result in words.
    n_source, n_target : int
    domain_scores : ndarray
        The domain classifier's out-of-fold probability of "target", source
        rows first (for the display).
    source_distances, target_distances : ndarray
        Distances to the nearest source class (or row), and ``far_threshold``.
    """

    auc: float
    auc_interval: tuple[float, float]
    mmd2: float
    mmd_pvalue: float
    far_fraction: float
    far_threshold: float
    verdict: str
    n_source: int
    n_target: int
    domain_scores: np.ndarray = field(repr=False)
    source_distances: np.ndarray = field(repr=False)
    target_distances: np.ndarray = field(repr=False)

    def __str__(self) -> str:
        low, high = self.auc_interval
        return (
            f"{self.verdict}\n"
            f"  domain classifier ROC AUC {self.auc:.3f} (95% {low:.3f}-{high:.3f})\n"
            f"  MMD² {self.mmd2:.4f} (permutation p = {self.mmd_pvalue:.3g})\n"
            f"  {self.far_fraction:.1%} of {self.n_target} target samples lie far "
            f"from every source class ({self.n_source} source samples)"
        )

    def plot(self, ax=None):
        """Draw it (:class:`~sktransfer.plotting.DomainShiftDisplay`)."""
        from sktransfer.plotting import DomainShiftDisplay

        return DomainShiftDisplay.from_report(self, ax=ax)


def _embed(X_source, X_target, backbone, extractor_params):
    if backbone is None:
        return (
            np.asarray(X_source, dtype=np.float64),
            np.asarray(X_target, dtype=np.float64),
        )
    from sklearn.base import clone

    from sktransfer._extractor import PretrainedFeatureExtractor

    if isinstance(backbone, PretrainedFeatureExtractor):
        extractor = backbone
        if not hasattr(extractor, "backbone_spec_"):
            extractor = clone(extractor).set_params(**extractor_params)
            extractor.fit(X_source)
    else:
        extractor = PretrainedFeatureExtractor(backbone=backbone, **extractor_params)
        extractor.fit(X_source)
    return (
        extractor.transform(X_source).astype(np.float64),
        extractor.transform(X_target).astype(np.float64),
    )


def _verdict(auc: float) -> str:
    if auc <= NO_SHIFT_AUC:
        return "no detectable shift"
    if auc < SHIFT_AUC:
        return "mild shift: check the accuracy on a few labelled target samples"
    return "shift: expect lower accuracy on the target"


def _domain_auc(Zs, Zt, cv, rng):
    Z = np.vstack([Zs, Zt])
    d = np.r_[np.zeros(len(Zs), int), np.ones(len(Zt), int)]
    folds = int(min(cv, len(Zs), len(Zt)))
    if folds < 2:
        raise ValueError(
            "domain_shift needs at least 2 source and 2 target samples; got "
            f"{len(Zs)} and {len(Zt)}."
        )
    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced"),
    )
    splitter = StratifiedKFold(folds, shuffle=True, random_state=rng.integers(2**31))
    scores = cross_val_predict(model, Z, d, cv=splitter, method="predict_proba")[:, 1]
    auc = float(roc_auc_score(d, scores))
    boot = []
    for _ in range(200):
        idx = rng.integers(0, len(d), len(d))
        if d[idx].min() != d[idx].max():
            boot.append(roc_auc_score(d[idx], scores[idx]))
    low, high = np.percentile(boot, [2.5, 97.5]) if boot else (auc, auc)
    return auc, (float(low), float(high)), scores


def _mmd(Zs, Zt, n_permutations, max_samples, rng):
    def sub(Z):
        return (
            Z[rng.choice(len(Z), max_samples, replace=False)]
            if len(Z) > max_samples
            else Z
        )

    Zs, Zt = sub(Zs), sub(Zt)
    Z = np.vstack([Zs, Zt])
    Z = (Z - Z.mean(0)) / np.maximum(Z.std(0), 1e-12)
    sq = np.sum(Z**2, axis=1)
    D = np.maximum(sq[:, None] + sq[None, :] - 2 * Z @ Z.T, 0)
    bandwidth = np.median(D[np.triu_indices(len(Z), 1)])
    K = np.exp(-D / max(bandwidth, 1e-12))
    np.fill_diagonal(K, 0.0)
    m, n = len(Zs), len(Zt)

    def stat(A):  # A: (n_all, P) indicators of "source"
        B = 1.0 - A
        KA, KB = K @ A, K @ B
        xx = (A * KA).sum(0) / (m * (m - 1))
        yy = (B * KB).sum(0) / (n * (n - 1))
        xy = (A * KB).sum(0) / (m * n)
        return xx + yy - 2 * xy

    observed = float(stat(np.r_[np.ones(m), np.zeros(n)][:, None])[0])
    perms = np.zeros((m + n, n_permutations))
    for j in range(n_permutations):
        perms[rng.permutation(m + n)[:m], j] = 1.0
    null = stat(perms) if n_permutations else np.array([])
    pvalue = (1 + np.sum(null >= observed)) / (1 + len(null))
    return observed, float(pvalue)


def _distances(Zs, Zt, y_source):
    # scaled by the pooled spread: a feature constant on the source but not on
    # the target must not blow distances up by 1/0
    mean, scale = Zs.mean(0), np.vstack([Zs, Zt]).std(0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    Zs, Zt = (Zs - mean) / scale, (Zt - mean) / scale
    if y_source is not None:
        y = np.asarray(y_source)
        classes = np.unique(y)
        centroids = np.stack([Zs[y == c].mean(0) for c in classes])
        own = np.linalg.norm(Zs - centroids[np.searchsorted(classes, y)], axis=1)
        nearest = NearestNeighbors(n_neighbors=1).fit(centroids)
        to_target = nearest.kneighbors(Zt)[0][:, 0]
        return own, to_target
    nearest = NearestNeighbors(n_neighbors=2).fit(Zs)
    own = nearest.kneighbors(Zs)[0][:, 1]  # leave the row itself out
    return own, nearest.kneighbors(Zt, n_neighbors=1)[0][:, 0]


def domain_shift(
    X_source,
    X_target,
    *,
    backbone=None,
    y_source=None,
    cv: int = 5,
    n_permutations: int = 200,
    max_samples: int = 1000,
    random_state=0,
    **extractor_params,
) -> DomainShiftReport:
    """Measure how far the target inputs are from the source inputs.

    Both sides are embedded by ``backbone`` (through the extractor and its
    cache) unless they are features already. Three views of the gap:

    * a logistic **domain classifier**'s cross-validated ROC AUC, with a
      bootstrap interval: if it cannot tell source from target (AUC ≤ 0.6),
      a model trained on the source sees nothing new on the target;
    * the **kernel two-sample** statistic MMD² with a permutation p-value;
    * the share of target samples that lie **far from every source class**
      (farther than 95 % of the source samples are from their own class
      centre), the ones a head has never seen anything like.

    Parameters
    ----------
    X_source, X_target : inputs or array-like of shape (n, n_features)
        Images or texts (with ``backbone``), or features (without).
    backbone : str, BackboneSpec, nn.Module or PretrainedFeatureExtractor, default=None
        What embeds the inputs; ``None`` when they are features already. An
        unfitted extractor is fitted on ``X_source``.
    y_source : array-like of shape (n_source,), default=None
        Source labels: distances are then to class centres, else to the
        nearest source sample.
    cv : int, default=5
        Folds of the domain classifier.
    n_permutations : int, default=200
        Permutations of the MMD test.
    max_samples : int, default=1000
        Rows per side used by the MMD test (a random subset beyond).
    random_state : int, default=0
        Seeds the folds, the bootstrap, the subsets and the permutations.
    **extractor_params
        Parameters of the :class:`~sktransfer.PretrainedFeatureExtractor`
        (``cache``, ``batch_size``, ``device``...).

    Returns
    -------
    DomainShiftReport
        The numbers, the verdict, and ``plot()``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 8))
    >>> domain_shift(X[:200], X[200:]).verdict
    'no detectable shift'
    >>> domain_shift(X[:200], X[200:] + 1.0).verdict
    'shift: expect lower accuracy on the target'
    """
    for name, value in (("cv", cv), ("max_samples", max_samples)):
        if not isinstance(value, Integral) or value < 2:
            raise ValueError(f"{name} must be an int >= 2; got {value!r}.")
    if not isinstance(n_permutations, Integral) or n_permutations < 0:
        raise ValueError(f"n_permutations must be an int >= 0; got {n_permutations!r}.")
    Zs, Zt = _embed(X_source, X_target, backbone, extractor_params)
    if y_source is not None and len(y_source) != len(Zs):
        raise ValueError(
            f"y_source has {len(y_source)} labels for {len(Zs)} source samples."
        )
    rng = np.random.default_rng(random_state)
    auc, interval, scores = _domain_auc(Zs, Zt, cv, rng)
    mmd2, pvalue = _mmd(Zs, Zt, n_permutations, max_samples, rng)
    own, to_target = _distances(Zs, Zt, y_source)
    threshold = float(np.quantile(own, FAR_QUANTILE))
    return DomainShiftReport(
        auc=auc,
        auc_interval=interval,
        mmd2=mmd2,
        mmd_pvalue=pvalue,
        far_fraction=float(np.mean(to_target > threshold)),
        far_threshold=threshold,
        verdict=_verdict(auc),
        n_source=len(Zs),
        n_target=len(Zt),
        domain_scores=scores,
        source_distances=own,
        target_distances=to_target,
    )
