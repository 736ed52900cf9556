"""Embedding stores are handles: shared by clones, never copied, pickled lean.

``clone`` (through ``__sklearn_clone__``) and ``copy.deepcopy`` return the store
itself, so every clone of an estimator shares the caller's store and its
counters. Pickling carries the settings only (never rows or locks): unpickled in
the same process it is the same object again; in another process (a joblib
worker) one shared object per original.
"""

from __future__ import annotations

import abc
import uuid
import weakref

__all__ = ["Store"]

_HANDLES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _restore(cls, token: str, settings: dict):
    """Unpickle a store: the live one with this token, or a new shared one."""
    store = _HANDLES.get(token)
    if store is None:
        store = cls(**settings)
        store._register(token)
    return store


class Store(abc.ABC):
    """What both stores share: a handle under clone, deepcopy and pickle."""

    def _register(self, token: str | None = None) -> None:
        self._token = token or uuid.uuid4().hex
        _HANDLES[self._token] = self

    @abc.abstractmethod
    def _settings(self) -> dict:
        """The constructor arguments that recreate this store (no rows)."""

    def __reduce__(self):
        return _restore, (type(self), self._token, self._settings())

    def flush(self) -> None:
        """Make what was written durable (a disk store's deferred ``fsync``);
        nothing to do for a store in memory."""
        return None

    def __sklearn_clone__(self):
        return self  # clones share the caller's store

    def __deepcopy__(self, memo):
        return self
