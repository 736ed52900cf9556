"""Choosing a backbone before training: :func:`rank_backbones`.

For each candidate (a backbone name, a ``(backbone, layer)`` pair or a configured
extractor) the data is embedded once, through the extractor's cache; the
transferability scores (:mod:`sktransfer.metrics`) and a cross-validated linear
probe are computed on those embeddings, and a baseline that uses no pretrained
knowledge (small raw pixels for images, TF-IDF for texts, or your own pipeline)
is cross-validated on the same folds. Each candidate's verdict against the
baseline comes from the paired fold scores.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from sktransfer._extractor import PretrainedFeatureExtractor
from sktransfer._images import prepare_image
from sktransfer._inputs import as_samples
from sktransfer._selection_checks import (
    check_candidates,
    check_modality,
    check_targets,
)
from sktransfer.backbones._spec import ImagePreprocessing
from sktransfer.exceptions import NegativeTransferWarning
from sktransfer.metrics import hscore, logme_score

__all__ = ["BackboneRanking", "SmallPixels", "rank_backbones"]

HELPS, NO_HELP, UNCERTAIN = "helps", "does not help", "uncertain"


class SmallPixels(TransformerMixin, BaseEstimator):
    """Images as their raw pixels, shrunk: the no-pretraining image baseline.

    Each image is converted to RGB, resized (shorter side) and centre-cropped to
    ``size`` x ``size``, and flattened to ``size * size * 3`` values in [0, 1].

    Parameters
    ----------
    size : int, default=16

    Examples
    --------
    >>> import numpy as np
    >>> SmallPixels(size=8).fit_transform(np.zeros((2, 20, 30, 3), np.uint8)).shape
    (2, 192)
    """

    def __init__(self, size: int = 16):
        self.size = size

    def fit(self, X, y=None):
        self.n_features_in_ = 1
        return self

    def transform(self, X):
        samples = as_samples(X, "image")
        pre = ImagePreprocessing(size=self.size, crop_pct=1.0)
        rows = [
            prepare_image(v, samples.row(i), pre).reshape(-1)
            for i, v in enumerate(samples.values)
        ]
        return np.stack(rows).astype(np.float32) / 255.0


def _head(regression: bool):
    return RidgeCV() if regression else LogisticRegression(max_iter=2000)


def _probe(regression: bool):
    return make_pipeline(StandardScaler(), _head(regression))


def _baseline(modality: str, regression: bool):
    if modality == "text":
        from sklearn.feature_extraction.text import TfidfVectorizer

        return make_pipeline(TfidfVectorizer(sublinear_tf=True), _head(regression))
    return make_pipeline(SmallPixels(), _probe(regression))


_RUNTIME = {"batch_size", "device", "cache", "num_workers", "verbose", "compile"}


def _name(candidate) -> str:
    """A readable, distinct label: the backbone and what differs from defaults."""
    if isinstance(candidate, tuple):
        return f"{candidate[0]} [layer {candidate[1]}]"
    if not isinstance(candidate, PretrainedFeatureExtractor):
        return str(candidate)
    defaults = PretrainedFeatureExtractor().get_params()
    changed = [
        f"{k}={v!r}"
        for k, v in candidate.get_params().items()
        if k not in _RUNTIME and k != "backbone" and v != defaults[k]
    ]
    base = str(candidate.backbone)
    return f"{base} ({', '.join(changed)})" if changed else base


def _extractor(candidate) -> PretrainedFeatureExtractor:
    if isinstance(candidate, PretrainedFeatureExtractor):
        return clone(candidate)
    if isinstance(candidate, tuple):
        backbone, layer = candidate
        return PretrainedFeatureExtractor(backbone, layer=layer)
    return PretrainedFeatureExtractor(candidate)


def _verdict(scores, base, n_train: int, n_test: int, alpha: float = 0.05) -> str:
    """Paired, corrected resampled t-test (Nadeau & Bengio, 2003) on fold scores.

    CV folds share training data, so the plain paired t-test is too confident;
    the correction inflates the variance by ``1/k + n_test/n_train``.
    """
    diff = np.asarray(scores) - np.asarray(base)
    k = len(diff)
    if diff.mean() <= 0:
        return NO_HELP
    var = diff.var(ddof=1) * (1 / k + n_test / n_train)
    if var == 0:
        return HELPS
    t = diff.mean() / np.sqrt(var)
    return HELPS if t > stats.t.ppf(1 - alpha, k - 1) else UNCERTAIN


@dataclass
class BackboneRanking:
    """What :func:`rank_backbones` found.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per candidate and one for the baseline: ``candidate``,
        ``logme``, ``hscore`` (classification), ``probe_score``, ``probe_std``,
        ``seconds`` (embedding + scores + probe), ``verdict`` (``"helps"``,
        ``"does not help"``, ``"uncertain"``; ``"baseline"`` for the baseline),
        sorted by ``probe_score``.
    best_ : str
        The candidate with the best probe score.
    fold_scores_ : dict of str to ndarray
        The probe's score on each fold, per candidate and for the baseline.
    scoring : str
    """

    table: object
    best_: str
    fold_scores_: dict = field(repr=False)
    scoring: str = "accuracy"

    def rank_agreement(self) -> dict[str, float]:
        """Kendall's tau between each cheap score and the probe, over candidates."""
        rows = self.table[self.table.verdict != "baseline"]
        out = {}
        for col in ("logme", "hscore"):
            if col in rows and rows[col].notna().sum() > 1:
                out[col] = float(stats.kendalltau(rows[col], rows.probe_score)[0])
        return out

    def plot(self, ax=None):
        """A :class:`~sktransfer.plotting.RankingDisplay` of the probe scores."""
        from sktransfer.plotting import RankingDisplay

        return RankingDisplay.from_ranking(self, ax=ax)


