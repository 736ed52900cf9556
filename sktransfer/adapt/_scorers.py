"""Choosing without target labels: scorers and a refit rule.

A user adapting to a target domain has no target labels, so nothing that
chooses (``GridSearchCV``, a best epoch) may use them. These scorers take
``(estimator, X, y)`` with ``y == -1`` on the target rows, the same ``X`` and
``y`` the estimator was fitted with, and read only the source labels:

* :class:`PredictionEntropyScorer` -- minus the mean entropy of the target
  predictions (confident on the target is better; it rewards over-confidence,
  so pair it with another).
* :class:`ImportanceWeightedScorer` -- source accuracy (or another metric)
  weighted by how target-like each source row is, ``p(target|x) / p(source|x)``
  from a domain classifier (Sugiyama et al., 2007).
* :class:`DeepEmbeddedValidationScorer` -- the importance-weighted source loss
  with a control variate (You et al., 2019), lower variance than the plain
  weighting.
* :class:`CircularValidationScorer` -- label the target rows with the model,
  fit the same model the other way round (target labelled, source
  unlabelled), and score it on the true source labels (Bruzzone and
  Marconcini, 2009). The only one of these that sees what a transductive
  method does on the target rows; the best of skada's scorers in SKADA-Bench.

:func:`source_only_unless_better` is a ``refit=`` rule for ``GridSearchCV``:
keep the source-only candidate unless an adapted one scores better by more
than the noise between folds. skada's scorers (``ImportanceWeightedScorer``,
``PredictionEntropyScorer``, ``DeepEmbeddedValidation``) are the model; these
take scikit-learn's ``-1`` rows instead of skada's ``sample_domain``.
"""

from __future__ import annotations

import contextlib
import warnings
from numbers import Real

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, get_scorer
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from sktransfer.adapt._domains import split_domains
from sktransfer.adapt._transformers import DomainAdapter

__all__ = [
    "CircularValidationScorer",
    "DeepEmbeddedValidationScorer",
    "ImportanceWeightedScorer",
    "PredictionEntropyScorer",
    "source_only_unless_better",
]


@contextlib.contextmanager
def as_source(estimator):
    """Within this block, the estimator's adapters map rows as source rows."""
    adapters = [
        step
        for step in (
            estimator.named_steps.values() if isinstance(estimator, Pipeline) else []
        )
        if isinstance(step, DomainAdapter)
    ]
    before = [a.transform_domain for a in adapters]
    try:
        for a in adapters:
            a.transform_domain = "source"
        yield estimator
    finally:
        for a, value in zip(adapters, before, strict=True):
            a.transform_domain = value


def _rows(X, mask):
    idx = np.flatnonzero(mask)
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    if hasattr(X, "shape"):
        return X[idx]
    return [X[i] for i in idx]


def _labels(y, mask):
    y = y.to_numpy() if hasattr(y, "to_numpy") else np.asarray(y)
    return y[mask]


def _domain_features(estimator, X, features):
    """The space in which source and target rows are told apart: the
    estimator's first step when it embeds (its cache makes this free), a
    given transformer, or ``X`` itself."""
    if features == "auto":
        first = estimator.steps[0][1] if isinstance(estimator, Pipeline) else None
        from sktransfer._extractor import PretrainedFeatureExtractor

        if isinstance(first, PretrainedFeatureExtractor):
            return first.transform(X)
        return np.asarray(X, dtype=np.float64)
    if hasattr(features, "transform"):
        return features.transform(X)
    return np.asarray(features(X), dtype=np.float64)


def importance_weights(Z, source, target, *, C=0.1, random_state=0):
    """``p(target|z) / p(source|z)`` for the source rows, from a logistic
    domain classifier's out-of-fold probabilities, normalised to mean one
    and clipped at 20 (a few source rows must not carry the whole score)."""
    d = target.astype(int)
    n_folds = int(min(5, d.sum(), (1 - d).sum()))
    if n_folds < 2:
        return np.ones(int(source.sum()))
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    cv = StratifiedKFold(n_folds, shuffle=True, random_state=random_state)
    p = cross_val_predict(model, Z, d, cv=cv, method="predict_proba")[:, 1]
    p = np.clip(p[source], 1e-6, 1 - 1e-6)
    w = p / (1 - p) * source.sum() / max(target.sum(), 1)
    w = np.clip(w / w.mean(), 0, 20)
    return w / w.mean()


