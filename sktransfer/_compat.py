"""The one place where sktransfer touches scikit-learn's private helpers.

``_fit_context`` validates ``_parameter_constraints`` once per ``fit`` with the
wording every scikit-learn estimator uses; ``validate_parameter_constraints`` does
the same for the fine-tuners (skorch defines its own ``_validate_params``, so
``_fit_context`` cannot be used on a skorch net); ``_check_y`` and
``_num_samples`` check the fine-tuners' targets and count samples the way
scikit-learn does. They are private in
scikit-learn, so they are imported here only, and a fallback keeps ``_fit_context``
working if it ever moves.
"""

from __future__ import annotations

import functools

try:  # scikit-learn >= 1.3
    from sklearn.base import _fit_context
except ImportError:  # pragma: no cover - exercised only on a future sklearn

    def _fit_context(*, prefer_skip_nested_validation):
        def decorator(fit_method):
            @functools.wraps(fit_method)
            def wrapper(estimator, *args, **kwargs):
                estimator._validate_params()
                return fit_method(estimator, *args, **kwargs)

            return wrapper

        return decorator


from sklearn.utils import _safe_indexing
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    RealNotInt,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import _check_y, _num_samples

__all__ = [
    "HasMethods",
    "Interval",
    "RealNotInt",
    "StrOptions",
    "_check_y",
    "_fit_context",
    "_num_samples",
    "_safe_indexing",
    "validate_parameter_constraints",
]
