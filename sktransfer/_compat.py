"""The one place where sktransfer touches scikit-learn's private helpers.

``_fit_context`` validates ``_parameter_constraints`` once per ``fit`` with the
wording every scikit-learn estimator uses. It is private in scikit-learn, so it is
imported here only, and a fallback keeps us working if it ever moves.
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


from sklearn.utils._param_validation import Interval, StrOptions

__all__ = ["Interval", "StrOptions", "_fit_context"]
