"""Python values to JSON and tensors, and back, with no code in the file.

What a saved estimator holds (parameters and fitted attributes) is written as
JSON with tagged records for what JSON lacks: tuples, dicts with any keys,
numeric arrays and tensors (kept in the archive's safetensors file, referred
to by key), string arrays, NumPy scalars, torch devices and dtypes, our
backbone dataclasses, classes and functions (by import name, resolved at load
only from trusted packages), skorch callbacks (type and parameters) and
scikit-learn objects (through skops, in a member of their own). Anything else
is refused at save time with the path of the value, never pickled.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from sktransfer.backbones._spec import (
    BackboneSpec,
    ImagePreprocessing,
    TextPreprocessing,
)
from sktransfer.exceptions import UnsafeFileError

__all__ = ["TAG", "TRUSTED_ROOTS", "Decoder", "Encoder", "SaveError", "ref_name"]

TAG = "__sktransfer__"
# packages whose classes and functions a file may name (importing them runs
# only installed code); anything else must be passed to load(trusted=...)
TRUSTED_ROOTS = ("sktransfer", "sklearn", "skorch", "torch", "numpy", "scipy")
_DATACLASSES = {
    cls.__name__: cls for cls in (BackboneSpec, ImagePreprocessing, TextPreprocessing)
}


class SaveError(TypeError):
    """A value that cannot be written without pickle; the message names it."""


def ref_name(obj: Any) -> str:
    """``module:qualname`` of a class or function."""
    return f"{obj.__module__}:{obj.__qualname__}"


class Encoder:
    """Turns values into JSON-able records, collecting tensors and members.

    Parameters
    ----------
    on_estimator : callable
        ``on_estimator(obj, where) -> record or None``: a record for one of
        our estimators (a "part"), None for any other object.
    on_sklearn : callable
        ``on_sklearn(obj, where) -> record``: a scikit-learn object, through
        skops.
    """

    def __init__(self, on_estimator: Callable, on_sklearn: Callable):
        self.tensors: dict[str, torch.Tensor] = {}
        self._on_estimator = on_estimator
        self._on_sklearn = on_sklearn

    def tensor(self, value: torch.Tensor) -> str:
        key = f"t{len(self.tensors)}"
        self.tensors[key] = value.detach().cpu().contiguous().clone()
        return key

    def encode(self, value: Any, where: str) -> Any:
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int | float) and type(value) in (int, float):
            if isinstance(value, float) and not math.isfinite(value):
                return {TAG: "float", "value": repr(value)}
            return value
        if isinstance(value, np.generic):
            return {TAG: "scalar", "dtype": value.dtype.str, "value": value.item()}
        if isinstance(value, np.ndarray):
            return self._array(value, where)
        if isinstance(value, torch.Tensor):
            return {TAG: "tensor", "key": self.tensor(value)}
        if isinstance(value, torch.device):
            return {TAG: "device", "value": str(value)}
        if isinstance(value, torch.dtype):
            return {TAG: "dtype", "value": str(value).removeprefix("torch.")}
        if type(value).__name__ in _DATACLASSES and dataclasses.is_dataclass(value):
            fields = {
                f.name: self.encode(getattr(value, f.name), f"{where}.{f.name}")
                for f in dataclasses.fields(value)
            }
            return {TAG: "spec", "type": type(value).__name__, "fields": fields}
        part = self._on_estimator(value, where)
        if part is not None:
            return part
        if isinstance(value, list) and type(value) is list:
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if type(value) is tuple:
            items = [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
            return {TAG: "tuple", "items": items}
        if type(value) is dict:
            return {
                TAG: "dict",
                "items": [
                    [self.encode(k, where), self.encode(v, f"{where}[{k!r}]")]
                    for k, v in value.items()
                ],
            }
        if type(value) in (set, frozenset):
            items = [self.encode(v, where) for v in sorted(value, key=repr)]
            return {TAG: type(value).__name__, "items": items}
        if isinstance(value, type) or inspect.isfunction(value):
            if "<" in value.__qualname__:  # a lambda or a local function
                raise SaveError(
                    f"{where} is {value.__qualname__}, which has no import name; "
                    "define it at module level to save it."
                )
            return {TAG: "ref", "name": ref_name(value)}
        from skorch.callbacks import Callback
        from skorch.history import History

        if type(value) is History:
            return {TAG: "history", "items": self.encode(list(value), where)}
        if isinstance(value, Callback):
            params = value.get_params(deep=False)
            return {
                TAG: "callback",
                "type": ref_name(type(value)),
                "params": self.encode(params, where),
            }
        from sklearn.base import BaseEstimator

        if isinstance(value, BaseEstimator):
            return self._on_sklearn(value, where)
        raise SaveError(
            f"{where} is a {type(value).__module__}.{type(value).__qualname__}, "
            "which cannot be saved without pickle. Use a plain value (numbers, "
            "strings, lists, arrays, classes by name) or a scikit-learn object."
        )

    def _array(self, value: np.ndarray, where: str) -> dict:
        if value.dtype.kind in "biuf":
            native = value.astype(value.dtype.newbyteorder("="), copy=False)
            key = self.tensor(torch.from_numpy(np.ascontiguousarray(native)))
            return {
                TAG: "ndarray",
                "key": key,
                "dtype": value.dtype.str,
                "shape": list(value.shape),
            }
        if value.dtype.kind in "UO":
            items = value.ravel().tolist()
            if not all(
                isinstance(v, str | int | float | bool) or v is None for v in items
            ):
                raise SaveError(
                    f"{where} is an object array holding other values than "
                    "numbers and strings; it cannot be saved without pickle."
                )
            return {
                TAG: "strarray",
                "dtype": value.dtype.str,
                "shape": list(value.shape),
                "items": items,
            }
        raise SaveError(f"{where} is an array of dtype {value.dtype}; not saved.")


def _check_trusted(name: str, trusted: set[str]) -> None:
    module, _, qual = name.partition(":")
    if name in trusted:
        return
    if module.split(".")[0] not in TRUSTED_ROOTS:
        raise UnsafeFileError(
            f"the file names {module}.{qual}, which is not from a trusted package "
            f"({', '.join(TRUSTED_ROOTS)}). If you trust this file, pass "
            f"trusted=[{name!r}] to load."
        )


def resolve(name: str, trusted: set[str]) -> Any:
    """The class or function ``module:qualname``, if it may be named."""
    if not isinstance(name, str) or name.count(":") != 1:
        raise UnsafeFileError(f"the file holds a malformed name {name!r}.")
    _check_trusted(name, trusted)
    module, _, qual = name.partition(":")
    if any(p.startswith("_") and p.endswith("_") for p in qual.split(".")):
        raise UnsafeFileError(f"the file names {name!r}: dunder names are refused.")
    try:
        obj: Any = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise UnsafeFileError(
            f"the file names {module}.{qual}, which this environment does not "
            f"have ({exc}); it was saved with other package versions."
        ) from exc
    if not (isinstance(obj, type) or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
        raise UnsafeFileError(f"the file names {name!r}, not a class or function.")
    return obj


class Decoder:
    """Turns records back into values; the inverse of :class:`Encoder`.

    Parameters
    ----------
    tensors : dict of str to Tensor
    trusted : set of str
        ``module:qualname`` names allowed beyond :data:`TRUSTED_ROOTS`.
    on_part, on_sklearn : callable
        Rebuild one of our estimators / a skops member from its record.
    """

    def __init__(self, tensors, trusted, on_part: Callable, on_sklearn: Callable):
        self.tensors = tensors
        self.trusted = trusted
        self._on_part = on_part
        self._on_sklearn = on_sklearn

    def tensor(self, key: str) -> torch.Tensor:
        try:
            return self.tensors[key]
        except (KeyError, TypeError):
            raise UnsafeFileError(
                f"the file refers to tensor {key!r}, which it does not hold."
            ) from None

    def decode(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if not isinstance(value, dict) or TAG not in value:
            raise UnsafeFileError(f"the file holds an unknown record {value!r:.80}.")
        tag = value[TAG]
        if tag == "float":
            return float(value["value"])
        if tag == "scalar":
            return np.dtype(_dtype(value["dtype"])).type(value["value"])
        if tag == "ndarray":
            array = self.tensor(value["key"]).numpy().astype(_dtype(value["dtype"]))
            return array.reshape(value.get("shape", array.shape))
        if tag == "strarray":
            dtype = _dtype(value["dtype"])
            out = np.empty(len(value["items"]), dtype=dtype)
            out[:] = value["items"]
            return out.reshape(value["shape"])
        if tag == "tensor":
            return self.tensor(value["key"])
        if tag == "device":
            return torch.device(value["value"])
        if tag == "dtype":
            dtype = getattr(torch, str(value["value"]), None)
            if not isinstance(dtype, torch.dtype):
                raise UnsafeFileError(f"unknown torch dtype {value['value']!r}.")
            return dtype
        if tag == "spec":
            cls = _DATACLASSES.get(value["type"])
            if cls is None:
                raise UnsafeFileError(f"unknown spec type {value['type']!r}.")
            fields = {k: self.decode(v) for k, v in value["fields"].items()}
            return cls(**fields)
        if tag == "tuple":
            return tuple(self.decode(v) for v in value["items"])
        if tag == "dict":
            return {
                _hashable(self.decode(k)): self.decode(v) for k, v in value["items"]
            }
        if tag in ("set", "frozenset"):
            items = (_hashable(self.decode(v)) for v in value["items"])
            return set(items) if tag == "set" else frozenset(items)
        if tag == "ref":
            return resolve(value["name"], self.trusted)
        if tag == "history":
            from skorch.history import History

            return History(self.decode(value["items"]))
        if tag == "callback":
            from skorch.callbacks import Callback

            cls = resolve(value["type"], self.trusted)
            if not (isinstance(cls, type) and issubclass(cls, Callback)):
                raise UnsafeFileError(f"{value['type']!r} is not a skorch callback.")
            return cls(**self.decode(value["params"]))
        if tag == "part":
            return self._on_part(value)
        if tag == "skops":
            return self._on_sklearn(value)
        raise UnsafeFileError(f"the file holds an unknown record type {tag!r}.")


def _dtype(text: Any) -> np.dtype:
    try:
        dtype = np.dtype(str(text))
    except TypeError as exc:
        raise UnsafeFileError(f"unknown array dtype {text!r}.") from exc
    if dtype.kind not in "biufUO":
        raise UnsafeFileError(f"refused array dtype {text!r}.")
    return dtype


def _hashable(key: Any) -> Any:
    if isinstance(key, list):
        raise UnsafeFileError("the file holds a dict key that is a list.")
    return key
