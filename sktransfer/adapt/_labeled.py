"""``LabeledOnly``: a head that learns from the labelled rows only."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from sktransfer._compat import HasMethods
from sktransfer.adapt._domains import split_domains

__all__ = ["LabeledOnly", "labeled_part"]


def _has(method):
    def check(self):
        getattr(self.estimator, method)
        return True

    return check


class LabeledOnly(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Fit ``estimator`` on the labelled rows, ignoring those labelled ``-1``.

    The last step of an adaptation pipeline: the adapters before it need the
    unlabelled target rows in ``fit``, an ordinary classifier after them must
    not see them (it would learn ``-1`` as a class). Prediction is the
    estimator's.

    Parameters
    ----------
    estimator : classifier
        Any scikit-learn classifier (cloned in ``fit``).

    Attributes
    ----------
    estimator_ : classifier
        The fitted clone.
    classes_ : ndarray
        Its classes (``-1`` never among them).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0], [1.0], [0.1], [0.9]])
    >>> clf = LabeledOnly(LogisticRegression()).fit(X, [0, 1, -1, -1])
    >>> clf.classes_.tolist()
    [0, 1]
    """

    _parameter_constraints: dict = {"estimator": [HasMethods(["fit", "predict"])]}

    def __init__(self, estimator):
        self.estimator = estimator

    def fit(self, X, y, **fit_params):
        """Fit a clone of ``estimator`` on the rows whose label is not ``-1``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Labels, ``-1`` for unlabelled rows.
        **fit_params : dict
            Passed to the estimator's ``fit`` (per-sample ones are subset).

        Returns
        -------
        self
        """
        self._validate_params()
        source, _ = split_domains(y)
        if not source.any():
            raise ValueError(
                "LabeledOnly.fit got no labelled row (every label is -1); give "
                "it labelled source rows to learn from."
            )
        idx = np.flatnonzero(source)
        Xs = X.iloc[idx] if hasattr(X, "iloc") else _take(X, idx)
        ys = labeled_part(y, source)
        params = {
            k: (np.asarray(v)[idx] if _per_sample(v, len(source)) else v)
            for k, v in fit_params.items()
        }
        self.estimator_ = clone(self.estimator).fit(Xs, ys, **params)
        return self

    @property
    def classes_(self):
        check_is_fitted(self)
        return self.estimator_.classes_

    def predict(self, X):
        """The estimator's predictions."""
        check_is_fitted(self)
        return self.estimator_.predict(X)

    @available_if(_has("predict_proba"))
    def predict_proba(self, X):
        """The estimator's class probabilities (columns follow ``classes_``)."""
        check_is_fitted(self)
        return self.estimator_.predict_proba(X)

    @available_if(_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """The estimator's log probabilities."""
        check_is_fitted(self)
        return self.estimator_.predict_log_proba(X)

    @available_if(_has("decision_function"))
    def decision_function(self, X):
        """The estimator's decision function."""
        check_is_fitted(self)
        return self.estimator_.decision_function(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = clone(self.estimator).__sklearn_tags__()
        tags.input_tags = inner.input_tags
        return tags


def _take(X, idx):
    if hasattr(X, "shape"):
        return X[idx]
    return [X[i] for i in idx]


def labeled_part(y, labeled: np.ndarray) -> np.ndarray:
    """The labels of the ``labeled`` rows, as a plain array: integers when
    they all are (an object array of strings and ``-1`` keeps its strings)."""
    labels = y.to_numpy() if hasattr(y, "to_numpy") else np.asarray(y)
    out = labels[np.asarray(labeled)]
    return _tighten(out) if out.dtype == object else out


def _tighten(y):
    """Labels without the ``-1`` rows: a plain array when they are all strings
    or all numbers (as scikit-learn's ``check_classification_targets`` likes)."""
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in y):
        return y.astype(np.int64)
    return y


def _per_sample(value, n: int) -> bool:
    return hasattr(value, "__len__") and not isinstance(value, str) and len(value) == n
