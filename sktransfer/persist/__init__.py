"""Saving and loading fitted models without pickle: ``save`` / ``load``.

One file (a zip archive): network weights in safetensors, parameters and
fitted attributes in JSON, scikit-learn parts through skops. Loading runs no
code from the file. ``save`` and ``load`` are the pair this package exports.
"""

from sktransfer.persist._api import load, save

__all__ = ["load", "save"]