class _LabelFreeScorer:
    """Common ``__call__`` checks and ``repr``; ``greater is better``.

    ``score_predictions(proba, classes, y, Z)`` scores predictions already
    made (a fine-tuner's validation predictions of one epoch, with ``Z`` the
    rows' frozen-backbone features): what lets a fine-tuner choose its best
    epoch with these scorers (``scoring=``)."""

    label_free = True
    scores_epochs = True

    def epoch_refusal(self) -> str:
        """Why this scorer cannot choose a fine-tuner's epoch ("" if it can)."""
        if self.scores_epochs:
            return ""
        return (
            f"{type(self).__name__} refits the model, so it cannot score one "
            "epoch's predictions; as a fine-tuner's scoring= use "
            "ImportanceWeightedScorer, DeepEmbeddedValidationScorer or "
            "PredictionEntropyScorer."
        )

    def score_predictions(self, proba, classes, y, Z):
        raise ValueError(self.epoch_refusal())

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def _domains(self, X, y):
        source, target = split_domains(y, len(y))
        return source, target

    def _weighted_source(self, estimator, X, y):
        """Importance weights, rows and labels of the source rows."""
        source, target = self._domains(X, y)
        Z = _domain_features(estimator, X, self.features)
        w = importance_weights(Z, source, target, C=self.C)
        return w, _rows(X, source), _labels(y, source)


class PredictionEntropyScorer(_LabelFreeScorer):
    """Minus the mean prediction entropy on the target rows (``y == -1``).

    No label is read. Greater is better (more confident on the target).
    Without target rows in ``X`` it scores every row.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.r_[np.linspace(-2, 2, 20), np.linspace(-3, 3, 10)][:, None]
    >>> y = np.r_[(X[:20, 0] > 0).astype(int), -np.ones(10, dtype=int)]
    >>> clf = LogisticRegression().fit(X[:20], y[:20])
    >>> PredictionEntropyScorer()(clf, X, y) < 0
    True
    """

    def __call__(self, estimator, X, y):
        _, target = self._domains(X, y)
        rows = _rows(X, target) if target.any() else X
        return _minus_entropy(estimator.predict_proba(rows))

    def score_predictions(self, proba, classes, y, Z):
        _, target = self._domains(proba, y)
        return _minus_entropy(np.asarray(proba)[target] if target.any() else proba)


def _minus_entropy(p) -> float:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1)
    return float(-np.mean(-(p * np.log(p)).sum(axis=1)))


class ImportanceWeightedScorer(_LabelFreeScorer):
    """A metric on the source rows, each weighted by ``p(target|x) / p(source|x)``.

    The weights come from a logistic domain classifier told source rows
    (labelled) from target rows (``y == -1``), fitted out of fold on the
    scored rows' features: the estimator's first step when it is a
    :class:`~sktransfer.PretrainedFeatureExtractor` (cached, so free), else
    ``X``. Source rows are predicted with the estimator's adapters mapping
    them as source rows (:class:`CORAL`, :class:`DomainStandardScaler`).

    Parameters
    ----------
    metric : {"accuracy", "neg_log_loss"} or str, default="accuracy"
        ``"accuracy"`` and ``"neg_log_loss"`` are weighted per row; any other
        scikit-learn scorer name is passed the weights as ``sample_weight``.
    features : "auto", transformer or callable, default="auto"
        The space of the domain classifier.
    C : float, default=0.1
        The domain classifier's inverse regularisation.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (60, 2)), rng.normal(1, 1, (30, 2))]
    >>> y = np.r_[(X[:60, 0] > 0).astype(int), -np.ones(30, dtype=int)]
    >>> clf = LogisticRegression().fit(X[:60], y[:60])
    >>> 0.5 < ImportanceWeightedScorer()(clf, X, y) <= 1.0
    True
    """

    def __init__(self, metric="accuracy", features="auto", C=0.1):
        self.metric = metric
        self.features = features
        self.C = C

    def __call__(self, estimator, X, y):
        w, Xs, ys = self._weighted_source(estimator, X, y)
        with as_source(estimator):
            if self.metric == "accuracy":
                correct = estimator.predict(Xs) == ys
                return float(np.average(correct, weights=w))
            if self.metric == "neg_log_loss":
                return -float(np.average(_row_log_loss(estimator, Xs, ys), weights=w))
            return float(get_scorer(self.metric)(estimator, Xs, ys, sample_weight=w))

    def score_predictions(self, proba, classes, y, Z):
        source, target = self._domains(proba, y)
        w = importance_weights(np.asarray(Z), source, target, C=self.C)
        p, ys = np.asarray(proba)[source], _labels(y, source)
        if self.metric == "accuracy":
            correct = np.asarray(classes)[np.argmax(p, axis=1)] == ys
            return float(np.average(correct, weights=w))
        if self.metric == "neg_log_loss":
            return -float(np.average(_proba_log_loss(p, classes, ys), weights=w))
        raise ValueError(
            f"ImportanceWeightedScorer(metric={self.metric!r}) needs the model to "
            "score an epoch; as a fine-tuner's scoring= use metric='accuracy' or "
            "'neg_log_loss'."
        )


