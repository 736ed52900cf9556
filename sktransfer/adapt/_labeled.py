"""``LabeledOnly``: a head that learns from the labelled rows only."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from sktransfer._compat import HasMethods
from sktransfer.adapt._domains import split_domains

__all__ = ["EncodedLabels", "LabeledOnly", "labeled_part"]


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
        source = _labeled_rows(self, y)
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


def _labeled_rows(estimator, y) -> np.ndarray:
    """The mask of the labelled rows; none at all is an error."""
    source, _ = split_domains(y)
    if not source.any():
        raise ValueError(
            f"{type(estimator).__name__}.fit got no labelled row (every label is "
            "-1); give it labelled source rows to learn from."
        )
    return source


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


class EncodedLabels(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Give a semi-supervised estimator labels ``0 .. k-1`` and ``-1``.

    scikit-learn's ``LabelSpreading`` and ``LabelPropagation`` take ``-1`` for
    unlabelled rows but sort every label, which fails on string classes mixed
    with the integer ``-1``. This wrapper encodes the labelled rows' classes
    as integers (``-1`` stays), fits a clone of ``estimator``, and decodes its
    predictions; ``classes_`` are the original labels.

    Parameters
    ----------
    estimator : classifier
        A semi-supervised classifier reading ``-1`` as unlabelled (cloned).

    Attributes
    ----------
    estimator_ : classifier
        The fitted clone.
    classes_ : ndarray
        The labelled rows' classes.
    transduction_ : ndarray
        The estimator's labels of the training rows, decoded (when it has them).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.semi_supervised import LabelSpreading
    >>> X = np.array([[0.0], [0.1], [1.0], [0.9]])
    >>> y = np.array(["low", -1, "high", -1], dtype=object)
    >>> clf = EncodedLabels(LabelSpreading(kernel="knn", n_neighbors=1)).fit(X, y)
    >>> clf.predict([[0.05], [0.95]]).tolist()
    ['low', 'high']
    """

    _parameter_constraints: dict = {"estimator": [HasMethods(["fit", "predict"])]}

    def __init__(self, estimator):
        self.estimator = estimator

    def fit(self, X, y):
        """Fit the estimator on ``X`` with the encoded labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Labels, ``-1`` for unlabelled rows.

        Returns
        -------
        self
        """
        self._validate_params()
        source = _labeled_rows(self, y)
        labels = labeled_part(y, source)
        self.classes_, codes = np.unique(labels, return_inverse=True)
        encoded = np.full(len(source), -1, dtype=np.int64)
        encoded[source] = codes
        self.estimator_ = clone(self.estimator).fit(X, encoded)
        if hasattr(self.estimator_, "transduction_"):
            self.transduction_ = self.classes_[self.estimator_.transduction_]
        return self

    def predict(self, X):
        """The estimator's predictions, as the original labels."""
        check_is_fitted(self)
        return self.classes_[np.asarray(self.estimator_.predict(X), dtype=np.int64)]

    @available_if(_has("predict_proba"))
    def predict_proba(self, X):
        """The estimator's class probabilities (columns follow ``classes_``)."""
        check_is_fitted(self)
        return self.estimator_.predict_proba(X)
