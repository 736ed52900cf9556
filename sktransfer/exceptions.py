"""Exceptions and warnings raised by sktransfer.

Every error is a subclass of a builtin one (``ValueError``, ``FileNotFoundError``)
so code that already catches those keeps working.
"""

from __future__ import annotations

__all__ = [
    "BackboneNotFoundError",
    "CacheWarning",
    "EnvironmentChangeWarning",
    "InputError",
    "InputWarning",
    "InvalidWeightsError",
    "NegativeTransferWarning",
    "UnsafeFileError",
    "WeightsNotFoundError",
]


class BackboneNotFoundError(ValueError):
    """An unknown backbone name; the message lists close matches."""


class WeightsNotFoundError(FileNotFoundError):
    """No source could provide the weights; the message lists what was tried."""


class InvalidWeightsError(ValueError):
    """Weights that do not fit the network: missing or unexpected tensors, a
    wrong dtype or shape, NaN or inf values; the message lists them."""


class InputError(ValueError):
    """A bad input row; the message names the row index and the value or path."""


class InputWarning(UserWarning):
    """Some rows could not be embedded and were replaced (see ``on_error``)."""


class CacheWarning(UserWarning):
    """The embedding cache could not be used (e.g. a read-only directory); the
    embeddings were computed and returned all the same."""


class NegativeTransferWarning(UserWarning):
    """No pretrained candidate beat the baseline that uses no pretraining."""


class UnsafeFileError(ValueError):
    """A saved model that :func:`sktransfer.load` refuses: not one of its
    files, changed since it was written (a member's checksum, a tensor's shape
    or dtype), or naming a type or function that is not trusted."""


class EnvironmentChangeWarning(UserWarning):
    """A model loaded in another environment than it was saved in (package
    versions, backbone weights or preprocessing): its outputs may differ."""