def _row_log_loss(estimator, X, y):
    return _proba_log_loss(estimator.predict_proba(X), estimator.classes_, y)


def _proba_log_loss(p, classes, y):
    column = {c: i for i, c in enumerate(np.asarray(classes).tolist())}
    idx = np.array([column.get(v, -1) for v in np.asarray(y).tolist()])
    picked = np.where(idx >= 0, p[np.arange(len(idx)), np.maximum(idx, 0)], 0.0)
    return -np.log(np.clip(picked, 1e-12, 1))


class DeepEmbeddedValidationScorer(_LabelFreeScorer):
    """Deep Embedded Validation (You et al., 2019): the importance-weighted
    source log loss with a control variate, negated (greater is better).

    ``risk = mean(w * l) + eta * mean(w) - eta`` with
    ``eta = -cov(w * l, w) / var(w)``: the control variate removes the part
    of the weighted loss's variance that the weights' own noise causes.

    Parameters
    ----------
    features : "auto", transformer or callable, default="auto"
        As :class:`ImportanceWeightedScorer`'s.
    C : float, default=0.1
        The domain classifier's inverse regularisation.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (60, 2)), rng.normal(1, 1, (30, 2))]
    >>> y = np.r_[(X[:60, 0] > 0).astype(int), -np.ones(30, dtype=int)]
    >>> clf = LogisticRegression().fit(X[:60], y[:60])
    >>> DeepEmbeddedValidationScorer()(clf, X, y) < 0
    True
    """

    def __init__(self, features="auto", C=0.1):
        self.features = features
        self.C = C

    def __call__(self, estimator, X, y):
        w, Xs, ys = self._weighted_source(estimator, X, y)
        with as_source(estimator):
            loss = _row_log_loss(estimator, Xs, ys)
        return _control_variate_risk(w, loss)

    def score_predictions(self, proba, classes, y, Z):
        source, target = self._domains(proba, y)
        w = importance_weights(np.asarray(Z), source, target, C=self.C)
        p, ys = np.asarray(proba)[source], _labels(y, source)
        return _control_variate_risk(w, _proba_log_loss(p, classes, ys))


def _control_variate_risk(w, loss) -> float:
    """Minus DEV's risk: the weighted loss with its control variate."""
    wl = w * loss
    var = float(np.var(w, ddof=1)) if len(w) > 1 else 0.0
    eta = -float(np.cov(wl, w)[0, 1]) / var if var > 1e-12 else 0.0
    return -float(wl.mean() + eta * w.mean() - eta)


_METRICS = {"balanced_accuracy": balanced_accuracy_score, "accuracy": accuracy_score}


class CircularValidationScorer(_LabelFreeScorer):
    """Circular (reverse) validation: there and back again, scored on the
    source labels (Bruzzone and Marconcini, 2009).

    The fitted estimator labels the target rows (``y == -1``) of ``X``; a
    clone with the same parameters is fitted the other way round -- those
    target rows labelled with its predictions, the source rows given ``-1`` --
    and predicts the source rows, which are scored against their true labels.
    The adapters swap roles with the labels (a labelled row is a source row),
    so the backward model adapts from the target to the source. No target
    label is read. It rewards target labels that are consistent with the
    source task; a source-only model whose target labels are wrong in a
    structured way scores low, which importance weighting cannot see: it only
    scores source rows, where a transductive method changes nothing.

    It fits the estimator once more per call (on the scored rows alone), so a
    grid costs about twice as long. When the target rows are all predicted one
    class, the backward model is that constant (as skada's
    ``CircularValidation`` does) and a warning says so.

    Parameters
    ----------
    metric : {"balanced_accuracy", "accuracy"} or callable, \
            default="balanced_accuracy"
        ``metric(y_true, y_pred)`` on the source rows.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sktransfer.adapt import LabeledOnly
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (60, 2)), rng.normal(0.5, 1, (30, 2))]
    >>> y = np.r_[(X[:60, 0] > 0).astype(int), -np.ones(30, dtype=int)]
    >>> clf = LabeledOnly(LogisticRegression()).fit(X, y)
    >>> 0.5 < CircularValidationScorer()(clf, X, y) <= 1.0
    True
    """

    scores_epochs = False  # it refits the model

    def __init__(self, metric="balanced_accuracy"):
        self.metric = metric

    def __call__(self, estimator, X, y):
        source, target = self._domains(X, y)
        if not target.any() or not source.any():
            raise ValueError(
                "CircularValidationScorer needs source rows (labelled) and target "
                "rows (label -1) among the scored rows; with KFold splits, keep "
                "enough target rows in every fold."
            )
        metric = _METRICS.get(self.metric, self.metric)
        if not callable(metric):
            raise ValueError(
                f"metric must be one of {sorted(_METRICS)} or a callable "
                f"metric(y_true, y_pred); got {self.metric!r}."
            )
        ys = _labels(y, source)
        pseudo = np.asarray(estimator.predict(_rows(X, target)))
        if len(np.unique(pseudo)) < 2:
            warnings.warn(
                "CircularValidationScorer: every target row was predicted "
                f"{pseudo[0]!r}; the backward model is that constant.",
                UserWarning,
                stacklevel=2,
            )
            return float(metric(ys, np.full(len(ys), pseudo[0], dtype=pseudo.dtype)))
        integer = pseudo.dtype.kind in "iu"
        backward_y = np.empty(len(source), dtype=np.int64 if integer else object)
        backward_y[source] = -1
        backward_y[target] = pseudo
        backward = clone(estimator).fit(X, backward_y)
        return float(metric(ys, np.asarray(backward.predict(_rows(X, source)))))


