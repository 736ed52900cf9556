"""Row ids of an output file: checked up front, their type kept.

``transform_to_file(..., ids=)`` and ``sktransfer embed --id-column`` name each
row of a Parquet output. Ids are checked before anything is embedded, so a
mistake fails in a second, not after hours of embedding: every row needs an id,
all ids have one type (int, float or str; an int column stays int, never
"1.0"), and duplicates are refused unless asked for (then a warning).
"""

from __future__ import annotations

import numbers
from collections import Counter

import numpy as np

from sktransfer._inputs import is_missing

__all__ = ["check_ids", "duplicate_ids"]


def _kind(value) -> str:
    if isinstance(value, bool | np.bool_):
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        return "float"
    if isinstance(value, str):
        return "str"
    return type(value).__name__


def check_ids(ids, n_rows: int) -> np.ndarray:
    """``ids`` as one typed array (int64, float64 or str objects), checked:
    one per row, none missing, one type.

    Examples
    --------
    >>> check_ids([3, 1, 2], 3).dtype
    dtype('int64')
    >>> check_ids(["a", None], 2)
    Traceback (most recent call last):
    ...
    ValueError: ids has no value at rows [1]: give every row an id.
    """
    values = ids.tolist() if hasattr(ids, "tolist") else list(ids)
    if len(values) != n_rows:
        raise ValueError(f"ids has {len(values)} entries; X has {n_rows} rows.")
    missing = [i for i, v in enumerate(values) if is_missing(v)]
    if missing:
        more = " ..." if len(missing) > 10 else ""
        raise ValueError(
            f"ids has no value at rows {missing[:10]}{more}: give every row an id."
        )
    first: dict[str, int] = {}
    for i, v in enumerate(values):
        first.setdefault(_kind(v), i)
    if len(first) > 1 or not set(first) <= {"int", "float", "str"}:
        kinds = ", ".join(f"{k} (e.g. row {i})" for k, i in first.items())
        raise ValueError(
            f"ids must be all int, all float or all str; got {kinds}. Convert "
            "them to one type first (e.g. all str)."
        )
    kind = next(iter(first), "int")
    dtype = {"int": np.int64, "float": np.float64}.get(kind, object)
    return np.asarray(values, dtype=dtype)


def duplicate_ids(ids: np.ndarray) -> str | None:
    """What repeats in ``ids`` (a sentence), or None.

    Examples
    --------
    >>> duplicate_ids(np.array(["a", "b", "a"], dtype=object))
    "1 id(s) repeat: 'a' at rows [0, 2]"
    """
    counts = Counter(ids.tolist())
    repeated = [v for v, c in counts.items() if c > 1]
    if not repeated:
        return None
    values = ids.tolist()
    shown = "; ".join(
        f"{v!r} at rows {[i for i, x in enumerate(values) if x == v][:3]}"
        for v in repeated[:3]
    )
    return f"{len(repeated)} id(s) repeat: {shown}"