def rank_backbones(
    X,
    y,
    candidates,
    *,
    baseline="auto",
    cv=5,
    scoring=None,
    random_state=0,
    verbose=True,
):
    """Rank backbones (or layers) for ``X, y`` before any training.

    Parameters
    ----------
    X : images or texts
        As for :class:`~sktransfer.PretrainedFeatureExtractor`.
    y : array-like
        Class labels, or continuous targets (regression: a ridge probe, LogME on
        each target, no H-score).
    candidates : list
        Backbone names, ``(backbone, layer)`` pairs (a layer sweep of one
        backbone is one call) or configured extractors.
    baseline : "auto", estimator or None, default="auto"
        What "no pretrained knowledge" scores: ``"auto"`` is raw pixels shrunk to
        16x16 (images) or TF-IDF (texts) with the same kind of linear model; an
        estimator (a pipeline from raw ``X``) is cross-validated as given; None
        skips the baseline (every verdict is then ``"uncertain"``).
    cv : int, default=5
        Folds, the same for every candidate and the baseline (stratified for
        classes, shuffled with ``random_state``).
    scoring : str, optional
        A scikit-learn scorer name; default accuracy (classes) or R2.
    random_state : int, default=0
    verbose : bool, default=True
        A progress bar over the candidates.

    Returns
    -------
    BackboneRanking

    Warns
    -----
    NegativeTransferWarning
        When no candidate beats the baseline.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer import rank_backbones
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 255, (30, 32, 32, 3), np.uint8)
    >>> y = np.arange(30) % 2
    >>> X[y == 1, :, :, 0] = 255
    >>> result = rank_backbones(X, y, ["test-cnn", ("test-cnn", 0)], cv=3,
    ...                         baseline=None, verbose=False)
    >>> list(result.table.columns)[:4]
    ['candidate', 'logme', 'hscore', 'probe_score']
    """
    import pandas as pd

    candidates = check_candidates(candidates)
    y, regression = check_targets(y, cv, scoring)
    for candidate in candidates:
        check_modality(candidate, X)
    scoring = scoring or ("r2" if regression else "accuracy")
    splitter = (KFold if regression else StratifiedKFold)(
        cv, shuffle=True, random_state=random_state
    )
    folds = list(splitter.split(np.zeros(len(y)), y))
    n_test = len(folds[0][1])
    n_train = len(y) - n_test
    rows, fold_scores = [], {}
    modality = None
    names: list[str] = []
    for candidate in candidates:  # distinct labels, in the order given
        name = _name(candidate)
        names.append(name if name not in names else f"{name} #{len(names) + 1}")
    for name, candidate in tqdm(
        list(zip(names, candidates, strict=True)),
        disable=not verbose,
        desc="ranking backbones",
    ):
        start = time.perf_counter()
        ext = _extractor(candidate)
        feats = ext.fit_transform(X)
        modality = ext.backbone_spec_.modality
        row = {
            "candidate": name,
            "logme": logme_score(feats, y, regression=regression),
            "hscore": np.nan if regression else hscore(feats, y),
        }
        scores = cross_val_score(
            _probe(regression), feats, y, cv=folds, scoring=scoring
        )
        row.update(
            probe_score=scores.mean(),
            probe_std=scores.std(),
            seconds=time.perf_counter() - start,
        )
        fold_scores[name] = scores
        rows.append(row)
    if baseline is not None:
        start = time.perf_counter()
        if baseline == "auto" and modality != "text":
            # the pixels depend on no fold (SmallPixels learns nothing): decode
            # each image once, not once per fold, then cross-validate the probe
            pixels = SmallPixels().fit_transform(X)
            base = cross_val_score(
                _probe(regression), pixels, y, cv=folds, scoring=scoring
            )
        else:  # TF-IDF learns its vocabulary per fold; a user's model as given
            model = _baseline(modality, regression) if baseline == "auto" else baseline
            base = cross_val_score(model, X, y, cv=folds, scoring=scoring)
        fold_scores["baseline"] = base
        rows.append(
            {
                "candidate": "baseline",
                "logme": np.nan,
                "hscore": np.nan,
                "probe_score": base.mean(),
                "probe_std": base.std(),
                "seconds": time.perf_counter() - start,
                "verdict": "baseline",
            }
        )
    for row in rows:
        if row["candidate"] != "baseline":
            row["verdict"] = (
                UNCERTAIN
                if baseline is None
                else _verdict(
                    fold_scores[row["candidate"]],
                    fold_scores["baseline"],
                    n_train,
                    n_test,
                )
            )
    table = pd.DataFrame(rows).sort_values("probe_score", ascending=False)
    table = table.reset_index(drop=True)
    if regression:
        table = table.drop(columns="hscore")
    ranked = table[table.verdict != "baseline"]
    if baseline is not None and not (ranked.verdict == HELPS).any():
        warnings.warn(
            NegativeTransferWarning(
                f"No candidate beats the baseline ({scoring} "
                f"{fold_scores['baseline'].mean():.3f}) on these folds: pretrained "
                "features do not help this task as they are. Try another backbone "
                "or layer, fine-tuning, or the baseline itself."
            ),
            stacklevel=2,
        )
    return BackboneRanking(
        table=table,
        best_=str(ranked.candidate.iloc[0]),
        fold_scores_=fold_scores,
        scoring=scoring,
    )