def source_only_unless_better(source_only, *, score: str = "score", n_se: Real = 1.0):
    """A ``refit=`` rule for ``GridSearchCV``: source-only unless adaptation
    beats it by more than ``n_se`` standard errors between folds.

    ``source_only`` says which candidates do not adapt: a step name (its
    value ``"passthrough"`` or ``None`` means no adaptation) or a dict of
    ``{param: value}`` that a source-only candidate matches (values compared
    by identity or ``==``). The best adapted candidate is chosen only if its
    mean score exceeds the best source-only candidate's by more than ``n_se``
    times the standard error of the difference (``sqrt(std_a² + std_s²) /
    sqrt(k)`` for ``k`` folds). Without source-only candidates it is the
    plain best.

    Parameters
    ----------
    source_only : str or dict
        The adapter's step name, or the parameters of the source-only
        candidates.
    score : str, default="score"
        Which score of ``cv_results_`` (the name in a multi-metric ``scoring``).
    n_se : float, default=1.0
        How many standard errors adaptation must win by.

    Returns
    -------
    callable
        ``cv_results -> best index``, for ``GridSearchCV(refit=...)``.

    Examples
    --------
    >>> rule = source_only_unless_better("adapt")
    >>> results = {
    ...     "params": [{"adapt": "passthrough"}, {"adapt": "coral"}],
    ...     "mean_test_score": [0.80, 0.81], "std_test_score": [0.03, 0.03],
    ...     "split0_test_score": [0, 0], "split1_test_score": [0, 0],
    ... }
    >>> rule(results)  # +0.01 is within the noise: source-only
    0
    """
    wanted = (
        {source_only: "passthrough"}
        if isinstance(source_only, str)
        else dict(source_only)
    )

    def is_plain(params) -> bool:
        return all(_same(params.get(k, "passthrough"), v) for k, v in wanted.items())

    def rule(cv_results) -> int:
        mean = np.asarray(cv_results[f"mean_test_{score}"], dtype=float)
        std = np.asarray(cv_results[f"std_test_{score}"], dtype=float)
        suffix = f"_test_{score}"
        k = sum(
            1 for key in cv_results if key.startswith("split") and key.endswith(suffix)
        )
        plain = np.array([is_plain(p) for p in cv_results["params"]])
        mean = np.where(np.isnan(mean), -np.inf, mean)
        best = int(np.argmax(mean))
        if not plain.any() or plain[best]:
            return best
        base = int(np.flatnonzero(plain)[np.argmax(mean[plain])])
        se = np.sqrt(std[best] ** 2 + std[base] ** 2) / np.sqrt(max(k, 1))
        return best if mean[best] - mean[base] > n_se * se else base

    rule.__name__ = f"source_only_unless_better({source_only!r})"
    return rule


def _same(value, wanted) -> bool:
    if value is wanted:
        return True
    if _is_source_only(wanted):
        return _is_source_only(value)
    try:
        return bool(value == wanted)
    except Exception:
        return False


def _is_source_only(value) -> bool:
    return value is None or (isinstance(value, str) and value == "passthrough")
